//! Typed events: what [`crate::EventSource`] delivers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::layout::{RawEvent, kind};

/// The syscall (or scheduler event) an event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs, reason = "each variant is the syscall of the same name")]
pub enum Syscall {
    Execve,
    Fork,
    Exit,
    Open,
    Openat,
    Openat2,
    Socket,
    Connect,
    Bind,
    Listen,
    Accept,
    Accept4,
    Unlink,
    Unlinkat,
    Rmdir,
    Rename,
    Renameat,
    Renameat2,
    Chmod,
    Fchmodat,
    Chown,
    Lchown,
    Fchownat,
    Mkdir,
    Mkdirat,
    Chdir,
    Fchdir,
    /// A syscall reported by the syscall filter, by its x86_64 number.
    Numbered(u16),
}

impl Syscall {
    /// The syscall's name, lowercase (`openat`), as syscall rules name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Execve => "execve",
            Self::Fork => "fork",
            Self::Exit => "exit",
            Self::Open => "open",
            Self::Openat => "openat",
            Self::Openat2 => "openat2",
            Self::Socket => "socket",
            Self::Connect => "connect",
            Self::Bind => "bind",
            Self::Listen => "listen",
            Self::Accept => "accept",
            Self::Accept4 => "accept4",
            Self::Unlink => "unlink",
            Self::Unlinkat => "unlinkat",
            Self::Rmdir => "rmdir",
            Self::Rename => "rename",
            Self::Renameat => "renameat",
            Self::Renameat2 => "renameat2",
            Self::Chmod => "chmod",
            Self::Fchmodat => "fchmodat",
            Self::Chown => "chown",
            Self::Lchown => "lchown",
            Self::Fchownat => "fchownat",
            Self::Mkdir => "mkdir",
            Self::Mkdirat => "mkdirat",
            Self::Chdir => "chdir",
            Self::Fchdir => "fchdir",
            Self::Numbered(nr) => armor_core::syscalls::name(nr).unwrap_or("unknown"),
        }
    }

    /// KubeArmor's spelling in `Data` (`SYS_OPENAT`).
    pub fn kubearmor_name(self) -> String {
        format!("SYS_{}", self.name().to_ascii_uppercase())
    }

    fn from_kind(k: u32) -> Option<Self> {
        Some(match k {
            kind::EXEC => Self::Execve,
            kind::FORK => Self::Fork,
            kind::EXIT => Self::Exit,
            kind::OPEN => Self::Open,
            kind::OPENAT => Self::Openat,
            kind::OPENAT2 => Self::Openat2,
            kind::SOCKET => Self::Socket,
            kind::CONNECT => Self::Connect,
            kind::BIND => Self::Bind,
            kind::LISTEN => Self::Listen,
            kind::ACCEPT => Self::Accept,
            kind::ACCEPT4 => Self::Accept4,
            kind::UNLINK => Self::Unlink,
            kind::UNLINKAT => Self::Unlinkat,
            kind::RMDIR => Self::Rmdir,
            kind::RENAME => Self::Rename,
            kind::RENAMEAT => Self::Renameat,
            kind::RENAMEAT2 => Self::Renameat2,
            kind::CHMOD => Self::Chmod,
            kind::FCHMODAT => Self::Fchmodat,
            kind::CHOWN => Self::Chown,
            kind::LCHOWN => Self::Lchown,
            kind::FCHOWNAT => Self::Fchownat,
            kind::MKDIR => Self::Mkdir,
            kind::MKDIRAT => Self::Mkdirat,
            kind::CHDIR => Self::Chdir,
            kind::FCHDIR => Self::Fchdir,
            _ => return None,
        })
    }
}

/// A socket address as the caller passed it (or the kernel returned it, for accept).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SockAddr {
    /// `AF_INET` / `AF_INET6`.
    Inet {
        /// The address.
        ip: IpAddr,
        /// The port.
        port: u16,
    },
    /// `AF_UNIX` (abstract names start with `@`).
    Unix {
        /// The path (truncated to what fits the record).
        path: String,
    },
    /// Another family.
    Other {
        /// `sa_family`.
        family: u16,
    },
}

impl SockAddr {
    /// Decodes a `struct sockaddr` prefix; `None` for an empty one.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let family = u16::from_ne_bytes([*b.first()?, *b.get(1)?]);
        let port = || {
            u16::from_be_bytes([
                b.get(2).copied().unwrap_or(0),
                b.get(3).copied().unwrap_or(0),
            ])
        };
        match family {
            0 => None,
            2 => {
                let ip = b.get(4..8)?;
                Some(Self::Inet {
                    ip: IpAddr::V4(Ipv4Addr::new(
                        *ip.first()?,
                        *ip.get(1)?,
                        *ip.get(2)?,
                        *ip.get(3)?,
                    )),
                    port: port(),
                })
            }
            10 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b.get(8..24)?);
                Some(Self::Inet {
                    ip: IpAddr::V6(Ipv6Addr::from(a)),
                    port: port(),
                })
            }
            1 => {
                let raw = b.get(2..).unwrap_or(&[]);
                let path = match raw.split_first() {
                    Some((0, rest)) => {
                        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
                        format!(
                            "@{}",
                            String::from_utf8_lossy(rest.get(..end).unwrap_or(&[]))
                        )
                    }
                    _ => {
                        let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
                        String::from_utf8_lossy(raw.get(..end).unwrap_or(&[])).into_owned()
                    }
                };
                Some(Self::Unix { path })
            }
            f => Some(Self::Other { family: f }),
        }
    }

    /// The address family.
    pub fn family(&self) -> u16 {
        match self {
            Self::Inet {
                ip: IpAddr::V4(_), ..
            } => 2,
            Self::Inet {
                ip: IpAddr::V6(_), ..
            } => 10,
            Self::Unix { .. } => 1,
            Self::Other { family } => *family,
        }
    }
}

/// A file operation's arguments, paths made absolute (see [`crate::path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileOp {
    /// The path, absolute and normalised when it could be resolved, else as passed.
    pub path: String,
    /// The path as the caller passed it.
    pub raw_path: String,
    /// The directory fd (`-100` = `AT_FDCWD`).
    pub dirfd: i32,
    /// Open flags (open*), `AT_*` flags (unlinkat, fchownat), rename flags (renameat2).
    pub flags: u64,
    /// Mode (open with `O_CREAT`, chmod, mkdir).
    pub mode: u32,
    /// The second path of a rename, resolved like `path`.
    pub target: Option<String>,
    /// New owner of a chown (`uid`, `gid`; `u32::MAX` = unchanged).
    pub owner: Option<(u32, u32)>,
}

impl FileOp {
    /// A file operation on `path` (already absolute: also the raw path) from `dirfd` with
    /// `flags`, no mode, target or owner: the start of one built by hand (tests, replays).
    pub fn new(path: impl Into<String>, dirfd: i32, flags: u64) -> Self {
        let path = path.into();
        Self {
            raw_path: path.clone(),
            path,
            dirfd,
            flags,
            mode: 0,
            target: None,
            owner: None,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A successful exec: the new image and its argv.
    Exec {
        /// The executed file (resolved through `/proc/PID/exe` when possible).
        path: String,
        /// The file name as passed to execve.
        filename: String,
        /// Arguments (the kernel copies the first 255 bytes).
        argv: Vec<String>,
        /// The arguments after the program name, exactly (empty ones kept), when the whole
        /// argv was copied; `None` when it was longer than the copy.
        args: Option<Vec<String>>,
    },
    /// A new process (`pid` is the child).
    Fork,
    /// The process ended.
    Exit {
        /// The exit status (wait encoding).
        code: i64,
    },
    /// The working directory changed (`chdir`, `fchdir`); kept for path resolution.
    Chdir {
        /// The new directory, absolute when it could be resolved.
        path: String,
    },
    /// A file operation (open*, unlink*, rmdir, rename*, chmod*, chown*, mkdir*).
    File(FileOp),
    /// `socket(2)`.
    Socket {
        /// `AF_*`.
        family: u16,
        /// `SOCK_*` without `SOCK_NONBLOCK`/`SOCK_CLOEXEC`.
        sock_type: u16,
        /// `IPPROTO_*`.
        protocol: u16,
    },
    /// A syscall a workload's syscall rules name (reported by the syscall filter whatever the
    /// workload's visibility).
    Named {
        /// Its path argument, made absolute when it could be resolved, when it has one
        /// ([`armor_core::syscalls::path_argument`]).
        path: Option<String>,
        /// Its first five arguments as they were passed.
        args: [u64; 5],
    },
    /// `connect`, `bind`, `listen`, `accept`, `accept4`.
    Net {
        /// The socket fd.
        fd: i32,
        /// The address (connect/bind: requested; accept: the peer).
        addr: Option<SockAddr>,
        /// `listen`'s backlog.
        backlog: Option<i32>,
    },
}

/// One event from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Monotonic timestamp (ns).
    pub ts_ns: u64,
    /// The cgroup v2 id of the acting task's workload: the nearest of its own cgroup and its
    /// ancestors that has a visibility entry ([`crate::Controls::set_visibility`]; a
    /// container's sub-cgroups at any depth are the container's), else the task's own.
    pub cgroup_id: u64,
    /// The syscall.
    pub syscall: Syscall,
    /// Host tgid (fork: the child).
    pub pid: u32,
    /// Host thread id.
    pub tid: u32,
    /// Host tgid of the parent.
    pub ppid: u32,
    /// tgid in the task's pid namespace.
    pub ns_pid: u32,
    /// Parent tgid in the parent's pid namespace.
    pub ns_ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// pid namespace inode.
    pub pid_ns: u32,
    /// mount namespace inode.
    pub mnt_ns: u32,
    /// `comm` (15 bytes).
    pub comm: String,
    /// The return value (negative errno on failure); exec/fork/exit: 0.
    pub ret: i64,
    /// The operation.
    pub kind: EventKind,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn i32_of(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(-1)
}

fn u32_of(v: i64) -> u32 {
    u32::from_ne_bytes(i32::try_from(v).unwrap_or(-1).to_ne_bytes())
}

impl Event {
    /// An event of `syscall` with `kind`, every id and the return value zero and no `comm`:
    /// the start of an event built by hand (tests, replays).
    pub fn new(syscall: Syscall, kind: EventKind) -> Self {
        Self {
            ts_ns: 0,
            cgroup_id: 0,
            syscall,
            pid: 0,
            tid: 0,
            ppid: 0,
            ns_pid: 0,
            ns_ppid: 0,
            uid: 0,
            gid: 0,
            pid_ns: 0,
            mnt_ns: 0,
            comm: String::new(),
            ret: 0,
            kind,
        }
    }

    /// Builds the typed event. `resolve(pid, dirfd, path)` makes paths absolute (the source
    /// passes [`crate::path::resolve`]); `exe(raw, filename)` names the executed image given
    /// the exec's file name made absolute.
    pub fn from_raw(
        raw: &RawEvent,
        resolve: &mut dyn FnMut(u32, i32, &str) -> String,
        exe: &mut dyn FnMut(&RawEvent, &str) -> String,
    ) -> Option<Self> {
        let a = raw.args;
        let syscall = if raw.kind == kind::SYSCALL {
            Syscall::Numbered(u16::try_from(a[0]).ok()?)
        } else {
            Syscall::from_kind(raw.kind)?
        };
        let path = lossy(&raw.path);
        let kind = match raw.kind {
            kind::EXEC => {
                let argv = raw
                    .path2
                    .split(|&c| c == 0)
                    .filter(|s| !s.is_empty())
                    .map(lossy)
                    .collect();
                // The argv area is the strings, each ending in NUL: complete when it all fit.
                let copied = usize::try_from(a[0]).unwrap_or(0).min(raw.path2.len());
                let whole = usize::try_from(a[2]).unwrap_or(usize::MAX);
                let args = (copied > 0 && whole == copied)
                    .then(|| raw.path2.get(..copied))
                    .flatten()
                    .and_then(|b| b.strip_suffix(&[0]))
                    .map(|b| b.split(|&c| c == 0).skip(1).map(lossy).collect());
                let absolute = resolve(raw.pid, -100, &path);
                let resolved = exe(raw, &absolute);
                // A script's (or binfmt_misc's) argv is the interpreter's, not the caller's: the
                // program that runs is not the file named, so the caller's arguments are unknown.
                let base = |p: &str| p.rsplit('/').next().map(str::to_owned);
                let args = if base(&resolved) == base(&absolute) {
                    args
                } else {
                    None
                };
                EventKind::Exec {
                    path: resolved,
                    filename: path,
                    argv,
                    args,
                }
            }
            kind::FORK => EventKind::Fork,
            kind::EXIT => EventKind::Exit { code: raw.ret },
            kind::SYSCALL => {
                let args =
                    [a[1], a[2], a[3], a[4], a[5]].map(|v| u64::from_ne_bytes(v.to_ne_bytes()));
                let path = armor_core::syscalls::path_argument(syscall.name()).map(|(_, dirfd)| {
                    let fd = dirfd.and_then(|d| args.get(d)).map_or(-100, |&v| {
                        // An `int` argument: the register's low 32 bits.
                        let low = u32::try_from(v & 0xffff_ffff).unwrap_or(0);
                        i32::from_ne_bytes(low.to_ne_bytes())
                    });
                    resolve(raw.pid, fd, &path)
                });
                EventKind::Named { path, args }
            }
            kind::SOCKET => EventKind::Socket {
                family: u16::try_from(a[0]).unwrap_or(0),
                sock_type: u16::try_from(a[1] & 0xf).unwrap_or(0),
                protocol: u16::try_from(a[2]).unwrap_or(0),
            },
            kind::CONNECT | kind::BIND | kind::ACCEPT | kind::ACCEPT4 => EventKind::Net {
                fd: i32_of(a[0]),
                addr: SockAddr::decode(&raw.addr),
                backlog: None,
            },
            kind::CHDIR => EventKind::Chdir {
                path: resolve(raw.pid, -100, &path),
            },
            kind::FCHDIR => EventKind::Chdir {
                path: resolve(raw.pid, i32_of(a[0]), ""),
            },
            kind::LISTEN => EventKind::Net {
                fd: i32_of(a[0]),
                addr: None,
                backlog: Some(i32_of(a[1])),
            },
            k => {
                let dirfd = i32_of(a[0]);
                let resolved = resolve(raw.pid, dirfd, &path);
                let (flags, mode, target, owner) = match k {
                    kind::OPEN | kind::OPENAT | kind::OPENAT2 => (
                        u64::from_ne_bytes(a[1].to_ne_bytes()),
                        u32_of(a[2]),
                        None,
                        None,
                    ),
                    kind::UNLINKAT => (u64::from_ne_bytes(a[1].to_ne_bytes()), 0, None, None),
                    kind::RENAME | kind::RENAMEAT | kind::RENAMEAT2 => {
                        let t = resolve(raw.pid, i32_of(a[1]), &lossy(&raw.path2));
                        (u64::from_ne_bytes(a[2].to_ne_bytes()), 0, Some(t), None)
                    }
                    kind::CHMOD | kind::FCHMODAT | kind::MKDIR | kind::MKDIRAT => {
                        (0, u32_of(a[1]), None, None)
                    }
                    kind::CHOWN | kind::LCHOWN | kind::FCHOWNAT => (
                        u64::from_ne_bytes(a[3].to_ne_bytes()),
                        0,
                        None,
                        Some((u32_of(a[1]), u32_of(a[2]))),
                    ),
                    _ => (0, 0, None, None),
                };
                EventKind::File(FileOp {
                    path: resolved,
                    raw_path: path,
                    dirfd,
                    flags,
                    mode,
                    target,
                    owner,
                })
            }
        };
        Some(Self {
            ts_ns: raw.ts_ns,
            cgroup_id: raw.cgroup_id,
            syscall,
            pid: raw.pid,
            tid: raw.tid,
            ppid: raw.ppid,
            ns_pid: raw.ns_pid,
            ns_ppid: raw.ns_ppid,
            uid: raw.uid,
            gid: raw.gid,
            pid_ns: raw.pid_ns,
            mnt_ns: raw.mnt_ns,
            comm: raw.comm.clone(),
            ret: raw.ret,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_record(area: &[u8], whole: i64) -> RawEvent {
        RawEvent {
            ts_ns: 0,
            cgroup_id: 1,
            kind: kind::EXEC,
            pid: 10,
            tid: 10,
            ppid: 1,
            uid: 0,
            gid: 0,
            pid_ns: 1,
            mnt_ns: 1,
            ns_pid: 10,
            ns_ppid: 1,
            ret: 0,
            args: [i64::try_from(area.len()).unwrap_or(0), 10, whole, 0, 0, 0],
            comm: "ls".into(),
            addr: [0; crate::layout::ADDR_MAX],
            path: b"/bin/ls".to_vec(),
            path2: area.to_vec(),
        }
    }

    #[test]
    fn exec_arguments_are_exact_when_the_whole_argv_was_copied() {
        let args = |area: &[u8], whole: i64| {
            let raw = exec_record(area, whole);
            match Event::from_raw(&raw, &mut |_, _, p| p.to_owned(), &mut |_, p| p.to_owned())
                .map(|e| e.kind)
            {
                Some(EventKind::Exec { args, .. }) => args,
                other => panic!("{other:?}"),
            }
        };
        // An empty argument is an argument; argv[0] is not.
        assert_eq!(
            args(b"ls\0-l\0\0x\0", 9),
            Some(vec!["-l".to_owned(), String::new(), "x".to_owned()])
        );
        assert_eq!(args(b"ls\0", 3), Some(vec![]));
        // Longer than the copy: unknown.
        assert_eq!(args(b"ls\0-l\0", 300), None);
    }

    #[test]
    fn sockaddrs() {
        let mut b = [0u8; 32];
        b[..2].copy_from_slice(&2u16.to_ne_bytes());
        b[2..4].copy_from_slice(&8080u16.to_be_bytes());
        b[4..8].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(
            SockAddr::decode(&b),
            Some(SockAddr::Inet {
                ip: "10.0.0.1".parse().unwrap(),
                port: 8080
            })
        );
        let mut u = [0u8; 32];
        u[..2].copy_from_slice(&1u16.to_ne_bytes());
        u[2..10].copy_from_slice(b"/run/s\0\0");
        assert_eq!(
            SockAddr::decode(&u),
            Some(SockAddr::Unix {
                path: "/run/s".into()
            })
        );
        assert_eq!(SockAddr::decode(&[0u8; 32]), None);
        assert_eq!(Syscall::Unlinkat.kubearmor_name(), "SYS_UNLINKAT");
    }
}
