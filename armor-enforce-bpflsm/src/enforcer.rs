//! [`BpfLsm`]: the [`Enforcer`] that loads the kernel programs and keeps the maps in step with
//! the workloads' artefacts.
//!
//! # Loading
//! The kernel verifies each of the [`PROGRAMS`] when it is loaded, and that is nearly all of the
//! load time (about 5 s per program under an emulated 6.1 guest). The programs are loaded on
//! several threads at once (one per CPU, at most [`MAX_LOAD_THREADS`]): the kernel verifies
//! concurrent loads in parallel. A successful [`Enforcer::probe`] keeps the programs it loaded
//! (verified, not attached), so the [`BpfLsm::load`] or first [`Enforcer::apply`] that follows
//! only attaches them: probing before enforcing costs one verification, not two.
//!
//! # Minimum kernel version
//! Linux 6.1 with `CONFIG_BPF_LSM=y`, `bpf` in the `lsm=` boot list, `CONFIG_DEBUG_INFO_BTF=y`,
//! BPF trampolines and `CONFIG_SECURITY_PATH=y` (for the `path_*` hooks). `bpf_loop` (5.17+)
//! drives the dentry walk.
//!
//! # When enforcement begins
//! A workload's rules are enforced from the moment [`Enforcer::apply`] returns: every later hook
//! call from a task whose cgroup (or an ancestor cgroup) is the workload's reads the new ruleset.
//! For a container, apply the rules after its cgroup exists and before its entrypoint runs (the
//! OCI `createRuntime`/`prestart` point, or a created-but-not-started task): everything the
//! runtime did inside the cgroup before that point was not subject to them.
//!
//! ```no_run
//! use armor_core::enforcer::{Enforcer, Support};
//! use armor_enforce_bpflsm::{BpfLsm, Config};
//! let lsm = BpfLsm::new(Config::default());
//! match lsm.probe() {
//!     Support::Supported => println!("BPF-LSM works here"),
//!     Support::Unsupported { reason } => println!("unsupported: {reason}"),
//!     _ => {}
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use armor_core::RuleSet;
use armor_core::enforcer::{
    AlertSink, Applied, ApplyError, Artifact, Built, CompileError, Destination, Enforcer,
    EnforcerAlert, EnforcerFactory, Start, Support,
};
use armor_core::event::Category;
use armor_core::workload::WorkloadKey;
use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::{Lsm, Program, ProgramError};
use aya::{Btf, Ebpf, EbpfLoader};

use crate::abi::{
    self, AlertRaw, ConfigVal, DfaKey, DfaVal, RuleKey, RuleVal, SlotVal, WorkloadVal,
};
use crate::compile::{BpfArtifact, DEFAULT_MAX_GLOB_STATES, compile_with};
use crate::filter::Filter;
use crate::table::{Placement, Table};

/// The kernel programs, embedded at build time.
pub static LSM_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/armor_lsm.bpf.o"));

/// The programs and the hook each attaches to.
pub const PROGRAMS: &[(&str, &str)] = &[
    ("armor_bprm_check", "bprm_check_security"),
    ("armor_file_open", "file_open"),
    ("armor_file_permission", "file_permission"),
    ("armor_file_free", "file_free_security"),
    ("armor_mmap_file", "mmap_file"),
    ("armor_file_mprotect", "file_mprotect"),
    ("armor_path_link", "path_link"),
    ("armor_path_rename", "path_rename"),
    ("armor_path_unlink", "path_unlink"),
    ("armor_path_truncate", "path_truncate"),
    ("armor_path_chmod", "path_chmod"),
    ("armor_path_chown", "path_chown"),
    ("armor_socket_create", "socket_create"),
    ("armor_socket_connect", "socket_connect"),
    ("armor_socket_accept", "socket_accept"),
    ("armor_capable", "capable"),
];

/// Threads that load (and so have the kernel verify) programs at once, at most.
pub const MAX_LOAD_THREADS: usize = 4;

/// Capacities and options. Every map size comes from here; nothing is a small fixed limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Rule entries of all workloads together (an update briefly needs the old and the new
    /// entries of one workload at once): the capacity of the `armor_rules` hash map, which holds
    /// what the rule table does not.
    pub max_rule_entries: u32,
    /// Slots of the rule table (rounded up to a power of two; 24 bytes each, preallocated). The
    /// kernel finds an entry in the table without a helper call; an entry that does not fit its
    /// probe window goes to the `armor_rules` map, which is slower but just as exact. At most
    /// half full, almost every entry fits ([`crate::table`]).
    pub table_slots: u32,
    /// Bits of the filter shared by all rulesets ([`crate::filter`]; rounded up to a power of
    /// two, an eighth of a byte each, preallocated). Two bits per rule key: with 2^21 bits, a
    /// probe for a key that does not exist passes the filter about once in 190 times while
    /// 65,536 keys are installed. A fuller filter costs useless probes, never a missed rule.
    pub filter_bits: u32,
    /// Workloads (cgroups) that can be managed, plus one for the host (about 120 bytes of
    /// kernel memory each, preallocated: the map entry holds the ruleset's description).
    pub max_workloads: u32,
    /// Open files tracked so `file_permission` skips the ones decided at open.
    pub max_tracked_files: u32,
    /// Alerts per second and workload before the kernel drops (and counts) them; 0 = no limit.
    /// [`BpfLsm::set_alerts_per_sec`] changes it while the enforcer runs.
    pub alerts_per_sec: u32,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// How many cgroup levels above a task's own are searched for its workload (default: all,
    /// so a container's sub-cgroups at any depth keep its rules; the search is one map lookup
    /// per level).
    pub max_cgroup_level: u32,
    /// States of one glob automaton (one workload, one category) at most; at most
    /// [`abi::DFA_STATES`]. A workload whose globs need more keeps them out of the kernel, and
    /// `compile` lists each of their rules as unenforceable.
    pub max_glob_states: u32,
    /// Glob automata in the kernel at once (about 90 KiB each, allocated on use; an update
    /// briefly holds a workload's old and new automata).
    pub max_glob_automata: u32,
    /// The path hash key; `None` draws one from `/dev/urandom` at load.
    pub hash_key: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_rule_entries: 1 << 20,
            table_slots: 1 << 17,
            filter_bits: 1 << 21,
            max_workloads: 1 << 14,
            max_tracked_files: 1 << 16,
            alerts_per_sec: 1000,
            ring_bytes: 1 << 22,
            max_cgroup_level: u32::MAX,
            max_glob_states: DEFAULT_MAX_GLOB_STATES,
            max_glob_automata: 1 << 10,
            hash_key: None,
        }
    }
}

/// Why loading the kernel programs failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The object could not be loaded (maps created, relocated).
    #[error("cannot load the BPF object")]
    Object(#[source] Box<aya::EbpfError>),
    /// The kernel BTF could not be read.
    #[error("cannot read the kernel BTF")]
    Btf(#[source] aya::BtfError),
    /// A program is missing from the object.
    #[error("program or map `{0}` missing from the object")]
    Missing(&'static str),
    /// A program failed to load or attach; `verifier_log` holds the kernel's log.
    #[error("`{call}` of `lsm/{hook}` failed: {verifier_log}")]
    Program {
        /// `bpf_prog_load` or `bpf_link_create`.
        call: &'static str,
        /// The hook.
        hook: &'static str,
        /// The verifier log (empty when the kernel gave none).
        verifier_log: String,
        /// The error.
        #[source]
        source: Box<ProgramError>,
    },
    /// A map could not be opened or written.
    #[error("`{call}` on map `{map}` failed")]
    Map {
        /// The call.
        call: &'static str,
        /// The map.
        map: &'static str,
        /// The error.
        #[source]
        source: Box<MapError>,
    },
    /// Reading `/dev/urandom` for the hash key failed.
    #[error("cannot read /dev/urandom")]
    Random(#[source] io::Error),
}

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
    /// Alerts read from the ring buffer by user space.
    pub alerts_read: u64,
}

struct Installed {
    cgroup: u64,
    ruleset: u32,
    /// The alert rate limit written with the ruleset.
    alerts_per_sec: u32,
    /// Every entry's key (counted in the filter).
    keys: Vec<RuleKey>,
    /// Where the entries are: table slots and map entries.
    placed: Placement,
    dfas: Vec<DfaKey>,
    artifact: BpfArtifact,
}

impl Installed {
    fn entries(&self) -> usize {
        self.placed.slots.len() + self.placed.map.len()
    }
}

struct Loaded {
    table: Array<MapData, SlotVal>,
    /// The user-space copy of the table's tags.
    tags: Table,
    rules: HashMap<MapData, RuleKey, RuleVal>,
    filter: Array<MapData, u64>,
    /// The user-space copy of the filter, with the keys behind every bit.
    bloom: Filter,
    dfas: HashMap<MapData, DfaKey, DfaVal>,
    workloads: HashMap<MapData, u64, WorkloadVal>,
    counters: PerCpuArray<MapData, u64>,
    hash_key: u64,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    alerts_read: Arc<std::sync::atomic::AtomicU64>,
    // Owns the programs and links; dropped last.
    _ebpf: Ebpf,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

#[derive(Default)]
struct State {
    loaded: Option<Loaded>,
    /// The object a successful probe loaded (programs verified, none attached), until the load
    /// that attaches them takes it.
    probed: Option<Ebpf>,
    /// How long the kernel took to load (verify) each program, from the probe or load that did.
    load_times: LoadTimes,
    installed: BTreeMap<WorkloadKey, Installed>,
    next_ruleset: u32,
    used_entries: usize,
    used_dfas: usize,
}

type Sink = Arc<Mutex<Option<Arc<dyn AlertSink>>>>;

/// The BPF-LSM enforcer. The programs load on the first `apply`.
pub struct BpfLsm {
    config: Config,
    /// The alert rate written with each workload's next apply (`config.alerts_per_sec` at first).
    alerts_per_sec: AtomicU32,
    state: Mutex<State>,
    sink: Sink,
}

impl std::fmt::Debug for BpfLsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpfLsm")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn map_err(call: &'static str, e: MapError) -> ApplyError {
    let source = match e {
        MapError::SyscallError(s) => s.io_error,
        other => io::Error::other(other.to_string()),
    };
    ApplyError::Syscall { call, source }
}

fn errno_name(n: i32) -> &'static str {
    match n {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::EINVAL => "EINVAL",
        libc::E2BIG => "E2BIG",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOENT => "ENOENT",
        libc::ENOSPC => "ENOSPC",
        524 => "ENOTSUPP",
        _ => "error",
    }
}

fn program_error(call: &'static str, hook: &'static str, source: ProgramError) -> LoadError {
    let verifier_log = match &source {
        ProgramError::LoadError { verifier_log, .. } => verifier_log.to_string(),
        _ => String::new(),
    };
    LoadError::Program {
        call,
        hook,
        verifier_log,
        source: Box::new(source),
    }
}

/// Takes map `name` out of the loaded object as a typed map (hash map, array, ring buffer…).
fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(LoadError::Missing(name))?;
    T::try_from(map).map_err(|source| LoadError::Map {
        call: "open",
        map: name,
        source: Box::new(source),
    })
}

fn random_key() -> Result<u64, LoadError> {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(LoadError::Random)?;
    Ok(u64::from_ne_bytes(b))
}

fn loader<'a>(config: &Config, table_mask: &'a u32, filter_mask: &'a u32) -> EbpfLoader<'a> {
    let mut l = EbpfLoader::new();
    l.override_global("armor_table_mask", table_mask, true)
        .map_max_entries("armor_table", table_mask.saturating_add(1))
        .override_global("armor_filter_mask", filter_mask, true)
        .map_max_entries("armor_filter", filter_mask / 64 + 1)
        .map_max_entries("armor_rules", config.max_rule_entries.max(1))
        .map_max_entries("armor_workloads", config.max_workloads.saturating_add(1))
        .map_max_entries("armor_rates", config.max_workloads.saturating_add(1))
        .map_max_entries("armor_files", config.max_tracked_files.max(1))
        .map_max_entries("armor_dfas", config.max_glob_automata.max(1))
        .map_max_entries("armor_alerts", config.ring_bytes.max(4096));
    l
}

/// How long each program took to load: hook, wall-clock time.
type LoadTimes = Vec<(&'static str, Duration)>;

/// Why [`load_all`] stopped.
enum VerifyError {
    /// A program of [`PROGRAMS`] is not in the object (or is not an LSM program).
    Missing(&'static str),
    /// The kernel refused a program: the first refused in [`PROGRAMS`] order.
    Program {
        hook: &'static str,
        source: ProgramError,
    },
}

/// Loads every program of [`PROGRAMS`] that `ebpf` has not loaded yet, on up to
/// [`MAX_LOAD_THREADS`] threads (one per CPU): each load is a `bpf_prog_load` that the kernel
/// verifies on the calling thread, so the verification of different programs runs in parallel.
/// Programs are taken in [`PROGRAMS`] order; after a refusal no thread starts another load, and
/// the refusal reported is the first in that order. Returns how long each load took (hook, wall
/// clock), in [`PROGRAMS`] order. Called on a freshly loaded object, it loads every program.
fn load_all(ebpf: &mut Ebpf, btf: &Btf) -> Result<LoadTimes, VerifyError> {
    let mut programs: std::collections::HashMap<&str, &mut Program> = ebpf.programs_mut().collect();
    let mut todo = VecDeque::new();
    for (index, &(name, hook)) in PROGRAMS.iter().enumerate() {
        let prog: &mut Lsm = programs
            .remove(name)
            .and_then(|p| p.try_into().ok())
            .ok_or(VerifyError::Missing(name))?;
        if prog.fd().is_err() {
            todo.push_back((index, hook, prog));
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_LOAD_THREADS)
        .min(todo.len());
    let todo = Mutex::new(todo);
    let refused: Mutex<Option<(usize, &'static str, ProgramError)>> = Mutex::new(None);
    let times: Mutex<Vec<(usize, &'static str, Duration)>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let work = || {
        while !stop.load(Ordering::Relaxed) {
            let next = todo
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop_front();
            let Some((index, hook, prog)) = next else {
                return;
            };
            let t = std::time::Instant::now();
            let loaded = prog.load(hook, btf);
            times
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((index, hook, t.elapsed()));
            if let Err(e) = loaded {
                stop.store(true, Ordering::Relaxed);
                let mut r = refused
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if r.as_ref().is_none_or(|(first, _, _)| index < *first) {
                    *r = Some((index, hook, e));
                }
                return;
            }
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(work);
        }
        work();
    });
    match refused
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some((_, hook, source)) => Err(VerifyError::Program { hook, source }),
        None => {
            let mut times = times
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            times.sort_by_key(|(index, _, _)| *index);
            Ok(times.into_iter().map(|(_, hook, d)| (hook, d)).collect())
        }
    }
}

impl BpfLsm {
    /// An enforcer with `config`. Nothing is loaded until the first `apply`.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            alerts_per_sec: AtomicU32::new(config.alerts_per_sec),
            state: Mutex::new(State {
                next_ruleset: 1,
                ..State::default()
            }),
            sink: Arc::new(Mutex::new(None)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
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
    fn ensure_loaded(&self, st: &mut State) -> Result<(), LoadError> {
        if st.loaded.is_none() {
            let probed = st.probed.take();
            let (loaded, times) = self.load_programs(probed)?;
            st.loaded = Some(loaded);
            if let Some(times) = times {
                st.load_times = times;
            }
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

    /// Takes the object a probe loaded (every program verified), or loads the object and has
    /// the kernel verify every program; then writes the configuration and attaches every
    /// program. The load times are `None` when the probe did the verifying.
    fn load_programs(
        &self,
        probed: Option<Ebpf>,
    ) -> Result<(Loaded, Option<LoadTimes>), LoadError> {
        let tags = Table::new(self.config.table_slots);
        let mask = tags.mask();
        let bloom = Filter::new(self.config.filter_bits);
        let filter_mask = bloom.mask();
        let (mut ebpf, times) = match probed {
            Some(e) => (e, None),
            None => {
                let mut ebpf = loader(&self.config, &mask, &filter_mask)
                    .load(LSM_OBJ)
                    .map_err(|e| LoadError::Object(Box::new(e)))?;
                let btf = Btf::from_sys_fs().map_err(LoadError::Btf)?;
                let times = load_all(&mut ebpf, &btf).map_err(|e| match e {
                    VerifyError::Missing(name) => LoadError::Missing(name),
                    VerifyError::Program { hook, source } => {
                        program_error("bpf_prog_load", hook, source)
                    }
                })?;
                (ebpf, Some(times))
            }
        };
        let hash_key = match self.config.hash_key {
            Some(k) => k,
            None => random_key()?,
        };
        let mut cfg: Array<MapData, ConfigVal> = take(&mut ebpf, "armor_config")?;
        cfg.set(
            0,
            ConfigVal {
                hash_key,
                max_cgroup_level: self.config.max_cgroup_level,
                pad: 0,
            },
            0,
        )
        .map_err(|source| LoadError::Map {
            call: "bpf_map_update_elem",
            map: "armor_config",
            source: Box::new(source),
        })?;
        for &(name, hook) in PROGRAMS {
            let prog: &mut Lsm = ebpf
                .program_mut(name)
                .ok_or(LoadError::Missing(name))?
                .try_into()
                .map_err(|e| program_error("bpf_link_create", hook, e))?;
            prog.attach()
                .map_err(|e| program_error("bpf_link_create", hook, e))?;
        }
        let table = take(&mut ebpf, "armor_table")?;
        let rules = take(&mut ebpf, "armor_rules")?;
        let filter = take(&mut ebpf, "armor_filter")?;
        let dfas = take(&mut ebpf, "armor_dfas")?;
        let workloads = take(&mut ebpf, "armor_workloads")?;
        let counters = take(&mut ebpf, "armor_counters")?;
        let ring = take(&mut ebpf, "armor_alerts")?;
        let stop = Arc::new(AtomicBool::new(false));
        let alerts_read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let reader = spawn_reader(ring, self.sink.clone(), stop.clone(), alerts_read.clone());
        let loaded = Loaded {
            table,
            tags,
            rules,
            filter,
            bloom,
            dfas,
            workloads,
            counters,
            hash_key,
            stop,
            reader: Some(reader),
            alerts_read,
            _ebpf: ebpf,
        };
        Ok((loaded, times))
    }

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
            alerts_read: l.alerts_read.load(Ordering::Relaxed),
        })
    }

    /// The hash key of the loaded programs.
    pub fn hash_key(&self) -> Option<u64> {
        self.lock().loaded.as_ref().map(|l| l.hash_key)
    }

    /// Rule entries (table slots and map entries) in use by installed workloads.
    pub fn used_entries(&self) -> usize {
        self.lock().used_entries
    }

    fn apply_locked(
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
            && old.artifact == *a
            && old.cgroup == cgroup
            && old.alerts_per_sec == alerts_per_sec
        {
            return Ok(Applied::Unchanged);
        }
        let old_len = st.installed.get(key).map_or(0, Installed::entries);
        self.ensure_loaded(st)
            .map_err(|e| ApplyError::Unsupported {
                enforcer: NAME,
                source: Box::new(e),
            })?;
        let id = st.next_ruleset;
        let Some(l) = st.loaded.as_mut() else {
            return Err(not_loaded());
        };
        let enc = a.encode(id, l.hash_key);
        let others = st.used_entries.saturating_sub(old_len);
        let cap = self.config.max_rule_entries as usize;
        // The old entries stay until the flip: old + new must fit next to everyone else's.
        if others + old_len + enc.rules.len() > cap {
            return Err(ApplyError::Capacity {
                workload: key.name.clone(),
                resource: "rule entries",
                needed: enc.rules.len(),
                free: cap.saturating_sub(others + old_len),
                setting: "max_rule_entries",
            });
        }
        if !st.installed.contains_key(key)
            && st.installed.len() >= self.config.max_workloads as usize
        {
            return Err(ApplyError::Capacity {
                workload: key.name.clone(),
                resource: "workload slots",
                needed: 1,
                free: 0,
                setting: "max_workloads",
            });
        }
        let old_dfas = st.installed.get(key).map_or(0, |o| o.dfas.len());
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
        // Only a first install may wait for the first exec: rewriting the flag of an installed
        // workload could re-open a container that already runs its entrypoint.
        let until_exec = !st.installed.contains_key(key) && a.from_first_exec;
        let val = WorkloadVal {
            ruleset: id,
            alerts_per_sec,
            flags: if until_exec { abi::W_UNTIL_EXEC } else { 0 },
            pad: 0,
            meta: enc.meta,
        };
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
            .and_then(|()| flip(l, cgroup, val));
        if let Err(e) = written {
            // Nothing points at `id`: take every trace of it back.
            if counted {
                uncount(l, &keys);
            }
            clear(l, &placed, &dfas);
            return Err(e);
        }
        st.next_ruleset = id.checked_add(1).filter(|n| *n != 0).unwrap_or(1);
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
        st.used_entries = others + enc.rules.len();
        st.used_dfas = other_dfas + enc.dfas.len();
        if let (Some(old), Some(l)) = (&previous, st.loaded.as_mut()) {
            if old.cgroup != cgroup {
                let _ = l.workloads.remove(&old.cgroup);
            }
            wait_for_readers();
            clear(l, &old.placed, &old.dfas);
            uncount(l, &old.keys);
        }
        Ok(if previous.is_some() {
            Applied::Updated
        } else {
            Applied::Installed
        })
    }

    /// Like `apply`, but writes the new entries *under the workload's current ruleset id*, one
    /// by one, instead of flipping to a new id: a reader can see a mix of old and new rules.
    /// Exists only so the atomicity test can prove it detects a non-atomic update.
    #[doc(hidden)]
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

/// The programs were loaded a moment ago and are gone: never expected, reported as the
/// enforcer not working rather than a panic.
fn not_loaded() -> ApplyError {
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
fn wait_for_readers() {
    if rustix::thread::membarrier(rustix::thread::MembarrierCommand::Global).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes a placement's table slots and map entries (before any workload points at them).
fn write_placement(l: &mut Loaded, p: &Placement) -> Result<(), ApplyError> {
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
fn write_free(l: &mut Loaded, idx: u32, tag: u64) -> Result<(), ApplyError> {
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
fn write_filter(l: &mut Loaded, changed: &[(u32, u64)]) -> Result<(), ApplyError> {
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
fn uncount(l: &mut Loaded, keys: &[RuleKey]) {
    let changed = l.bloom.remove(keys);
    let _ = write_filter(l, &changed);
}

/// Takes a ruleset out of the kernel once no workload points at it: its table slots, map
/// entries and automata. Errors are ignored: rewriting a slot or deleting an entry does not
/// fail short of a broken map, and entries never written are simply absent.
fn clear(l: &mut Loaded, p: &Placement, dfas: &[DfaKey]) {
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
fn insert_big<K: aya::Pod, V: aya::Pod>(
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

/// A mount of a `mountinfo` file: its id and the kernel's device number of its super block
/// (`(major << 20) | minor`, as the hooks see it; `stat()` reports another device on overlayfs).
struct Mount {
    id: u64,
    dev: u32,
}

/// The mounts a path under `root` can lie on: those of this process's mount namespace and,
/// for `/proc/PID/root`, those of that process's.
fn mounts(root: &Path) -> Vec<Mount> {
    let mut files = vec![PathBuf::from("/proc/self/mountinfo")];
    if let Ok(rest) = root.strip_prefix("/proc")
        && rest.ends_with("root")
        && let Some(pid) = rest.parent()
    {
        files.push(Path::new("/proc").join(pid).join("mountinfo"));
    }
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        out.extend(text.lines().filter_map(|l| {
            let mut f = l.split(' ');
            let (id, _, devs) = (f.next()?, f.next()?, f.next()?);
            let (maj, min) = devs.split_once(':')?;
            let maj: u32 = maj.parse().ok()?;
            let min: u32 = min.parse().ok()?;
            Some(Mount {
                id: id.parse().ok()?,
                dev: (maj << 20) | min,
            })
        }));
    }
    out
}

/// The (kernel device, inode) of `path` as the workload whose root is `root` sees it.
///
/// The path is resolved inside `root` (`openat2` with `RESOLVE_IN_ROOT`), never through this
/// process's files: a `..` or an absolute symlink stays in the workload's tree (before, an
/// absolute symlink in an image led to a host file). Symlinks on the way are followed inside
/// the tree (`/bin/sudo` where `/bin` links to `usr/bin`); a symlink as the last component is
/// not (`O_NOFOLLOW`): the entry names the link itself, which no open or exec reaches (the
/// kernel decides the target), as a rule on a link never matches in the engine. The device is that of the mount the file was found on (its id from
/// `/proc/self/fdinfo`, its super block's device from `mountinfo`). `None` when the file does
/// not exist (or the kernel has no `openat2`, before 5.6): the path is still matched by name.
fn resolve_inode(root: &Path, mounts: &[Mount], path: &str) -> Option<(u32, u64)> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    use std::os::fd::AsRawFd as _;
    let dir = std::fs::File::open(root).ok()?;
    let rel = path.trim_start_matches('/');
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(&dir, if rel.is_empty() { "." } else { rel }, how).ok()?;
    let ino = nix::sys::stat::fstat(&fd).ok()?.st_ino;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    let mnt_id: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))?
        .trim()
        .parse()
        .ok()?;
    let dev = mounts.iter().find(|m| m.id == mnt_id)?.dev;
    Some((dev, ino))
}

fn nul_text(b: &[u8], len: u16) -> String {
    let b = b.get(..usize::from(len)).unwrap_or(b);
    String::from_utf8_lossy(b).into_owned()
}

/// Turns a kernel alert into an [`EnforcerAlert`] (policy fields come from the rule id).
pub fn to_alert(raw: &AlertRaw) -> EnforcerAlert {
    let rule = (raw.rule != abi::RULE_POSTURE).then_some(raw.rule);
    let operation = match raw.category {
        abi::CAT_PROCESS => Category::Process,
        abi::CAT_FILE => Category::File,
        abi::CAT_NETWORK => Category::Network,
        _ => Category::Capabilities,
    };
    let resource = match raw.category {
        abi::CAT_PROCESS | abi::CAT_FILE => nul_text(&raw.path, raw.path_len),
        abi::CAT_NETWORK => format!(
            "family={} type={} protocol={}",
            raw.detail >> 16,
            (raw.detail >> 8) & 0xff,
            raw.detail & 0xff
        ),
        _ => armor_core::event::caps::name(u8::try_from(raw.detail).unwrap_or(u8::MAX))
            .unwrap_or_else(|| raw.detail.to_string()),
    };
    let source = (raw.source_len > 0).then(|| nul_text(&raw.source, raw.source_len));
    let a = if raw.action == abi::ACTION_BLOCK {
        EnforcerAlert::blocked(NAME, rule, operation, resource)
    } else {
        EnforcerAlert::audited(NAME, rule, operation, resource)
    };
    let wl = if raw.cgroup == 0 {
        WorkloadKey::new("host")
    } else {
        WorkloadKey::new(format!("cgroup {}", raw.cgroup)).with_cgroup(raw.cgroup)
    };
    a.with_workload(wl).with_process(raw.pid, raw.uid, source)
}

fn spawn_reader(
    mut ring: RingBuf<MapData>,
    sink: Sink,
    stop: Arc<AtomicBool>,
    read: Arc<std::sync::atomic::AtomicU64>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let mut any = false;
            while let Some(item) = ring.next() {
                any = true;
                read.fetch_add(1, Ordering::Relaxed);
                let Some(raw) = AlertRaw::from_bytes(&item) else {
                    continue;
                };
                let s = sink
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                if let Some(s) = s {
                    s.alert(to_alert(&raw));
                }
            }
            if !any {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    })
}

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
        self.apply_locked(&mut st, &dest.key, a, |l, cg, val| {
            l.workloads
                .insert(cg, val, 0)
                .map_err(|e| map_err("bpf_map_update_elem", e))
        })
    }

    fn remove(&self, key: &WorkloadKey) -> Result<(), ApplyError> {
        let mut st = self.lock();
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
        *self
            .sink
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sink);
    }
}

/// Builds the BPF-LSM enforcer for a runtime's list of enforcers (choice `bpflsm`): the trial
/// is the real load of its programs, kept, so applying a workload's rules is then only map
/// updates. When the load fails, the reason is the probe's, which names the refusal precisely
/// (`kernel refuses lsm programs (EPERM)`) and stops at the first program.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Factory {
    /// Capacities and alert rate limit of a new enforcer.
    pub config: Config,
    /// An enforcer this process already loaded, to build instead of a new one from
    /// [`Self::config`] (its programs stay attached): shared by the runtimes an embedder starts
    /// one after another. Building still loads it (a no-op when loaded).
    pub enforcer: Option<Arc<BpfLsm>>,
}

impl Factory {
    /// A factory building a new enforcer with `config`.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            enforcer: None,
        }
    }

    /// A factory building `enforcer` (already made, possibly loaded) each time.
    pub fn with_enforcer(enforcer: Arc<BpfLsm>) -> Self {
        Self {
            config: enforcer.config,
            enforcer: Some(enforcer),
        }
    }
}

impl EnforcerFactory for Factory {
    fn choice(&self) -> &'static str {
        "bpflsm"
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn build(&self) -> Result<Built, String> {
        let lsm = match &self.enforcer {
            Some(lsm) => Arc::clone(lsm),
            None => Arc::new(BpfLsm::new(self.config)),
        };
        match lsm.load() {
            Ok(()) => Ok(Built::new(lsm)),
            Err(e) => Err(match lsm.probe() {
                Support::Unsupported { reason } => reason,
                _ => armor_core::diag::error_chain(&e),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn inode_resolution() {
        let dir = std::env::temp_dir().join(format!("armor-inode-{}", std::process::id()));
        let m = mounts(&dir);
        assert!(!m.is_empty());
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/shadow"), b"x").unwrap();
        let (dev, ino) = resolve_inode(&dir, &m, "/etc/shadow").unwrap();
        assert_eq!(
            ino,
            std::fs::metadata(dir.join("etc/shadow")).unwrap().ino()
        );
        assert_ne!(dev, 0);
        assert!(resolve_inode(&dir, &m, "/etc/missing").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Issue 16, finding 3: a rule path is resolved inside the workload's tree. Before,
    /// `canonicalize` followed an absolute symlink (and `/proc/PID/root` itself) to this
    /// process's own files, so the rule's (device, inode) entry named a host file.
    #[test]
    fn inode_targets_resolve_inside_the_workload_root() {
        let dir = std::env::temp_dir().join(format!("armor-inode-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::create_dir_all(dir.join("app")).unwrap();
        std::fs::write(dir.join("etc/passwd"), b"the workload's own\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("app/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc/passwd", dir.join("app/up")).unwrap();
        let m = mounts(&dir);
        let own = std::fs::metadata(dir.join("etc/passwd")).unwrap().ino();
        let host = std::fs::metadata("/etc/passwd").unwrap().ino();
        assert_ne!(own, host);
        // `..` stays inside the root.
        let (_, ino) = resolve_inode(&dir, &m, "/app/../../../etc/passwd").unwrap();
        assert_eq!(ino, own);
        // A symlink as the last component names the link itself, never its target (the
        // engine never matches a rule on a link), let alone a host file.
        for link in ["/app/abs", "/app/up"] {
            let (_, ino) = resolve_inode(&dir, &m, link).unwrap();
            let own_link = std::fs::symlink_metadata(dir.join(link.trim_start_matches('/')))
                .unwrap()
                .ino();
            assert_eq!(ino, own_link, "{link}");
        }
        // A symlinked directory on the way is followed inside the root (merged /usr).
        std::os::unix::fs::symlink("etc", dir.join("cfg")).unwrap();
        let (_, ino) = resolve_inode(&dir, &m, "/cfg/passwd").unwrap();
        assert_eq!(ino, own);
        let (dev, _) = resolve_inode(&dir, &m, "/etc/passwd").unwrap();
        assert!(m.iter().any(|mount| mount.dev == dev));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
