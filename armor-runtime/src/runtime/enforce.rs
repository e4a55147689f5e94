//! Applying a workload's rules with the enforcers: where they go ([`Destination`]), what the
//! kernel then carries ([`Coverage`]), readiness, kernel visibility, sweeping.

use super::*;

/// The kernel visibility a workload needs: its own, plus every category its rules can alert on
/// (alerts need the events even when logs are off).
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
pub(super) fn destination(t: &Tracked, creating: Option<&Path>) -> Destination {
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

impl Runtime {
    pub(super) fn apply_enforcers(&mut self, t: &mut Tracked) -> usize {
        self.apply_enforcers_ahead(t, false, None)
    }

    /// Applies `t`'s rules and sets its [`Coverage`]; `ahead`: for a container without a
    /// process yet, whose coverage is checked (and reported) once its task exists; `creating`:
    /// for a container being created (reported by the OCI hook), its root file system as this
    /// process sees it. Reports, once per change of coverage, each rule the kernel does not
    /// carry (policy, field, position, reason). Returns how many enforcers failed to apply.
    pub(super) fn apply_enforcers_ahead(
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
                .map_err(|err| armor_core::diag::error_chain(&err))
                .and_then(|a| {
                    let gaps = RuleGap::list(e.name(), &t.rules, a.as_ref());
                    e.apply(&dest, a.as_ref())
                        .map(|_| gaps)
                        .map_err(|err| armor_core::diag::error_chain(&err))
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

    pub(super) fn set_visibility(&mut self, cgroup_id: u64, t: &Tracked) {
        if let Some(sink) = &self.sink
            && let Err(e) = sink.set(cgroup_id, &kernel_visibility(&t.visibility, &t.rules))
        {
            self.problems.push(format!("visibility of {}: {e}", t.key));
        }
    }
}

impl Runtime {
    /// Removes what the enforcer keeps for workloads that are neither tracked nor loaded ahead
    /// for a defined container, left by an earlier run or by containers that are gone
    /// ([`Enforcer::sweep`]; AppArmor: its profiles). Call it after the existing containers
    /// were added. Returns what was removed.
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
}
