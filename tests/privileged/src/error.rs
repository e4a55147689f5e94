//! The crate's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a kernel feature is unavailable, with the evidence (an errno of a trial, a missing LSM).
///
/// Only probes create it; [`crate::gate`] turns it into a skip outside the guest and into a
/// failure inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    reason: String,
}

impl Unsupported {
    /// Records why a feature is unavailable; `reason` must state the evidence.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// The reason, as printed after `skipped: `.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Everything that can go wrong in the privileged test support.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel or the machine lacks a feature; outside the guest the test skips.
    #[error("unsupported: {0}")]
    Unsupported(Unsupported),
    /// A probe found a feature missing inside the test guest, where nothing may skip.
    #[error("inside the test guest nothing may skip, but: {0}")]
    SkipInGuest(Unsupported),
    /// A test for one boot profile ran in a guest booted with another.
    #[error(
        "test needs the `{wanted}` guest profile but the guest booted `{booted}` (the runner's filter is wrong)"
    )]
    WrongProfile {
        /// The profile the test needs.
        wanted: &'static str,
        /// The profile the guest booted.
        booted: String,
    },
    /// A system call or file operation failed.
    #[error("{call} `{}` failed", path.display())]
    Syscall {
        /// The operation, e.g. `mkdir` or `mount`.
        call: &'static str,
        /// The file it was applied to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An external tool failed.
    #[error("`{tool}` failed ({status}): {stderr}")]
    Tool {
        /// The program name.
        tool: String,
        /// Its exit status.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// Output of a tool or kernel file did not have the expected form.
    #[error("cannot parse {what}: `{input}`")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// The offending input.
        input: String,
    },
    /// Something the tests rely on is missing (a mount, a map, a program).
    #[error("not found: {0}")]
    NotFound(String),
    /// Loading the eBPF object failed.
    #[error("loading the eBPF object failed")]
    Ebpf(#[source] aya::EbpfError),
    /// A BPF program could not be loaded or attached.
    #[error("{call} of BPF program `{program}` failed")]
    Program {
        /// `load` or `attach`.
        call: &'static str,
        /// The program name.
        program: &'static str,
        /// The aya error (with the verifier log, when there is one).
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A BPF map could not be opened or updated.
    #[error("BPF map `{map}` failed")]
    Map {
        /// The map name.
        map: &'static str,
        /// The aya error.
        #[source]
        source: aya::maps::MapError,
    },
    /// The kernel's BTF could not be read.
    #[error("reading the kernel BTF failed")]
    Btf(#[source] aya::BtfError),
}

impl Error {
    /// A [`Error::Syscall`] for `call` on `path`.
    pub fn syscall(call: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Syscall {
            call,
            path: path.into(),
            source,
        }
    }
}

/// Formats an error with all its sources, `a: b: c`, for test failure messages (armor-core's
/// one spelling, shared with the agent and the enforcers).
pub use armor_core::diag::error_chain;
