#![doc = include_str!("../README.md")]
//!
//! ## API themes
//!
//! * [`identity`]: container ids from cgroup paths (containerd, Docker, CRI-O, podman,
//!   systemd services), `/proc/PID/cgroup`, cgroup ids and namespaces; the cgroups of listed
//!   systemd units ([`identity::find_units`]).
//! * [`containerd`]: the gRPC client (labels, image, task pid, the security labels its spec names, lifecycle
//!   events including task create, before the entrypoint runs).
//! * [`enforcement`]: the kernel enforcer the user chose (`auto` probes BPF-LSM, then
//!   AppArmor, by a real trial, and falls back to audit-only monitoring saying why), which
//!   workloads it covers, and its alerts.
//! * [`index`]: the bookkeeping as a pure reducer ([`index::WorkloadIndex::apply`]: an input
//!   and the time in, effects out), tested without a kernel or an enforcer.
//! * [`Runtime`]: the shell around it — events in, KubeArmor [`armor_core::telemetry::Telemetry`] records out;
//!   atomic policy reload; enforcers applied per workload (containerd containers on task
//!   create, [`Runtime::container_event`]); enforcer alerts enriched with the workload's
//!   identity ([`Runtime::enforcer_records`]); alert throttling; systemd services of a service
//!   inventory tracked like containers by their cgroup ([`Runtime::sync_services`]).
//! * [`hook`]: the synchronous point before a container's entrypoint — an OCI
//!   `createRuntime` hook (`armor-oci-hook`) that holds the container's creation until the
//!   agent has put its rules in force ([`Runtime::container_creating`]).
//! * [`agent`]: the host agent's whole loop (`armor-agent` is flag parsing around it).
//! * Errors: one [`Error`] enum naming the failed operation.
#![forbid(unsafe_code)]

pub mod agent;
pub mod containerd;
pub mod coverage;
pub mod enforcement;
pub mod error;
pub mod feeder;
pub mod hook;
pub mod identity;
pub mod index;
pub mod metrics;
pub mod output;
mod runtime;

pub use armor_core::telemetry::format;
pub use enforcement::{Enforcement, EnforcementOptions, EnforcerChoice};
pub use error::{Error, Result};
pub use index::{ContainerChange, MONITOR, Now};
pub use runtime::{Runtime, RuntimeConfig, VisibilitySink, load_policies, load_policy_files};
