#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The metrics endpoint over real HTTP: named series move when the agent counts (an alert
//! raises its policy's counter, a gRPC drop the drop counter), `/readyz` waits for the first
//! policy set, `/healthz` fails with the reason once the loop stalls.

use std::time::Duration;

use armor_core::enforcer::Capacity;
use armor_core::telemetry::Telemetry;
use armor_runtime::metrics::{self, Metrics};

#[path = "support/scrape.rs"]
mod scrape;
use scrape::{http_get, series};

fn alert(policy: &str, action: &str) -> Telemetry {
    serde_json::from_value(serde_json::json!({
        "Type": "MatchedPolicy", "PolicyName": policy, "Action": action, "Operation": "File"
    }))
    .unwrap()
}

#[test]
fn series_move_and_the_probes_say_ready_and_alive() {
    let m = Metrics::with_stall_after(Duration::from_millis(300));
    let addr = metrics::serve("127.0.0.1:0".parse().unwrap(), m.clone()).unwrap();
    let (code, body) = http_get(addr, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("first policy set"), "{body}");
    let (code, text) = http_get(addr, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(
        series(&text, "armor_events_total{source=\"ebpf\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        series(
            &text,
            &format!(
                "armor_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0),
        "{text}"
    );

    m.turned();
    m.set_ready();
    m.events(3);
    m.record(&alert("no-secrets", "Block"));
    m.record(&alert("no-secrets", "Block"));
    m.record(&serde_json::from_value(serde_json::json!({"Type": "ContainerLog"})).unwrap());
    m.lost_total(5);
    m.lost_total(7);
    m.applied(Duration::from_millis(12), 42);
    m.feed(2, (100, 0));
    m.feed(1, (150, 9));
    m.probe("BPFLSM", false);
    m.probe("AppArmor", true);
    assert_eq!(http_get(addr, "/readyz").0, 200);
    assert_eq!(http_get(addr, "/healthz").0, 200);
    let (_, text) = http_get(addr, "/metrics");
    for (name, want) in [
        ("armor_events_total{source=\"ebpf\"}", 3.0),
        ("armor_events_lost_total{source=\"ebpf\"}", 7.0),
        (
            "armor_alerts_total{policy=\"no-secrets\",action=\"Block\"}",
            2.0,
        ),
        ("armor_records_total{kind=\"alert\"}", 2.0),
        ("armor_records_total{kind=\"log\"}", 1.0),
        ("armor_policy_rules", 42.0),
        ("armor_policy_apply_seconds_count", 1.0),
        ("armor_grpc_clients", 1.0),
        ("armor_grpc_records_total{outcome=\"queued\"}", 150.0),
        ("armor_grpc_records_total{outcome=\"dropped\"}", 9.0),
        (
            "armor_enforcer_probe{enforcer=\"BPFLSM\",result=\"refused\"}",
            1.0,
        ),
        (
            "armor_enforcer_probe{enforcer=\"AppArmor\",result=\"chosen\"}",
            1.0,
        ),
    ] {
        assert_eq!(series(&text, name), Some(want), "{name}:\n{text}");
    }

    // The loop stops turning: /healthz says so.
    std::thread::sleep(Duration::from_millis(400));
    let (code, body) = http_get(addr, "/healthz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("has not turned for"), "{body}");
    m.turned();
    assert_eq!(http_get(addr, "/healthz").0, 200);
    assert_eq!(http_get(addr, "/nothing").0, 404);

    // The enforcer's capacity is shown; an enforcer that lost what it applied fails /healthz
    // with the reason until a check finds it whole again.
    let capacity = [
        ("BPFLSM", Capacity::new("workloads", 3, 16384)),
        ("BPFLSM", Capacity::new("rule_table_slots", 40, 131_072)),
    ];
    m.enforcer(Ok(()), &capacity);
    let (_, text) = http_get(addr, "/metrics");
    for (name, want) in [
        ("armor_enforcer_healthy", 1.0),
        (
            "armor_enforcer_capacity{enforcer=\"BPFLSM\",resource=\"workloads\"}",
            16384.0,
        ),
        (
            "armor_enforcer_capacity_used{enforcer=\"BPFLSM\",resource=\"workloads\"}",
            3.0,
        ),
        (
            "armor_enforcer_capacity_used{enforcer=\"BPFLSM\",resource=\"rule_table_slots\"}",
            40.0,
        ),
    ] {
        assert_eq!(series(&text, name), Some(want), "{name}:\n{text}");
    }
    let fault =
        "AppArmor: 1 of the 2 profiles armor applied are not in force (armor.w is not loaded)";
    m.enforcer(Err(fault.to_owned()), &[]);
    let (code, body) = http_get(addr, "/healthz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(fault), "{body}");
    let (_, text) = http_get(addr, "/metrics");
    assert_eq!(series(&text, "armor_enforcer_healthy"), Some(0.0), "{text}");
    m.enforcer(Ok(()), &[]);
    assert_eq!(http_get(addr, "/healthz").0, 200);
}
