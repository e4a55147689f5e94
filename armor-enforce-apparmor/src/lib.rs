#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod compile;
pub mod enforcer;
pub mod model;
pub mod profile;

pub use compile::{AppArmorArtifact, child_name, compile, profile_name};
pub use enforcer::{AppArmor, NAME};
pub use model::{AaDecision, AaOp, Model};
pub use profile::{MARKER, Profile, parse};
