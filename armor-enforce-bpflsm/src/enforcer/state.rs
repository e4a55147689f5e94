//! The enforcer ([`BpfLsm`]), what it keeps per installed workload, and its counters.

use super::*;

/// Counters kept by the kernel programs (sums over CPUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Counters {
    /// Alerts written to the ring buffer.
    pub alerts: u64,
    /// Alerts dropped by the per-workload rate limit.
    pub rate_limited: u64,
    /// Alerts lost because the ring buffer was full (reserve failures).
    pub reserve_failed: u64,
    /// Paths that could not be resolved completely.
    pub incomplete: u64,
    /// Incomplete paths denied because a rule could still match them.
    pub incomplete_denied: u64,
    /// Operations denied.
    pub blocked: u64,
    /// Second (backing file) overlayfs `file_open` calls skipped.
    pub overlay_skipped: u64,
    /// Execs killed because their arguments changed after the `allowedArgs` check.
    pub args_killed: u64,
    /// Alerts read from the ring buffer by user space.
    pub alerts_read: u64,
}

pub(super) struct Installed {
    pub(super) cgroup: u64,
    /// The ruleset id the workload's record points at.
    #[cfg_attr(
        not(feature = "internals"),
        expect(
            dead_code,
            reason = "read only by the non-atomic apply of the atomicity test"
        )
    )]
    pub(super) ruleset: u32,
    /// The alert rate limit written with the ruleset.
    pub(super) alerts_per_sec: u32,
    /// Every entry's key (counted in the filter).
    pub(super) keys: Vec<RuleKey>,
    /// Where the entries are: table slots and map entries.
    pub(super) placed: Placement,
    pub(super) dfas: Vec<DfaKey>,
    pub(super) artifact: BpfArtifact,
}

impl Installed {
    pub(super) fn entries(&self) -> usize {
        self.placed.slots.len() + self.placed.map.len()
    }
}

#[derive(Default)]
pub(super) struct State {
    pub(super) loaded: Option<Loaded>,
    /// The object a successful probe loaded (programs verified, none attached), until the load
    /// that attaches them takes it.
    pub(super) probed: Option<Ebpf>,
    /// How long the kernel took to load (verify) each program, from the probe or load that did.
    pub(super) load_times: LoadTimes,
    pub(super) installed: BTreeMap<WorkloadKey, Installed>,
    pub(super) next_ruleset: u32,
    pub(super) used_entries: usize,
    pub(super) used_dfas: usize,
    /// What an adopted set's maps held, until each of its records is applied again or swept.
    pub(super) legacy: Option<Legacy>,
    /// What became of pinning at load.
    pub(super) pinning: Pinning,
    /// Program sets of earlier runs found at load and not adopted: removed (detached) by the
    /// next sweep that finds every tracked workload applied.
    pub(super) previous_sets: Vec<PathBuf>,
    /// Workloads whose last apply failed (they keep what an earlier set enforces for them).
    pub(super) failed: std::collections::BTreeSet<WorkloadKey>,
    /// The exclusive lock on the pin root, held while the enforcer lives: one enforcer at a
    /// time adopts, pins and sweeps there.
    pub(super) root_lock: Option<nix::fcntl::Flock<std::fs::File>>,
}

pub(super) type Sink = armor_core::enforcer::AlertSlot;

/// The BPF-LSM enforcer. The programs load on the first `apply`.
pub struct BpfLsm {
    pub(super) config: Config,
    /// Where the programs are pinned (`None`: not pinned).
    pub(super) pin_root: Option<PathBuf>,
    /// The alert rate written with each workload's next apply (`config.alerts_per_sec` at first).
    pub(super) alerts_per_sec: AtomicU32,
    pub(super) state: Mutex<State>,
    pub(super) sink: Sink,
}

impl std::fmt::Debug for BpfLsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpfLsm")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl BpfLsm {
    /// An enforcer with `config`. Nothing is loaded until the first `apply`; the programs are
    /// not pinned and end with the enforcer.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            pin_root: None,
            alerts_per_sec: AtomicU32::new(config.alerts_per_sec),
            state: Mutex::new(State {
                next_ruleset: 1,
                ..State::default()
            }),
            sink: Sink::new(),
        }
    }

    /// An enforcer with `config` whose programs are pinned under `root` (`/sys/fs/bpf/armor`,
    /// [`DEFAULT_PIN_ROOT`]): they stay attached, and their rules in force, when the enforcer
    /// or its process ends, and the next enforcer with the same ABI adopts them instead of
    /// loading (see the `pin` section of the crate manual: [`Pinning`]).
    pub fn pinned(config: Config, root: impl Into<PathBuf>) -> Self {
        Self {
            pin_root: Some(root.into()),
            ..Self::new(config)
        }
    }

    /// What became of pinning when the programs were loaded ([`Pinning::Off`] before, or
    /// without a pin root).
    pub fn pinning(&self) -> Pinning {
        self.lock().pinning.clone()
    }

    /// The pin root (`None`: not pinned).
    pub fn pin_root(&self) -> Option<&Path> {
        self.pin_root.as_deref()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Loads and attaches every program (idempotent).
    pub fn load(&self) -> Result<(), LoadError> {
        let mut st = self.lock();
        self.ensure_loaded(&mut st)
    }

    /// Loads and attaches the programs unless they are: the one way `load` and the first
    /// `apply` bring them in. Times are kept from whichever verification happened (the probe's,
    /// when it left its programs).
    pub(super) fn ensure_loaded(&self, st: &mut State) -> Result<(), LoadError> {
        if st.loaded.is_some() {
            return Ok(());
        }
        let mut not_adopted = None;
        if let Some(root) = &self.pin_root
            && root.exists()
        {
            match lock_root(root) {
                Ok(lock) => st.root_lock = Some(lock),
                Err(why) => {
                    // Another enforcer works there: its maps are not this one's to write.
                    let probed = st.probed.take();
                    let (loaded, times, _) = self.load_programs(probed, None)?;
                    st.loaded = Some(loaded);
                    st.pinning = Pinning::Failed { reason: why };
                    if let Some(times) = times {
                        st.load_times = times;
                    }
                    return Ok(());
                }
            }
        }
        if let Some(root) = &self.pin_root {
            match find_sets(root, abi_id(&self.config)) {
                Ok(sets) => {
                    st.previous_sets = sets.others;
                    if let Some(dir) = sets.adopt {
                        match self.adopt(&dir) {
                            Ok((loaded, legacy, next)) => {
                                st.probed = None;
                                st.loaded = Some(loaded);
                                st.next_ruleset = next;
                                st.used_entries = legacy.entries();
                                st.used_dfas = legacy.dfas.len();
                                st.pinning = Pinning::Adopted {
                                    dir,
                                    records: legacy.records.len(),
                                };
                                st.legacy = Some(legacy);
                                release_legacy_if_done(st);
                                return Ok(());
                            }
                            Err(e) => {
                                // Loaded afresh; the set is detached by the next sweep.
                                not_adopted = Some(armor_core::diag::error_chain(&e));
                                st.previous_sets.push(dir);
                            }
                        }
                    }
                }
                Err(e) => not_adopted = Some(format!("reading {}: {e}", root.display())),
            }
        }
        let probed = st.probed.take();
        let (loaded, times, pinning) = self.load_programs(probed, self.pin_root.as_deref())?;
        st.loaded = Some(loaded);
        // A root this load's pinning made is locked from now on.
        if st.root_lock.is_none()
            && let Some(root) = &self.pin_root
            && let Ok(lock) = lock_root(root)
        {
            st.root_lock = Some(lock);
        }
        st.pinning = match (pinning, not_adopted) {
            (Pinning::Failed { reason }, Some(why)) => Pinning::Failed {
                reason: format!("{reason}; before that: {why}"),
            },
            (Pinning::Pinned { dir, .. }, Some(why)) => Pinning::Pinned {
                dir,
                not_adopted: Some(why),
            },
            (p, _) => p,
        };
        if let Some(times) = times {
            st.load_times = times;
        }
        Ok(())
    }

    /// How long the kernel took to load each program (hook, wall-clock time; most of it is
    /// the verifier's), from the probe or load that verified them, in [`PROGRAMS`] order.
    /// Programs load on several threads at once, so the times overlap. Empty before.
    pub fn load_times(&self) -> Vec<(&'static str, Duration)> {
        self.lock().load_times.clone()
    }

    /// Sets the alert rate limit (alerts per second and workload; 0 = no limit), like
    /// [`Config::alerts_per_sec`] at start. It is written with each workload's ruleset: a
    /// workload gets the new limit at its next [`Enforcer::apply`], which rewrites it even when
    /// its rules did not change.
    pub fn set_alerts_per_sec(&self, limit: u32) {
        self.alerts_per_sec.store(limit, Ordering::Relaxed);
    }

    /// The workloads installed now (applied and not removed), in key order.
    pub fn installed(&self) -> Vec<WorkloadKey> {
        self.lock().installed.keys().cloned().collect()
    }
}

impl BpfLsm {
    /// The kernel counters (zero before the programs are loaded).
    pub fn counters(&self) -> Result<Counters, ApplyError> {
        let st = self.lock();
        let Some(l) = &st.loaded else {
            return Ok(Counters::default());
        };
        let get = |i: u32| -> Result<u64, ApplyError> {
            let v = l
                .counters
                .get(&i, 0)
                .map_err(|e| map_err("bpf_map_lookup_elem", e))?;
            Ok(v.iter().sum())
        };
        Ok(Counters {
            alerts: get(abi::counter::ALERTS)?,
            rate_limited: get(abi::counter::RATE_LIMITED)?,
            reserve_failed: get(abi::counter::RESERVE_FAILED)?,
            incomplete: get(abi::counter::INCOMPLETE)?,
            incomplete_denied: get(abi::counter::INCOMPLETE_DENIED)?,
            blocked: get(abi::counter::BLOCKED)?,
            overlay_skipped: get(abi::counter::OVERLAY_SKIPPED)?,
            args_killed: get(abi::counter::ARGS_KILLED)?,
            alerts_read: l.alerts_read.load(Ordering::Relaxed),
        })
    }

    /// The hash key of the loaded programs.
    pub fn hash_key(&self) -> Option<u64> {
        self.lock().loaded.as_ref().map(|l| l.hash_key)
    }

    /// What the kernel maps hold now, read from the maps: (workload records, table slots
    /// holding an entry, `armor_rules` entries, automata). For tests that compare it with what
    /// the enforcer believes it installed.
    #[cfg(feature = "internals")]
    pub fn kernel_entries(&self) -> Result<(usize, usize, usize, usize), ApplyError> {
        let st = self.lock();
        let Some(l) = &st.loaded else {
            return Ok((0, 0, 0, 0));
        };
        let get = |e| map_err("bpf_map_lookup_elem", e);
        let count = |keys: &mut dyn Iterator<Item = Result<(), MapError>>| {
            let mut n = 0;
            for k in keys {
                k.map_err(get)?;
                n += 1;
            }
            Ok::<usize, ApplyError>(n)
        };
        let records = count(&mut l.workloads.keys().map(|k| k.map(drop)))?;
        let mut slots = 0;
        for i in 0..l.tags.slots() {
            if l.table.get(&i, 0).map_err(get)?.tag > abi::TAG_DELETED {
                slots += 1;
            }
        }
        let rules = count(&mut l.rules.keys().map(|k| k.map(drop)))?;
        let dfas = count(&mut l.dfas.keys().map(|k| k.map(drop)))?;
        Ok((records, slots, rules, dfas))
    }

    /// Rule entries (table slots and map entries) in use by installed workloads.
    pub fn used_entries(&self) -> usize {
        self.lock().used_entries
    }
}
