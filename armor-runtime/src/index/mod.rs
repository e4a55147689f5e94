//! The runtime's bookkeeping as a pure reducer: [`WorkloadIndex::apply`] takes one [`Input`]
//! (a kernel event, a container or service that started or stopped, new
//! policies, the outcome of an apply) and the time, updates what it tracks and returns the
//! [`Effect`]s to carry out, in order. It never touches the kernel, the file system, containerd
//! or a clock; [`crate::Runtime`] is the thin shell that feeds it and executes its effects.
//!
//! ## The protocol
//!
//! * The shell resolves what needs the system before it feeds an input: the cgroup id of a
//!   container's task, the cgroups of systemd units ([`Input::Services`]), whether the
//!   enforcer loads rules ahead of a task ([`Input::ContainerDefined`] is sent only then).
//! * Every [`Effect::Apply`] must be answered, before any other input, with
//!   [`Input::Applied`] for its [`Slot`] (one input never asks twice for the same slot):
//!   what each enforcer did with the rules
//!   ([`ApplyOutcome`]). The index then knows the workload's [`Coverage`], reports each rule
//!   the kernel does not carry, and goes on: a container being created is admitted or refused
//!   ([`Effect::Refused`]), a policy replacement moves to the next workload or rolls back.
//! * The effects that follow an answer come before the rest of the effects of the same input
//!   (execute depth-first): a replacement's rollback is a list of applies followed by its
//!   [`Effect::Refused`].
//!
//! ```
//! use armor_core::CompiledPolicy;
//! use armor_runtime::index::{ApplyOutcome, Effect, Input, WorkloadIndex};
//! use armor_runtime::{Now, RuntimeConfig};
//!
//! let mut index = WorkloadIndex::new(RuntimeConfig::default(), CompiledPolicy::build(&armor_core::PolicySet::default()).expect("no policies compile"));
//! let now = Now::system();
//! // Start: the host's rules are applied first.
//! let effects = index.apply(&Input::Start, now);
//! let Some(Effect::Apply(apply)) = effects.first() else { panic!("no apply: {effects:?}") };
//! // An audit-only shell: no enforcer holds anything.
//! let outcome = ApplyOutcome::default();
//! let more = index.apply(&Input::Applied { slot: &apply.slot, outcome: &outcome }, now);
//! assert!(more.is_empty(), "no rules, nothing to report: {more:?}");
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use armor_core::enforcer::{Destination, EnforcerAlert, RuleGap};
use armor_core::inventory::{Inventory, Service};
use armor_core::telemetry::Telemetry;
use armor_core::{CompiledPolicy, Host, RuleSet, Visibility, Workload, WorkloadKey};
use armor_ebpf::{ProcessTree, Translator};

use crate::containerd::ContainerInfo;
use crate::coverage::Coverage;
use crate::runtime::RuntimeConfig;

mod containers;
mod policy;
mod records;
mod services;
mod tracked;

pub(crate) use containers::container_name;
pub use records::MONITOR;
use tracked::{Pending, Throttle, Tracked, kernel_visibility, rule_syscalls};

/// A clock reading: what [`WorkloadIndex::apply`] takes for "now" (the alert throttle reads
/// `instant`, the records' timestamps `wall`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Now {
    /// Monotonic time.
    pub instant: Instant,
    /// Wall-clock time.
    pub wall: SystemTime,
}

impl Now {
    /// The system's clocks, read now.
    pub fn system() -> Self {
        Self {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// A given reading.
    pub fn at(instant: Instant, wall: SystemTime) -> Self {
        Self { instant, wall }
    }
}

/// What changed in the tracked containers and services (what [`crate::Runtime::container_event`]
/// returns, and [`Effect::Changed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContainerChange {
    /// The container (or service) is tracked from now on: its rules are applied (and, where the
    /// enforcer covers it, enforced) and its kernel visibility is set.
    Tracked(WorkloadKey),
    /// The container (its id) or service (its unit) is no longer tracked; its rules were removed.
    Untracked(String),
    /// A defined container's rules were loaded ahead of its task by the enforcers that attach by
    /// name (AppArmor); it is tracked once its task is created.
    Prepared(WorkloadKey),
    /// Nothing changed (already tracked, not tracked, a sandbox, nothing to load ahead, or the
    /// stream ended).
    Unchanged,
}

/// Which container an orchestrator's identity is for ([`Input::ContainerIdentity`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdentityKey {
    /// The container's runtime id (as the pod's status reports it, without `containerd://`).
    ContainerId(String),
    /// The pod's uid and the container's name: known from the pod's spec before the container
    /// exists, and carried by the CRI's labels of the container (`io.kubernetes.pod.uid`,
    /// `io.kubernetes.container.name`).
    PodContainer {
        /// The pod's uid.
        pod_uid: String,
        /// The container's name in the pod.
        container: String,
    },
}

impl IdentityKey {
    /// The key of the container `info` by pod uid and name, when its labels carry them.
    pub fn pod_container_of(info: &ContainerInfo) -> Option<Self> {
        Some(Self::PodContainer {
            pod_uid: info.labels.get("io.kubernetes.pod.uid")?.clone(),
            container: info.labels.get("io.kubernetes.container.name")?.clone(),
        })
    }

    /// Whether it names the container `info`.
    pub fn names(&self, info: &ContainerInfo) -> bool {
        match self {
            Self::ContainerId(id) => *id == info.id,
            pc => Self::pod_container_of(info).as_ref() == Some(pc),
        }
    }
}

/// What the orchestrator says of a container's pod ([`Input::ContainerIdentity`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PodIdentity {
    /// The pod's labels: added to the container's own (they win on the same key).
    pub labels: BTreeMap<String, String>,
    /// The pod's annotations (KubeArmor's posture and visibility annotations).
    pub annotations: BTreeMap<String, String>,
    /// The workload owning the pod.
    pub owner: Option<armor_core::Owner>,
}

impl PodIdentity {
    /// A pod with `labels`, no annotation and no owner.
    pub fn new(labels: BTreeMap<String, String>) -> Self {
        Self {
            labels,
            ..Self::default()
        }
    }

    /// The same with these annotations.
    #[must_use]
    pub fn annotations(mut self, annotations: BTreeMap<String, String>) -> Self {
        self.annotations = annotations;
        self
    }

    /// The same owned by `owner`.
    #[must_use]
    pub fn owner(mut self, owner: armor_core::Owner) -> Self {
        self.owner = Some(owner);
        self
    }
}

/// Where an apply's rules belong, to match its [`Input::Applied`] with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Slot {
    /// The host.
    Host,
    /// The workload (container or service) of a cgroup.
    Cgroup(u64),
    /// A container by id that is not tracked yet: loaded ahead of its task, or being created.
    Container(String),
}

/// One workload's rules to apply with every enforcer ([`Effect::Apply`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Application {
    /// Where the answer goes.
    pub slot: Slot,
    /// The workload, its root and when its rules start.
    pub destination: Destination,
    /// Its rules.
    pub rules: Arc<RuleSet>,
    /// The host (which enforcers that attach by label do not confine).
    pub host: bool,
    /// The container, for the labels its spec names (enforcers that attach by label confine it
    /// only under theirs).
    pub container: Option<ContainerInfo>,
    /// The systemd unit of a service.
    pub unit: Option<String>,
}

/// What one enforcer did with an [`Application`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnforcerOutcome {
    /// Applied and enforced on the workload's processes, except the rules `gaps` lists.
    Held {
        /// The enforcer.
        enforcer: &'static str,
        /// The rules its artefact does not carry ([`RuleGap::list`]).
        gaps: Vec<RuleGap>,
    },
    /// Applied, but the workload's processes are not confined by it (`why`: the label its spec
    /// names is another, it is the host or a service of an enforcer that attaches by label).
    NotCovered {
        /// The enforcer.
        enforcer: &'static str,
        /// Why.
        why: String,
    },
    /// Compiling or applying failed (the whole error chain); nothing of it is applied.
    Failed {
        /// The enforcer.
        enforcer: &'static str,
        /// The error.
        error: String,
    },
}

/// What every enforcer did with an [`Application`] ([`Input::Applied`]); none: audit-only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyOutcome {
    /// One per enforcer, in the shell's order.
    pub enforcers: Vec<EnforcerOutcome>,
}

impl ApplyOutcome {
    /// The outcome of these enforcers' applies.
    pub fn new(enforcers: Vec<EnforcerOutcome>) -> Self {
        Self { enforcers }
    }
}

/// The cgroup of a listed systemd unit that exists, and the cgroups below it
/// ([`Input::Services`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FoundUnit {
    /// Its cgroup id.
    pub cgroup_id: u64,
    /// The cgroups below its own: id → path below the unit's (`/worker`).
    pub below: BTreeMap<u64, String>,
}

impl FoundUnit {
    /// A unit's cgroup `cgroup_id` and those `below` it.
    pub fn new(cgroup_id: u64, below: BTreeMap<u64, String>) -> Self {
        Self { cgroup_id, below }
    }
}

/// What the index is told.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Input<'a> {
    /// The agent starts: the host's rules are applied.
    Start,
    /// A kernel event, with the process tree that saw it.
    Kernel {
        /// The event.
        event: &'a armor_ebpf::Event,
        /// The processes.
        tree: &'a ProcessTree,
    },
    /// A container defined without a task, to load ahead (send only when the enforcer attaches
    /// by name and must have the rules before the task is created).
    ContainerDefined(&'a ContainerInfo),
    /// A container's task runs (created, its entrypoint perhaps not run yet, or started) in
    /// cgroup `cgroup_id`.
    ContainerRunning {
        /// The container.
        info: &'a ContainerInfo,
        /// The cgroup of its task.
        cgroup_id: u64,
    },
    /// The OCI hook reports a container being created: its init process (`info.pid`) is in
    /// `cgroup_id` and has not executed the entrypoint; `rootfs` is its root file system as the
    /// agent sees it. Gives the untracking of an earlier task under its id and an apply; the
    /// answer to that apply gives [`Effect::Changed`] (admitted) or [`Effect::Refused`].
    ContainerCreating {
        /// The container.
        info: &'a ContainerInfo,
        /// Its cgroup.
        cgroup_id: u64,
        /// Its root file system.
        rootfs: &'a Path,
    },
    /// What the orchestrator knows of a container that its runtime does not: its pod's labels
    /// and annotations (Kubernetes keeps them on the pod, not on the container), which policies
    /// and postures select it by, and the pod's owner, which its records carry. Known before
    /// the container is tracked (by pod uid and container name, from the pod's spec), they are
    /// its identity from the start; known after, its rules are applied again when its labels
    /// or annotations changed (how long it ran with other rules is reported), and its records
    /// carry the new identity. `None` forgets it for containers to come; a tracked container
    /// keeps its identity until it stops.
    ContainerIdentity {
        /// Which container.
        key: &'a IdentityKey,
        /// Its pod's identity.
        identity: Option<&'a PodIdentity>,
    },
    /// A container's task stopped (or could not be found): it is untracked and no longer
    /// loaded ahead.
    ContainerStopped {
        /// Its id.
        id: &'a str,
    },
    /// A service of the inventory runs in cgroup `cgroup_id` (see
    /// [`crate::Runtime::add_service_with_cgroup`]).
    ServiceRunning {
        /// The service.
        service: &'a Service,
        /// Its unit's cgroup.
        cgroup_id: u64,
    },
    /// A service is untracked, with the cgroups below its own.
    ServiceStopped {
        /// Its unit.
        unit: &'a str,
    },
    /// The services of `inventory` whose units have cgroups (`found`, by unit): the tracked
    /// services are brought in line (see [`crate::Runtime::sync_services`]).
    Services {
        /// The inventory.
        inventory: &'a Inventory,
        /// The units found, by name.
        found: &'a BTreeMap<String, FoundUnit>,
    },
    /// New policies for every workload, all or none (see
    /// [`crate::Runtime::replace_policy`]); a refusal is [`Effect::Refused`].
    ReplacePolicy(&'a Arc<CompiledPolicy>),
    /// A new configuration (see [`crate::Runtime::reconfigure`]): every workload's rules and
    /// visibility derived again under it, all or none; a refusal is [`Effect::Refused`] and
    /// the previous configuration stays.
    Reconfigure(&'a RuntimeConfig),
    /// What the enforcers did with the [`Effect::Apply`] of `slot`.
    Applied {
        /// The apply's slot.
        slot: &'a Slot,
        /// What they did.
        outcome: &'a ApplyOutcome,
    },
}

/// What the shell must do, in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Effect {
    /// Compile and apply the rules with every enforcer, then answer with [`Input::Applied`].
    Apply(Box<Application>),
    /// Remove the workload's rules from every enforcer, reporting a failure.
    Remove(WorkloadKey),
    /// Remove whatever an enforcer applied of a refused workload; an enforcer that applied
    /// nothing answers that it does not know it, which is not a problem.
    Discard(WorkloadKey),
    /// Set the cgroup's kernel visibility.
    SetVisibility {
        /// The cgroup.
        cgroup_id: u64,
        /// Its workload (for a problem report).
        key: WorkloadKey,
        /// What to make visible.
        visibility: Visibility,
        /// The syscalls (x86_64 numbers) its syscall rules name, reported whatever the
        /// visibility.
        syscalls: Vec<u16>,
    },
    /// Remove the cgroup's kernel visibility entry.
    ClearVisibility {
        /// The cgroup.
        cgroup_id: u64,
        /// What it was (for a problem report).
        name: String,
    },
    /// Emit a record (boxed: records are large).
    Emit(Box<Telemetry>),
    /// Report a problem.
    Problem(String),
    /// The tracked workloads changed.
    Changed(ContainerChange),
    /// A container being created, or a policy replacement, is refused: nothing of it is in
    /// force.
    Refused {
        /// The workload whose rules could not be put in force.
        workload: String,
        /// Why.
        reason: String,
    },
}

/// The host as `config` names and labels it.
fn host_workload(config: &RuntimeConfig) -> Workload {
    let mut h = Host::new(config.host_name.clone());
    h.labels = config.host_labels.clone();
    Workload::Host(h)
}

/// Every workload the agent tracks, with its rules, visibility and coverage; a pure reducer
/// (see the [module](self) for its protocol).
#[derive(Debug)]
pub struct WorkloadIndex {
    config: RuntimeConfig,
    policy: Arc<CompiledPolicy>,
    host: Tracked,
    /// Tracked containers and services by cgroup id.
    workloads: HashMap<u64, Tracked>,
    /// Container id → cgroup id.
    ids: HashMap<String, u64>,
    /// Tracked services: unit → cgroup id (their `Tracked` is in `workloads`).
    units: HashMap<String, u64>,
    /// The tracked cgroups below a tracked service's: unit → cgroup id → path below the unit's.
    unit_children: HashMap<String, BTreeMap<u64, String>>,
    /// Containers defined but without a task yet whose rules were loaded ahead, by id.
    prepared: HashMap<String, WorkloadKey>,
    /// Pod identities of containers ([`Input::ContainerIdentity`]).
    identities: HashMap<IdentityKey, PodIdentity>,
    /// The time of the input being taken.
    clock: Option<Now>,
    /// Applies waiting for their [`Input::Applied`].
    pending: HashMap<Slot, Pending>,
    /// A policy replacement under way.
    replacing: Option<policy::Replacement>,
    throttles: HashMap<String, Throttle>,
    /// Kernel events to monitor records: remembers sockets by (pid, fd).
    translator: Translator,
}

impl WorkloadIndex {
    /// An index with `policy` and no workload but the host (named and labelled by `config`),
    /// whose rules are applied on [`Input::Start`].
    pub fn new(config: RuntimeConfig, policy: impl Into<Arc<CompiledPolicy>>) -> Self {
        let policy = policy.into();
        let host = Tracked::new(
            WorkloadKey::new("host"),
            host_workload(&config),
            None,
            None,
            &config.posture,
            &policy,
        );
        Self {
            config,
            policy,
            host,
            workloads: HashMap::new(),
            ids: HashMap::new(),
            units: HashMap::new(),
            unit_children: HashMap::new(),
            prepared: HashMap::new(),
            identities: HashMap::new(),
            clock: None,
            pending: HashMap::new(),
            replacing: None,
            throttles: HashMap::new(),
            translator: Translator::default(),
        }
    }

    /// Takes `input` at `now`: updates the index and returns what to do, in order.
    pub fn apply(&mut self, input: &Input<'_>, now: Now) -> Vec<Effect> {
        self.clock = Some(now);
        match *input {
            Input::Start => vec![self.apply_in_place(Slot::Host)],
            Input::Kernel { event, tree } => self
                .kernel_records(event, tree, now)
                .into_iter()
                .map(|r| Effect::Emit(Box::new(r)))
                .collect(),
            Input::ContainerDefined(info) => self.container_defined(info),
            Input::ContainerRunning { info, cgroup_id } => self.container_running(info, cgroup_id),
            Input::ContainerCreating {
                info,
                cgroup_id,
                rootfs,
            } => self.container_creating(info, cgroup_id, rootfs),
            Input::ContainerStopped { id } => self.container_stopped(id),
            Input::ContainerIdentity { key, identity } => self.container_identity(key, identity),
            Input::ServiceRunning { service, cgroup_id } => {
                self.service_running(service, cgroup_id)
            }
            Input::ServiceStopped { unit } => self.service_stopped(unit),
            Input::Services { inventory, found } => self.services_found(inventory, found),
            Input::ReplacePolicy(policy) => self.replace_policy(policy),
            Input::Reconfigure(config) => self.reconfigure(config),
            Input::Applied { slot, outcome } => self.applied(slot, outcome),
        }
    }

    /// The compiled policies in force.
    pub fn policy(&self) -> &Arc<CompiledPolicy> {
        &self.policy
    }

    /// The configuration in force.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The pod identity known for the container `info` ([`Input::ContainerIdentity`]), by its
    /// runtime id or by its pod uid and name.
    pub fn identity_of(&self, info: &ContainerInfo) -> Option<&PodIdentity> {
        self.identities
            .get(&IdentityKey::ContainerId(info.id.clone()))
            .or_else(|| IdentityKey::pod_container_of(info).and_then(|k| self.identities.get(&k)))
    }

    /// The host's kernel visibility (the default for cgroups without an entry).
    pub fn host_visibility(&self) -> Visibility {
        kernel_visibility(&self.host.visibility, &self.host.rules)
    }

    /// The syscalls (x86_64 numbers) the host's syscall rules name.
    pub fn host_syscalls(&self) -> Vec<u16> {
        rule_syscalls(&self.host.rules)
    }

    /// The sorted keys of the tracked services (`services`) or containers.
    fn keys_of(&self, services: bool) -> Vec<WorkloadKey> {
        let mut keys: Vec<WorkloadKey> = self
            .workloads
            .values()
            .filter(|t| t.service.is_some() == services)
            .map(|t| t.key.clone())
            .collect();
        keys.sort();
        keys
    }

    /// The keys of the tracked containers.
    pub fn containers(&self) -> Vec<WorkloadKey> {
        self.keys_of(false)
    }

    /// The ids of the tracked containers (created or running), sorted.
    pub fn container_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.ids.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The keys of the tracked services and of the cgroups below theirs.
    pub fn services(&self) -> Vec<WorkloadKey> {
        self.keys_of(true)
    }

    /// The units of the tracked services.
    pub fn service_units(&self) -> Vec<String> {
        let mut units: Vec<String> = self.units.keys().cloned().collect();
        units.sort();
        units
    }

    /// Every workload with its coverage, the host first, the others by key.
    pub fn coverages(&self) -> Vec<(WorkloadKey, Coverage)> {
        let mut rest: Vec<(WorkloadKey, Coverage)> = self
            .workloads
            .values()
            .map(|t| (t.key.clone(), t.coverage.clone()))
            .collect();
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        let mut all = vec![(self.host.key.clone(), self.host.coverage.clone())];
        all.extend(rest);
        all
    }

    /// What is not enforced of each policy ([`crate::coverage::policy_gaps`] over every
    /// tracked workload, the host included).
    pub fn policy_gaps(&self) -> BTreeMap<crate::coverage::PolicyName, Vec<String>> {
        crate::coverage::policy_gaps(
            std::iter::once(&self.host)
                .chain(self.workloads.values())
                .map(|t| (&t.key, &t.coverage, &*t.rules)),
        )
    }

    /// The workloads whose enforcer state must be kept: the host, the tracked ones and the
    /// containers loaded ahead of their task.
    pub fn keep(&self) -> Vec<WorkloadKey> {
        let mut keep: Vec<WorkloadKey> = self.workloads.values().map(|t| t.key.clone()).collect();
        keep.extend(self.prepared.values().cloned());
        keep.push(self.host.key.clone());
        keep
    }

    /// The pid of the task a tracked container runs (`None`: not tracked, or no pid known).
    pub fn task_of(&self, id: &str) -> Option<u32> {
        let t = self.workloads.get(self.ids.get(id)?)?;
        t.info.as_ref()?.pid
    }

    /// The key of a tracked container.
    pub fn container_key(&self, id: &str) -> Option<&WorkloadKey> {
        Some(&self.workloads.get(self.ids.get(id)?)?.key)
    }

    /// The tracked workload at `slot`, if any.
    fn at_mut(&mut self, slot: &Slot) -> Option<&mut Tracked> {
        match slot {
            Slot::Host => Some(&mut self.host),
            Slot::Cgroup(id) => self.workloads.get_mut(id),
            Slot::Container(_) => None,
        }
    }
}

#[cfg(test)]
mod tests;
