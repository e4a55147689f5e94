//! The runtime: the shell around the [`WorkloadIndex`] that resolves what needs the system
//! (cgroups, tasks, units), executes the index's effects with the enforcers and the kernel's
//! visibility map, and hands back records, changes and problems.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use armor_core::enforcer::{Enforcer, EnforcerAlert, RuleGap};
use armor_core::inventory::{Inventory, Service};
use armor_core::telemetry::Telemetry;
use armor_core::{CompiledPolicy, Config, PostureConfig, Visibility, WorkloadKey};
use armor_ebpf::ProcessTree;

use crate::containerd::{ContainerEvent, ContainerInfo};
use crate::coverage::Readiness;
use crate::enforcement::Enforcement;
use crate::error::{Error, Result};
use crate::identity;
use crate::index::{
    Application, ApplyOutcome, ContainerChange, Effect, EnforcerOutcome, FoundUnit, IdentityKey,
    Input, Now, PodIdentity, WorkloadIndex,
};

mod config;
mod lifecycle;
mod state;

pub use config::*;
pub use state::*;
