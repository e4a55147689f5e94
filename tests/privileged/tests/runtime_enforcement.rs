//! The agent runtime (armor-runtime) enforcing with the BPF-LSM enforcer it selected itself
//! (`Enforcement::select`): a container's rules are applied when the runtime learns that the
//! container's task was created, so its first command is blocked, and the kernel's alert comes
//! out of the runtime as a KubeArmor Alert attributed to the container.
//!
//! Two ways in:
//! * with a private containerd started inside the guest (own root, state and socket on a tmpfs;
//!   driven over gRPC as kubelet's CRI plugin would: create the task, then start it), the
//!   runtime's own containerd client watches the event stream and the runtime reacts to the
//!   `/tasks/create` event it delivers;
//! * with a `runc create`d container (its cgroup exists, its entrypoint has not run: the state
//!   containerd's `/tasks/create` reports), handed to the runtime as the same
//!   `ContainerEvent::Created`, with the Kubernetes labels containerd would carry.
//!
//! Run with `scripts/vm-test --binary runtime_enforcement` (the whole agent is tested in
//! `runtime_agent.rs`); on a kernel without BPF-LSM the tests print why they skip.
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
use armor_runtime::containerd::{ContainerEvent, ContainerInfo, Containerd};
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

/// The private containerd and the gRPC driver of `armor-runtime`'s own containerd test.
#[path = "../../../armor-runtime/tests/support/mod.rs"]
mod support;

/// What this binary shares with `runtime_agent.rs`.
mod containerd_guest;
use containerd_guest::{BUSYBOX_POLICY, CTRD_IMAGE, GuestTmp, Turn, ctrd_spec, shared_bpflsm};

/// The runtime's enforcement as `armor-agent --enforcer auto` builds it, when that is BPF-LSM
/// (the enforcer is this binary's [`shared_bpflsm`]: the first test's selection loads it);
/// `None` (after saying why) outside the guest when the kernel refuses it. The test holds the
/// turn while it runs.
fn bpf_enforcement() -> Option<(Enforcement, Duration, Turn)> {
    let mut bpf = armor_enforce_bpflsm::Config::default();
    bpf.alerts_per_sec = 0;
    let (turn, shared) = shared_bpflsm(bpf);
    let options = EnforcementOptions::default()
        .bpflsm(bpf)
        .bpflsm_enforcer(shared.clone());
    let t = Instant::now();
    match Enforcement::select(&EnforcerChoice::Auto, &options) {
        Ok(e) if e.name() == Some(armor_enforce_bpflsm::NAME) => {
            println!("selected in {:?}: {}", t.elapsed(), e.summary());
            let selected = e.enforcer().expect("BPF-LSM selected");
            assert!(
                std::ptr::addr_eq(
                    std::sync::Arc::as_ptr(&selected),
                    std::sync::Arc::as_ptr(&shared)
                ),
                "not the shared enforcer"
            );
            Some((e, t.elapsed(), turn))
        }
        Ok(e) => {
            assert!(
                guest::current().is_none(),
                "BPF-LSM not selected in the guest: {}",
                e.summary()
            );
            eprintln!("skipped: {}", e.summary());
            None
        }
        Err(e) => panic!("auto selection failed: {e}"),
    }
}

fn runtime(enforcement: Enforcement, policy: &str) -> Runtime {
    let set = armor_core::PolicySet::parse(policy, "policy.yaml").unwrap();
    let policy = armor_core::CompiledPolicy::build(&set).unwrap();
    let mut rt = Runtime::with_enforcement(RuntimeConfig::default(), policy, enforcement, None);
    let problems = rt.take_problems();
    assert!(problems.is_empty(), "{problems:?}");
    rt
}

/// The kernel alerts the runtime turned into records within `limit` (plus stragglers).
fn enforcer_records(rt: &mut Runtime, limit: Duration) -> Vec<Telemetry> {
    let tree = ProcessTree::new();
    let mut records = Vec::new();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        records.extend(rt.enforcer_records(&tree));
        if !records.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
            records.extend(rt.enforcer_records(&tree));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    records
}

/// Checks the runtime's Block alert for `resource` in container `id` (`name` of pod `pod`, app
/// `app`, namespace `shop`, image `image`, policy `policy`); returns it as JSON.
fn check_alert(
    records: &[Telemetry],
    (enforcer, operation, resource): (&str, &str, &str),
    (id, name, pod, app, image, policy): (&str, &str, &str, &str, &str, &str),
) -> String {
    let dump: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let alert = records
        .iter()
        .find(|r| r.operation.as_deref() == Some(operation))
        .unwrap_or_else(|| panic!("no {operation} alert from the runtime: {dump:?}"));
    let json = serde_json::to_string(alert).unwrap();
    assert_eq!(alert.kind.as_deref(), Some("MatchedPolicy"), "{json}");
    assert_eq!(alert.enforcer.as_deref(), Some(enforcer), "{json}");
    assert_eq!(alert.action.as_deref(), Some("Block"), "{json}");
    assert_eq!(alert.result.as_deref(), Some("Permission denied"), "{json}");
    assert_eq!(alert.resource.as_deref(), Some(resource), "{json}");
    assert_eq!(alert.policy_name.as_deref(), Some(policy), "{json}");
    assert_eq!(alert.severity.as_deref(), Some("7"), "{json}");
    assert_eq!(alert.container_id.as_deref(), Some(id), "{json}");
    assert_eq!(alert.container_name.as_deref(), Some(name), "{json}");
    assert_eq!(alert.namespace_name.as_deref(), Some("shop"), "{json}");
    assert_eq!(alert.pod_name.as_deref(), Some(pod), "{json}");
    assert_eq!(
        alert.labels.as_deref(),
        Some(format!("app={app}").as_str()),
        "{json}"
    );
    assert_eq!(alert.container_image.as_deref(), Some(image), "{json}");
    json
}

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

/// A bundle whose entrypoint is `/bin/<entry> ARGS...` (the armor-op helper) in cgroup `cgroup`,
/// under AppArmor profile `apparmor` when given, with `/etc/armor-secret` in its root, a hardlink
/// `/hl-secret` to it, an absolute symlink `/app/config` → `/etc/hostname`, and the host's
/// `/etc/hostname` bind-mounted at the container's `/etc/hostname` (as kubelet mounts it).
fn bundle_with(dir: &Path, entry: &str, args: &[&str], cgroup: &str, apparmor: Option<&str>) {
    let _ = fs::remove_dir_all(dir);
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    for d in ["proc", "dev", "sys", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy(helper_path(), rootfs.join("bin").join(entry)).unwrap();
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::write(rootfs.join("etc/armor-secret"), "s3cret\n").unwrap();
    fs::hard_link(rootfs.join("etc/armor-secret"), rootfs.join("hl-secret")).unwrap();
    fs::write(rootfs.join("etc/hostname"), "").unwrap();
    fs::create_dir_all(rootfs.join("app")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", rootfs.join("app/config")).unwrap();
    let st = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success(), "runc spec");
    let spec = fs::read_to_string(dir.join("config.json")).unwrap();
    let argv: Vec<String> = std::iter::once(format!("/bin/{entry}"))
        .chain(args.iter().map(|a| (*a).to_string()))
        .map(|a| format!("\"{a}\""))
        .collect();
    let mut spec = spec
        .replace("\"terminal\": true", "\"terminal\": false")
        .replace("\"sh\"", &argv.join(", "))
        .replace(
            "\"mounts\": [",
            "\"mounts\": [\n\t\t{\"destination\": \"/etc/hostname\", \"type\": \"bind\", \
             \"source\": \"/etc/hostname\", \"options\": [\"rbind\", \"ro\"]},",
        )
        .replace(
            "\"linux\": {",
            &format!("\"linux\": {{\n\t\t\"cgroupsPath\": \"/{cgroup}\","),
        );
    if let Some(profile) = apparmor {
        spec = spec.replace(
            "\"process\": {",
            &format!("\"process\": {{\n\t\t\"apparmorProfile\": \"{profile}\","),
        );
    }
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
    run_container_args(rt, tag, entry, &["ok"], app, pod_uid)
}

/// [`run_container`] with entrypoint arguments `args`.
fn run_container_args(
    rt: &mut Runtime,
    tag: &str,
    entry: &str,
    args: &[&str],
    app: &str,
    pod_uid: &str,
) -> Run {
    let id = format!("armor-rt-{tag}-{}", std::process::id());
    let dir = PathBuf::from(format!("/tmp/{id}"));
    let cgroup = format!("kubepods/besteffort/pod{pod_uid}/{id}");
    bundle_with(&dir, entry, args, &cgroup, None);
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
    let records = enforcer_records(rt, Duration::from_secs(3));
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

/// Whether runc is installed; outside the guest a missing runc is a skip (said), inside it a
/// failure.
fn runc_installed() -> bool {
    if Command::new("runc").arg("--version").output().is_ok() {
        return true;
    }
    assert!(guest::current().is_none(), "runc missing in the guest");
    eprintln!("skipped: runc not installed");
    false
}

#[test]
fn runtime_blocks_a_created_containers_first_command_with_an_attributed_alert() {
    if !runc_installed() {
        return;
    }
    let Some((enforcement, select, _turn)) = bpf_enforcement() else {
        return;
    };
    let mut rt = runtime(enforcement, POLICY);

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
    let json = check_alert(
        &web.records,
        ("BPFLSM", "Process", "/bin/blocked"),
        (&web.id, "web", "web-0", "web", IMAGE, "no-entry"),
    );
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

const INODE_POLICY: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: inode-root, namespace: shop}
spec:
  severity: 7
  selector: {matchLabels: {app: inode}}
  file:
    matchPaths:
    - path: /etc/armor-secret
    - path: /app/config
  action: Block
";

/// Issue 16, finding 3: a container's (device, inode) rule entries are resolved inside its root
/// (`/proc/PID/root` of its task), never through this process's files. A hardlink in the image
/// to the protected file is refused by its inode entry (before, the entry was looked up at the
/// host's `/etc/armor-secret`, which does not exist: the hardlink was readable). A rule on an
/// absolute symlink in the image (`/app/config` → `/etc/hostname`) names no file the kernel
/// sees (a rule on a link never matches): the host's `/etc/hostname`, bind-mounted into the
/// container, stays readable.
#[test]
fn inode_entries_are_resolved_inside_the_containers_root() {
    if !runc_installed() {
        return;
    }
    let Some((enforcement, _, _turn)) = bpf_enforcement() else {
        return;
    };
    let mut rt = runtime(enforcement, INODE_POLICY);
    let hl = run_container_args(
        &mut rt,
        "inode-hl",
        "actor",
        &["open", "/hl-secret", "rdonly"],
        "inode",
        "1a2b3c4d",
    );
    assert!(
        hl.log.contains("armor-op: errno 1 "),
        "the hardlink to the protected file was opened: `{}`",
        hl.log
    );
    let host = run_container_args(
        &mut rt,
        "inode-host",
        "actor",
        &["open", "/app/config", "rdonly"],
        "inode",
        "2b3c4d5e",
    );
    assert!(
        host.log.contains("armor-op: ok"),
        "the host file behind an absolute symlink was refused: `{}`",
        host.log
    );
    println!(
        "hardlink: `{}`; symlink: `{}`",
        hl.log.trim(),
        host.log.trim()
    );
}

/// The next lifecycle event about container `id` within 60 s (TCG is slow).
fn next_event(rx: &std::sync::mpsc::Receiver<ContainerEvent>, id: &str) -> ContainerEvent {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no event for {id}: {e}"));
        let about = match &ev {
            ContainerEvent::Created(i) | ContainerEvent::Started(i) => i.id == id,
            ContainerEvent::Stopped { id: i, .. } => i == id,
            ContainerEvent::StreamEnded(why) => panic!("event stream ended: {why}"),
            _ => false,
        };
        if about {
            return ev;
        }
    }
}

#[test]
fn runtime_blocks_a_containerd_containers_first_command_from_the_create_event() {
    if let Some(why) = support::unavailable() {
        assert!(guest::current().is_none(), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    let Some((enforcement, _, _turn)) = bpf_enforcement() else {
        return;
    };
    let tmp = GuestTmp::mount();
    let daemon = support::Daemon::start("rt-enforce");
    let mut driver = support::Driver::connect(&daemon.socket, &daemon.dir);
    driver.load_busybox(CTRD_IMAGE, &[]);
    let client = Containerd::connect(&daemon.socket).unwrap();
    let events = client.watch().unwrap();
    let mut rt = runtime(enforcement, BUSYBOX_POLICY);
    // The subscription is live once the stream thread connected; give it a moment.
    std::thread::sleep(Duration::from_millis(500));

    let mut outcome = Vec::new();
    for (name, app, uid) in [("web", "web", "5f1e0c2a"), ("api", "api", "77c3d9b4")] {
        let spec = ctrd_spec(name, app, uid);
        let t = Instant::now();
        let pid = driver.create(&spec);
        let created = t.elapsed();
        // What the agent does: the runtime's containerd client delivers the create event, the
        // runtime applies the container's rules.
        let ev = next_event(&events, &spec.id);
        let ContainerEvent::Created(info) = &ev else {
            panic!("expected the create event first: {ev:?}");
        };
        assert_eq!(info.pid, Some(pid));
        let seen = t.elapsed();
        let change = rt.container_event(&ev).unwrap();
        let applied = t.elapsed();
        let problems = rt.take_problems();
        assert!(problems.is_empty(), "{problems:?}");
        let ContainerChange::Tracked(key) = change else {
            panic!("{name} not tracked: {change:?}");
        };
        assert_eq!(key.name, format!("shop/{name}-0/{name}"));
        // Not started yet: the task's process is still runc's init.
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim(), "runc:[2:INIT]");
        driver.start(&spec);
        let status = driver.wait(&spec.id, Duration::from_secs(60));
        let records = enforcer_records(&mut rt, Duration::from_secs(3));
        let started = next_event(&events, &spec.id);
        assert!(matches!(started, ContainerEvent::Started(_)), "{started:?}");
        assert_eq!(
            rt.container_event(&started).unwrap(),
            ContainerChange::Unchanged
        );
        let stopped = next_event(&events, &spec.id);
        assert_eq!(
            rt.container_event(&stopped).unwrap(),
            ContainerChange::Untracked(spec.id.clone())
        );
        println!(
            "{name}: Tasks.Create {created:?}; create event seen {:?} later; rules in the kernel \
             {:?} after that; exit status {status:?}",
            seen.saturating_sub(created),
            applied.saturating_sub(seen)
        );
        outcome.push((spec, status, records));
    }
    let problems = rt.take_problems();
    drop(rt);
    drop(client);
    let left = driver.cleanup();
    drop(driver);
    drop(daemon);
    drop(tmp);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(left.is_empty(), "not removed: {left:?}");

    let [(web, web_status, web_records), (_, api_status, api_records)] = &outcome[..] else {
        panic!("two containers expected");
    };
    assert!(
        matches!(web_status, Some(s) if *s != 0),
        "web's entrypoint was not refused: exit status {web_status:?}"
    );
    let json = check_alert(
        web_records,
        ("BPFLSM", "Process", "/bin/busybox"),
        (&web.id, "web", "web-0", "web", CTRD_IMAGE, "no-busybox"),
    );
    println!("alert: {json}");
    assert_eq!(*api_status, Some(0), "the control container failed");
    assert!(
        api_records.is_empty(),
        "alerts for the control: {api_records:?}"
    );
}

/// AppArmor through the runtime (the module name keeps it out of the SELinux guest's run).
mod apparmor {
    use super::*;

    const SECRET_POLICY: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: no-secret, namespace: shop}
spec:
  severity: 7
  selector: {matchLabels: {app: web}}
  file:
    matchPaths:
    - path: /etc/armor-secret
  action: Block
";

    /// Whether AppArmor lists profile `name` as loaded.
    fn loaded(name: &str) -> bool {
        fs::read_to_string("/sys/kernel/security/apparmor/profiles")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').next() == Some(name))
    }

    /// One container: defined (the runtime loads its profile ahead), created by runc under the
    /// profile its spec names, handed to the runtime, started; returns its log and the records.
    fn run(rt: &mut Runtime, name: &str, app: &str) -> (String, Vec<Telemetry>, String) {
        let id = format!("armor-aa-{name}-{}", std::process::id());
        let dir = PathBuf::from(format!("/tmp/{id}"));
        let cgroup = format!("armor-aa-{name}-{}", std::process::id());
        let workload = format!("shop/{name}-0/{name}");
        let profile =
            armor_enforce_apparmor::profile_name(&armor_core::WorkloadKey::new(workload.as_str()));
        let mut i = info(&id, &format!("{name}-0"), name, app, 0);
        i.pid = None;
        i.security_labels.insert(
            armor_core::enforcer::LabelKind::AppArmorProfile,
            profile.clone(),
        );
        let t = Instant::now();
        let change = rt
            .container_event(&ContainerEvent::Defined(i.clone()))
            .unwrap();
        let ahead = t.elapsed();
        assert_eq!(
            change,
            ContainerChange::Prepared(armor_core::WorkloadKey::new(workload.as_str()))
        );
        assert!(loaded(&profile), "{profile} not loaded ahead");
        bundle_with(
            &dir,
            "op",
            &["open", "/etc/armor-secret", "rdonly"],
            &cgroup,
            Some(&profile),
        );
        let log = fs::File::create(dir.join("ctr.log")).unwrap();
        let st = runc(&["create", "--bundle", dir.to_str().unwrap(), &id], &log);
        assert!(
            st.success(),
            "runc create: {}",
            fs::read_to_string(dir.join("ctr.log")).unwrap_or_default()
        );
        i.pid = Some(state_pid(&state(&id)));
        let change = rt.container_event(&ContainerEvent::Created(i)).unwrap();
        assert!(matches!(change, ContainerChange::Tracked(_)), "{change:?}");
        // The spec names the profile: the runtime counts the container as enforced.
        let problems = rt.take_problems();
        assert!(problems.is_empty(), "{problems:?}");
        assert!(runc(&["start", &id], &log).success(), "runc start");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let st = state(&id);
            if !st.contains("\"running\"") && !st.contains("\"created\"") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let records = enforcer_records(rt, Duration::from_secs(10));
        let _ = runc(&["delete", "--force", &id], &log);
        let gone = rt
            .container_event(&ContainerEvent::Stopped {
                containerd_namespace: "k8s.io".to_string(),
                id: id.clone(),
            })
            .unwrap();
        assert_eq!(gone, ContainerChange::Untracked(id.clone()));
        assert!(
            !loaded(&profile),
            "{profile} still loaded after the container went"
        );
        let problems = rt.take_problems();
        assert!(problems.is_empty(), "{problems:?}");
        let text = fs::read_to_string(dir.join("ctr.log")).unwrap_or_default();
        let _ = fs::remove_dir(cgroup2_root().unwrap().join(&cgroup));
        let _ = fs::remove_dir_all(&dir);
        println!(
            "{name}: profile {profile} loaded ahead in {ahead:?}; log `{}`",
            text.trim()
        );
        (text, records, id)
    }

    #[test]
    fn runtime_loads_the_profile_ahead_and_the_container_naming_it_is_enforced() {
        if !super::runc_installed() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("armor-rt-aa-{}", std::process::id()));
        let options = EnforcementOptions::default().apparmor_dir(&dir);
        let enforcement =
            match Enforcement::select(&EnforcerChoice::Named("apparmor".into()), &options) {
                Ok(e) => e,
                Err(e) => {
                    assert!(
                        guest::current().and_then(|g| g.profile) != Some(guest::Profile::AppArmor),
                        "AppArmor refused in its guest: {e}"
                    );
                    eprintln!("skipped: {e}");
                    return;
                }
            };
        println!("selected: {}", enforcement.summary());
        // An earlier agent loaded a profile for a container that is gone.
        let mut old = runtime(enforcement, SECRET_POLICY);
        let mut gone = info("armor-aa-gone", "gone-0", "gone", "web", 0);
        gone.pid = None;
        old.container_event(&ContainerEvent::Defined(gone)).unwrap();
        let stale =
            armor_enforce_apparmor::profile_name(&armor_core::WorkloadKey::new("shop/gone-0/gone"));
        assert!(loaded(&stale));
        drop(old);
        let enforcement =
            Enforcement::select(&EnforcerChoice::Named("apparmor".into()), &options).unwrap();
        let mut rt = runtime(enforcement, SECRET_POLICY);
        // This agent: a container defined, not created yet; the sweep keeps its profile and
        // removes the stale one.
        let mut pending = info("armor-aa-pending", "pending-0", "pending", "web", 0);
        pending.pid = None;
        pending.security_labels.insert(
            armor_core::enforcer::LabelKind::AppArmorProfile,
            armor_enforce_apparmor::profile_name(&armor_core::WorkloadKey::new(
                "shop/pending-0/pending",
            )),
        );
        rt.container_event(&ContainerEvent::Defined(pending))
            .unwrap();
        let kept = armor_enforce_apparmor::profile_name(&armor_core::WorkloadKey::new(
            "shop/pending-0/pending",
        ));
        let removed = rt.sweep_stale_profiles();
        assert_eq!(removed, vec![stale.clone()]);
        assert!(!loaded(&stale), "{stale} still loaded");
        assert!(
            loaded(&kept),
            "{kept} swept although its container is defined"
        );
        let (web_log, web_records, web_id) = run(&mut rt, "web", "web");
        let (api_log, api_records, _) = run(&mut rt, "api", "api");
        // The pending container never got a task: a later sweep (none tracked) removes it.
        drop(rt);
        let enforcement =
            Enforcement::select(&EnforcerChoice::Named("apparmor".into()), &options).unwrap();
        let mut last = runtime(enforcement, SECRET_POLICY);
        assert_eq!(last.sweep_stale_profiles(), vec![kept.clone()]);
        assert!(!loaded(&kept));
        drop(last);
        let _ = fs::remove_dir_all(&dir);
        assert!(
            web_log.contains("errno 13"),
            "the read was not refused: `{web_log}`"
        );
        let json = check_alert(
            &web_records,
            ("AppArmor", "File", "/etc/armor-secret"),
            (&web_id, "web", "web-0", "web", IMAGE, "no-secret"),
        );
        println!("alert: {json}");
        assert!(api_log.contains("armor-op: ok"), "control: `{api_log}`");
        assert!(
            api_records.is_empty(),
            "alerts for the control: {api_records:?}"
        );
    }
}
