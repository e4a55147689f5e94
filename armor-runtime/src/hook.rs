//! The synchronous point between a container runtime and the agent: an OCI `createRuntime`
//! hook that holds a container's creation until the agent has put its rules in force.
//!
//! containerd publishes `/tasks/create` asynchronously, and Kubernetes starts a container right
//! after creating it (CRI `CreateContainer`, then `StartContainer`), so an agent that reacts to
//! the event can lose the race to the entrypoint. A `createRuntime` hook cannot: runc runs it
//! while it creates the container — the container's init process is already in its cgroup,
//! its mounts are set up, nothing of the image has run — and fails the creation if the hook
//! fails. The hook (`armor-oci-hook`, [`hook_main`]) sends the OCI state runc gives it on
//! stdin (`id`, `pid`, `bundle`) to the agent's [`HookServer`] over a Unix socket and waits
//! for the answer:
//!
//! * the agent resolves the container through containerd (the namespace is the parent
//!   directory of the bundle, `…/io.containerd.runtime.v2.task/<namespace>/<id>`), applies its
//!   rules ([`crate::Runtime::container_creating`]) and answers `admitted`; with BPF-LSM the
//!   rules are in force from the first program a task of the container executes — the
//!   entrypoint's exec is the first operation decided — and runc's own setup between the hook
//!   and that exec (`pivot_root`, `/dev`, masked paths, the capabilities they use) is not
//!   subject to them;
//! * when the rules cannot be applied, the agent answers `refused` with the reason, the hook
//!   exits 1 and runc fails the creation: the container never runs unprotected.
//!
//! Without `--fail-open` the hook also fails when the agent cannot be reached or does not
//! answer in time (a security agent that is down blocks new containers); with it, those
//! containers are created and the hook says why on stderr.
//!
//! The wire format is one JSON line each way: the request is the OCI state object, the answer
//! `{"admitted": true|false, "message": "…"}`.
//!
//! Installing the hook: name it in the runtime spec every container starts from — containerd's
//! CRI `base_runtime_spec` (`"hooks": {"createRuntime": [{"path": "/usr/local/bin/armor-oci-hook",
//! "args": ["armor-oci-hook", "--socket", "/run/armor/hook.sock"], "timeout": 30}]}`), or the
//! spec a client builds — and run the agent with `--hook-socket /run/armor/hook.sock`.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Error, Result};

/// Where `armor-oci-hook` and `armor-agent --hook-socket` meet unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/armor/hook.sock";

/// The longest request line the server reads (an OCI state with its annotations).
const MAX_REQUEST: u64 = 1 << 20;

/// What the server accepts and how long it waits ([`HookServer::bind_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookOptions {
    /// Besides root and the agent's own user, the group whose members may ask (the socket is
    /// then mode 0660 with this group; else 0600). A connection from anyone else is answered
    /// `refused` and closed, before its request is read.
    pub group: Option<u32>,
    /// Connections served at once, at most: one more is answered `refused` (busy) at once, so
    /// a client opening connections cannot exhaust the agent's threads.
    pub max_connections: usize,
    /// The longest a connection is served, from its accept to its answer (reading the request
    /// and the agent's decision together). A hook that sends its own timeout
    /// (`armor-oci-hook --timeout`) gets no more than that: the answer never comes after the
    /// hook gave up.
    pub deadline: Duration,
}

impl Default for HookOptions {
    /// Root and the agent's user only, 64 connections at once, 30 s per request (the hook's
    /// default timeout).
    fn default() -> Self {
        Self {
            group: None,
            max_connections: 64,
            deadline: Duration::from_secs(30),
        }
    }
}

/// The request field that carries the hook's own timeout, in milliseconds.
const HOOK_TIMEOUT_FIELD: &str = "armorTimeoutMs";

/// The OCI state runc gives a hook on stdin (the fields the agent uses).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HookState {
    /// The container id.
    pub id: String,
    /// The container's init process, in the host's pid namespace.
    pub pid: u32,
    /// The bundle directory (`config.json`, the root file system).
    pub bundle: PathBuf,
    /// The spec's annotations.
    pub annotations: BTreeMap<String, String>,
}

impl HookState {
    /// Parses an OCI state object; `id`, `pid` (> 0) and `bundle` are required.
    pub fn parse(json: &[u8]) -> Result<Self> {
        let bad = |why: &str| Error::Parse {
            what: "OCI state",
            input: format!("{why}: {}", String::from_utf8_lossy(json).trim()),
        };
        let v: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| bad(&format!("not JSON ({e})")))?;
        let id = v
            .get("id")
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("no `id`"))?;
        let pid = v
            .get("pid")
            .and_then(serde_json::Value::as_u64)
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("no `pid`"))?;
        let bundle = v
            .get("bundle")
            .and_then(serde_json::Value::as_str)
            .filter(|s| s.starts_with('/'))
            .ok_or_else(|| bad("no absolute `bundle`"))?;
        let annotations = v
            .get("annotations")
            .and_then(serde_json::Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            id: id.to_string(),
            pid,
            bundle: PathBuf::from(bundle),
            annotations,
        })
    }

    /// The containerd namespace of a containerd shim's bundle
    /// (`…/io.containerd.runtime.v2.task/<namespace>/<id>`): the bundle's parent directory's
    /// name, when the bundle's own name is the container id.
    pub fn containerd_namespace(&self) -> Option<String> {
        let name = self.bundle.file_name()?.to_str()?;
        if name != self.id {
            return None;
        }
        let ns = self.bundle.parent()?.file_name()?.to_str()?;
        Some(ns.to_string())
    }

    /// The container's root file system as the host sees it: the spec's `root.path`, relative
    /// to the bundle unless absolute (`rootfs` when the spec cannot be read).
    pub fn rootfs(&self) -> PathBuf {
        let root = std::fs::read(self.bundle.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("root")?.get("path")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "rootfs".to_string());
        self.bundle.join(root)
    }
}

/// The agent's answer to one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// The container may be created: its rules are in force (or none apply to it).
    Admitted(String),
    /// The container must not be created; the reason.
    Refused(String),
}

impl Admission {
    fn to_line(&self) -> String {
        let (admitted, message) = match self {
            Self::Admitted(m) => (true, m),
            Self::Refused(m) => (false, m),
        };
        let mut line = serde_json::json!({"admitted": admitted, "message": message}).to_string();
        line.push('\n');
        line
    }

    fn parse(line: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let message = v.get("message")?.as_str()?.to_string();
        match v.get("admitted")?.as_bool()? {
            true => Some(Self::Admitted(message)),
            false => Some(Self::Refused(message)),
        }
    }
}

/// One hook waiting for the agent; answer it with [`HookRequest::answer`] (dropping it
/// answers `refused`).
#[derive(Debug)]
pub struct HookRequest {
    state: HookState,
    reply: mpsc::Sender<Admission>,
}

impl HookRequest {
    /// What runc said about the container.
    pub fn state(&self) -> &HookState {
        &self.state
    }

    /// Sends `admission` to the waiting hook.
    pub fn answer(self, admission: Admission) {
        // The hook may have given up already: nothing to do then.
        let _ = self.reply.send(admission);
    }
}

/// The agent's end: a Unix socket whose requests come out of [`HookServer::try_recv`]. Each
/// connection is served by a thread of its own, within the limits of [`HookOptions`]; what
/// the server refused on its own (a peer not allowed, too many connections, a request not
/// read in time) comes out of [`HookServer::take_notices`]. Dropping the server stops
/// accepting and removes the socket.
#[derive(Debug)]
pub struct HookServer {
    path: PathBuf,
    /// The socket file's (device, inode): what dropping the server may remove.
    file: Option<(u64, u64)>,
    rx: mpsc::Receiver<HookRequest>,
    notices: mpsc::Receiver<String>,
    stop: Arc<AtomicBool>,
}

impl HookServer {
    /// [`HookServer::bind_with`] with the default [`HookOptions`].
    pub fn bind(path: impl Into<PathBuf>) -> Result<Self> {
        Self::bind_with(path, HookOptions::default())
    }

    /// Listens on `path`. Its directory is created (mode 0700) when missing; an existing one
    /// must not be writable by anyone but its owner, root or the agent's user, or the socket
    /// could be replaced under it. The socket is made in a fresh directory of mode 0700 beside
    /// it, given its mode (0600, or 0660 and the group of [`HookOptions::group`]), then renamed
    /// into place: no one can connect before its mode is set. A stale socket left at `path`
    /// is replaced; any other file is an error.
    pub fn bind_with(path: impl Into<PathBuf>, options: HookOptions) -> Result<Self> {
        let path = path.into();
        let shown = path.display().to_string();
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        private_parent(dir)?;
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_socket() => {}
            Ok(_) => {
                return Err(Error::io(
                    "bind",
                    &shown,
                    std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "exists and is not a socket",
                    ),
                ));
            }
            Err(_) => {}
        }
        let listener = bind_private(&path, dir, options.group)?;
        let file = file_id(&path);
        let (tx, rx) = mpsc::channel();
        let (notice_tx, notices) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("armor-hook-accept".into())
            .spawn(move || accept_loop(&listener, &tx, &notice_tx, &flag, options))
            .map_err(|e| Error::io("spawn", "hook server thread", e))?;
        Ok(Self {
            path,
            file,
            rx,
            notices,
            stop,
        })
    }

    /// What the server refused on its own since the last call, one line each (`hook
    /// connection from uid 1000 refused: …`).
    pub fn take_notices(&self) -> Vec<String> {
        self.notices.try_iter().collect()
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next hook waiting for an answer, if any.
    pub fn try_recv(&self) -> Option<HookRequest> {
        self.rx.try_recv().ok()
    }

    /// The next hook, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<HookRequest> {
        self.rx.recv_timeout(timeout).ok()
    }
}

impl Drop for HookServer {
    /// Stops accepting and removes the socket, if the file at its path is still this
    /// server's: a successor that bound the same path meanwhile keeps its socket.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.file.is_some() && file_id(&self.path) == self.file {
            // Wake the accept loop so it sees the flag.
            let _ = UnixStream::connect(&self.path);
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The (device, inode) of the file at `path`, not following a link.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Makes `dir` (mode 0700) when missing; else checks that only its owner can write it and
/// that the owner is root or this process's user.
fn private_parent(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    let shown = dir.display().to_string();
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("mkdir", &shown, e))?;
    }
    let m = std::fs::metadata(dir).map_err(|e| Error::io("stat", &shown, e))?;
    let me = rustix::process::geteuid().as_raw();
    let unsafe_dir = |why: &str| {
        Err(Error::io(
            "bind",
            &shown,
            std::io::Error::new(std::io::ErrorKind::PermissionDenied, why.to_owned()),
        ))
    };
    if !m.is_dir() {
        return unsafe_dir("not a directory");
    }
    if m.uid() != 0 && m.uid() != me {
        return unsafe_dir(&format!(
            "owned by uid {}, not root or the agent's user: the hook socket needs a directory \
             only they can write",
            m.uid()
        ));
    }
    if m.mode() & 0o022 != 0 {
        return unsafe_dir(&format!(
            "writable by its group or others (mode {:o}): the hook socket could be replaced \
             there",
            m.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Binds the socket in a fresh 0700 directory inside `dir`, sets its mode (and group), and
/// renames it to `path` (replacing a stale socket there).
fn bind_private(path: &Path, dir: &Path, group: Option<u32>) -> Result<UnixListener> {
    use std::os::unix::fs::DirBuilderExt as _;
    let shown = path.display().to_string();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let private = dir.join(format!(".armor-hook-{}-{nonce}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| Error::io("mkdir", &private.display().to_string(), e))?;
    let tmp = private.join("hook.sock");
    let made = (|| {
        let listener = UnixListener::bind(&tmp).map_err(|e| Error::io("bind", &shown, e))?;
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("chmod", &shown, e))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(&tmp, None, Some(gid))
                .map_err(|e| Error::io("chown", &shown, e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", &shown, e))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_dir(&private);
    made
}

/// Whether the peer of `conn` may ask: root, the agent's user, or a member (by its group id)
/// of `group`. `Err` says who it is and why not.
fn peer_allowed(conn: &UnixStream, group: Option<u32>) -> std::result::Result<(), String> {
    let cred = rustix::net::sockopt::socket_peercred(conn)
        .map_err(|e| format!("its credentials cannot be read: {e}"))?;
    let (uid, gid) = (cred.uid.as_raw(), cred.gid.as_raw());
    let me = rustix::process::geteuid().as_raw();
    if uid == 0 || uid == me || group == Some(gid) {
        return Ok(());
    }
    Err(format!(
        "uid {uid} (gid {gid}) may not ask: root, the agent's user{} only (the group by the \
         peer's primary group)",
        group.map_or(String::new(), |g| format!(" or group {g}"))
    ))
}

fn accept_loop(
    listener: &UnixListener,
    tx: &mpsc::Sender<HookRequest>,
    notices: &mpsc::Sender<String>,
    stop: &AtomicBool,
    options: HookOptions,
) {
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut conn) = conn else {
            // Out of descriptors or the like: do not spin while it lasts.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let accepted = std::time::Instant::now();
        let refuse = |conn: &mut UnixStream, why: String| {
            let _ = conn.set_write_timeout(Some(Duration::from_millis(100)));
            let _ = conn.write_all(Admission::Refused(why.clone()).to_line().as_bytes());
            let _ = notices.send(format!("hook connection refused: {why}"));
        };
        if let Err(why) = peer_allowed(&conn, options.group) {
            refuse(&mut conn, why);
            continue;
        }
        if active.load(Ordering::SeqCst) >= options.max_connections {
            refuse(
                &mut conn,
                format!(
                    "busy: {} hook requests are being served",
                    options.max_connections
                ),
            );
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let (tx, notices, count) = (tx.clone(), notices.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("armor-hook-conn".into())
            .spawn(move || {
                serve(conn, &tx, &notices, accepted + options.deadline);
                count.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Reads one request line from `conn` by `deadline` (every read waits only what is left).
fn read_request(
    conn: &mut UnixStream,
    deadline: std::time::Instant,
) -> std::result::Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err("the request did not arrive in time".into());
        }
        conn.set_read_timeout(Some(left))
            .map_err(|e| format!("reading the request: {e}"))?;
        let n = match conn.read(&mut buf) {
            Ok(0) => return Err("the connection closed before a whole request".into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("the request did not arrive in time".into());
            }
            Err(e) => return Err(format!("reading the request: {e}")),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        if let Some(end) = chunk.iter().position(|b| *b == b'\n') {
            line.extend_from_slice(chunk.get(..end).unwrap_or_default());
            return Ok(line);
        }
        line.extend_from_slice(chunk);
        if line.len() as u64 > MAX_REQUEST {
            return Err(format!("the request is longer than {MAX_REQUEST} bytes"));
        }
    }
}

/// One connection: a request line in, the verdict line out, all by `deadline` (or the hook's
/// own timeout when it is sooner). When the agent has not decided by then, the connection is
/// closed without an answer: the hook, out of time too, does what it does without one (fail
/// closed, or open with `--fail-open`), and the server says so.
fn serve(
    mut conn: UnixStream,
    tx: &mpsc::Sender<HookRequest>,
    notices: &mpsc::Sender<String>,
    deadline: std::time::Instant,
) {
    let verdict = match read_request(&mut conn, deadline) {
        Err(why) => {
            let _ = notices.send(format!("hook connection refused: {why}"));
            Admission::Refused(why)
        }
        Ok(line) => match HookState::parse(&line) {
            Err(e) => Admission::Refused(armor_core::diag::error_chain(&e)),
            Ok(state) => {
                let started = std::time::Instant::now();
                let deadline = hook_timeout(&line).map_or(deadline, |t| deadline.min(started + t));
                let id = state.id.clone();
                let (reply, answer) = mpsc::channel();
                if tx.send(HookRequest { state, reply }).is_err() {
                    Admission::Refused("the agent is stopping".into())
                } else {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match answer.recv_timeout(left) {
                        Ok(a) => a,
                        Err(_) => {
                            let _ = notices.send(format!(
                                "hook for container {id}: no decision within {} ms; closed \
                                 without an answer",
                                deadline.saturating_duration_since(started).as_millis()
                            ));
                            return;
                        }
                    }
                }
            }
        },
    };
    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = conn.write_all(verdict.to_line().as_bytes());
}

/// The hook's own timeout, when its request says it.
fn hook_timeout(line: &[u8]) -> Option<Duration> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    v.get(HOOK_TIMEOUT_FIELD)?
        .as_u64()
        .map(Duration::from_millis)
}

/// Why a hook did not get an answer from the agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// The socket could not be connected to or written.
    #[error("agent socket `{socket}` unreachable")]
    Unreachable {
        /// The socket.
        socket: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// No complete answer in time (or the connection closed without one).
    #[error("no answer from the agent on `{socket}` within {timeout:?}")]
    NoAnswer {
        /// The socket.
        socket: String,
        /// How long the hook waited.
        timeout: Duration,
    },
    /// An answer that is not a verdict.
    #[error("unreadable answer from the agent on `{socket}`: `{line}`")]
    Protocol {
        /// The socket.
        socket: String,
        /// What came back.
        line: String,
    },
}

/// The hook's end: sends `state` (the OCI state JSON) to the agent at `socket` and waits up to
/// `timeout` for its verdict.
pub fn request(
    socket: &Path,
    state: &HookState,
    timeout: Duration,
) -> std::result::Result<Admission, HookError> {
    let shown = socket.display().to_string();
    let unreachable = |source| HookError::Unreachable {
        socket: shown.clone(),
        source,
    };
    let mut conn = UnixStream::connect(socket).map_err(unreachable)?;
    conn.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
        .map_err(unreachable)?;
    let mut line = serde_json::json!({
        "ociVersion": "1.0.2",
        "id": state.id,
        "pid": state.pid,
        "bundle": state.bundle.display().to_string(),
        "annotations": state.annotations,
        HOOK_TIMEOUT_FIELD: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    })
    .to_string();
    line.push('\n');
    conn.write_all(line.as_bytes()).map_err(unreachable)?;
    let mut answer = String::new();
    let no_answer = || HookError::NoAnswer {
        socket: shown.clone(),
        timeout,
    };
    match BufReader::new(conn.take(MAX_REQUEST)).read_line(&mut answer) {
        Ok(_) if answer.ends_with('\n') => {}
        _ => return Err(no_answer()),
    }
    Admission::parse(answer.trim_end()).ok_or_else(|| HookError::Protocol {
        socket: shown.clone(),
        line: answer.trim_end().to_string(),
    })
}

const USAGE: &str = "usage: armor-oci-hook [--socket PATH] [--timeout SECS] [--fail-open]
An OCI createRuntime hook: reads the container's state on stdin, waits until the armor agent
listening on PATH (default /run/armor/hook.sock) has put the container's rules in force, and
exits 0; exits 1 (runc then fails the creation) when the agent refuses the container, or, without
--fail-open, when it cannot be reached or does not answer within SECS (default 30).";

/// The whole `armor-oci-hook` program: `args` without the program name, the OCI state on
/// `stdin`, what it decided on `stderr` (runc shows it when the hook fails). Returns the exit
/// status: 0 admitted (or, with `--fail-open`, the agent unreachable), 1 refused or failed,
/// 2 a usage error.
pub fn hook_main(args: &[String], stdin: &mut dyn Read, stderr: &mut dyn Write) -> i32 {
    let mut socket = PathBuf::from(DEFAULT_SOCKET);
    let mut timeout = Duration::from_secs(30);
    let mut fail_open = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = |it: &mut std::slice::Iter<'_, String>| it.next().cloned();
        match a.as_str() {
            "--socket" => match value(&mut it) {
                Some(v) => socket = PathBuf::from(v),
                None => return usage(stderr, "--socket needs a path"),
            },
            "--timeout" => match value(&mut it).and_then(|v| v.parse::<f64>().ok()) {
                Some(s) if s.is_finite() && s > 0.0 => timeout = Duration::from_secs_f64(s),
                _ => return usage(stderr, "--timeout needs a number of seconds > 0"),
            },
            "--fail-open" => fail_open = true,
            "-h" | "--help" => {
                let _ = writeln!(stderr, "{USAGE}");
                return 0;
            }
            other => return usage(stderr, &format!("unknown argument `{other}`")),
        }
    }
    let mut input = Vec::new();
    if let Err(e) = stdin.take(MAX_REQUEST).read_to_end(&mut input) {
        let _ = writeln!(stderr, "armor-oci-hook: reading the OCI state: {e}");
        return 1;
    }
    let state = match HookState::parse(&input) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(
                stderr,
                "armor-oci-hook: {}",
                armor_core::diag::error_chain(&e)
            );
            return 1;
        }
    };
    match request(&socket, &state, timeout) {
        Ok(Admission::Admitted(_)) => 0,
        Ok(Admission::Refused(why)) => {
            let _ = writeln!(
                stderr,
                "armor-oci-hook: container {} refused by the armor agent: {why}",
                state.id
            );
            1
        }
        Err(e) => {
            let why = armor_core::diag::error_chain(&e).replace('\n', " ");
            if fail_open {
                let _ = writeln!(
                    stderr,
                    "armor-oci-hook: container {} created without waiting (--fail-open): {why}",
                    state.id
                );
                0
            } else {
                let _ = writeln!(
                    stderr,
                    "armor-oci-hook: container {} not created: {why}",
                    state.id
                );
                1
            }
        }
    }
}

fn usage(stderr: &mut dyn Write, why: &str) -> i32 {
    let _ = writeln!(stderr, "armor-oci-hook: {why}\n{USAGE}");
    2
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "test code"
    )]
    use std::os::unix::process::CommandExt as _;

    use super::*;

    const STATE: &str = r#"{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":4242,
        "bundle":"/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1",
        "annotations":{"io.kubernetes.cri.container-name":"web"}}"#;

    fn sock(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("armor-hook-{name}-{}/s.sock", std::process::id()))
    }

    fn run(args: &[&str], state: &str) -> (i32, String) {
        let args: Vec<String> = args.iter().map(|s| (*s).to_string()).collect();
        let mut err = Vec::new();
        let code = hook_main(&args, &mut state.as_bytes(), &mut err);
        (code, String::from_utf8(err).unwrap())
    }

    #[test]
    fn the_oci_state_gives_id_pid_bundle_and_the_containerd_namespace() {
        let s = HookState::parse(STATE.as_bytes()).unwrap();
        assert_eq!(s.id, "c1");
        assert_eq!(s.pid, 4242);
        assert_eq!(s.containerd_namespace().as_deref(), Some("k8s.io"));
        assert_eq!(s.annotations["io.kubernetes.cri.container-name"], "web");
        // Without a readable config.json the root is the bundle's `rootfs`.
        assert_eq!(
            s.rootfs(),
            Path::new("/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1/rootfs")
        );
        let other = HookState::parse(br#"{"id":"c1","pid":1,"bundle":"/var/lib/x/other"}"#);
        assert_eq!(other.unwrap().containerd_namespace(), None);
        for bad in [
            "",
            "{}",
            r#"{"id":"c1","pid":0,"bundle":"/b/c1"}"#,
            r#"{"id":"c1","pid":5,"bundle":"relative/c1"}"#,
            r#"{"id":"","pid":5,"bundle":"/b/c1"}"#,
        ] {
            let e = HookState::parse(bad.as_bytes()).unwrap_err().to_string();
            assert!(e.starts_with("cannot parse OCI state"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_root_is_the_specs_root_path() {
        let dir = std::env::temp_dir().join(format!("armor-hook-root-{}", std::process::id()));
        let bundle = dir.join("ns1/c9");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(bundle.join("config.json"), r#"{"root":{"path":"fs"}}"#).unwrap();
        let state = format!(r#"{{"id":"c9","pid":9,"bundle":"{}"}}"#, bundle.display());
        let s = HookState::parse(state.as_bytes()).unwrap();
        assert_eq!(s.rootfs(), bundle.join("fs"));
        std::fs::write(
            bundle.join("config.json"),
            r#"{"root":{"path":"/abs/root"}}"#,
        )
        .unwrap();
        assert_eq!(s.rootfs(), Path::new("/abs/root"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The hook blocks until the agent answers; the verdict decides its exit status.
    #[test]
    fn the_hook_waits_for_the_agents_verdict() {
        let path = sock("verdict");
        let server = HookServer::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        for (admit, code) in [(true, 0), (false, 1)] {
            let p = path.clone();
            let hook = std::thread::spawn(move || {
                run(&["--socket", p.to_str().unwrap(), "--timeout", "20"], STATE)
            });
            let req = server.recv_timeout(Duration::from_secs(20)).unwrap();
            assert_eq!(req.state().id, "c1");
            assert_eq!(req.state().pid, 4242);
            // Not answered yet: the hook is still waiting.
            std::thread::sleep(Duration::from_millis(200));
            assert!(!hook.is_finished());
            req.answer(if admit {
                Admission::Admitted("rules in force".into())
            } else {
                Admission::Refused("capacity".into())
            });
            let (got, err) = hook.join().unwrap();
            assert_eq!(got, code, "{err}");
            if !admit {
                assert!(err.contains("container c1 refused by the armor agent: capacity"));
            }
        }
        // A request dropped unanswered is a refusal.
        let p = path.clone();
        let hook = std::thread::spawn(move || run(&["--socket", p.to_str().unwrap()], STATE));
        drop(server.recv_timeout(Duration::from_secs(20)).unwrap());
        assert_eq!(hook.join().unwrap().0, 1);
        drop(server);
        assert!(!path.exists(), "socket left behind");
    }

    #[test]
    fn an_absent_or_silent_agent_fails_closed_unless_fail_open() {
        let path = sock("absent");
        let p = path.to_str().unwrap();
        let (code, err) = run(&["--socket", p], STATE);
        assert_eq!(code, 1);
        assert!(
            err.contains("container c1 not created: agent socket"),
            "{err}"
        );
        let (code, err) = run(&["--socket", p, "--fail-open"], STATE);
        assert_eq!(code, 0);
        assert!(
            err.contains("created without waiting (--fail-open)"),
            "{err}"
        );
        // A server that never answers: the hook gives up after its timeout.
        let server = HookServer::bind(&path).unwrap();
        let (code, err) = run(&["--socket", p, "--timeout", "0.3"], STATE);
        assert_eq!(code, 1);
        assert!(err.contains("no answer from the agent"), "{err}");
        let (code, _) = run(&["--socket", p, "--timeout", "0.3", "--fail-open"], STATE);
        assert_eq!(code, 0);
        // Both requests reached the agent (which let them wait).
        assert!(server.try_recv().is_some());
        drop(server);
    }

    #[test]
    fn bad_state_and_bad_arguments_are_reported() {
        let (code, err) = run(&["--socket", "/nonexistent/s"], "not json");
        assert_eq!(code, 1);
        assert!(err.contains("cannot parse OCI state"), "{err}");
        assert_eq!(run(&["--timeout", "0"], STATE).0, 2);
        assert_eq!(run(&["--socket"], STATE).0, 2);
        let (code, err) = run(&["--bogus"], STATE);
        assert_eq!(code, 2);
        assert!(err.contains("unknown argument `--bogus`"), "{err}");
    }

    /// The socket's directory: made 0700 when missing; one others may write is refused.
    #[test]
    fn the_socket_directory_must_be_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = sock("private");
        let dir = path.parent().unwrap().to_path_buf();
        let _ = std::fs::remove_dir_all(&dir);
        let server = HookServer::bind(&path).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Nothing left of the private directory the socket was made in.
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        drop(server);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = armor_core::diag::error_chain(&HookServer::bind(&path).unwrap_err());
        assert!(
            e.contains("writable by its group or others (mode 777)"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A peer that is neither root, the agent's user nor in the group is refused before its
    /// request is read (here the socket's mode is opened by hand, as a misconfiguration
    /// would), and the server says so.
    #[test]
    fn a_peer_not_allowed_is_refused_and_noticed() {
        use std::os::unix::fs::PermissionsExt as _;
        if !rustix::process::geteuid().is_root() {
            println!("skipped: connecting as another user needs root");
            return;
        }
        let path = sock("peer");
        let dir = path.parent().unwrap().to_path_buf();
        let _ = std::fs::remove_dir_all(&dir);
        let server = HookServer::bind(&path).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let script = format!(
            "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({:?})\n\
             print(s.recv(4096).decode())",
            path.display().to_string()
        );
        let out = std::process::Command::new("python3")
            .args(["-c", &script])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&out.stdout);
        assert!(
            answer.contains(r#""admitted":false"#) && answer.contains("uid 65534"),
            "{answer} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let notices = loop {
            let n = server.take_notices();
            if !n.is_empty() || std::time::Instant::now() > deadline {
                break n;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(notices[0].contains("may not ask"), "{notices:?}");
        assert!(server.try_recv().is_none());
        drop(server);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Connections beyond the cap are answered `busy` at once; a request trickled in is cut
    /// at the deadline, not after one read timeout per byte.
    #[test]
    fn connections_are_capped_and_requests_bounded_in_time() {
        let path = sock("cap");
        let options = HookOptions {
            max_connections: 2,
            deadline: Duration::from_millis(600),
            ..HookOptions::default()
        };
        let server = HookServer::bind_with(&path, options).unwrap();
        // Two silent connections hold both places.
        let held: Vec<UnixStream> = (0..2)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let mut third = UnixStream::connect(&path).unwrap();
        third
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = String::new();
        BufReader::new(&mut third).read_line(&mut answer).unwrap();
        assert!(answer.contains("busy: 2 hook requests"), "{answer}");
        // The silent ones are answered at their deadline.
        for mut c in held {
            let t = std::time::Instant::now();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut a = String::new();
            BufReader::new(&mut c).read_line(&mut a).unwrap();
            assert!(a.contains("did not arrive in time"), "{a}");
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        }
        // A trickle: one byte every 100 ms never completes a request within the deadline.
        let mut slow = UnixStream::connect(&path).unwrap();
        let t = std::time::Instant::now();
        let writer = {
            let mut w = slow.try_clone().unwrap();
            std::thread::spawn(move || {
                for b in STATE.bytes().take(40) {
                    if w.write_all(&[b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut a = String::new();
        BufReader::new(&mut slow).read_line(&mut a).unwrap();
        assert!(a.contains("did not arrive in time"), "{a}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        writer.join().unwrap();
        let notices = server.take_notices();
        assert!(
            notices.iter().filter(|n| n.contains("busy")).count() == 1
                && notices.iter().filter(|n| n.contains("in time")).count() == 3,
            "{notices:?}"
        );
        drop(server);
    }

    #[test]
    fn a_file_in_the_way_is_not_replaced() {
        let path = sock("file");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "data").unwrap();
        let e = HookServer::bind(&path).unwrap_err();
        assert!(
            armor_core::diag::error_chain(&e).contains("exists and is not a socket"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
        std::fs::remove_file(&path).unwrap();
    }
}
