//! Replacing the policies: every workload's new rules, all or nothing.

use super::*;

impl Runtime {
    /// Replaces the policies atomically: every workload gets its new rules, or, when `paths`
    /// do not load or compile or an enforcer cannot apply them ([`Runtime::replace_policy`]),
    /// nothing changes and the error says why.
    pub fn reload<P: AsRef<Path>>(&mut self, paths: &[P]) -> Result<usize> {
        let policy = load_policies(paths)?;
        self.replace_policy(policy)?;
        Ok(self.policy.rules().len())
    }

    /// The workload `old` with its rules from the current policy.
    pub(super) fn retrack(&self, old: &Tracked) -> Tracked {
        let mut t = match (&old.info, &old.service) {
            (Some(info), _) => self.track(info, old.key.clone()),
            (None, Some(service)) => self.track_service(service, old.key.clone()),
            (None, None) => Tracked::new(
                old.key.clone(),
                old.workload.clone(),
                None,
                None,
                &self.config.posture,
                &self.policy,
            ),
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
    pub(super) fn store(&mut self, slot: Option<u64>, t: Tracked) {
        match slot {
            None => self.host = t,
            Some(id) => {
                self.set_visibility(id, &t);
                self.containers.insert(id, t);
            }
        }
    }
}
