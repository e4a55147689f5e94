//! The runtime ([`Runtime`]): executing the index's effects, its accessors.

use super::*;

/// The agent runtime. Feed it events with [`Runtime::handle`]; it returns the records to emit.
pub struct Runtime {
    pub(super) index: WorkloadIndex,
    pub(super) enforcers: Vec<Arc<dyn Enforcer>>,
    pub(super) enforcement: Option<Enforcement>,
    pub(super) dropped_alerts: u64,
    pub(super) sink: Option<Arc<dyn VisibilitySink>>,
    pub(super) problems: Vec<String>,
    /// Applies that failed since the start.
    pub(super) apply_failures: u64,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("index", &self.index)
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
        policy: impl Into<Arc<CompiledPolicy>>,
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
        policy: impl Into<Arc<CompiledPolicy>>,
        enforcement: Enforcement,
        sink: Option<Arc<dyn VisibilitySink>>,
    ) -> Self {
        let enforcers = enforcement.enforcer().into_iter().collect();
        Self::build(config, policy, enforcers, Some(enforcement), sink)
    }

    fn build(
        config: RuntimeConfig,
        policy: impl Into<Arc<CompiledPolicy>>,
        enforcers: Vec<Arc<dyn Enforcer>>,
        enforcement: Option<Enforcement>,
        sink: Option<Arc<dyn VisibilitySink>>,
    ) -> Self {
        let mut rt = Self {
            index: WorkloadIndex::new(config, policy),
            enforcers,
            enforcement,
            dropped_alerts: 0,
            sink,
            problems: Vec::new(),
            apply_failures: 0,
        };
        rt.run(&Input::Start, Now::system());
        rt
    }

    /// Feeds `input` to the index and executes its effects depth-first (what an answered apply
    /// leads to comes before the rest); returns the effects that are the caller's: records,
    /// changes, refusals.
    pub(super) fn run(&mut self, input: &Input<'_>, now: Now) -> Vec<Effect> {
        let mut queue: VecDeque<Effect> = self.index.apply(input, now).into();
        let mut out = Vec::new();
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Apply(app) => {
                    let outcome = self.execute(&app);
                    let answer = Input::Applied {
                        slot: &app.slot,
                        outcome: &outcome,
                    };
                    for e in self.index.apply(&answer, now).into_iter().rev() {
                        queue.push_front(e);
                    }
                }
                Effect::Remove(key) => {
                    for e in &self.enforcers {
                        if let Err(err) = e.remove(&key) {
                            self.problems.push(format!(
                                "{}: {key}: {}",
                                e.name(),
                                armor_core::diag::error_chain(&err)
                            ));
                        }
                    }
                }
                Effect::Discard(key) => {
                    for e in &self.enforcers {
                        // An enforcer that applied nothing answers `UnknownWorkload`.
                        let _ = e.remove(&key);
                    }
                }
                Effect::SetVisibility {
                    cgroup_id,
                    key,
                    visibility,
                    syscalls,
                } => {
                    if let Some(sink) = &self.sink {
                        if let Err(e) = sink.set(cgroup_id, &visibility) {
                            self.problems.push(format!("visibility of {key}: {e}"));
                        }
                        if let Err(e) = sink.set_syscalls(cgroup_id, &syscalls) {
                            self.problems.push(format!(
                                "syscall filter of {key} (its syscall rules are not reported): \
                                 {e}"
                            ));
                        }
                    }
                }
                Effect::ClearVisibility { cgroup_id, name } => {
                    if let Some(sink) = &self.sink
                        && let Err(e) = sink.clear(cgroup_id)
                    {
                        self.problems.push(format!("visibility of {name}: {e}"));
                    }
                }
                Effect::Problem(p) => self.problems.push(p),
                other => out.push(other),
            }
        }
        out
    }

    /// Compiles and applies `app`'s rules with every enforcer, and checks that each confines
    /// the workload's processes.
    fn execute(&mut self, app: &Application) -> ApplyOutcome {
        let dest = &app.destination;
        let mut outcomes = Vec::with_capacity(self.enforcers.len());
        for e in &self.enforcers {
            let result = e
                .compile(dest, &app.rules)
                .map_err(|err| armor_core::diag::error_chain(&err))
                .and_then(|a| {
                    let gaps = RuleGap::list(e.name(), &app.rules, a.as_ref());
                    e.apply(dest, a.as_ref())
                        .map(|_| gaps)
                        .map_err(|err| armor_core::diag::error_chain(&err))
                });
            let covered = self
                .enforcement
                .as_ref()
                .map_or(Ok(()), |en| match &app.unit {
                    Some(unit) => en.covers_service(&dest.key, unit),
                    None => en.covers(&dest.key, app.host, app.container.as_ref()),
                });
            let enforcer = e.name();
            outcomes.push(match (result, covered) {
                (Ok(gaps), Ok(())) => EnforcerOutcome::Held { enforcer, gaps },
                (Ok(_), Err(why)) => EnforcerOutcome::NotCovered { enforcer, why },
                (Err(error), _) => {
                    self.apply_failures += 1;
                    EnforcerOutcome::Failed { enforcer, error }
                }
            });
        }
        ApplyOutcome::new(outcomes)
    }

    /// The host's kernel visibility (the default for cgroups without an entry).
    pub fn host_visibility(&self) -> Visibility {
        self.index.host_visibility()
    }

    /// The syscalls (x86_64 numbers) the host's syscall rules name: the event source's syscall
    /// filter for processes outside every workload (cgroup key 0).
    pub fn host_syscalls(&self) -> Vec<u16> {
        self.index.host_syscalls()
    }

    /// Problems found since the last call (enforcer failures, unusable annotations).
    pub fn take_problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.problems)
    }

    /// The compiled policies in force.
    pub fn policy(&self) -> &Arc<CompiledPolicy> {
        self.index.policy()
    }

    /// What it tracks: every workload, its rules and coverage.
    pub fn index(&self) -> &WorkloadIndex {
        &self.index
    }

    /// The keys of the tracked containers.
    pub fn containers(&self) -> Vec<WorkloadKey> {
        self.index.containers()
    }

    /// The ids of the tracked containers (created or running), sorted.
    pub fn container_ids(&self) -> Vec<String> {
        self.index.container_ids()
    }

    /// The units of the tracked services.
    pub fn service_units(&self) -> Vec<String> {
        self.index.service_units()
    }

    /// The keys of the tracked services (`namespace/unit`) and of the cgroups below theirs
    /// (`namespace/unit/path`), with their cgroup ids.
    pub fn services(&self) -> Vec<WorkloadKey> {
        self.index.services()
    }

    /// The enforcer in use and its alerts (`None` for a runtime made with [`Runtime::new`]).
    pub fn enforcement(&self) -> Option<&Enforcement> {
        self.enforcement.as_ref()
    }

    /// What the runtime enforces now, per workload (the host first), and the apply failures
    /// since it started.
    pub fn readiness(&self) -> Readiness {
        Readiness {
            enforcer: match &self.enforcement {
                Some(en) => en.name(),
                None => self.enforcers.first().map(|e| e.name()),
            },
            workloads: self.index.coverages(),
            apply_failures: self.apply_failures,
        }
    }

    /// `Ok` while every enforcer in use holds what it applied ([`Enforcer::health`]); else
    /// what is not in force. Reads the kernel's state: call it every second at most.
    pub fn enforcer_health(&self) -> Result<(), String> {
        self.enforcers.iter().try_for_each(|e| e.health())
    }

    /// The kernel resources each enforcer in use fills, with the enforcer's name
    /// ([`Enforcer::capacity`]).
    pub fn enforcer_capacity(&self) -> Vec<(&'static str, armor_core::enforcer::Capacity)> {
        self.enforcers
            .iter()
            .flat_map(|e| e.capacity().into_iter().map(|c| (e.name(), c)))
            .collect()
    }

    /// What is not enforced of each policy on this machine, per policy
    /// ([`crate::coverage::policy_gaps`]): what an orchestrator reports in each policy's status.
    pub fn policy_gaps(
        &self,
    ) -> std::collections::BTreeMap<crate::coverage::PolicyName, Vec<String>> {
        self.index.policy_gaps()
    }

    /// Removes what the enforcer keeps for workloads that are neither tracked nor loaded ahead
    /// for a defined container, left by an earlier run or by containers that are gone
    /// ([`Enforcer::sweep`]; AppArmor: its profiles). Call it after the existing containers
    /// were added. Returns what was removed.
    pub fn sweep_stale_profiles(&mut self) -> Vec<String> {
        let Some(en) = &self.enforcement else {
            return Vec::new();
        };
        match en.sweep(&self.index.keep()) {
            Ok(removed) => removed,
            Err(e) => {
                self.problems.push(format!("removing stale profiles: {e}"));
                Vec::new()
            }
        }
    }

    /// Turns one kernel event into the records to emit (none, a Log, Alerts, a SystemEvent), at
    /// the time of the call ([`Runtime::handle_at`] with [`Now::system`]).
    pub fn handle(&mut self, ev: &armor_ebpf::Event, tree: &ProcessTree) -> Vec<Telemetry> {
        self.handle_at(ev, tree, Now::system())
    }

    /// The records one kernel event gives at `now` ([`WorkloadIndex::kernel_records`], what
    /// [`Input::Kernel`] emits): its translation (armor-ebpf's
    /// [`Translator`](armor_ebpf::Translator)), decided with the rules of the workload its
    /// cgroup is, throttled per workload. The clock is only what `now` says, so a replay or a
    /// test gets the same records for the same events and times.
    pub fn handle_at(
        &mut self,
        ev: &armor_ebpf::Event,
        tree: &ProcessTree,
        now: Now,
    ) -> Vec<Telemetry> {
        // A kernel event leads to no apply: the records are all it gives.
        self.index.kernel_records(ev, tree, now)
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
        let now = Now::system();
        alerts
            .iter()
            .map(|a| self.index.enforcer_alert(a, tree, now))
            .collect()
    }

    /// An enforcer's alert with the workload's identity added
    /// ([`WorkloadIndex::enforcer_alert`] now).
    pub fn enforcer_alert(&self, a: &EnforcerAlert, tree: &ProcessTree) -> Telemetry {
        self.index.enforcer_alert(a, tree, Now::system())
    }
}
