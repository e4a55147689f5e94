//! Limits of loading and compiling ([`Config`]).

use super::*;

/// Limits and options for loading and compiling policies (untrusted input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Bounds on each YAML input.
    pub load_limits: LoadLimits,
    /// Most rules a compiled policy may hold.
    pub max_rules: usize,
    /// Most bytes one `matchPatterns` glob may compile to (its automaton); a larger one fails
    /// [`CompiledPolicy::build`] with [`BuildError::GlobTooLarge`] naming the rule. Checked when
    /// the policy is built, so a decision never compiles anything unbounded.
    pub glob_size_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            load_limits: LoadLimits::default(),
            max_rules: 1_000_000,
            glob_size_limit: 256 << 10,
        }
    }
}
