//! Workload identity: what a rule set is attached to.
//!
//! The kernel only knows cgroups and namespaces; the identity layer (armor-runtime, armor-k8s)
//! turns those into these types. The engine needs no more than what is here.

use std::collections::BTreeMap;
use std::fmt;

/// A container: a Kubernetes container in a pod, or a plain container at the edge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct Container {
    /// The namespace (Kubernetes namespace, or the runtime's `container_namespace`).
    pub namespace: String,
    /// Labels (the pod's labels in Kubernetes).
    pub labels: BTreeMap<String, String>,
    /// The container's name inside its pod.
    pub name: String,
    /// The pod's name, when there is one.
    pub pod: Option<String>,
    /// Pod annotations (visibility, policy mode).
    pub annotations: BTreeMap<String, String>,
    /// The workload that owns the pod (a Deployment, a DaemonSet, …), when the orchestrator
    /// says; alerts carry it as `Owner`. Policies do not select by it.
    pub owner: Option<Owner>,
}

/// The workload that owns a pod, as KubeArmor's records carry it (`Owner`: `Ref`, `Name`,
/// `Namespace`): the top of the pod's owner chain as far as the pod shows it (`Deployment` for a
/// ReplicaSet named `<deployment>-<hash>`; `Pod` for a bare pod).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct Owner {
    /// Its kind: `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `CronJob`, `ReplicaSet`,
    /// `Pod`, ….
    #[serde(rename = "Ref", default)]
    pub kind: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its namespace.
    #[serde(default)]
    pub namespace: String,
}

impl Owner {
    /// The `kind` named `name` in `namespace`.
    pub fn new(
        kind: impl Into<String>,
        name: impl Into<String>,
        namespace: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
            namespace: namespace.into(),
        }
    }
}

impl Container {
    /// A container named `name` in `namespace` with no labels.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            ..Self::default()
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the pod name.
    #[must_use]
    pub fn pod(mut self, pod: impl Into<String>) -> Self {
        self.pod = Some(pod.into());
        self
    }
}

/// A host (node): processes outside every known workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct Host {
    /// The node name.
    pub node_name: String,
    /// The node labels.
    pub labels: BTreeMap<String, String>,
    /// Node annotations (visibility).
    pub annotations: BTreeMap<String, String>,
}

impl Host {
    /// A host called `node_name` with no labels.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            ..Self::default()
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

/// What a rule set applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Workload {
    /// A container: KubeArmorPolicy and KubeArmorClusterPolicy apply.
    Container(Container),
    /// A host: KubeArmorHostPolicy applies.
    Host(Host),
}

impl Workload {
    /// Whether this is a host.
    pub fn is_host(&self) -> bool {
        matches!(self, Self::Host(_))
    }
}

impl From<Container> for Workload {
    fn from(c: Container) -> Self {
        Self::Container(c)
    }
}

impl From<Host> for Workload {
    fn from(h: Host) -> Self {
        Self::Host(h)
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Container(c) => match &c.pod {
                Some(p) => write!(f, "container {}/{}/{}", c.namespace, p, c.name),
                None => write!(f, "container {}/{}", c.namespace, c.name),
            },
            Self::Host(h) => write!(f, "host {}", h.node_name),
        }
    }
}

/// How an enforcer addresses a workload in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct WorkloadKey {
    /// A stable, human-readable name (`ns/pod/container`, `host`, `nginx.service`).
    pub name: String,
    /// The cgroup v2 id (inode of the cgroup directory), when the workload has its own cgroup.
    pub cgroup_id: Option<u64>,
}

impl WorkloadKey {
    /// A key named `name`, without a cgroup.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            cgroup_id: None,
        }
    }

    /// The same key with a cgroup id.
    #[must_use]
    pub fn with_cgroup(mut self, id: u64) -> Self {
        self.cgroup_id = Some(id);
        self
    }
}

impl fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cgroup_id {
            Some(id) => write!(f, "{} (cgroup {id})", self.name),
            None => f.write_str(&self.name),
        }
    }
}
