//! Containers: tracking them from containerd's lifecycle events and from the OCI hook, and
//! untracking them.

use super::*;

/// The id of the cgroup v2 that process `pid` is in.
pub(super) fn cgroup_of(pid: u32) -> Result<u64> {
    let path = identity::proc_cgroup(pid)?;
    identity::cgroup_id(&identity::cgroup2_root()?, &path)
}

impl Runtime {
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
        c.pod = info.pod();
        Tracked::new(
            key,
            Workload::Container(c),
            Some(info.clone()),
            None,
            &self.config.posture,
            &self.policy,
        )
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
    pub(super) fn container_name(info: &ContainerInfo) -> String {
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
}

impl Runtime {
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
            // Undo what any enforcer did apply before the container is refused (an enforcer
            // that applied nothing answers `UnknownWorkload`, which changes nothing).
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
}

impl Runtime {
    /// Stops tracking a container (removes its rules from the enforcers).
    pub fn remove_container(&mut self, id: &str) {
        if let Some(cgroup_id) = self.ids.remove(id) {
            self.untrack(cgroup_id, id);
        }
    }

    /// Removes the workload of `cgroup_id` (`id` names it in problems).
    pub(super) fn untrack(&mut self, cgroup_id: u64, id: &str) {
        if let Some(t) = self.containers.remove(&cgroup_id) {
            for e in &self.enforcers {
                if t.applied
                    && let Err(err) = e.remove(&t.key)
                {
                    self.problems.push(format!(
                        "{}: {}: {}",
                        e.name(),
                        t.key,
                        armor_core::diag::error_chain(&err)
                    ));
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
}
