//! Writing a workload's artefact into the maps: capacity checks, the atomic flip to a new
//! ruleset id, and deleting the old entries once no program can still read them.

use super::*;

pub(super) fn map_err(call: &'static str, e: MapError) -> ApplyError {
    let source = match e {
        MapError::SyscallError(s) => s.io_error,
        other => io::Error::other(other.to_string()),
    };
    ApplyError::Syscall { call, source }
}

impl BpfLsm {
    pub(super) fn apply_locked(
        &self,
        st: &mut State,
        key: &WorkloadKey,
        a: &BpfArtifact,
        flip: impl Fn(&mut Loaded, u64, WorkloadVal) -> Result<(), ApplyError>,
    ) -> Result<Applied, ApplyError> {
        let cgroup = if a.host {
            0
        } else {
            key.cgroup_id
                .ok_or_else(|| ApplyError::NoCgroup(key.name.clone()))?
        };
        let alerts_per_sec = self.alerts_per_sec.load(Ordering::Relaxed);
        if let Some(old) = st.installed.get(key)
            && old.artifact.same_rules(a)
            && old.cgroup == cgroup
            && old.alerts_per_sec == alerts_per_sec
        {
            return Ok(Applied::Unchanged);
        }
        self.ensure_loaded(st)
            .map_err(|e| ApplyError::Unsupported {
                enforcer: NAME,
                source: Box::new(e),
            })?;
        let id = st.next_ruleset;
        let next = id.checked_add(1).filter(|n| *n != 0).unwrap_or(1);
        let hash_key = st.loaded.as_ref().ok_or_else(not_loaded)?.hash_key;
        let enc = a.encode(id, hash_key);
        let used = self.check_capacity(st, key, cgroup, &enc)?;
        // The record an earlier (adopted) enforcer wrote for this cgroup, replaced like an
        // installed workload's.
        let adopted = match &st.legacy {
            Some(g) if !st.installed.contains_key(key) => g.records.get(&cgroup).copied(),
            _ => None,
        };
        // Only a first install may wait for the first exec: rewriting the flag of an installed
        // workload could re-open a container that already runs its entrypoint. An adopted
        // record is not a first install either: the kernel clears the flag at the first exec,
        // so the copy read at adoption may be stale, and writing it back could switch a running
        // container's rules off until its next exec. Its rules are in force at once.
        let until_exec = adopted.is_none() && !st.installed.contains_key(key) && a.from_first_exec;
        let val = WorkloadVal {
            ruleset: id,
            alerts_per_sec,
            flags: if until_exec { abi::W_UNTIL_EXEC } else { 0 },
            pad: 0,
            meta: enc.meta,
        };
        let l = st.loaded.as_mut().ok_or_else(not_loaded)?;
        // The id is recorded as used before any entry carries it: an enforcer that adopts
        // these maps after a crash here starts past it.
        let config_val = ConfigVal {
            next_ruleset: next,
            ..l.config_val
        };
        l.config_map
            .set(0, config_val, 0)
            .map_err(|e| map_err("bpf_map_update_elem", e))?;
        l.config_val = config_val;
        st.next_ruleset = next;
        let (placed, keys, dfas) = write_new(l, &enc, |l| flip(l, cgroup, val))?;
        let previous = st.installed.insert(
            key.clone(),
            Installed {
                cgroup,
                ruleset: id,
                alerts_per_sec,
                keys,
                placed,
                dfas,
                artifact: a.clone(),
            },
        );
        (st.used_entries, st.used_dfas) = used;
        if let (Some(old), Some(l)) = (&previous, st.loaded.as_mut()) {
            delete_old(l, old, cgroup);
        }
        if let Some(old) = adopted
            && let Some(g) = st.legacy.as_mut()
        {
            g.records.remove(&cgroup);
            // The earlier ruleset's map entries and automata carry its id: they go now (no
            // record points at it any more). Its table slots do not name it and wait for the
            // last earlier record.
            let (entries, automata) = match st.loaded.as_mut() {
                Some(l) => release_ruleset(l, g, old.ruleset),
                None => (0, 0),
            };
            st.used_entries = st.used_entries.saturating_sub(entries);
            st.used_dfas = st.used_dfas.saturating_sub(automata);
            release_legacy_if_done(st);
        }
        Ok(if previous.is_some() {
            Applied::Updated
        } else {
            Applied::Installed
        })
    }

    /// Whether `enc` fits next to every other workload's entries, the old entries of `key`
    /// included (they stay until the flip); returns the rule entries and glob automata in use
    /// once the old entries are gone.
    fn check_capacity(
        &self,
        st: &State,
        key: &WorkloadKey,
        cgroup: u64,
        enc: &Encoded,
    ) -> Result<(usize, usize), ApplyError> {
        let old = st.installed.get(key);
        let old_len = old.map_or(0, Installed::entries);
        let others = st.used_entries.saturating_sub(old_len);
        let cap = self.config.max_rule_entries as usize;
        if others + old_len + enc.rules.len() > cap {
            return Err(ApplyError::Capacity {
                workload: key.name.clone(),
                resource: "rule entries",
                needed: enc.rules.len(),
                free: cap.saturating_sub(others + old_len),
                setting: "max_rule_entries",
            });
        }
        // Records an adopted set left count until they are applied again or swept.
        let adopted = st.legacy.as_ref().map_or(0, |g| {
            g.records.len() - usize::from(g.records.contains_key(&cgroup))
        });
        if old.is_none() && st.installed.len() + adopted >= self.config.max_workloads as usize {
            return Err(ApplyError::Capacity {
                workload: key.name.clone(),
                resource: "workload slots",
                needed: 1,
                free: 0,
                setting: "max_workloads",
            });
        }
        let old_dfas = old.map_or(0, |o| o.dfas.len());
        let other_dfas = st.used_dfas.saturating_sub(old_dfas);
        let dfa_cap = self.config.max_glob_automata as usize;
        if other_dfas + old_dfas + enc.dfas.len() > dfa_cap {
            return Err(ApplyError::Capacity {
                workload: key.name.clone(),
                resource: "glob automata",
                needed: enc.dfas.len(),
                free: dfa_cap.saturating_sub(other_dfas + old_dfas),
                setting: "max_glob_automata",
            });
        }
        Ok((others + enc.rules.len(), other_dfas + enc.dfas.len()))
    }

    /// Like `apply`, but writes the new entries *under the workload's current ruleset id*, one
    /// by one, instead of flipping to a new id: a reader can see a mix of old and new rules.
    /// Exists only so the atomicity test can prove it detects a non-atomic update.
    #[cfg(feature = "internals")]
    pub fn apply_non_atomic_for_test(
        &self,
        key: &WorkloadKey,
        artifact: &BpfArtifact,
        pause: Duration,
    ) -> Result<(), ApplyError> {
        let mut st = self.lock();
        let Some(old) = st.installed.get(key) else {
            return Err(ApplyError::UnknownWorkload(key.name.clone()));
        };
        let (id, cgroup, old_keys, old_placed, old_dfas) = (
            old.ruleset,
            old.cgroup,
            old.keys.clone(),
            old.placed.clone(),
            old.dfas.clone(),
        );
        let Some(l) = st.loaded.as_mut() else {
            return Err(not_loaded());
        };
        let enc = artifact.encode(id, l.hash_key);
        let new_keys: Vec<RuleKey> = enc.rules.iter().map(|(k, _)| *k).collect();
        // The filter lets both the old and the new keys through while they are swapped, so
        // readers see the mix this helper exists to produce.
        let changed = l.bloom.add(&new_keys);
        write_filter(l, &changed)?;
        for (idx, _) in &old_placed.slots {
            for (i, tag) in l.tags.free(*idx) {
                write_free(l, i, tag)?;
            }
            std::thread::sleep(pause);
        }
        for (k, _) in &old_placed.map {
            let _ = l.rules.remove(k);
            std::thread::sleep(pause);
        }
        for d in &old_dfas {
            let _ = l.dfas.remove(d);
        }
        let placed = l.tags.place_all(&enc.rules);
        for (i, v) in &placed.slots {
            l.table
                .set(*i, *v, 0)
                .map_err(|e| map_err("bpf_map_update_elem", e))?;
            std::thread::sleep(pause);
        }
        for (k, v) in &placed.map {
            l.rules
                .insert(k, v, 0)
                .map_err(|e| map_err("bpf_map_update_elem", e))?;
            std::thread::sleep(pause);
        }
        for (k, v) in &enc.dfas {
            insert_big(&mut l.dfas, k, v).map_err(|e| map_err("bpf_map_update_elem", e))?;
        }
        uncount(l, &old_keys);
        let mut w = l
            .workloads
            .get(&cgroup, 0)
            .map_err(|e| map_err("bpf_map_lookup_elem", e))?;
        w.meta = enc.meta;
        l.workloads
            .insert(cgroup, w, 0)
            .map_err(|e| map_err("bpf_map_update_elem", e))?;
        if let Some(inst) = st.installed.get_mut(key) {
            inst.keys = new_keys;
            inst.placed = placed;
            inst.dfas = enc.dfas.iter().map(|(k, _)| *k).collect();
            inst.artifact = artifact.clone();
        }
        Ok(())
    }
}

/// Writes the entries of `enc` under its (new) ruleset id, then `flip`s the workload to it;
/// on any failure takes every trace of the new id back, so the workload keeps its previous
/// rules. Returns where the entries were placed, their keys and the automata written.
fn write_new(
    l: &mut Loaded,
    enc: &Encoded,
    flip: impl FnOnce(&mut Loaded) -> Result<(), ApplyError>,
) -> Result<(Placement, Vec<RuleKey>, Vec<DfaKey>), ApplyError> {
    let placed = l.tags.place_all(&enc.rules);
    let dfas: Vec<DfaKey> = enc.dfas.iter().map(|(k, _)| *k).collect();
    let keys: Vec<RuleKey> = enc.rules.iter().map(|(k, _)| *k).collect();
    let mut counted = false;
    let written = write_placement(l, &placed)
        .and_then(|()| {
            for (k, v) in &enc.dfas {
                insert_big(&mut l.dfas, k, v).map_err(|e| map_err("bpf_map_update_elem", e))?;
            }
            counted = true;
            let changed = l.bloom.add(&keys);
            write_filter(l, &changed)
        })
        .and_then(|()| flip(l));
    if let Err(e) = written {
        // Nothing points at the new id: take every trace of it back.
        if counted {
            uncount(l, &keys);
        }
        clear(l, &placed, &dfas);
        return Err(e);
    }
    Ok((placed, keys, dfas))
}

/// Deletes the entries of `old` (replaced by a workload now at `cgroup`) once no program can
/// still be deciding with them.
fn delete_old(l: &mut Loaded, old: &Installed, cgroup: u64) {
    if old.cgroup != cgroup {
        let _ = l.workloads.remove(&old.cgroup);
    }
    wait_for_readers();
    clear(l, &old.placed, &old.dfas);
    uncount(l, &old.keys);
}

/// The programs were loaded a moment ago and are gone: never expected, reported as the
/// enforcer not working rather than a panic.
pub(super) fn not_loaded() -> ApplyError {
    ApplyError::Unsupported {
        enforcer: NAME,
        source: Box::new(io::Error::other("the BPF-LSM programs are not loaded")),
    }
}

/// Waits until every program that may still be deciding with a workload's previous record has
/// finished, before the entries that record points at are deleted: a decision reads the record,
/// then looks its rules up, and deleting them in between would let the operation through. The
/// LSM programs run inside an RCU read-side section, and `membarrier(MEMBARRIER_CMD_GLOBAL)`
/// returns after an RCU grace period (`synchronize_rcu`). Where the kernel refuses it
/// (`nohz_full`), a pause far longer than any decision stands in.
pub(super) fn wait_for_readers() {
    if rustix::thread::membarrier(rustix::thread::MembarrierCommand::Global).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes a placement's table slots and map entries (before any workload points at them).
pub(super) fn write_placement(l: &mut Loaded, p: &Placement) -> Result<(), ApplyError> {
    for (i, v) in &p.slots {
        l.table
            .set(*i, *v, 0)
            .map_err(|e| map_err("bpf_map_update_elem", e))?;
    }
    for (k, v) in &p.map {
        l.rules
            .insert(k, v, 0)
            .map_err(|e| map_err("bpf_map_update_elem", e))?;
    }
    Ok(())
}

/// Rewrites a freed table slot in the kernel.
pub(super) fn write_free(l: &mut Loaded, idx: u32, tag: u64) -> Result<(), ApplyError> {
    let v = if tag == abi::TAG_EMPTY {
        SlotVal::empty()
    } else {
        SlotVal::deleted()
    };
    l.table
        .set(idx, v, 0)
        .map_err(|e| map_err("bpf_map_update_elem", e))
}

/// Writes the filter words a change of [`Filter`] reported.
pub(super) fn write_filter(l: &mut Loaded, changed: &[(u32, u64)]) -> Result<(), ApplyError> {
    for (i, w) in changed {
        l.filter
            .set(*i, *w, 0)
            .map_err(|e| map_err("bpf_map_update_elem", e))?;
    }
    Ok(())
}

/// Counts a ruleset's keys out of the filter once no workload points at it, clearing the bits
/// no other key needs. A word that cannot be rewritten keeps its bits: that costs useless
/// probes, never a missed rule.
pub(super) fn uncount(l: &mut Loaded, keys: &[RuleKey]) {
    let changed = l.bloom.remove(keys);
    let _ = write_filter(l, &changed);
}

/// Takes a ruleset out of the kernel once no workload points at it: its table slots, map
/// entries and automata. Errors are ignored: rewriting a slot or deleting an entry does not
/// fail short of a broken map, and entries never written are simply absent.
pub(super) fn clear(l: &mut Loaded, p: &Placement, dfas: &[DfaKey]) {
    for (i, tag) in l.tags.free_all(p) {
        let _ = write_free(l, i, tag);
    }
    for (k, _) in &p.map {
        let _ = l.rules.remove(k);
    }
    for d in dfas {
        let _ = l.dfas.remove(d);
    }
}

/// Writes one large value (an automaton). The kernel allocates large
/// hash map values from a per-CPU cache that it refills asynchronously, so an insert right after
/// another can find it empty (`ENOMEM`): retried a few times after a short pause.
pub(super) fn insert_big<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    k: &K,
    v: &V,
) -> Result<(), MapError> {
    let mut tries = 0;
    loop {
        match map.insert(k, v, 0) {
            Err(MapError::SyscallError(e))
                if tries < 5 && e.io_error.raw_os_error() == Some(libc::ENOMEM) =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            r => return r,
        }
    }
}
