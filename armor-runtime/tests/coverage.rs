#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! Fail closed (issue 16): a rule the kernel artefact does not carry is reported per rule and
//! still alerted by the monitor; `require_enforcement` refuses what would run with such a
//! rule; an apply failure is counted; a policy replacement is all or none.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use armor_core::model::Action;
use armor_core::telemetry::Telemetry;
use armor_ebpf::{EventSource, Options};
use armor_runtime::containerd::ContainerInfo;
use armor_runtime::coverage::Coverage;
use armor_runtime::{ContainerChange, Runtime, RuntimeConfig, load_policies};
use armor_testing::recording::RecordingEnforcer;

mod host;
use armor_testing::cgroup::Cgroup;
use host::{fresh_dir, root_or_skip};

const POLICIES: &str = r#"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: block-touch, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  process:
    matchPaths: [{path: /usr/bin/touch}]
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: block-mkdir, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  process:
    matchPaths: [{path: /usr/bin/mkdir}]
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: audit-cat, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  process:
    matchPaths: [{path: /usr/bin/cat}]
  action: Audit
"#;

/// A policy directory `tag` holding [`POLICIES`].
fn tmp(tag: &str) -> PathBuf {
    let p = fresh_dir("armor-cov", tag);
    fs::write(p.join("p.yaml"), POLICIES).unwrap();
    p
}

fn web(id: &str) -> ContainerInfo {
    let mut info = ContainerInfo::default();
    info.id = id.repeat(64 / id.len());
    for (k, v) in [
        ("io.kubernetes.pod.name", format!("web-{id}")),
        ("io.kubernetes.pod.namespace", "shop".to_string()),
        ("io.kubernetes.container.name", "web".to_string()),
        ("app", "web".to_string()),
    ] {
        info.labels.insert(k.to_string(), v);
    }
    info
}

/// An enforcer that leaves the rule on `/usr/bin/touch` out of its artefacts, as BPF-LSM
/// leaves out globs whose automaton does not fit.
fn leaving_out_touch() -> Arc<RecordingEnforcer> {
    let rec = Arc::new(RecordingEnforcer::new());
    rec.leave_out(|r| {
        r.target
            .to_string()
            .contains("/usr/bin/touch")
            .then(|| "the automaton does not fit".to_string())
    });
    rec
}

fn runtime(dir: &Path, rec: &Arc<RecordingEnforcer>, config: RuntimeConfig) -> Runtime {
    Runtime::new(
        config,
        load_policies(&[dir]).unwrap(),
        vec![rec.clone()],
        None,
    )
}

/// [`runtime`] setting kernel visibility through `source`.
fn runtime_on(source: &EventSource, dir: &Path, rec: &Arc<RecordingEnforcer>) -> Runtime {
    Runtime::new(
        RuntimeConfig::default(),
        load_policies(&[dir]).unwrap(),
        vec![rec.clone()],
        Some(source.controls()),
    )
}

/// Runs `commands` with `sh` in cgroup `cgroup` and hands the runtime the kernel's events for up
/// to 5 s or until `done` holds for the records; returns them and their JSON.
fn run_and_collect(
    source: &mut EventSource,
    rt: &mut Runtime,
    cgroup: &Path,
    commands: &str,
    done: impl Fn(&[Telemetry]) -> bool,
) -> (Vec<Telemetry>, Vec<String>) {
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec /bin/sh -c '{commands}'",
        cgroup.display()
    );
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut records: Vec<Telemetry> = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) && !done(&records) {
        let mut events = Vec::new();
        source
            .poll(Duration::from_millis(50), &mut |e| events.push(e.clone()))
            .unwrap();
        for e in &events {
            records.extend(rt.handle(e, source.process_tree()));
        }
    }
    let dump = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    (records, dump)
}

/// Before issue 16 the runtime took every applied workload as enforced and suppressed the
/// monitor's Block decisions for it: `touch`, whose rule the artefact left out, was neither
/// denied nor alerted.
#[test]
fn a_block_rule_the_kernel_does_not_carry_is_reported_and_alerted() {
    if !root_or_skip() {
        return;
    }
    let dir = tmp("alerted");
    let rec = leaving_out_touch();
    let mut source = EventSource::load(Options::default()).unwrap();
    let mut rt = runtime_on(&source, &dir, &rec);
    let cg = Cgroup::create_named("kubepods-coverage").unwrap();
    let cgroup_id = cg.id();
    let key = rt.add_container_with_cgroup(&web("a"), cgroup_id);

    // (a) reported at apply time: policy, field, position and reason.
    let problems = rt.take_problems();
    let line = problems
        .iter()
        .find(|p| p.contains("block-touch"))
        .unwrap_or_else(|| panic!("no report of the left-out rule: {problems:?}"));
    for part in [
        "shop/web-a/web",
        "Recording does not enforce process.matchPaths[0] (Block)",
        "KubeArmorPolicy shop/block-touch",
        "p.yaml:",
        "the automaton does not fit",
        "Audit (Block)",
    ] {
        assert!(line.contains(part), "`{part}` missing in: {line}");
    }
    assert!(
        !problems.iter().any(|p| p.contains("block-mkdir")),
        "{problems:?}"
    );
    let readiness = rt.readiness();
    let (_, cov) = readiness.workloads.iter().find(|(k, _)| *k == key).unwrap();
    let Coverage::Partial { enforcer, gaps } = cov else {
        panic!("{cov:?}");
    };
    assert_eq!(*enforcer, "Recording");
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0].action, Action::Block);
    assert_eq!(readiness.counts().partial, 1);
    assert!(!readiness.fully_enforced());
    assert!(
        readiness.summary().contains("1 partly enforced"),
        "{}",
        readiness.summary()
    );

    // (b) still decided by the engine and alerted by the monitor.
    let (records, dump) = run_and_collect(
        &mut source,
        &mut rt,
        cg.path(),
        "/usr/bin/touch /tmp/armor-cov-t; /usr/bin/mkdir -p /tmp/armor-cov-d",
        |records| {
            records
                .iter()
                .any(|r| r.policy_name.as_deref() == Some("block-touch"))
                && records
                    .iter()
                    .any(|r| r.resource.as_deref().is_some_and(|s| s.contains("mkdir")))
        },
    );
    let touch = records
        .iter()
        .find(|r| r.policy_name.as_deref() == Some("block-touch"))
        .unwrap_or_else(|| {
            panic!(
                "the left-out Block rule was not alerted:\n{}",
                dump.join("\n")
            )
        });
    assert_eq!(touch.action.as_deref(), Some("Audit (Block)"));
    assert_eq!(touch.enforcer.as_deref(), Some("eBPF Monitor"));
    assert_eq!(touch.result.as_deref(), Some("Passed"));
    // The rule the kernel carries is the kernel's to report: no monitor alert for it.
    assert!(
        !records
            .iter()
            .any(|r| r.policy_name.as_deref() == Some("block-mkdir")),
        "{}",
        dump.join("\n")
    );
    drop(cg);
    let _ = fs::remove_file("/tmp/armor-cov-t");
    let _ = fs::remove_dir("/tmp/armor-cov-d");
    fs::remove_dir_all(&dir).unwrap();
}

/// (c) With `require_enforcement` the OCI hook path refuses a container whose rules are not all
/// in the kernel, leaving nothing applied; without it the container is admitted, partly
/// enforced.
#[test]
fn require_enforcement_refuses_a_partly_enforced_container() {
    if !root_or_skip() {
        return;
    }
    let dir = tmp("require");
    let cg = Cgroup::create_named("kubepods-require").unwrap();
    let cgroup_id = cg.id();
    let mut init = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec sleep 30",
            cg.path().display()
        ))
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut info = web("b");
    info.pid = Some(init.id());
    let rootfs = Path::new("/run/containerd/io.containerd.runtime.v2.task/k8s.io/x/rootfs");

    let rec = leaving_out_touch();
    let mut rt = runtime(
        &dir,
        &rec,
        RuntimeConfig::default().require_enforcement(true),
    );
    let e = rt.container_creating(&info, rootfs).unwrap_err();
    let text = armor_core::diag::error_chain(&e);
    for part in ["shop/web-b/web", "enforcement is required", "block-touch"] {
        assert!(text.contains(part), "`{part}` missing in: {text}");
    }
    assert!(rt.containers().is_empty());
    assert!(
        rec.installed().keys().all(|k| k.name == "host"),
        "{:?}",
        rec.installed()
    );

    let rec = leaving_out_touch();
    let mut rt = runtime(&dir, &rec, RuntimeConfig::default());
    let change = rt.container_creating(&info, rootfs).unwrap();
    let ContainerChange::Tracked(key) = change else {
        panic!("{change:?}");
    };
    assert_eq!(key.cgroup_id, Some(cgroup_id));
    assert_eq!(rt.readiness().counts().partial, 1);
    let _ = init.kill();
    let _ = init.wait();
    drop(cg);
    fs::remove_dir_all(&dir).unwrap();
}

/// Finding 6: a failed apply is counted and shown in readiness; `replace_policy` switches
/// every workload or none. Before issue 16 a failure half-way left the first workloads on the
/// new rules and the rest on the old ones, and `reload` returned `Ok`.
#[test]
fn a_policy_replacement_failing_half_way_switches_nothing() {
    let dir = tmp("atomic");
    let rec = Arc::new(RecordingEnforcer::new());
    let mut rt = runtime(&dir, &rec, RuntimeConfig::default());
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        rt.add_container_with_cgroup(&web(id), 9000 + i as u64);
    }
    let before = rec.installed();
    assert_eq!(before.len(), 4, "the host and three containers: {before:?}");
    assert!(rt.readiness().fully_enforced());
    let rules = rt.policy().rules().len();

    // The new policies drop block-mkdir; the third apply (host, a, then b) fails.
    fs::write(
        dir.join("p.yaml"),
        POLICIES
            .replace("name: block-mkdir", "name: block-mkdir-2")
            .replace("/usr/bin/mkdir", "/usr/bin/rmdir"),
    )
    .unwrap();
    rec.fail_apply_after(2, "rule map full");
    let e = rt.reload(&[&dir]).unwrap_err();
    let text = armor_core::diag::error_chain(&e);
    assert!(
        text.contains("rule map full") && text.contains("not replaced"),
        "{text}"
    );
    rec.fail_apply(None);
    assert_eq!(
        rec.installed(),
        before,
        "every workload has its previous rules"
    );
    assert_eq!(rt.policy().rules().len(), rules);
    assert!(
        rt.policy()
            .rules()
            .iter()
            .any(|r| r.policy.name == "block-mkdir"),
        "the previous policies stay in force"
    );
    let readiness = rt.readiness();
    assert_eq!(readiness.apply_failures, 1);
    assert!(!readiness.fully_enforced());
    assert!(
        readiness.summary().contains("1 apply failures"),
        "{}",
        readiness.summary()
    );

    // The same change applies when nothing fails.
    rt.reload(&[&dir]).unwrap();
    let now = rec.installed();
    assert!(
        now.iter()
            .filter(|(k, _)| k.name != "host")
            .all(|(_, t)| t.contains("/usr/bin/rmdir") && !t.contains("/usr/bin/mkdir")),
        "{now:?}"
    );

    // With require_enforcement, a change whose rules the kernel would not all carry is refused.
    let rec = leaving_out_touch();
    fs::write(
        dir.join("p.yaml"),
        POLICIES.replace("/usr/bin/touch", "/usr/bin/true"),
    )
    .unwrap();
    let mut rt = runtime(
        &dir,
        &rec,
        RuntimeConfig::default().require_enforcement(true),
    );
    rt.add_container_with_cgroup(&web("a"), 9000);
    let before = rec.installed();
    assert!(rt.readiness().fully_enforced());
    fs::write(dir.join("p.yaml"), POLICIES).unwrap();
    let e = rt.reload(&[&dir]).unwrap_err();
    let text = armor_core::diag::error_chain(&e);
    assert!(
        text.contains("enforcement is required") && text.contains("block-touch"),
        "{text}"
    );
    assert_eq!(rec.installed(), before);
    assert!(rt.readiness().fully_enforced());
    fs::remove_dir_all(&dir).unwrap();
}

/// A container whose apply fails is monitored only, says why, and counts as a failure.
#[test]
fn an_apply_failure_is_counted_and_the_workload_is_monitored_only() {
    let dir = tmp("failure");
    let rec = Arc::new(RecordingEnforcer::new());
    let mut rt = runtime(&dir, &rec, RuntimeConfig::default());
    rec.fail_apply(Some("rule map full"));
    let key = rt.add_container_with_cgroup(&web("d"), 9100);
    let r = rt.readiness();
    let (_, cov) = r.workloads.iter().find(|(k, _)| *k == key).unwrap();
    assert!(
        matches!(cov, Coverage::MonitoredOnly { reason } if reason.contains("rule map full")),
        "{cov:?}"
    );
    assert_eq!(r.apply_failures, 1);
    assert_eq!(r.counts().monitored_only, 1);
    // The host has no rules: nothing to enforce.
    assert_eq!(r.workloads[0].1, Coverage::NoRules);
    assert!(
        rt.take_problems()
            .iter()
            .any(|p| p.contains("rule map full"))
    );
    fs::remove_dir_all(&dir).unwrap();
}

/// Issue 16, finding 5: a process in a cgroup a container created below its own (systemd inside
/// the container, a writable cgroupfs) keeps the container's identity and rules at any depth.
/// Before, its events carried its own cgroup id, which the runtime did not know: host identity,
/// host rules (here: none, so `touch` was not even alerted).
#[test]
fn a_containers_sub_cgroups_keep_its_identity() {
    if !root_or_skip() {
        return;
    }
    let dir = tmp("nested");
    let mut source = EventSource::load(Options::default()).unwrap();
    // No kernel enforcer: the monitor reports every Block decision, wherever it is made.
    let mut rt = Runtime::new(
        RuntimeConfig::default(),
        load_policies(&[&dir]).unwrap(),
        vec![],
        Some(source.controls()),
    );
    let cg = Cgroup::create_named("kubepods-nested").unwrap();
    let cgroup_id = cg.id();
    rt.add_container_with_cgroup(&web("n"), cgroup_id);
    // Three levels below the container's cgroup.
    let deep = cg.path().join("init.scope/app/worker");
    fs::create_dir_all(&deep).unwrap();
    let (records, dump) = run_and_collect(
        &mut source,
        &mut rt,
        &deep,
        "/usr/bin/touch /tmp/armor-cov-nested",
        |records| {
            records
                .iter()
                .any(|r| r.policy_name.as_deref() == Some("block-touch"))
        },
    );
    let touch = records
        .iter()
        .find(|r| r.policy_name.as_deref() == Some("block-touch"))
        .unwrap_or_else(|| {
            panic!(
                "the nested process lost the container's rules:\n{}",
                dump.join("\n")
            )
        });
    assert_eq!(touch.container_name.as_deref(), Some("web"));
    assert_eq!(touch.pod_name.as_deref(), Some("web-n"));
    for d in ["init.scope/app/worker", "init.scope/app", "init.scope"] {
        let _ = fs::remove_dir(cg.path().join(d));
    }
    drop(cg);
    let _ = fs::remove_file("/tmp/armor-cov-nested");
    fs::remove_dir_all(&dir).unwrap();
}

/// Issue 16, finding 5: a container whose cgroup cannot be found (its init process is gone) is
/// an error on the OCI hook path, which refuses it, instead of a container running as the host.
#[test]
fn a_container_that_cannot_be_identified_is_refused() {
    let dir = tmp("unidentified");
    let rec = Arc::new(RecordingEnforcer::new());
    let mut rt = runtime(&dir, &rec, RuntimeConfig::default());
    let mut info = web("u");
    info.pid = Some(u32::MAX - 7);
    let rootfs = Path::new("/run/containerd/io.containerd.runtime.v2.task/k8s.io/u/rootfs");
    assert!(rt.container_creating(&info, rootfs).is_err());
    assert!(rt.containers().is_empty());
    fs::remove_dir_all(&dir).unwrap();
}
