//! Errors of the event source.

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the event source failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The object could not be loaded (BTF, maps, relocations).
    #[error("cannot load the eBPF object")]
    Load(#[source] aya::EbpfError),
    /// The kernel's BTF could not be read.
    #[error("cannot read kernel BTF from /sys/kernel/btf/vmlinux")]
    Btf(#[source] aya::BtfError),
    /// A program failed to load or attach.
    #[error("`{call}` of program `{program}` failed")]
    Program {
        /// `load` or `attach`.
        call: &'static str,
        /// The program's name.
        program: String,
        /// The error (with the verifier log when there is one).
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map is missing from the object or has the wrong type.
    #[error("map `{0}` is missing from the eBPF object")]
    MissingMap(&'static str),
    /// A map operation failed.
    #[error("map `{map}`: operation failed")]
    Map {
        /// The map.
        map: &'static str,
        /// The error.
        #[source]
        source: aya::maps::MapError,
    },
    /// A system call failed.
    #[error("`{call}` failed")]
    Syscall {
        /// The call (`poll`, `mount tracefs`).
        call: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
