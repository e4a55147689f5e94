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

/// How long a connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the server waits for the agent to decide before it answers `refused`.
const DECIDE_TIMEOUT: Duration = Duration::from_secs(120);

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

/// The agent's end: a Unix socket (mode 0600) whose requests come out of
/// [`HookServer::try_recv`]. Each connection is served by a thread of its own; dropping the
/// server stops accepting and removes the socket.
#[derive(Debug)]
pub struct HookServer {
    path: PathBuf,
    rx: mpsc::Receiver<HookRequest>,
    stop: Arc<AtomicBool>,
}

impl HookServer {
    /// Listens on `path` (its directory is created; a stale socket left there is replaced, any
    /// other file is an error).
    pub fn bind(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let shown = path.display().to_string();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io("mkdir", &dir.display().to_string(), e))?;
        }
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_socket() => {
                std::fs::remove_file(&path).map_err(|e| Error::io("unlink", &shown, e))?;
            }
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
        let listener = UnixListener::bind(&path).map_err(|e| Error::io("bind", &shown, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("chmod", &shown, e))?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("armor-hook-accept".into())
            .spawn(move || accept_loop(&listener, &tx, &flag))
            .map_err(|e| Error::io("spawn", "hook server thread", e))?;
        Ok(Self { path, rx, stop })
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
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: &UnixListener, tx: &mpsc::Sender<HookRequest>, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else {
            // Out of descriptors or the like: do not spin while it lasts.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let tx = tx.clone();
        let _ = std::thread::Builder::new()
            .name("armor-hook-conn".into())
            .spawn(move || serve(conn, &tx));
    }
}

/// One connection: a request line in, the verdict line out.
fn serve(conn: UnixStream, tx: &mpsc::Sender<HookRequest>) {
    let _ = conn.set_read_timeout(Some(READ_TIMEOUT));
    let mut line = String::new();
    let read = match conn.try_clone() {
        Ok(c) => BufReader::new(c.take(MAX_REQUEST)).read_line(&mut line),
        Err(e) => Err(e),
    };
    let verdict = match read {
        Err(e) => Admission::Refused(format!("reading the request: {e}")),
        Ok(_) => match HookState::parse(line.as_bytes()) {
            Err(e) => Admission::Refused(armor_core::diag::error_chain(&e)),
            Ok(state) => {
                let (reply, answer) = mpsc::channel();
                if tx.send(HookRequest { state, reply }).is_err() {
                    Admission::Refused("the agent is stopping".into())
                } else {
                    answer.recv_timeout(DECIDE_TIMEOUT).unwrap_or_else(|_| {
                        Admission::Refused("the agent did not decide in time".into())
                    })
                }
            }
        },
    };
    let mut conn = conn;
    let _ = conn.write_all(verdict.to_line().as_bytes());
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
    #![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]
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
