//! Replacing the policies or the configuration: every workload switches to its new rules in
//! turn (the host first, then by cgroup id), all or none.

use std::collections::VecDeque;

use super::*;

/// A replacement under way.
#[derive(Debug)]
pub(super) struct Replacement {
    /// The policies in force before it.
    previous: Arc<CompiledPolicy>,
    /// The configuration in force before it, when it replaces the configuration.
    previous_config: Option<RuntimeConfig>,
    /// The workloads still to switch.
    todo: VecDeque<Slot>,
    /// The workloads switched (the last one: being switched), with their previous state.
    switched: Vec<(Slot, Tracked)>,
    /// What the switched workloads reported: emitted once every workload switched, with their
    /// new visibility entries; dropped when the replacement is rolled back (those rules are not
    /// taken, and no visibility entry was changed).
    problems: Vec<String>,
}

impl WorkloadIndex {
    /// `old` with its rules from the current policies; what was reported of its previous rules
    /// is the baseline of the new report.
    fn retrack(&self, old: &Tracked) -> Tracked {
        let mut t = match (&old.info, &old.service) {
            (Some(info), _) => self.track(info, old.key.clone()),
            (None, Some(service)) => Tracked::new(
                old.key.clone(),
                service.workload(),
                None,
                Some(service.clone()),
                &self.config.posture,
                &self.policy,
            ),
            // The host: named and labelled by the configuration.
            (None, None) => Tracked::new(
                old.key.clone(),
                host_workload(&self.config),
                None,
                None,
                &self.config.posture,
                &self.policy,
            ),
        };
        t.coverage = old.coverage.clone();
        t.since = old.since;
        t
    }

    /// Starts putting `policy` in force for every workload. When an enforcer fails to apply a
    /// workload's new rules (or, with [`RuntimeConfig::require_enforcement`], a workload whose
    /// rules were all enforced would not be any more), every workload switched so far gets its
    /// previous rules back, the previous policies stay in force and [`Effect::Refused`] names
    /// the workload and why.
    pub(super) fn replace_policy(&mut self, policy: &Arc<CompiledPolicy>) -> Vec<Effect> {
        self.replace(Some(policy), None)
    }

    /// Starts putting `config` in force (names, host labels, postures, visibility, namespace
    /// annotations, throttling), all or none like [`WorkloadIndex::replace_policy`]: every
    /// workload's rules and visibility are derived again, since postures and host labels select
    /// them; a rollback restores the previous configuration too.
    pub(super) fn reconfigure(&mut self, config: &RuntimeConfig) -> Vec<Effect> {
        self.replace(None, Some(config))
    }

    fn replace(
        &mut self,
        policy: Option<&Arc<CompiledPolicy>>,
        config: Option<&RuntimeConfig>,
    ) -> Vec<Effect> {
        if self.replacing.is_some() {
            let what = if policy.is_some() {
                "policies"
            } else {
                "configuration"
            };
            return vec![Effect::Refused {
                workload: self.host.key.name.clone(),
                reason: format!("{what} not replaced: another replacement is under way"),
            }];
        }
        let previous = match policy {
            Some(p) => std::mem::replace(&mut self.policy, p.clone()),
            None => self.policy.clone(),
        };
        let previous_config = config.map(|c| std::mem::replace(&mut self.config, c.clone()));
        let mut todo: VecDeque<Slot> = VecDeque::from([Slot::Host]);
        let mut ids: Vec<u64> = self.workloads.keys().copied().collect();
        ids.sort_unstable();
        todo.extend(ids.into_iter().map(Slot::Cgroup));
        self.replacing = Some(Replacement {
            previous,
            previous_config,
            todo,
            switched: Vec::new(),
            problems: Vec::new(),
        });
        self.next_switch()
    }

    /// Switches the next workload, or ends the replacement when none is left.
    fn next_switch(&mut self) -> Vec<Effect> {
        loop {
            let Some(r) = self.replacing.as_mut() else {
                return Vec::new();
            };
            let Some(slot) = r.todo.pop_front() else {
                let Some(done) = self.replacing.take() else {
                    return Vec::new();
                };
                let mut effects: Vec<Effect> =
                    done.problems.into_iter().map(Effect::Problem).collect();
                for (slot, _) in &done.switched {
                    effects.extend(self.visibility_of(slot));
                }
                return effects;
            };
            let Some(old) = self.at_mut(&slot).map(|t| t.clone()) else {
                continue;
            };
            let new = self.retrack(&old);
            let app = new.application(slot.clone(), None);
            if let Some(t) = self.at_mut(&slot) {
                *t = new;
            }
            if let Some(r) = self.replacing.as_mut() {
                r.switched.push((slot.clone(), old));
            }
            self.pending.insert(slot, Pending::Switch);
            return vec![Effect::Apply(Box::new(app))];
        }
    }

    /// A workload's new rules were applied: on to the next, or back to the previous policies.
    pub(super) fn switched(&mut self, slot: &Slot, outcome: &ApplyOutcome) -> Vec<Effect> {
        let require = self.config.require_enforcement;
        let Some(t) = self.at_mut(slot) else {
            return self.next_switch();
        };
        let mut settled = t.settle(outcome, true);
        let (key, coverage) = (t.key.clone(), t.coverage.clone());
        let was_complete = self
            .replacing
            .as_ref()
            .and_then(|r| r.switched.last())
            .is_some_and(|(_, old)| old.coverage.complete());
        let incomplete = require && was_complete && !coverage.complete();
        if settled.failed == 0 && !incomplete {
            if let Some(r) = self.replacing.as_mut() {
                r.problems.append(&mut settled.problems);
            }
            return self.next_switch();
        }
        let mut reason = settled.problems;
        if incomplete {
            reason.push(format!(
                "enforcement is required and it would be {coverage}"
            ));
        }
        let Some(r) = self.replacing.take() else {
            return Vec::new();
        };
        self.policy = r.previous;
        let what = if r.previous_config.is_some() {
            "configuration"
        } else {
            "policies"
        };
        if let Some(config) = r.previous_config {
            self.config = config;
        }
        let mut effects = Vec::new();
        for (slot, back) in r.switched.into_iter().rev() {
            let app = back.application(slot.clone(), None);
            if let Some(t) = self.at_mut(&slot) {
                *t = back;
            }
            self.pending.insert(slot, Pending::Restore);
            effects.push(Effect::Apply(Box::new(app)));
        }
        effects.push(Effect::Refused {
            workload: key.name,
            reason: format!("{what} not replaced: {}", reason.join("; ")),
        });
        effects
    }

    /// A workload's previous rules were applied again after a rolled-back replacement.
    pub(super) fn restored(&mut self, slot: &Slot, outcome: &ApplyOutcome) -> Vec<Effect> {
        let Some(t) = self.at_mut(slot) else {
            return Vec::new();
        };
        let settled = t.settle(outcome, true);
        let failed = (settled.failed > 0).then(|| {
            Effect::Problem(format!(
                "{}: putting its previous rules back failed: it is {}",
                t.key, t.coverage
            ))
        });
        let mut effects = settled.effects();
        effects.extend(failed);
        effects
    }

    /// The visibility entry of the workload of a cgroup slot (the host's is the default the
    /// shell sets after a replacement).
    fn visibility_of(&self, slot: &Slot) -> Vec<Effect> {
        match slot {
            Slot::Cgroup(id) => self
                .workloads
                .get(id)
                .map(|t| t.set_visibility(*id))
                .into_iter()
                .collect(),
            Slot::Host | Slot::Container(_) => Vec::new(),
        }
    }
}
