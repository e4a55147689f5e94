//! Systemd services of the inventory, tracked by their cgroups like containers.

use super::*;

impl WorkloadIndex {
    fn track_service(&self, service: &Service, key: WorkloadKey) -> Tracked {
        Tracked::new(
            key,
            service.workload(),
            None,
            Some(service.clone()),
            &self.config.posture,
            &self.policy,
        )
    }

    /// A service runs in `cgroup_id`: tracked (replacing the same unit under another cgroup),
    /// unless a container holds the cgroup.
    pub(super) fn service_running(&mut self, service: &Service, cgroup_id: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.units.get(&service.unit) != Some(&cgroup_id) {
            effects.extend(self.service_stopped(&service.unit));
        }
        let (key, added) = self.add_service_cgroup(service, cgroup_id, "", &mut effects);
        if added {
            self.units.insert(service.unit.clone(), cgroup_id);
            effects.push(Effect::Changed(ContainerChange::Tracked(key)));
        }
        effects
    }

    /// Tracks `cgroup_id` (the unit's cgroup, or the one at `below` under it) as `service`;
    /// false when a container holds it.
    fn add_service_cgroup(
        &mut self,
        service: &Service,
        cgroup_id: u64,
        below: &str,
        effects: &mut Vec<Effect>,
    ) -> (WorkloadKey, bool) {
        let key = WorkloadKey::new(format!("{}/{}{below}", service.namespace, service.unit))
            .with_cgroup(cgroup_id);
        match self.workloads.get(&cgroup_id) {
            Some(t) if t.service.is_none() => {
                effects.push(Effect::Problem(format!(
                    "service {}: cgroup {cgroup_id} belongs to a container; not tracked as a \
                     service",
                    service.unit
                )));
                return (key, false);
            }
            // A cgroup is one workload: one found below another listed unit's stays that one's.
            Some(t) if t.key != key => {
                effects.push(Effect::Problem(format!(
                    "service {}: cgroup {cgroup_id} is tracked as {} already; not tracked again",
                    service.unit, t.key
                )));
                return (key, false);
            }
            _ => {}
        }
        let t = self.track_service(service, key.clone());
        let visibility = t.set_visibility(cgroup_id);
        self.workloads.insert(cgroup_id, t);
        effects.push(self.apply_in_place(Slot::Cgroup(cgroup_id)));
        effects.push(visibility);
        (key, true)
    }

    /// Untracks a service and the cgroups below its own; its processes, if any, are the
    /// host's again.
    pub(super) fn service_stopped(&mut self, unit: &str) -> Vec<Effect> {
        let mut effects = Vec::new();
        for (cgroup_id, below) in self.unit_children.remove(unit).unwrap_or_default() {
            effects.extend(self.untrack(cgroup_id, &format!("{unit}{below}")));
        }
        if let Some(cgroup_id) = self.units.remove(unit) {
            effects.extend(self.untrack(cgroup_id, unit));
        }
        effects
    }

    /// Tracks the cgroups below a tracked service's that exist now (`below`: id → path below
    /// the unit's) and untracks those that are gone.
    fn sync_service_children(
        &mut self,
        service: &Service,
        below: &BTreeMap<u64, String>,
        effects: &mut Vec<Effect>,
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
            effects.extend(self.untrack(id, &name));
            effects.push(Effect::Changed(ContainerChange::Untracked(name)));
        }
        for (id, path) in below {
            if now.contains_key(id) {
                continue;
            }
            let (key, added) = self.add_service_cgroup(service, *id, path, effects);
            if added {
                now.insert(*id, path.clone());
                effects.push(Effect::Changed(ContainerChange::Tracked(key)));
            }
        }
        if !now.is_empty() {
            self.unit_children.insert(service.unit.clone(), now);
        }
    }

    /// Brings the tracked services in line with `inventory` and the units `found`: a service
    /// whose cgroup is gone (it stopped) or was re-created (a restart: new cgroup id), or whose
    /// inventory entry changed or went, is untracked first; then each listed service found is
    /// tracked if it is not, and the cgroups below its own follow it.
    pub(super) fn services_found(
        &mut self,
        inventory: &Inventory,
        found: &BTreeMap<String, FoundUnit>,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut tracked: Vec<(String, u64)> =
            self.units.iter().map(|(u, id)| (u.clone(), *id)).collect();
        tracked.sort();
        for (unit, cgroup_id) in tracked {
            let keep = match (inventory.get(&unit), found.get(&unit)) {
                (Some(s), Some(c)) => {
                    c.cgroup_id == cgroup_id
                        && self
                            .workloads
                            .get(&cgroup_id)
                            .and_then(|t| t.service.as_ref())
                            .is_some_and(|old| old.workload() == s.workload())
                }
                _ => false,
            };
            if !keep {
                effects.extend(self.service_stopped(&unit));
                effects.push(Effect::Changed(ContainerChange::Untracked(unit)));
            }
        }
        for s in inventory.services() {
            let Some(c) = found.get(&s.unit) else {
                continue;
            };
            if !self.units.contains_key(&s.unit) {
                effects.extend(self.service_running(s, c.cgroup_id));
                if !self.units.contains_key(&s.unit) {
                    continue;
                }
            }
            self.sync_service_children(s, &c.below, &mut effects);
        }
        effects
    }
}
