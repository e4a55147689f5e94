//! The reference decision engine: compile once, match many.
//!
//! ```text
//! YAML ──PolicySet::parse──▶ PolicySet ──CompiledPolicy::build──▶ CompiledPolicy
//!        (all diagnostics)     (validated)                          │ rule_set(workload, posture)
//!                                                                   ▼
//!                                                   Arc<RuleSet> ──decide(&Event)──▶ Decision
//! ```
//!
//! A [`RuleSet`] holds the rules of one workload sorted into the cheapest strategy: exact paths
//! and executable names in hash maps, directories in a hash map probed at every `/` of the path
//! (only at depths that carry a directory rule), globs in compiled regex sets grouped by the
//! directory their literal prefix names (built on first use), protocols,
//! capabilities and syscalls in small tables. [`RuleSet::decide`] never fails and never panics;
//! it allocates only when a path reaches a glob group (the regex set's match list, and the
//! group's compilation the first time). Rule sets are cached per (selected policies, posture), so every container of
//! a deployment shares one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use regex::RegexSet;
use rustc_hash::FxHashMap;

use crate::diag::{Diagnostics, LoadError};
use crate::event::{Category, Event, Operation, net};
use crate::model::{Action, Policy};
use crate::posture::{Posture, PostureAction};
use crate::rule::{
    PolicyInfo, ProtocolMatch, Rule, SyscallPath, Target, dir_matches, normalize, trim_slash,
};
use crate::selector::CompiledSelector;
use crate::yaml::LoadLimits;

mod compiled;
mod config;
mod decision;
mod explain;
mod globs;
mod loader;
mod ruleset;
mod strategy;

pub use compiled::*;
pub use config::*;
pub use decision::*;
pub use explain::*;
use globs::*;
pub use loader::*;
pub use ruleset::*;
pub use strategy::*;

#[cfg(test)]
mod tests;
