//! The runtime ([`Runtime`]), what it keeps per tracked workload, and its accessors.

use super::*;

/// A workload the runtime tracks.
#[derive(Debug, Clone)]
pub(super) struct Tracked {
    pub(super) key: WorkloadKey,
    pub(super) workload: Workload,
    pub(super) info: Option<ContainerInfo>,
    /// The inventory entry of a systemd service tracked as a workload.
    pub(super) service: Option<Service>,
    pub(super) rules: Arc<RuleSet>,
    pub(super) visibility: Visibility,
    /// Which of its rules a kernel enforcer holds (Block decisions of those come from it).
    pub(super) coverage: Coverage,
    /// An enforcer holds this workload's rules (to remove when it goes), enforced or not.
    pub(super) applied: bool,
}

impl Tracked {
    /// `workload` as `key`, with the rules `policy` selects for it under the posture `postures`
    /// gives it, and its visibility; nothing applied yet. `info` or `service` is where it came
    /// from (none for the host).
    pub(super) fn new(
        key: WorkloadKey,
        workload: Workload,
        info: Option<ContainerInfo>,
        service: Option<Service>,
        postures: &PostureConfig,
        policy: &CompiledPolicy,
    ) -> Self {
        let (posture, _) = postures.posture_for(&workload);
        let (visibility, _) = postures.visibility_for(&workload);
        Self {
            key,
            rules: policy.rule_set(&workload, posture),
            workload,
            info,
            service,
            visibility,
            coverage: Coverage::NoRules,
            applied: false,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Throttle {
    pub(super) window_start: Option<Instant>,
    pub(super) count: u32,
    pub(super) dropping_until: Option<Instant>,
}

/// What [`Runtime::container_event`] did.
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

/// The agent runtime. Feed it events with [`Runtime::handle`]; it returns the records to emit.
pub struct Runtime {
    pub(super) config: RuntimeConfig,
    pub(super) policy: Arc<CompiledPolicy>,
    pub(super) host: Tracked,
    pub(super) containers: HashMap<u64, Tracked>,
    pub(super) ids: HashMap<String, u64>,
    /// Tracked services: unit → cgroup id (their `Tracked` is in `containers`).
    pub(super) units: HashMap<String, u64>,
    /// The tracked cgroups below a tracked service's: unit → cgroup id → path below the unit's.
    pub(super) unit_children: HashMap<String, BTreeMap<u64, String>>,
    /// Containers defined but without a task yet whose rules were loaded ahead, by id.
    pub(super) prepared: HashMap<String, WorkloadKey>,
    pub(super) enforcers: Vec<Arc<dyn Enforcer>>,
    pub(super) enforcement: Option<Enforcement>,
    pub(super) dropped_alerts: u64,
    pub(super) sink: Option<Arc<dyn VisibilitySink>>,
    pub(super) throttles: HashMap<String, Throttle>,
    /// Kernel events to monitor records: remembers sockets by (pid, fd).
    pub(super) translator: Translator,
    pub(super) problems: Vec<String>,
    /// Applies that failed since the start.
    pub(super) apply_failures: u64,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("containers", &self.containers.len())
            .field("enforcers", &self.enforcers.len())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime with `policy`, the `enforcers` to apply rules with (empty: audit-only
    /// monitoring) and where to set kernel visibility. Every enforcer that applies a workload's
    /// rules is taken to enforce them; use [`Runtime::with_enforcement`] for the enforcer the
    /// user chose, which also knows which workloads it really covers and delivers its alerts.
    pub fn new(
        config: RuntimeConfig,
        policy: CompiledPolicy,
        enforcers: Vec<Arc<dyn Enforcer>>,
        sink: Option<Arc<dyn VisibilitySink>>,
    ) -> Self {
        Self::build(config, policy, enforcers, None, sink)
    }

    /// A runtime enforcing with `enforcement` (see [`Enforcement::select`]; audit-only when it
    /// holds no enforcer). Each workload's rules are compiled and applied for its
    /// [`Destination`](armor_core::enforcer::Destination): the host and services with root `/`,
    /// a running container with `/proc/PID/root` of its task, a container being created with
    /// its root file system and [`Start::FirstExec`](armor_core::enforcer::Start); the enforcer
    /// keeps none of it. Its alerts come out of [`Runtime::enforcer_records`].
    pub fn with_enforcement(
        config: RuntimeConfig,
        policy: CompiledPolicy,
        enforcement: Enforcement,
        sink: Option<Arc<dyn VisibilitySink>>,
    ) -> Self {
        let enforcers = enforcement.enforcer().into_iter().collect();
        Self::build(config, policy, enforcers, Some(enforcement), sink)
    }

    pub(super) fn build(
        config: RuntimeConfig,
        policy: CompiledPolicy,
        enforcers: Vec<Arc<dyn Enforcer>>,
        enforcement: Option<Enforcement>,
        sink: Option<Arc<dyn VisibilitySink>>,
    ) -> Self {
        let policy = Arc::new(policy);
        let mut h = Host::new(config.host_name.clone());
        h.labels = config.host_labels.clone();
        let host = Tracked::new(
            WorkloadKey::new("host"),
            Workload::Host(h),
            None,
            None,
            &config.posture,
            &policy,
        );
        let mut rt = Self {
            config,
            policy,
            host,
            containers: HashMap::new(),
            ids: HashMap::new(),
            units: HashMap::new(),
            unit_children: HashMap::new(),
            prepared: HashMap::new(),
            enforcers,
            enforcement,
            dropped_alerts: 0,
            sink,
            throttles: HashMap::new(),
            translator: Translator::default(),
            problems: Vec::new(),
            apply_failures: 0,
        };
        let mut host = rt.host.clone();
        rt.apply_enforcers(&mut host);
        rt.host = host;
        rt
    }

    /// The host's kernel visibility (the default for cgroups without an entry).
    pub fn host_visibility(&self) -> Visibility {
        kernel_visibility(&self.host.visibility, &self.host.rules)
    }

    /// Problems found since the last call (enforcer failures, unusable annotations).
    pub fn take_problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.problems)
    }

    /// The compiled policies in force.
    pub fn policy(&self) -> &Arc<CompiledPolicy> {
        &self.policy
    }

    /// The sorted keys of the tracked services (`services`) or containers.
    pub(super) fn keys_of(&self, services: bool) -> Vec<WorkloadKey> {
        let mut keys: Vec<WorkloadKey> = self
            .containers
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

    /// The units of the tracked services.
    pub fn service_units(&self) -> Vec<String> {
        let mut units: Vec<String> = self.units.keys().cloned().collect();
        units.sort();
        units
    }

    /// The keys of the tracked services (`namespace/unit`) and of the cgroups below theirs
    /// (`namespace/unit/path`), with their cgroup ids.
    pub fn services(&self) -> Vec<WorkloadKey> {
        self.keys_of(true)
    }

    /// The enforcer in use and its alerts (`None` for a runtime made with [`Runtime::new`]).
    pub fn enforcement(&self) -> Option<&Enforcement> {
        self.enforcement.as_ref()
    }
}
