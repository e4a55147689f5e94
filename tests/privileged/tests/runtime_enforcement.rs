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

/// The runtime's enforcement as `armor-agent --enforcer auto` builds it, when that is BPF-LSM;
/// `None` (after saying why) outside the guest when the kernel refuses it.
fn bpf_enforcement() -> Option<(Enforcement, Duration)> {
    let mut bpf = armor_enforce_bpflsm::Config::default();
    bpf.alerts_per_sec = 0;
    let options = EnforcementOptions::default().bpflsm(bpf);
    let t = Instant::now();
    match Enforcement::select(EnforcerChoice::Auto, &options) {
        Ok(e) if e.name() == Some(armor_runtime::enforcement::BPFLSM) => {
            println!("selected in {:?}: {}", t.elapsed(), e.summary());
            Some((e, t.elapsed()))
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

/// A bundle whose entrypoint is `/bin/<entry> ok` (the static armor-op helper) in cgroup
/// `cgroup` (relative to the cgroup2 root).
fn bundle(dir: &Path, entry: &str, cgroup: &str) {
    bundle_with(dir, entry, &["ok"], cgroup, None);
}

/// A bundle whose entrypoint is `/bin/<entry> ARGS...` (the armor-op helper) in cgroup `cgroup`,
/// under AppArmor profile `apparmor` when given, with `/etc/armor-secret` in its root.
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

#[test]
fn runtime_blocks_a_created_containers_first_command_with_an_attributed_alert() {
    if Command::new("runc").arg("--version").output().is_err() {
        assert!(guest::current().is_none(), "runc missing in the guest");
        eprintln!("skipped: runc not installed");
        return;
    }
    let Some((enforcement, select)) = bpf_enforcement() else {
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

const BUSYBOX_POLICY: &str = "\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: no-busybox, namespace: shop}
spec:
  severity: 7
  selector: {matchLabels: {app: web}}
  process:
    matchPaths:
    - path: /bin/busybox
  action: Block
";

const CTRD_IMAGE: &str = "docker.io/armor-test/busybox:latest";

/// A Kubernetes-labelled container of the private containerd running `/bin/echo` (a symlink
/// to `/bin/busybox`, the executable the kernel checks).
fn ctrd_spec(name: &str, app: &str, uid: &str) -> support::Spec {
    support::Spec {
        id: format!("{:0>64}", format!("{uid}{}", std::process::id())),
        pod_uid: format!("{uid}-0000-4000-8000-{:012}", std::process::id()),
        labels: vec![
            ("io.kubernetes.pod.namespace".into(), "shop".into()),
            ("io.kubernetes.pod.name".into(), format!("{name}-0")),
            ("io.kubernetes.container.name".into(), name.into()),
            ("app".into(), app.into()),
        ],
        args: vec!["/bin/echo".into(), "entrypoint ran".into()],
        hooks: None,
    }
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

/// Mounts a tmpfs on `/tmp` inside the guest (its root is an overlay, and containerd's overlay
/// snapshots cannot have their upper directory on one); unmounted on drop.
struct GuestTmp(bool);

impl GuestTmp {
    fn mount() -> Self {
        if guest::current().is_none() {
            return Self(false);
        }
        nix::mount::mount(
            Some("tmpfs"),
            "/tmp",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("mode=1777"),
        )
        .unwrap();
        Self(true)
    }
}

impl Drop for GuestTmp {
    fn drop(&mut self) {
        if self.0 {
            let _ = nix::mount::umount2("/tmp", nix::mount::MntFlags::MNT_DETACH);
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
    let Some((enforcement, _)) = bpf_enforcement() else {
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
        let profile = armor_runtime::enforcement::apparmor_profile_name(&workload);
        let mut i = info(&id, &format!("{name}-0"), name, app, 0);
        i.pid = None;
        i.apparmor_profile = Some(profile.clone());
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
        if Command::new("runc").arg("--version").output().is_err() {
            assert!(guest::current().is_none(), "runc missing in the guest");
            eprintln!("skipped: runc not installed");
            return;
        }
        let dir = std::env::temp_dir().join(format!("armor-rt-aa-{}", std::process::id()));
        let options = EnforcementOptions::default().apparmor_dir(&dir);
        let enforcement = match Enforcement::select(EnforcerChoice::AppArmor, &options) {
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
        let stale = armor_runtime::enforcement::apparmor_profile_name("shop/gone-0/gone");
        assert!(loaded(&stale));
        drop(old);
        let enforcement = Enforcement::select(EnforcerChoice::AppArmor, &options).unwrap();
        let mut rt = runtime(enforcement, SECRET_POLICY);
        // This agent: a container defined, not created yet; the sweep keeps its profile and
        // removes the stale one.
        let mut pending = info("armor-aa-pending", "pending-0", "pending", "web", 0);
        pending.pid = None;
        pending.apparmor_profile = Some(armor_runtime::enforcement::apparmor_profile_name(
            "shop/pending-0/pending",
        ));
        rt.container_event(&ContainerEvent::Defined(pending))
            .unwrap();
        let kept = armor_runtime::enforcement::apparmor_profile_name("shop/pending-0/pending");
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
        let enforcement = Enforcement::select(EnforcerChoice::AppArmor, &options).unwrap();
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

/// Output shared between the agent's thread and the test.
#[derive(Clone, Default)]
struct SharedOut(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedOut {
    /// The complete lines written so far (the agent writes a record in several pieces: a
    /// line still being written is left for the next call).
    fn lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// `armor_runtime::agent::run` on a thread of the test, its log lines on a channel.
struct Agent {
    handle: std::thread::JoinHandle<armor_runtime::Result<()>>,
    logs: std::sync::mpsc::Receiver<String>,
    out: SharedOut,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: Vec<String>,
}

impl Agent {
    /// Starts the agent and waits for its `ready` line, which must be `ready`; `None` (after
    /// saying why) when the kernel refuses BPF-LSM outside the guest.
    fn start(options: armor_runtime::agent::AgentOptions, ready: &str) -> Option<Self> {
        let out = SharedOut::default();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, logs) = std::sync::mpsc::channel::<String>();
        let t0 = Instant::now();
        let handle = {
            let (mut out, stop) = (out.clone(), stop.clone());
            std::thread::spawn(move || {
                armor_runtime::agent::run(
                    &options,
                    &mut out,
                    &mut |l| {
                        let _ = tx.send(l.to_string());
                    },
                    &stop,
                )
            })
        };
        let mut seen = Vec::new();
        // Outside the guest the kernel refuses BPF-LSM and the agent stops at once, saying why.
        let line = loop {
            match logs.recv_timeout(Duration::from_secs(300)) {
                Ok(line) if line.starts_with("ready: ") => break line,
                Ok(line) => seen.push(line),
                Err(_) => {
                    let result = handle.join().unwrap();
                    let Err(armor_runtime::Error::Enforcer { reason, .. }) = &result else {
                        panic!("agent ended: {result:?}; log {seen:#?}");
                    };
                    assert!(
                        guest::current().is_none(),
                        "BPF-LSM refused in the guest: {reason}"
                    );
                    eprintln!("skipped: {reason}");
                    return None;
                }
            }
        };
        assert_eq!(line, ready, "{seen:#?}");
        println!("agent ready after {:?}", t0.elapsed());
        Some(Self {
            handle,
            logs,
            out,
            stop,
            seen,
        })
    }

    /// The next log line containing `needle` within `limit`.
    fn line(&mut self, needle: &str, limit: Duration) -> String {
        log_line(&self.logs, needle, limit, &mut self.seen)
    }

    /// Waits up to 10 s for a BPFLSM alert of container `web_id` (it crosses the ring buffer,
    /// the reader thread and the loop), stops the agent, then removes the containers and the
    /// private containerd: the agent's result, log lines and JSON lines, and what cleanup left.
    fn finish(
        self,
        web_id: &str,
        (tmp, daemon, mut driver): (GuestTmp, support::Daemon, support::Driver),
    ) -> (
        armor_runtime::Result<()>,
        Vec<String>,
        Vec<serde_json::Value>,
        Vec<String>,
    ) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let is_web_alert =
            |v: &serde_json::Value| v["Enforcer"] == "BPFLSM" && v["ContainerID"] == web_id;
        while Instant::now() < deadline && !self.out.lines().iter().any(is_web_alert) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let (result, seen, lines) = self.stop();
        let left = driver.cleanup();
        drop(driver);
        drop(daemon);
        drop(tmp);
        (result, seen, lines, left)
    }

    /// Stops the agent: its result, every log line, every JSON line written.
    fn stop(
        mut self,
    ) -> (
        armor_runtime::Result<()>,
        Vec<String>,
        Vec<serde_json::Value>,
    ) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let result = self.handle.join().unwrap();
        while let Ok(l) = self.logs.try_recv() {
            self.seen.push(l);
        }
        (result, self.seen, self.out.lines())
    }
}

/// The next agent log line containing `needle` within `limit`; every line is kept in `seen`.
fn log_line(
    rx: &std::sync::mpsc::Receiver<String>,
    needle: &str,
    limit: Duration,
    seen: &mut Vec<String>,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no agent line with `{needle}` ({e}): {seen:#?}"));
        seen.push(line.clone());
        if line.contains(needle) {
            return line;
        }
    }
}

/// A private containerd in the guest with the busybox image loaded, and a policy directory
/// holding [`BUSYBOX_POLICY`]; `None` (after saying why) where containerd cannot run.
fn private_containerd(tag: &str) -> Option<(GuestTmp, support::Daemon, support::Driver, PathBuf)> {
    if let Some(why) = support::unavailable() {
        assert!(guest::current().is_none(), "{why}");
        eprintln!("skipped: {why}");
        return None;
    }
    let tmp = GuestTmp::mount();
    let daemon = support::Daemon::start(tag);
    let mut driver = support::Driver::connect(&daemon.socket, &daemon.dir);
    driver.load_busybox(CTRD_IMAGE, &[]);
    let policies = daemon.dir.join("policies");
    fs::create_dir_all(&policies).unwrap();
    fs::write(policies.join("no-busybox.yaml"), BUSYBOX_POLICY).unwrap();
    Some((tmp, daemon, driver, policies))
}

/// The whole agent (`armor_runtime::agent::run`, what `armor-agent --enforcer bpflsm
/// --containerd-socket S` runs) against a private containerd in the guest: it enumerates and
/// watches containerd itself, applies a container's rules on the task-create event, blocks the
/// entrypoint, and writes the kernel's alert as a KubeArmor JSON line with the container's
/// identity. The test starts each task once the agent logged that it tracks it (a kubelet's
/// CreateContainer/StartContainer gap).
#[test]
fn runtime_agent_loop_enforces_on_containerd_task_create() {
    let Some((tmp, daemon, mut driver, policies)) = private_containerd("rt-agent") else {
        return;
    };
    let mut bpf = armor_enforce_bpflsm::Config::default();
    bpf.alerts_per_sec = 0;
    let options = armor_runtime::agent::AgentOptions::new(&policies)
        .containerd_socket(&daemon.socket)
        .enforcer(EnforcerChoice::BpfLsm)
        .enforcement(EnforcementOptions::default().bpflsm(bpf));
    let Some(mut agent) = Agent::start(options, "ready: enforcing with BPFLSM (0 containers)")
    else {
        return;
    };

    let mut exits = Vec::new();
    for (name, app, uid) in [("web", "web", "6a2e0c2a"), ("api", "api", "87c3d9b4")] {
        let spec = ctrd_spec(name, app, uid);
        let t = Instant::now();
        driver.create(&spec);
        let created = t.elapsed();
        agent.line(
            &format!("container shop/{name}-0/{name} (cgroup"),
            Duration::from_secs(30),
        );
        let tracked = t.elapsed();
        driver.start(&spec);
        let status = driver.wait(&spec.id, Duration::from_secs(60));
        agent.line(
            &format!("container {} gone", spec.id),
            Duration::from_secs(30),
        );
        println!(
            "{name}: Tasks.Create {created:?}; the agent tracked it {:?} later; exit status \
             {status:?}",
            tracked.saturating_sub(created)
        );
        exits.push((spec, status));
    }
    let web_id = exits[0].0.id.clone();
    let is_web_alert =
        |v: &serde_json::Value| v["Enforcer"] == "BPFLSM" && v["ContainerID"] == web_id.as_str();
    let (result, seen, lines, left) = agent.finish(&web_id, (tmp, daemon, driver));
    assert!(result.is_ok(), "agent: {result:?}; log {seen:#?}");
    assert_eq!(seen.last().map(String::as_str), Some("stopped"));
    assert!(left.is_empty(), "not removed: {left:?}");
    assert!(
        matches!(exits[0].1, Some(s) if s != 0),
        "web's entrypoint was not refused: {:?}",
        exits[0].1
    );
    assert_eq!(exits[1].1, Some(0), "the control container failed");
    let alert = lines.iter().find(|v| is_web_alert(v)).unwrap_or_else(|| {
        panic!(
            "no BPFLSM alert for web in {} lines; log {seen:#?}",
            lines.len()
        )
    });
    println!("alert: {alert}");
    assert_eq!(alert["Type"], "MatchedPolicy");
    assert_eq!(alert["Action"], "Block");
    assert_eq!(alert["Result"], "Permission denied");
    assert_eq!(alert["Operation"], "Process");
    assert_eq!(alert["Resource"], "/bin/busybox");
    assert_eq!(alert["PolicyName"], "no-busybox");
    assert_eq!(alert["ContainerName"], "web");
    assert_eq!(alert["NamespaceName"], "shop");
    assert_eq!(alert["PodName"], "web-0");
    assert_eq!(alert["Labels"], "app=web");
    assert_eq!(alert["ContainerImage"], CTRD_IMAGE);
    let api_id = exits[1].0.id.as_str();
    assert!(
        !lines
            .iter()
            .any(|v| v["Enforcer"] == "BPFLSM" && v["ContainerID"] == api_id),
        "a kernel alert for the control container"
    );
}

/// Rules for `app: big` that cannot fit the rule map of [`runtime_agent_answers_the_oci_hook`].
fn big_policy() -> String {
    let mut p = String::from(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: big, \
         namespace: shop}\nspec:\n  selector: {matchLabels: {app: big}}\n  file:\n    \
         matchPaths:\n",
    );
    for i in 0..64 {
        p.push_str(&format!("    - path: /etc/big-{i}\n"));
    }
    p.push_str("  action: Block\n");
    p
}

/// The whole agent answering the OCI hook (`armor-agent --hook-socket`, the hook being
/// `armor-oci-hook` — here the same code built as this crate's `armor-test-oci-hook`) against a
/// private containerd whose containers name the hook in their spec, started the way kubelet
/// starts them: `Tasks.Start` right after `Tasks.Create` returns, with nothing waited for in
/// between. The hook holds the creation until the agent has applied the container's rules:
/// * web (its entrypoint is blocked): refused, with the alert attributed to the container;
/// * api (no rules select it): runs;
/// * big (its rules do not fit the enforcer's rule map): its creation fails with the agent's
///   reason, and no task of it ever runs.
#[test]
fn runtime_agent_answers_the_oci_hook() {
    // The hook binary is read before /tmp is covered by the guest's tmpfs (a checkout under
    // /tmp would vanish under it), and installed next to the daemon.
    let hook_binary = fs::read(env!("CARGO_BIN_EXE_armor-test-oci-hook")).unwrap();
    let Some((tmp, daemon, mut driver, policies)) = private_containerd("rt-hook") else {
        return;
    };
    let hook_path = daemon.dir.join("armor-oci-hook");
    fs::write(&hook_path, &hook_binary).unwrap();
    fs::set_permissions(
        &hook_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    fs::write(policies.join("big.yaml"), big_policy()).unwrap();
    let socket = daemon.dir.join("hook/hook.sock");
    let mut bpf = armor_enforce_bpflsm::Config::default();
    bpf.alerts_per_sec = 0;
    bpf.max_rule_entries = 48;
    let options = armor_runtime::agent::AgentOptions::new(&policies)
        .containerd_socket(&daemon.socket)
        .hook_socket(&socket)
        .enforcer(EnforcerChoice::BpfLsm)
        .enforcement(EnforcementOptions::default().bpflsm(bpf));
    let Some(mut agent) = Agent::start(options, "ready: enforcing with BPFLSM (0 containers)")
    else {
        return;
    };
    let hooks = serde_json::json!({"createRuntime": [{
        "path": hook_path.to_str().unwrap(),
        "args": ["armor-oci-hook", "--socket", socket.to_str().unwrap(), "--timeout", "60"],
        "timeout": 120,
    }]});
    let mut runs = Vec::new();
    for (name, app, uid) in [
        ("web", "web", "9a2e0c2a"),
        ("api", "api", "a7c3d9b4"),
        ("big", "big", "b1d4e5f6"),
    ] {
        let mut spec = ctrd_spec(name, app, uid);
        spec.hooks = Some(hooks.clone());
        let t = Instant::now();
        let created = driver.try_create(&spec);
        let create_time = t.elapsed();
        let status = match &created {
            Ok(_) => {
                // What kubelet does: StartContainer right after CreateContainer returned.
                driver.start(&spec);
                let status = driver.wait(&spec.id, Duration::from_secs(60));
                agent.line(
                    &format!("container {} gone", spec.id),
                    Duration::from_secs(30),
                );
                status
            }
            Err(_) => None,
        };
        println!("{name}: Tasks.Create {create_time:?} → {created:?}; exit status {status:?}");
        runs.push((spec, created, status));
    }
    let web_id = runs[0].0.id.clone();
    let is_web_alert =
        |v: &serde_json::Value| v["Enforcer"] == "BPFLSM" && v["ContainerID"] == web_id.as_str();
    let (result, seen, lines, left) = agent.finish(&web_id, (tmp, daemon, driver));
    assert!(result.is_ok(), "agent: {result:?}; log {seen:#?}");
    assert!(left.is_empty(), "not removed: {left:?}");
    assert!(!socket.exists(), "the agent left its hook socket behind");
    let [
        (web, web_created, web_status),
        (api, api_created, api_status),
        (big, big_created, _),
    ] = &runs[..]
    else {
        panic!("three containers expected");
    };
    for l in seen
        .iter()
        .filter(|l| l.contains("admitted by the OCI hook"))
    {
        println!("agent: {l}");
    }
    for (spec, created) in [(web, web_created), (api, api_created)] {
        assert!(created.is_ok(), "{}: {created:?}", spec.id);
        let name = &spec.labels[2].1;
        assert!(
            seen.iter().any(
                |l| l.starts_with(&format!("container shop/{name}-0/{name} (cgroup"))
                    && l.contains(") admitted by the OCI hook in ")
            ),
            "{name} not admitted by the hook: {seen:#?}"
        );
    }
    assert!(
        matches!(web_status, Some(s) if *s != 0),
        "web's entrypoint was not refused: exit status {web_status:?}"
    );
    assert_eq!(*api_status, Some(0), "the control container failed");
    let alert = lines.iter().find(|v| is_web_alert(v)).unwrap_or_else(|| {
        panic!(
            "no BPFLSM alert for web in {} lines; log {seen:#?}",
            lines.len()
        )
    });
    println!("alert: {alert}");
    assert_eq!(alert["Operation"], "Process");
    assert_eq!(alert["Resource"], "/bin/busybox");
    assert_eq!(alert["PolicyName"], "no-busybox");
    assert_eq!(alert["PodName"], "web-0");
    assert_eq!(alert["Labels"], "app=web");
    let api_id = api.id.as_str();
    assert!(
        !lines
            .iter()
            .any(|v| v["Enforcer"] == "BPFLSM" && v["ContainerID"] == api_id),
        "a kernel alert for the control container"
    );
    let Err(why) = big_created else {
        panic!("big was created although its rules do not fit");
    };
    assert!(
        why.contains("refused by the armor agent") && why.contains("max_rule_entries"),
        "big's creation failed for another reason: {why}"
    );
    let refused = format!("container {} refused at creation:", big.id);
    assert!(
        seen.iter().any(|l| l.starts_with(&refused)),
        "no refusal logged: {seen:#?}"
    );
}
