//! Containers, services and policies coming and going: what needs the system is resolved here
//! (a task's cgroup, whether an old task still runs, the units' cgroups), the rest is the
//! index's.

use super::*;
use crate::index::container_name;

/// The id of the cgroup v2 that process `pid` is in.
fn cgroup_of(pid: u32) -> Result<u64> {
    let path = identity::proc_cgroup(pid)?;
    identity::cgroup_id(&identity::cgroup2_root()?, &path)
}

/// The change among `effects` (the first; none: unchanged).
fn change(effects: Vec<Effect>) -> ContainerChange {
    effects
        .into_iter()
        .find_map(|e| match e {
            Effect::Changed(c) => Some(c),
            _ => None,
        })
        .unwrap_or(ContainerChange::Unchanged)
}

/// The change among `effects`, or the refusal among them as an error.
fn admitted(effects: Vec<Effect>) -> Result<ContainerChange> {
    for e in &effects {
        if let Effect::Refused { workload, reason } = e {
            return Err(Error::NotEnforced {
                workload: workload.clone(),
                reason: reason.clone(),
            });
        }
    }
    Ok(change(effects))
}

impl Runtime {
    /// Starts tracking a container whose task runs (its cgroup is found through the pid):
    /// applies its rules with every enforcer and sets its kernel visibility.
    pub fn add_container(&mut self, info: &ContainerInfo) -> Result<WorkloadKey> {
        let pid = info.pid.ok_or(Error::Parse {
            what: "container without a running task",
            input: info.id.clone(),
        })?;
        Ok(self.add_container_with_cgroup(info, cgroup_of(pid)?))
    }

    /// Like [`Runtime::add_container`] with a known cgroup id. Returns the container's key;
    /// a task already tracked is left as it is, another task tracked under the same id (a
    /// restart) is untracked first, a CRI sandbox is not tracked, and the container is no longer
    /// loaded ahead (it runs).
    pub fn add_container_with_cgroup(
        &mut self,
        info: &ContainerInfo,
        cgroup_id: u64,
    ) -> WorkloadKey {
        let input = Input::ContainerRunning { info, cgroup_id };
        match change(self.run(&input, Now::system())) {
            ContainerChange::Tracked(key) => key,
            _ => match self.index.container_key(&info.id) {
                Some(key) => key.clone(),
                None => WorkloadKey::new(container_name(info)).with_cgroup(cgroup_id),
            },
        }
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
    /// name (AppArmor: the profile must exist before runc applies it at task creation); a
    /// container whose task stops, or whose task's cgroup cannot be found, is no longer loaded
    /// ahead.
    pub fn container_event(&mut self, ev: &ContainerEvent) -> Result<ContainerChange> {
        let now = Now::system();
        match ev {
            ContainerEvent::Defined(info) => {
                let ahead = self
                    .enforcement
                    .as_ref()
                    .is_some_and(Enforcement::loads_ahead);
                if !ahead {
                    return Ok(ContainerChange::Unchanged);
                }
                Ok(change(self.run(&Input::ContainerDefined(info), now)))
            }
            ContainerEvent::Created(info) | ContainerEvent::Started(info) => {
                if info.is_sandbox()
                    || (self.index.container_key(&info.id).is_some()
                        && self.index.task_of(&info.id) == info.pid)
                {
                    return Ok(ContainerChange::Unchanged);
                }
                let found = info
                    .pid
                    .ok_or(Error::Parse {
                        what: "container without a running task",
                        input: info.id.clone(),
                    })
                    .and_then(cgroup_of);
                match found {
                    Ok(cgroup_id) => {
                        let input = Input::ContainerRunning { info, cgroup_id };
                        Ok(change(self.run(&input, now)))
                    }
                    Err(e) => {
                        // Its previous task, if tracked, is gone.
                        self.run(&Input::ContainerStopped { id: &info.id }, now);
                        Err(e)
                    }
                }
            }
            ContainerEvent::Stopped { id, .. } => {
                Ok(change(self.run(&Input::ContainerStopped { id }, now)))
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
        let now = Now::system();
        match self.index.task_of(&info.id) {
            Some(tracked) if tracked == pid => return Ok(ContainerChange::Unchanged),
            // A container is created once per task: a report for one whose task still runs
            // is not a creation, and must not move its rules elsewhere.
            Some(old) if Path::new(&format!("/proc/{old}")).exists() => {
                return Err(Error::NotEnforced {
                    workload: self
                        .index
                        .container_key(&info.id)
                        .map_or_else(|| info.id.clone(), |k| k.name.clone()),
                    reason: format!(
                        "its task (pid {old}) still runs: a creation for pid {pid} is refused"
                    ),
                });
            }
            _ => {}
        }
        let cgroup_id = match cgroup_of(pid) {
            Ok(id) => id,
            Err(e) => {
                self.run(&Input::ContainerStopped { id: &info.id }, now);
                return Err(e);
            }
        };
        let input = Input::ContainerCreating {
            info,
            cgroup_id,
            rootfs,
        };
        admitted(self.run(&input, now))
    }

    /// Sets (or, with `None`, forgets for containers to come) the identity of the pod of the
    /// container `key` names, as the orchestrator reports it ([`Input::ContainerIdentity`]):
    /// policies select the container by its labels, postures by its annotations, and its
    /// records carry its owner. Known before the container is tracked (by pod uid and
    /// container name, from the pod's spec) they select its rules from its first apply; a
    /// tracked container whose labels or annotations change gets its rules again before this
    /// returns, and how long it ran with other rules is reported through
    /// [`Runtime::take_problems`].
    pub fn container_identity(&mut self, key: &IdentityKey, identity: Option<&PodIdentity>) {
        self.run(&Input::ContainerIdentity { key, identity }, Now::system());
    }

    /// Stops tracking a container (removes its rules from the enforcers and its kernel
    /// visibility); rules loaded ahead for it are no longer kept from a sweep.
    pub fn remove_container(&mut self, id: &str) {
        self.run(&Input::ContainerStopped { id }, Now::system());
    }
}

impl Runtime {
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
        let input = Input::ServiceRunning { service, cgroup_id };
        match change(self.run(&input, Now::system())) {
            ContainerChange::Tracked(key) => key,
            _ => WorkloadKey::new(format!("{}/{}", service.namespace, service.unit))
                .with_cgroup(cgroup_id),
        }
    }

    /// Stops tracking a service and the cgroups below its own (removes their rules from the
    /// enforcers and their kernel visibility); its processes, if any, are the host's again.
    pub fn remove_service(&mut self, unit: &str) {
        self.run(&Input::ServiceStopped { unit }, Now::system());
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
        let found: BTreeMap<String, FoundUnit> =
            identity::find_units(cgroup_root, &units, identity::UNIT_SEARCH_DEPTH)
                .into_iter()
                .map(|(unit, c)| {
                    let prefix = c.path.len();
                    let below =
                        identity::cgroups_below(cgroup_root, &c.path, identity::UNIT_SEARCH_DEPTH)
                            .into_iter()
                            .filter_map(|b| Some((b.cgroup_id, b.path.get(prefix..)?.to_string())))
                            .collect();
                    (unit, FoundUnit::new(c.cgroup_id, below))
                })
                .collect();
        let input = Input::Services {
            inventory,
            found: &found,
        };
        self.run(&input, Now::system())
            .into_iter()
            .filter_map(|e| match e {
                Effect::Changed(c) => Some(c),
                _ => None,
            })
            .collect()
    }
}

impl Runtime {
    /// Replaces the policies atomically: every workload gets its new rules, or, when `paths`
    /// do not load or compile or an enforcer cannot apply them ([`Runtime::replace_policy`]),
    /// nothing changes and the error says why.
    pub fn reload<P: AsRef<Path>>(&mut self, paths: &[P]) -> Result<usize> {
        self.reload_files(&armor_core::PolicyFiles::read(
            paths,
            &armor_core::Config::default().load_limits,
        ))
    }

    /// [`Runtime::reload`] from policy files already read ([`armor_core::PolicyFiles`]): the bytes an
    /// agent compared to see the change are the bytes it applies.
    pub fn reload_files(&mut self, files: &armor_core::PolicyFiles) -> Result<usize> {
        let policy = crate::runtime::load_policy_files(files)?;
        self.replace_policy(policy)?;
        Ok(self.policy().rules().len())
    }

    /// Puts `policy` in force for every workload, all or none: the host's and each tracked
    /// workload's rules are applied in turn; when an enforcer fails to apply one (or, with
    /// [`RuntimeConfig::require_enforcement`], a workload whose rules were all enforced would
    /// not be any more), every workload already switched gets its previous rules back, the
    /// previous policy stays in force and the error names the workload and why. What was
    /// reported of the rules not taken is dropped; a failure while putting the previous rules
    /// back is reported through [`Runtime::take_problems`].
    pub fn replace_policy(&mut self, policy: impl Into<Arc<CompiledPolicy>>) -> Result<()> {
        let policy = policy.into();
        admitted(self.run(&Input::ReplacePolicy(&policy), Now::system())).map(|_| ())
    }

    /// Puts `config` in force without a restart, all or none like
    /// [`Runtime::replace_policy`]: the cluster and host names and the throttling apply to the
    /// next records; the host labels, default postures, visibility and namespace annotations
    /// select each workload's rules and visibility, which are applied again. When an enforcer
    /// fails (or enforcement is required and a workload would lose it), the previous
    /// configuration stays in force and the error says why.
    pub fn reconfigure(&mut self, config: &RuntimeConfig) -> Result<()> {
        admitted(self.run(&Input::Reconfigure(config), Now::system())).map(|_| ())
    }

    /// The configuration in force.
    pub fn config(&self) -> &RuntimeConfig {
        self.index.config()
    }
}
