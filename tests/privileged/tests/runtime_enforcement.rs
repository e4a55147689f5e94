//! The agent runtime (armor-runtime) enforcing with the BPF-LSM enforcer it selected itself
//! (`Enforcement::select`): a container's rules are applied when the runtime learns that the
//! container's task was created, so its first command is blocked, and the kernel's alert comes
//! out of the runtime as a KubeArmor Alert attributed to the container.
//!
//! containerd is not run inside the guest: the container is created with `runc create` (its
//! cgroup exists, its entrypoint has not run, exactly the state containerd's `/tasks/create`
//! event reports), and the runtime is handed the same `ContainerEvent::Created` that its
//! containerd client delivers for that event, with the Kubernetes labels containerd would carry.
//! The containerd client's own `/tasks/create` handling is tested against a real containerd on
//! the host (`armor-runtime/tests/containerd.rs`).
//!
//! Run with `scripts/vm-test -- runtime_`; on a kernel without BPF-LSM the test prints why it
//! skips.
#![cfg(test)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use armor_core::telemetry::Telemetry;
use armor_ebpf::ProcessTree;
use armor_privileged_tests::cgroup::cgroup2_root;
use armor_privileged_tests::guest;
use armor_privileged_tests::op::helper_path;
use armor_runtime::containerd::{ContainerEvent, ContainerInfo};
use armor_runtime::{
    ContainerChange, Enforcement, EnforcementOptions, EnforcerChoice, Runtime, RuntimeConfig,
};

const POLICY: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: no-entry, namespace: shop}
spec:
  severity: 7
  selector: {matchLabels: {app: web}}
  process:
    matchPaths:
    - path: /bin/blocked
  action: Block
";

const IMAGE: &str = "armor.test/busybox:1";

/// `runc ARGS...` with a time limit, its output going to `log` (runc init keeps the container's
/// stdio open: never our pipes).
fn runc(args: &[&str], log: &fs::File) -> std::process::ExitStatus {
    Command::new("timeout")
        .arg("30")
        .arg("runc")
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log.try_clone().unwrap())
        .status()
        .unwrap()
}

/// `runc state ID` as text (empty once the container is gone).
fn state(id: &str) -> String {
    let out = Command::new("timeout")
        .args(["10", "runc", "state", id])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `"pid": N` of `runc state` output.
fn state_pid(state: &str) -> u32 {
    let rest = state
        .split("\"pid\":")
        .nth(1)
        .expect("no pid in runc state");
    rest.trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// A bundle whose entrypoint is `/bin/<entry> ok` (the static armor-op helper) in cgroup
/// `cgroup` (relative to the cgroup2 root).
fn bundle(dir: &Path, entry: &str, cgroup: &str) {
    let _ = fs::remove_dir_all(dir);
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    for d in ["proc", "dev", "sys", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy(helper_path(), rootfs.join("bin").join(entry)).unwrap();
    let st = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success(), "runc spec");
    let spec = fs::read_to_string(dir.join("config.json")).unwrap();
    let spec = spec
        .replace("\"terminal\": true", "\"terminal\": false")
        .replace("\"sh\"", &format!("\"/bin/{entry}\", \"ok\""))
        .replace(
            "\"linux\": {",
            &format!("\"linux\": {{\n\t\t\"cgroupsPath\": \"/{cgroup}\","),
        );
    fs::write(dir.join("config.json"), spec).unwrap();
}

/// What containerd's client reports for a Kubernetes container.
fn info(id: &str, pod: &str, name: &str, app: &str, pid: u32) -> ContainerInfo {
    let mut i = ContainerInfo::default();
    i.id = id.to_string();
    i.containerd_namespace = "k8s.io".to_string();
    i.image = IMAGE.to_string();
    i.pid = Some(pid);
    i.labels = BTreeMap::from([
        (
            "io.kubernetes.pod.namespace".to_string(),
            "shop".to_string(),
        ),
        ("io.kubernetes.pod.name".to_string(), pod.to_string()),
        ("io.kubernetes.container.name".to_string(), name.to_string()),
        ("app".to_string(), app.to_string()),
    ]);
    i
}

/// One container run through create → runtime → start, with what happened.
struct Run {
    id: String,
    cgroup_id: u64,
    change: ContainerChange,
    create: Duration,
    apply: Duration,
    final_state: String,
    log: String,
    records: Vec<Telemetry>,
}

fn run_container(rt: &mut Runtime, tag: &str, entry: &str, app: &str, pod_uid: &str) -> Run {
    let id = format!("armor-rt-{tag}-{}", std::process::id());
    let dir = PathBuf::from(format!("/tmp/{id}"));
    let cgroup = format!("kubepods/besteffort/pod{pod_uid}/{id}");
    bundle(&dir, entry, &cgroup);
    let log = fs::File::create(dir.join("ctr.log")).unwrap();
    let t = Instant::now();
    let st = runc(&["create", "--bundle", dir.to_str().unwrap(), &id], &log);
    let create = t.elapsed();
    assert!(
        st.success(),
        "runc create: {}",
        fs::read_to_string(dir.join("ctr.log")).unwrap_or_default()
    );
    let pid = state_pid(&state(&id));
    let cgroup_id = {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(cgroup2_root().unwrap().join(&cgroup))
            .unwrap()
            .ino()
    };
    // The runtime reacts to the creation: the rules are in the kernel when this returns.
    let t = Instant::now();
    let change = rt
        .container_event(&ContainerEvent::Created(info(
            &id,
            &format!("{tag}-0"),
            tag,
            app,
            pid,
        )))
        .unwrap();
    let apply = t.elapsed();
    let problems = rt.take_problems();
    assert!(problems.is_empty(), "{problems:?}");
    let st = runc(&["start", &id], &log);
    assert!(st.success(), "runc start");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut final_state = state(&id);
    while Instant::now() < deadline
        && (final_state.contains("\"running\"") || final_state.contains("\"created\""))
    {
        std::thread::sleep(Duration::from_millis(50));
        final_state = state(&id);
    }
    // The alert crosses the ring buffer and the enforcer's reader thread.
    let tree = ProcessTree::new();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        records.extend(rt.enforcer_records(&tree));
        if !records.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
            records.extend(rt.enforcer_records(&tree));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = runc(&["delete", "--force", &id], &log);
    let gone = rt
        .container_event(&ContainerEvent::Stopped {
            containerd_namespace: "k8s.io".to_string(),
            id: id.clone(),
        })
        .unwrap();
    assert_eq!(gone, ContainerChange::Untracked(id.clone()));
    let problems = rt.take_problems();
    assert!(problems.is_empty(), "{problems:?}");
    let log = fs::read_to_string(dir.join("ctr.log")).unwrap_or_default();
    // runc removes the container's own cgroup; the pod and QoS levels are ours.
    let root = cgroup2_root().unwrap();
    let _ = fs::remove_dir(root.join(&cgroup));
    let _ = fs::remove_dir(root.join(format!("kubepods/besteffort/pod{pod_uid}")));
    let _ = fs::remove_dir(root.join("kubepods/besteffort"));
    let _ = fs::remove_dir(root.join("kubepods"));
    let _ = fs::remove_dir_all(&dir);
    Run {
        id,
        cgroup_id,
        change,
        create,
        apply,
        final_state,
        log,
        records,
    }
}

#[test]
fn runtime_blocks_a_created_containers_first_command_with_an_attributed_alert() {
    if Command::new("runc").arg("--version").output().is_err() {
        assert!(guest::current().is_none(), "runc missing in the guest");
        eprintln!("skipped: runc not installed");
        return;
    }
    let mut bpf = armor_enforce_bpflsm::Config::default();
    bpf.alerts_per_sec = 0;
    let options = EnforcementOptions::default().bpflsm(bpf);
    let t = Instant::now();
    let enforcement = match Enforcement::select(EnforcerChoice::Auto, &options) {
        Ok(e) if e.name() == Some(armor_runtime::enforcement::BPFLSM) => e,
        Ok(e) => {
            assert!(
                guest::current().is_none(),
                "BPF-LSM not selected in the guest: {}",
                e.summary()
            );
            eprintln!("skipped: {}", e.summary());
            return;
        }
        Err(e) => panic!("auto selection failed: {e}"),
    };
    let select = t.elapsed();
    println!("selected: {}", enforcement.summary());
    let set = armor_core::PolicySet::parse(POLICY, "no-entry.yaml").unwrap();
    let policy = armor_core::CompiledPolicy::build(&set).unwrap();
    let mut rt = Runtime::with_enforcement(RuntimeConfig::default(), policy, enforcement, None);
    let problems = rt.take_problems();
    assert!(problems.is_empty(), "{problems:?}");

    // Selected by the policy: its entrypoint is the blocked executable.
    let web = run_container(&mut rt, "web", "blocked", "web", "5f1e0c2a");
    // Control: the same executable, not selected, runs.
    let api = run_container(&mut rt, "api", "blocked", "api", "77c3d9b4");
    println!(
        "select {select:?}; web: runc create {:?}, Created → rules in the kernel {:?}, log `{}`, \
         state {}; api: runc create {:?}, apply {:?}, log `{}`",
        web.create,
        web.apply,
        web.log.trim(),
        web.final_state.trim(),
        api.create,
        api.apply,
        api.log.trim()
    );

    let ContainerChange::Tracked(key) = &web.change else {
        panic!("web not tracked: {:?}", web.change);
    };
    assert_eq!(key.name, "shop/web-0/web");
    assert_eq!(key.cgroup_id, Some(web.cgroup_id));
    assert!(
        web.log.contains("operation not permitted"),
        "the entrypoint was not refused: `{}`",
        web.log
    );
    assert!(
        web.final_state.contains("\"stopped\"") || web.final_state.is_empty(),
        "{}",
        web.final_state
    );
    let dump: Vec<String> = web
        .records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let alert = web
        .records
        .iter()
        .find(|r| r.operation.as_deref() == Some("Process"))
        .unwrap_or_else(|| panic!("no Process alert from the runtime: {dump:?}"));
    let json = serde_json::to_string(alert).unwrap();
    assert_eq!(alert.kind.as_deref(), Some("MatchedPolicy"), "{json}");
    assert_eq!(alert.enforcer.as_deref(), Some("BPFLSM"), "{json}");
    assert_eq!(alert.action.as_deref(), Some("Block"), "{json}");
    assert_eq!(alert.result.as_deref(), Some("Permission denied"), "{json}");
    assert_eq!(alert.resource.as_deref(), Some("/bin/blocked"), "{json}");
    assert_eq!(alert.policy_name.as_deref(), Some("no-entry"), "{json}");
    assert_eq!(alert.severity.as_deref(), Some("7"), "{json}");
    assert_eq!(
        alert.container_id.as_deref(),
        Some(web.id.as_str()),
        "{json}"
    );
    assert_eq!(alert.container_name.as_deref(), Some("web"), "{json}");
    assert_eq!(alert.namespace_name.as_deref(), Some("shop"), "{json}");
    assert_eq!(alert.pod_name.as_deref(), Some("web-0"), "{json}");
    assert_eq!(alert.labels.as_deref(), Some("app=web"), "{json}");
    assert_eq!(alert.container_image.as_deref(), Some(IMAGE), "{json}");
    println!("alert: {json}");

    assert!(matches!(api.change, ContainerChange::Tracked(_)));
    assert!(
        api.log.contains("armor-op: ok"),
        "the control container did not run its entrypoint: `{}`",
        api.log
    );
    assert!(
        api.records.is_empty(),
        "alerts for the control: {:?}",
        api.records
    );
}
