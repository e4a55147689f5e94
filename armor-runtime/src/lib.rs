#![doc = include_str!("../README.md")]
//!
//! ## API themes
//!
//! * [`identity`]: container ids from cgroup paths (containerd, Docker, CRI-O, podman,
//!   systemd services), `/proc/PID/cgroup`, cgroup ids and namespaces.
//! * [`containerd`]: the gRPC client (labels, image, task pid, lifecycle events).
//! * [`Runtime`]: events in, KubeArmor [`armor_core::telemetry::Telemetry`] records out;
//!   atomic policy reload; enforcers applied per workload; alert throttling.
//! * Errors: one [`Error`] enum naming the failed operation.

pub mod containerd;
pub mod error;
pub mod format;
pub mod identity;
mod runtime;

pub use error::{Error, Result};
pub use runtime::{MONITOR, Runtime, RuntimeConfig, VisibilitySink, load_policies};
