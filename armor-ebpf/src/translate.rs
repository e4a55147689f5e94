//! From a kernel [`Event`] to what the monitor needs: the KubeArmor fields of its log (operation,
//! resource, data, result) and the [`armor_core::Event`]s the engine decides for it.
//!
//! [`Translator`] keeps the one piece of state this needs: which socket a process's file
//! descriptor is (from `socket`'s return value), so that a `connect` or `bind` on it is decided
//! by the socket's family, type and protocol. The table is bounded.
//!
//! ```
//! use armor_ebpf::translate::Translator;
//! use armor_ebpf::{Event, EventKind, ProcessTree, Syscall};
//! let mut t = Translator::default();
//! let mut ev = Event::new(
//!     Syscall::Socket,
//!     EventKind::Socket { family: 2, sock_type: 1, protocol: 0 },
//! );
//! ev.ret = 3;
//! let tr = t.translate(&ev, &ProcessTree::new()).unwrap();
//! assert_eq!(tr.resource, "domain=AF_INET type=SOCK_STREAM protocol=TCP");
//! assert_eq!(tr.data, "syscall=SYS_SOCKET");
//! ```

use std::collections::HashMap;

use armor_core::event::{Access, Category, Socket};
use armor_core::telemetry::format;

use crate::event::{Event, EventKind, SockAddr, Syscall};
use crate::proctree::ProcessTree;

/// Sockets remembered at most; the table is cleared when it would grow past this (a lost
/// `close` must not grow it for ever).
pub const MAX_SOCKETS: usize = 65_536;

/// What one kernel event means to the monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Translation {
    /// The log's `Operation`: process, file or network.
    pub operation: Category,
    /// The log's `Resource` (the executable's argv, a path, a socket's description).
    pub resource: String,
    /// The log's `Data` (`syscall=SYS_OPENAT fd=-100 flags=O_RDONLY`).
    pub data: String,
    /// The log's `Result` (`Passed`, or the errno's text).
    pub result: String,
    /// The acting program for the log's `ProcessName` when it differs from the process tree's
    /// (an exec: the new program).
    pub process_name: Option<String>,
    /// The log's `Source`: the acting executable (for an exec, its parent's).
    pub source: Option<String>,
    /// The operations to decide, each with the `Operation` its alert reports.
    pub decide: Vec<(armor_core::Event, Category)>,
}

/// Turns kernel events into [`Translation`]s, remembering sockets by (pid, fd).
#[derive(Debug, Default)]
pub struct Translator {
    sockets: HashMap<(u32, i32), Socket>,
}

/// `syscall=SYS_X` followed by `extra` when there is any.
fn data(syscall: Syscall, extra: &str) -> String {
    if extra.is_empty() {
        format!("syscall={}", syscall.kubearmor_name())
    } else {
        format!("syscall={} {extra}", syscall.kubearmor_name())
    }
}

impl Translator {
    /// The translation of `ev`, whose process (and parent) `tree` knows; `None` for events the
    /// monitor does not report (fork, exit, chdir).
    pub fn translate(&mut self, ev: &Event, tree: &ProcessTree) -> Option<Translation> {
        let exe = tree.get(ev.pid).map(|p| p.exe.clone());
        let mut t = match &ev.kind {
            EventKind::Exec {
                path, argv, args, ..
            } => exec(ev, tree, path, argv, args.as_deref()),
            EventKind::File(f) => {
                let open = matches!(
                    ev.syscall,
                    Syscall::Open | Syscall::Openat | Syscall::Openat2
                );
                let access = if open {
                    Access::from_open_bits(u32::try_from(f.flags & 0xffff_ffff).unwrap_or(0))
                } else {
                    Access::WRITE
                };
                // Syscall rules are decided on the syscall filter's events (EventKind::Named),
                // which report every syscall a workload's rules name, visible or not.
                let decide = vec![(
                    armor_core::Event::open(f.path.clone(), access, exe.as_deref())
                        .with_uid(ev.uid),
                    Category::File,
                )];
                let extra = if open {
                    format!("fd={} flags={}", f.dirfd, format::open_flags(f.flags))
                } else {
                    f.target
                        .as_ref()
                        .map(|target| format!("target={target}"))
                        .unwrap_or_default()
                };
                Translation {
                    operation: Category::File,
                    resource: f.path.clone(),
                    data: data(ev.syscall, &extra),
                    result: String::new(),
                    process_name: None,
                    source: exe.clone(),
                    decide,
                }
            }
            EventKind::Socket {
                family,
                sock_type,
                protocol,
            } => {
                let socket = Socket::new(*family, *sock_type, *protocol);
                if ev.ret >= 0 {
                    self.remember(ev.pid, i32::try_from(ev.ret).unwrap_or(-1), socket);
                }
                Translation {
                    operation: Category::Network,
                    resource: format!(
                        "domain={} type={} protocol={}",
                        format::family(*family),
                        format::sock_type(*sock_type),
                        format::protocol(socket.effective_protocol())
                    ),
                    data: data(ev.syscall, ""),
                    result: String::new(),
                    process_name: None,
                    source: exe.clone(),
                    decide: vec![(
                        armor_core::Event::socket(socket, exe.as_deref()).with_uid(ev.uid),
                        Category::Network,
                    )],
                }
            }
            EventKind::Named { path, .. } => Translation {
                operation: Category::Syscall,
                resource: path.clone().unwrap_or_default(),
                data: data(ev.syscall, ""),
                result: String::new(),
                process_name: None,
                source: exe.clone(),
                decide: vec![(
                    armor_core::Event::syscall(ev.syscall.name(), path.as_deref(), exe.as_deref())
                        .with_uid(ev.uid),
                    Category::Syscall,
                )],
            },
            EventKind::Net { fd, addr, backlog } => {
                let socket = self.sockets.get(&(ev.pid, *fd)).copied();
                net(ev, exe, socket, *fd, addr.as_ref(), *backlog)
            }
            _ => return None,
        };
        t.result = format::result(ev.ret);
        Some(t)
    }

    fn remember(&mut self, pid: u32, fd: i32, socket: Socket) {
        if self.sockets.len() >= MAX_SOCKETS {
            self.sockets.clear();
        }
        self.sockets.insert((pid, fd), socket);
    }

    /// Sockets remembered now.
    pub fn sockets(&self) -> usize {
        self.sockets.len()
    }
}

/// An exec: decided as the new program, with the parent's executable as its source and its
/// arguments when all were copied (`allowedArgs`); the resource is the command line.
fn exec(
    ev: &Event,
    tree: &ProcessTree,
    path: &str,
    argv: &[String],
    args: Option<&[String]>,
) -> Translation {
    let parent = tree.get(ev.ppid).map(|p| p.exe.clone());
    Translation {
        operation: Category::Process,
        resource: if argv.is_empty() {
            path.to_string()
        } else {
            argv.join(" ")
        },
        data: data(ev.syscall, ""),
        result: String::new(),
        process_name: Some(path.to_string()),
        decide: vec![(
            {
                let e =
                    armor_core::Event::exec(path.to_string(), parent.as_deref()).with_uid(ev.uid);
                match args {
                    Some(a) => e.with_args(a.iter().cloned()),
                    None => e,
                }
            },
            Category::Process,
        )],
        source: parent,
    }
}

/// `connect`, `bind`, `listen`, `accept`: decided as the socket the descriptor is, when it is
/// known (`listen` is not decided: its socket was, when it was bound).
fn net(
    ev: &Event,
    exe: Option<String>,
    socket: Option<Socket>,
    fd: i32,
    addr: Option<&SockAddr>,
    backlog: Option<i32>,
) -> Translation {
    let mut decide = Vec::new();
    if let Some(s) = socket
        && ev.syscall != Syscall::Listen
    {
        decide.push((
            armor_core::Event::socket(s, exe.as_deref()).with_uid(ev.uid),
            Category::Network,
        ));
    }
    let mut resource = match addr {
        Some(SockAddr::Inet { ip, port }) => format!(
            "sa_family={} sin_port={port} sin_addr={ip}",
            if ip.is_ipv4() { "AF_INET" } else { "AF_INET6" }
        ),
        Some(SockAddr::Unix { path }) => format!("sa_family=AF_UNIX sun_path={path}"),
        Some(other) => format!("sa_family={}", format::family(other.family())),
        None => String::new(),
    };
    if let Some(s) = socket {
        let p = format!("protocol={}", format::protocol(s.effective_protocol()));
        resource = if resource.is_empty() {
            p
        } else {
            format!("{resource} {p}")
        };
    }
    let mut extra = format!("fd={fd}");
    if let Some(b) = backlog {
        extra.push_str(&format!(" backlog={b}"));
    }
    Translation {
        operation: Category::Network,
        resource,
        data: data(ev.syscall, &extra),
        result: String::new(),
        process_name: None,
        source: exe,
        decide,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    /// A socket's descriptor is remembered per process: a connect on it is decided as that
    /// socket; the same descriptor in another process is unknown and not decided.
    #[test]
    fn a_connect_is_decided_as_the_socket_its_descriptor_is() {
        let mut t = Translator::default();
        let mut sock = Event::new(
            Syscall::Socket,
            EventKind::Socket {
                family: 2,
                sock_type: 2,
                protocol: 0,
            },
        );
        sock.pid = 7;
        sock.ret = 5;
        t.translate(&sock, &ProcessTree::new()).unwrap();
        let mut conn = Event::new(
            Syscall::Connect,
            EventKind::Net {
                fd: 5,
                addr: Some(SockAddr::Inet {
                    ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                    port: 53,
                }),
                backlog: None,
            },
        );
        conn.pid = 7;
        conn.ret = -13;
        let tr = t.translate(&conn, &ProcessTree::new()).unwrap();
        assert_eq!(
            tr.resource,
            "sa_family=AF_INET sin_port=53 sin_addr=10.0.0.1 protocol=UDP"
        );
        assert_eq!(tr.data, "syscall=SYS_CONNECT fd=5");
        assert_eq!(tr.result, "Permission denied");
        assert_eq!(tr.decide.len(), 1);
        conn.pid = 8;
        let other = t.translate(&conn, &ProcessTree::new()).unwrap();
        assert!(other.decide.is_empty());
        assert!(other.resource.ends_with("sin_addr=10.0.0.1"));
    }

    /// The table never grows past its bound.
    #[test]
    fn the_socket_table_is_bounded() {
        let mut t = Translator::default();
        for fd in 0..=i32::try_from(MAX_SOCKETS).unwrap() {
            t.remember(1, fd, Socket::new(2, 1, 0));
        }
        assert!(t.sockets() <= MAX_SOCKETS);
    }
}
