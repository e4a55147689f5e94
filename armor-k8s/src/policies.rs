//! The policies of the cluster as a pure reducer over the three policy watches
//! ([`PolicyIndex::apply`]): each object is validated on its own by armor-core's loader (every
//! error with its field path), the valid ones are compiled together, and the index says what to
//! do — put new compiled policies in force ([`PolicyEffect::Enforce`]), write an object's status
//! ([`PolicyEffect::Status`]). It never calls the API; the watch plumbing feeds it.
//!
//! Nothing is enforced before the first list of each of the three kinds is complete; then
//! everything at once, an empty set too (a cold start is one `Enforce`). Watch restarts lose
//! nothing and apply nothing twice: a re-list (`Init`, `InitApply`…,
//! `InitDone`) is buffered per kind and replaces that kind's objects at `InitDone` (those not
//! listed again are gone), and an object that comes back unchanged (same spec) changes nothing.
//! An object's own status write comes back as an update with the same spec: no effect, so no
//! loop.
//!
//! ```
//! use armor_k8s::policies::{PolicyEffect, PolicyEvent, PolicyIndex, PolicyObject, PolicyRef};
//! use armor_core::model::PolicyKind;
//!
//! let mut index = PolicyIndex::new();
//! // The first lists of the three kinds are empty: an empty set is enforced.
//! for kind in [PolicyKind::KubeArmorPolicy, PolicyKind::KubeArmorClusterPolicy,
//!              PolicyKind::KubeArmorHostPolicy] {
//!     index.apply(PolicyEvent::InitDone(kind));
//! }
//! let object = PolicyObject::new(
//!     PolicyRef::new(PolicyKind::KubeArmorPolicy, Some("shop"), "no-shadow"),
//!     serde_json::json!({"selector": {"matchLabels": {"app": "web"}},
//!                        "file": {"matchPaths": [{"path": "/etc/shadow"}]}, "action": "Block"}),
//! );
//! let effects = index.apply(PolicyEvent::Apply(object));
//! assert!(matches!(&effects[0], PolicyEffect::Enforce(p) if p.rules().len() == 1));
//! assert!(matches!(&effects[1], PolicyEffect::Status { status, .. }
//!     if status.status.as_deref() == Some("Applied")));
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use armor_core::crd::PolicyStatus;
use armor_core::diag::Level;
use armor_core::model::{Policy, PolicyKind};
use armor_core::{CompiledPolicy, PolicySet};
use kube::ResourceExt;

use crate::crd::{KubeArmorClusterPolicy, KubeArmorHostPolicy, KubeArmorPolicy};

/// `status.status` of a policy armor put in force.
pub const APPLIED: &str = "Applied";
/// `status.status` of a policy armor refused (its `status.message` says why).
pub const INVALID: &str = "Invalid";

/// Which policy object: kind, namespace (`KubeArmorPolicy` only) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct PolicyRef {
    /// The kind.
    pub kind: PolicyKind,
    /// The namespace of a `KubeArmorPolicy`.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl PolicyRef {
    /// `kind` `namespace/name` (the namespace is kept for `KubeArmorPolicy` only).
    pub fn new(kind: PolicyKind, namespace: Option<&str>, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace
                .filter(|_| kind == PolicyKind::KubeArmorPolicy)
                .map(str::to_string),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// A policy object as a watch delivers it, whatever its kind.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PolicyObject {
    /// Which object.
    pub reference: PolicyRef,
    /// Its `spec`, as the API server stored it.
    pub spec: serde_json::Value,
    /// Its `status`, as last written.
    pub status: Option<PolicyStatus>,
}

impl PolicyObject {
    /// The object `reference` with `spec` and no status.
    pub fn new(reference: PolicyRef, spec: serde_json::Value) -> Self {
        Self {
            reference,
            spec,
            status: None,
        }
    }

    fn from_parts<S: serde::Serialize>(
        kind: PolicyKind,
        namespace: Option<String>,
        name: String,
        spec: &S,
        status: Option<PolicyStatus>,
    ) -> Self {
        Self {
            reference: PolicyRef::new(kind, namespace.as_deref(), &name),
            // A spec that was deserialized serializes; `Null` would only make it invalid.
            spec: serde_json::to_value(spec).unwrap_or(serde_json::Value::Null),
            status,
        }
    }
}

impl From<&KubeArmorPolicy> for PolicyObject {
    fn from(p: &KubeArmorPolicy) -> Self {
        Self::from_parts(
            PolicyKind::KubeArmorPolicy,
            p.namespace(),
            p.name_any(),
            &p.spec.spec,
            p.status.clone(),
        )
    }
}

impl From<&KubeArmorClusterPolicy> for PolicyObject {
    fn from(p: &KubeArmorClusterPolicy) -> Self {
        Self::from_parts(
            PolicyKind::KubeArmorClusterPolicy,
            None,
            p.name_any(),
            &p.spec.spec,
            p.status.clone(),
        )
    }
}

impl From<&KubeArmorHostPolicy> for PolicyObject {
    fn from(p: &KubeArmorHostPolicy) -> Self {
        Self::from_parts(
            PolicyKind::KubeArmorHostPolicy,
            None,
            p.name_any(),
            &p.spec.spec,
            p.status.clone(),
        )
    }
}

/// What a policy watch reported (kube-runtime's watcher events, kind-erased).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PolicyEvent {
    /// An object was created or changed.
    Apply(PolicyObject),
    /// An object was deleted.
    Delete(PolicyRef),
    /// A (re-)list of a kind starts.
    Init(PolicyKind),
    /// An object of the (re-)list.
    InitApply(PolicyObject),
    /// The (re-)list of a kind is complete: its objects not listed are gone.
    InitDone(PolicyKind),
}

impl PolicyEvent {
    /// A watcher event of one of the three kinds, kind-erased.
    pub fn from_watcher<K>(kind: PolicyKind, ev: kube::runtime::watcher::Event<K>) -> Self
    where
        for<'a> &'a K: Into<PolicyObject>,
        K: ResourceExt,
    {
        use kube::runtime::watcher::Event;
        match ev {
            Event::Apply(k) => Self::Apply((&k).into()),
            Event::Delete(k) => Self::Delete(PolicyRef::new(
                kind,
                k.namespace().as_deref(),
                &k.name_any(),
            )),
            Event::Init => Self::Init(kind),
            Event::InitApply(k) => Self::InitApply((&k).into()),
            Event::InitDone => Self::InitDone(kind),
        }
    }
}

/// What to do.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PolicyEffect {
    /// Put these compiled policies (every valid object) in force.
    Enforce(Arc<CompiledPolicy>),
    /// Write this status on the object (its `status` and `message`).
    Status {
        /// The object.
        reference: PolicyRef,
        /// Its status.
        status: PolicyStatus,
    },
    /// Write this node's entry of the object's `status.nodes` (the fail-closed report,
    /// [`PolicyIndex::node_report`]); `None` removes it.
    NodeStatus {
        /// The object.
        reference: PolicyRef,
        /// The node.
        node: String,
        /// What the node does not enforce of it, or `None` when it enforces all of it.
        message: Option<String>,
    },
}

/// What a node's agent says about the policies it was given ([`PolicyIndex::node_report`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct NodeReport {
    /// The compiled set this answers (one [`PolicyEffect::Enforce`] handed to the agent) and
    /// whether the node put it in force (`Err(why)`: refused, the previous set stays in
    /// force). `None`: only what is enforced changed.
    pub answered: Option<(Arc<CompiledPolicy>, Result<(), String>)>,
    /// What the node does not enforce of each policy, one line per problem; a policy enforced
    /// in full is absent.
    pub gaps: BTreeMap<PolicyRef, Vec<String>>,
}

impl NodeReport {
    /// A report answering `answered`, with `gaps`.
    pub fn new(
        answered: Option<(Arc<CompiledPolicy>, Result<(), String>)>,
        gaps: BTreeMap<PolicyRef, Vec<String>>,
    ) -> Self {
        Self { answered, gaps }
    }
}

/// The longest node entry written in a status, in bytes; a longer one is cut, and says that
/// the rest is in the agent's log.
pub const NODE_MESSAGE_MAX: usize = 1024;

/// How many compiled sets wait at most for their node's answer (an agent answers each in
/// order; older ones are forgotten).
const UNANSWERED_MAX: usize = 64;

/// What one node says of its policies, as the index keeps it.
#[derive(Debug, Default)]
struct NodeSide {
    /// The node's name.
    name: String,
    /// The sets handed to the node and not answered yet, oldest first, each with the
    /// fingerprint of every object in it. Held weakly: a set the agent dropped is freed (and
    /// while the agent's answer holds a set, its address names no other).
    sent: VecDeque<(std::sync::Weak<CompiledPolicy>, BTreeMap<PolicyRef, u64>)>,
    /// The fingerprints of the set the node holds.
    in_force: BTreeMap<PolicyRef, u64>,
    /// The last set the node refused (after the one in force), with why. The agent may take
    /// it on a later try, and answer it again.
    refused: Option<Refusal>,
    /// What the node does not enforce, per object.
    gaps: BTreeMap<PolicyRef, Vec<String>>,
    /// Whether the node answered once: its entries are managed only from then on (an entry
    /// left by an earlier run stays until the node says what is true now).
    answered: bool,
    /// The entry last asked for, per object (`None`: asked to remove it).
    wanted: BTreeMap<PolicyRef, Option<String>>,
}

impl NodeSide {
    /// This node's entry for `r`: the refusal of the set holding `r`'s current version, then
    /// what it does not enforce of it; `None` when there is nothing to say.
    fn message(&self, r: &PolicyRef) -> Option<String> {
        let mut lines = Vec::new();
        if let Some(Refusal { why, set, .. }) = &self.refused
            && let Some(h) = set.get(r)
            && self.in_force.get(r) != Some(h)
        {
            lines.push(if self.in_force.contains_key(r) {
                format!(
                    "this node refused the policy set with this version and enforces the \
                     previous one: {why}"
                )
            } else {
                format!("this node refused the policy set that adds it: not in force here: {why}")
            });
        }
        if let Some(gaps) = self.gaps.get(r) {
            lines.extend(gaps.iter().cloned());
        }
        if lines.is_empty() {
            return None;
        }
        let mut text = lines.join("; ");
        if text.len() > NODE_MESSAGE_MAX {
            let tail = " … (the rest is in the agent's log)";
            let mut cut = NODE_MESSAGE_MAX - tail.len();
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(tail);
        }
        Some(text)
    }
}

/// A set the node refused.
#[derive(Debug)]
struct Refusal {
    policy: std::sync::Weak<CompiledPolicy>,
    why: String,
    set: BTreeMap<PolicyRef, u64>,
}

/// A fingerprint of a spec's text.
fn fingerprint(spec: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    spec.hash(&mut h);
    h.finish()
}

/// An object as the index keeps it: its spec as compact JSON text (a `serde_json::Value` tree
/// of a small policy takes ten times the room), compared to tell a change from a re-list or a
/// status write.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    spec: Box<str>,
    status: Option<PolicyStatus>,
}

impl From<PolicyObject> for (PolicyRef, Stored) {
    fn from(o: PolicyObject) -> Self {
        let stored = Stored {
            // A `Value` always serializes; `null` would only make the policy invalid.
            spec: serde_json::to_string(&o.spec)
                .unwrap_or_else(|_| "null".to_string())
                .into_boxed_str(),
            status: o.status,
        };
        (o.reference, stored)
    }
}

/// An object and what armor made of it.
#[derive(Debug, Clone)]
struct Entry {
    object: Stored,
    /// The policy when valid, else every error with its field path.
    checked: Result<Policy, String>,
    /// Why the valid policy is left out of the compiled set (recomputed by every compile).
    compile_error: Option<String>,
    /// Warnings to report in the status.
    warnings: Vec<String>,
}

/// Every policy object of the cluster; a pure reducer (see the [module](self)).
#[derive(Debug, Default)]
pub struct PolicyIndex {
    entries: BTreeMap<PolicyRef, Entry>,
    /// A re-list under way, per kind: the objects listed so far.
    relisting: HashMap<PolicyKind, BTreeMap<PolicyRef, Stored>>,
    /// The status each object should have (what was last asked for).
    wanted: BTreeMap<PolicyRef, PolicyStatus>,
    /// The kinds whose first list is complete: nothing is enforced before all three are, and
    /// then everything at once (an empty set too).
    synced: Vec<PolicyKind>,
    /// The valid policies changed since the last `Enforce`.
    dirty: bool,
    /// The node whose entries of `status.nodes` this index writes ([`PolicyIndex::for_node`]).
    node: Option<NodeSide>,
}

/// The three kinds, each watched.
const KINDS: [PolicyKind; 3] = [
    PolicyKind::KubeArmorPolicy,
    PolicyKind::KubeArmorClusterPolicy,
    PolicyKind::KubeArmorHostPolicy,
];

/// `spec` of `reference` checked by armor-core's loader: the policy, or its errors.
fn check(reference: &PolicyRef, spec: &str) -> (Result<Policy, String>, Vec<String>) {
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), reference.name.clone().into());
    if let Some(ns) = &reference.namespace {
        metadata.insert("namespace".into(), ns.clone().into());
    }
    let head = serde_json::json!({
        "apiVersion": "security.kubearmor.com/v1",
        "kind": reference.kind.as_str(),
        "metadata": metadata,
    })
    .to_string();
    // `spec` is JSON text: it goes in as it is, after the head's other fields.
    let text = format!(
        "{},\"spec\":{spec}}}",
        head.strip_suffix('}').unwrap_or(&head)
    );
    let line = |d: &armor_core::diag::Diagnostic| {
        if d.field.is_empty() {
            d.message.clone()
        } else if d.field.starts_with("metadata.") || d.field == "kind" {
            format!("{}: {}", d.field, d.message)
        } else {
            format!("spec.{}: {}", d.field, d.message)
        }
    };
    match PolicySet::parse(&text, &reference.to_string()) {
        Ok(set) => {
            let warnings = set.diagnostics().items.iter().map(line).collect();
            match set.policies().first() {
                Some(p) => (Ok(p.clone()), warnings),
                None => (Err("no policy in the object".to_string()), warnings),
            }
        }
        Err(e) => {
            let errors: Vec<String> = e
                .diagnostics
                .items
                .iter()
                .filter(|d| d.level == Level::Error)
                .map(line)
                .collect();
            (Err(errors.join("; ")), Vec::new())
        }
    }
}

impl PolicyIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty index of the agent of `node`: besides the statuses every node agrees on, it
    /// writes `node`'s entry of each object's `status.nodes` from what the agent reports
    /// ([`PolicyIndex::node_report`]). Of the other nodes' entries it keeps nothing.
    pub fn for_node(node: &str) -> Self {
        Self {
            node: Some(NodeSide {
                name: node.to_string(),
                ..NodeSide::default()
            }),
            ..Self::default()
        }
    }

    /// Takes what the node's agent says about the policies it was given: the answer to one
    /// compiled set (in force, or refused with why) and what it does not enforce of each
    /// policy. Returns the node's entries to write: each object whose current version the
    /// node does not enforce in full gets an entry that says why; an entry with nothing left
    /// to say is removed. Nothing for an index without a node ([`PolicyIndex::new`]); an
    /// answer to a set this index did not hand out, or no longer remembers (it remembers the
    /// last 64), tells nothing of what the node holds, but when it was taken, the last refusal
    /// is over.
    pub fn node_report(&mut self, report: NodeReport) -> Vec<PolicyEffect> {
        let Some(side) = &mut self.node else {
            return Vec::new();
        };
        if let Some((policy, result)) = report.answered {
            let at = side
                .sent
                .iter()
                .position(|(p, _)| std::ptr::eq(p.as_ptr(), Arc::as_ptr(&policy)));
            let set = at.and_then(|at| side.sent.drain(..=at).next_back().map(|(_, set)| set));
            // The refused set answered again: taken on a new try, or refused for another reason.
            let again = || {
                side.refused
                    .as_ref()
                    .is_some_and(|r| std::ptr::eq(r.policy.as_ptr(), Arc::as_ptr(&policy)))
            };
            let set = match set {
                Some(set) => Some(set),
                None if again() => side.refused.take().map(|r| r.set),
                None => None,
            };
            match (set, result) {
                (Some(set), Ok(())) => {
                    side.in_force = set;
                    side.refused = None;
                }
                (Some(set), Err(why)) => {
                    side.refused = Some(Refusal {
                        policy: Arc::downgrade(&policy),
                        why,
                        set,
                    });
                }
                // A set no longer remembered: what it held is unknown, but a later set was
                // taken, so the last refusal is over.
                (None, Ok(())) => side.refused = None,
                (None, Err(_)) => {}
            }
        }
        side.gaps = report.gaps;
        side.answered = true;
        if self.is_synced() {
            self.node_statuses()
        } else {
            Vec::new()
        }
    }

    /// The node's entries that differ from the one on the object and were not asked for yet.
    fn node_statuses(&mut self) -> Vec<PolicyEffect> {
        let Some(side) = &mut self.node else {
            return Vec::new();
        };
        if !side.answered {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (r, e) in &self.entries {
            let want = side.message(r);
            if side.wanted.get(r) == Some(&want) {
                continue;
            }
            let current = e
                .object
                .status
                .as_ref()
                .and_then(|s| s.nodes.get(&side.name));
            if current != want.as_ref() {
                out.push(PolicyEffect::NodeStatus {
                    reference: r.clone(),
                    node: side.name.clone(),
                    message: want.clone(),
                });
            }
            side.wanted.insert(r.clone(), want);
        }
        out
    }

    /// Whether this node's entry `message` still needs writing on `reference`: it is still
    /// the one wanted and the object, as last seen, does not have it.
    pub fn needs_node_status(&self, reference: &PolicyRef, message: Option<&String>) -> bool {
        let Some(side) = &self.node else {
            return false;
        };
        side.wanted.get(reference).map(Option::as_ref) == Some(message)
            && self.entries.get(reference).is_some_and(|e| {
                e.object
                    .status
                    .as_ref()
                    .and_then(|s| s.nodes.get(&side.name))
                    != message
            })
    }

    /// Forgets the node entry last asked for `reference` (its write failed), so that the next
    /// report or event asks again.
    pub fn forget_node_status(&mut self, reference: &PolicyRef) {
        if let Some(side) = &mut self.node {
            side.wanted.remove(reference);
        }
    }

    /// `o` as the index keeps it: of `status.nodes`, this node's entry only.
    fn stored(&self, o: PolicyObject) -> (PolicyRef, Stored) {
        let (r, mut stored): (PolicyRef, Stored) = o.into();
        if let Some(status) = &mut stored.status {
            match &self.node {
                Some(side) => status.nodes.retain(|n, _| *n == side.name),
                None => status.nodes.clear(),
            }
        }
        (r, stored)
    }

    /// Forgets what was asked for `r` (its status and this node's entry).
    fn unwant(&mut self, r: &PolicyRef) {
        self.wanted.remove(r);
        if let Some(side) = &mut self.node {
            side.wanted.remove(r);
        }
    }

    /// Takes one watch event; returns what to do, in order (new policies first, then
    /// statuses): [`PolicyIndex::take`] then [`PolicyIndex::effects`].
    pub fn apply(&mut self, ev: PolicyEvent) -> Vec<PolicyEffect> {
        self.take(ev);
        self.effects()
    }

    /// Takes one watch event without compiling: a burst of events (thousands of objects
    /// created at once) is taken event by event and compiled once, by the
    /// [`PolicyIndex::effects`] that follows it.
    pub fn take(&mut self, ev: PolicyEvent) {
        let changed = match ev {
            PolicyEvent::Apply(o) => {
                let (r, stored) = self.stored(o);
                self.upsert(r, stored)
            }
            PolicyEvent::Delete(r) => self.entries.remove(&r).is_some_and(|e| {
                self.unwant(&r);
                e.checked.is_ok()
            }),
            PolicyEvent::Init(kind) => {
                self.relisting.insert(kind, BTreeMap::new());
                false
            }
            PolicyEvent::InitApply(o) => {
                let kind = o.reference.kind;
                let (r, stored) = self.stored(o);
                match self.relisting.get_mut(&kind) {
                    Some(list) => {
                        list.insert(r, stored);
                        false
                    }
                    // A list item without its Init is taken as an update.
                    None => self.upsert(r, stored),
                }
            }
            PolicyEvent::InitDone(kind) => {
                let listed = self.relisting.remove(&kind).unwrap_or_default();
                let gone: Vec<PolicyRef> = self
                    .entries
                    .keys()
                    .filter(|r| r.kind == kind && !listed.contains_key(r))
                    .cloned()
                    .collect();
                let mut changed = false;
                for r in gone {
                    self.unwant(&r);
                    changed |= self.entries.remove(&r).is_some_and(|e| e.checked.is_ok());
                }
                for (r, stored) in listed {
                    changed |= self.upsert(r, stored);
                }
                if !self.synced.contains(&kind) {
                    self.synced.push(kind);
                    // The last first list completes the cold start: enforce what there is.
                    changed |= self.is_synced();
                }
                changed
            }
        };
        self.dirty |= changed;
    }

    /// What the events taken since the last call ask for, in order: the valid policies
    /// compiled, when they changed and every kind is listed, then the statuses to write.
    pub fn effects(&mut self) -> Vec<PolicyEffect> {
        let mut effects = Vec::new();
        if self.dirty && self.is_synced() {
            self.dirty = false;
            if let Some(compiled) = self.compile() {
                let compiled = Arc::new(compiled);
                if let Some(side) = &mut self.node {
                    let set = self
                        .entries
                        .iter()
                        .filter(|(_, e)| e.checked.is_ok() && e.compile_error.is_none())
                        .map(|(r, e)| (r.clone(), fingerprint(&e.object.spec)))
                        .collect();
                    side.sent.push_back((Arc::downgrade(&compiled), set));
                    while side.sent.len() > UNANSWERED_MAX {
                        side.sent.pop_front();
                    }
                }
                effects.push(PolicyEffect::Enforce(compiled));
            }
        }
        // `Applied` says a policy is in force: no status before the policies are enforced.
        if self.is_synced() {
            effects.extend(self.statuses());
            effects.extend(self.node_statuses());
        }
        effects
    }

    /// Whether the first list of every kind is complete.
    fn is_synced(&self) -> bool {
        KINDS.iter().all(|k| self.synced.contains(k))
    }

    /// Takes an object's new version; whether the valid policies changed.
    fn upsert(&mut self, r: PolicyRef, object: Stored) -> bool {
        if let Some(e) = self.entries.get_mut(&r)
            && e.object.spec == object.spec
        {
            // The same spec (a re-list, or our own status write): only the status is news. A
            // status other than the one last seen (written by someone else, or an object
            // re-created with the same spec) is asked again if it is not the wanted one.
            if e.object.status != object.status {
                self.unwant(&r);
            }
            if let Some(e) = self.entries.get_mut(&r) {
                e.object.status = object.status;
            }
            return false;
        }
        self.unwant(&r);
        let (checked, warnings) = check(&r, &object.spec);
        let was_valid = self.entries.get(&r).is_some_and(|e| e.checked.is_ok());
        let now_valid = checked.is_ok();
        self.entries.insert(
            r,
            Entry {
                object,
                checked,
                compile_error: None,
                warnings,
            },
        );
        was_valid || now_valid
    }

    /// Every valid policy compiled together. A policy that does not compile alone (a glob
    /// over the size limit) is left out with that reason; when the valid policies only fail
    /// together (over the rule limit), the last ones in reference order are left out, one at a
    /// time, until the rest compiles. Recomputed from the validated policies on every call, so
    /// a policy left out comes back when room is made. `None` only if an empty set did not
    /// compile, which cannot happen.
    fn compile(&mut self) -> Option<CompiledPolicy> {
        for e in self.entries.values_mut() {
            e.compile_error = None;
        }
        let alone_fails = |p: &Policy| {
            let mut one = PolicySet::new();
            one.push(p.clone());
            CompiledPolicy::build(&one).err()
        };
        loop {
            let mut set = PolicySet::new();
            for e in self.entries.values() {
                if let (Ok(p), None) = (&e.checked, &e.compile_error) {
                    set.push(p.clone());
                }
            }
            let err = match CompiledPolicy::build(&set) {
                Ok(c) => return Some(c),
                Err(err) => err,
            };
            let mut left_out = false;
            for e in self.entries.values_mut() {
                if let (Ok(p), None) = (&e.checked, &e.compile_error)
                    && let Some(own) = alone_fails(p)
                {
                    e.compile_error = Some(format!("not compiled: {own}"));
                    left_out = true;
                }
            }
            if !left_out {
                let last = self
                    .entries
                    .values_mut()
                    .rev()
                    .find(|e| e.checked.is_ok() && e.compile_error.is_none());
                match last {
                    Some(e) => e.compile_error = Some(format!("not compiled: {err}")),
                    None => return None,
                }
            }
        }
    }

    /// The status each object should have and does not: `Applied` (with its warnings) or
    /// `Invalid` with every error.
    fn statuses(&mut self) -> Vec<PolicyEffect> {
        let mut out = Vec::new();
        for (r, e) in &self.entries {
            let want = match (&e.checked, &e.compile_error) {
                (Ok(_), None) => PolicyStatus::new(
                    APPLIED,
                    (!e.warnings.is_empty()).then(|| e.warnings.join("; ")),
                ),
                (Ok(_), Some(why)) | (Err(why), _) => PolicyStatus::new(INVALID, Some(why.clone())),
            };
            let asked = self.wanted.get(r) == Some(&want);
            let has = e
                .object
                .status
                .as_ref()
                .is_some_and(|s| s.same_outcome(&want));
            if !has && !asked {
                out.push(PolicyEffect::Status {
                    reference: r.clone(),
                    status: want.clone(),
                });
            }
            if !asked {
                self.wanted.insert(r.clone(), want);
            }
        }
        out
    }

    /// Whether `status` still needs writing on `reference`: it is still the one wanted and the
    /// object, as last seen, does not have it (another node's agent may have written it since
    /// the write was asked for).
    pub fn needs_status(&self, reference: &PolicyRef, status: &PolicyStatus) -> bool {
        self.wanted.get(reference) == Some(status)
            && self.entries.get(reference).is_some_and(|e| {
                !e.object
                    .status
                    .as_ref()
                    .is_some_and(|s| s.same_outcome(status))
            })
    }

    /// Forgets the status last asked for `reference` (its write failed), so that the next
    /// event asks again.
    pub fn forget_status(&mut self, reference: &PolicyRef) {
        self.wanted.remove(reference);
    }

    /// The objects and whether each is in force, by reference.
    pub fn objects(&self) -> Vec<(PolicyRef, bool)> {
        self.entries
            .iter()
            .map(|(r, e)| (r.clone(), e.checked.is_ok() && e.compile_error.is_none()))
            .collect()
    }
}
