//! Systemd services of the inventory, tracked by their cgroups like containers.

use super::*;

impl Runtime {
    pub(super) fn track_service(&self, service: &Service, key: WorkloadKey) -> Tracked {
        Tracked::new(
            key,
            service.workload(),
            None,
            Some(service.clone()),
            &self.config.posture,
            &self.policy,
        )
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
    pub(super) fn add_service_cgroup(
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
    pub(super) fn sync_service_children(
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
}
