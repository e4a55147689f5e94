//! [`Enforcer`] implemented by [`BpfLsm`]: probe, compile, apply, remove.

use super::*;

/// `BPFLSM`: the `Enforcer` field of alerts.
pub const NAME: &str = "BPFLSM";

impl Enforcer for BpfLsm {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Trial-loads every program (without attaching any). A kernel that refuses `lsm/`
    /// programs refuses the first load, so a refusal costs little. When every program loads,
    /// the verified programs are kept for the [`BpfLsm::load`] (or first apply) that follows,
    /// which then only attaches them. Once the programs are attached, the probe says so without
    /// loading anything.
    fn probe(&self) -> Support {
        {
            let st = self.lock();
            if st.loaded.is_some() || st.probed.is_some() {
                return Support::Supported;
            }
        }
        let mask = Table::new(self.config.table_slots).mask();
        let filter_mask = Filter::new(self.config.filter_bits).mask();
        let mut ebpf = match loader(&self.config, &mask, &filter_mask).load(LSM_OBJ) {
            Ok(e) => e,
            Err(e) => {
                return Support::Unsupported {
                    reason: format!(
                        "cannot load the BPF object: {}",
                        armor_core::diag::error_chain(&e)
                    ),
                };
            }
        };
        let btf = match Btf::from_sys_fs() {
            Ok(b) => b,
            Err(e) => {
                return Support::Unsupported {
                    reason: format!("no kernel BTF: {}", armor_core::diag::error_chain(&e)),
                };
            }
        };
        let (hook, e) = match load_all(&mut ebpf, &btf) {
            Ok(times) => {
                let mut st = self.lock();
                if st.loaded.is_none() {
                    st.probed = Some(ebpf);
                    st.load_times = times;
                }
                return Support::Supported;
            }
            Err(VerifyError::Missing(name)) => {
                return Support::Unsupported {
                    reason: format!("program `{name}` missing"),
                };
            }
            Err(VerifyError::Program { hook, source }) => (hook, source),
        };
        let (errno, log) = match &e {
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } => (io_error.raw_os_error(), verifier_log.to_string()),
            ProgramError::SyscallError(s) => (s.io_error.raw_os_error(), String::new()),
            _ => (None, String::new()),
        };
        let errno = errno.map_or_else(
            || armor_core::diag::error_chain(&e),
            |n| format!("{} (errno {n})", errno_name(n)),
        );
        let log = if log.trim().is_empty() {
            "empty verifier log".to_owned()
        } else {
            format!("verifier log: {}", log.trim())
        };
        let what = if errno.starts_with("EPERM") {
            "kernel refuses lsm programs"
        } else {
            "kernel rejects an lsm program"
        };
        Support::Unsupported {
            reason: format!("{what} ({errno}): bpf_prog_load of `lsm/{hook}` failed; {log}"),
        }
    }

    /// Compiles the rules and resolves the (device, inode) of their exact paths and directories
    /// below the destination's root (the host's: `/`), through the mount table seen there.
    fn compile(
        &self,
        dest: &Destination,
        rules: &RuleSet,
    ) -> Result<Box<dyn Artifact>, CompileError> {
        let mut a = compile_with(&dest.key.name, rules, self.config.max_glob_states);
        let root = dest
            .root
            .clone()
            .or_else(|| rules.is_host().then(|| PathBuf::from("/")));
        if let Some(r) = root {
            let mounts = mounts(&r);
            a = a.resolve(|p| resolve_inode(&r, &mounts, p));
        }
        a.from_first_exec = dest.start == Start::FirstExec;
        Ok(Box::new(a))
    }

    fn apply(&self, dest: &Destination, artifact: &dyn Artifact) -> Result<Applied, ApplyError> {
        let a = artifact
            .as_any()
            .downcast_ref::<BpfArtifact>()
            .ok_or(ApplyError::ForeignArtifact { enforcer: NAME })?;
        let mut st = self.lock();
        let applied = self.apply_locked(&mut st, &dest.key, a, |l, cg, val| {
            l.workloads
                .insert(cg, val, 0)
                .map_err(|e| map_err("bpf_map_update_elem", e))
        });
        if applied.is_ok() {
            st.failed.remove(&dest.key);
        } else {
            st.failed.insert(dest.key.clone());
        }
        applied
    }

    fn remove(&self, key: &WorkloadKey) -> Result<(), ApplyError> {
        let mut st = self.lock();
        st.failed.remove(key);
        let Some(old) = st.installed.remove(key) else {
            return Err(ApplyError::UnknownWorkload(key.name.clone()));
        };
        st.used_entries = st.used_entries.saturating_sub(old.entries());
        st.used_dfas = st.used_dfas.saturating_sub(old.dfas.len());
        if let Some(l) = st.loaded.as_mut() {
            l.workloads
                .remove(&old.cgroup)
                .map_err(|e| map_err("bpf_map_delete_elem", e))?;
            wait_for_readers();
            clear(l, &old.placed, &old.dfas);
            uncount(l, &old.keys);
        }
        Ok(())
    }

    fn set_alert_sink(&self, sink: Arc<dyn AlertSink>) {
        self.sink.set(sink);
    }

    /// The kernel maps that fill as workloads are applied: `workloads` (records, the host's
    /// included), `rule_table_slots` and `rule_map_entries` (where rule entries are placed),
    /// `glob_automata`. Before the programs are loaded, every `used` is 0.
    fn capacity(&self) -> Vec<Capacity> {
        let st = self.lock();
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        // What an adopted set left counts until it is released.
        let (mut slots, mut map, mut records) = st.legacy.as_ref().map_or((0, 0, 0), |g| {
            (n(g.slots.len()), n(g.map_keys.len()), n(g.records.len()))
        });
        for i in st.installed.values() {
            slots += n(i.placed.slots.len());
            map += n(i.placed.map.len());
        }
        records += n(st.installed.len());
        vec![
            Capacity::new("workloads", records, u64::from(self.config.max_workloads)),
            Capacity::new(
                "rule_table_slots",
                slots,
                u64::from(Table::new(self.config.table_slots).slots()),
            ),
            Capacity::new(
                "rule_map_entries",
                map,
                u64::from(self.config.max_rule_entries),
            ),
            Capacity::new(
                "glob_automata",
                n(st.used_dfas),
                u64::from(self.config.max_glob_automata),
            ),
        ]
    }

    /// What the runtime no longer tracks, and two things an earlier run left, once the runtime
    /// applied every workload it tracks:
    /// - workloads this enforcer installed that are not in `keep` (their stop was never
    ///   seen, an event lost): removed like [`Enforcer::remove`];
    /// - the workload records of an adopted set whose cgroups are not in `keep` (containers
    ///   gone while no agent ran, workloads the new policies select no more): deleted, and the
    ///   earlier entries with the last of them ([`Pinning`]); a kept workload's record stays
    ///   until it is applied again;
    /// - program sets of another ABI (an earlier version) or that could not be adopted: their
    ///   pins are removed, which detaches them now that this enforcer's programs are attached
    ///   and filled.
    ///
    /// A key without a cgroup id stands for the host (record 0).
    fn sweep(&self, keep: &[WorkloadKey]) -> Result<Vec<String>, ApplyError> {
        let mut removed = Vec::new();
        let stale: Vec<WorkloadKey> = self
            .lock()
            .installed
            .keys()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for key in stale {
            self.remove(&key)?;
            removed.push(format!("the rules of {key}, no longer tracked"));
        }
        let mut st = self.lock();
        let kept_cgroups: std::collections::BTreeSet<u64> =
            keep.iter().map(|k| k.cgroup_id.unwrap_or(0)).collect();
        let gone: Vec<u64> = st.legacy.as_ref().map_or_else(Vec::new, |g| {
            g.records
                .keys()
                .filter(|cg| !kept_cgroups.contains(cg))
                .copied()
                .collect()
        });
        if let Some(l) = st.loaded.as_mut() {
            for cg in &gone {
                match l.workloads.remove(cg) {
                    Ok(()) => {}
                    Err(MapError::SyscallError(e))
                        if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => return Err(map_err("bpf_map_delete_elem", e)),
                }
                removed.push(if *cg == 0 {
                    "the host's rules of an earlier run".to_owned()
                } else {
                    format!("the rules of cgroup {cg} of an earlier run")
                });
            }
        }
        if let Some(g) = st.legacy.as_mut() {
            for cg in &gone {
                g.records.remove(cg);
            }
        }
        release_legacy_if_done(&mut st);
        // An earlier set still enforces for a workload whose apply failed here: it stays
        // attached until that workload is applied (the next sweep tries again).
        let unapplied: Vec<&WorkloadKey> = keep.iter().filter(|k| st.failed.contains(k)).collect();
        if !st.previous_sets.is_empty() && !unapplied.is_empty() {
            removed.push(format!(
                "kept the programs an earlier run pinned attached: {} workloads failed to \
                 apply here (first: {}), and the earlier programs still enforce for them",
                unapplied.len(),
                unapplied
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ));
            return Ok(removed);
        }
        let mut failed = None;
        for dir in std::mem::take(&mut st.previous_sets) {
            match remove_set(&dir) {
                Ok(()) => removed.push(format!(
                    "the programs an earlier run pinned in {}",
                    dir.display()
                )),
                Err(source) => {
                    // Tried again by the next sweep.
                    st.previous_sets.push(dir);
                    failed.get_or_insert(ApplyError::Syscall {
                        call: "unlink",
                        source,
                    });
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }

    /// The programs cannot be taken away while the enforcer holds their links: the kernel
    /// offers no detach for LSM (tracing) links, only closing the last reference, which this
    /// process holds. What can fail is the thread that reads the alerts: its end is reported
    /// (rules stay enforced, their alerts are no longer reported).
    fn health(&self) -> Result<(), String> {
        let st = self.lock();
        let Some(l) = &st.loaded else {
            return Ok(());
        };
        if l.reader.as_ref().is_none_or(JoinHandle::is_finished) && !l.stop.load(Ordering::SeqCst) {
            return Err(format!(
                "{NAME}: the thread reading the kernel's alerts has ended: rules are still \
                 enforced but their alerts are no longer reported"
            ));
        }
        Ok(())
    }
}
