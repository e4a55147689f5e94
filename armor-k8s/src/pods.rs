//! The pods of this node as a pure reducer over the pod watch ([`PodIndex::apply`]): every
//! container the API reports a runtime id for — regular, init and ephemeral alike, in
//! host-network and host-PID pods too — with the identity its alerts carry (namespace, pod,
//! container name, image, the pod's labels and annotations, its owning workload, the node).
//! The effects say which containers became known or changed ([`PodEffect::Known`]) and which
//! are gone ([`PodEffect::Gone`]); the agent joins them with the runtime's containers by id.
//!
//! A container is known by id once the pod's status carries it (`containerID`), which the
//! kubelet writes after the runtime created it. Its pod's labels are known earlier, from the
//! spec, by pod uid and container name ([`PodEffect::PodLabels`]): the runtime's own labels of a
//! CRI container carry both, so the labels can select its rules from its first instruction.
//!
//! ```
//! use armor_k8s::pods::{PodEffect, PodIndex};
//! use k8s_openapi::api::core::v1::Pod;
//! use kube::runtime::watcher::Event;
//!
//! let pod: Pod = serde_json::from_value(serde_json::json!({
//!     "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "labels": {"app": "web"}},
//!     "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "nginx:1"}]},
//!     "status": {"containerStatuses": [{"name": "web", "image": "nginx:1", "imageID": "",
//!         "ready": true, "restartCount": 0, "containerID": "containerd://abc"}]}
//! })).unwrap();
//! let mut index = PodIndex::new();
//! let effects = index.apply(Event::Apply(pod));
//! // The pod's labels by pod uid and container name, then the container by its runtime id.
//! assert!(matches!(&effects[0], PodEffect::PodLabels(p) if p.containers == ["web"]));
//! assert!(matches!(&effects[1], PodEffect::Known(c) if c.container_id == "abc"
//!     && c.labels["app"] == "web" && c.container == "web"));
//! ```

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;
use kube::runtime::watcher::Event;

/// Which list of the pod spec a container comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContainerKind {
    /// `containers`.
    Regular,
    /// `initContainers` (restartable sidecars too).
    Init,
    /// `ephemeralContainers` (`kubectl debug`).
    Ephemeral,
}

pub use armor_core::Owner;

/// A container as the Kubernetes API describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContainerIdentity {
    /// The runtime's container id, without its `containerd://` prefix.
    pub container_id: String,
    /// The runtime the id belongs to (`containerd`, `cri-o`, `docker`).
    pub runtime: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's uid.
    pub pod_uid: String,
    /// The container's name.
    pub container: String,
    /// The container's image.
    pub image: String,
    /// Which list it comes from.
    pub kind: ContainerKind,
    /// The pod's labels (what `matchLabels` selects).
    pub labels: BTreeMap<String, String>,
    /// The pod's KubeArmor annotations (`kubearmor-…`).
    pub annotations: BTreeMap<String, String>,
    /// The owning workload.
    pub owner: Owner,
    /// The node the pod runs on.
    pub node: Option<String>,
    /// `hostNetwork`.
    pub host_network: bool,
    /// `hostPID`.
    pub host_pid: bool,
}

/// The identity of a pod's containers as its metadata and spec give it: known before any of
/// them exists, and carried by each container's CRI labels (`io.kubernetes.pod.uid`,
/// `io.kubernetes.container.name`), so a runtime can give a container its pod's labels from
/// the start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PodLabels {
    /// The pod's uid.
    pub pod_uid: String,
    /// The names of its containers: regular, init and ephemeral.
    pub containers: Vec<String>,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
    /// The pod's KubeArmor annotations (`kubearmor-…`).
    pub annotations: BTreeMap<String, String>,
    /// The workload owning it.
    pub owner: Owner,
}

/// The pod's annotations armor reads (KubeArmor's, `kubearmor-…`, such as
/// `kubearmor-visibility`): another annotation changing changes nothing.
fn kubearmor_annotations(pod: &Pod) -> BTreeMap<String, String> {
    pod.annotations()
        .iter()
        .filter(|(k, _)| k.starts_with("kubearmor"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The labels of `pod`'s containers from its spec (`None` for a pod without uid or spec).
pub fn labels_of(pod: &Pod) -> Option<PodLabels> {
    let spec = pod.spec.as_ref()?;
    let mut containers: Vec<String> = spec.containers.iter().map(|c| c.name.clone()).collect();
    containers.extend(
        spec.init_containers
            .iter()
            .flatten()
            .map(|c| c.name.clone()),
    );
    containers.extend(
        spec.ephemeral_containers
            .iter()
            .flatten()
            .map(|c| c.name.clone()),
    );
    Some(PodLabels {
        pod_uid: pod.uid()?,
        containers,
        labels: pod.labels().clone(),
        annotations: kubearmor_annotations(pod),
        owner: owner_of(pod),
    })
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PodEffect {
    /// A pod appeared, or its labels or containers changed: its containers' labels by pod uid
    /// and container name (before the containers exist).
    PodLabels(Box<PodLabels>),
    /// A pod is gone: forget its containers' labels.
    PodGone(Box<PodLabels>),
    /// A container is known now, or its identity changed (labels, annotations, owner).
    Known(Box<ContainerIdentity>),
    /// A container is gone (its pod was deleted, or its status names another id now).
    Gone(String),
}

/// The owning workload of `pod`: its controller reference, with a ReplicaSet named
/// `<deployment>-<pod-template-hash>` reported as that Deployment; the pod itself when it has
/// no controller.
pub fn owner_of(pod: &Pod) -> Owner {
    let namespace = pod.namespace().unwrap_or_default();
    let controller = pod
        .owner_references()
        .iter()
        .find(|r| r.controller == Some(true));
    let Some(c) = controller else {
        return Owner::new("Pod", pod.name_any(), namespace);
    };
    if c.kind == "ReplicaSet"
        && let Some(hash) = pod.labels().get("pod-template-hash")
        && let Some(deployment) = c.name.strip_suffix(&format!("-{hash}"))
    {
        return Owner::new("Deployment", deployment, namespace);
    }
    Owner::new(c.kind.clone(), c.name.clone(), namespace)
}

/// `runtime://id` split into the runtime and the bare id.
fn split_id(id: &str) -> Option<(String, String)> {
    let (runtime, bare) = id.split_once("://")?;
    (!bare.is_empty()).then(|| (runtime.to_string(), bare.to_string()))
}

/// Every container of `pod` that has a runtime id, by id.
pub fn containers_of(pod: &Pod) -> BTreeMap<String, ContainerIdentity> {
    let mut out = BTreeMap::new();
    let (Some(spec), Some(status)) = (&pod.spec, &pod.status) else {
        return out;
    };
    let owner = owner_of(pod);
    let lists: [(ContainerKind, &Option<Vec<ContainerStatus>>); 3] = [
        (ContainerKind::Regular, &status.container_statuses),
        (ContainerKind::Init, &status.init_container_statuses),
        (
            ContainerKind::Ephemeral,
            &status.ephemeral_container_statuses,
        ),
    ];
    for (kind, statuses) in lists {
        for s in statuses.iter().flatten() {
            let Some((runtime, id)) = s.container_id.as_deref().and_then(split_id) else {
                continue;
            };
            out.insert(
                id.clone(),
                ContainerIdentity {
                    container_id: id,
                    runtime,
                    namespace: pod.namespace().unwrap_or_default(),
                    pod: pod.name_any(),
                    pod_uid: pod.uid().unwrap_or_default(),
                    container: s.name.clone(),
                    image: s.image.clone(),
                    kind,
                    labels: pod.labels().clone(),
                    annotations: kubearmor_annotations(pod),
                    owner: owner.clone(),
                    node: spec.node_name.clone(),
                    host_network: spec.host_network.unwrap_or(false),
                    host_pid: spec.host_pid.unwrap_or(false),
                },
            );
        }
    }
    out
}

/// The pods of a node and their containers; a pure reducer (see the [module](self)).
#[derive(Debug, Default)]
pub struct PodIndex {
    /// The labels of each pod's containers from its spec, by pod key.
    specs: HashMap<String, PodLabels>,
    /// Containers by pod uid (a pod's key), then by container id.
    pods: HashMap<String, BTreeMap<String, ContainerIdentity>>,
    /// Container id → pod uid.
    ids: HashMap<String, String>,
    /// A re-list under way: the pods listed so far.
    relisting: Option<HashMap<String, Listed>>,
}

/// What a pod is made of: its spec's labels and its containers with runtime ids.
type Listed = (Option<PodLabels>, BTreeMap<String, ContainerIdentity>);

/// A pod's key: its uid, else `namespace/name` (objects built by hand).
fn key_of(pod: &Pod) -> String {
    pod.uid()
        .unwrap_or_else(|| format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()))
}

impl PodIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one pod watch event; returns what changed: for each pod, its spec's labels first
    /// (`PodLabels`, `PodGone`), then its containers by id (`Known`, `Gone`).
    pub fn apply(&mut self, ev: Event<Pod>) -> Vec<PodEffect> {
        match ev {
            Event::Apply(pod) => {
                let key = key_of(&pod);
                self.set(&key, (labels_of(&pod), containers_of(&pod)))
            }
            Event::Delete(pod) => self.set(&key_of(&pod), (None, BTreeMap::new())),
            Event::Init => {
                self.relisting = Some(HashMap::new());
                Vec::new()
            }
            Event::InitApply(pod) => {
                let key = key_of(&pod);
                let listed = (labels_of(&pod), containers_of(&pod));
                match self.relisting.as_mut() {
                    Some(list) => {
                        list.insert(key, listed);
                        Vec::new()
                    }
                    None => self.set(&key, listed),
                }
            }
            Event::InitDone => {
                let listed = self.relisting.take().unwrap_or_default();
                let mut effects = Vec::new();
                let mut gone: Vec<String> = self
                    .pods
                    .keys()
                    .chain(self.specs.keys())
                    .filter(|k| !listed.contains_key(*k))
                    .cloned()
                    .collect();
                gone.sort();
                gone.dedup();
                for k in gone {
                    effects.extend(self.set(&k, (None, BTreeMap::new())));
                }
                let mut listed: Vec<(String, Listed)> = listed.into_iter().collect();
                listed.sort_by(|a, b| a.0.cmp(&b.0));
                for (k, now) in listed {
                    effects.extend(self.set(&k, now));
                }
                effects
            }
        }
    }

    /// Sets pod `key` to what it is now.
    fn set(&mut self, key: &str, (labels, containers): Listed) -> Vec<PodEffect> {
        let before = self.specs.remove(key);
        let mut effects = Vec::new();
        match (before, labels) {
            (Some(b), None) => effects.push(PodEffect::PodGone(Box::new(b))),
            (b, Some(now)) => {
                if b.as_ref() != Some(&now) {
                    effects.push(PodEffect::PodLabels(Box::new(now.clone())));
                }
                self.specs.insert(key.to_string(), now);
            }
            (None, None) => {}
        }
        effects.extend(self.replace(key, containers));
        effects
    }

    /// The labels of the pod with uid `pod_uid`'s containers, as its spec names them.
    pub fn pod_labels(&self, pod_uid: &str) -> Option<&PodLabels> {
        self.specs.values().find(|p| p.pod_uid == pod_uid)
    }

    /// Sets the containers of pod `key`: what is new or changed is Known, what left is Gone.
    fn replace(&mut self, key: &str, now: BTreeMap<String, ContainerIdentity>) -> Vec<PodEffect> {
        let before = self.pods.remove(key).unwrap_or_default();
        let mut effects = Vec::new();
        for id in before.keys() {
            if !now.contains_key(id) {
                self.ids.remove(id);
                effects.push(PodEffect::Gone(id.clone()));
            }
        }
        for (id, c) in &now {
            if before.get(id) != Some(c) {
                self.ids.insert(id.clone(), key.to_string());
                effects.push(PodEffect::Known(Box::new(c.clone())));
            }
        }
        if !now.is_empty() {
            self.pods.insert(key.to_string(), now);
        }
        effects
    }

    /// The identity of the container with runtime id `id` (without prefix).
    pub fn container(&self, id: &str) -> Option<&ContainerIdentity> {
        self.pods.get(self.ids.get(id)?)?.get(id)
    }

    /// How many containers are known.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}
