//! `armor-oci-hook` as runc runs it — the OCI state on stdin, the verdict in its exit status and
//! stderr — against the agent's end of the socket (`armor_runtime::hook::HookServer`), and the
//! agent's `--hook-socket` flag.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failure is a test failure"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use armor_runtime::hook::{Admission, HookServer};

const STATE: &str = r#"{"ociVersion":"1.0.2","id":"c7","status":"creating","pid":77,
    "bundle":"/run/containerd/io.containerd.runtime.v2.task/k8s.io/c7"}"#;

fn hook(socket: &Path, extra: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_armor-oci-hook"))
        .arg("--socket")
        .arg(socket)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(STATE.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn socket(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("armor-ex-hook-{tag}-{}/h.sock", std::process::id()))
}

#[test]
fn the_hook_binary_exits_with_the_agents_verdict() {
    let path = socket("verdict");
    let server = HookServer::bind(&path).unwrap();
    for (verdict, code) in [
        (Admission::Admitted("in force".into()), 0),
        (Admission::Refused("rules do not fit".into()), 1),
    ] {
        let p = path.clone();
        let run = std::thread::spawn(move || hook(&p, &[]));
        let req = server.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(req.state().id, "c7");
        assert_eq!(req.state().pid, 77);
        assert_eq!(
            req.state().containerd_namespace().as_deref(),
            Some("k8s.io")
        );
        req.answer(verdict);
        let out = run.join().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{err}");
        if code == 1 {
            assert!(
                err.contains("container c7 refused by the armor agent: rules do not fit"),
                "{err}"
            );
        }
    }
}

#[test]
fn without_an_agent_the_hook_fails_closed_unless_fail_open() {
    let path = socket("absent");
    let out = hook(&path, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not created"));
    let out = hook(&path, &["--fail-open"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fail-open"));
}

#[test]
fn the_agents_hook_socket_needs_containerd() {
    let out = Command::new(env!("CARGO_BIN_EXE_armor-agent"))
        .args(["--policies", "/nonexistent", "--hook-socket", "/tmp/x.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--containerd-socket"), "{err}");
    let help = Command::new(env!("CARGO_BIN_EXE_armor-agent"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--hook-socket"), "{help}");
    assert!(help.contains("createRuntime"), "{help}");
}
