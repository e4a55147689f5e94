//! Containers: tracked when their task runs or is being created (then admitted or refused),
//! loaded ahead of their task, untracked when it stops.

use super::*;
use armor_core::Container;

/// A container's workload name: `namespace/pod/container`, or `namespace/container`.
pub(crate) fn container_name(info: &ContainerInfo) -> String {
    match info.pod() {
        Some(pod) => format!("{}/{}/{}", info.namespace(), pod, info.name()),
        None => format!("{}/{}", info.namespace(), info.name()),
    }
}

impl WorkloadIndex {
    /// `info` as a workload named `key`, with its rules: its labels are its own (Kubernetes'
    /// and the CRI's bookkeeping labels are not the container's) and, when known, its pod's
    /// ([`Input::ContainerIdentity`]), which win; so do the pod's annotations and owner.
    pub(super) fn track(&self, info: &ContainerInfo, key: WorkloadKey) -> Tracked {
        let mut c = Container::new(info.namespace(), info.name());
        c.labels = info
            .labels
            .iter()
            .filter(|(k, _)| {
                !k.starts_with("io.kubernetes.") && !k.starts_with("io.cri-containerd.")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(pod) = self.identity_of(info) {
            c.labels
                .extend(pod.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            c.annotations
                .extend(pod.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
            c.owner.clone_from(&pod.owner);
        }
        c.pod = info.pod();
        let mut t = Tracked::new(
            key,
            Workload::Container(c),
            Some(info.clone()),
            None,
            &self.config.posture,
            &self.policy,
        );
        t.since = self.clock.map(|n| n.instant);
        t
    }

    /// A container's pod identity is known (or forgotten, for containers to come): each
    /// tracked container it names whose labels or annotations change gets its rules again,
    /// and how long it ran with the others is reported; one whose owner alone changes carries
    /// the new owner in its records.
    pub(super) fn container_identity(
        &mut self,
        key: &IdentityKey,
        identity: Option<&PodIdentity>,
    ) -> Vec<Effect> {
        let Some(identity) = identity else {
            self.identities.remove(key);
            return Vec::new();
        };
        // The containers it names, and whether each had its pod's identity already.
        let mut named: Vec<(u64, bool)> = self
            .workloads
            .iter()
            .filter_map(|(id, t)| {
                let info = t.info.as_ref().filter(|i| key.names(i))?;
                Some((*id, self.identity_of(info).is_some()))
            })
            .collect();
        named.sort_unstable();
        self.identities.insert(key.clone(), identity.clone());
        let mut effects = Vec::new();
        for (cgroup_id, had_identity) in named {
            let Some(old) = self.workloads.get(&cgroup_id).cloned() else {
                continue;
            };
            let Some(info) = &old.info else {
                continue;
            };
            let mut t = self.track(info, old.key.clone());
            let (selected, owner) = match (&t.workload, &old.workload) {
                (Workload::Container(new), Workload::Container(was)) => (
                    new.labels != was.labels || new.annotations != was.annotations,
                    new.owner != was.owner,
                ),
                _ => (false, false),
            };
            if !selected {
                if owner && let Some(tracked) = self.workloads.get_mut(&cgroup_id) {
                    tracked.workload = t.workload;
                }
                continue;
            }
            let waited = match (old.since, self.clock) {
                (Some(since), Some(now)) => now.instant.saturating_duration_since(since),
                _ => std::time::Duration::ZERO,
            };
            effects.push(Effect::Problem(if had_identity {
                format!(
                    "{}: its pod's labels or annotations changed; its rules are applied again",
                    t.key
                )
            } else {
                format!(
                    "{}: its pod's labels arrived {} ms after it was tracked; until then the \
                     policies selecting its earlier labels applied",
                    t.key,
                    waited.as_millis()
                )
            }));
            // The coverage reported so far is the baseline, and what is applied stays applied.
            t.coverage = old.coverage;
            t.applied = old.applied;
            t.since = old.since;
            let visibility = t.set_visibility(cgroup_id);
            self.workloads.insert(cgroup_id, t);
            effects.push(self.apply_in_place(Slot::Cgroup(cgroup_id)));
            effects.push(visibility);
        }
        effects
    }

    /// A defined container without a task: its rules are loaded ahead (its coverage is checked
    /// once its task exists), unless it is a sandbox or already tracked.
    pub(super) fn container_defined(&mut self, info: &ContainerInfo) -> Vec<Effect> {
        if info.is_sandbox() || self.ids.contains_key(&info.id) {
            return vec![Effect::Changed(ContainerChange::Unchanged)];
        }
        let t = self.track(info, WorkloadKey::new(container_name(info)));
        let slot = Slot::Container(info.id.clone());
        let app = t.application(slot.clone(), None);
        let key = t.key.clone();
        self.pending.insert(slot, Pending::Ahead(t));
        vec![
            Effect::Apply(Box::new(app)),
            Effect::Changed(ContainerChange::Prepared(key)),
        ]
    }

    /// Whether `info` is a task to track: `None` for a CRI sandbox or the task already tracked;
    /// else the effects of untracking another task tracked under its id before (a restart).
    fn new_task(&mut self, info: &ContainerInfo) -> Option<Vec<Effect>> {
        if info.is_sandbox() {
            return None;
        }
        let Some(&old) = self.ids.get(&info.id) else {
            return Some(Vec::new());
        };
        if self.task_of(&info.id) == info.pid {
            return None;
        }
        self.ids.remove(&info.id);
        Some(self.untrack(old, &info.id))
    }

    /// A container's task runs in `cgroup_id`: tracked (its rules applied, its visibility set)
    /// unless it is a sandbox or its task is tracked already; a task re-created under the same
    /// id (a restart: another pid and cgroup) replaces the one tracked.
    pub(super) fn container_running(
        &mut self,
        info: &ContainerInfo,
        cgroup_id: u64,
    ) -> Vec<Effect> {
        self.prepared.remove(&info.id);
        let Some(mut effects) = self.new_task(info) else {
            return vec![Effect::Changed(ContainerChange::Unchanged)];
        };
        let key = WorkloadKey::new(container_name(info)).with_cgroup(cgroup_id);
        let t = self.track(info, key.clone());
        let visibility = t.set_visibility(cgroup_id);
        self.ids.insert(info.id.clone(), cgroup_id);
        self.workloads.insert(cgroup_id, t);
        effects.push(self.apply_in_place(Slot::Cgroup(cgroup_id)));
        effects.push(visibility);
        effects.push(Effect::Changed(ContainerChange::Tracked(key)));
        effects
    }

    /// The OCI hook reports a container being created: a task tracked under its id before (the
    /// shell refuses the report while that task runs) is untracked, and its rules are applied
    /// from its first exec; [`WorkloadIndex::admit`] decides on the answer.
    pub(super) fn container_creating(
        &mut self,
        info: &ContainerInfo,
        cgroup_id: u64,
        rootfs: &Path,
    ) -> Vec<Effect> {
        let Some(mut effects) = self.new_task(info) else {
            return vec![Effect::Changed(ContainerChange::Unchanged)];
        };
        let key = WorkloadKey::new(container_name(info)).with_cgroup(cgroup_id);
        let t = self.track(info, key);
        let slot = Slot::Container(info.id.clone());
        effects.push(Effect::Apply(Box::new(
            t.application(slot.clone(), Some(rootfs)),
        )));
        self.pending.insert(
            slot,
            Pending::Creating {
                id: info.id.clone(),
                cgroup_id,
                tracked: t,
            },
        );
        effects
    }

    /// Admits a container being created once its rules are applied, or refuses it — tracking
    /// nothing and discarding what any enforcer applied — when an enforcer failed, when
    /// enforcement is required ([`RuntimeConfig::require_enforcement`]) and not complete, or
    /// when policies select it and enforcers exist but none confines it.
    pub(super) fn admit(
        &mut self,
        id: String,
        cgroup_id: u64,
        mut t: Tracked,
        outcome: &ApplyOutcome,
    ) -> Vec<Effect> {
        let mut settled = t.settle(outcome, true);
        let required = self.config.require_enforcement && !t.coverage.complete();
        if required {
            settled.problems.push(format!(
                "enforcement is required and {} is {}",
                t.key, t.coverage
            ));
        }
        let unconfined = t.selected() && !outcome.enforcers.is_empty() && !t.coverage.in_kernel();
        if settled.failed > 0 || required || unconfined {
            return vec![
                Effect::Discard(t.key.clone()),
                Effect::Refused {
                    workload: t.key.name,
                    reason: settled.problems.join("; "),
                },
            ];
        }
        let key = t.key.clone();
        let mut effects = std::mem::take(&mut settled.problems)
            .into_iter()
            .map(Effect::Problem)
            .collect::<Vec<_>>();
        self.prepared.remove(&id);
        effects.push(t.set_visibility(cgroup_id));
        self.ids.insert(id, cgroup_id);
        self.workloads.insert(cgroup_id, t);
        effects.push(Effect::Changed(ContainerChange::Tracked(key)));
        effects
    }

    /// A container's task stopped: untracked (its rules removed, its visibility cleared) and no
    /// longer loaded ahead.
    pub(super) fn container_stopped(&mut self, id: &str) -> Vec<Effect> {
        self.prepared.remove(id);
        match self.ids.remove(id) {
            Some(cgroup_id) => {
                let mut effects = self.untrack(cgroup_id, id);
                effects.push(Effect::Changed(ContainerChange::Untracked(id.to_string())));
                effects
            }
            None => vec![Effect::Changed(ContainerChange::Unchanged)],
        }
    }
}
