#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! Services of the inventory as workloads: found by their cgroup directory, tracked like
//! containers (rules, enforcers, identity), followed through start, restart, inventory changes
//! and stop; and, as root, real kernel events of a process in a unit's cgroup.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use armor_core::enforcer::EnforcerAlert;
use armor_core::inventory::Inventory;
use armor_core::telemetry::Telemetry;
use armor_core::{Category, WorkloadKey};
use armor_ebpf::{EventSource, Options};
use armor_runtime::{ContainerChange, Runtime, RuntimeConfig, load_policies};
use armor_testing::recording::{Call, RecordingEnforcer};

mod host;
use host::{fresh_dir, root_or_skip};

const POLICIES: &str = r#"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: svc-audit-secret, namespace: svc}
spec:
  severity: 3
  selector: {matchLabels: {app: armor-svc}}
  file:
    matchPaths: [{path: /tmp/armor-svc-secret}]
  action: Audit
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata: {name: host-audit-secret}
spec:
  nodeSelector: {matchLabels: {armor-test: services}}
  file:
    matchPaths: [{path: /tmp/armor-svc-secret}]
  action: Audit
"#;

fn tmp(tag: &str) -> PathBuf {
    fresh_dir("armor-svc", tag)
}

fn config() -> RuntimeConfig {
    let mut c = RuntimeConfig::default().throttling(0, Duration::from_secs(1));
    c.host_labels = BTreeMap::from([("armor-test".to_string(), "services".to_string())]);
    c
}

fn inventory(unit: &str, app: &str) -> Inventory {
    Inventory::parse(
        &format!(
            "services:\n  - unit: {unit}\n    namespace: svc\n    name: armor-svc\n    labels: {{app: {app}}}\n  - unit: absent.service\n"
        ),
        "inventory.yaml",
    )
    .unwrap()
}

fn ino(p: &Path) -> u64 {
    fs::metadata(p).unwrap().ino()
}

/// Without root: a temp directory plays the cgroup2 mount, a recording enforcer the kernel's.
#[test]
fn services_follow_the_inventory_and_their_cgroups() {
    let dir = tmp("policies");
    fs::write(dir.join("p.yaml"), POLICIES).unwrap();
    let root = tmp("cgroup-root");
    let unit_dir = root.join("system.slice/nginx.service");
    fs::create_dir_all(&unit_dir).unwrap();
    // Running but not listed: stays the host's.
    fs::create_dir_all(root.join("system.slice/cron.service")).unwrap();
    let rec = Arc::new(RecordingEnforcer::new());
    let mut rt = Runtime::new(
        config(),
        load_policies(&[&dir]).unwrap(),
        vec![rec.clone()],
        None,
    );
    let inv = inventory("nginx.service", "armor-svc");

    let changes = rt.sync_services(&inv, &root);
    let key = WorkloadKey::new("svc/nginx.service").with_cgroup(ino(&unit_dir));
    assert_eq!(changes, vec![ContainerChange::Tracked(key.clone())]);
    assert_eq!(rt.services(), vec![key.clone()]);
    assert!(rt.containers().is_empty());
    let installed = rec.installed();
    assert!(
        installed[&key].contains("svc-audit-secret"),
        "{installed:?}"
    );
    // Host policies do not apply to the service; they still apply to the host.
    assert!(
        !installed[&key].contains("host-audit-secret"),
        "{installed:?}"
    );
    let host = installed
        .iter()
        .find(|(k, _)| k.name == "host")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(host.contains("host-audit-secret"), "{host}");
    assert!(!installed.keys().any(|k| k.name.contains("cron")));
    assert!(rt.take_problems().is_empty());

    // Nothing changed: nothing done.
    let applies = rec.calls().len();
    assert!(rt.sync_services(&inv, &root).is_empty());
    assert_eq!(rec.calls().len(), applies);

    // Its records carry the service's identity (an enforcer alert here; kernel events in the
    // root test below).
    let tree = armor_ebpf::ProcessTree::new();
    let r = rt.enforcer_alert(
        &EnforcerAlert::blocked("BPFLSM", None, Category::File, "/etc/shadow")
            .with_workload(key.clone()),
        &tree,
    );
    assert_eq!(r.kind.as_deref(), Some("MatchedPolicy"));
    assert_eq!(r.container_id.as_deref(), Some("nginx.service"));
    assert_eq!(r.container_name.as_deref(), Some("armor-svc"));
    assert_eq!(r.namespace_name.as_deref(), Some("svc"));
    assert_eq!(r.labels.as_deref(), Some("app=armor-svc"));
    assert_eq!(r.container_image.as_deref(), Some(""));
    assert_eq!(r.pod_name, None);

    // A cgroup below the unit's (a unit with `Delegate=`) is the service's too, with its
    // identity and rules, and is untracked when it goes.
    let worker_dir = unit_dir.join("worker");
    fs::create_dir(&worker_dir).unwrap();
    let worker = WorkloadKey::new("svc/nginx.service/worker").with_cgroup(ino(&worker_dir));
    assert_eq!(
        rt.sync_services(&inv, &root),
        vec![ContainerChange::Tracked(worker.clone())]
    );
    assert_eq!(rt.services(), vec![key.clone(), worker.clone()]);
    assert_eq!(rt.service_units(), ["nginx.service"]);
    assert_eq!(rec.installed()[&worker], rec.installed()[&key]);
    let r = rt.enforcer_alert(
        &EnforcerAlert::blocked("BPFLSM", None, Category::File, "/etc/shadow")
            .with_workload(worker.clone()),
        &tree,
    );
    assert_eq!(r.container_id.as_deref(), Some("nginx.service"));
    assert_eq!(r.container_name.as_deref(), Some("armor-svc"));
    assert!(rt.sync_services(&inv, &root).is_empty());
    fs::remove_dir(&worker_dir).unwrap();
    assert_eq!(
        rt.sync_services(&inv, &root),
        vec![ContainerChange::Untracked(
            "nginx.service/worker".to_string()
        )]
    );
    assert!(!rec.installed().contains_key(&worker));
    assert_eq!(rt.services(), vec![key.clone()]);

    // A policy reload gives the service its new rules.
    fs::write(
        dir.join("p.yaml"),
        POLICIES.replace(
            "matchPaths: [{path: /tmp/armor-svc-secret}]\n  action: Audit\n---",
            "matchPaths: [{path: /tmp/armor-svc-other}]\n  action: Audit\n---",
        ),
    )
    .unwrap();
    rt.reload(&[&dir]).unwrap();
    let now = rec.installed();
    assert!(now[&key].contains("/tmp/armor-svc-other"), "{now:?}");
    assert_eq!(rt.services(), vec![key.clone()]);

    // A restart: systemd removes the cgroup and creates a new one (a new cgroup id). The new
    // directory exists before the old one goes, so its inode differs.
    let fresh = root.join("system.slice/fresh");
    fs::create_dir(&fresh).unwrap();
    fs::remove_dir(&unit_dir).unwrap();
    fs::rename(&fresh, &unit_dir).unwrap();
    let restarted = WorkloadKey::new("svc/nginx.service").with_cgroup(ino(&unit_dir));
    assert_ne!(restarted, key);
    assert_eq!(
        rt.sync_services(&inv, &root),
        vec![
            ContainerChange::Untracked("nginx.service".to_string()),
            ContainerChange::Tracked(restarted.clone()),
        ]
    );
    assert!(
        rec.calls()
            .iter()
            .any(|c| matches!(c, Call::Remove(k, true) if *k == key))
    );
    let now = rec.installed();
    assert!(!now.contains_key(&key));
    assert!(now.contains_key(&restarted));

    // The inventory changes its labels: the service is re-registered with its new identity, and
    // the policy selecting the old labels no longer applies.
    let relabelled = inventory("nginx.service", "other");
    assert_eq!(
        rt.sync_services(&relabelled, &root),
        vec![
            ContainerChange::Untracked("nginx.service".to_string()),
            ContainerChange::Tracked(restarted.clone()),
        ]
    );
    assert!(!rec.installed()[&restarted].contains("svc-audit"));
    let r = rt.enforcer_alert(
        &EnforcerAlert::blocked("BPFLSM", None, Category::File, "/etc/shadow")
            .with_workload(restarted.clone()),
        &tree,
    );
    assert_eq!(r.labels.as_deref(), Some("app=other"));

    // Stopped: its cgroup is gone, it is no longer tracked.
    fs::remove_dir(&unit_dir).unwrap();
    assert_eq!(
        rt.sync_services(&relabelled, &root),
        vec![ContainerChange::Untracked("nginx.service".to_string())]
    );
    assert!(rt.services().is_empty());
    assert!(!rec.installed().contains_key(&restarted));

    // Started again, then dropped from the inventory: untracked although it runs.
    fs::create_dir(&unit_dir).unwrap();
    assert_eq!(rt.sync_services(&relabelled, &root).len(), 1);
    assert_eq!(rt.services().len(), 1);
    assert_eq!(
        rt.sync_services(&Inventory::new(), &root),
        vec![ContainerChange::Untracked("nginx.service".to_string())]
    );
    assert!(rt.services().is_empty());
    fs::remove_dir_all(&root).unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

struct Cg(Vec<PathBuf>);
impl Drop for Cg {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = fs::write(d.join("cgroup.kill"), "1");
            for _ in 0..100 {
                if fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// As root, on real kernel events: a process in a cgroup named like a unit (under a test slice)
/// is the service's — its records carry the service's identity, the KSP selecting the service's
/// labels raises its Audit alert, and the host policy on the same file does not apply to it,
/// while it still does to a host process reading the file.
#[test]
fn a_unit_cgroup_process_is_the_service_on_kernel_events() {
    if !root_or_skip() {
        return;
    }
    let pid = std::process::id();
    let dir = tmp("live-policies");
    fs::write(dir.join("p.yaml"), POLICIES).unwrap();
    let root = armor_runtime::identity::cgroup2_root().unwrap();
    let slice = root.join(format!("armor-test-{pid}.slice"));
    let unit = format!("armor-test-{pid}.service");
    let unit_dir = slice.join(&unit);
    // A cgroup the unit made below its own (`Delegate=`).
    let worker_dir = unit_dir.join("worker");
    let _cg = Cg(vec![worker_dir.clone(), unit_dir.clone(), slice.clone()]);
    fs::create_dir_all(&worker_dir).unwrap();

    let mut source = EventSource::load(Options::default()).unwrap();
    let controls = source.controls();
    let mut rt = Runtime::new(
        config(),
        load_policies(&[&dir]).unwrap(),
        vec![],
        Some(controls.clone()),
    );
    controls
        .set_default_visibility(&rt.host_visibility())
        .unwrap();
    let inv = inventory(&unit, "armor-svc");
    let key = WorkloadKey::new(format!("svc/{unit}")).with_cgroup(ino(&unit_dir));
    let worker = WorkloadKey::new(format!("svc/{unit}/worker")).with_cgroup(ino(&worker_dir));
    assert_eq!(
        rt.sync_services(&inv, &root),
        vec![
            ContainerChange::Tracked(key),
            ContainerChange::Tracked(worker)
        ]
    );

    let secret = "/tmp/armor-svc-secret";
    fs::write(secret, "s").unwrap();
    // The service's processes (in its cgroup and in the one below), then a host process,
    // read the file.
    for cg in [&unit_dir, &worker_dir] {
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec /bin/sh -c '/bin/cat {secret} > /dev/null'",
            cg.display()
        );
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let out = Command::new("/bin/cat").arg(secret).output().unwrap();
    assert!(out.status.success(), "{out:?}");

    let ours = |r: &Telemetry| r.container_id.as_deref() == Some(unit.as_str());
    let mut records: Vec<Telemetry> = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let mut events = Vec::new();
        source
            .poll(Duration::from_millis(50), &mut |e| events.push(e.clone()))
            .unwrap();
        for e in &events {
            records.extend(rt.handle(e, source.process_tree()));
        }
        let service_alerts = records
            .iter()
            .filter(|r| ours(r) && r.policy_name.as_deref() == Some("svc-audit-secret"))
            .count();
        let host_alert = records
            .iter()
            .any(|r| r.policy_name.as_deref() == Some("host-audit-secret"));
        if service_alerts >= 2 && host_alert {
            break;
        }
    }
    let dump = records
        .iter()
        .filter(|r| ours(r) || r.policy_name.is_some())
        .map(|r| serde_json::to_string(r).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let service: Vec<&Telemetry> = records.iter().filter(|r| ours(r)).collect();
    assert!(!service.is_empty(), "no record of the service:\n{dump}");
    for r in &service {
        assert_eq!(r.container_name.as_deref(), Some("armor-svc"), "{dump}");
        assert_eq!(r.namespace_name.as_deref(), Some("svc"));
        assert_eq!(r.labels.as_deref(), Some("app=armor-svc"));
        assert_eq!(r.container_image.as_deref(), Some(""));
        assert_eq!(r.pod_name, None);
        assert!(
            matches!(r.kind.as_deref(), Some("ContainerLog" | "MatchedPolicy")),
            "{dump}"
        );
        // The host policy does not apply to the service's processes.
        assert_ne!(
            r.policy_name.as_deref(),
            Some("host-audit-secret"),
            "{dump}"
        );
    }
    let alert = service
        .iter()
        .find(|r| r.policy_name.as_deref() == Some("svc-audit-secret"))
        .unwrap_or_else(|| panic!("no service alert:\n{dump}"));
    assert_eq!(alert.kind.as_deref(), Some("MatchedPolicy"));
    assert_eq!(alert.action.as_deref(), Some("Audit"));
    assert_eq!(alert.severity.as_deref(), Some("3"));
    assert_eq!(alert.resource.as_deref(), Some(secret));
    assert!(
        alert.process_name.as_deref().unwrap().ends_with("/cat"),
        "{dump}"
    );
    // Both reads of the service (its cgroup's and the one below) are the service's.
    let service_alerts = service
        .iter()
        .filter(|r| r.policy_name.as_deref() == Some("svc-audit-secret"))
        .count();
    assert_eq!(service_alerts, 2, "{dump}");
    // The same read by a host process: the host policy's alert, with no service identity, and
    // only that one.
    let hosts: Vec<&Telemetry> = records
        .iter()
        .filter(|r| r.policy_name.as_deref() == Some("host-audit-secret"))
        .collect();
    assert_eq!(hosts.len(), 1, "{dump}");
    let host = hosts[0];
    assert_eq!(host.kind.as_deref(), Some("MatchedHostPolicy"));
    assert_eq!(host.container_id, None);
    assert_eq!(host.resource.as_deref(), Some(secret));

    // The unit stops: its cgroups go, the service is untracked.
    fs::remove_dir(&worker_dir).unwrap();
    fs::remove_dir(&unit_dir).unwrap();
    assert_eq!(
        rt.sync_services(&inv, &root),
        vec![ContainerChange::Untracked(unit.clone())]
    );
    let _ = fs::remove_file(secret);
    fs::remove_dir_all(&dir).unwrap();
}
