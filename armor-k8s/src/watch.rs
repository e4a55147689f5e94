//! The stream plumbing around [`PolicyIndex`]: the three policy watches of a cluster, merged,
//! fed to the index, and its effects carried out — compiled policies handed to the caller,
//! statuses written on the objects. Everything that decides is the index's; this module only
//! moves events and effects.
//!
//! Watches restart on their own (kube-runtime's watcher with its default backoff): after a
//! lost connection or an API server restart they resume from the last resource version, and
//! when that version is gone (`410 Gone`) they list again; a re-list goes through the index,
//! which changes nothing for objects that did not change. While the API server is unreachable the last compiled policies stay in force.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use armor_core::CompiledPolicy;
use armor_core::crd::PolicyStatus;
use armor_core::model::PolicyKind;
use futures::{Stream, StreamExt};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};

use crate::crd::{KubeArmorClusterPolicy, KubeArmorHostPolicy, KubeArmorPolicy};
use crate::node::{NodeInput, NodeSettings, NodeState};
use crate::pods::{PodEffect, PodIndex};
use crate::policies::{NodeReport, PolicyEffect, PolicyEvent, PolicyIndex, PolicyRef};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};

/// The field manager armor's status writes carry.
pub const FIELD_MANAGER: &str = "armor";

/// Why a status write failed.
#[derive(Debug, thiserror::Error)]
#[error("status of {reference} not written")]
#[non_exhaustive]
pub struct StatusError {
    /// The object.
    pub reference: PolicyRef,
    /// What the API answered.
    #[source]
    pub source: kube::Error,
}

/// The node label saying which enforcer the node's agent chose ([`publish_enforcer`]): the
/// enforcer's name (`BPFLSM`, `AppArmor`), or `none` when the agent is audit-only.
pub const ENFORCER_LABEL: &str = "armor.dev/enforcer";

/// The node annotation with the agent's own words on its enforcer: the rules it carries and
/// those it does not, or why each enforcer it tried was refused.
pub const ENFORCER_ANNOTATION: &str = "armor.dev/enforcer-summary";

/// Publishes on `node` the enforcer its agent chose (`None`: audit-only) with its `summary`:
/// the label [`ENFORCER_LABEL`] and the annotation [`ENFORCER_ANNOTATION`], in one merge patch
/// that touches nothing else. `kubectl get nodes -L armor.dev/enforcer` then shows every
/// node's choice. Needs `patch` on nodes: the ClusterRole of `deploy/` does not grant it
/// (a node-wide write is more than most clusters give a DaemonSet), the optional
/// `deploy/optional/node-enforcer.yaml` does; refused, the choice is in the agent's log only.
pub async fn publish_enforcer(
    client: &Client,
    node: &str,
    name: Option<&str>,
    summary: &str,
) -> Result<(), kube::Error> {
    let patch = Patch::Merge(serde_json::json!({
        "metadata": {
            "labels": { ENFORCER_LABEL: name.unwrap_or("none") },
            "annotations": { ENFORCER_ANNOTATION: summary },
        }
    }));
    Api::<Node>::all(client.clone())
        .patch(node, &PatchParams::apply(FIELD_MANAGER), &patch)
        .await
        .map(drop)
}

/// The watch of one policy kind, its events kind-erased; a watch error (the API server
/// unreachable, a decode failure) is an `Err` item and the watch goes on after a backoff.
fn policy_watch(
    client: &Client,
    kind: PolicyKind,
) -> futures::stream::BoxStream<'static, Result<PolicyEvent, watcher::Error>> {
    let config = watcher::Config::default();
    match kind {
        PolicyKind::KubeArmorPolicy => watcher(Api::<KubeArmorPolicy>::all(client.clone()), config)
            .default_backoff()
            .map(move |r| r.map(|e| PolicyEvent::from_watcher(kind, e)))
            .boxed(),
        PolicyKind::KubeArmorClusterPolicy => {
            watcher(Api::<KubeArmorClusterPolicy>::all(client.clone()), config)
                .default_backoff()
                .map(move |r| r.map(|e| PolicyEvent::from_watcher(kind, e)))
                .boxed()
        }
        _ => watcher(Api::<KubeArmorHostPolicy>::all(client.clone()), config)
            .default_backoff()
            .map(move |r| r.map(|e| PolicyEvent::from_watcher(kind, e)))
            .boxed(),
    }
}

/// The three policy kinds, each watched.
const POLICY_KINDS: [PolicyKind; 3] = [
    PolicyKind::KubeArmorPolicy,
    PolicyKind::KubeArmorClusterPolicy,
    PolicyKind::KubeArmorHostPolicy,
];

/// The three policy watches of `client`'s cluster as one stream of kind-erased events; a
/// watch error (the API server unreachable, a decode failure) is an `Err` item and the watch
/// goes on after a backoff.
pub fn policy_events(
    client: &Client,
) -> impl Stream<Item = Result<PolicyEvent, watcher::Error>> + Send + 'static {
    futures::stream::select_all(POLICY_KINDS.map(|k| policy_watch(client, k)))
}

/// Writes `status` on the object (a merge patch of its `status` subresource): its `status`
/// and `message`; the nodes' entries stay.
pub async fn write_status(
    client: &Client,
    reference: &PolicyRef,
    status: &PolicyStatus,
) -> Result<(), StatusError> {
    // Both fields, `null` for an absent one: a merge patch removes only what it names.
    patch_status(
        client,
        reference,
        serde_json::json!({
            "status": { "status": status.status, "message": status.message }
        }),
    )
    .await
}

/// Writes `node`'s entry of the object's `status.nodes` (a merge patch of its `status`
/// subresource; `None` removes the entry); the other nodes' entries stay.
pub async fn write_node_status(
    client: &Client,
    reference: &PolicyRef,
    node: &str,
    message: Option<&str>,
) -> Result<(), StatusError> {
    let mut nodes = serde_json::Map::new();
    nodes.insert(node.to_string(), message.into());
    patch_status(
        client,
        reference,
        serde_json::json!({ "status": { "nodes": nodes } }),
    )
    .await
}

/// A merge patch of the object's `status` subresource.
async fn patch_status(
    client: &Client,
    reference: &PolicyRef,
    patch: serde_json::Value,
) -> Result<(), StatusError> {
    let patch = Patch::Merge(patch);
    let params = PatchParams::apply(FIELD_MANAGER);
    let name = reference.name.as_str();
    let result = match (reference.kind, &reference.namespace) {
        (PolicyKind::KubeArmorPolicy, Some(ns)) => {
            Api::<KubeArmorPolicy>::namespaced(client.clone(), ns)
                .patch_status(name, &params, &patch)
                .await
                .map(drop)
        }
        (PolicyKind::KubeArmorPolicy, None) => {
            Api::<KubeArmorPolicy>::default_namespaced(client.clone())
                .patch_status(name, &params, &patch)
                .await
                .map(drop)
        }
        (PolicyKind::KubeArmorClusterPolicy, _) => {
            Api::<KubeArmorClusterPolicy>::all(client.clone())
                .patch_status(name, &params, &patch)
                .await
                .map(drop)
        }
        (_, _) => Api::<KubeArmorHostPolicy>::all(client.clone())
            .patch_status(name, &params, &patch)
            .await
            .map(drop),
    };
    result.map_err(|source| StatusError {
        reference: reference.clone(),
        source,
    })
}

/// What [`follow_policies`] reports to its caller besides the policies.
#[derive(Debug)]
#[non_exhaustive]
pub enum Report {
    /// A watch failed; it retries after a backoff (the policies in force stay).
    WatchError(watcher::Error),
    /// A status could not be written (asked again on the next event).
    Status(StatusError),
}

/// Follows the cluster's policies until the watches end (they do not, unless the client is
/// dropped): every event goes through `index`; compiled policies go to `enforce`, statuses are
/// written, problems go to `report`.
pub async fn follow_policies(
    client: Client,
    index: &mut PolicyIndex,
    mut enforce: impl FnMut(Arc<CompiledPolicy>),
    mut report: impl FnMut(Report),
) {
    let mut events = std::pin::pin!(policy_events(&client));
    while let Some(item) = events.next().await {
        let ev = match item {
            Ok(ev) => ev,
            Err(e) => {
                report(Report::WatchError(e));
                continue;
            }
        };
        for effect in index.apply(ev) {
            match effect {
                PolicyEffect::Enforce(policy) => enforce(policy),
                PolicyEffect::Status { reference, status } => {
                    if let Err(e) = write_status(&client, &reference, &status).await {
                        index.forget_status(&reference);
                        report(Report::Status(e));
                    }
                }
                PolicyEffect::NodeStatus {
                    reference,
                    node,
                    message,
                } => {
                    let written =
                        write_node_status(&client, &reference, &node, message.as_deref()).await;
                    if let Err(e) = written {
                        index.forget_node_status(&reference);
                        report(Report::Status(e));
                    }
                }
            }
        }
    }
}

/// Which watches a node's agent runs ([`follow_node`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeWatch {
    /// This node's name (the downward API's `spec.nodeName`): pods are watched with
    /// `spec.nodeName=<node>`, the node with `metadata.name=<node>`.
    pub node: String,
    /// The settings ConfigMap's namespace.
    pub config_namespace: String,
    /// The settings ConfigMap's name (watched with `metadata.name=<name>`).
    pub config_name: String,
}

impl NodeWatch {
    /// The watches of `node`, with the settings in ConfigMap `armor/armor-config`.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            config_namespace: "armor".to_string(),
            config_name: "armor-config".to_string(),
        }
    }

    /// The same with the settings in ConfigMap `namespace/name`.
    #[must_use]
    pub fn config(mut self, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        self.config_namespace = namespace.into();
        self.config_name = name.into();
        self
    }
}

/// What a node's agent is told ([`follow_node`]), in the order it happened.
#[derive(Debug)]
#[non_exhaustive]
pub enum NodeUpdate {
    /// Every valid policy object, compiled: put them in force.
    Policies {
        /// The compiled policies.
        policy: Arc<CompiledPolicy>,
        /// When the first policy event they answer arrived from its watch: an update's latency
        /// on this node is measured from here (the API server's write and the watch delivery
        /// come before it).
        since: std::time::Instant,
    },
    /// A pod of this node changed ([`PodIndex`]).
    Pod(PodEffect),
    /// The node's settings changed ([`NodeState`]).
    Settings(Box<NodeSettings>),
    /// Something to log: a settings object not taken, a status not written, a watch error.
    Problem(String),
    /// A watch fails: what is in force stays, and the agent is stale until [`NodeUpdate::Fresh`].
    Stale(String),
    /// Every watch that failed delivered again, or its resource is listed again (a watch that
    /// resumed has nothing to deliver until something changes).
    Fresh,
    /// Every watch listed once: policies, pods, namespaces, the node and the ConfigMap are all
    /// known (sent once, after their updates).
    Synced,
}

/// One item of one of the merged watches (boxed: pod and node objects are large).
enum Watched {
    Policy(PolicyEvent),
    Pod(Box<watcher::Event<Pod>>),
    Node(Box<NodeInput>),
}

/// Compiles what the policy events taken ask for: the policies go to `sink` (the first time,
/// the policies are listed), the statuses to the write queue.
fn policy_effects(
    index: &mut PolicyIndex,
    listed: &mut BTreeSet<&str>,
    statuses: &mut StatusQueue,
    since: tokio::time::Instant,
    sink: &mut impl FnMut(NodeUpdate),
) {
    for effect in index.effects() {
        match effect {
            PolicyEffect::Enforce(policy) => {
                listed.insert(POLICIES);
                sink(NodeUpdate::Policies {
                    policy,
                    since: since.into_std(),
                });
            }
            PolicyEffect::Status { reference, status } => {
                statuses.push(reference, Write::Outcome(status));
            }
            PolicyEffect::NodeStatus {
                reference, message, ..
            } => statuses.push(reference, Write::Node(message)),
        }
    }
}

/// How long policy events wait at most for the end of their burst before they are compiled.
const COMPILE_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether `ev` only says a (re-)list starts.
fn starts_list(ev: &Watched) -> bool {
    match ev {
        Watched::Policy(e) => matches!(e, PolicyEvent::Init(_)),
        Watched::Pod(e) => matches!(**e, watcher::Event::Init),
        Watched::Node(input) => match &**input {
            NodeInput::Config(e) => matches!(e, watcher::Event::Init),
            NodeInput::Namespace(e) => matches!(e, watcher::Event::Init),
            NodeInput::Node(e) => matches!(**e, watcher::Event::Init),
        },
    }
}

/// The watches' names, for the log (the policy watches are named by their kinds).
const POLICIES: &str = "policies";
const PODS: &str = "pods";
const NAMESPACES: &str = "namespaces";
const NODE: &str = "node";
const SETTINGS: &str = "settings";
/// How long after the last watch error the failed watches' resources are listed to see whether
/// the API server serves them again.
const FRESH_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether the API server lists the resource of watch `name` again (one object at most, with
/// the watch's own selector, so the same permissions are asked for), within [`API_TIMEOUT`].
async fn lists(client: &Client, watch: &NodeWatch, name: &str) -> bool {
    let one = ListParams::default().limit(1);
    let node = format!("metadata.name={}", watch.node);
    let config = format!("metadata.name={}", watch.config_name);
    let on_node = format!("spec.nodeName={}", watch.node);
    let c = client.clone();
    let listed = async {
        match name {
            PODS => Api::<Pod>::all(c)
                .list_metadata(&one.fields(&on_node))
                .await
                .is_ok(),
            NAMESPACES => Api::<Namespace>::all(c).list_metadata(&one).await.is_ok(),
            NODE => Api::<Node>::all(c)
                .list_metadata(&one.fields(&node))
                .await
                .is_ok(),
            SETTINGS => Api::<ConfigMap>::namespaced(c, &watch.config_namespace)
                .list_metadata(&one.fields(&config))
                .await
                .is_ok(),
            n if n == PolicyKind::KubeArmorPolicy.as_str() => Api::<KubeArmorPolicy>::all(c)
                .list_metadata(&one)
                .await
                .is_ok(),
            n if n == PolicyKind::KubeArmorClusterPolicy.as_str() => {
                Api::<KubeArmorClusterPolicy>::all(c)
                    .list_metadata(&one)
                    .await
                    .is_ok()
            }
            n if n == PolicyKind::KubeArmorHostPolicy.as_str() => {
                Api::<KubeArmorHostPolicy>::all(c)
                    .list_metadata(&one)
                    .await
                    .is_ok()
            }
            _ => false,
        }
    };
    matches!(tokio::time::timeout(API_TIMEOUT, listed).await, Ok(true))
}
/// How long an API request (a status write, the freshness probe) may take.
const API_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a failed status write waits before it is tried again.
const STATUS_RETRY: std::time::Duration = std::time::Duration::from_secs(10);
/// How often a stale agent asks the API server whether it answers.
const FRESH_PROBE: std::time::Duration = std::time::Duration::from_secs(1);
/// Status writes waiting for their time. Every node's agent writes the same statuses; each
/// write waits a delay below [`STATUS_SPREAD`] that depends on the node and the object, so
/// the agents of many nodes starting at once write in different orders, and a write another
/// agent made meanwhile is dropped ([`PolicyIndex::needs_status`]) rather than repeated.
///
/// This node's entries of `status.nodes` ([`Write::Node`]) are written by this node only, and
/// paced when they are taken: one every [`NODE_WRITE_GAP`] at most, so that a node reporting
/// thousands of policies at once (a cold start) spreads its writes over minutes. A write asked
/// for again while it waits keeps its place; a retry does not move the pace.
struct StatusQueue {
    node: String,
    outcomes: Timed<PolicyStatus>,
    entries: Timed<Option<String>>,
    /// The earliest time of the next node entry write.
    node_next: tokio::time::Instant,
}

/// Writes by due time, at most one per object.
struct Timed<V> {
    due: BTreeMap<(tokio::time::Instant, PolicyRef), V>,
    /// When each object's write is due: finds the write a new one replaces without a scan
    /// (a cold start queues thousands).
    when: BTreeMap<PolicyRef, tokio::time::Instant>,
}

impl<V> Timed<V> {
    fn new() -> Self {
        Self {
            due: BTreeMap::new(),
            when: BTreeMap::new(),
        }
    }

    /// `value` for `reference` at `at`, or at the time of the write it replaces if that is
    /// earlier.
    fn push(&mut self, reference: PolicyRef, value: V, at: tokio::time::Instant) {
        let at = match self.when.get(&reference) {
            Some(&before) => {
                self.due.remove(&(before, reference.clone()));
                before.min(at)
            }
            None => at,
        };
        self.when.insert(reference.clone(), at);
        self.due.insert((at, reference), value);
    }

    fn first(&self) -> Option<tokio::time::Instant> {
        self.due.first_key_value().map(|(k, _)| k.0)
    }

    /// The first write, if it is due at `now`.
    fn pop_due(&mut self, now: tokio::time::Instant) -> Option<(PolicyRef, V)> {
        if self.first()? > now {
            return None;
        }
        let ((_, r), v) = self.due.pop_first()?;
        self.when.remove(&r);
        Some((r, v))
    }
}

/// A status write waiting in the [`StatusQueue`].
#[derive(Debug, Clone, PartialEq)]
enum Write {
    /// The object's `status` and `message`, which every node agrees on.
    Outcome(PolicyStatus),
    /// This node's entry of `status.nodes` (`None`: remove it).
    Node(Option<String>),
}

/// The pace of this node's entry writes (see [`StatusQueue`]): ten a second.
const NODE_WRITE_GAP: std::time::Duration = std::time::Duration::from_millis(100);

impl StatusQueue {
    fn new(node: &str) -> Self {
        Self {
            node: node.to_string(),
            outcomes: Timed::new(),
            entries: Timed::new(),
            node_next: tokio::time::Instant::now(),
        }
    }

    /// Asks for `write` on `reference`, replacing a write of the same kind still waiting.
    fn push(&mut self, reference: PolicyRef, write: Write) {
        self.push_after(reference, write, std::time::Duration::ZERO);
    }

    /// The same, `after` plus the spread.
    fn push_after(&mut self, reference: PolicyRef, write: Write, after: std::time::Duration) {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (&self.node, &reference).hash(&mut h);
        let spread = u64::try_from(STATUS_SPREAD.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let delay = after + std::time::Duration::from_millis(h.finish() % spread);
        let at = tokio::time::Instant::now() + delay;
        match write {
            Write::Outcome(status) => self.outcomes.push(reference, status, at),
            Write::Node(message) => self.entries.push(reference, message, at),
        }
    }

    /// The next write whose time came: statuses first, then a node entry if its pace allows.
    fn pop_due(&mut self) -> Option<(PolicyRef, Write)> {
        let now = tokio::time::Instant::now();
        if let Some((r, status)) = self.outcomes.pop_due(now) {
            return Some((r, Write::Outcome(status)));
        }
        if now < self.node_next {
            return None;
        }
        let (r, message) = self.entries.pop_due(now)?;
        self.node_next = now + NODE_WRITE_GAP;
        Some((r, Write::Node(message)))
    }

    /// When the next write is due (now when none waits).
    fn next_due(&self) -> tokio::time::Instant {
        let entry = self.entries.first().map(|t| t.max(self.node_next));
        match (self.outcomes.first(), entry) {
            (Some(a), Some(b)) => a.min(b),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => tokio::time::Instant::now(),
        }
    }

    fn is_empty(&self) -> bool {
        self.outcomes.due.is_empty() && self.entries.due.is_empty()
    }
}

/// The longest a status write waits (see [`StatusQueue`]).
const STATUS_SPREAD: std::time::Duration = std::time::Duration::from_secs(2);

/// How many status writes [`follow_node`] has in flight at most.
const STATUS_WRITES: usize = 16;
/// How many names [`listed`](follow_node) must hold: the policies (once the index enforced),
/// pods, namespaces, node, settings.
const WATCHES: usize = 5;

/// Follows everything one node's agent needs until the watches end (they do not, unless the
/// client is dropped): the three policy kinds (statuses written), this node's pods
/// (`spec.nodeName`), the namespaces, this node and the settings ConfigMap, each through its
/// reducer ([`PolicyIndex`], [`PodIndex`], [`NodeState`]); what changed goes to `sink` in
/// order; a burst of policy events is compiled once (when no event is waiting, or after
/// 100 ms of them); status writes go on beside the watches, 16 at a time, each after a delay
/// below 2 s that depends on the node and the object, and dropped when the object got that
/// status meanwhile (the agents of many nodes write the same statuses); a failed write is
/// tried again 10 s later, and every API request gives up after 10 s. A failing watch makes
/// the agent [`NodeUpdate::Stale`] and retries with kube-runtime's backoff (0.8 s doubling up
/// to 30 s); the agent is [`NodeUpdate::Fresh`] again once every watch that failed delivered
/// again or, 2 s after the last error, the API server lists its resource again (a watch that
/// resumed has nothing to deliver until something changes; one still waiting out its backoff
/// lists again when it retries, which loses nothing). A re-list after a lost connection
/// changes nothing that did not change.
///
/// The node's own entries of `status.nodes` (what it does not enforce) are not written: see
/// [`follow_node_reporting`].
pub async fn follow_node(client: Client, watch: &NodeWatch, sink: impl FnMut(NodeUpdate)) {
    follow_node_reporting(client, watch, futures::stream::pending(), sink).await;
}

/// [`follow_node`], and what the node's agent reports about the policies it was given
/// (`reports`, [`PolicyIndex::node_report`]) becomes this node's entry of each policy's
/// `status.nodes`: the policy set it refused, the rules its enforcer does not carry and the
/// workloads it only monitors, with why; an entry is removed once there is nothing to say.
/// Only this node's entries are written, paced at ten a second, with the same retries as the
/// statuses. When `reports` ends, the entries stay as last written.
pub async fn follow_node_reporting(
    client: Client,
    watch: &NodeWatch,
    reports: impl Stream<Item = NodeReport>,
    mut sink: impl FnMut(NodeUpdate),
) {
    let config = watcher::Config::default;
    let pods = watcher(
        Api::<Pod>::all(client.clone()),
        config().fields(&format!("spec.nodeName={}", watch.node)),
    )
    .default_backoff()
    .map(|r| (PODS, r.map(|e| Watched::Pod(Box::new(e)))));
    let namespaces = watcher(Api::<Namespace>::all(client.clone()), config())
        .default_backoff()
        .map(|r| {
            (
                NAMESPACES,
                r.map(|e| Watched::Node(Box::new(NodeInput::Namespace(e)))),
            )
        });
    let node = watcher(
        Api::<Node>::all(client.clone()),
        config().fields(&format!("metadata.name={}", watch.node)),
    )
    .default_backoff()
    .map(|r| {
        (
            NODE,
            r.map(|e| Watched::Node(Box::new(NodeInput::Node(Box::new(e))))),
        )
    });
    let settings = watcher(
        Api::<ConfigMap>::namespaced(client.clone(), &watch.config_namespace),
        config().fields(&format!("metadata.name={}", watch.config_name)),
    )
    .default_backoff()
    .map(|r| {
        (
            SETTINGS,
            r.map(|e| Watched::Node(Box::new(NodeInput::Config(e)))),
        )
    });
    let [ksp, csp, hsp] = POLICY_KINDS
        .map(|k| policy_watch(&client, k).map(move |r| (k.as_str(), r.map(Watched::Policy))));
    let mut events = std::pin::pin!(futures::stream::select_all([
        ksp.boxed(),
        csp.boxed(),
        hsp.boxed(),
        pods.boxed(),
        namespaces.boxed(),
        node.boxed(),
        settings.boxed(),
    ]));
    let mut policy_index = PolicyIndex::for_node(&watch.node);
    let mut reports = std::pin::pin!(reports);
    let mut reports_open = true;
    let mut pod_index = PodIndex::new();
    let mut state = NodeState::new(format!(
        "ConfigMap {}/{}",
        watch.config_namespace, watch.config_name
    ));
    let mut listed: BTreeSet<&str> = BTreeSet::new();
    let mut synced = false;
    // Stale since a watch failed, until every watch that failed delivered again or its
    // resource can be listed again (a watch that resumed reports nothing until something
    // changes).
    let mut last_error: Option<tokio::time::Instant> = None;
    let mut failing: BTreeSet<&'static str> = BTreeSet::new();
    let mut probe = tokio::time::interval(FRESH_PROBE);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probing = futures::stream::FuturesUnordered::new();
    // Status writes: queued, at most STATUS_WRITES in flight, so a cold start with thousands
    // of objects does not hold up the watches.
    let mut statuses = StatusQueue::new(&watch.node);
    let mut writing = futures::stream::FuturesUnordered::new();
    // Since when policy events wait for their compile.
    let mut pending: Option<tokio::time::Instant> = None;
    loop {
        // A burst of policy events is compiled once: when no event is ready any more (the
        // `ready` branch below), or after COMPILE_AFTER of events. This comes first: what it
        // gives (the policies, statuses to write) is acted on before the next wait.
        if let Some(since) = pending
            && since.elapsed() >= COMPILE_AFTER
        {
            pending = None;
            policy_effects(
                &mut policy_index,
                &mut listed,
                &mut statuses,
                since,
                &mut sink,
            );
        }
        if !synced && listed.len() == WATCHES {
            synced = true;
            sink(NodeUpdate::Synced);
        }
        while writing.len() < STATUS_WRITES
            && let Some((reference, write)) = statuses.pop_due()
        {
            // Written meanwhile by another node's agent, or no longer wanted.
            let needed = match &write {
                Write::Outcome(status) => policy_index.needs_status(&reference, status),
                Write::Node(message) => {
                    policy_index.needs_node_status(&reference, message.as_ref())
                }
            };
            if !needed {
                continue;
            }
            let client = client.clone();
            let node = watch.node.clone();
            writing.push(async move {
                let written = tokio::time::timeout(API_TIMEOUT, async {
                    match &write {
                        Write::Outcome(status) => write_status(&client, &reference, status).await,
                        Write::Node(message) => {
                            write_node_status(&client, &reference, &node, message.as_deref()).await
                        }
                    }
                })
                .await;
                let outcome = match written {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(armor_core::diag::error_chain(&e)),
                    Err(_) => Err(format!(
                        "status of {reference} not written: no answer within {} s",
                        API_TIMEOUT.as_secs()
                    )),
                };
                (reference, write, outcome)
            });
        }
        let (name, item) = tokio::select! {
            biased;
            next = events.next() => match next {
                Some(next) => next,
                None => return,
            },
            since = std::future::ready(pending), if pending.is_some() => {
                if let Some(since) = since {
                    pending = None;
                    policy_effects(&mut policy_index, &mut listed, &mut statuses, since, &mut sink);
                }
                continue;
            }
            report = reports.next(), if reports_open => {
                match report {
                    Some(report) => {
                        for effect in policy_index.node_report(report) {
                            if let PolicyEffect::NodeStatus { reference, message, .. } = effect {
                                statuses.push(reference, Write::Node(message));
                            }
                        }
                    }
                    None => reports_open = false,
                }
                continue;
            }
            Some((reference, write, outcome)) = writing.next(), if !writing.is_empty() => {
                // A failed write is tried again later (dropped then if no longer needed).
                if let Err(why) = outcome {
                    sink(NodeUpdate::Problem(format!("{why}; trying again")));
                    statuses.push_after(reference, write, STATUS_RETRY);
                }
                continue;
            }
            () = tokio::time::sleep_until(statuses.next_due()),
                if writing.len() < STATUS_WRITES && !statuses.is_empty() => continue,
            Some(answered) = probing.next(), if !probing.is_empty() => {
                let answered: Vec<&str> = answered;
                for name in answered {
                    failing.remove(name);
                }
                if failing.is_empty() && last_error.take().is_some() {
                    sink(NodeUpdate::Fresh);
                }
                continue;
            }
            _ = probe.tick(), if !failing.is_empty() && probing.is_empty() => {
                if last_error.is_some_and(|t| t.elapsed() >= FRESH_AFTER) {
                    let client = client.clone();
                    let watch = watch.clone();
                    let names: Vec<&'static str> = failing.iter().copied().collect();
                    probing.push(async move {
                        let mut answered = Vec::new();
                        for name in names {
                            if lists(&client, &watch, name).await {
                                answered.push(name);
                            }
                        }
                        answered
                    });
                }
                continue;
            }
        };
        let ev = match item {
            Ok(ev) => ev,
            Err(e) => {
                let why = format!("{name} watch: {e}");
                if last_error.is_none() {
                    sink(NodeUpdate::Stale(why.clone()));
                }
                last_error = Some(tokio::time::Instant::now());
                failing.insert(name);
                sink(NodeUpdate::Problem(why));
                continue;
            }
        };
        // A watch delivers again with what it lists or watches: its `Init` comes before the
        // list, which can still fail.
        if !starts_list(&ev)
            && failing.remove(name)
            && failing.is_empty()
            && last_error.take().is_some()
        {
            sink(NodeUpdate::Fresh);
        }
        match ev {
            Watched::Policy(ev) => {
                // Before `take`: the event's validation is part of its latency.
                let arrived = tokio::time::Instant::now();
                policy_index.take(ev);
                pending.get_or_insert(arrived);
            }
            Watched::Pod(ev) => {
                if matches!(*ev, watcher::Event::InitDone) {
                    listed.insert(PODS);
                }
                for effect in pod_index.apply(*ev) {
                    sink(NodeUpdate::Pod(effect));
                }
            }
            Watched::Node(input) => {
                if let NodeInput::Namespace(watcher::Event::InitDone)
                | NodeInput::Config(watcher::Event::InitDone) = &*input
                {
                    listed.insert(name);
                }
                if let NodeInput::Node(ev) = &*input
                    && matches!(**ev, watcher::Event::InitDone)
                {
                    listed.insert(name);
                }
                let out = state.apply(*input);
                for p in out.problems {
                    sink(NodeUpdate::Problem(p));
                }
                if let Some(s) = out.settings {
                    sink(NodeUpdate::Settings(Box::new(s)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    fn outcome(status: &str) -> Write {
        Write::Outcome(PolicyStatus::new(status, None))
    }

    #[test]
    fn a_status_asked_again_replaces_the_write_still_waiting_and_keeps_its_place() {
        let mut q = StatusQueue::new("node-a");
        let one = PolicyRef::new(PolicyKind::KubeArmorClusterPolicy, None, "c-1");
        let two = PolicyRef::new(PolicyKind::KubeArmorClusterPolicy, None, "c-2");
        q.push_after(
            one.clone(),
            Write::Outcome(PolicyStatus::new("Invalid", Some("bad".into()))),
            std::time::Duration::from_secs(5),
        );
        q.push(two.clone(), outcome("Applied"));
        let first = q.outcomes.when[&one];
        // Asked again sooner: replaced, at the sooner time.
        q.push(one.clone(), outcome("Applied"));
        assert!(q.outcomes.when[&one] < first);
        // Asked again later: replaced, keeping its earlier place.
        let place = q.outcomes.when[&one];
        q.push_after(
            one.clone(),
            outcome("Invalid"),
            std::time::Duration::from_secs(9),
        );
        assert_eq!(q.outcomes.when[&one], place);
        assert_eq!(q.outcomes.due.len(), 2);
        assert_eq!(
            q.outcomes.due[&(place, one)],
            PolicyStatus::new("Invalid", None)
        );
    }

    #[test]
    fn node_entries_are_paced_when_taken_and_do_not_hold_up_the_statuses() {
        let mut q = StatusQueue::new("node-a");
        let refs: Vec<PolicyRef> = (0..3)
            .map(|i| PolicyRef::new(PolicyKind::KubeArmorClusterPolicy, None, &format!("c-{i}")))
            .collect();
        for r in &refs {
            q.push_after(
                r.clone(),
                Write::Node(Some("x".into())),
                std::time::Duration::ZERO,
            );
        }
        q.push(refs[0].clone(), outcome("Applied"));
        // An object's status and its node entry are two writes.
        assert_eq!(q.entries.due.len() + q.outcomes.due.len(), 4);
        std::thread::sleep(STATUS_SPREAD);
        // Everything is due: the status first, one node entry, then the pace holds the rest.
        assert!(matches!(q.pop_due(), Some((_, Write::Outcome(_)))));
        assert!(matches!(q.pop_due(), Some((_, Write::Node(_)))));
        assert!(q.pop_due().is_none());
        assert!(q.next_due() >= q.node_next);
        // A new status is not held by the pace of node entries.
        q.push_after(
            refs[1].clone(),
            outcome("Applied"),
            std::time::Duration::ZERO,
        );
        q.outcomes.due = q
            .outcomes
            .due
            .clone()
            .into_iter()
            .map(|((_, r), v)| ((tokio::time::Instant::now(), r), v))
            .collect();
        assert!(matches!(q.pop_due(), Some((_, Write::Outcome(_)))));
        std::thread::sleep(NODE_WRITE_GAP);
        assert!(matches!(q.pop_due(), Some((_, Write::Node(_)))));
        assert!(q.pop_due().is_none());
    }
}
