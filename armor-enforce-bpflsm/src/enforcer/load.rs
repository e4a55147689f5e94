//! Loading and attaching the kernel programs: verification on several threads, the trial a
//! probe keeps, the maps the loaded object owns.

use super::*;

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
    ("armor_bprm_creds", "bprm_creds_for_exec"),
    ("armor_bprm_committing", "bprm_committing_creds"),
    ("armor_task_free", "task_free"),
];

/// Threads that load (and so have the kernel verify) programs at once, at most.
pub const MAX_LOAD_THREADS: usize = 4;

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
    /// A pinned program set could not be adopted (a pin missing or of the wrong kind).
    #[error("cannot adopt the programs pinned in {dir}: {reason}")]
    Adopt {
        /// The set's directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
}

pub(super) struct Loaded {
    /// `armor_config` and what it holds (the next ruleset id is rewritten before each use).
    pub(super) config_map: Array<MapData, ConfigVal>,
    pub(super) config_val: ConfigVal,
    pub(super) table: Array<MapData, SlotVal>,
    /// The user-space copy of the table's tags.
    pub(super) tags: Table,
    pub(super) rules: HashMap<MapData, RuleKey, RuleVal>,
    pub(super) filter: Array<MapData, u64>,
    /// The user-space copy of the filter, with the keys behind every bit.
    pub(super) bloom: Filter,
    pub(super) dfas: HashMap<MapData, DfaKey, DfaVal>,
    pub(super) workloads: HashMap<MapData, u64, WorkloadVal>,
    pub(super) counters: PerCpuArray<MapData, u64>,
    pub(super) hash_key: u64,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) reader: Option<JoinHandle<()>>,
    pub(super) alerts_read: Arc<std::sync::atomic::AtomicU64>,
    /// The links taken out of their programs (pinned ones, or adopted ones): held while the
    /// enforcer lives.
    pub(super) _links: Vec<aya::programs::links::FdLink>,
    // Owns the programs and the links left in them (none when adopted); dropped last.
    pub(super) _ebpf: Option<Ebpf>,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

pub(super) fn errno_name(n: i32) -> &'static str {
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

pub(super) fn program_error(
    call: &'static str,
    hook: &'static str,
    source: ProgramError,
) -> LoadError {
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
pub(super) fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, LoadError>
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

pub(super) fn random_key() -> Result<u64, LoadError> {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(LoadError::Random)?;
    Ok(u64::from_ne_bytes(b))
}

pub(super) fn loader<'a>(
    config: &Config,
    table_mask: &'a u32,
    filter_mask: &'a u32,
) -> EbpfLoader<'a> {
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
pub(super) type LoadTimes = Vec<(&'static str, Duration)>;

/// Why [`load_all`] stopped.
pub(super) enum VerifyError {
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
pub(super) fn load_all(ebpf: &mut Ebpf, btf: &Btf) -> Result<LoadTimes, VerifyError> {
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
    /// Takes the object a probe loaded (every program verified), or loads the object and has
    /// the kernel verify every program; then writes the configuration, attaches every
    /// program and, with a pin root, pins them ([`pin_new`]). The load times are `None` when
    /// the probe did the verifying.
    pub(super) fn load_programs(
        &self,
        probed: Option<Ebpf>,
        pin_root: Option<&Path>,
    ) -> Result<(Loaded, Option<LoadTimes>, Pinning), LoadError> {
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
        let config_val = ConfigVal {
            hash_key,
            max_cgroup_level: self.config.max_cgroup_level,
            next_ruleset: 1,
        };
        {
            let mut cfg: Array<&mut MapData, ConfigVal> = Array::try_from(
                ebpf.map_mut("armor_config")
                    .ok_or(LoadError::Missing("armor_config"))?,
            )
            .map_err(|source| LoadError::Map {
                call: "open",
                map: "armor_config",
                source: Box::new(source),
            })?;
            cfg.set(0, config_val, 0).map_err(|source| LoadError::Map {
                call: "bpf_map_update_elem",
                map: "armor_config",
                source: Box::new(source),
            })?;
        }
        let mut attached = Vec::new();
        for &(name, hook) in PROGRAMS {
            let prog: &mut Lsm = ebpf
                .program_mut(name)
                .ok_or(LoadError::Missing(name))?
                .try_into()
                .map_err(|e| program_error("bpf_link_create", hook, e))?;
            let id = prog
                .attach()
                .map_err(|e| program_error("bpf_link_create", hook, e))?;
            attached.push((name, hook, id));
        }
        // Pinned while the maps are empty (see `pin_new`), before the maps are taken out of
        // the object.
        let (pinning, links) = match pin_root {
            Some(root) => pin_new(&mut ebpf, attached, root, abi_id(&self.config))?,
            None => (Pinning::Off, Vec::new()),
        };
        let config_map = take(&mut ebpf, "armor_config")?;
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
            config_map,
            config_val,
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
            _links: links,
            _ebpf: Some(ebpf),
        };
        Ok((loaded, times, pinning))
    }

    /// Adopts the complete program set pinned in `dir` (of this enforcer's ABI): holds its
    /// links, opens its maps, keeps its hash key and ruleset ids (the configured cgroup depth
    /// is written), starts reading its alerts, and reads back what its maps hold
    /// ([`read_back`]). Nothing is loaded. Returns the maps, what they held, and the first
    /// ruleset id this enforcer may use.
    pub(super) fn adopt(&self, dir: &Path) -> Result<(Loaded, Legacy, u32), LoadError> {
        let config_map: Array<MapData, ConfigVal> = open_pinned(dir, "armor_config")?;
        let found = config_map.get(&0, 0).map_err(|source| LoadError::Map {
            call: "bpf_map_lookup_elem",
            map: "armor_config",
            source: Box::new(source),
        })?;
        let config_val = ConfigVal {
            max_cgroup_level: self.config.max_cgroup_level,
            ..found
        };
        let mut links = Vec::new();
        for &(_, hook) in PROGRAMS {
            let path = dir.join(format!("link_{hook}"));
            let link = aya::programs::links::PinnedLink::from_pin(&path).map_err(|e| {
                LoadError::Adopt {
                    dir: dir.to_path_buf(),
                    reason: format!("{}: {e}", path.display()),
                }
            })?;
            links.push(aya::programs::links::FdLink::from(link));
        }
        let ring = open_pinned(dir, "armor_alerts")?;
        let stop = Arc::new(AtomicBool::new(false));
        let alerts_read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut loaded = Loaded {
            config_map,
            config_val,
            table: open_pinned(dir, "armor_table")?,
            tags: Table::new(self.config.table_slots),
            rules: open_pinned(dir, "armor_rules")?,
            filter: open_pinned(dir, "armor_filter")?,
            bloom: Filter::new(self.config.filter_bits),
            dfas: open_pinned(dir, "armor_dfas")?,
            workloads: open_pinned(dir, "armor_workloads")?,
            counters: open_pinned(dir, "armor_counters")?,
            hash_key: found.hash_key,
            stop: stop.clone(),
            reader: None,
            alerts_read: alerts_read.clone(),
            _links: links,
            _ebpf: None,
        };
        let (legacy, top) = read_back(&mut loaded)?;
        // Last, once every pin opened and every map read: a set that cannot be adopted keeps
        // deciding as it did.
        loaded
            .config_map
            .set(0, config_val, 0)
            .map_err(|source| LoadError::Map {
                call: "bpf_map_update_elem",
                map: "armor_config",
                source: Box::new(source),
            })?;
        loaded.reader = Some(spawn_reader(ring, self.sink.clone(), stop, alerts_read));
        let next = found.next_ruleset.max(top.saturating_add(1)).max(1);
        Ok((loaded, legacy, next))
    }
}
