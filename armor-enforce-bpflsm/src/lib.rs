#![doc = include_str!("../README.md")]

pub mod abi;
pub mod compile;
pub mod dfa;
pub mod filter;
pub mod hash;
pub mod simulation;
pub mod table;

pub use compile::{BpfArtifact, Encoded, Entry, EntryTarget, GlobGroup, compile, compile_with};
pub use simulation::{KernelDecision, KernelOp, Model};
pub mod enforcer;

pub use enforcer::{BpfLsm, Config, Counters, Factory, LoadError, NAME};
