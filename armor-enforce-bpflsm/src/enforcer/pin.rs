//! Pinning: the programs' links and the maps user space reads, kept in a BPF file system so
//! that enforcement outlives the process that loaded it, and adopted by the next one.
//!
//! # Layout
//! Under the pin root (default [`DEFAULT_PIN_ROOT`], `/sys/fs/bpf/armor`), one directory per
//! program set: `bpflsm-<abi>-<generation>`, where `<abi>` ([`abi_id`]) names exactly what an
//! adopter must agree with (the kernel object's bytes, every map size, the table and filter
//! sizes, a configured hash key, the pin layout) and `<generation>` tells sets of the same ABI
//! apart (the time of pinning, in nanoseconds). A set holds one link per program
//! (`link_<hook>`), the maps of [`PINNED_MAPS`], and last `complete` (the configuration map
//! once more): a set without it was cut short and is never adopted.
//!
//! # What a new enforcer does at load
//! - A complete set of its own ABI exists: it is **adopted**. Nothing is loaded or verified;
//!   the maps are opened and read back (workload records, table, rule and automaton entries,
//!   filter), and what they hold stays in force while the runtime applies its workloads again:
//!   each re-applied workload is written under a new ruleset id and its record flipped to it,
//!   exactly like an update. Once no record of the earlier run is left (each re-applied, or
//!   removed by [`Enforcer::sweep`](armor_core::enforcer::Enforcer::sweep) because the runtime
//!   no longer tracks it), the earlier entries are deleted and the filter bits only they needed
//!   are cleared.
//! - No such set (none at all, or only sets of another ABI): the programs are loaded and
//!   attached, then pinned as a new set. Sets of another ABI stay attached meanwhile: a hook
//!   then runs both programs, and an operation passes only when both allow it, so nothing
//!   enforced before is let through while the new maps fill. The next
//!   [`Enforcer::sweep`](armor_core::enforcer::Enforcer::sweep) — which the runtime calls once
//!   every tracked workload is applied — removes their pins, which detaches them (nothing else
//!   holds them once their agent is gone). There is never an instant with neither set attached.
//!
//! Pinning that fails (the root is not on a BPF file system, a pin refused) leaves the programs
//! attached and owned by the process, as without pinning, and says why
//! ([`Pinning::Failed`]): enforcement then ends with the process.
//!
//! # Removing it
//! Ending the process keeps enforcing (SIGTERM, SIGKILL, a crash, an upgrade). [`uninstall`]
//! removes every set's pins: each set is detached as soon as no process holds it (an agent
//! still running keeps its own until it exits).

use std::collections::BTreeMap;

use aya::maps::Map;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::lsm::LsmLinkId;

use super::*;

/// Where the programs are pinned unless configured otherwise.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/armor";

/// The version of the pin layout (names, what is pinned): part of [`abi_id`].
const PIN_LAYOUT: u32 = 1;

/// The prefix of a program set's directory.
const SET_PREFIX: &str = "bpflsm-";

/// The last pin of a complete set.
const COMPLETE: &str = "complete";

/// The maps an adopter reads and writes, pinned by name.
pub const PINNED_MAPS: &[&str] = &[
    "armor_config",
    "armor_table",
    "armor_rules",
    "armor_filter",
    "armor_dfas",
    "armor_workloads",
    "armor_counters",
    "armor_alerts",
];

/// `statfs` type of a BPF file system.
const BPF_FS_MAGIC: u64 = 0xcafe_4a11;

/// What became of pinning when the programs were loaded ([`BpfLsm::pinning`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Pinning {
    /// Not asked for (or nothing loaded yet): the programs end with the enforcer.
    #[default]
    Off,
    /// Loaded, attached and pinned in `dir`.
    Pinned {
        /// The set's directory.
        dir: PathBuf,
        /// Why a set of the same ABI found there was not adopted (a pin missing, a map
        /// unreadable): it stays attached until the next sweep.
        not_adopted: Option<String>,
    },
    /// An earlier enforcer's set of the same ABI, adopted: nothing was loaded.
    Adopted {
        /// The set's directory.
        dir: PathBuf,
        /// Workload records found in it (the host's included).
        records: usize,
    },
    /// Asked for, and failed: the programs are attached but end with the enforcer.
    Failed {
        /// Why.
        reason: String,
    },
}

impl std::fmt::Display for Pinning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => write!(f, "not pinned: enforcement ends with the agent"),
            Self::Pinned { dir, not_adopted } => {
                write!(
                    f,
                    "pinned in {}: enforcement outlives the agent",
                    dir.display()
                )?;
                match not_adopted {
                    Some(why) => write!(f, " (the earlier set was not adopted: {why})"),
                    None => Ok(()),
                }
            }
            Self::Adopted { dir, records } => write!(
                f,
                "adopted the programs pinned in {} ({records} workload records in force): \
                 nothing reloaded",
                dir.display()
            ),
            Self::Failed { reason } => {
                write!(f, "NOT pinned ({reason}): enforcement ends with the agent")
            }
        }
    }
}

/// The identity of a program set: an enforcer adopts only a set with its own. A hash (64-bit
/// FNV-1a) of the kernel object, the pin layout and every setting that sizes a map or is
/// compiled into the programs or their keys.
pub fn abi_id(config: &Config) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(LSM_OBJ);
    eat(&PIN_LAYOUT.to_le_bytes());
    for n in [
        Table::new(config.table_slots).slots(),
        Filter::new(config.filter_bits).mask(),
        config.max_rule_entries,
        config.max_workloads,
        config.max_tracked_files,
        config.max_glob_automata,
        config.ring_bytes,
    ] {
        eat(&n.to_le_bytes());
    }
    match config.hash_key {
        Some(k) => eat(&[&[1u8][..], &k.to_le_bytes()[..]].concat()),
        None => eat(&[0]),
    }
    h
}

/// The program sets under a pin root: the one to adopt, and the others.
#[derive(Debug, Default)]
pub(super) struct Sets {
    pub(super) adopt: Option<PathBuf>,
    pub(super) others: Vec<PathBuf>,
}

/// The program sets under `root` (none when it does not exist): the newest complete set of
/// ABI `abi` to adopt, and every other set (another ABI, incomplete, older).
pub(super) fn find_sets(root: &Path, abi: u64) -> io::Result<Sets> {
    let mut names = match std::fs::read_dir(root) {
        Ok(d) => d
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<io::Result<Vec<String>>>()?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Sets::default()),
        Err(e) => return Err(e),
    };
    names.retain(|n| n.starts_with(SET_PREFIX));
    // Generations are zero-padded: the last in order is the newest.
    names.sort();
    let own = format!("{SET_PREFIX}{abi:016x}-");
    let mut sets = Sets::default();
    for name in names.into_iter().rev() {
        let dir = root.join(&name);
        if sets.adopt.is_none() && name.starts_with(&own) && dir.join(COMPLETE).exists() {
            sets.adopt = Some(dir);
        } else {
            sets.others.push(dir);
        }
    }
    Ok(sets)
}

/// Takes the exclusive lock of the pin root (`flock` on the directory), without waiting: `Err`
/// says another process holds it.
pub(super) fn lock_root(root: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    let dir = std::fs::File::open(root).map_err(|e| format!("opening {}: {e}", root.display()))?;
    nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        format!(
            "another agent holds the pins in {} ({e}): this one does not adopt, pin or sweep \
             there",
            root.display()
        )
    })
}

/// `Ok` when `dir` is in a BPF file system.
pub(super) fn check_bpffs(dir: &Path) -> Result<(), String> {
    let st = nix::sys::statfs::statfs(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    #[allow(
        clippy::useless_conversion,
        clippy::unnecessary_cast,
        reason = "the statfs type's width differs between targets"
    )]
    let magic = st.filesystem_type().0 as u64;
    if magic == BPF_FS_MAGIC {
        Ok(())
    } else {
        Err(format!(
            "{} is not in a BPF file system (mount -t bpf bpf /sys/fs/bpf)",
            dir.display()
        ))
    }
}

/// Removes a program set's pins and its directory: its programs are detached once no process
/// holds them.
pub(super) fn remove_set(dir: &Path) -> io::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                std::fs::remove_file(e?.path())?;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    std::fs::remove_dir(dir)
}

/// Removes every program set pinned under `root`, and `root` when that leaves it empty; returns
/// the sets removed. Each set's programs are detached once no process holds them: at once
/// when no agent runs, else when the agent holding them exits.
pub fn uninstall(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let sets = find_sets(root, 0)?;
    for dir in sets.adopt.into_iter().chain(sets.others) {
        remove_set(&dir)?;
        removed.push(dir);
    }
    if root.exists() && std::fs::read_dir(root)?.next().is_none() {
        std::fs::remove_dir(root)?;
    }
    Ok(removed)
}

/// A typed map opened from its pin in `dir`.
pub(super) fn open_pinned<T>(dir: &Path, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let err = |source: MapError| LoadError::Map {
        call: "BPF_OBJ_GET",
        map: name,
        source: Box::new(source),
    };
    let data = MapData::from_pin(dir.join(name)).map_err(err)?;
    let map = Map::from_map_data(data).map_err(err)?;
    T::try_from(map).map_err(err)
}

/// Pins a freshly attached set into a new directory under `root`: every map of
/// [`PINNED_MAPS`], every link (taken out of its program), then `complete`. Returns what became
/// of it and the links taken out of their programs (the process holds them as well).
///
/// Pinning runs before any rule is written into the new maps, when the programs decide nothing
/// yet. On failure every pin made is removed again and the programs stay attached: a link that
/// a refused pin gave up (aya's `pin` consumes it) is attached again at once, which changes no
/// decision since nothing is installed; an attach refused then is the only error.
pub(super) fn pin_new(
    ebpf: &mut Ebpf,
    attached: Vec<(&'static str, &'static str, LsmLinkId)>,
    root: &Path,
    abi: u64,
) -> Result<(Pinning, Vec<FdLink>), LoadError> {
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = root.join(format!("{SET_PREFIX}{abi:016x}-{generation:020}"));
    let failed = |reason: String| Pinning::Failed { reason };
    let prepared = std::fs::create_dir_all(root)
        .map_err(|e| format!("creating {}: {e}", root.display()))
        .and_then(|()| check_bpffs(root))
        .and_then(|()| {
            std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))
        });
    if let Err(why) = prepared {
        return Ok((failed(why), Vec::new()));
    }
    let maps = PINNED_MAPS.iter().try_for_each(|&name| {
        let map = ebpf.map(name).ok_or(format!("no map {name}"))?;
        map.pin(dir.join(name))
            .map_err(|e| format!("pinning {name}: {}", armor_core::diag::error_chain(&e)))
    });
    if let Err(why) = maps {
        let _ = remove_set(&dir);
        return Ok((failed(why), Vec::new()));
    }
    let mut pinned: Vec<PinnedLink> = Vec::new();
    let mut why = None;
    for (name, hook, id) in attached {
        let prog: &mut Lsm = match ebpf
            .program_mut(name)
            .ok_or_else(|| format!("program {name} missing"))
            .and_then(|p| p.try_into().map_err(|e: ProgramError| e.to_string()))
        {
            Ok(p) => p,
            Err(e) => {
                why = Some(format!("pinning the link of lsm/{hook}: {e}"));
                break;
            }
        };
        let link = prog.take_link(id).map_err(|e| e.to_string()).and_then(|l| {
            FdLink::from(l)
                .pin(dir.join(format!("link_{hook}")))
                .map_err(|e| armor_core::diag::error_chain(&e))
        });
        match link {
            Ok(p) => pinned.push(p),
            Err(e) => {
                // The link was given up: attach the program again before anything else. When
                // that fails the load fails: nothing may stay pinned.
                if let Err(attach) = prog.attach() {
                    let _ = remove_set(&dir);
                    return Err(program_error("bpf_link_create", hook, attach));
                }
                why = Some(format!("pinning the link of lsm/{hook}: {e}"));
                break;
            }
        }
    }
    if why.is_none()
        && let Err(e) = ebpf
            .map("armor_config")
            .ok_or_else(|| "no map armor_config".to_owned())
            .and_then(|m| {
                m.pin(dir.join(COMPLETE))
                    .map_err(|e| armor_core::diag::error_chain(&e))
            })
    {
        why = Some(format!("pinning {COMPLETE}: {e}"));
    }
    match why {
        None => Ok((
            Pinning::Pinned {
                dir,
                not_adopted: None,
            },
            pinned.into_iter().map(FdLink::from).collect(),
        )),
        Some(why) => {
            // Unpinned, still held: the links stay attached while the process runs.
            let mut held = Vec::new();
            let mut left = None;
            for p in pinned {
                match p.unpin() {
                    Ok(l) => held.push(l),
                    // Its pin stays, and keeps it attached: the set is left as it is.
                    Err(e) => {
                        left.get_or_insert(e.to_string());
                    }
                }
            }
            let why = match left {
                Some(e) => format!(
                    "{why}; unpinning failed ({e}): left pinned in {} (incomplete, never \
                     adopted; `--uninstall` removes it)",
                    dir.display()
                ),
                None => match remove_set(&dir) {
                    Ok(()) => why,
                    Err(e) => format!(
                        "{why}; {} could not be removed ({e}): `--uninstall` removes it",
                        dir.display()
                    ),
                },
            };
            Ok((failed(why), held))
        }
    }
}

/// Releases what an adopted set's maps held once none of its records is left ([`release`]),
/// and stops counting it.
pub(super) fn release_legacy_if_done(st: &mut State) {
    if !st.legacy.as_ref().is_some_and(|g| g.records.is_empty()) {
        return;
    }
    let Some(g) = st.legacy.take() else {
        return;
    };
    if let Some(l) = st.loaded.as_mut() {
        release(l, &g);
    }
    st.used_entries = st.used_entries.saturating_sub(g.entries());
    st.used_dfas = st.used_dfas.saturating_sub(g.dfas.len());
}

/// What an earlier enforcer's maps held when they were adopted, kept in force until each of its
/// workload records is applied again or swept.
#[derive(Debug, Default)]
pub(super) struct Legacy {
    /// Workload records (cgroup id, record) not applied again yet.
    pub(super) records: BTreeMap<u64, WorkloadVal>,
    /// Table slots that held entries.
    pub(super) slots: Vec<u32>,
    /// Entries of `armor_rules`.
    pub(super) map_keys: Vec<RuleKey>,
    /// Glob automata.
    pub(super) dfas: Vec<DfaKey>,
}

impl Legacy {
    /// Rule entries it holds (table slots and map entries).
    pub(super) fn entries(&self) -> usize {
        self.slots.len() + self.map_keys.len()
    }
}

/// Reads back what adopted maps hold: the records, the table's tags (restored into `l.tags`),
/// the map entries, the automata, and the filter's words (held in `l.bloom`). Returns it with
/// the highest ruleset id seen.
pub(super) fn read_back(l: &mut Loaded) -> Result<(Legacy, u32), LoadError> {
    let err = |map: &'static str| {
        move |source: MapError| LoadError::Map {
            call: "bpf_map_lookup_elem",
            map,
            source: Box::new(source),
        }
    };
    let mut legacy = Legacy::default();
    let mut top = 0u32;
    for item in l.workloads.iter() {
        let (cg, w) = item.map_err(err("armor_workloads"))?;
        top = top.max(w.ruleset);
        legacy.records.insert(cg, w);
    }
    for i in 0..l.tags.slots() {
        let v = l.table.get(&i, 0).map_err(err("armor_table"))?;
        if v.tag != abi::TAG_EMPTY {
            l.tags.restore(i, v.tag);
        }
        if v.tag > abi::TAG_DELETED {
            legacy.slots.push(i);
        }
    }
    for k in l.rules.keys() {
        let k = k.map_err(err("armor_rules"))?;
        top = top.max(k.ruleset);
        legacy.map_keys.push(k);
    }
    for k in l.dfas.keys() {
        let k = k.map_err(err("armor_dfas"))?;
        top = top.max(k.ruleset);
        legacy.dfas.push(k);
    }
    for i in 0..l.bloom.words() {
        let w = l.filter.get(&i, 0).map_err(err("armor_filter"))?;
        if w != 0 {
            l.bloom.hold(i, w);
        }
    }
    Ok((legacy, top))
}

/// Deletes the `armor_rules` entries and automata of one earlier ruleset, once no record
/// points at it (after the flip that replaced it): returns how many of each went.
pub(super) fn release_ruleset(l: &mut Loaded, g: &mut Legacy, ruleset: u32) -> (usize, usize) {
    // Shared by no other record? Two records of an earlier run never share a ruleset, but a
    // ruleset still named by another record is kept, whatever made it so.
    if g.records.values().any(|r| r.ruleset == ruleset) {
        return (0, 0);
    }
    let (keys, kept): (Vec<RuleKey>, Vec<RuleKey>) = std::mem::take(&mut g.map_keys)
        .into_iter()
        .partition(|k| k.ruleset == ruleset);
    g.map_keys = kept;
    let (dfas, kept): (Vec<DfaKey>, Vec<DfaKey>) = std::mem::take(&mut g.dfas)
        .into_iter()
        .partition(|k| k.ruleset == ruleset);
    g.dfas = kept;
    if keys.is_empty() && dfas.is_empty() {
        return (0, 0);
    }
    wait_for_readers();
    for k in &keys {
        let _ = l.rules.remove(k);
    }
    for d in &dfas {
        let _ = l.dfas.remove(d);
    }
    (keys.len(), dfas.len())
}

/// Deletes what an earlier enforcer's maps held once none of its records is left: its table
/// slots, map entries and automata, and the filter bits only they needed. Errors are ignored
/// as in [`clear`]: an entry that cannot be deleted costs a slot, never a decision.
pub(super) fn release(l: &mut Loaded, legacy: &Legacy) {
    wait_for_readers();
    for idx in &legacy.slots {
        for (i, tag) in l.tags.free(*idx) {
            let _ = write_free(l, i, tag);
        }
    }
    for k in &legacy.map_keys {
        let _ = l.rules.remove(k);
    }
    for d in &legacy.dfas {
        let _ = l.dfas.remove(d);
    }
    let changed = l.bloom.release_held();
    let _ = write_filter(l, &changed);
}
