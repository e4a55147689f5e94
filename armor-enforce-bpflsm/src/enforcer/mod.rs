//! [`BpfLsm`]: the [`Enforcer`] that loads the kernel programs and keeps the maps in step with
//! the workloads' artefacts.
//!
//! # Loading
//! The kernel verifies each of the [`PROGRAMS`] when it is loaded, and that is nearly all of the
//! load time (about 5 s per program under an emulated 6.1 guest). The programs are loaded on
//! several threads at once (one per CPU, at most [`MAX_LOAD_THREADS`]): the kernel verifies
//! concurrent loads in parallel. A successful [`Enforcer::probe`] keeps the programs it loaded
//! (verified, not attached), so the [`BpfLsm::load`] or first [`Enforcer::apply`] that follows
//! only attaches them: probing before enforcing costs one verification, not two.
//!
//! # Minimum kernel version
//! Linux 6.1 with `CONFIG_BPF_LSM=y`, `bpf` in the `lsm=` boot list, `CONFIG_DEBUG_INFO_BTF=y`,
//! BPF trampolines and `CONFIG_SECURITY_PATH=y` (for the `path_*` hooks). `bpf_loop` (5.17+)
//! drives the dentry walk.
//!
//! # When enforcement begins
//! A workload's rules are enforced from the moment [`Enforcer::apply`] returns: every later hook
//! call from a task whose cgroup (or an ancestor cgroup) is the workload's reads the new ruleset.
//! For a container, apply the rules after its cgroup exists and before its entrypoint runs (the
//! OCI `createRuntime`/`prestart` point, or a created-but-not-started task): everything the
//! runtime did inside the cgroup before that point was not subject to them. A first install
//! compiled for [`Start::FirstExec`](armor_core::enforcer::Start) (an OCI `createRuntime` hook)
//! is in force from the workload's first exec instead, so the runtime's own setup is not
//! decided and a blocked entrypoint is refused.
//!
//! ```no_run
//! use armor_core::enforcer::{Enforcer, Support};
//! use armor_enforce_bpflsm::{BpfLsm, Config};
//! let lsm = BpfLsm::new(Config::default());
//! match lsm.probe() {
//!     Support::Supported => println!("BPF-LSM works here"),
//!     Support::Unsupported { reason } => println!("unsupported: {reason}"),
//!     _ => {}
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use armor_core::RuleSet;
use armor_core::enforcer::{
    AlertSink, Applied, ApplyError, Artifact, Built, Capacity, CompileError, Destination, Enforcer,
    EnforcerAlert, EnforcerFactory, Start, Support,
};
use armor_core::event::Category;
use armor_core::workload::WorkloadKey;
use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::{Lsm, Program, ProgramError};
use aya::{Btf, Ebpf, EbpfLoader};

use crate::abi::{
    self, AlertRaw, ConfigVal, DfaKey, DfaVal, RuleKey, RuleVal, SlotVal, WorkloadVal,
};
use crate::compile::{BpfArtifact, DEFAULT_MAX_GLOB_STATES, Encoded, compile_with};
use crate::filter::Filter;
use crate::table::{Placement, Table};

mod alerts;
mod backend;
mod config;
mod factory;
mod load;
mod maps;
mod mounts;
mod pin;
mod state;
#[cfg(test)]
mod tests;

pub use alerts::*;
pub use backend::*;
pub use config::*;
pub use factory::*;
pub use load::*;
use maps::*;
use mounts::*;
use pin::*;
pub use pin::{DEFAULT_PIN_ROOT, PINNED_MAPS, Pinning, abi_id, uninstall};
pub use state::*;
