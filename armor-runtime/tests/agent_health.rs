#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The agent checks its enforcer every second: an enforcer that no longer holds what it
//! applied is logged (`enforcer fault: …`) and fails the metrics' `/healthz` with the reason
//! until it is whole again; the enforcer's capacity is on `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use armor_runtime::agent::AgentOptions;
use armor_runtime::metrics::{self, Metrics};
use armor_runtime::{EnforcementOptions, EnforcerChoice};
use armor_testing::recording::{RecordingEnforcer, RecordingFactory};

mod host;
use host::{fresh_dir, root_or_skip};

#[path = "support/agent.rs"]
mod in_process;
#[path = "support/scrape.rs"]
mod scrape;
use in_process::InProcessAgent;
use scrape::{http_get, series};

const HOST_POLICY: &str = r"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata: {name: host-no-shadow}
spec:
  nodeSelector: {matchLabels: {kubernetes.io/hostname: test}}
  file:
    matchPaths: [{path: /etc/shadow}]
  action: Block
";

/// How long the agent may take to say something.
const TEN: Duration = Duration::from_secs(10);

/// Waits up to 10 s for `/healthz` to answer `code`; returns the body.
fn wait_health(addr: std::net::SocketAddr, code: u16) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let (got, body) = http_get(addr, "/healthz");
        if got == code {
            return body;
        }
        assert!(
            Instant::now() < end,
            "/healthz still {got} ({body}), wanted {code}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_enforcer_fault_is_logged_and_fails_healthz_until_it_is_over() {
    if !root_or_skip() {
        return;
    }
    let dir = fresh_dir("armor-agent-health", "policies");
    std::fs::write(dir.join("host.yaml"), HOST_POLICY).unwrap();
    let recording = Arc::new(RecordingEnforcer::new());
    let m = Metrics::new();
    let addr = metrics::serve("127.0.0.1:0".parse().unwrap(), m.clone()).unwrap();
    let mut config = armor_runtime::RuntimeConfig::default();
    config
        .host_labels
        .insert("kubernetes.io/hostname".into(), "test".into());
    let options = AgentOptions::new(&dir)
        .config(config)
        .enforcer(EnforcerChoice::Named("recording".into()))
        .enforcement(
            EnforcementOptions::empty()
                .register(Arc::new(RecordingFactory::new(recording.clone()))),
        )
        .metrics(m);
    let mut agent = InProcessAgent::start(options);
    agent.until("ready:", TEN);
    // The metrics are complete once /readyz says ready (the log line comes a moment before).
    let end = Instant::now() + TEN;
    while http_get(addr, "/readyz").0 != 200 {
        assert!(Instant::now() < end, "/readyz never 200");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(wait_health(addr, 200), "ok\n");
    let (_, text) = http_get(addr, "/metrics");
    let workloads = "armor_enforcer_capacity_used{enforcer=\"Recording\",resource=\"workloads\"}";
    assert_eq!(series(&text, workloads), Some(1.0), "the host:\n{text}");
    assert_eq!(
        series(
            &text,
            "armor_enforcer_capacity{enforcer=\"Recording\",resource=\"workloads\"}"
        ),
        Some(RecordingEnforcer::CAPACITY as f64),
        "{text}"
    );
    assert_eq!(series(&text, "armor_enforcer_healthy"), Some(1.0), "{text}");

    let fault = "Recording: the host's rules were taken away";
    recording.set_health(Some(fault));
    let line = agent.until("enforcer fault:", TEN);
    assert_eq!(line, format!("enforcer fault: {fault}"));
    let body = wait_health(addr, 503);
    assert!(body.contains(fault), "{body}");
    let (_, text) = http_get(addr, "/metrics");
    assert_eq!(series(&text, "armor_enforcer_healthy"), Some(0.0), "{text}");

    recording.set_health(None);
    agent.until("enforcer fault over", TEN);
    wait_health(addr, 200);
    // Logged once per change, not every second.
    std::thread::sleep(Duration::from_millis(1500));
    let seen = agent.seen().to_owned();
    assert_eq!(
        seen.lines()
            .filter(|l| l.contains("enforcer fault"))
            .count(),
        2,
        "{seen}"
    );
    agent.stop().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
