#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
//!
//! # This crate
//!
//! `armor-core` holds everything that does not touch a kernel or a cluster: the policy
//! [`model`], loading and validation with positions ([`PolicySet`], [`diag`]), normalised
//! [`rule`]s, [`selector`]s, [`posture`] and visibility, the reference decision [`engine`], the
//! [`enforcer`] contract, [`workload`] identity types and KubeArmor-compatible [`telemetry`].
//! The [`manual`] explains the semantics.
//!
//! ## API themes
//!
//! * **Builder, compiled, matcher**: [`PolicySet`] (parse + validate) →
//!   [`CompiledPolicy`] (immutable, `Arc` inside) → [`RuleSet`] per workload (cached and shared)
//!   → [`RuleSet::decide`] (never fails or panics; allocates only when a path reaches a glob
//!   group).
//! * **Errors**: loading returns every [`Diagnostic`] at once ([`LoadError`]); compiling returns
//!   [`BuildError`]; deciding cannot fail.
//! * **Limits**: [`Config`] bounds input size, nesting, node count (alias bombs), rule count and
//!   compiled glob size.
//!
//! ## Features
//!
//! None: the crate has no optional parts.

pub mod crd;
pub mod diag;
pub mod enforcer;
pub mod engine;
pub mod event;
pub mod glob;
pub mod inventory;
pub mod manual;
pub mod model;
mod parse;
pub mod posture;
pub mod rule;
pub mod selector;
pub mod settings;
pub mod syscalls;
pub mod telemetry;
mod validate;
pub mod workload;
mod yaml;

pub use diag::{Diagnostic, Diagnostics, Level, LoadError, Location};
pub use engine::{
    AlertFields, BuildError, CompiledPolicy, Config, Considered, DEFAULT_POSTURE, Decision,
    Explanation, MAX_DIR_DEPTH, PolicyFiles, PolicySet, Reason, RuleSet, Step, Verdict,
};
pub use event::{Access, Category, Event, Operation, Socket};
pub use model::{Action, Policy, PolicyKind};
pub use parse::{
    API_VERSION, LAST_CRD_CAPABILITY, MAX_ALLOWED_ARGS, MAX_PATH_LEN, PRESETS, PROTOCOLS,
};
pub use posture::{Posture, PostureAction, PostureConfig, Visibility};
pub use rule::{Rule, Target};
pub use workload::{Container, Host, Owner, Workload, WorkloadKey};
pub use yaml::LoadLimits;
