//! The armor manual: design decisions and semantics, in prose.
//!
//! * [`semantics`]: what a policy means — selection, operations, targets, qualifiers, allow-list
//!   mode, precedence, the decision and its alert. The single definition every enforcer follows.
//! * [`validation`]: what the loader checks and how it reports problems.
//! * [`threat_model`]: what armor protects against, where it fails closed, and what it does not do.

#[doc = include_str!("semantics.md")]
pub mod semantics {}

#[doc = include_str!("validation.md")]
pub mod validation {}

#[doc = include_str!("threat_model.md")]
pub mod threat_model {}
