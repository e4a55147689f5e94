#![doc = include_str!("../README.md")]
//!
//! ## Internals
//!
//! The map encoding (`abi`), hashes, tables, glob automata and the user-space simulation of
//! the kernel's decision are public only with the `internals` feature, for this crate's tests
//! and benchmarks; they are not part of the API and may change in any release.

/// Makes a module public with the `internals` feature and private without it.
macro_rules! internal {
    ($($(#[$attr:meta])* mod $name:ident;)*) => {
        $(
            $(#[$attr])*
            #[cfg(feature = "internals")]
            pub mod $name;
            $(#[$attr])*
            #[cfg(not(feature = "internals"))]
            #[allow(
                unreachable_pub,
                dead_code,
                reason = "public only with the `internals` feature, for the crate's tests"
            )]
            mod $name;
        )*
    };
}

internal! {
    mod abi;
    mod compile;
    mod dfa;
    mod filter;
    mod hash;
    mod simulation;
    mod table;
}
pub mod enforcer;

pub use compile::{BpfArtifact, Encoded, Entry, EntryTarget, GlobGroup};
#[cfg(feature = "internals")]
pub use compile::{compile, compile_with};
#[cfg(feature = "internals")]
pub use simulation::{KernelDecision, KernelOp, Model};

pub use enforcer::{
    BpfLsm, Config, Counters, DEFAULT_PIN_ROOT, Factory, LoadError, NAME, Pinning, abi_id,
    uninstall,
};
