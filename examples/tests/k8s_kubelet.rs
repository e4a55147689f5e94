#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The real pod lifecycle: a real kubelet (built from the same `k8s.io/kubernetes` module as the
//! API server) runs a pod on a private containerd with the CRI on, and `armor-k8s-agent`, under
//! deploy/'s RBAC and following that containerd, gives the pod's container the policy that the
//! pod's labels select — labels that only the API has (the CRI puts them on the sandbox, which
//! the runtime skips). An operation in the container alerts with the pod's identity.
//!
//! Needs root, containerd, runc, ctr and the static busybox (`scripts/lib/prereqs.sh`) and the
//! test tool with its kubelet (`scripts/k8s-tools`). While the kubelet runs it sets the kernel
//! tunables it wants (`vm.overcommit_memory`, `kernel.panic`, `kernel.panic_on_oops`, …); the
//! test puts them back when it ends.

#[path = "../../armor-k8s/tests/support/mod.rs"]
mod support;

mod common;

use common::{KillOnDrop, alerts, free_port};

#[path = "../../armor-runtime/tests/support/oci.rs"]
#[allow(
    dead_code,
    reason = "the image builder is shared; this test uses part of it"
)]
mod oci;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use armor_testing::lines::Lines;
use containerd_client::types::Descriptor;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};

/// The node's name.
const NODE: &str = "kubelet-node";
/// The sandbox image containerd's CRI runs for every pod.
const PAUSE: &str = "docker.io/library/armor-pause:1";
/// The pod's image.
const APP: &str = "docker.io/library/armor-app:1";
/// The kernel tunables the kubelet sets (with `protectKernelDefaults: false`), put back after.
const TUNABLES: [&str; 6] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

/// Why the test cannot run here (`None`: it can). Under `CI=true` a missing tool fails it.
fn unavailable() -> Option<String> {
    if !armor_testing::is_root() {
        return Some("needs root (containerd, the kubelet, the agent's event source)".into());
    }
    for bin in ["containerd", "containerd-shim-runc-v2", "runc", "ctr"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
        if !found {
            return Some(format!("`{bin}` is not installed (scripts/lib/prereqs.sh)"));
        }
    }
    match fs::read("/bin/busybox") {
        Ok(b) if oci::is_static_elf(&b) => None,
        _ => Some("no static /bin/busybox (Debian's busybox-static)".into()),
    }
}

/// An OCI image archive (what `ctr images import` reads) of busybox with `files`, running
/// `cmd`, named `name`.
fn image_archive(name: &str, cmd: &[&str], files: &[(&str, &[u8])]) -> Vec<u8> {
    let busybox = fs::read("/bin/busybox").unwrap();
    let layer = oci::busybox_layer(&busybox, files);
    let desc = |media: &str, data: &[u8]| Descriptor {
        media_type: media.to_string(),
        digest: oci::digest(data),
        size: i64::try_from(data.len()).unwrap(),
        ..Descriptor::default()
    };
    let layer_desc = desc(oci::LAYER_MEDIA_TYPE, &layer);
    let mut config: serde_json::Value =
        serde_json::from_str(&oci::config_json(&layer_desc.digest)).unwrap();
    config["config"]["Cmd"] = serde_json::json!(cmd);
    let config = config.to_string();
    let config_desc = desc(oci::CONFIG_MEDIA_TYPE, config.as_bytes());
    let manifest = oci::manifest_json(&config_desc, &layer_desc);
    let manifest_desc = desc(oci::MANIFEST_MEDIA_TYPE, manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": manifest_desc.media_type,
            "digest": manifest_desc.digest,
            "size": manifest_desc.size,
            "annotations": {"io.containerd.image.name": name},
        }],
    })
    .to_string();
    let mut tar = Vec::new();
    let mut file = |path: &str, data: &[u8]| {
        tar.extend_from_slice(&oci::tar_header(path, 0o644, data.len(), b'0', ""));
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    };
    file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    file("index.json", index.as_bytes());
    for (d, data) in [
        (&layer_desc, layer.as_slice()),
        (&config_desc, config.as_bytes()),
        (&manifest_desc, manifest.as_bytes()),
    ] {
        let hex = d.digest.trim_start_matches("sha256:");
        file(&format!("blobs/sha256/{hex}"), data);
    }
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// The private containerd and the kubelet; on drop, every container they ran is stopped, the
/// daemons are killed, what the kubelet mounted is unmounted and the kernel tunables are put
/// back.
struct KubeletNode {
    dir: PathBuf,
    socket: PathBuf,
    containerd: Child,
    kubelet: Option<Child>,
    tunables: Vec<(PathBuf, String)>,
    /// The kubelet's `kubepods` cgroups, in each hierarchy where the test made them (not where
    /// they were before it).
    cgroups: Vec<PathBuf>,
}

impl KubeletNode {
    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
            .unwrap()
    }

    fn log(&self, name: &str) -> String {
        let text = fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text.get(start..).unwrap_or_default().to_string()
    }
}

impl Drop for KubeletNode {
    fn drop(&mut self) {
        if let Some(mut k) = self.kubelet.take() {
            let _ = k.kill();
            let _ = k.wait();
        }
        let tasks = self.ctr(&["tasks", "ls", "-q"]);
        for id in String::from_utf8_lossy(&tasks.stdout).lines() {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
        }
        std::thread::sleep(Duration::from_millis(500));
        for id in String::from_utf8_lossy(&tasks.stdout).lines() {
            let _ = self.ctr(&["tasks", "delete", "-f", id]);
        }
        let _ = self.containerd.kill();
        let _ = self.containerd.wait();
        // What the kubelet and the CRI mounted under the directory, deepest first.
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        for (path, value) in &self.tunables {
            let _ = fs::write(path, value);
        }
        for root in &self.cgroups {
            remove_cgroups(root);
        }
    }
}

/// Every `kubepods` cgroup directory the kubelet would make (one per mounted hierarchy).
fn kubepods() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("/sys/fs/cgroup/kubepods")];
    if let Ok(dirs) = fs::read_dir("/sys/fs/cgroup") {
        for d in dirs.flatten() {
            out.push(d.path().join("kubepods"));
        }
    }
    out
}

/// Removes the cgroup `dir` and those below it, deepest first (a cgroup directory is removed
/// with rmdir, once it holds no process).
fn remove_cgroups(dir: &Path) {
    if let Ok(children) = fs::read_dir(dir) {
        for c in children.flatten() {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroups(&c.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Starts containerd with the CRI (the sandbox image [`PAUSE`], no CNI: host-network pods
/// need none) under `dir`, imports the two images, then the kubelet on `kubeconfig`.
fn start_node(dir: &Path, tool: &Path, kubeconfig: &Path) -> KubeletNode {
    fs::create_dir_all(dir.join("cni")).unwrap();
    let socket = dir.join("containerd.sock");
    let config = format!(
        r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  # The sandbox spec asks for oom_score_adj -998; a root without CAP_SYS_RESOURCE (this
  # machine's) may not lower it, and runc then fails every sandbox.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = "{dir}/cni"
    bin_dir = "{dir}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      Root = "{dir}/runc"
"#,
        dir = dir.display(),
        socket = socket.display(),
    );
    fs::write(dir.join("containerd.toml"), config).unwrap();
    let log = fs::File::create(dir.join("containerd.log")).unwrap();
    let containerd = Command::new("containerd")
        .arg("--config")
        .arg(dir.join("containerd.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut node = KubeletNode {
        dir: dir.to_path_buf(),
        socket: socket.clone(),
        containerd,
        kubelet: None,
        tunables: Vec::new(),
        cgroups: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node.ctr(&["version"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "containerd not ready:\n{}",
            node.log("containerd.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (name, cmd, files) in [
        (PAUSE, &["/bin/sleep", "2147483647"][..], &[][..]),
        (
            APP,
            &["/bin/sleep", "3600"][..],
            &[("etc/armor-secret", &b"not for the web\n"[..])][..],
        ),
    ] {
        let archive = dir.join(format!("{}.tar", name.rsplit('/').next().unwrap()));
        fs::write(&archive, image_archive(name, cmd, files)).unwrap();
        let out = node.ctr(&["images", "import", archive.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "ctr images import {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    node.cgroups = kubepods().into_iter().filter(|c| !c.exists()).collect();
    node.tunables = TUNABLES
        .iter()
        .filter_map(|t| {
            let path = Path::new("/proc/sys").join(t);
            fs::read_to_string(&path).ok().map(|v| (path, v))
        })
        .collect();
    let config = format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine's cgroups are hybrid (cgroup v1 controllers, cgroup2 beside them), which the
# kubelet refuses by default since 1.35; a pure cgroup2 host needs nothing here.
failCgroupV1: false
# No systemd here (containerd's runc uses cgroupfs too).
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://{socket}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
authorization: {{mode: AlwaysAllow}}
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzPort: 0
failSwapOn: false
enforceNodeAllocatable: []
evictionHard: {{}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 2s
fileCheckFrequency: 2s
",
        socket = socket.display(),
        port = free_port(),
    );
    fs::write(dir.join("kubelet.yaml"), config).unwrap();
    let log = fs::File::create(dir.join("kubelet.log")).unwrap();
    let kubelet = Command::new(tool)
        .arg("kubelet")
        .arg("--config")
        .arg(dir.join("kubelet.yaml"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--root-dir")
        .arg(dir.join("kubelet"))
        .arg("--cert-dir")
        .arg(dir.join("kubelet-pki"))
        .args(["--hostname-override", NODE])
        // Ends with the test, even a killed one (the tool exits when its stdin closes).
        .env("ARMOR_TESTENV_EXIT_ON_STDIN_EOF", "1")
        .stdin(Stdio::piped())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    node.kubelet = Some(kubelet);
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelets_pod_gets_the_policy_its_labels_select() {
    if let Some(why) = unavailable() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        assert!(!ci, "CI must run the kubelet test: {why}");
        println!("skipped: {why}");
        return;
    }
    let Some(tool) = support::testenv() else {
        return;
    };
    let Some((cp, admin)) = support::with_deploy_rbac("kubelet").await else {
        return;
    };
    let dir = cp.dir.join("node");
    fs::create_dir_all(&dir).unwrap();
    let node = start_node(&dir, &tool, &cp.kubeconfig("kubelet", support::ADMIN_TOKEN));

    // The kubelet registers its node.
    let nodes: Api<Node> = Api::all(admin.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes.get_opt(NODE).await.unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the kubelet did not register its node:\n{}",
            node.log("kubelet.log")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A policy selecting `app: web`, then the agent, following the kubelet's containerd.
    let policies = support::policy_api(&admin, "KubeArmorPolicy", Some("default"));
    let policy: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorPolicy",
        "metadata": {"name": "web-secret", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "file": {"matchPaths": [{"path": "/etc/armor-secret"}]}, "action": "Block"}
    }))
    .unwrap();
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let out = dir.join("alerts.jsonl");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_armor-k8s-agent"))
        .args(["--event-ring-mib=2", "--node", NODE, "--enforcer", "none"])
        .arg("--containerd-socket")
        .arg(&node.socket)
        .arg("--kubeconfig")
        .arg(cp.kubeconfig("agent", support::AGENT_TOKEN))
        .arg("--output")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _stop = KillOnDrop(agent.id());
    let mut lines = Lines::new(agent.stderr.take().unwrap());
    lines.timeout = Duration::from_secs(90);
    lines.until("ready:");

    // The pod, through the API server: the kubelet runs it.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-1", "labels": {"app": "web", "tier": "front"}},
        "spec": {"nodeName": NODE, "hostNetwork": true, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "web", "image": APP, "imagePullPolicy": "Never"}]}
    }))
    .unwrap();
    let started = Instant::now();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let container_id = loop {
        let p = pods.get("web-1").await.unwrap();
        let running = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
            .and_then(|c| c.container_id.clone());
        if let Some(id) = running {
            break id.trim_start_matches("containerd://").to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the pod does not run: {:?}\n{}",
            p.status,
            node.log("kubelet.log")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "the kubelet ran the pod in {} ms",
        started.elapsed().as_millis()
    );
    // The agent tracks the container with its pod's identity (by pod uid and container name,
    // the CRI labels of the container).
    let tracked = lines.until("container default/web-1/web");
    println!("{tracked}");

    // An operation in the container: its alert carries the pod's identity, and the policy that
    // selected it by labels only the API server has.
    let exec = node.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "probe",
        &container_id,
        "/bin/cat",
        "/etc/armor-secret",
    ]);
    assert!(
        exec.status.success(),
        "ctr tasks exec: {}",
        String::from_utf8_lossy(&exec.stderr)
    );
    let found = alerts(&out, "web-secret", 1);
    assert!(!found.is_empty(), "no alert:\n{}", lines.seen);
    let a = &found[0];
    assert_eq!(a["PodName"], "web-1", "{a}");
    assert_eq!(a["NamespaceName"], "default", "{a}");
    assert_eq!(a["ContainerName"], "web", "{a}");
    assert_eq!(a["HostName"], NODE, "{a}");
    assert_eq!(a["ContainerID"], container_id.as_str(), "{a}");
    let labels = a["Labels"].as_str().unwrap_or_default();
    assert!(
        labels.contains("app=web") && labels.contains("tier=front"),
        "{a}"
    );
    // Audit-only here: the monitor reports the Block it cannot enforce (the guest tests
    // block).
    assert_eq!(a["Action"], "Audit (Block)", "{a}");
    assert_eq!(a["Enforcer"], "eBPF Monitor", "{a}");
    assert_eq!(a["Result"], "Passed", "{a}");
    assert_eq!(a["Owner"]["Ref"], "Pod", "{a}");

    pods.delete("web-1", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    lines.until("container ");
    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let _ = agent.wait();
    drop(node);
}
