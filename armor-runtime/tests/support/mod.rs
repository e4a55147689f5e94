//! Driving a real, private containerd from tests without `ctr`: start it in a temp dir, build a
//! busybox OCI image in memory, load it through the content/images/diff/snapshots APIs, create
//! containers with Kubernetes labels and kubepods cgroup paths, run commands inside, and clean
//! up every task, container, snapshot, image, blob and cgroup.

#![allow(dead_code, reason = "each test binary uses part of the support module")]

pub(crate) mod oci;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use containerd_client::services::v1::container::Runtime as ContainerRuntime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    ApplyRequest, Container, CreateContainerRequest, CreateImageRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteContentRequest, DeleteImageRequest, DeleteProcessRequest,
    DeleteTaskRequest, ExecProcessRequest, Image, KillRequest, StartRequest, WaitRequest,
    WriteAction, WriteContentRequest,
};
use containerd_client::tonic::Request;
use containerd_client::tonic::codegen::tokio_stream;
use containerd_client::tonic::transport::Channel;
use containerd_client::types::{Descriptor, Mount};

/// The containerd namespace the tests use (as Kubernetes does).
pub(crate) const NS: &str = "k8s.io";
const SNAPSHOTTER: &str = "overlayfs";
const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PROCESS_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// Why the real-container tests cannot run here, or `None` when they can.
pub(crate) fn unavailable() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("containerd, runc and eBPF need root (euid is not 0)".to_string());
    }
    for bin in ["containerd", "containerd-shim-runc-v2", "runc"] {
        if which(bin).is_none() {
            return Some(format!(
                "`{bin}` is not on PATH (scripts/lib/prereqs.sh ensure_runtime_prereqs installs it)"
            ));
        }
    }
    match fs::read("/bin/busybox") {
        Ok(b) if oci::is_static_elf(&b) => None,
        Ok(_) => Some("/bin/busybox is not statically linked (install busybox-static)".into()),
        Err(e) => Some(format!("/bin/busybox: {e} (install busybox-static)")),
    }
}

/// The first `name` on PATH.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// A private containerd: its own root, state and socket under a temp dir; killed and removed
/// on drop (after the test's [`Driver::cleanup`]).
pub(crate) struct Daemon {
    pub(crate) dir: PathBuf,
    pub(crate) socket: PathBuf,
    child: Child,
}

impl Daemon {
    /// Starts containerd and waits until its socket accepts connections.
    pub(crate) fn start(tag: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!("armor-ctrd-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{s}"
[ttrpc]
  address = "{s}.ttrpc"
"#,
            d = dir.display(),
            s = socket.display()
        );
        fs::write(dir.join("config.toml"), config).unwrap();
        let child = Self::spawn(&dir);
        let mut d = Daemon { dir, socket, child };
        d.wait_ready();
        d
    }

    fn spawn(dir: &Path) -> Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("containerd.log"))
            .unwrap();
        Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// Stops containerd (SIGTERM; its tasks' shims keep running, as on a real restart).
    pub(crate) fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.child.wait().unwrap();
    }

    /// Starts containerd again on the same root, state and socket.
    pub(crate) fn resume(&mut self) {
        self.child = Self::spawn(&self.dir);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let d = self;
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&d.socket).is_err() {
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!("containerd exited ({status}):\n{}", d.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "containerd not ready:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "containerd ready in {:.3}s at {}",
            start.elapsed().as_secs_f64(),
            d.socket.display()
        );
    }

    /// containerd's output so far.
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while self.child.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Nothing may stay mounted under the root before it is removed.
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let prefix = self.dir.display().to_string();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The busybox image once loaded.
#[derive(Debug, Clone)]
pub(crate) struct LoadedImage {
    pub(crate) name: String,
    pub(crate) blobs: Vec<String>,
    pub(crate) chain_id: String,
}

/// A container the driver created (kept for cleanup).
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) id: String,
    pub(crate) pod_uid: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) args: Vec<String>,
    /// The OCI spec's `hooks` object, if any.
    pub(crate) hooks: Option<serde_json::Value>,
}

impl Spec {
    /// Container `name` of pod `<name>-0` in Kubernetes namespace `shop`, labelled `app: web`,
    /// running `sleep 3600`, with `hooks`; its id and pod uid are derived from `prefix`, `name`
    /// and the test's pid.
    pub(crate) fn web(prefix: &str, name: &str, hooks: Option<serde_json::Value>) -> Spec {
        let h = |seed: &str| {
            oci::digest(format!("{prefix}-{seed}-{}", std::process::id()).as_bytes())
                ["sha256:".len()..]
                .to_string()
        };
        let p = h(&format!("pod-{name}"));
        Spec {
            id: h(name),
            pod_uid: format!(
                "{}-{}-{}-{}-{}",
                &p[..8],
                &p[8..12],
                &p[12..16],
                &p[16..20],
                &p[20..32]
            ),
            labels: vec![
                ("io.kubernetes.pod.namespace".into(), "shop".into()),
                ("io.kubernetes.pod.name".into(), format!("{name}-0")),
                ("io.kubernetes.container.name".into(), name.into()),
                ("app".into(), "web".into()),
            ],
            args: vec!["/bin/sleep".into(), "3600".into()],
            hooks,
        }
    }

    /// The kubepods cgroup path (cgroupfs driver) of the container.
    pub(crate) fn cgroups_path(&self) -> String {
        format!("/kubepods/besteffort/pod{}/{}", self.pod_uid, self.id)
    }
}

/// gRPC calls to the private containerd.
pub(crate) struct Driver {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    image: Option<LoadedImage>,
    containers: Vec<Spec>,
    io_dir: PathBuf,
}

fn ns<T>(msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("containerd-namespace", NS.parse().unwrap());
    r
}

fn descriptor(media_type: &str, blob: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: oci::digest(blob),
        size: i64::try_from(blob.len()).unwrap(),
        annotations: HashMap::new(),
    }
}

impl Driver {
    /// Connects to `socket`; exec'd processes write their output to files under `io_dir`.
    pub(crate) fn connect(socket: &Path, io_dir: &Path) -> Driver {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = rt.block_on(containerd_client::connect(socket)).unwrap();
        Driver {
            rt,
            channel,
            image: None,
            containers: Vec::new(),
            io_dir: io_dir.to_path_buf(),
        }
    }

    /// Connects again (after containerd restarted on `socket`).
    pub(crate) fn reconnect(&mut self, socket: &Path) {
        self.channel = self
            .rt
            .block_on(containerd_client::connect(socket))
            .unwrap();
    }

    fn write_blob(&self, blob: &[u8], labels: HashMap<String, String>) {
        let mut content = ContentClient::new(self.channel.clone());
        let digest = oci::digest(blob);
        let req = WriteContentRequest {
            action: WriteAction::Commit.into(),
            r#ref: format!("armor-test-{digest}"),
            total: i64::try_from(blob.len()).unwrap(),
            expected: digest.clone(),
            offset: 0,
            data: blob.to_vec(),
            labels,
        };
        let stream = tokio_stream::iter(vec![req]);
        let mut r = Request::new(stream);
        r.metadata_mut()
            .insert("containerd-namespace", NS.parse().unwrap());
        self.rt.block_on(async {
            let mut replies = content.write(r).await.unwrap().into_inner();
            while let Some(reply) = replies.message().await.unwrap() {
                if reply.action == i32::from(WriteAction::Commit) {
                    assert_eq!(reply.digest, digest);
                }
            }
        });
    }

    /// Builds the busybox image from `/bin/busybox` (plus `files`), writes its blobs into the
    /// content store, creates the image record `name` and unpacks its layer into an overlayfs
    /// snapshot named by its chain id.
    pub(crate) fn load_busybox(&mut self, name: &str, files: &[(&str, &[u8])]) -> LoadedImage {
        let busybox = fs::read("/bin/busybox").unwrap();
        let layer = oci::busybox_layer(&busybox, files);
        let layer_desc = descriptor(oci::LAYER_MEDIA_TYPE, &layer);
        // Uncompressed layer: its digest is also its diff id and (one layer) the chain id.
        let chain_id = layer_desc.digest.clone();
        let config = oci::config_json(&chain_id);
        let config_desc = descriptor(oci::CONFIG_MEDIA_TYPE, config.as_bytes());
        let manifest = oci::manifest_json(&config_desc, &layer_desc);
        let manifest_desc = descriptor(oci::MANIFEST_MEDIA_TYPE, manifest.as_bytes());

        let label = |k: &str, v: &str| (k.to_string(), v.to_string());
        self.write_blob(
            &layer,
            HashMap::from([label("containerd.io/uncompressed", &chain_id)]),
        );
        self.write_blob(
            config.as_bytes(),
            HashMap::from([label("containerd.io/gc.ref.snapshot.overlayfs", &chain_id)]),
        );
        self.write_blob(
            manifest.as_bytes(),
            HashMap::from([
                label("containerd.io/gc.ref.content.config", &config_desc.digest),
                label("containerd.io/gc.ref.content.l.0", &layer_desc.digest),
            ]),
        );
        let mut images = ImagesClient::new(self.channel.clone());
        self.rt
            .block_on(images.create(ns(CreateImageRequest {
                image: Some(Image {
                    name: name.to_string(),
                    target: Some(manifest_desc.clone()),
                    ..Default::default()
                }),
                source_date_epoch: None,
            })))
            .unwrap();

        // Unpack: an active snapshot, the layer applied into its mounts, committed.
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let key = format!("extract-{}", std::process::id());
        let mounts = self
            .rt
            .block_on(snapshots.prepare(ns(PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: key.clone(),
                parent: String::new(),
                labels: HashMap::new(),
            })))
            .unwrap()
            .into_inner()
            .mounts;
        let mut diff = DiffClient::new(self.channel.clone());
        let applied = self
            .rt
            .block_on(diff.apply(ns(ApplyRequest {
                diff: Some(layer_desc.clone()),
                mounts,
                payloads: HashMap::new(),
                sync_fs: false,
            })))
            .unwrap()
            .into_inner()
            .applied
            .unwrap();
        assert_eq!(applied.digest, chain_id, "diff id of the applied layer");
        self.rt
            .block_on(snapshots.commit(ns(CommitSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                name: chain_id.clone(),
                key,
                labels: HashMap::from([label("containerd.io/gc.root", "armor-test")]),
            })))
            .unwrap();
        let img = LoadedImage {
            name: name.to_string(),
            blobs: vec![manifest_desc.digest, config_desc.digest, layer_desc.digest],
            chain_id,
        };
        self.image = Some(img.clone());
        img
    }

    /// Creates container `spec` from the loaded image (a fresh overlayfs snapshot on the image's
    /// layer), and creates and starts its task. Returns the task's pid.
    /// Creates and starts the task of `spec`; returns its pid.
    pub(crate) fn run(&mut self, spec: &Spec) -> u32 {
        let pid = self.create(spec);
        self.start(spec);
        pid
    }

    /// Creates the container and its task (runc `create`: the entrypoint does not run yet);
    /// returns the task's pid.
    pub(crate) fn create(&mut self, spec: &Spec) -> u32 {
        self.try_create(spec)
            .unwrap_or_else(|e| panic!("Tasks.Create {}: {e}", spec.id))
    }

    /// Like [`Driver::create`]; a task that containerd fails to create is the error's message
    /// (the container stays, for cleanup).
    pub(crate) fn try_create(&mut self, spec: &Spec) -> Result<u32, String> {
        let image = self.image.clone().expect("load_busybox first");
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let mounts: Vec<Mount> = self
            .rt
            .block_on(snapshots.prepare(ns(PrepareSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key: spec.id.clone(),
                parent: image.chain_id.clone(),
                labels: HashMap::new(),
            })))
            .unwrap()
            .into_inner()
            .mounts;
        // Kept for cleanup from here on, whatever fails next.
        self.containers.push(spec.clone());
        let hostname = spec
            .labels
            .iter()
            .find(|(k, _)| k == "io.kubernetes.pod.name")
            .map_or("armor", |(_, v)| v.as_str());
        let oci_spec = oci::runtime_spec(
            &spec.args,
            &spec.cgroups_path(),
            hostname,
            spec.hooks.as_ref(),
        );
        let mut container = Container {
            id: spec.id.clone(),
            labels: spec.labels.iter().cloned().collect(),
            image: image.name.clone(),
            runtime: Some(ContainerRuntime {
                name: "io.containerd.runc.v2".to_string(),
                options: None,
            }),
            spec: Some(Default::default()),
            snapshotter: SNAPSHOTTER.to_string(),
            snapshot_key: spec.id.clone(),
            ..Default::default()
        };
        if let Some(any) = container.spec.as_mut() {
            any.type_url = SPEC_TYPE.to_string();
            any.value = oci_spec.into_bytes();
        }
        let mut containers = ContainersClient::new(self.channel.clone());
        self.rt
            .block_on(containers.create(ns(CreateContainerRequest {
                container: Some(container),
            })))
            .unwrap();
        let mut tasks = TasksClient::new(self.channel.clone());
        let created = self
            .rt
            .block_on(tasks.create(ns(CreateTaskRequest {
                container_id: spec.id.clone(),
                rootfs: mounts,
                ..Default::default()
            })))
            .map_err(|status| status.message().to_string())?
            .into_inner();
        Ok(created.pid)
    }

    /// Starts the created task of `spec` (its entrypoint runs).
    pub(crate) fn start(&mut self, spec: &Spec) {
        let mut tasks = TasksClient::new(self.channel.clone());
        self.rt
            .block_on(tasks.start(ns(StartRequest {
                container_id: spec.id.clone(),
                exec_id: String::new(),
            })))
            .unwrap();
    }

    /// Runs `args` inside container `id` (Tasks.Exec) and waits for it; returns its exit status
    /// and its output (stdout then stderr).
    pub(crate) fn exec(&self, id: &str, exec_id: &str, args: &[&str]) -> (u32, String) {
        let mut tasks = TasksClient::new(self.channel.clone());
        let out = self.io_dir.join(format!("{id}-{exec_id}.out"));
        let err = self.io_dir.join(format!("{id}-{exec_id}.err"));
        let mut req = ExecProcessRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            stdout: format!("file://{}", out.display()),
            stderr: format!("file://{}", err.display()),
            spec: Some(Default::default()),
            ..Default::default()
        };
        if let Some(any) = req.spec.as_mut() {
            any.type_url = PROCESS_TYPE.to_string();
            any.value = oci::process_json(args).into_bytes();
        }
        let status = self.rt.block_on(async {
            tasks.exec(ns(req)).await.unwrap();
            // An exited process keeps its status until it is deleted: Wait after Start is safe.
            tasks
                .start(ns(StartRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.to_string(),
                }))
                .await
                .unwrap();
            let waited = tasks
                .wait(ns(WaitRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.to_string(),
                }))
                .await;
            let status = waited.unwrap().into_inner().exit_status;
            tasks
                .delete_process(ns(DeleteProcessRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.to_string(),
                }))
                .await
                .unwrap();
            status
        });
        let text = |p: &Path| fs::read_to_string(p).unwrap_or_default();
        (status, text(&out) + &text(&err))
    }

    /// Waits for container `id`'s task to exit (at most `limit`); returns its exit status, or
    /// `None` when it is still running.
    pub(crate) fn wait(&self, id: &str, limit: Duration) -> Option<u32> {
        let mut tasks = TasksClient::new(self.channel.clone());
        self.rt.block_on(async {
            let waited = tokio::time::timeout(
                limit,
                tasks.wait(ns(WaitRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                })),
            )
            .await
            .ok()?;
            Some(waited.unwrap().into_inner().exit_status)
        })
    }

    /// SIGKILLs container `id`'s task and waits for it to exit (the task stays until deleted).
    pub(crate) fn kill(&self, id: &str) {
        let mut tasks = TasksClient::new(self.channel.clone());
        self.rt.block_on(async {
            tasks
                .kill(ns(KillRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                    signal: 9,
                    all: true,
                }))
                .await
                .unwrap();
            // The exited task keeps its status until it is deleted.
            let waited = tasks
                .wait(ns(WaitRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                }))
                .await;
            waited.unwrap();
        });
    }

    /// Removes every task, container, snapshot, the image and its blobs, then the containers'
    /// cgroup directories deepest first in every hierarchy. Returns what could not be removed.
    pub(crate) fn cleanup(&mut self) -> Vec<String> {
        let mut left = Vec::new();
        let mut tasks = TasksClient::new(self.channel.clone());
        let mut containers = ContainersClient::new(self.channel.clone());
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        for c in std::mem::take(&mut self.containers).into_iter().rev() {
            let id = c.id.clone();
            self.rt.block_on(async {
                let _ = tasks
                    .kill(ns(KillRequest {
                        container_id: id.clone(),
                        exec_id: String::new(),
                        signal: 9,
                        all: true,
                    }))
                    .await;
                let _ = tokio::time::timeout(
                    Duration::from_secs(10),
                    tasks.clone().wait(ns(WaitRequest {
                        container_id: id.clone(),
                        exec_id: String::new(),
                    })),
                )
                .await;
                // The snapshot goes before the container: once the container is deleted,
                // nothing references the snapshot and containerd's garbage collector may
                // drop it first, and its removal by the collector leaves the link in the
                // parent's children ("cannot remove snapshot with child" for the image's
                // snapshot below, for good).
                let steps = [
                    tasks
                        .delete(ns(DeleteTaskRequest {
                            container_id: id.clone(),
                        }))
                        .await
                        .map(|_| ()),
                    snapshots
                        .remove(ns(RemoveSnapshotRequest {
                            snapshotter: SNAPSHOTTER.to_string(),
                            key: id.clone(),
                        }))
                        .await
                        .map(|_| ()),
                    containers
                        .delete(ns(DeleteContainerRequest { id: id.clone() }))
                        .await
                        .map(|_| ()),
                ];
                for (what, r) in ["task", "snapshot", "container"].iter().zip(steps) {
                    if let Err(s) = r
                        && s.code() != containerd_client::tonic::Code::NotFound
                    {
                        left.push(format!("{what} {id}: {s}"));
                    }
                }
            });
            left.extend(remove_cgroup(&c));
        }
        if let Some(img) = self.image.take() {
            let mut images = ImagesClient::new(self.channel.clone());
            let mut content = ContentClient::new(self.channel.clone());
            self.rt.block_on(async {
                // The containers' snapshots were removed above (before their containers, see
                // there). A child link that outlives them makes this fail with "cannot remove
                // snapshot with child"; a few seconds of retries cover one that is merely late.
                let mut tries = 0;
                loop {
                    let r = snapshots
                        .remove(ns(RemoveSnapshotRequest {
                            snapshotter: SNAPSHOTTER.to_string(),
                            key: img.chain_id.clone(),
                        }))
                        .await;
                    match r {
                        Err(s)
                            if s.code() == containerd_client::tonic::Code::FailedPrecondition
                                && tries < 50 =>
                        {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(s) => {
                            left.push(format!("snapshot {}: {s}", img.chain_id));
                            break;
                        }
                        Ok(_) => break,
                    }
                }
                if let Err(s) = images
                    .delete(ns(DeleteImageRequest {
                        name: img.name.clone(),
                        sync: true,
                        target: None,
                    }))
                    .await
                {
                    left.push(format!("image {}: {s}", img.name));
                }
                for digest in &img.blobs {
                    // A synchronous image delete may already have collected them.
                    if let Err(s) = content
                        .delete(ns(DeleteContentRequest {
                            digest: digest.clone(),
                        }))
                        .await
                        && s.code() != containerd_client::tonic::Code::NotFound
                    {
                        left.push(format!("blob {digest}: {s}"));
                    }
                }
            });
        }
        left
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let left = self.cleanup();
        if !left.is_empty() {
            eprintln!("cleanup left: {left:?}");
        }
    }
}

/// Every cgroup hierarchy's mount point (v1 controllers and cgroup2).
pub(crate) fn cgroup_mounts() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && (f[2] == "cgroup" || f[2] == "cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// Removes the container's cgroup and its empty parents (pod, QoS class, kubepods), deepest
/// first, in every hierarchy. A parent still holding other cgroups stays (not ours to remove).
/// Returns the container's own directories that could not be removed.
pub(crate) fn remove_cgroup(c: &Spec) -> Vec<String> {
    let mut left = Vec::new();
    let rel = c.cgroups_path();
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for mount in cgroup_mounts() {
        for depth in (1..=parts.len()).rev() {
            let dir = mount.join(parts[..depth].join("/"));
            if !dir.exists() {
                continue;
            }
            let mut removed = false;
            for _ in 0..100 {
                if fs::remove_dir(&dir).is_ok() {
                    removed = true;
                    break;
                }
                if depth < parts.len() - 1 {
                    break; // a shared parent: one try
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if !removed && depth >= parts.len() - 1 {
                left.push(format!("cgroup {}", dir.display()));
            }
        }
    }
    left
}
