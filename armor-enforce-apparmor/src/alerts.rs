//! Alerts: AppArmor denial records read from the kernel, mapped back to the rule that caused
//! them, and delivered as [`EnforcerAlert`]s.
//!
//! Sources, in order of preference:
//!
//! * the audit netlink socket's **read-only multicast group** (`AUDIT_NLGRP_READLOG`): every
//!   record, lossless up to the socket buffer, needs `CAP_AUDIT_READ`, and never takes the
//!   unicast channel from an audit daemon (armor only binds the group, it never sends
//!   `AUDIT_SET` with its pid);
//! * the **kernel log** (`/dev/kmsg`): the kernel prints audit records there only while no
//!   process owns the unicast channel, and rate-limits them (`printk_ratelimit`, the audit
//!   backlog): lost records are counted from the kernel's own "callbacks suppressed" and
//!   "audit: … lost" messages and from overwritten log records, and reported by
//!   [`AlertReader::lost`].
//!
//! Mapping: the record's `profile` names the workload (main profile) and, for a child, the
//! `fromSource` executable; the operation and path become an [`AaOp`] that the [`Model`]
//! decides over the installed profile, which names the rule. In a stack (main profile and a
//! source child), both profiles may deny one access and each writes a record; the second record
//! of the same access (same pid, operation, path, and decided rule within
//! [`DEDUP_WINDOW`]) is dropped.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read as _, Seek as _, SeekFrom};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use armor_core::Verdict;
use armor_core::enforcer::EnforcerAlert;
use armor_core::event::Category;
use armor_core::workload::WorkloadKey;

use crate::denial::{AUDIT_AVC, Denial, MAX_RECORD, from_kmsg};
use crate::profile::Profile;
use crate::simulation::{AaOp, Model, Ranking, protocol_name};

/// The audit multicast group of read-only listeners (`AUDIT_NLGRP_READLOG`).
pub const AUDIT_NLGRP_READLOG: u32 = 1;

/// Two records of one access within this window are one alert.
pub const DEDUP_WINDOW: Duration = Duration::from_millis(100);

/// Errors opening an alert source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    /// A system call failed.
    #[error("{call}: {source}")]
    Syscall {
        /// The call.
        call: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No source could be opened.
    #[error("no AppArmor denial source: audit netlink: {audit}; kernel log: {kmsg}")]
    NoSource {
        /// Why the audit socket failed.
        audit: String,
        /// Why the kernel log failed.
        kmsg: String,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An installed workload profile, as the alert mapping needs it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Installed {
    /// The workload.
    pub key: WorkloadKey,
    /// The profile (as loaded), with its globs compiled once for every record.
    pub model: Model,
    /// The engine's precedence over its rules.
    pub ranking: Ranking,
}

impl Installed {
    /// What the mapping keeps of a compiled artifact.
    pub fn of(a: &crate::compile::AppArmorArtifact) -> Self {
        Self {
            key: a.key.clone(),
            model: Model::new(&a.profile),
            ranking: a.ranking.clone(),
        }
    }

    /// The profile (as loaded).
    pub fn profile(&self) -> &Profile {
        self.model.profile()
    }
}

/// The installed profiles by main profile name.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<BTreeMap<String, Arc<Installed>>>,
}

impl Registry {
    /// Records (or replaces) a workload's profile.
    pub fn insert(&self, inst: Installed) {
        let name = inst
            .profile()
            .main()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        lock(&self.map).insert(name, Arc::new(inst));
    }

    /// Forgets the profile named `name`.
    pub fn remove(&self, name: &str) {
        lock(&self.map).remove(name);
    }

    /// The profile named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Installed>> {
        lock(&self.map).get(name).cloned()
    }
}

/// The number of a socket family name (`inet` → 2), as the engine's resource text has it.
fn family_number(name: &str) -> Option<u32> {
    Some(match name {
        "unix" | "local" => 1,
        "inet" => 2,
        "inet6" => 10,
        "netlink" => 16,
        "packet" => 17,
        _ => return None,
    })
}

fn sock_type_number(name: &str) -> Option<u32> {
    Some(match name {
        "stream" => 1,
        "dgram" => 2,
        "raw" => 3,
        "rdm" => 4,
        "seqpacket" => 5,
        "packet" => 10,
        _ => return None,
    })
}

/// The engine's spelling of a path: no trailing `/` (the kernel adds one for directories).
fn engine_path(p: &str) -> String {
    if p.len() > 1 {
        p.trim_end_matches('/').to_owned()
    } else {
        p.to_owned()
    }
}

/// What a denial record asked for: the model's operation, the alert's operation
/// (process, file, network, capabilities) and resource. `None` for operations armor's
/// profiles do not decide (signals, mounts, ptrace, …) or records missing their fields.
pub fn operation_of(d: &Denial) -> Option<(AaOp, Category, String)> {
    let owner = matches!((d.fsuid, d.ouid), (Some(a), Some(b)) if a == b);
    let mask = d.requested_mask.as_deref().unwrap_or_default();
    match (d.operation.as_str(), d.class.as_deref()) {
        ("exec", _) => {
            let path = d.name.clone()?;
            Some((
                AaOp::Exec {
                    path: path.clone(),
                    owner,
                },
                Category::Process,
                engine_path(&path),
            ))
        }
        ("capable", _) | (_, Some("cap")) => {
            let c = d.capname.clone()?;
            let resource = format!("CAP_{}", c.to_ascii_uppercase());
            Some((AaOp::Capability(c), Category::Capabilities, resource))
        }
        (_, Some("net")) | ("create" | "connect" | "bind" | "listen" | "accept", None)
            if d.sock_type.is_some() =>
        {
            let t = d.sock_type.clone()?;
            let p = d.protocol.unwrap_or(0);
            let resource = format!(
                "family={} type={} protocol={p}",
                d.family.as_deref().and_then(family_number).unwrap_or(0),
                sock_type_number(&t).unwrap_or(0),
            );
            Some((
                AaOp::Socket {
                    sock_type: t,
                    protocol: protocol_name(p),
                },
                Category::Network,
                resource,
            ))
        }
        (_, None | Some("file")) => {
            let path = d.name.clone()?;
            let read = mask.contains(['r', 'k', 'm']);
            let write = mask.contains(['w', 'a', 'c', 'd', 'l']);
            if !read && !write {
                return None;
            }
            Some((
                AaOp::File {
                    path: path.clone(),
                    read,
                    write,
                    owner,
                },
                Category::File,
                engine_path(&path),
            ))
        }
        _ => None,
    }
}

/// Maps one record to the alert the engine would give, over the workload's installed profile.
/// `None` for records of profiles armor did not install, for operations it does not decide,
/// and for records that are neither denials nor audits.
pub fn resolve(reg: &Registry, d: &Denial) -> Option<EnforcerAlert> {
    if d.kind != "DENIED" && d.kind != "AUDIT" {
        return None;
    }
    let inst = reg.get(d.main_profile())?;
    let section = inst.profile().section(&d.profile)?;
    let source = section.source.clone();
    let (op, operation, resource) = operation_of(d)?;
    let decision = inst.model.decide(&inst.ranking, source.as_deref(), &op);
    let alert = if d.is_denial() {
        // A kernel denial the model would allow has no rule to name: it is reported as
        // the DefaultPosture.
        let rule = (decision.verdict == Verdict::Block)
            .then_some(decision.rule)
            .flatten();
        EnforcerAlert::blocked(crate::NAME, rule, operation, resource)
    } else {
        EnforcerAlert::audited(crate::NAME, decision.rule, operation, resource)
    };
    Some(alert.with_workload(inst.key.clone()).with_process(
        d.pid.unwrap_or(0),
        d.fsuid.unwrap_or(0),
        source,
    ))
}

/// Whether `d` comes from a workload's main profile while that workload has stacked children:
/// the task may be in a stack whose child also denies, in a record that follows.
fn may_precede_child(reg: &Registry, d: &Denial) -> bool {
    d.profile == d.main_profile()
        && reg
            .get(&d.profile)
            .is_some_and(|i| i.profile().sections.iter().any(|s| s.stacked))
}

/// Whether `child` is the stacked child's record of the access `main` recorded.
fn same_access(main: &Denial, child: &Denial) -> bool {
    child.main_profile() == main.profile
        && child.profile != main.profile
        && (child.pid, &child.operation, &child.name) == (main.pid, &main.operation, &main.name)
}

/// Pairs the two records a stack writes for one access: a main-profile record is held until
/// the next record (or [`DEDUP_WINDOW`]); when that is the child's record of the same access,
/// only the child's is resolved (its label is main + child, so the decision names the rule the
/// engine names).
#[derive(Debug, Default)]
pub struct StackPairing {
    pending: Option<(Denial, Instant)>,
}

impl StackPairing {
    /// The records to resolve now, given one new record (or `None` on a timeout).
    pub fn push(&mut self, reg: &Registry, d: Option<Denial>, now: Instant) -> Vec<Denial> {
        let mut out = Vec::new();
        let Some(d) = d else {
            if let Some((p, t)) = self.pending.take() {
                if now.saturating_duration_since(t) < DEDUP_WINDOW {
                    self.pending = Some((p, t));
                } else {
                    out.push(p);
                }
            }
            return out;
        };
        if let Some((p, _)) = self.pending.take()
            && !same_access(&p, &d)
        {
            out.push(p);
        }
        if may_precede_child(reg, &d) {
            self.pending = Some((d, now));
        } else {
            out.push(d);
        }
        out
    }
}

/// Drops the second record of one access (see the module documentation).
#[derive(Debug, Default)]
pub struct Dedup {
    last: Option<(Instant, u32, Category, String, Option<u32>)>,
}

impl Dedup {
    /// Whether `a` (seen at `now`) is new.
    pub fn admit(&mut self, a: &EnforcerAlert, now: Instant) -> bool {
        let key = (a.pid, a.operation, a.resource.clone(), a.rule);
        let dup = self.last.as_ref().is_some_and(|(t, pid, op, res, rule)| {
            now.saturating_duration_since(*t) < DEDUP_WINDOW
                && (*pid, *op, res.as_str(), *rule) == (key.0, key.1, key.2.as_str(), key.3)
        });
        self.last = Some((now, key.0, key.1, key.2, key.3));
        !dup
    }
}

/// Splits a netlink datagram into `(type, payload text)` messages. Malformed headers end the
/// datagram.
pub fn netlink_messages(buf: &[u8]) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 16 {
        let word = |at: usize| -> Option<[u8; 4]> { rest.get(at..at + 4)?.try_into().ok() };
        let (Some(len), Some(tf)) = (word(0), word(4)) else {
            break;
        };
        let len = usize::try_from(u32::from_ne_bytes(len)).unwrap_or(0);
        let [t0, t1, _, _] = tf;
        let ty = u16::from_ne_bytes([t0, t1]);
        // The audit subsystem's multicast messages carry the payload length without the
        // header in some kernels; accept both, bounded by the datagram.
        let end = len.clamp(16, rest.len());
        let payload = rest.get(16..end).unwrap_or_default();
        let text = String::from_utf8_lossy(payload);
        out.push((ty, text.trim_end_matches('\0').to_owned()));
        let next = (end + 3) & !3;
        rest = rest.get(next..).unwrap_or_default();
    }
    out
}

/// The audit netlink socket bound to the read-only multicast group.
#[derive(Debug)]
pub struct AuditSocket {
    fd: OwnedFd,
}

impl AuditSocket {
    /// Opens and binds the socket (needs `CAP_AUDIT_READ`). Received records time out after
    /// `timeout` so a reader can stop.
    pub fn open(timeout: Duration) -> Result<Self, AlertError> {
        use nix::sys::socket::{
            AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, setsockopt, socket,
            sockopt,
        };
        let errno = |call: &'static str| {
            move |e: nix::errno::Errno| AlertError::Syscall {
                call,
                source: std::io::Error::from(e),
            }
        };
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkAudit,
        )
        .map_err(errno("socket(NETLINK_AUDIT)"))?;
        setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(
                i64::try_from(timeout.as_secs()).unwrap_or(1),
                i64::from(timeout.subsec_micros()),
            ),
        )
        .map_err(errno("setsockopt(SO_RCVTIMEO)"))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, AUDIT_NLGRP_READLOG))
            .map_err(errno("bind(AUDIT_NLGRP_READLOG)"))?;
        Ok(Self { fd })
    }

    /// The AVC records of one datagram (empty on timeout).
    pub fn recv(&self) -> Result<Vec<String>, AlertError> {
        let mut buf = vec![0_u8; MAX_RECORD];
        match nix::sys::socket::recv(
            self.fd.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::empty(),
        ) {
            Ok(n) => Ok(netlink_messages(buf.get(..n).unwrap_or_default())
                .into_iter()
                .filter(|(t, _)| *t == AUDIT_AVC)
                .map(|(_, s)| s)
                .collect()),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => Ok(Vec::new()),
            // ENOBUFS: the socket buffer overflowed and records were dropped.
            Err(nix::errno::Errno::ENOBUFS) => Ok(Vec::new()),
            Err(e) => Err(AlertError::Syscall {
                call: "recv(NETLINK_AUDIT)",
                source: std::io::Error::from(e),
            }),
        }
    }
}

/// The kernel log, read from its end.
#[derive(Debug)]
pub struct KernelLog {
    file: File,
}

/// The kernel's own messages that say records were dropped: how many, if it says.
pub fn lost_in(message: &str) -> Option<u64> {
    if let Some((n, _)) = message.split_once(" callbacks suppressed") {
        return n.rsplit(' ').next()?.parse().ok().or(Some(1));
    }
    if message.starts_with("audit:") && message.contains("lost=") {
        let (_, after) = message.split_once("lost=")?;
        return after.split(' ').next()?.parse().ok().or(Some(1));
    }
    (message.starts_with("audit:") && message.contains("rate limit exceeded")).then_some(1)
}

impl KernelLog {
    /// Opens `/dev/kmsg` after its newest record.
    pub fn open() -> Result<Self, AlertError> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .map_err(|source| AlertError::Syscall {
                call: "open(/dev/kmsg)",
                source,
            })?;
        file.seek(SeekFrom::End(0))
            .map_err(|source| AlertError::Syscall {
                call: "seek(/dev/kmsg)",
                source,
            })?;
        Ok(Self { file })
    }

    /// The AVC records logged since the last call, and how many records were lost.
    pub fn read_new(&mut self) -> Result<(Vec<String>, u64), AlertError> {
        let mut out = Vec::new();
        let mut lost = 0;
        let mut buf = vec![0_u8; 16 * 1024];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
                    let Some((_, msg)) = rec.split_once(';') else {
                        continue;
                    };
                    let msg = msg.lines().next().unwrap_or_default();
                    if let Some(n) = lost_in(msg) {
                        lost += n;
                    } else if let Some((AUDIT_AVC, text)) = from_kmsg(msg) {
                        out.push(text.to_owned());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // EPIPE: records were overwritten before being read.
                Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => lost += 1,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(AlertError::Syscall {
                        call: "read(/dev/kmsg)",
                        source,
                    });
                }
            }
        }
        Ok((out, lost))
    }
}

/// Which source an [`AlertReader`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceKind {
    /// The audit multicast group.
    Audit,
    /// The kernel log.
    KernelLog,
}

enum Source {
    Audit(AuditSocket),
    Kmsg(KernelLog),
}

/// A background thread turning denial records into alerts; stopped when dropped.
#[derive(Debug)]
pub struct AlertReader {
    kind: SourceKind,
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicU64>,
    seen: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Where the reader sends alerts.
pub type SinkSlot = armor_core::enforcer::AlertSlot;

impl AlertReader {
    /// Starts reading from the audit multicast group, or from the kernel log when that cannot
    /// be opened.
    pub fn start(registry: Arc<Registry>, sink: SinkSlot) -> Result<Self, AlertError> {
        let source = match AuditSocket::open(Duration::from_millis(50)) {
            Ok(s) => Source::Audit(s),
            Err(a) => match KernelLog::open() {
                Ok(k) => Source::Kmsg(k),
                Err(k) => {
                    return Err(AlertError::NoSource {
                        audit: a.to_string(),
                        kmsg: k.to_string(),
                    });
                }
            },
        };
        Ok(Self::spawn(source, registry, sink))
    }

    /// Starts reading from the kernel log only.
    pub fn start_kernel_log(registry: Arc<Registry>, sink: SinkSlot) -> Result<Self, AlertError> {
        Ok(Self::spawn(
            Source::Kmsg(KernelLog::open()?),
            registry,
            sink,
        ))
    }

    fn spawn(mut source: Source, registry: Arc<Registry>, sink: SinkSlot) -> Self {
        let kind = match source {
            Source::Audit(_) => SourceKind::Audit,
            Source::Kmsg(_) => SourceKind::KernelLog,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(AtomicU64::new(0));
        let (st, lo, se) = (Arc::clone(&stop), Arc::clone(&lost), Arc::clone(&seen));
        let thread = std::thread::spawn(move || {
            let mut dedup = Dedup::default();
            let mut pairing = StackPairing::default();
            while !st.load(Ordering::Relaxed) {
                let records = match &mut source {
                    Source::Audit(s) => s.recv().unwrap_or_default(),
                    Source::Kmsg(k) => match k.read_new() {
                        Ok((r, l)) => {
                            lo.fetch_add(l, Ordering::Relaxed);
                            if r.is_empty() {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            r
                        }
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(200));
                            Vec::new()
                        }
                    },
                };
                let now = Instant::now();
                let mut ready = pairing.push(&registry, None, now);
                for text in records {
                    if let Some(d) = Denial::parse(&text) {
                        ready.extend(pairing.push(&registry, Some(d), now));
                    }
                }
                for d in ready {
                    let Some(alert) = resolve(&registry, &d) else {
                        continue;
                    };
                    if !dedup.admit(&alert, Instant::now()) {
                        continue;
                    }
                    se.fetch_add(1, Ordering::Relaxed);
                    sink.deliver(alert);
                }
            }
        });
        Self {
            kind,
            stop,
            lost,
            seen,
            thread: Some(thread),
        }
    }

    /// The source being read.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// Records the kernel says it dropped (kernel log only; the audit socket reports none).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Alerts delivered so far.
    pub fn delivered(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }
}

impl Drop for AlertReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
