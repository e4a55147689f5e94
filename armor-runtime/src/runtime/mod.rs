//! The pipeline: kernel events → workload identity → policy decision → KubeArmor Log/Alert.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use armor_core::enforcer::{Destination, Enforcer, EnforcerAlert, RuleGap, Start};
use armor_core::inventory::{Inventory, Service};
use armor_core::telemetry::{ACTION_AUDIT_BLOCK, RecordType, Telemetry};
use armor_core::{
    Category, CompiledPolicy, Config, Container, Event, Host, PolicySet, PostureConfig, RuleSet,
    Verdict, Visibility, Workload, WorkloadKey,
};
use armor_ebpf::{ProcessTree, Translator};

use crate::containerd::{ContainerEvent, ContainerInfo};
use crate::coverage::{Coverage, Readiness};
use crate::enforcement::Enforcement;
use crate::error::{Error, Result};
use crate::format;
use crate::identity;

mod alerts;
mod config;
mod containers;
mod enforce;
mod monitor;
mod reload;
mod services;
mod state;

use alerts::*;
pub use config::*;
use enforce::*;
pub use monitor::*;
pub use state::*;
