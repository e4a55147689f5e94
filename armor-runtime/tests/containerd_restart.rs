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
use std::time::{Duration, Instant};

use armor_core::WorkloadKey;
use armor_runtime::agent::AgentOptions;
use armor_runtime::metrics::{self, Metrics};
use armor_runtime::{EnforcementOptions, EnforcerChoice};
use armor_testing::recording::{RecordingEnforcer, RecordingFactory};
use support::{Daemon, Driver, Spec};

#[path = "support/agent.rs"]
mod in_process;
use in_process::InProcessAgent;

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

/// How long the agent may take to say something.
const LONG: Duration = Duration::from_secs(30);

/// The key the runtime gives container `name` of [`spec`].
fn key_name(name: &str) -> String {
    format!("shop/{name}-0/{name}")
}

fn installed(rec: &RecordingEnforcer, name: &str) -> bool {
    rec.installed()
        .keys()
        .any(|k: &WorkloadKey| k.name == key_name(name))
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
    let spec = |name: &str| Spec::web("restart", name, None);
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
    let mut agent = InProcessAgent::start(options);
    agent.until("ready:", LONG);
    assert!(installed(&recording, "web") && installed(&recording, "dies"));
    assert_eq!(scrape::http_get(addr, "/readyz").0, 200);

    // containerd goes away; meanwhile `dies`'s process dies (no event can tell the agent).
    daemon.stop();
    let ended = agent.until("containerd events ended", LONG);
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
    agent.until("to subscribe again failed", LONG);

    // containerd comes back; a container is created at once.
    daemon.resume();
    driver.reconnect(&daemon.socket);
    driver.run(&late);
    let back = agent.until("containerd events subscribed again", LONG);
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
            agent.seen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(installed(&recording, "web"));
    assert_eq!(scrape::http_get(addr, "/readyz").0, 200);

    agent.stop().unwrap();
    drop(driver);
    drop(daemon);
}
