//! A containerd client over its gRPC API (no `ctr`): containers with their labels and image,
//! their task's pid, enumeration at start and the lifecycle event stream.
//!
//! Lifecycle: containerd publishes `/containers/create` when a container is defined (its spec and
//! labels exist, no process yet), `/tasks/create` once the runtime created the task (runc
//! `create` done: the cgroup exists, the entrypoint has not run) and `/tasks/start` when the
//! entrypoint starts; [`ContainerEvent::Defined`], [`ContainerEvent::Created`] and
//! [`ContainerEvent::Started`] carry them.
//! Events are published asynchronously: the client that created the task may start it before
//! a subscriber has seen the create (see [`crate::Runtime::container_event`]).
//!
//! The client is async (tonic); [`Containerd`] wraps a private single-threaded tokio runtime so
//! the synchronous agent loop can call it, and [`Containerd::watch`] runs the event stream on a
//! thread of its own, delivering [`ContainerEvent`]s through a channel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use armor_core::enforcer::LabelKind;
use prost::Message as _;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::error::{Error, Result};
use api::containerd::events::{ContainerCreate, TaskCreate, TaskDelete, TaskExit, TaskStart};
use api::containerd::services::containers::v1::containers_client::ContainersClient;
use api::containerd::services::containers::v1::{GetContainerRequest, ListContainersRequest};
use api::containerd::services::events::v1::SubscribeRequest;
use api::containerd::services::events::v1::events_client::EventsClient;
use api::containerd::services::namespaces::v1::ListNamespacesRequest;
use api::containerd::services::namespaces::v1::namespaces_client::NamespacesClient;
use api::containerd::services::tasks::v1::ListTasksRequest;
use api::containerd::services::tasks::v1::tasks_client::TasksClient;

/// The client and messages generated from armor's own `proto/containerd/*.proto` (the part of
/// containerd's API armor calls, wire-compatible with containerd's), nested like their
/// packages so the generated cross-package paths resolve.
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::exhaustive_structs,
    clippy::exhaustive_enums,
    clippy::allow_attributes_without_reason,
    reason = "generated code"
)]
mod api {
    pub(crate) mod containerd {
        pub(crate) mod events {
            include!(concat!(env!("OUT_DIR"), "/containerd.events.rs"));
        }
        pub(crate) mod types {
            include!(concat!(env!("OUT_DIR"), "/containerd.types.rs"));
        }
        pub(crate) mod v1 {
            pub(crate) mod types {
                include!(concat!(env!("OUT_DIR"), "/containerd.v1.types.rs"));
            }
        }
        pub(crate) mod services {
            pub(crate) mod containers {
                pub(crate) mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/containerd.services.containers.v1.rs"
                    ));
                }
            }
            pub(crate) mod events {
                pub(crate) mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/containerd.services.events.v1.rs"
                    ));
                }
            }
            pub(crate) mod namespaces {
                pub(crate) mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/containerd.services.namespaces.v1.rs"
                    ));
                }
            }
            pub(crate) mod tasks {
                pub(crate) mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/containerd.services.tasks.v1.rs"));
                }
            }
        }
    }
}

/// A channel to the gRPC server on the unix socket `socket` (the URI is a placeholder: every
/// connection is the socket).
async fn unix_channel(socket: PathBuf) -> std::result::Result<Channel, tonic::transport::Error> {
    Endpoint::from_static("http://[::]")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}

/// The label naming the pod (Kubernetes).
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// The label naming the pod's namespace (Kubernetes).
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// The label naming the container in its pod (Kubernetes).
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
/// The label the CRI puts on sandbox (pause) containers.
pub const CRI_KIND_LABEL: &str = "io.cri-containerd.kind";

/// A running (or created) container as containerd reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ContainerInfo {
    /// The container id.
    pub id: String,
    /// The containerd namespace (`k8s.io`, `default`, `moby`).
    pub containerd_namespace: String,
    /// The runtime labels.
    pub labels: BTreeMap<String, String>,
    /// The image reference.
    pub image: String,
    /// The task's pid, when the task runs (or was created).
    pub pid: Option<u32>,
    /// The security labels the container's OCI spec names, by kind
    /// ([`LabelKind::oci_field`]: `process.apparmorProfile`, `process.selinuxLabel`).
    pub security_labels: BTreeMap<LabelKind, String>,
}

impl ContainerInfo {
    /// The Kubernetes namespace: `io.kubernetes.pod.namespace`, else `kubearmor.io/namespace`,
    /// else `container_namespace`.
    pub fn namespace(&self) -> String {
        self.labels
            .get(POD_NAMESPACE_LABEL)
            .or_else(|| self.labels.get("kubearmor.io/namespace"))
            .cloned()
            .unwrap_or_else(|| "container_namespace".to_string())
    }

    /// The container name: `io.kubernetes.container.name`, else the id.
    pub fn name(&self) -> String {
        self.labels
            .get(CONTAINER_NAME_LABEL)
            .cloned()
            .unwrap_or_else(|| self.id.clone())
    }

    /// The pod name (`io.kubernetes.pod.name`).
    pub fn pod(&self) -> Option<String> {
        self.labels.get(POD_NAME_LABEL).cloned()
    }

    /// The label of `kind` the container's spec names (its AppArmor profile).
    pub fn security_label(&self, kind: LabelKind) -> Option<&str> {
        self.security_labels.get(&kind).map(String::as_str)
    }

    /// Whether this is a CRI sandbox (pause) container, which is not enforced.
    pub fn is_sandbox(&self) -> bool {
        self.labels.get(CRI_KIND_LABEL).map(String::as_str) == Some("sandbox")
    }
}

/// The security labels an OCI runtime spec (JSON) names, by kind: the non-empty string at each
/// kind's [`LabelKind::oci_field`] (`process.apparmorProfile`).
pub fn spec_security_labels(spec: &[u8]) -> BTreeMap<LabelKind, String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(spec) else {
        return BTreeMap::new();
    };
    LabelKind::ALL
        .into_iter()
        .filter_map(|kind| {
            let mut at = &v;
            for part in kind.oci_field().split('.') {
                at = at.get(part)?;
            }
            let label = at.as_str().filter(|l| !l.is_empty())?;
            Some((kind, label.to_string()))
        })
        .collect()
}

/// A lifecycle change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContainerEvent {
    /// A container was defined (spec and labels, no task yet; `pid` is `None`). Enforcers that
    /// attach by name (AppArmor) load its profile now, so the task can be created under it.
    Defined(ContainerInfo),
    /// A task was created (runc `create` done: its cgroup exists, its entrypoint has not run):
    /// the container with its pid.
    Created(ContainerInfo),
    /// A task started: the container with its pid.
    Started(ContainerInfo),
    /// A task exited or was deleted.
    Stopped {
        /// The containerd namespace.
        containerd_namespace: String,
        /// The container id.
        id: String,
    },
    /// The event stream ended (containerd stopped or the connection broke).
    StreamEnded(String),
}

/// A connection to containerd.
pub struct Containerd {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    socket: PathBuf,
}

impl std::fmt::Debug for Containerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containerd")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

fn status(call: &'static str) -> impl Fn(Status) -> Error {
    move |s| Error::Containerd {
        call,
        message: format!("{}: {}", s.code(), s.message()),
    }
}

fn with_ns<T>(msg: T, ns: &str) -> Result<Request<T>> {
    let mut req = Request::new(msg);
    let value = ns.parse().map_err(|_| Error::Containerd {
        call: "namespace header",
        message: format!("invalid namespace `{ns}`"),
    })?;
    req.metadata_mut().insert("containerd-namespace", value);
    Ok(req)
}

/// containerd's task status `STOPPED`.
const TASK_STOPPED: u32 = 3;

/// How long one call to containerd (a connect, a request, the subscription's start) may take
/// before it fails: the agent's loop never waits on containerd longer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `fut` on `rt`, failing `call` after [`CALL_TIMEOUT`].
fn deadline<T, E: std::fmt::Display>(
    rt: &tokio::runtime::Runtime,
    call: &'static str,
    fut: impl std::future::Future<Output = std::result::Result<T, E>>,
) -> Result<T> {
    // The timer is made inside the runtime (it needs its clock).
    match rt.block_on(async { tokio::time::timeout(CALL_TIMEOUT, fut).await }) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::Containerd {
            call,
            message: e.to_string(),
        }),
        Err(_) => Err(Error::Containerd {
            call,
            message: format!("no answer within {} s", CALL_TIMEOUT.as_secs()),
        }),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("create tokio runtime", "", e))
}

impl Containerd {
    /// Connects to the containerd socket at `socket`.
    pub fn connect(socket: &Path) -> Result<Self> {
        let rt = runtime()?;
        let channel =
            deadline(&rt, "connect", unix_channel(socket.to_path_buf())).map_err(|e| match e {
                Error::Containerd { call, message } => Error::Containerd {
                    call,
                    message: format!("{}: {message}", socket.display()),
                },
                other => other,
            })?;
        Ok(Self {
            rt,
            channel,
            socket: socket.to_path_buf(),
        })
    }

    /// The containerd namespaces.
    pub fn namespaces(&self) -> Result<Vec<String>> {
        let mut client = NamespacesClient::new(self.channel.clone());
        let resp = deadline(
            &self.rt,
            "Namespaces.List",
            client.list(ListNamespacesRequest::default()),
        )?;
        Ok(resp
            .into_inner()
            .namespaces
            .into_iter()
            .map(|n| n.name)
            .collect())
    }

    /// The pids of the tasks of namespace `ns` that have not stopped, by container id.
    fn task_pids(&self, ns: &str) -> Result<BTreeMap<String, u32>> {
        let mut tasks = TasksClient::new(self.channel.clone());
        let resp = deadline(
            &self.rt,
            "Tasks.List",
            tasks.list(with_ns(ListTasksRequest::default(), ns)?),
        )?;
        Ok(resp
            .into_inner()
            .tasks
            .into_iter()
            // A stopped task keeps its pid in the reply: it runs nothing any more.
            .filter(|t| t.pid != 0 && t.status != TASK_STOPPED)
            .map(|t| (t.id, t.pid))
            .collect())
    }

    /// Every container of namespace `ns`, with its task pid when it runs.
    pub fn list(&self, ns: &str) -> Result<Vec<ContainerInfo>> {
        let mut client = ContainersClient::new(self.channel.clone());
        let resp = deadline(
            &self.rt,
            "Containers.List",
            client.list(with_ns(ListContainersRequest::default(), ns)?),
        )?;
        let pids = self.task_pids(ns)?;
        Ok(resp
            .into_inner()
            .containers
            .into_iter()
            .map(|c| ContainerInfo {
                pid: pids.get(&c.id).copied(),
                security_labels: c
                    .spec
                    .as_ref()
                    .map(|s| spec_security_labels(&s.value))
                    .unwrap_or_default(),
                id: c.id,
                containerd_namespace: ns.to_string(),
                labels: c.labels.into_iter().collect(),
                image: c.image,
            })
            .collect())
    }

    /// The ids of the containers whose task has stopped (and is not deleted yet), over every
    /// namespace: what ran and runs no more. A container being created has no task listed yet
    /// and is not among them.
    pub fn stopped_tasks(&self) -> Result<std::collections::BTreeSet<String>> {
        let mut out = std::collections::BTreeSet::new();
        for ns in self.namespaces()? {
            let mut tasks = TasksClient::new(self.channel.clone());
            let resp = deadline(
                &self.rt,
                "Tasks.List",
                tasks.list(with_ns(ListTasksRequest::default(), &ns)?),
            )?;
            out.extend(
                resp.into_inner()
                    .tasks
                    .into_iter()
                    .filter(|t| t.status == TASK_STOPPED)
                    .map(|t| t.id),
            );
        }
        Ok(out)
    }

    /// Every container of every namespace.
    pub fn list_all(&self) -> Result<Vec<ContainerInfo>> {
        let mut all = Vec::new();
        for ns in self.namespaces()? {
            all.extend(self.list(&ns)?);
        }
        Ok(all)
    }

    /// One container.
    pub fn get(&self, ns: &str, id: &str, pid: Option<u32>) -> Result<ContainerInfo> {
        let mut client = ContainersClient::new(self.channel.clone());
        let resp = deadline(
            &self.rt,
            "Containers.Get",
            client.get(with_ns(GetContainerRequest { id: id.to_string() }, ns)?),
        )?;
        let c = resp.into_inner().container.ok_or(Error::Containerd {
            call: "Containers.Get",
            message: format!("no container in the reply for `{id}`"),
        })?;
        Ok(ContainerInfo {
            security_labels: c
                .spec
                .as_ref()
                .map(|s| spec_security_labels(&s.value))
                .unwrap_or_default(),
            id: c.id,
            containerd_namespace: ns.to_string(),
            labels: c.labels.into_iter().collect(),
            image: c.image,
            pid,
        })
    }

    /// Subscribes to container and task events on a thread of its own. A `/containers/create`,
    /// `/tasks/create` or `/tasks/start` is resolved to the full container (labels, image,
    /// security labels) before it is sent. The thread ends when the receiver is dropped or the
    /// stream ends (after sending [`ContainerEvent::StreamEnded`]; a connection that fails
    /// does so within [`CALL_TIMEOUT`]).
    ///
    /// containerd answers a subscription with its first event, so nothing tells when it is in
    /// place: a list made right after this returns can miss a container created in between,
    /// which a second list a moment later finds (what the agent does).
    pub fn watch(&self) -> Result<mpsc::Receiver<ContainerEvent>> {
        let (tx, rx) = mpsc::channel();
        let socket = self.socket.clone();
        std::thread::Builder::new()
            .name("armor-containerd-events".into())
            .spawn(move || {
                let reason = match watch_loop(&socket, &tx) {
                    Ok(()) => "event stream closed".to_string(),
                    Err(e) => e.to_string(),
                };
                let _ignored = tx.send(ContainerEvent::StreamEnded(reason));
            })
            .map_err(|e| Error::io("spawn", "containerd event thread", e))?;
        Ok(rx)
    }
}

fn watch_loop(socket: &Path, tx: &mpsc::Sender<ContainerEvent>) -> Result<()> {
    let client = Containerd::connect(socket)?;
    let mut events = EventsClient::new(client.channel.clone());
    let req = SubscribeRequest {
        filters: vec![
            "topic==\"/containers/create\"".to_string(),
            "topic==\"/tasks/create\"".to_string(),
            "topic==\"/tasks/start\"".to_string(),
            "topic==\"/tasks/exit\"".to_string(),
            "topic==\"/tasks/delete\"".to_string(),
        ],
    };
    let mut stream = client
        .rt
        .block_on(events.subscribe(req))
        .map_err(status("Events.Subscribe"))?
        .into_inner();
    loop {
        let next = client.rt.block_on(stream.message());
        let Some(envelope) = next.map_err(status("Events.Subscribe (stream)"))? else {
            return Ok(());
        };
        let Some(any) = envelope.event else {
            continue;
        };
        let ns = envelope.namespace;
        let event = match envelope.topic.as_str() {
            "/containers/create" => {
                let Ok(create) = ContainerCreate::decode(any.value.as_slice()) else {
                    continue;
                };
                match client.get(&ns, &create.id, None) {
                    Ok(info) => ContainerEvent::Defined(info),
                    Err(_) => continue,
                }
            }
            "/tasks/create" => {
                let Ok(create) = TaskCreate::decode(any.value.as_slice()) else {
                    continue;
                };
                match client.get(&ns, &create.container_id, Some(create.pid)) {
                    Ok(info) => ContainerEvent::Created(info),
                    Err(_) => continue,
                }
            }
            "/tasks/start" => {
                let Ok(start) = TaskStart::decode(any.value.as_slice()) else {
                    continue;
                };
                match client.get(&ns, &start.container_id, Some(start.pid)) {
                    Ok(info) => ContainerEvent::Started(info),
                    Err(_) => continue,
                }
            }
            "/tasks/exit" => {
                let Ok(exit) = TaskExit::decode(any.value.as_slice()) else {
                    continue;
                };
                // An exec'd process exiting is not the container stopping.
                if exit.id != exit.container_id && !exit.id.is_empty() {
                    continue;
                }
                ContainerEvent::Stopped {
                    containerd_namespace: ns,
                    id: exit.container_id,
                }
            }
            "/tasks/delete" => {
                let Ok(del) = TaskDelete::decode(any.value.as_slice()) else {
                    continue;
                };
                ContainerEvent::Stopped {
                    containerd_namespace: ns,
                    id: del.container_id,
                }
            }
            _ => continue,
        };
        if tx.send(event).is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    /// Every label kind is read from its own spec field; empty and non-string values name none.
    #[test]
    fn spec_labels_are_read_per_kind() {
        let spec = br#"{"process": {"apparmorProfile": "armor.shop_web", "selinuxLabel": "system_u:system_r:web_t:s0"}}"#;
        let labels = spec_security_labels(spec);
        assert_eq!(
            labels.get(&LabelKind::AppArmorProfile).map(String::as_str),
            Some("armor.shop_web")
        );
        assert_eq!(
            labels.get(&LabelKind::SelinuxContext).map(String::as_str),
            Some("system_u:system_r:web_t:s0")
        );
        let none =
            spec_security_labels(br#"{"process": {"apparmorProfile": "", "selinuxLabel": 7}}"#);
        assert!(none.is_empty(), "{none:?}");
        assert!(spec_security_labels(b"not json").is_empty());
    }

    /// Our messages decode what containerd's encode: a `TaskCreate` with fields we do not
    /// describe (rootfs mounts, io, checkpoint) still yields its container id and pid.
    #[test]
    fn unknown_fields_of_containerd_messages_are_skipped() {
        use prost::Message as _;
        // container_id = "c1" (1), bundle = "/b" (2), rootfs (3, a message), checkpoint = "x"
        // (5), pid = 4242 (6).
        let mut wire = vec![0x0a, 2, b'c', b'1', 0x12, 2, b'/', b'b'];
        wire.extend([0x1a, 4, 0x0a, 2, b'o', b'v']);
        wire.extend([0x2a, 1, b'x']);
        wire.extend([0x30, 0x92, 0x21]);
        let t = TaskCreate::decode(wire.as_slice()).unwrap();
        assert_eq!((t.container_id.as_str(), t.pid), ("c1", 4242));
    }
}
