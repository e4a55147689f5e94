//! Operations the engine decides.
//!
//! An [`Event`] is one operation with its actor (the acting executable and uid). Paths must be
//! what the kernel sees: absolute and resolved (no symlinks, no `.`/`..`). The engine trims a
//! trailing `/` (except on `/` itself) and otherwise takes paths as given.

use std::fmt;

/// Access requested by a file operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct Access {
    /// The operation reads.
    pub read: bool,
    /// The operation writes (including create, append, truncate, unlink, rename, link, chmod, chown).
    pub write: bool,
}

impl Access {
    /// Read only.
    pub const READ: Self = Self {
        read: true,
        write: false,
    };
    /// Write only.
    pub const WRITE: Self = Self {
        read: false,
        write: true,
    };
    /// Read and write (`O_RDWR`).
    pub const READ_WRITE: Self = Self {
        read: true,
        write: true,
    };

    /// The access an `open(2)` with these flags requests. Flags are the names KubeArmor prints
    /// (`O_WRONLY|O_CREAT|O_CLOEXEC`); unknown names are ignored.
    pub fn from_open_flags(flags: &str) -> Self {
        let mut write_only = false;
        let mut rdwr = false;
        let mut writes = false;
        for f in flags.split(['|', ',', ' ']).map(str::trim) {
            match f {
                "O_WRONLY" => write_only = true,
                "O_RDWR" => rdwr = true,
                "O_APPEND" | "O_TRUNC" | "O_CREAT" => writes = true,
                _ => {}
            }
        }
        if rdwr {
            Self::READ_WRITE
        } else if write_only {
            Self::WRITE
        } else if writes {
            Self::READ_WRITE
        } else {
            Self::READ
        }
    }

    /// The access an `open(2)` with these numeric flags requests (x86_64 values).
    pub fn from_open_bits(flags: u32) -> Self {
        const O_WRONLY: u32 = 0o1;
        const O_RDWR: u32 = 0o2;
        const O_CREAT: u32 = 0o100;
        const O_TRUNC: u32 = 0o1000;
        const O_APPEND: u32 = 0o2000;
        match flags & 0o3 {
            O_WRONLY => Self::WRITE,
            O_RDWR => Self::READ_WRITE,
            _ if flags & (O_CREAT | O_TRUNC | O_APPEND) != 0 => Self::READ_WRITE,
            _ => Self::READ,
        }
    }
}

/// A socket's family, type and protocol, as numbers (Linux values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Socket {
    /// `AF_*`.
    pub family: u16,
    /// `SOCK_*` (without `SOCK_NONBLOCK`/`SOCK_CLOEXEC`).
    pub sock_type: u16,
    /// `IPPROTO_*`; 0 means "the family's default for the type".
    pub protocol: u16,
}

/// Linux socket constants the engine understands.
pub mod net {
    /// `AF_UNIX`.
    pub const AF_UNIX: u16 = 1;
    /// `AF_INET`.
    pub const AF_INET: u16 = 2;
    /// `AF_INET6`.
    pub const AF_INET6: u16 = 10;
    /// `AF_NETLINK`.
    pub const AF_NETLINK: u16 = 16;
    /// `AF_PACKET`.
    pub const AF_PACKET: u16 = 17;
    /// `SOCK_STREAM`.
    pub const SOCK_STREAM: u16 = 1;
    /// `SOCK_DGRAM`.
    pub const SOCK_DGRAM: u16 = 2;
    /// `SOCK_RAW`.
    pub const SOCK_RAW: u16 = 3;
    /// `SOCK_RDM`.
    pub const SOCK_RDM: u16 = 4;
    /// `SOCK_SEQPACKET`.
    pub const SOCK_SEQPACKET: u16 = 5;
    /// `SOCK_DCCP`.
    pub const SOCK_DCCP: u16 = 6;
    /// `SOCK_PACKET`.
    pub const SOCK_PACKET: u16 = 10;
    /// `IPPROTO_ICMP`.
    pub const IPPROTO_ICMP: u16 = 1;
    /// `IPPROTO_TCP`.
    pub const IPPROTO_TCP: u16 = 6;
    /// `IPPROTO_UDP`.
    pub const IPPROTO_UDP: u16 = 17;
    /// `IPPROTO_ICMPV6`.
    pub const IPPROTO_ICMPV6: u16 = 58;
    /// `IPPROTO_SCTP`.
    pub const IPPROTO_SCTP: u16 = 132;

    /// Parses `AF_INET`, `SOCK_RAW`, `TCP`/`IPPROTO_TCP`, or a number.
    pub fn parse_constant(s: &str) -> Option<u16> {
        if let Ok(n) = s.parse::<u16>() {
            return Some(n);
        }
        let up = s.trim().to_ascii_uppercase();
        let bare = up.strip_prefix("IPPROTO_").unwrap_or(&up);
        Some(match bare {
            "AF_UNIX" | "AF_LOCAL" => AF_UNIX,
            "AF_INET" => AF_INET,
            "AF_INET6" => AF_INET6,
            "AF_NETLINK" => AF_NETLINK,
            "AF_PACKET" => AF_PACKET,
            "SOCK_STREAM" => SOCK_STREAM,
            "SOCK_DGRAM" => SOCK_DGRAM,
            "SOCK_RAW" => SOCK_RAW,
            "SOCK_RDM" => SOCK_RDM,
            "SOCK_SEQPACKET" => SOCK_SEQPACKET,
            "SOCK_DCCP" => SOCK_DCCP,
            "SOCK_PACKET" => SOCK_PACKET,
            "ICMP" => IPPROTO_ICMP,
            "TCP" => IPPROTO_TCP,
            "UDP" => IPPROTO_UDP,
            "ICMPV6" => IPPROTO_ICMPV6,
            "SCTP" => IPPROTO_SCTP,
            "IP" | "0" => 0,
            _ => return None,
        })
    }
}

impl Socket {
    /// A socket with these numbers.
    pub fn new(family: u16, sock_type: u16, protocol: u16) -> Self {
        Self {
            family,
            sock_type,
            protocol,
        }
    }

    /// The protocol after applying the family's default for protocol 0
    /// (`AF_INET`/`AF_INET6`: stream → TCP, dgram → UDP).
    pub fn effective_protocol(&self) -> u16 {
        if self.protocol != 0 {
            return self.protocol;
        }
        match (self.family, self.sock_type) {
            (net::AF_INET | net::AF_INET6, net::SOCK_STREAM) => net::IPPROTO_TCP,
            (net::AF_INET | net::AF_INET6, net::SOCK_DGRAM) => net::IPPROTO_UDP,
            _ => 0,
        }
    }
}

/// One operation, without its actor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Executing a file.
    Process {
        /// Resolved path of the executed file.
        path: String,
        /// Owner uid of the executed file, if known.
        owner: Option<u32>,
    },
    /// Accessing a file.
    File {
        /// Resolved path.
        path: String,
        /// What is requested.
        access: Access,
        /// Owner uid of the file, if known.
        owner: Option<u32>,
    },
    /// Creating, connecting or accepting a socket.
    Network(Socket),
    /// Using a capability (`CAP_*` number).
    Capability(u8),
    /// A syscall named in syscall rules.
    Syscall {
        /// The syscall name, lowercase without `sys_` (`unlinkat`).
        name: String,
        /// The path argument, when the syscall has one.
        path: Option<String>,
    },
    /// Making memory that is no named file executable: an `mmap` with `PROT_EXEC` of anonymous
    /// memory or of a file that has no name (memfd, unlinked), or an `mprotect` adding
    /// `PROT_EXEC` to such a mapping. Only the `anonymousMapExec` preset decides it; it is a
    /// File operation (KubeArmor's `Operation`) outside the file posture (see the manual's
    /// presets section).
    ExecMemory {
        /// `mprotect` (else `mmap`).
        mprotect: bool,
    },
}

/// What an enforcer's hook knows about an operation beyond its target, and the presets decide
/// on. The monitor's events do not carry them (all `false`): only an enforcer that checks them
/// in the kernel alerts a preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct Facts {
    /// Process: the executed file has no name in any filesystem (a memfd, an unlinked file, an
    /// `O_TMPFILE` file): its link count is 0.
    pub fileless: bool,
    /// The acting process has a controlling terminal (an interactive session, `kubectl exec
    /// -it`).
    pub tty: bool,
    /// File: the file is a per-process entry of procfs (`/proc/<pid>/…`,
    /// `/proc/<pid>/task/<tid>/…`) of a process other than the actor's own thread group.
    pub other_process: bool,
}

/// The category of an operation: which rules and which posture apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Category {
    /// Process rules; file posture.
    Process,
    /// File rules; file posture.
    File,
    /// Network rules; network posture.
    Network,
    /// Capability rules; capabilities posture.
    Capabilities,
    /// Syscall rules (audit only).
    Syscall,
}

impl Category {
    /// The KubeArmor `Operation` string.
    pub fn operation_name(self) -> &'static str {
        match self {
            Self::Process => "Process",
            Self::File => "File",
            Self::Network => "Network",
            Self::Capabilities => "Capabilities",
            Self::Syscall => "Syscall",
        }
    }

    /// All categories, in a fixed order.
    pub const ALL: [Category; 5] = [
        Self::Process,
        Self::File,
        Self::Network,
        Self::Capabilities,
        Self::Syscall,
    ];

    /// The categories with a default posture and an allow-list mode, in a fixed order: the
    /// index of one is its [`Category::posture_index`].
    pub const WITH_POSTURE: [Category; 4] =
        [Self::Process, Self::File, Self::Network, Self::Capabilities];

    /// The category's position in [`Category::ALL`] (for tables indexed by category).
    pub fn index(self) -> usize {
        match self {
            Self::Process => 0,
            Self::File => 1,
            Self::Network => 2,
            Self::Capabilities => 3,
            Self::Syscall => 4,
        }
    }

    /// The category's position in [`Category::WITH_POSTURE`]; `None` for syscalls, which have
    /// no posture (enforcers keep per-category posture and allow-list flags indexed by it).
    pub fn posture_index(self) -> Option<usize> {
        match self {
            Self::Syscall => None,
            other => Some(other.index()),
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.operation_name())
    }
}

impl Operation {
    /// The category of this operation.
    pub fn category(&self) -> Category {
        match self {
            Self::Process { .. } => Category::Process,
            Self::File { .. } => Category::File,
            Self::Network(_) => Category::Network,
            Self::Capability(_) => Category::Capabilities,
            Self::Syscall { .. } => Category::Syscall,
            Self::ExecMemory { .. } => Category::File,
        }
    }

    /// Whether the category's allow-list mode and default posture apply to the operation when
    /// no rule covers it: not for [`Operation::ExecMemory`], which no rule but a preset names.
    pub fn under_posture(&self) -> bool {
        !matches!(self, Self::ExecMemory { .. })
    }
}

/// One operation and who performs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Event {
    /// What is done.
    pub operation: Operation,
    /// The acting executable (for Process operations: the caller's image before the exec).
    pub source: Option<String>,
    /// The acting uid.
    pub uid: u32,
    /// What the hook knows beyond the target (presets decide on it).
    pub facts: Facts,
    /// Process: the arguments after the program name (`argv[1..]`), when known. Rules with
    /// `allowedArgs` decide on them; unknown arguments are never within a rule's allowed ones.
    pub args: Option<Vec<String>>,
}

impl Event {
    /// `source` executes `path`.
    pub fn exec(path: impl Into<String>, source: Option<&str>) -> Self {
        Self {
            operation: Operation::Process {
                path: path.into(),
                owner: None,
            },
            source: source.map(str::to_string),
            uid: 0,
            facts: Facts::default(),
            args: None,
        }
    }

    /// `source` opens `path` with `access`.
    pub fn open(path: impl Into<String>, access: Access, source: Option<&str>) -> Self {
        Self {
            operation: Operation::File {
                path: path.into(),
                access,
                owner: None,
            },
            source: source.map(str::to_string),
            uid: 0,
            facts: Facts::default(),
            args: None,
        }
    }

    /// `source` creates a socket.
    pub fn socket(socket: Socket, source: Option<&str>) -> Self {
        Self {
            operation: Operation::Network(socket),
            source: source.map(str::to_string),
            uid: 0,
            facts: Facts::default(),
            args: None,
        }
    }

    /// `source` uses capability number `cap`.
    pub fn capability(cap: u8, source: Option<&str>) -> Self {
        Self {
            operation: Operation::Capability(cap),
            source: source.map(str::to_string),
            uid: 0,
            facts: Facts::default(),
            args: None,
        }
    }

    /// `source` calls syscall `name`, optionally on `path`.
    pub fn syscall(name: impl Into<String>, path: Option<&str>, source: Option<&str>) -> Self {
        Self {
            operation: Operation::Syscall {
                name: name.into(),
                path: path.map(str::to_string),
            },
            source: source.map(str::to_string),
            uid: 0,
            facts: Facts::default(),
            args: None,
        }
    }

    /// `source` makes anonymous memory executable (`mmap`, or `mprotect` when `mprotect`).
    pub fn exec_memory(mprotect: bool, source: Option<&str>) -> Self {
        Self {
            operation: Operation::ExecMemory { mprotect },
            source: source.map(str::to_string),
            uid: 0,
            facts: Facts::default(),
            args: None,
        }
    }

    /// The same event with these arguments after the program name (`argv[1..]`).
    #[must_use]
    pub fn with_args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// The same event with these facts.
    #[must_use]
    pub fn with_facts(mut self, facts: Facts) -> Self {
        self.facts = facts;
        self
    }

    /// The same event performed by `uid`.
    #[must_use]
    pub fn with_uid(mut self, uid: u32) -> Self {
        self.uid = uid;
        self
    }

    /// The same event on a file (or executable) owned by `owner`.
    #[must_use]
    pub fn with_owner(mut self, owner: u32) -> Self {
        match &mut self.operation {
            Operation::Process { owner: o, .. } | Operation::File { owner: o, .. } => {
                *o = Some(owner)
            }
            _ => {}
        }
        self
    }
}

/// Capability names and numbers (Linux).
pub mod caps {
    /// `(name without CAP_, lowercase; number)` for every capability the CRD names, plus newer ones.
    pub const CAPABILITIES: &[(&str, u8)] = &[
        ("chown", 0),
        ("dac_override", 1),
        ("dac_read_search", 2),
        ("fowner", 3),
        ("fsetid", 4),
        ("kill", 5),
        ("setgid", 6),
        ("setuid", 7),
        ("setpcap", 8),
        ("linux_immutable", 9),
        ("net_bind_service", 10),
        ("net_broadcast", 11),
        ("net_admin", 12),
        ("net_raw", 13),
        ("ipc_lock", 14),
        ("ipc_owner", 15),
        ("sys_module", 16),
        ("sys_rawio", 17),
        ("sys_chroot", 18),
        ("sys_ptrace", 19),
        ("sys_pacct", 20),
        ("sys_admin", 21),
        ("sys_boot", 22),
        ("sys_nice", 23),
        ("sys_resource", 24),
        ("sys_time", 25),
        ("sys_tty_config", 26),
        ("mknod", 27),
        ("lease", 28),
        ("audit_write", 29),
        ("audit_control", 30),
        ("setfcap", 31),
        ("mac_override", 32),
        ("mac_admin", 33),
        ("syslog", 34),
        ("wake_alarm", 35),
        ("block_suspend", 36),
        ("audit_read", 37),
        ("perfmon", 38),
        ("bpf", 39),
        ("checkpoint_restore", 40),
    ];

    /// The number of `name` (`net_raw`, `NET_RAW`, `CAP_NET_RAW` all work).
    pub fn number(name: &str) -> Option<u8> {
        let lower = name.trim().to_ascii_lowercase();
        let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
        CAPABILITIES
            .iter()
            .find(|(n, _)| *n == bare)
            .map(|(_, v)| *v)
    }

    /// `CAP_NET_RAW` for 13.
    pub fn name(number: u8) -> Option<String> {
        CAPABILITIES
            .iter()
            .find(|(_, v)| *v == number)
            .map(|(n, _)| format!("CAP_{}", n.to_ascii_uppercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags() {
        assert_eq!(Access::from_open_flags("O_RDONLY|O_CLOEXEC"), Access::READ);
        assert_eq!(Access::from_open_flags("O_WRONLY|O_CREAT"), Access::WRITE);
        assert_eq!(Access::from_open_flags("O_RDWR"), Access::READ_WRITE);
        assert_eq!(
            Access::from_open_flags("O_RDONLY|O_APPEND"),
            Access::READ_WRITE
        );
        assert_eq!(Access::from_open_bits(0o101), Access::WRITE);
        assert_eq!(Access::from_open_bits(0), Access::READ);
        assert_eq!(Access::from_open_bits(0o1000), Access::READ_WRITE);
    }

    #[test]
    fn implied_protocols_and_caps() {
        assert_eq!(
            Socket::new(net::AF_INET, net::SOCK_STREAM, 0).effective_protocol(),
            net::IPPROTO_TCP
        );
        assert_eq!(
            Socket::new(net::AF_UNIX, net::SOCK_STREAM, 0).effective_protocol(),
            0
        );
        assert_eq!(caps::number("CAP_NET_RAW"), Some(13));
        assert_eq!(caps::name(13).as_deref(), Some("CAP_NET_RAW"));
        assert_eq!(net::parse_constant("IPPROTO_ICMP"), Some(1));
    }
}
