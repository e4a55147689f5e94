//! What the index keeps per workload, where its rules go ([`Destination`]) and what the kernel
//! then carries ([`Coverage`]), from the enforcers' answer.

use super::*;
use armor_core::PostureConfig;
use armor_core::enforcer::Start;

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
    /// When it was tracked (a container: to measure how long it ran before its pod's labels
    /// arrived).
    pub(super) since: Option<Instant>,
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
            since: None,
        }
    }

    /// Whether policies select it.
    pub(super) fn selected(&self) -> bool {
        !self.rules.rule_ids().is_empty()
    }

    /// Where its rules go: the host and services see the host's root file system (a service's
    /// own `RootDirectory=` is not followed); a container being created (`creating`: its root
    /// file system as the agent sees it, the init process has not switched to it yet) takes its
    /// rules from its first exec; a running container's files are under `/proc/PID/root` of
    /// its task.
    pub(super) fn destination(&self, creating: Option<&Path>) -> Destination {
        let d = Destination::new(self.key.clone());
        if self.workload.is_host() || self.service.is_some() {
            return d.with_root("/");
        }
        if let Some(rootfs) = creating {
            return d.with_root(rootfs).starting(Start::FirstExec);
        }
        match self.info.as_ref().and_then(|i| i.pid) {
            Some(pid) => d.with_root(format!("/proc/{pid}/root")),
            None => d,
        }
    }

    /// The apply of its rules answered at `slot`.
    pub(super) fn application(&self, slot: Slot, creating: Option<&Path>) -> Application {
        Application {
            slot,
            destination: self.destination(creating),
            rules: self.rules.clone(),
            host: self.workload.is_host(),
            container: self.info.clone(),
            unit: self.service.as_ref().map(|s| s.unit.clone()),
        }
    }

    /// Its kernel visibility entry.
    pub(super) fn set_visibility(&self, cgroup_id: u64) -> Effect {
        Effect::SetVisibility {
            cgroup_id,
            key: self.key.clone(),
            visibility: kernel_visibility(&self.visibility, &self.rules),
            syscalls: rule_syscalls(&self.rules),
        }
    }

    /// Takes the enforcers' answer: sets its coverage and whether an enforcer holds its rules.
    /// Returns how many enforcers failed and the problems to report: each enforcer that
    /// failed, always; and, when `report` (a workload whose processes run, not one loaded
    /// ahead), each enforcer that holds the rules without confining the workload and, once per
    /// change of coverage, each rule the kernel does not carry (policy, field, position,
    /// reason).
    pub(super) fn settle(&mut self, outcome: &ApplyOutcome, report: bool) -> Settled {
        let before = std::mem::replace(&mut self.coverage, Coverage::NoRules);
        let selected = self.selected();
        let mut settled = Settled::default();
        // The enforcers that hold and cover the rules, with the rules each leaves out.
        let mut holding: Vec<(&'static str, Vec<RuleGap>)> = Vec::new();
        let mut why_not: Vec<String> = Vec::new();
        self.applied = false;
        for e in &outcome.enforcers {
            match e {
                EnforcerOutcome::Held { enforcer, gaps } => {
                    self.applied = true;
                    holding.push((enforcer, gaps.clone()));
                }
                EnforcerOutcome::NotCovered { enforcer, why } => {
                    self.applied = true;
                    if report && selected {
                        settled.problems.push(format!(
                            "{enforcer}: {}: rules loaded but not enforced ({why}); its Block \
                             rules are reported as `Audit (Block)`",
                            self.key
                        ));
                    }
                    why_not.push(format!("{enforcer}: {why}"));
                }
                EnforcerOutcome::Failed { enforcer, error } => {
                    settled.failed += 1;
                    settled
                        .problems
                        .push(format!("{enforcer}: {}: {error}", self.key));
                    why_not.push(format!("{enforcer} failed: {error}"));
                }
            }
        }
        self.coverage = coverage_of(selected, outcome.enforcers.is_empty(), holding, why_not);
        if report
            && self.coverage != before
            && let Coverage::Partial { gaps, .. } = &self.coverage
        {
            for g in gaps {
                settled.problems.push(format!(
                    "{}: {g}; the monitor also decides it and alerts its Block decisions as \
                     `Audit (Block)`",
                    self.key
                ));
            }
        }
        settled
    }
}

/// What [`Tracked::settle`] found.
#[derive(Debug, Default)]
pub(super) struct Settled {
    /// Enforcers that failed.
    pub(super) failed: usize,
    /// What to report.
    pub(super) problems: Vec<String>,
}

impl Settled {
    /// The problems as effects.
    pub(super) fn effects(self) -> Vec<Effect> {
        self.problems.into_iter().map(Effect::Problem).collect()
    }
}

/// What an [`Effect::Apply`] waits for ([`Input::Applied`]).
#[derive(Debug)]
pub(super) enum Pending {
    /// The tracked workload at the slot gets its coverage.
    InPlace,
    /// A defined container loaded ahead (the slot holds its id).
    Ahead(Tracked),
    /// A container being created, tracked once admitted.
    Creating {
        /// Its id.
        id: String,
        /// Its cgroup.
        cgroup_id: u64,
        /// It, with the rules applied.
        tracked: Tracked,
    },
    /// A workload switching to the new policies of a replacement.
    Switch,
    /// A workload getting its previous rules back (a replacement rolled back).
    Restore,
}

#[derive(Debug, Default)]
pub(super) struct Throttle {
    pub(super) window_start: Option<Instant>,
    pub(super) count: u32,
    pub(super) dropping_until: Option<Instant>,
}

/// The kernel visibility a workload needs: its own, plus every category its rules can alert on
/// (alerts need the events even when logs are off).
/// The syscalls (x86_64 numbers, sorted) the syscall rules of `rules` name: what the event
/// source's syscall filter reports for the workload.
pub(super) fn rule_syscalls(rules: &RuleSet) -> Vec<u16> {
    let mut out: Vec<u16> = rules
        .rules()
        .filter_map(|r| match &r.target {
            armor_core::Target::Syscall { names, .. } => Some(names),
            _ => None,
        })
        .flatten()
        .filter_map(|n| armor_core::syscalls::number(n))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

pub(super) fn kernel_visibility(v: &Visibility, rules: &RuleSet) -> Visibility {
    let mut k = *v;
    if rules.rule_ids().is_empty() {
        return k;
    }
    k.process = true;
    k.file = true;
    k.network = true;
    k
}

/// The coverage of a workload: `selected` (it has rules), no enforcer at all, the enforcers
/// that hold its rules with the rules each leaves out, and why the others do not. A rule is a
/// gap only when every holding enforcer leaves it out.
pub(super) fn coverage_of(
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
                crate::coverage::NO_ENFORCER.to_string()
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

impl WorkloadIndex {
    /// The apply of the tracked workload at `slot` (the host or a cgroup's), answered in place.
    pub(super) fn apply_in_place(&mut self, slot: Slot) -> Effect {
        let app = match self.at_mut(&slot) {
            Some(t) => t.application(slot.clone(), None),
            None => return Effect::Problem(format!("no workload at {slot:?} to apply")),
        };
        self.pending.insert(slot, Pending::InPlace);
        Effect::Apply(Box::new(app))
    }

    /// Takes the answer to the apply of `slot`.
    pub(super) fn applied(&mut self, slot: &Slot, outcome: &ApplyOutcome) -> Vec<Effect> {
        match self.pending.remove(slot) {
            None => vec![Effect::Problem(format!(
                "an apply answered for {slot:?} that was not asked for"
            ))],
            Some(Pending::InPlace) => match self.at_mut(slot) {
                Some(t) => t.settle(outcome, true).effects(),
                None => Vec::new(),
            },
            Some(Pending::Ahead(mut t)) => {
                let settled = t.settle(outcome, false);
                if let Slot::Container(id) = slot {
                    self.prepared.insert(id.clone(), t.key);
                }
                settled.effects()
            }
            Some(Pending::Creating {
                id,
                cgroup_id,
                tracked,
            }) => self.admit(id, cgroup_id, tracked, outcome),
            Some(Pending::Switch) => self.switched(slot, outcome),
            Some(Pending::Restore) => self.restored(slot, outcome),
        }
    }

    /// Stops tracking the workload of `cgroup_id` (`name` names it in problems): its rules are
    /// removed from the enforcers that hold them and its visibility entry cleared.
    pub(super) fn untrack(&mut self, cgroup_id: u64, name: &str) -> Vec<Effect> {
        let mut effects = Vec::new();
        if let Some(t) = self.workloads.remove(&cgroup_id) {
            if t.applied {
                effects.push(Effect::Remove(t.key.clone()));
            }
            self.throttles.remove(&t.key.name);
        }
        effects.push(Effect::ClearVisibility {
            cgroup_id,
            name: name.to_string(),
        });
        effects
    }
}
