//! Errors of the runtime.

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed.
    #[error("`{call}` of `{path}` failed")]
    Io {
        /// The call (`read`, `stat`).
        call: &'static str,
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Something read from the system could not be understood.
    #[error("cannot parse {what}: `{input}`")]
    Parse {
        /// What was read.
        what: &'static str,
        /// What it contained.
        input: String,
    },
    /// The policies could not be loaded; the previous ones stay in force.
    #[error("policies not loaded")]
    Policies(#[source] armor_core::LoadError),
    /// The policies could not be compiled; the previous ones stay in force.
    #[error("policies not compiled")]
    Build(#[source] armor_core::BuildError),
    /// The service inventory could not be loaded (every problem with its `file:line:col`); a
    /// previous inventory stays in force.
    #[error("service inventory not loaded")]
    Inventory(#[source] armor_core::LoadError),
    /// The containerd API failed.
    #[error("containerd `{call}` failed: {message}")]
    Containerd {
        /// The call (`connect`, `Containers.List`).
        call: &'static str,
        /// What containerd (or the transport) said.
        message: String,
    },
    /// The enforcer asked for does not work on this machine.
    #[error("enforcer `{enforcer}` unavailable: {reason}")]
    Enforcer {
        /// `BPFLSM` or `AppArmor`.
        enforcer: &'static str,
        /// What the trial returned.
        reason: String,
    },
    /// A container's rules could not be put in force (an enforcer failed to apply them).
    #[error("rules of `{workload}` not in force: {reason}")]
    NotEnforced {
        /// The workload.
        workload: String,
        /// What the enforcers reported.
        reason: String,
    },
    /// Options that cannot work together.
    #[error("{0}")]
    Usage(String),
    /// The event source failed.
    #[error(transparent)]
    Ebpf(#[from] armor_ebpf::Error),
}

impl Error {
    pub(crate) fn io(call: &'static str, path: &str, source: std::io::Error) -> Self {
        Self::Io {
            call,
            path: path.to_string(),
            source,
        }
    }
}
