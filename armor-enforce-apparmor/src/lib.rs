#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod alerts;
pub mod compile;
pub mod denial;
pub mod enforcer;
pub mod profile;
pub mod simulation;

pub use alerts::{AlertReader, Registry, resolve};
pub use compile::{AppArmorArtifact, child_name, compile, profile_name};
pub use denial::Denial;
pub use enforcer::{AppArmor, Factory};

/// The enforcer's name (the `Enforcer` field of its alerts). Defined here, not in `enforcer`, so
/// that the alert reader (`alerts`) does not depend on the enforcer that starts it.
pub const NAME: &str = "AppArmor";
pub use profile::{MARKER, Profile, parse};
pub use simulation::{AaDecision, AaOp, Model, Precedence, Ranking};
