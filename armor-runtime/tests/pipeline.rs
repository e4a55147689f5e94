#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The runtime on real kernel events: a cgroup of the test plays a container registered with
//! Kubernetes labels; commands run in it; the records are checked field by field.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use armor_core::enforcer::EnforcerAlert;
use armor_core::telemetry::Telemetry;
use armor_core::{Category, Visibility};
use armor_ebpf::{EventSource, Options};
use armor_runtime::containerd::{ContainerEvent, ContainerInfo};
use armor_runtime::{ContainerChange, Runtime, RuntimeConfig, load_policies};
use armor_testing::recording::{Call, RecordingEnforcer};

mod host;
use armor_testing::cgroup::Cgroup;
use host::{fresh_dir, root_or_skip};

const ID: &str = "1f613df8390b9d2e4e89d0323ac0b9a2e7d7ddcc460720e15074f8c497aec0df";

fn tmp(tag: &str) -> PathBuf {
    fresh_dir("armor-rt", tag)
}

const AUDIT: &str = r#"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: audit-secret, namespace: shop}
spec:
  severity: 4
  selector: {matchLabels: {app: web}}
  file:
    matchPaths: [{path: /tmp/armor-rt-secret}]
  action: Audit
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: block-touch, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  process:
    matchPaths: [{path: /usr/bin/touch}]
  action: Block
"#;

/// A runtime on the policies in `dir` whose one enforcer records what it is asked.
fn recorded_runtime(dir: &Path) -> (Arc<RecordingEnforcer>, Runtime) {
    let rec = Arc::new(RecordingEnforcer::new());
    let rt = Runtime::new(
        RuntimeConfig::default(),
        load_policies(&[dir]).unwrap(),
        vec![rec.clone()],
        None,
    );
    (rec, rt)
}

/// A policy directory `tag` holding [`AUDIT`], and a fresh cgroup `name-PID` with its id.
fn audit_and_cgroup(tag: &str, name: &str) -> (PathBuf, Cgroup, u64) {
    let dir = tmp(tag);
    fs::write(dir.join("p.yaml"), AUDIT).unwrap();
    let cg = Cgroup::create_named(name).unwrap();
    let cgroup_id = cg.id();
    (dir, cg, cgroup_id)
}

/// Container `ID` of containerd's `k8s.io` namespace: pod `shop/web-0`, container `web`, label
/// `app: web`, the busybox image.
fn web_info() -> ContainerInfo {
    let mut info = ContainerInfo::default();
    info.id = ID.to_string();
    info.containerd_namespace = "k8s.io".to_string();
    info.image = "docker.io/library/busybox:latest".to_string();
    for (k, v) in [
        ("io.kubernetes.pod.name", "web-0"),
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.container.name", "web"),
        ("app", "web"),
    ] {
        info.labels.insert(k.to_string(), v.to_string());
    }
    info
}

#[test]
fn container_events_become_kubearmor_logs_and_alerts() {
    if !root_or_skip() {
        return;
    }
    let (dir, cg, cgroup_id) = audit_and_cgroup("policies", "kubepods-test");

    let mut source = EventSource::load(Options::default()).unwrap();
    let recording = Arc::new(RecordingEnforcer::new());
    let mut rt = Runtime::new(
        RuntimeConfig::default().throttling(3, Duration::from_secs(30)),
        load_policies(&[&dir]).unwrap(),
        vec![],
        Some(source.controls()),
    );
    let info = web_info();
    let key = rt.add_container_with_cgroup(&info, cgroup_id);
    assert_eq!(key.name, "shop/web-0/web");
    drop(recording);

    let secret = "/tmp/armor-rt-secret";
    fs::write(secret, "s").unwrap();
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec /bin/sh -c '/bin/cat {secret} > /dev/null; /usr/bin/touch /tmp/armor-rt-touched; for i in 1 2 3 4 5 6; do /bin/cat {secret} >/dev/null; done'",
        cg.path().display()
    );
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

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
        if records
            .iter()
            .any(|r| r.kind.as_deref() == Some("SystemEvent"))
        {
            break;
        }
    }
    let dump: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let dump = dump.join("\n");
    // Every record carries the container's identity.
    for r in &records {
        assert_eq!(r.container_id.as_deref(), Some(ID), "{dump}");
        assert_eq!(r.container_name.as_deref(), Some("web"));
        assert_eq!(r.namespace_name.as_deref(), Some("shop"));
        assert_eq!(r.pod_name.as_deref(), Some("web-0"));
        assert_eq!(r.labels.as_deref(), Some("app=web"));
    }
    // The audit rule raised alerts as KubeArmor does.
    let alert = records
        .iter()
        .find(|r| r.policy_name.as_deref() == Some("audit-secret"))
        .unwrap_or_else(|| panic!("no audit alert:\n{dump}"));
    assert_eq!(alert.kind.as_deref(), Some("MatchedPolicy"));
    assert_eq!(alert.action.as_deref(), Some("Audit"));
    assert_eq!(alert.result.as_deref(), Some("Passed"));
    assert_eq!(alert.enforcer.as_deref(), Some("eBPF Monitor"));
    assert_eq!(alert.severity.as_deref(), Some("4"));
    assert_eq!(alert.operation.as_deref(), Some("File"));
    assert_eq!(alert.resource.as_deref(), Some(secret));
    assert!(
        alert
            .data
            .as_deref()
            .unwrap()
            .starts_with("syscall=SYS_OPEN"),
        "{alert:?}"
    );
    assert!(
        alert.process_name.as_deref().unwrap().ends_with("/cat"),
        "{alert:?}"
    );
    // No enforcer: the Block rule is reported, not enforced.
    let touch = records
        .iter()
        .find(|r| r.policy_name.as_deref() == Some("block-touch"))
        .unwrap_or_else(|| panic!("no block-touch alert:\n{dump}"));
    assert_eq!(touch.action.as_deref(), Some("Audit (Block)"));
    assert_eq!(touch.result.as_deref(), Some("Passed"));
    assert_eq!(touch.operation.as_deref(), Some("Process"));
    assert_eq!(
        touch.resource.as_deref(),
        Some("/usr/bin/touch /tmp/armor-rt-touched")
    );
    // Other events are logs.
    assert!(
        records
            .iter()
            .any(|r| r.kind.as_deref() == Some("ContainerLog")
                && r.operation.as_deref() == Some("Process")),
        "{dump}"
    );
    // Throttling: 3 alerts per second, then one SystemEvent and silence.
    let sys: Vec<&Telemetry> = records
        .iter()
        .filter(|r| r.kind.as_deref() == Some("SystemEvent"))
        .collect();
    assert_eq!(sys.len(), 1, "{dump}");
    assert_eq!(sys[0].operation.as_deref(), Some("AlertThreshold"));
    let alerts = records.iter().filter(|r| r.policy_name.is_some()).count();
    assert!(alerts <= 3, "{dump}");
    let _ = fs::remove_file(secret);
    let _ = fs::remove_file("/tmp/armor-rt-touched");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reload_is_atomic_and_enforcers_follow() {
    let dir = tmp("reload");
    fs::write(dir.join("p.yaml"), AUDIT).unwrap();
    let (rec, mut rt) = recorded_runtime(&dir);
    let mut info = ContainerInfo::default();
    info.id = ID.to_string();
    info.labels.insert("app".into(), "web".into());
    info.labels
        .insert("io.kubernetes.pod.namespace".into(), "shop".into());
    let key = rt.add_container_with_cgroup(&info, 4242);
    assert_eq!(key.cgroup_id, Some(4242));
    let installed = rec.installed();
    assert!(installed[&key].contains("audit-secret"), "{installed:?}");
    assert!(installed[&key].contains("block-touch"));
    let rules = rt.policy().rules().len();

    // A broken file: the reload fails, names the file, and nothing changes.
    fs::write(dir.join("bad.yaml"), "kind: KubeArmorPolicy\nspec: [").unwrap();
    let err = rt.reload(&[&dir]).unwrap_err();
    let msg = format!(
        "{err}: {:?}",
        std::error::Error::source(&err).map(ToString::to_string)
    );
    assert!(msg.contains("bad.yaml"), "{msg}");
    assert_eq!(rt.policy().rules().len(), rules);
    assert_eq!(rec.installed(), installed);

    // A good change replaces every workload's rules.
    fs::remove_file(dir.join("bad.yaml")).unwrap();
    fs::write(dir.join("p.yaml"), AUDIT.split("---").next().unwrap()).unwrap();
    rt.reload(&[&dir]).unwrap();
    let now = rec.installed();
    assert!(now[&key].contains("audit-secret"));
    assert!(!now[&key].contains("block-touch"), "{now:?}");
    assert!(
        rec.calls()
            .iter()
            .any(|c| matches!(c, Call::Apply(k, _, Ok(_)) if *k == key))
    );
    rt.remove_container(ID);
    assert!(!rec.installed().contains_key(&key));
    assert!(rt.containers().is_empty());
    let _ = Visibility::standard();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn enforcer_alerts_get_the_workload_identity() {
    let dir = tmp("enforcer-alert");
    fs::write(dir.join("p.yaml"), AUDIT).unwrap();
    let mut rt = Runtime::new(
        RuntimeConfig::default(),
        load_policies(&[&dir]).unwrap(),
        vec![],
        None,
    );
    let mut info = ContainerInfo::default();
    info.id = ID.to_string();
    info.image = "docker.io/library/busybox:latest".to_string();
    for (k, v) in [
        ("io.kubernetes.pod.name", "web-0"),
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.container.name", "web"),
        ("app", "web"),
        ("tier", "front"),
    ] {
        info.labels.insert(k.to_string(), v.to_string());
    }
    let key = rt.add_container_with_cgroup(&info, 4242);
    let rule = rt
        .policy()
        .rules()
        .iter()
        .position(|r| r.policy.name == "block-touch")
        .unwrap();
    let tree = armor_ebpf::ProcessTree::new();
    let alert = EnforcerAlert::blocked(
        "BPFLSM",
        Some(u32::try_from(rule).unwrap()),
        Category::Process,
        "/usr/bin/touch",
    )
    .with_workload(key)
    .with_process(77, 1000, Some("/bin/sh".to_string()));
    let r = rt.enforcer_alert(&alert, &tree);
    assert_eq!(r.kind.as_deref(), Some("MatchedPolicy"));
    assert_eq!(r.container_id.as_deref(), Some(ID));
    assert_eq!(r.container_name.as_deref(), Some("web"));
    assert_eq!(r.namespace_name.as_deref(), Some("shop"));
    assert_eq!(r.pod_name.as_deref(), Some("web-0"));
    assert_eq!(r.labels.as_deref(), Some("app=web,tier=front"));
    assert_eq!(
        r.container_image.as_deref(),
        Some("docker.io/library/busybox:latest")
    );
    assert_eq!(r.policy_name.as_deref(), Some("block-touch"));
    assert_eq!(r.action.as_deref(), Some("Block"));
    assert_eq!(r.result.as_deref(), Some("Permission denied"));
    assert_eq!(r.enforcer.as_deref(), Some("BPFLSM"));
    assert_eq!(r.operation.as_deref(), Some("Process"));
    assert_eq!(r.resource.as_deref(), Some("/usr/bin/touch"));
    assert_eq!(r.source.as_deref(), Some("/bin/sh"));
    assert_eq!((r.host_pid, r.uid), (Some(77), Some(1000)));

    // A workload the runtime does not know (or none): the host's identity, DefaultPosture.
    let host = rt.enforcer_alert(
        &EnforcerAlert::blocked("BPFLSM", None, Category::File, "/etc/shadow")
            .with_workload(armor_core::WorkloadKey::new("gone").with_cgroup(9999)),
        &tree,
    );
    assert_eq!(host.kind.as_deref(), Some("MatchedHostPolicy"));
    assert_eq!(host.container_id, None);
    assert_eq!(host.labels, None);
    assert_eq!(host.policy_name.as_deref(), Some("DefaultPosture"));
    fs::remove_dir_all(&dir).unwrap();
}

/// `Runtime::container_creating` (what the agent does for the OCI hook): rules applied once,
/// the later create event changes nothing, a failed apply is an error that tracks nothing, and
/// a report for a container whose task still runs does not move its rules.
#[test]
fn a_container_reported_by_the_create_hook_gets_its_rules_once() {
    if !root_or_skip() {
        return;
    }
    let (dir, cg, cgroup_id) = audit_and_cgroup("hook-policies", "kubepods-hook");
    // Two processes in the container's cgroup: its init, and one a forged report names.
    let spawn = || {
        Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec sleep 30",
                cg.path().display()
            ))
            .spawn()
            .unwrap()
    };
    let (mut init, mut other) = (spawn(), spawn());
    std::thread::sleep(Duration::from_millis(200));
    let (rec, mut rt) = recorded_runtime(&dir);
    let mut info = web_info();
    info.pid = Some(init.id());
    let rootfs = Path::new("/run/containerd/io.containerd.runtime.v2.task/k8s.io/x/rootfs");
    let applies = |rec: &RecordingEnforcer| {
        rec.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Apply(k, ..) if k.name == "shop/web-0/web"))
            .count()
    };
    let change = rt.container_creating(&info, rootfs).unwrap();
    let ContainerChange::Tracked(key) = change else {
        panic!("not tracked: {change:?}");
    };
    assert_eq!(key.cgroup_id, Some(cgroup_id));
    assert_eq!(applies(&rec), 1);
    // The hook again (runc retried) and then containerd's create event: nothing new.
    assert_eq!(
        rt.container_creating(&info, rootfs).unwrap(),
        ContainerChange::Unchanged
    );
    assert_eq!(
        rt.container_event(&ContainerEvent::Created(info.clone()))
            .unwrap(),
        ContainerChange::Unchanged
    );
    assert_eq!(applies(&rec), 1);
    // A creation report for the same container with another pid while its task runs.
    let mut forged = info.clone();
    forged.pid = Some(other.id());
    let e = rt.container_creating(&forged, rootfs).unwrap_err();
    assert!(e.to_string().contains("still runs"), "{e}");
    assert_eq!(rt.containers(), vec![key.clone()]);
    // An enforcer that fails: an error naming why, nothing tracked, nothing left applied.
    rt.remove_container(ID);
    rec.fail_apply(Some("rule map full"));
    let e = rt.container_creating(&info, rootfs).unwrap_err();
    let text = armor_core::diag::error_chain(&e);
    assert!(
        text.contains("shop/web-0/web") && text.contains("rule map full"),
        "{text}"
    );
    assert!(rt.containers().is_empty());
    assert!(rt.take_problems().is_empty(), "the failure is the error's");
    // A sandbox (pause container) is not a workload.
    rec.fail_apply(None);
    let mut sandbox = info.clone();
    sandbox
        .labels
        .insert("io.cri-containerd.kind".to_string(), "sandbox".to_string());
    assert_eq!(
        rt.container_creating(&sandbox, rootfs).unwrap(),
        ContainerChange::Unchanged
    );
    let _ = init.kill();
    let _ = other.kill();
    let _ = init.wait();
    let _ = other.wait();
    drop(cg);
    let _ = fs::remove_dir_all(&dir);
}
