//! The pipeline: kernel events → workload identity → policy decision → KubeArmor Log/Alert.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use armor_core::enforcer::{Destination, Enforcer, EnforcerAlert, RuleGap, Start};
use armor_core::inventory::{Inventory, Service};
use armor_core::telemetry::{ACTION_AUDIT_BLOCK, RecordType, Telemetry};
use armor_core::{
    Category, CompiledPolicy, Config, Container, Event, Host, PolicySet, PostureConfig, RuleSet,
    Verdict, Visibility, Workload, WorkloadKey,
};
use armor_ebpf::{ProcessTree, Translator};

use crate::containerd::{ContainerEvent, ContainerInfo};
use crate::coverage::{Coverage, Readiness};
use crate::enforcement::Enforcement;
use crate::error::{Error, Result};
use crate::format;
use crate::identity;

/// The `Enforcer` field of alerts matched in user space.
pub const MONITOR: &str = "eBPF Monitor";

/// Where the runtime sets per-cgroup visibility in the kernel (the event source's
/// [`armor_ebpf::Controls`]; tests record the calls).
pub trait VisibilitySink: Send + Sync {
    /// Makes `v` visible for the cgroup.
    fn set(&self, cgroup_id: u64, v: &Visibility) -> Result<()>;
    /// Removes the cgroup's entry.
    fn clear(&self, cgroup_id: u64) -> Result<()>;
}

impl VisibilitySink for armor_ebpf::Controls {
    fn set(&self, cgroup_id: u64, v: &Visibility) -> Result<()> {
        Ok(self.set_visibility(cgroup_id, v)?)
    }
    fn clear(&self, cgroup_id: u64) -> Result<()> {
        Ok(self.clear_visibility(cgroup_id)?)
    }
}

/// Runtime settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// `ClusterName`.
    pub cluster_name: String,
    /// `HostName` and the host workload's node name.
    pub host_name: String,
    /// Node labels (for host policies).
    pub host_labels: std::collections::BTreeMap<String, String>,
    /// Default postures, visibility and namespace annotations.
    pub posture: PostureConfig,
    /// Alerts per second per workload before throttling (0: never throttle).
    pub max_alerts_per_sec: u32,
    /// How long alerts are dropped once the limit is hit.
    pub throttle: Duration,
    /// Refuse what would run with rules outside the kernel: a container reported by the OCI
    /// hook whose rules are not all enforced ([`Coverage::complete`]) is refused, and a
    /// policy replacement that would leave a selected workload so is rolled back. Without it,
    /// such rules are reported per rule and their Block decisions alerted as `Audit (Block)`.
    pub require_enforcement: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cluster_name: "default".to_string(),
            host_name: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            host_labels: std::collections::BTreeMap::new(),
            posture: PostureConfig::new(),
            max_alerts_per_sec: 10,
            throttle: Duration::from_secs(30),
            require_enforcement: false,
        }
    }
}

impl RuntimeConfig {
    /// Sets the alert throttling.
    #[must_use]
    pub fn throttling(mut self, max_alerts_per_sec: u32, throttle: Duration) -> Self {
        self.max_alerts_per_sec = max_alerts_per_sec;
        self.throttle = throttle;
        self
    }

    /// Sets [`RuntimeConfig::require_enforcement`].
    #[must_use]
    pub fn require_enforcement(mut self, require: bool) -> Self {
        self.require_enforcement = require;
        self
    }
}

/// Loads and compiles every policy under `paths`.
pub fn load_policies<P: AsRef<Path>>(paths: &[P]) -> Result<CompiledPolicy> {
    let set = PolicySet::load_paths(paths, &Config::default()).map_err(Error::Policies)?;
    CompiledPolicy::build(&set).map_err(Error::Build)
}

/// A workload the runtime tracks.
#[derive(Debug, Clone)]
struct Tracked {
    key: WorkloadKey,
    workload: Workload,
    info: Option<ContainerInfo>,
    /// The inventory entry of a systemd service tracked as a workload.
    service: Option<Service>,
    rules: Arc<RuleSet>,
    visibility: Visibility,
    /// Which of its rules a kernel enforcer holds (Block decisions of those come from it).
    coverage: Coverage,
    /// An enforcer holds this workload's rules (to remove when it goes), enforced or not.
    applied: bool,
}

#[derive(Debug, Default)]
struct Throttle {
    window_start: Option<Instant>,
    count: u32,
    dropping_until: Option<Instant>,
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
    config: RuntimeConfig,
    policy: Arc<CompiledPolicy>,
    host: Tracked,
    containers: HashMap<u64, Tracked>,
    ids: HashMap<String, u64>,
    /// Tracked services: unit → cgroup id (their `Tracked` is in `containers`).
    units: HashMap<String, u64>,
    /// The tracked cgroups below a tracked service's: unit → cgroup id → path below the unit's.
    unit_children: HashMap<String, BTreeMap<u64, String>>,
    /// Containers defined but without a task yet whose rules were loaded ahead, by id.
    prepared: HashMap<String, WorkloadKey>,
    enforcers: Vec<Arc<dyn Enforcer>>,
    enforcement: Option<Enforcement>,
    dropped_alerts: u64,
    sink: Option<Arc<dyn VisibilitySink>>,
    throttles: HashMap<String, Throttle>,
    /// Kernel events to monitor records: remembers sockets by (pid, fd).
    translator: Translator,
    problems: Vec<String>,
    /// Applies that failed since the start.
    apply_failures: u64,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("containers", &self.containers.len())
            .field("enforcers", &self.enforcers.len())
            .finish_non_exhaustive()
    }
}

/// The kernel visibility a workload needs: its own, plus every category its rules can alert on
/// (alerts need the events even when logs are off).
fn kernel_visibility(v: &Visibility, rules: &RuleSet) -> Visibility {
    let mut k = *v;
    if rules.rule_ids().is_empty() {
        return k;
    }
    k.process = true;
    k.file = true;
    k.network = true;
    k
}

/// Sets the workload identity fields of `r` for a container or service (the host has none): a
/// service's `ContainerID` is its unit and its `ContainerImage` is empty.
fn identify(t: &Tracked, r: &mut Telemetry) {
    let Workload::Container(c) = &t.workload else {
        return;
    };
    let (id, image) = match (&t.info, &t.service) {
        (Some(info), _) => (info.id.clone(), info.image.clone()),
        (None, Some(s)) => (s.unit.clone(), String::new()),
        (None, None) => return,
    };
    r.namespace_name = Some(c.namespace.clone());
    r.pod_name = c.pod.clone();
    r.labels = Some(labels_text(c));
    r.container_id = Some(id);
    r.container_name = Some(c.name.clone());
    r.container_image = Some(image);
}

/// The id of the cgroup v2 that process `pid` is in.
fn cgroup_of(pid: u32) -> Result<u64> {
    let path = identity::proc_cgroup(pid)?;
    identity::cgroup_id(&identity::cgroup2_root()?, &path)
}

/// The coverage of a workload: `selected` (it has rules), no enforcer at all, the enforcers
/// that hold its rules with the rules each leaves out, and why the others do not. A rule is a
/// gap only when every holding enforcer leaves it out.
fn coverage_of(
    selected: bool,
    no_enforcer: bool,
    holding: Vec<(&'static str, Vec<RuleGap>)>,
    why_not: Vec<String>,
) -> Coverage {
    if !selected {
        return Coverage::NoRules;
    }
    let mut holding = holding.into_iter();
    let Some((enforcer, mut gaps)) = holding.next() else {
        return Coverage::MonitoredOnly {
            reason: if no_enforcer {
                "no kernel enforcer (audit-only)".to_string()
            } else {
                why_not.join("; ")
            },
        };
    };
    for (_, other) in holding {
        gaps.retain(|g| other.iter().any(|o| o.rule == g.rule));
    }
    if gaps.is_empty() {
        Coverage::Enforced { enforcer }
    } else {
        Coverage::Partial { enforcer, gaps }
    }
}

/// Where `t`'s rules go: the host and services see the host's root file system (a service's own
/// `RootDirectory=` is not followed); a container being created (`creating`: its root file
/// system as this process sees it, the init process has not switched to it yet) takes its rules
/// from its first exec; a running container's files are under `/proc/PID/root` of its task.
fn destination(t: &Tracked, creating: Option<&Path>) -> Destination {
    let d = Destination::new(t.key.clone());
    if t.workload.is_host() || t.service.is_some() {
        return d.with_root("/");
    }
    if let Some(rootfs) = creating {
        return d.with_root(rootfs).starting(Start::FirstExec);
    }
    match t.info.as_ref().and_then(|i| i.pid) {
        Some(pid) => d.with_root(format!("/proc/{pid}/root")),
        None => d,
    }
}

/// A clock reading: what [`Runtime::handle_at`] takes for "now" (the alert throttle reads
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

/// The fields every record of `ev` shares: time, cluster and host, the workload's identity, the
/// process and its parent.
fn base_record(
    config: &RuntimeConfig,
    t: &Tracked,
    ev: &armor_ebpf::Event,
    tree: &ProcessTree,
    wall: SystemTime,
) -> Telemetry {
    let mut r = Telemetry::default();
    let (secs, updated) = format::at(wall);
    r.timestamp = Some(secs);
    r.updated_time = Some(updated);
    r.cluster_name = Some(config.cluster_name.clone());
    r.host_name = Some(config.host_name.clone());
    identify(t, &mut r);
    r.host_pid = Some(i64::from(ev.pid));
    r.host_ppid = Some(i64::from(ev.ppid));
    r.pid = Some(i64::from(ev.ns_pid));
    r.ppid = Some(i64::from(ev.ns_ppid));
    r.uid = Some(i64::from(ev.uid));
    r.process_name = tree.get(ev.pid).map(|p| p.exe.clone());
    r.parent_process_name = tree.get(ev.ppid).map(|p| p.exe.clone());
    r.cwd = tree.cwd(ev.pid).map(str::to_string);
    r
}

/// The monitor's alerts for `decide` (the operations of one event) under `t`'s rules: every
/// decision with an alert, except Block decisions the kernel enforcer makes (it reports those
/// itself); a Block the kernel does not make is `Audit (Block)`.
fn monitor_alerts(
    t: &Tracked,
    decide: &[(Event, Category)],
    base: &Telemetry,
    result: &str,
) -> Vec<Telemetry> {
    let mut out = Vec::new();
    for (event, op) in decide {
        let d = t.rules.decide(event);
        let Some(alert) = d.alert() else {
            continue;
        };
        if d.verdict == Verdict::Block && t.coverage.kernel_decides(&d) {
            continue;
        }
        let mut a = base.with_decision(&d, MONITOR);
        a.operation = Some(op.to_string());
        a.result = Some(result.to_string());
        a.enforcer = Some(MONITOR.to_string());
        a.action = Some(if d.verdict == Verdict::Block {
            ACTION_AUDIT_BLOCK.to_string()
        } else {
            alert.action.to_string()
        });
        out.push(a);
    }
    out
}

/// `alerts` of workload `key` at `now`, unless its alert rate passed the configured maximum:
/// then one `AlertThreshold` SystemEvent, and nothing more for the throttle period.
fn throttle(
    throttles: &mut HashMap<String, Throttle>,
    config: &RuntimeConfig,
    key: &str,
    alerts: Vec<Telemetry>,
    base: &Telemetry,
    now: Instant,
) -> Vec<Telemetry> {
    if config.max_alerts_per_sec == 0 {
        return alerts;
    }
    let th = throttles.entry(key.to_string()).or_default();
    if let Some(until) = th.dropping_until {
        if now < until {
            return Vec::new();
        }
        th.dropping_until = None;
        th.window_start = None;
    }
    match th.window_start {
        Some(start) if now.saturating_duration_since(start) < Duration::from_secs(1) => {}
        _ => {
            th.window_start = Some(now);
            th.count = 0;
        }
    }
    let n = u32::try_from(alerts.len()).unwrap_or(u32::MAX);
    th.count = th.count.saturating_add(n);
    if th.count <= config.max_alerts_per_sec {
        return alerts;
    }
    th.dropping_until = Some(now + config.throttle);
    vec![Telemetry::alert_threshold(
        base,
        key,
        config.max_alerts_per_sec,
        config.throttle,
    )]
}

/// KubeArmor's `Labels`: `k=v` pairs joined by commas, in key order.
fn labels_text(c: &Container) -> String {
    c.labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
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
    /// holds no enforcer). Before a container's rules are applied, BPF-LSM is told where the
    /// container's files are (`/proc/PID/root` of its task) so its (device, inode) rules work;
    /// the enforcer's alerts come out of [`Runtime::enforcer_records`].
    pub fn with_enforcement(
        config: RuntimeConfig,
        policy: CompiledPolicy,
        enforcement: Enforcement,
        sink: Option<Arc<dyn VisibilitySink>>,
    ) -> Self {
        let enforcers = enforcement.enforcer().into_iter().collect();
        Self::build(config, policy, enforcers, Some(enforcement), sink)
    }

    fn build(
        config: RuntimeConfig,
        policy: CompiledPolicy,
        enforcers: Vec<Arc<dyn Enforcer>>,
        enforcement: Option<Enforcement>,
        sink: Option<Arc<dyn VisibilitySink>>,
    ) -> Self {
        let policy = Arc::new(policy);
        let mut h = Host::new(config.host_name.clone());
        h.labels = config.host_labels.clone();
        let workload = Workload::Host(h);
        let (posture, _) = config.posture.posture_for(&workload);
        let (visibility, _) = config.posture.visibility_for(&workload);
        let host = Tracked {
            key: WorkloadKey::new("host"),
            rules: policy.rule_set(&workload, posture),
            workload,
            info: None,
            service: None,
            visibility,
            coverage: Coverage::NoRules,
            applied: false,
        };
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
    fn keys_of(&self, services: bool) -> Vec<WorkloadKey> {
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

    fn apply_enforcers(&mut self, t: &mut Tracked) -> usize {
        self.apply_enforcers_ahead(t, false, None)
    }

    /// Applies `t`'s rules and sets its [`Coverage`]; `ahead`: for a container without a
    /// process yet, whose coverage is checked (and reported) once its task exists; `creating`:
    /// for a container being created (reported by the OCI hook), its root file system as this
    /// process sees it. Reports, once per change of coverage, each rule the kernel does not
    /// carry (policy, field, position, reason). Returns how many enforcers failed to apply.
    fn apply_enforcers_ahead(
        &mut self,
        t: &mut Tracked,
        ahead: bool,
        creating: Option<&Path>,
    ) -> usize {
        let before = std::mem::replace(&mut t.coverage, Coverage::NoRules);
        t.applied = false;
        let dest = destination(t, creating);
        let selected = !t.rules.rule_ids().is_empty();
        let mut failed = 0;
        // The enforcers that hold and cover the rules, with the rules each leaves out.
        let mut holding: Vec<(&'static str, Vec<RuleGap>)> = Vec::new();
        let mut why_not: Vec<String> = Vec::new();
        for e in &self.enforcers {
            let result = e
                .compile(&dest, &t.rules)
                .map_err(|err| err.to_string())
                .and_then(|a| {
                    let gaps = RuleGap::list(e.name(), &t.rules, a.as_ref());
                    e.apply(&dest, a.as_ref())
                        .map(|_| gaps)
                        .map_err(|err| err.to_string())
                });
            let covered = self
                .enforcement
                .as_ref()
                .map_or(Ok(()), |en| match &t.service {
                    Some(s) => en.covers_service(&t.key, &s.unit),
                    None => en.covers(&t.key, t.workload.is_host(), t.info.as_ref()),
                });
            if result.is_ok() {
                t.applied = true;
            }
            match (result, covered) {
                (Ok(gaps), Ok(())) => holding.push((e.name(), gaps)),
                (Ok(_), Err(why)) => {
                    if !ahead && selected {
                        self.problems.push(format!(
                            "{}: {}: rules loaded but not enforced ({why}); its Block rules \
                             are reported as `Audit (Block)`",
                            e.name(),
                            t.key
                        ));
                    }
                    why_not.push(format!("{}: {why}", e.name()));
                }
                (Err(err), _) => {
                    failed += 1;
                    self.apply_failures += 1;
                    self.problems
                        .push(format!("{}: {}: {err}", e.name(), t.key));
                    why_not.push(format!("{} failed: {err}", e.name()));
                }
            }
        }
        t.coverage = coverage_of(selected, self.enforcers.is_empty(), holding, why_not);
        if !ahead
            && t.coverage != before
            && let Coverage::Partial { gaps, .. } = &t.coverage
        {
            for g in gaps {
                self.problems.push(format!(
                    "{}: {g}; the monitor also decides it and alerts its Block decisions as \
                     `Audit (Block)`",
                    t.key
                ));
            }
        }
        failed
    }

    /// What the runtime enforces now, per workload (the host first), and the apply failures
    /// since it started.
    pub fn readiness(&self) -> Readiness {
        let mut rest: Vec<(WorkloadKey, Coverage)> = self
            .containers
            .values()
            .map(|t| (t.key.clone(), t.coverage.clone()))
            .collect();
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        let mut workloads = vec![(self.host.key.clone(), self.host.coverage.clone())];
        workloads.extend(rest);
        Readiness {
            enforcer: match &self.enforcement {
                Some(en) => en.name(),
                None => self.enforcers.first().map(|e| e.name()),
            },
            workloads,
            apply_failures: self.apply_failures,
        }
    }

    fn set_visibility(&mut self, cgroup_id: u64, t: &Tracked) {
        if let Some(sink) = &self.sink
            && let Err(e) = sink.set(cgroup_id, &kernel_visibility(&t.visibility, &t.rules))
        {
            self.problems.push(format!("visibility of {}: {e}", t.key));
        }
    }

    fn track(&self, info: &ContainerInfo, key: WorkloadKey) -> Tracked {
        let mut c = Container::new(info.namespace(), info.name());
        c.labels = info
            .labels
            .iter()
            .filter(|(k, _)| {
                !k.starts_with("io.kubernetes.") && !k.starts_with("io.cri-containerd.")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        c.pod = info.pod();
        let workload = Workload::Container(c);
        let (posture, _) = self.config.posture.posture_for(&workload);
        let (visibility, _) = self.config.posture.visibility_for(&workload);
        Tracked {
            key,
            rules: self.policy.rule_set(&workload, posture),
            workload,
            info: Some(info.clone()),
            service: None,
            visibility,
            coverage: Coverage::NoRules,
            applied: false,
        }
    }

    /// Starts tracking a container whose task runs (its cgroup is found through the pid):
    /// applies its rules with every enforcer and sets its kernel visibility.
    pub fn add_container(&mut self, info: &ContainerInfo) -> Result<WorkloadKey> {
        let pid = info.pid.ok_or(Error::Parse {
            what: "container without a running task",
            input: info.id.clone(),
        })?;
        Ok(self.add_container_with_cgroup(info, cgroup_of(pid)?))
    }

    /// A container's workload name: `namespace/pod/container`, or `namespace/container`.
    fn container_name(info: &ContainerInfo) -> String {
        match info.pod() {
            Some(pod) => format!("{}/{}/{}", info.namespace(), pod, info.name()),
            None => format!("{}/{}", info.namespace(), info.name()),
        }
    }

    /// Like [`Runtime::add_container`] with a known cgroup id.
    pub fn add_container_with_cgroup(
        &mut self,
        info: &ContainerInfo,
        cgroup_id: u64,
    ) -> WorkloadKey {
        let key = WorkloadKey::new(Self::container_name(info)).with_cgroup(cgroup_id);
        let mut t = self.track(info, key.clone());
        self.apply_enforcers(&mut t);
        self.set_visibility(cgroup_id, &t);
        self.ids.insert(info.id.clone(), cgroup_id);
        self.containers.insert(cgroup_id, t);
        key
    }

    fn track_service(&self, service: &Service, key: WorkloadKey) -> Tracked {
        let workload = service.workload();
        let (posture, _) = self.config.posture.posture_for(&workload);
        let (visibility, _) = self.config.posture.visibility_for(&workload);
        Tracked {
            key,
            rules: self.policy.rule_set(&workload, posture),
            workload,
            info: None,
            service: Some(service.clone()),
            visibility,
            coverage: Coverage::NoRules,
            applied: false,
        }
    }

    /// Starts tracking a service of the inventory whose cgroup has id `cgroup_id`, exactly as a
    /// container: the rules of the policies selecting [`Service::workload`] are applied with
    /// every enforcer (BPF-LSM scopes them to the cgroup, with the host's root file system),
    /// its kernel visibility is set, and its processes' records carry its identity
    /// (`NamespaceName`, `ContainerName` = the service's name, `Labels`, `ContainerID` = the
    /// unit, an empty `ContainerImage`) instead of the host's, so host policies no longer apply
    /// to them. The key is `namespace/unit` (`web/nginx.service`), which no container's key can
    /// be. A service already tracked under another cgroup id is replaced; a cgroup id a
    /// container holds is left to the container (reported through
    /// [`Runtime::take_problems`]).
    pub fn add_service_with_cgroup(&mut self, service: &Service, cgroup_id: u64) -> WorkloadKey {
        if self.units.get(&service.unit) != Some(&cgroup_id) {
            self.remove_service(&service.unit);
        }
        let (key, added) = self.add_service_cgroup(service, cgroup_id, "");
        if added {
            self.units.insert(service.unit.clone(), cgroup_id);
        }
        key
    }

    /// Tracks `cgroup_id` (the unit's cgroup, or the one at `below` under it) as `service`;
    /// false when a container holds it.
    fn add_service_cgroup(
        &mut self,
        service: &Service,
        cgroup_id: u64,
        below: &str,
    ) -> (WorkloadKey, bool) {
        let key = WorkloadKey::new(format!("{}/{}{below}", service.namespace, service.unit))
            .with_cgroup(cgroup_id);
        if self
            .containers
            .get(&cgroup_id)
            .is_some_and(|t| t.service.is_none())
        {
            self.problems.push(format!(
                "service {}: cgroup {cgroup_id} belongs to a container; not tracked as a service",
                service.unit
            ));
            return (key, false);
        }
        let mut t = self.track_service(service, key.clone());
        self.apply_enforcers(&mut t);
        self.set_visibility(cgroup_id, &t);
        self.containers.insert(cgroup_id, t);
        (key, true)
    }

    /// Stops tracking a service and the cgroups below its own (removes their rules from the
    /// enforcers and their kernel visibility); its processes, if any, are the host's again.
    pub fn remove_service(&mut self, unit: &str) {
        for (cgroup_id, below) in self.unit_children.remove(unit).unwrap_or_default() {
            self.untrack(cgroup_id, &format!("{unit}{below}"));
        }
        if let Some(cgroup_id) = self.units.remove(unit) {
            self.untrack(cgroup_id, unit);
        }
    }

    /// Tracks the cgroups below a tracked service's that exist now (`below`: id → path below
    /// the unit's) and untracks those that are gone.
    fn sync_service_children(
        &mut self,
        service: &Service,
        below: BTreeMap<u64, String>,
        changes: &mut Vec<ContainerChange>,
    ) {
        let mut now = self.unit_children.remove(&service.unit).unwrap_or_default();
        let gone: Vec<(u64, String)> = now
            .iter()
            .filter(|(id, path)| below.get(id) != Some(*path))
            .map(|(id, path)| (*id, path.clone()))
            .collect();
        for (id, path) in gone {
            now.remove(&id);
            let name = format!("{}{path}", service.unit);
            self.untrack(id, &name);
            changes.push(ContainerChange::Untracked(name));
        }
        for (id, path) in below {
            if now.contains_key(&id) {
                continue;
            }
            let (key, added) = self.add_service_cgroup(service, id, &path);
            if added {
                now.insert(id, path);
                changes.push(ContainerChange::Tracked(key));
            }
        }
        if !now.is_empty() {
            self.unit_children.insert(service.unit.clone(), now);
        }
    }

    /// Brings the tracked services in line with `inventory` and the cgroups under the cgroup2
    /// mount `cgroup_root` ([`identity::cgroup2_root`]); the agent calls it every 2 s and after
    /// an inventory reload. A listed unit's cgroup is the directory named exactly like the
    /// unit ([`identity::find_units`], at most [`identity::UNIT_SEARCH_DEPTH`] levels deep;
    /// systemd is not asked). A service that started is added; one whose cgroup is gone (it
    /// stopped) or was re-created (a restart: new cgroup id) is removed, and a restarted one
    /// added again under its new id; one whose inventory entry changed (or that left the
    /// inventory) gets its new identity (or is removed). The cgroups below a unit's
    /// ([`identity::cgroups_below`], a unit with `Delegate=`) are the service's too: each is
    /// tracked with the service's identity under the key `namespace/unit/path`
    /// (`web/nginx.service/worker`), and untracked when it goes. Returns what changed, removals
    /// first for each service (`Untracked` names the unit, or `unit/path` for a cgroup below).
    ///
    /// Between a service's start (or restart, or the creation of a cgroup below it) and the
    /// next call its processes are the host's: host rules apply to them and their records carry
    /// no service identity.
    pub fn sync_services(
        &mut self,
        inventory: &Inventory,
        cgroup_root: &Path,
    ) -> Vec<ContainerChange> {
        let units: Vec<&str> = inventory
            .services()
            .iter()
            .map(|s| s.unit.as_str())
            .collect();
        let found = identity::find_units(cgroup_root, &units, identity::UNIT_SEARCH_DEPTH);
        let mut changes = Vec::new();
        let mut tracked: Vec<(String, u64)> =
            self.units.iter().map(|(u, id)| (u.clone(), *id)).collect();
        tracked.sort();
        for (unit, cgroup_id) in tracked {
            let keep = match (inventory.get(&unit), found.get(&unit)) {
                (Some(s), Some(c)) => {
                    c.cgroup_id == cgroup_id
                        && self
                            .containers
                            .get(&cgroup_id)
                            .and_then(|t| t.service.as_ref())
                            .is_some_and(|old| old.workload() == s.workload())
                }
                _ => false,
            };
            if !keep {
                self.remove_service(&unit);
                changes.push(ContainerChange::Untracked(unit));
            }
        }
        for s in inventory.services() {
            let Some(c) = found.get(&s.unit) else {
                continue;
            };
            if !self.units.contains_key(&s.unit) {
                let key = self.add_service_with_cgroup(s, c.cgroup_id);
                if !self.units.contains_key(&s.unit) {
                    continue;
                }
                changes.push(ContainerChange::Tracked(key));
            }
            let prefix = c.path.len();
            let below: BTreeMap<u64, String> =
                identity::cgroups_below(cgroup_root, &c.path, identity::UNIT_SEARCH_DEPTH)
                    .into_iter()
                    .filter_map(|b| Some((b.cgroup_id, b.path.get(prefix..)?.to_string())))
                    .collect();
            self.sync_service_children(s, below, &mut changes);
        }
        changes
    }

    /// Follows a containerd lifecycle event: a created task (its cgroup exists, its entrypoint
    /// has not run) or a started one that is not tracked yet is added — its rules are applied
    /// before this returns, so with BPF-LSM a container whose `Created` event is handled before
    /// its task is started has its rules enforced from its first instruction; a stopped one is
    /// removed. CRI sandbox (pause) containers are ignored.
    ///
    /// containerd publishes events asynchronously: when the client that created the task starts
    /// it before this runs (Kubernetes issues CreateContainer and StartContainer as two calls,
    /// typically milliseconds apart), the first instructions of the entrypoint may run before
    /// the rules are applied.
    ///
    /// A `Defined` container (no task yet) has its rules loaded ahead by enforcers that attach by
    /// name (AppArmor: the profile must exist before runc applies it at task creation).
    pub fn container_event(&mut self, ev: &ContainerEvent) -> Result<ContainerChange> {
        match ev {
            ContainerEvent::Defined(info) => {
                let ahead = self
                    .enforcement
                    .as_ref()
                    .is_some_and(Enforcement::loads_ahead);
                if info.is_sandbox() || !ahead || self.ids.contains_key(&info.id) {
                    return Ok(ContainerChange::Unchanged);
                }
                let mut t = self.track(info, WorkloadKey::new(Self::container_name(info)));
                self.apply_enforcers_ahead(&mut t, true, None);
                self.prepared.insert(info.id.clone(), t.key.clone());
                Ok(ContainerChange::Prepared(t.key))
            }
            ContainerEvent::Created(info) | ContainerEvent::Started(info) => {
                if info.is_sandbox() {
                    return Ok(ContainerChange::Unchanged);
                }
                self.prepared.remove(&info.id);
                if let Some(t) = self
                    .ids
                    .get(&info.id)
                    .and_then(|id| self.containers.get(id))
                {
                    // A task re-created under the same id (a restart) gets a new pid and cgroup.
                    if t.info.as_ref().and_then(|i| i.pid) == info.pid {
                        return Ok(ContainerChange::Unchanged);
                    }
                    self.remove_container(&info.id);
                }
                self.add_container(info).map(ContainerChange::Tracked)
            }
            ContainerEvent::Stopped { id, .. } => {
                if self.ids.contains_key(id) {
                    self.remove_container(id);
                    Ok(ContainerChange::Untracked(id.clone()))
                } else {
                    Ok(ContainerChange::Unchanged)
                }
            }
            _ => Ok(ContainerChange::Unchanged),
        }
    }

    /// A container that its runtime is creating, reported by the OCI `createRuntime` hook
    /// ([`crate::hook`]): its init process (`info.pid`) is in the container's cgroup and has
    /// not executed the entrypoint; `rootfs` is the container's root file system as this
    /// process sees it (the bundle's root: the init process has not switched to it yet).
    ///
    /// Tracks it as [`ContainerEvent::Created`] does and applies its rules; with BPF-LSM they
    /// are in force from the first program a task of the container executes — the entrypoint,
    /// whose exec is the first operation decided — so the runtime's own setup between the hook
    /// and that exec is not subject to them. The `/tasks/create` event that follows for the
    /// same task changes nothing.
    ///
    /// Fails, tracking nothing and leaving no rules behind, when an enforcer cannot apply the
    /// rules or, for a container that policies select, does not enforce them (AppArmor when
    /// the spec names no profile): the hook then refuses the container.
    pub fn container_creating(
        &mut self,
        info: &ContainerInfo,
        rootfs: &Path,
    ) -> Result<ContainerChange> {
        if info.is_sandbox() {
            return Ok(ContainerChange::Unchanged);
        }
        let pid = info.pid.ok_or(Error::Parse {
            what: "container without an init process",
            input: info.id.clone(),
        })?;
        if let Some(t) = self
            .ids
            .get(&info.id)
            .and_then(|id| self.containers.get(id))
        {
            let tracked = t.info.as_ref().and_then(|i| i.pid);
            if tracked == Some(pid) {
                return Ok(ContainerChange::Unchanged);
            }
            // A container is created once per task: a report for one whose task still runs
            // is not a creation, and must not move its rules elsewhere.
            if let Some(old) = tracked
                && Path::new(&format!("/proc/{old}")).exists()
            {
                return Err(Error::NotEnforced {
                    workload: t.key.name.clone(),
                    reason: format!(
                        "its task (pid {old}) still runs: a creation for pid {pid} is refused"
                    ),
                });
            }
            self.remove_container(&info.id);
        }
        let cgroup_id = cgroup_of(pid)?;
        let key = WorkloadKey::new(Self::container_name(info)).with_cgroup(cgroup_id);
        let mut t = self.track(info, key.clone());
        let before = self.problems.len();
        let failed = self.apply_enforcers_ahead(&mut t, false, Some(rootfs));
        let selected = !t.rules.rule_ids().is_empty();
        let required = self.config.require_enforcement && !t.coverage.complete();
        if required {
            self.problems.push(format!(
                "enforcement is required and {} is {}",
                t.key, t.coverage
            ));
        }
        if failed > 0
            || required
            || (selected && !self.enforcers.is_empty() && !t.coverage.in_kernel())
        {
            // Also when nothing was applied: an enforcer forgets what it was told about the
            // workload ahead of the apply (BPF-LSM's root and first-exec mark).
            for e in &self.enforcers {
                let _ = e.remove(&t.key);
            }
            let reason = self.problems.split_off(before.min(self.problems.len()));
            return Err(Error::NotEnforced {
                workload: key.name,
                reason: reason.join("; "),
            });
        }
        self.prepared.remove(&info.id);
        self.set_visibility(cgroup_id, &t);
        self.ids.insert(info.id.clone(), cgroup_id);
        self.containers.insert(cgroup_id, t);
        Ok(ContainerChange::Tracked(key))
    }

    /// AppArmor: unloads armor profiles of workloads that are neither tracked nor loaded ahead
    /// for a defined container (left by an earlier run or by containers that are gone). Call it
    /// after the existing containers were added.
    /// Returns the profiles removed.
    pub fn sweep_stale_profiles(&mut self) -> Vec<String> {
        let Some(en) = &self.enforcement else {
            return Vec::new();
        };
        let mut keep: Vec<WorkloadKey> = self.containers.values().map(|t| t.key.clone()).collect();
        keep.extend(self.prepared.values().cloned());
        keep.push(self.host.key.clone());
        match en.sweep(&keep) {
            Ok(removed) => removed,
            Err(e) => {
                self.problems.push(format!("removing stale profiles: {e}"));
                Vec::new()
            }
        }
    }

    /// The alerts the kernel enforcer raised since the last call, as KubeArmor Alerts with the
    /// workload's identity ([`Runtime::enforcer_alert`]). Alerts dropped because they were not
    /// read fast enough are reported through [`Runtime::take_problems`].
    pub fn enforcer_records(&mut self, tree: &ProcessTree) -> Vec<Telemetry> {
        let Some(en) = &self.enforcement else {
            return Vec::new();
        };
        let alerts = en.take_alerts();
        let dropped = en.dropped_alerts();
        if dropped > self.dropped_alerts {
            self.problems.push(format!(
                "{} enforcer alerts dropped (not read in time; total {dropped})",
                dropped - self.dropped_alerts
            ));
            self.dropped_alerts = dropped;
        }
        alerts
            .iter()
            .map(|a| self.enforcer_alert(a, tree))
            .collect()
    }

    /// Stops tracking a container (removes its rules from the enforcers).
    pub fn remove_container(&mut self, id: &str) {
        if let Some(cgroup_id) = self.ids.remove(id) {
            self.untrack(cgroup_id, id);
        }
    }

    /// Removes the workload of `cgroup_id` (`id` names it in problems).
    fn untrack(&mut self, cgroup_id: u64, id: &str) {
        if let Some(t) = self.containers.remove(&cgroup_id) {
            for e in &self.enforcers {
                if t.applied
                    && let Err(err) = e.remove(&t.key)
                {
                    self.problems
                        .push(format!("{}: {}: {err}", e.name(), t.key));
                }
            }
            self.throttles.remove(&t.key.name);
        }
        if let Some(sink) = &self.sink
            && let Err(e) = sink.clear(cgroup_id)
        {
            self.problems.push(format!("visibility of {id}: {e}"));
        }
    }

    /// Replaces the policies atomically: every workload gets its new rules, or, when `paths`
    /// do not load or compile or an enforcer cannot apply them ([`Runtime::replace_policy`]),
    /// nothing changes and the error says why.
    pub fn reload<P: AsRef<Path>>(&mut self, paths: &[P]) -> Result<usize> {
        let policy = load_policies(paths)?;
        self.replace_policy(policy)?;
        Ok(self.policy.rules().len())
    }

    /// The workload `old` with its rules from the current policy.
    fn retrack(&self, old: &Tracked) -> Tracked {
        let mut t = match (&old.info, &old.service) {
            (Some(info), _) => self.track(info, old.key.clone()),
            (None, Some(service)) => self.track_service(service, old.key.clone()),
            (None, None) => {
                let mut host = old.clone();
                let (posture, _) = self.config.posture.posture_for(&host.workload);
                host.rules = self.policy.rule_set(&host.workload, posture);
                host
            }
        };
        // What was reported of the previous rules is the baseline for the new report.
        t.coverage = old.coverage.clone();
        t
    }

    /// Puts `policy` in force for every workload, all or none: the host's and each tracked
    /// workload's rules are applied in turn; when an enforcer fails to apply one (or, with
    /// [`RuntimeConfig::require_enforcement`], a workload whose rules were all enforced would
    /// not be any more), every workload already switched gets its previous rules back, the
    /// previous policy stays in force and the error names the workload and why. What was
    /// reported of the rules not taken is dropped; a failure while putting the previous rules
    /// back is reported through [`Runtime::take_problems`].
    pub fn replace_policy(&mut self, policy: CompiledPolicy) -> Result<()> {
        let start = self.problems.len();
        let previous = std::mem::replace(&mut self.policy, Arc::new(policy));
        let mut order: Vec<Option<u64>> = vec![None];
        let mut ids: Vec<u64> = self.containers.keys().copied().collect();
        ids.sort_unstable();
        order.extend(ids.into_iter().map(Some));
        // The workloads switched so far, with their previous state.
        let mut switched: Vec<(Option<u64>, Tracked)> = Vec::new();
        for slot in order {
            let old = match slot {
                None => self.host.clone(),
                Some(id) => match self.containers.get(&id) {
                    Some(t) => t.clone(),
                    None => continue,
                },
            };
            let mut t = self.retrack(&old);
            let before = self.problems.len();
            let failed = self.apply_enforcers(&mut t);
            let incomplete = self.config.require_enforcement
                && old.coverage.complete()
                && !t.coverage.complete();
            if failed > 0 || incomplete {
                let mut reason = self.problems.split_off(before.min(self.problems.len()));
                // The workloads switched before this one reported rules that are not taken.
                self.problems.truncate(start);
                if incomplete {
                    reason.push(format!(
                        "enforcement is required and it would be {}",
                        t.coverage
                    ));
                }
                self.policy = previous;
                switched.push((slot, old));
                for (slot, mut back) in switched.into_iter().rev() {
                    if self.apply_enforcers(&mut back) > 0 {
                        self.problems.push(format!(
                            "{}: putting its previous rules back failed: it is {}",
                            back.key, back.coverage
                        ));
                    }
                    self.store(slot, back);
                }
                return Err(Error::NotEnforced {
                    workload: t.key.name,
                    reason: format!("policies not replaced: {}", reason.join("; ")),
                });
            }
            switched.push((slot, old));
            self.store(slot, t);
        }
        Ok(())
    }

    /// Puts `t` back as the host (`None`) or the workload of a cgroup, with its visibility.
    fn store(&mut self, slot: Option<u64>, t: Tracked) {
        match slot {
            None => self.host = t,
            Some(id) => {
                self.set_visibility(id, &t);
                self.containers.insert(id, t);
            }
        }
    }

    /// Turns one kernel event into the records to emit (none, a Log, Alerts, a SystemEvent), at
    /// the time of the call ([`Runtime::handle_at`] with [`Now::system`]).
    pub fn handle(&mut self, ev: &armor_ebpf::Event, tree: &ProcessTree) -> Vec<Telemetry> {
        self.handle_at(ev, tree, Now::system())
    }

    /// The records one kernel event gives at `now`: its translation (armor-ebpf's
    /// [`Translator`]), decided with the rules of the workload its cgroup is, throttled per
    /// workload. The clock is only what `now` says, so a replay or a test gets the same records
    /// for the same events and times.
    pub fn handle_at(
        &mut self,
        ev: &armor_ebpf::Event,
        tree: &ProcessTree,
        now: Now,
    ) -> Vec<Telemetry> {
        let Some(tr) = self.translator.translate(ev, tree) else {
            return Vec::new();
        };
        let t = self.containers.get(&ev.cgroup_id).unwrap_or(&self.host);
        let mut base = base_record(&self.config, t, ev, tree, now.wall);
        if tr.process_name.is_some() {
            base.process_name = tr.process_name;
        }
        base.source = tr.source;
        base.operation = Some(tr.operation.to_string());
        base.resource = Some(tr.resource);
        base.data = Some(tr.data);
        let alerts = monitor_alerts(t, &tr.decide, &base, &tr.result);
        if !alerts.is_empty() {
            return throttle(
                &mut self.throttles,
                &self.config,
                &t.key.name,
                alerts,
                &base,
                now.instant,
            );
        }
        let visible = match tr.operation {
            Category::Process => t.visibility.process,
            Category::File => t.visibility.file,
            Category::Network => t.visibility.network,
            _ => false,
        };
        if !visible {
            return Vec::new();
        }
        base.kind = Some(RecordType::log(t.workload.is_host()).to_string());
        base.result = Some(tr.result);
        vec![base]
    }

    /// An enforcer's alert with the workload's identity added.
    pub fn enforcer_alert(&self, a: &EnforcerAlert, tree: &ProcessTree) -> Telemetry {
        // By cgroup id; an enforcer that names workloads only (AppArmor profiles loaded ahead of
        // the task) by name.
        let t = a
            .workload
            .as_ref()
            .and_then(|k| match k.cgroup_id {
                Some(id) => self.containers.get(&id),
                None => self.containers.values().find(|t| t.key.name == k.name),
            })
            .unwrap_or(&self.host);
        let mut r = Telemetry::default();
        let (secs, updated) = format::now();
        r.timestamp = Some(secs);
        r.updated_time = Some(updated);
        r.cluster_name = Some(self.config.cluster_name.clone());
        r.host_name = Some(self.config.host_name.clone());
        identify(t, &mut r);
        r.host_pid = Some(i64::from(a.pid));
        r.uid = Some(i64::from(a.uid));
        r.process_name = tree.get(a.pid).map(|p| p.exe.clone());
        r.source.clone_from(&a.source);
        let rule = a
            .rule
            .and_then(|i| self.policy.rules().get(usize::try_from(i).ok()?));
        r.policy_name =
            Some(rule.map_or_else(|| "DefaultPosture".to_string(), |r| r.policy.name.clone()));
        r.severity = Some(
            rule.and_then(|r| r.severity)
                .map(|s| s.to_string())
                .unwrap_or_default(),
        );
        r.kind = Some(RecordType::alert(t.workload.is_host()).to_string());
        r.operation = Some(a.operation.to_string());
        r.resource = Some(a.resource.clone());
        r.action = Some(a.action.to_string());
        r.result = Some(a.result().to_string());
        r.enforcer = Some(a.enforcer.to_string());
        r
    }
}
