#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The runtime against a real containerd, started privately by the test (own root, state and
//! socket in a temp dir), driven only through its gRPC API (no `ctr`): a busybox image built
//! here from `/bin/busybox`, two containers with Kubernetes labels and kubepods cgroup paths,
//! commands run inside them, and every record's ContainerID, ContainerName, NamespaceName,
//! PodName and Labels checked. The client's enumeration at start and its task event stream
//! must see the containers: a task's creation (before its entrypoint runs) is delivered as
//! `ContainerEvent::Created`, and the runtime applies the container's rules on it, before the
//! task is started. Everything is removed at the end, cgroups included.

mod support;

use std::fs;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use armor_core::telemetry::Telemetry;
use armor_ebpf::{EventSource, Options};
use armor_runtime::containerd::{ContainerEvent, ContainerInfo, Containerd};
use armor_runtime::{ContainerChange, Runtime, RuntimeConfig, load_policies};
use armor_testing::recording::{Call, RecordingEnforcer};
use support::{Daemon, Driver, Spec, oci};

const POLICY: &str = r#"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: audit-secret, namespace: shop}
spec:
  severity: 5
  selector: {matchLabels: {app: web}}
  file:
    matchPaths: [{path: /etc/armor-secret}]
  action: Audit
"#;

const IMAGE: &str = "docker.io/armor-test/busybox:latest";

fn hex64(seed: &str) -> String {
    oci::digest(format!("{seed}-{}", std::process::id()).as_bytes())["sha256:".len()..].to_string()
}

fn pod_uid(seed: &str) -> String {
    let h = hex64(seed);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn spec(name: &str, pod: &str, namespace: &str, app: &str) -> Spec {
    Spec {
        id: hex64(name),
        pod_uid: pod_uid(pod),
        labels: vec![
            ("io.kubernetes.pod.namespace".into(), namespace.into()),
            ("io.kubernetes.pod.name".into(), pod.into()),
            ("io.kubernetes.container.name".into(), name.into()),
            ("app".into(), app.into()),
            ("tier".into(), "front".into()),
        ],
        args: vec!["/bin/sleep".into(), "3600".into()],
        hooks: None,
    }
}

/// The next lifecycle event about container `id`, within 10 s; others are kept in `seen`.
fn next_event_for(
    rx: &mpsc::Receiver<ContainerEvent>,
    id: &str,
    seen: &mut Vec<ContainerEvent>,
) -> ContainerEvent {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no event for {id} ({e}); saw {seen:?}"));
        let about = match &ev {
            ContainerEvent::Created(info) | ContainerEvent::Started(info) => info.id == id,
            ContainerEvent::Stopped { id: i, .. } => i == id,
            ContainerEvent::StreamEnded(why) => panic!("event stream ended: {why}"),
            _ => false,
        };
        if about {
            return ev;
        }
        seen.push(ev);
    }
}

fn check_identity(records: &[&Telemetry], s: &Spec, name: &str, pod: &str, ns: &str, app: &str) {
    assert!(!records.is_empty(), "no records of {name}");
    for r in records {
        let json = serde_json::to_string(r).unwrap();
        assert_eq!(r.container_id.as_deref(), Some(s.id.as_str()), "{json}");
        assert_eq!(r.container_name.as_deref(), Some(name), "{json}");
        assert_eq!(r.namespace_name.as_deref(), Some(ns), "{json}");
        assert_eq!(r.pod_name.as_deref(), Some(pod), "{json}");
        let labels = format!("app={app},tier=front");
        assert_eq!(r.labels.as_deref(), Some(labels.as_str()), "{json}");
        assert_eq!(r.container_image.as_deref(), Some(IMAGE), "{json}");
    }
}

#[test]
fn real_containerd_containers_carry_their_identity() {
    if let Some(why) = support::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let daemon = Daemon::start("identity");
    // Under the daemon's temp dir: removed with it, even when the test fails.
    let dir = daemon.dir.join("policies");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("p.yaml"), POLICY).unwrap();
    let mut driver = Driver::connect(&daemon.socket, &daemon.dir);
    let image = driver.load_busybox(IMAGE, &[("etc/armor-secret", b"s3cret\n")]);
    assert_eq!(image.blobs.len(), 3);

    // `web` runs before the agent starts: the agent finds it by enumeration.
    let web = spec("web", "web-0", "shop", "web");
    let web_pid = driver.run(&web);
    let client = Containerd::connect(&daemon.socket).unwrap();
    assert!(client.namespaces().unwrap().contains(&"k8s.io".to_string()));
    let listed = client.list_all().unwrap();
    let found: ContainerInfo = listed
        .iter()
        .find(|c| c.id == web.id)
        .cloned()
        .unwrap_or_else(|| panic!("enumeration misses {}: {listed:?}", web.id));
    assert_eq!(found.pid, Some(web_pid));
    assert_eq!(found.containerd_namespace, "k8s.io");
    assert_eq!(found.image, IMAGE);
    assert_eq!(found.namespace(), "shop");
    assert_eq!(found.name(), "web");
    assert_eq!(found.pod().as_deref(), Some("web-0"));
    let cgroup = armor_runtime::identity::proc_cgroup(web_pid).unwrap();
    assert_eq!(cgroup, web.cgroups_path(), "the kubepods cgroup path");
    let owner = armor_runtime::identity::parse_cgroup_path(&cgroup).unwrap();
    assert_eq!(owner.id, web.id);
    assert_eq!(owner.pod_uid.as_deref(), Some(web.pod_uid.as_str()));

    let events = client.watch().unwrap();
    let mut source = EventSource::load(Options::default()).unwrap();
    let recording = Arc::new(RecordingEnforcer::new());
    let mut rt = Runtime::new(
        RuntimeConfig::default().throttling(0, Duration::from_secs(1)),
        load_policies(&[&dir]).unwrap(),
        vec![recording.clone()],
        Some(source.controls()),
    );
    let web_key = rt.add_container(&found).unwrap();
    assert_eq!(web_key.name, "shop/web-0/web");

    // `api` is created while the agent watches: the task event stream reports the creation with
    // the pid, and the runtime applies the rules before the task is started.
    let api = spec("api", "api-0", "billing", "api");
    // The subscription is live once the stream thread connected; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    let created_at = Instant::now();
    let api_pid = driver.create(&api);
    let mut other = Vec::new();
    let ContainerEvent::Created(created) = next_event_for(&events, &api.id, &mut other) else {
        panic!("expected a create for {}", api.id);
    };
    assert_eq!(created.pid, Some(api_pid));
    // The container's definition came first, without a task.
    assert!(
        other
            .iter()
            .any(|e| matches!(e, ContainerEvent::Defined(i) if i.id == api.id && i.pid.is_none())),
        "no Defined event for api: {other:?}"
    );
    // Without an enforcer that attaches by name there is nothing to load ahead.
    let defined = other
        .iter()
        .find(|e| matches!(e, ContainerEvent::Defined(i) if i.id == api.id))
        .cloned()
        .unwrap();
    assert_eq!(
        rt.container_event(&defined).unwrap(),
        ContainerChange::Unchanged
    );
    assert_eq!(created.namespace(), "billing");
    assert_eq!(created.pod().as_deref(), Some("api-0"));
    assert_eq!(created.labels.get("app").map(String::as_str), Some("api"));
    let change = rt
        .container_event(&ContainerEvent::Created(created.clone()))
        .unwrap();
    let applied_after = created_at.elapsed();
    let ContainerChange::Tracked(api_key) = change else {
        panic!("api not tracked: {change:?}");
    };
    assert_eq!(api_key.name, "billing/api-0/api");
    assert_ne!(api_key.cgroup_id, web_key.cgroup_id);
    assert!(
        recording
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Apply(k, _, Ok(_)) if *k == api_key)),
        "no apply for api: {:?}",
        recording.calls()
    );
    // Created, not started: the entrypoint has not run (its pid is still runc's init).
    let status = fs::read_to_string(format!("/proc/{api_pid}/comm")).unwrap();
    assert_eq!(status.trim(), "runc:[2:INIT]");
    println!("api: Tasks.Create → Created event → rules applied in {applied_after:?}");
    driver.start(&api);
    let ContainerEvent::Started(started) = next_event_for(&events, &api.id, &mut other) else {
        panic!("expected a start for {}", api.id);
    };
    assert_eq!(started.pid, Some(api_pid));
    let applies = recording.calls().len();
    assert_eq!(
        rt.container_event(&ContainerEvent::Started(started))
            .unwrap(),
        ContainerChange::Unchanged
    );
    assert_eq!(
        recording.calls().len(),
        applies,
        "started re-applied the rules"
    );

    // Commands inside both containers.
    for (c, exec_id, args) in [
        (&web, "cat", &["/bin/cat", "/etc/armor-secret"][..]),
        (&web, "ls", &["/bin/ls", "/etc"][..]),
        (&api, "cat", &["/bin/cat", "/etc/armor-secret"][..]),
        (&api, "touch", &["/bin/touch", "/tmp/api-was-here"][..]),
    ] {
        let (status, out) = driver.exec(&c.id, exec_id, args);
        assert_eq!(status, 0, "{args:?} in {}: {out}", c.id);
        if exec_id == "cat" {
            assert_eq!(out, "s3cret\n");
        }
    }

    let mut records: Vec<Telemetry> = Vec::new();
    let done = |records: &[Telemetry]| {
        let has = |id: &str, resource: &str| {
            records.iter().any(|r| {
                r.container_id.as_deref() == Some(id) && r.resource.as_deref() == Some(resource)
            })
        };
        has(&web.id, "/bin/ls /etc")
            && has(&api.id, "/bin/touch /tmp/api-was-here")
            && records
                .iter()
                .any(|r| r.policy_name.as_deref() == Some("audit-secret"))
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) && !done(&records) {
        let mut batch = Vec::new();
        source
            .poll(Duration::from_millis(50), &mut |e| batch.push(e.clone()))
            .unwrap();
        for e in &batch {
            records.extend(rt.handle(e, source.process_tree()));
        }
    }
    let dump = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(done(&records), "missing records:\n{dump}");
    println!("{} records; e.g.:", records.len());
    for r in records.iter().filter(|r| r.container_id.is_some()).take(4) {
        println!("{}", serde_json::to_string(r).unwrap());
    }

    // Every record from a container carries that container's identity, and nothing else.
    let of = |id: &str| -> Vec<&Telemetry> {
        records
            .iter()
            .filter(|r| r.container_id.as_deref() == Some(id))
            .collect()
    };
    let (web_records, api_records) = (of(&web.id), of(&api.id));
    check_identity(&web_records, &web, "web", "web-0", "shop", "web");
    check_identity(&api_records, &api, "api", "api-0", "billing", "api");
    for r in &records {
        if let Some(id) = &r.container_id {
            assert!(*id == web.id || *id == api.id, "a foreign container: {id}");
        }
    }
    // Logs of the commands, with the container's view of pids (the exec'd process is not 1).
    let log = |rs: &[&Telemetry], resource: &str| -> Telemetry {
        rs.iter()
            .find(|r| {
                r.kind.as_deref() == Some("ContainerLog")
                    && r.operation.as_deref() == Some("Process")
                    && r.resource.as_deref() == Some(resource)
            })
            .map(|r| (*r).clone())
            .unwrap_or_else(|| panic!("no process log for `{resource}`:\n{dump}"))
    };
    let ls = log(&web_records, "/bin/ls /etc");
    assert_eq!(ls.process_name.as_deref(), Some("/bin/ls"));
    assert_ne!(ls.pid, ls.host_pid, "namespaced pid expected: {ls:?}");
    let touch = log(&api_records, "/bin/touch /tmp/api-was-here");
    assert_eq!(touch.process_name.as_deref(), Some("/bin/touch"));
    // The audit rule (namespace shop, app=web) fires for web only.
    let alert = web_records
        .iter()
        .find(|r| r.policy_name.as_deref() == Some("audit-secret"))
        .unwrap_or_else(|| panic!("no alert in web:\n{dump}"));
    assert_eq!(alert.kind.as_deref(), Some("MatchedPolicy"));
    assert_eq!(alert.action.as_deref(), Some("Audit"));
    assert_eq!(alert.resource.as_deref(), Some("/etc/armor-secret"));
    assert_eq!(alert.severity.as_deref(), Some("5"));
    assert!(
        api_records.iter().all(|r| r.policy_name.is_none()),
        "the web policy matched api:\n{dump}"
    );
    assert!(
        api_records
            .iter()
            .any(|r| r.kind.as_deref() == Some("ContainerLog")
                && r.operation.as_deref() == Some("File")
                && r.resource.as_deref() == Some("/etc/armor-secret")),
        "api's open of the secret is a log:\n{dump}"
    );

    // The exec'd processes exiting did not stop a container; killing api's task does.
    assert!(
        other
            .iter()
            .all(|e| !matches!(e, ContainerEvent::Stopped { .. })),
        "{other:?}"
    );
    driver.kill(&api.id);
    let stopped = next_event_for(&events, &api.id, &mut other);
    assert!(
        matches!(&stopped, ContainerEvent::Stopped { containerd_namespace, .. } if containerd_namespace == "k8s.io"),
        "{stopped:?}"
    );
    assert!(
        !other
            .iter()
            .any(|e| matches!(e, ContainerEvent::Stopped { id, .. } if *id == web.id)),
        "web reported stopped: {other:?}"
    );
    assert_eq!(
        rt.container_event(&stopped).unwrap(),
        ContainerChange::Untracked(api.id.clone())
    );
    assert!(
        recording
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Remove(k, true) if *k == api_key)),
        "api's rules not removed: {:?}",
        recording.calls()
    );
    assert_eq!(rt.containers(), vec![web_key.clone()]);
    let problems = rt.take_problems();
    assert!(problems.is_empty(), "{problems:?}");

    // Everything goes: tasks, containers, snapshots, image, blobs, cgroups.
    drop(client);
    let left = driver.cleanup();
    assert!(left.is_empty(), "not removed: {left:?}");
    for mount in support::cgroup_mounts() {
        for s in [&web, &api] {
            let pod = mount.join(format!("kubepods/besteffort/pod{}", s.pod_uid));
            assert!(!pod.exists(), "left behind: {}", pod.display());
        }
    }
    drop(driver);
    drop(daemon);
    assert!(!dir.exists());
}
