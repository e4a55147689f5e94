#![doc = include_str!("../README.md")]
//!
//! ## API themes
//!
//! * [`EventSource::load`] loads and attaches everything; [`EventSource::poll`] delivers
//!   [`Event`]s; [`EventSource::controls`] gives a thread-safe [`Controls`] handle to change
//!   per-cgroup visibility and read the kernel's loss counters.
//! * Errors: one [`Error`] enum naming the failed operation.
//! * The kernel record and its decoder are in [`layout`]; the C header it mirrors is
//!   `bpf/armor_event.h`.
#![forbid(unsafe_code)]

pub mod error;
pub mod event;
pub mod layout;
pub mod path;
pub mod proctree;
mod source;
pub mod translate;

pub use error::{Error, Result};
pub use event::{Event, EventKind, FileOp, SockAddr, Syscall};
pub use proctree::{ProcessInfo, ProcessTree};
pub use source::{Controls, EventSource, Options, SYSCALLS, Stats, visibility_mask};
pub use translate::{Translation, Translator};
