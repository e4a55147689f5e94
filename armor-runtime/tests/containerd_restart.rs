#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The agent's containerd event stream survives a containerd restart: the agent (in-process,
//! with a recording enforcer) follows a private containerd; containerd stops, and while it is
//! down one container's process dies; it comes back and another container is created at once.
//! The agent logs the lost stream, is not ready (`/readyz` 503 with why), subscribes again with
//! backoff, resyncs against containerd's list — the dead container's rules are removed, the
//! new container's applied — and is ready again.

mod support;

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use armor_core::WorkloadKey;
use armor_runtime::agent::{self, AgentOptions};
use armor_runtime::metrics::{self, Metrics};
use armor_runtime::{EnforcementOptions, EnforcerChoice};
use armor_testing::recording::{RecordingEnforcer, RecordingFactory};
use support::{Daemon, Driver, Spec, oci};

#[path = "support/scrape.rs"]
mod scrape;

const POLICY: &str = r"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: audit-secret, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  file:
    matchPaths: [{path: /etc/armor-secret}]
  action: Audit
";

const IMAGE: &str = "docker.io/armor-test/busybox:latest";

fn spec(name: &str) -> Spec {
    let h = |seed: &str| {
        oci::digest(format!("restart-{seed}-{}", std::process::id()).as_bytes())["sha256:".len()..]
            .to_string()
    };
    let p = h(&format!("pod-{name}"));
    Spec {
        id: h(name),
        pod_uid: format!(
            "{}-{}-{}-{}-{}",
            &p[..8],
            &p[8..12],
            &p[12..16],
            &p[16..20],
            &p[20..32]
        ),
        labels: vec![
            ("io.kubernetes.pod.namespace".into(), "shop".into()),
            ("io.kubernetes.pod.name".into(), format!("{name}-0")),
            ("io.kubernetes.container.name".into(), name.into()),
            ("app".into(), "web".into()),
        ],
        args: vec!["/bin/sleep".into(), "3600".into()],
        hooks: None,
    }
}

/// The key the runtime gives container `name` of [`spec`].
fn key_name(name: &str) -> String {
    format!("shop/{name}-0/{name}")
}

fn installed(rec: &RecordingEnforcer, name: &str) -> bool {
    rec.installed()
        .keys()
        .any(|k: &WorkloadKey| k.name == key_name(name))
}

/// Waits up to 30 s for a log line containing `part`.
fn until(lines: &mpsc::Receiver<String>, part: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(l) => {
                println!("  agent: {l}");
                seen.push(l.clone());
                if l.contains(part) {
                    return l;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no agent line with `{part}`:\n{}", seen.join("\n"));
}

#[test]
fn a_containerd_restart_is_resubscribed_and_resynced() {
    if let Some(why) = support::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let mut daemon = Daemon::start("restart");
    let dir = daemon.dir.join("policies");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("p.yaml"), POLICY).unwrap();
    let mut driver = Driver::connect(&daemon.socket, &daemon.dir);
    driver.load_busybox(IMAGE, &[("etc/armor-secret", b"s3cret\n")]);
    let (web, dies, late) = (spec("web"), spec("dies"), spec("late"));
    driver.run(&web);
    let dies_pid = driver.run(&dies);

    let recording = Arc::new(RecordingEnforcer::new());
    let m = Metrics::new();
    let addr = metrics::serve("127.0.0.1:0".parse().unwrap(), m.clone()).unwrap();
    let options = AgentOptions::new(&dir)
        .containerd_socket(&daemon.socket)
        .enforcer(EnforcerChoice::Named("recording".into()))
        .enforcement(
            EnforcementOptions::empty()
                .register(Arc::new(RecordingFactory::new(recording.clone()))),
        )
        .metrics(m);
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, lines) = mpsc::channel();
    let agent = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut out = std::io::sink();
            let mut log = |l: &str| {
                let _ = tx.send(l.to_owned());
            };
            let r = agent::run(&options, &mut out, &mut log, &stop);
            if let Err(e) = &r {
                let _ = tx.send(format!(
                    "agent failed: {}",
                    armor_core::diag::error_chain(e)
                ));
            }
            r
        })
    };
    let mut seen = Vec::new();
    until(&lines, "ready:", &mut seen);
    assert!(installed(&recording, "web") && installed(&recording, "dies"));
    assert_eq!(scrape::http_get(addr, "/readyz").0, 200);

    // containerd goes away; meanwhile `dies`'s process dies (no event can tell the agent).
    daemon.stop();
    let ended = until(&lines, "containerd events ended", &mut seen);
    assert!(ended.contains("subscribing again"), "{ended}");
    let (code, body) = scrape::http_get(addr, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("containerd events lost"), "{body}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(dies_pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // At least one try fails while containerd is down, and says when the next comes.
    until(&lines, "to subscribe again failed", &mut seen);

    // containerd comes back; a container is created at once.
    daemon.resume();
    driver.reconnect(&daemon.socket);
    driver.run(&late);
    let back = until(&lines, "containerd events subscribed again", &mut seen);
    println!("{back}");
    // Whether `late` came through the resync or the new stream, its rules are applied; the
    // dead container's are removed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !installed(&recording, "late") || installed(&recording, "dies") {
        assert!(
            Instant::now() < deadline,
            "late {} dies {}: {:?}\n{}",
            installed(&recording, "late"),
            installed(&recording, "dies"),
            recording.installed().keys().collect::<Vec<_>>(),
            seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
        seen.extend(lines.try_iter());
    }
    assert!(installed(&recording, "web"));
    assert_eq!(scrape::http_get(addr, "/readyz").0, 200);

    stop.store(true, Ordering::SeqCst);
    agent.join().unwrap().unwrap();
    drop(driver);
    drop(daemon);
}
