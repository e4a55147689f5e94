#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! A noisy host cannot starve the OCI hook: while a process floods the agent with file events
//! (far more than it can take: the kernel drops and counts the rest), containers are created
//! through a private containerd and runc with the agent's `createRuntime` hook, and every one
//! is admitted within the hook's deadline. The agent reads at most a bounded batch of events
//! per turn of its loop and answers waiting hooks first.
//!
//! The hook runc runs is this test binary ([`as_oci_hook`], the same `hook_main` as
//! `armor-oci-hook`).

mod support;

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use armor_runtime::agent::AgentOptions;
use armor_runtime::{EnforcementOptions, EnforcerChoice};
use armor_testing::recording::{RecordingEnforcer, RecordingFactory};
use support::{Daemon, Driver, Spec};

#[path = "support/agent.rs"]
mod in_process;
use in_process::InProcessAgent;

const POLICIES: &str = r"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: audit-secret, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  file:
    matchPaths: [{path: /etc/armor-secret}]
  action: Audit
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata: {name: host-audit}
spec:
  nodeSelector: {matchLabels: {}}
  file:
    matchPaths: [{path: /etc/armor-flood-secret}]
  action: Audit
";

const IMAGE: &str = "docker.io/armor-test/busybox:latest";

/// The environment variable naming the agent's hook socket for [`as_oci_hook`].
const HOOK_SOCKET_ENV: &str = "ARMOR_TEST_HOOK_SOCKET";

/// How long the hook waits for the agent (its `--timeout`).
const HOOK_TIMEOUT_S: u64 = 10;

/// Not a test of its own: runc runs this binary as the containers' `createRuntime` hook, with
/// `--ignored --exact as_oci_hook` and the socket in the environment; it reads the OCI state
/// on stdin and exits with the agent's verdict, as `armor-oci-hook` does.
#[test]
#[ignore = "run by runc as the OCI hook of a_flood_of_events_does_not_starve_the_oci_hook"]
fn as_oci_hook() {
    let Ok(socket) = std::env::var(HOOK_SOCKET_ENV) else {
        return;
    };
    let args: Vec<String> = [
        "--socket",
        &socket,
        "--timeout",
        &HOOK_TIMEOUT_S.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    let code = armor_runtime::hook::hook_main(&args, &mut std::io::stdin(), &mut std::io::stderr());
    std::process::exit(code);
}

#[test]
fn a_flood_of_events_does_not_starve_the_oci_hook() {
    if let Some(why) = support::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let daemon = Daemon::start("flood");
    let dir = daemon.dir.join("policies");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("p.yaml"), POLICIES).unwrap();
    let mut driver = Driver::connect(&daemon.socket, &daemon.dir);
    driver.load_busybox(IMAGE, &[("etc/armor-secret", b"s3cret\n")]);
    let socket = daemon.dir.join("hook/hook.sock");

    let recording = Arc::new(RecordingEnforcer::new());
    let options = AgentOptions::new(&dir)
        .containerd_socket(&daemon.socket)
        .hook_socket(&socket)
        .enforcer(EnforcerChoice::Named("recording".into()))
        .enforcement(
            EnforcementOptions::empty()
                .register(Arc::new(RecordingFactory::new(recording.clone()))),
        );
    let mut agent = InProcessAgent::start(options);
    agent.until("ready:", Duration::from_secs(60));

    // The flood: two processes opening files on the host as fast as they can.
    let flood: Vec<std::process::Child> = (0..2)
        .map(|_| {
            std::process::Command::new("python3")
                .args([
                    "-c",
                    "import os\nwhile True:\n    os.close(os.open('/etc/hostname', os.O_RDONLY))",
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));

    let exe = std::env::current_exe().unwrap();
    let hooks = serde_json::json!({"createRuntime": [{
        "path": exe.to_str().unwrap(),
        "args": ["hook", "--ignored", "--exact", "as_oci_hook", "--quiet"],
        "env": [format!("{HOOK_SOCKET_ENV}={}", socket.display())],
        "timeout": HOOK_TIMEOUT_S + 5,
    }]});
    let mut created = Vec::new();
    for i in 0..4 {
        let s = Spec::web("flood", &format!("c{i}"), Some(hooks.clone()));
        let t = Instant::now();
        let result = driver.try_create(&s);
        let took = t.elapsed();
        println!("c{i}: Tasks.Create under the flood: {took:?} → {result:?}");
        assert!(result.is_ok(), "c{i} not created: {result:?}");
        created.push((s, took));
    }
    for mut p in flood {
        let _ = p.kill();
        let _ = p.wait();
    }
    let seen = agent.seen().to_owned();
    let admitted: Vec<&str> = seen
        .lines()
        .filter(|l| l.contains("admitted by the OCI hook in"))
        .collect();
    for l in &admitted {
        println!("agent: {l}");
    }
    assert_eq!(admitted.len(), 4, "{seen}");
    for (_, took) in &created {
        assert!(
            *took < Duration::from_secs(HOOK_TIMEOUT_S),
            "a creation took {took:?}, past the hook's deadline"
        );
    }
    let lost = seen
        .lines()
        .filter(|l| l.contains("events lost in the kernel"))
        .count();
    println!("loss lines during the flood: {lost}");
    for (s, _) in &created {
        assert!(
            recording
                .installed()
                .keys()
                .any(|k| k.name.contains(&s.labels[2].1)),
            "no rules for {}",
            s.id
        );
    }
    agent.stop().unwrap();
    drop(driver);
    drop(daemon);
}
