//! From span-carrying YAML nodes to the [`crate::model`], collecting every problem.
//!
//! Each check of KubeArmor's CRD (`security.kubearmor.com/v1`) is applied here with an anchored
//! regular expression, together with type checks (a string where an integer belongs), unknown
//! fields (warnings) and duplicate keys (errors). Parsing goes on after a problem so that one run
//! reports all of them.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use regex::Regex;

use crate::diag::{Diagnostic, Diagnostics, Level};
use crate::model::*;
use crate::syscalls::is_syscall;
use crate::yaml::{Node, NodeKind, Pos, ScalarType, scalar_type};

/// The API group and version every policy must carry.
pub const API_VERSION: &str = "security.kubearmor.com/v1";

/// CRD `MatchPathType` maximum length.
pub const MAX_PATH_LEN: usize = 200;

/// CRD `ProcessPathType.AllowedArgs` maximum item count.
pub const MAX_ALLOWED_ARGS: usize = 20;

mod capabilities;
mod checks;
mod common;
mod device;
mod file;
mod network;
mod policy;
mod process;
mod reader;
mod selector;
mod syscalls;
#[cfg(test)]
mod tests;

use capabilities::*;
use checks::*;
use common::*;
use device::*;
use file::*;
use network::*;
use process::*;
use reader::*;
use selector::*;
use syscalls::*;

pub(crate) use checks::NAMESPACE_RE;
pub use checks::{LAST_CRD_CAPABILITY, PRESETS, PROTOCOLS};
pub(crate) use policy::policy;
pub(crate) use reader::{Ctx, MapReader, is_null, join, list, string, string_map};
