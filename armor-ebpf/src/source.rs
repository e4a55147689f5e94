//! Loading the programs and reading their events.

use std::os::fd::AsFd as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use armor_core::Visibility;
use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{BtfTracePoint, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::layout::RawEvent;
use crate::path;
use crate::proctree::ProcessTree;

/// The compiled object, embedded at build time.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/events.bpf.o"));

/// Syscall tracepoints attached (each has a `sys_enter_` and a `sys_exit_` program).
pub const SYSCALLS: &[&str] = &[
    "open",
    "openat",
    "openat2",
    "unlink",
    "unlinkat",
    "rmdir",
    "rename",
    "renameat",
    "renameat2",
    "chmod",
    "fchmodat",
    "chown",
    "lchown",
    "fchownat",
    "mkdir",
    "mkdirat",
    "socket",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "chdir",
    "fchdir",
];

/// BTF scheduler tracepoints attached, with their program names.
const SCHED: &[(&str, &str)] = &[
    ("on_exec", "sched_process_exec"),
    ("on_fork", "sched_process_fork"),
    ("on_exit", "sched_process_exit"),
    ("on_sys_enter", "sys_enter"),
    ("on_sys_exit", "sys_exit"),
];

/// Syscall numbers the filter's bitmaps hold (`ARMOR_SYSCALL_BITS`).
const SYSCALL_BITS: usize = 512;

/// A syscall bitmap as the kernel reads it (`struct armor_syscalls`): bit n of word n / 64.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SyscallSet {
    w: [u64; SYSCALL_BITS / 64],
}

impl SyscallSet {
    fn of(numbers: &[u16]) -> Self {
        let mut s = Self::default();
        for &n in numbers {
            if let Some(w) = s.w.get_mut(usize::from(n) / 64) {
                *w |= 1u64 << (n % 64);
            }
        }
        s
    }

    /// The bitmap as the map's value.
    fn words(self) -> [u64; SYSCALL_BITS / 64] {
        self.w
    }

    fn union(sets: impl Iterator<Item = Self>) -> Self {
        let mut u = Self::default();
        for s in sets {
            for (a, b) in u.w.iter_mut().zip(s.w) {
                *a |= b;
            }
        }
        u
    }
}

const VIS_PROCESS: u32 = 1;
const VIS_FILE: u32 = 2;
const VIS_NETWORK: u32 = 4;
const VIS_CAPABILITIES: u32 = 8;
const CFG_DEFAULT_VIS: u32 = 0;
const CFG_IGNORE_TGID: u32 = 1;
const STAT_LOST: u32 = 0;
const STAT_PENDING_FULL: u32 = 1;

/// The kernel mask of a visibility (capabilities are carried for the BPF-LSM `capable` hook;
/// no tracepoint here reports capability checks).
pub fn visibility_mask(v: &Visibility) -> u32 {
    let mut m = 0;
    if v.process {
        m |= VIS_PROCESS;
    }
    if v.file {
        m |= VIS_FILE;
    }
    if v.network {
        m |= VIS_NETWORK;
    }
    if v.capabilities {
        m |= VIS_CAPABILITIES;
    }
    m
}

/// How to load the event source.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Ring buffer size in bytes (a power of two, multiple of the page size). Default 8 MiB:
    /// 12,336 records of 680 bytes, 0.12 s of events at 100,000 events/s, which keeps the
    /// agent's resident memory under 40 MB with 1,000 rules and 100 workloads (user space maps
    /// the data pages twice, so RSS counts the ring twice). Raise it where the consumer may be
    /// descheduled for longer and memory is not tight.
    pub ring_bytes: u32,
    /// Visibility of cgroups without an entry (the host, unknown containers). Default: none,
    /// so nothing reaches user space until the caller says what it wants.
    pub default_visibility: Visibility,
    /// Drop the events of this process (the agent itself; its own output would otherwise feed
    /// back). Default: the current process.
    pub ignore_pid: Option<u32>,
    /// Seed the process tree from `/proc` at load. Default true.
    pub seed_process_tree: bool,
    /// How long [`EventSource::poll`] lets records gather after the ring buffer woke it from
    /// an empty state, before it reads them. Default 200 µs. The kernel wakes a waiting reader
    /// for the first record after the reader caught up, so without this pause a consumer that
    /// keeps up is woken, and switched to, once per record; with it, once per batch (60 records
    /// at 300,000 events/s). It is also the latency it adds to an isolated event. Zero reads at
    /// once.
    pub linger: Duration,
    /// The most records one [`EventSource::poll`] hands out: under a flood the ring holds
    /// more than a turn of the caller's loop should take, and what is left waits for the next
    /// call, so the caller's other work (answering the OCI hook) is never starved. Default
    /// 8,192 (about 30 ms of processing). At least 1.
    pub max_batch: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ring_bytes: 8 << 20,
            default_visibility: Visibility::none(),
            ignore_pid: Some(std::process::id()),
            seed_process_tree: true,
            linger: Duration::from_micros(200),
            max_batch: 8192,
        }
    }
}

impl Options {
    /// Sets the ring buffer size in bytes.
    #[must_use]
    pub fn ring_bytes(mut self, bytes: u32) -> Self {
        self.ring_bytes = bytes;
        self
    }

    /// Sets the visibility of cgroups without an entry.
    #[must_use]
    pub fn default_visibility(mut self, v: Visibility) -> Self {
        self.default_visibility = v;
        self
    }

    /// Sets the process whose events are dropped (`None`: none).
    #[must_use]
    pub fn ignore_pid(mut self, pid: Option<u32>) -> Self {
        self.ignore_pid = pid;
        self
    }

    /// Whether to seed the process tree from `/proc`.
    #[must_use]
    pub fn seed_process_tree(mut self, seed: bool) -> Self {
        self.seed_process_tree = seed;
        self
    }

    /// Sets how long `poll` lets records gather after a wake-up ([`Options::linger`]).
    #[must_use]
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }
}

/// Counters kept by the kernel programs, summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Records dropped because the ring buffer was full.
    pub lost: u64,
    /// Syscall records dropped because the pending-call table was full.
    pub pending_full: u64,
}

/// The syscall filter's maps and what user space put in them.
struct Filters {
    any: Array<MapData, [u64; SYSCALL_BITS / 64]>,
    per_workload: HashMap<MapData, u64, [u64; SYSCALL_BITS / 64]>,
    sets: std::collections::HashMap<u64, SyscallSet>,
}

/// The handles to change filtering while events are read (shared with other threads).
pub struct Controls {
    visibility: Mutex<HashMap<MapData, u64, u32>>,
    config: Mutex<Array<MapData, u32>>,
    stats: Mutex<PerCpuArray<MapData, u64>>,
    filters: Mutex<Filters>,
}

impl std::fmt::Debug for Controls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controls").finish_non_exhaustive()
    }
}

impl Controls {
    /// Sets what the cgroup with id `cgroup_id` reports (events of other categories are dropped
    /// in the kernel).
    pub fn set_visibility(&self, cgroup_id: u64, v: &Visibility) -> Result<()> {
        self.visibility
            .lock()
            .insert(cgroup_id, visibility_mask(v), 0)
            .map_err(|source| Error::Map {
                map: "visibility",
                source,
            })
    }

    /// Removes a cgroup's entry (it falls back to the default visibility).
    pub fn clear_visibility(&self, cgroup_id: u64) -> Result<()> {
        match self.visibility.lock().remove(&cgroup_id) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(Error::Map {
                map: "visibility",
                source,
            }),
        }
    }

    /// Sets the syscalls (x86_64 numbers) workload `cgroup_id` reports whatever its visibility
    /// (its syscall rules name them; 0 = the host, outside every workload with a visibility
    /// entry); an empty list removes its filter. A syscall no workload names costs one array
    /// read in the kernel and sends nothing.
    pub fn set_syscalls(&self, cgroup_id: u64, numbers: &[u16]) -> Result<()> {
        let mut f = self.filters.lock();
        let set = SyscallSet::of(numbers);
        let map_err = |source| Error::Map {
            map: "syscall_filters",
            source,
        };
        if numbers.is_empty() {
            // Only what was put there is removed (a missing key is an error of the syscall).
            if !f.sets.contains_key(&cgroup_id) {
                return Ok(());
            }
            f.per_workload.remove(&cgroup_id).map_err(map_err)?;
            f.sets.remove(&cgroup_id);
        } else {
            // The union first: a syscall is never named by a workload's filter and missing
            // from the union the kernel checks first.
            let mut sets = f.sets.clone();
            sets.insert(cgroup_id, set);
            let union = SyscallSet::union(sets.values().copied());
            f.any
                .set(0, union.words(), 0)
                .map_err(|source| Error::Map {
                    map: "syscall_any",
                    source,
                })?;
            f.per_workload
                .insert(cgroup_id, set.words(), 0)
                .map_err(map_err)?;
            f.sets = sets;
            return Ok(());
        }
        let union = SyscallSet::union(f.sets.values().copied());
        f.any.set(0, union.words(), 0).map_err(|source| Error::Map {
            map: "syscall_any",
            source,
        })
    }

    /// Sets the visibility of cgroups without an entry.
    pub fn set_default_visibility(&self, v: &Visibility) -> Result<()> {
        self.set_config(CFG_DEFAULT_VIS, visibility_mask(v))
    }

    /// Drops the events of process `pid` (0: none).
    pub fn ignore_pid(&self, pid: u32) -> Result<()> {
        self.set_config(CFG_IGNORE_TGID, pid)
    }

    fn set_config(&self, slot: u32, value: u32) -> Result<()> {
        self.config
            .lock()
            .set(slot, value, 0)
            .map_err(|source| Error::Map {
                map: "armor_config",
                source,
            })
    }

    /// The kernel's counters.
    pub fn stats(&self) -> Result<Stats> {
        let stats = self.stats.lock();
        let sum = |slot: u32| -> Result<u64> {
            let values = stats.get(&slot, 0).map_err(|source| Error::Map {
                map: "armor_stats",
                source,
            })?;
            Ok(values.iter().copied().fold(0u64, u64::wrapping_add))
        };
        Ok(Stats {
            lost: sum(STAT_LOST)?,
            pending_full: sum(STAT_PENDING_FULL)?,
        })
    }
}

/// The loaded, attached programs and the reading end of their ring buffer.
///
/// # Kernel requirements
/// Tracepoints (`CONFIG_FTRACE_SYSCALLS` for the `syscalls` category), BTF
/// (`CONFIG_DEBUG_INFO_BTF=y`) for the `tp_btf` scheduler programs and CO-RE, ring buffers:
/// Linux 5.8 or newer. No LSM or trampoline support is needed (our host refuses both).
///
/// ```no_run
/// use armor_ebpf::{EventSource, Options};
/// use armor_core::Visibility;
/// let mut source = EventSource::load(Options::default())?;
/// source.controls().set_default_visibility(&Visibility::standard())?;
/// source.poll(std::time::Duration::from_millis(100), &mut |event| println!("{event:?}"))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EventSource {
    ring: RingBuf<MapData>,
    controls: Arc<Controls>,
    tree: ProcessTree,
    decode_errors: u64,
    own_mnt_ns: u32,
    linger: Duration,
    max_batch: usize,
    // Owns the programs and their links: dropping it detaches everything.
    _ebpf: Ebpf,
}

impl std::fmt::Debug for EventSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSource")
            .field("processes", &self.tree.len())
            .finish_non_exhaustive()
    }
}

/// Mounts tracefs at `/sys/kernel/tracing` when no tracefs is reachable (aya looks there and
/// under debugfs). Best effort: an error surfaces later as an attach failure.
fn ensure_tracefs() {
    let tracing = Path::new("/sys/kernel/tracing");
    if tracing.join("events").exists() || Path::new("/sys/kernel/debug/tracing/events").exists() {
        return;
    }
    let _ignored = nix::mount::mount(
        Some("tracefs"),
        tracing,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    );
}

impl EventSource {
    /// Loads and attaches every program.
    pub fn load(options: Options) -> Result<Self> {
        // Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones use memcg.
        // Raising it fails without CAP_SYS_RESOURCE (our host): not fatal.
        let _ignored = nix::sys::resource::setrlimit(
            nix::sys::resource::Resource::RLIMIT_MEMLOCK,
            nix::sys::resource::RLIM_INFINITY,
            nix::sys::resource::RLIM_INFINITY,
        );
        ensure_tracefs();
        let btf = Btf::from_sys_fs().map_err(Error::Btf)?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .map_max_entries("events", options.ring_bytes)
            .load(OBJECT)
            .map_err(Error::Load)?;
        for (program, tracepoint) in SCHED {
            let p: &mut BtfTracePoint = program_mut(&mut ebpf, program)?;
            p.load(tracepoint, &btf)
                .map_err(|source| program_error("load", program, source))?;
            p.attach()
                .map_err(|source| program_error("attach", program, source))?;
        }
        for syscall in SYSCALLS {
            for phase in ["enter", "exit"] {
                let name = format!("{phase}_{syscall}");
                let p: &mut TracePoint = program_mut(&mut ebpf, &name)?;
                p.load()
                    .map_err(|source| program_error("load", &name, source))?;
                p.attach("syscalls", &format!("sys_{phase}_{syscall}"))
                    .map_err(|source| program_error("attach", &name, source))?;
            }
        }
        let ring = RingBuf::try_from(take(&mut ebpf, "events")?).map_err(|source| Error::Map {
            map: "events",
            source,
        })?;
        let visibility =
            HashMap::try_from(take(&mut ebpf, "visibility")?).map_err(|source| Error::Map {
                map: "visibility",
                source,
            })?;
        let config =
            Array::try_from(take(&mut ebpf, "armor_config")?).map_err(|source| Error::Map {
                map: "armor_config",
                source,
            })?;
        let stats = PerCpuArray::try_from(take(&mut ebpf, "armor_stats")?).map_err(|source| {
            Error::Map {
                map: "armor_stats",
                source,
            }
        })?;
        let mut paths: Array<MapData, u8> = Array::try_from(take(&mut ebpf, "syscall_paths")?)
            .map_err(|source| Error::Map {
                map: "syscall_paths",
                source,
            })?;
        for name in armor_core::syscalls::SYSCALLS {
            let (Some(nr), Some((path, dirfd))) = (
                armor_core::syscalls::number(name),
                armor_core::syscalls::path_argument(name),
            ) else {
                continue;
            };
            let code = u8::try_from(path + 1).unwrap_or(0)
                | (u8::try_from(dirfd.map_or(0, |d| d + 1)).unwrap_or(0) << 4);
            paths
                .set(u32::from(nr), code, 0)
                .map_err(|source| Error::Map {
                    map: "syscall_paths",
                    source,
                })?;
        }
        let any =
            Array::try_from(take(&mut ebpf, "syscall_any")?).map_err(|source| Error::Map {
                map: "syscall_any",
                source,
            })?;
        let per_workload =
            HashMap::try_from(take(&mut ebpf, "syscall_filters")?).map_err(|source| {
                Error::Map {
                    map: "syscall_filters",
                    source,
                }
            })?;
        let controls = Arc::new(Controls {
            visibility: Mutex::new(visibility),
            config: Mutex::new(config),
            stats: Mutex::new(stats),
            filters: Mutex::new(Filters {
                any,
                per_workload,
                sets: std::collections::HashMap::new(),
            }),
        });
        controls.set_default_visibility(&options.default_visibility)?;
        controls.ignore_pid(options.ignore_pid.unwrap_or(0))?;
        let tree = if options.seed_process_tree {
            ProcessTree::from_proc()
        } else {
            ProcessTree::new()
        };
        Ok(Self {
            ring,
            controls,
            tree,
            decode_errors: 0,
            own_mnt_ns: mnt_ns_of("self").unwrap_or(0),
            linger: options.linger,
            max_batch: options.max_batch,
            _ebpf: ebpf,
        })
    }

    /// Drops the processes of the tree that no longer exist (their exit events were lost, in a
    /// full ring buffer): returns how many. Reads `/proc`; the agent calls it once a minute.
    pub fn sweep_process_tree(&mut self) -> usize {
        self.tree.sweep()
    }

    /// The filtering handles (cloneable, usable from other threads).
    pub fn controls(&self) -> Arc<Controls> {
        Arc::clone(&self.controls)
    }

    /// The process tree (seeded from `/proc`, kept current by the events read).
    pub fn process_tree(&self) -> &ProcessTree {
        &self.tree
    }

    /// The process tree, mutably (to look up processes not seen yet).
    pub fn process_tree_mut(&mut self) -> &mut ProcessTree {
        &mut self.tree
    }

    /// Records that could not be decoded (a bug if ever non-zero).
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    /// Waits up to `timeout` for events, then hands the available ones to `f`, at most
    /// [`Options::max_batch`] (after it has updated the process tree, so `f` can look the
    /// process up). Returns how many were handed. When it had to wait, it reads
    /// [`Options::linger`] after the first record arrived.
    pub fn poll(&mut self, timeout: Duration, f: &mut dyn FnMut(&Event)) -> Result<usize> {
        let n = self.drain(f);
        if n > 0 {
            return Ok(n);
        }
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        {
            let mut fds = [nix::poll::PollFd::new(
                self.ring.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
                Ok(n) if n > 0 && !self.linger.is_zero() => std::thread::sleep(self.linger),
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    return Err(Error::Syscall {
                        call: "poll",
                        source: e.into(),
                    });
                }
            }
        }
        Ok(self.drain(f))
    }

    fn drain(&mut self, f: &mut dyn FnMut(&Event)) -> usize {
        let (mut n, mut read) = (0, 0);
        while read < self.max_batch.max(1) {
            let Some(item) = self.ring.next() else {
                break;
            };
            read += 1;
            let raw = RawEvent::decode(&item);
            drop(item);
            let raw = match raw {
                Ok(r) => r,
                Err(_) => {
                    self.decode_errors += 1;
                    continue;
                }
            };
            let own_mnt_ns = self.own_mnt_ns;
            let mut exe =
                |raw: &RawEvent, filename: &str| -> String { exec_path(raw, filename, own_mnt_ns) };
            let tree = &self.tree;
            let mut resolve = |pid: u32, dirfd: i32, p: &str| -> String {
                path::resolve_with_cwd(pid, dirfd, p, tree.cwd(pid))
            };
            let Some(event) = Event::from_raw(&raw, &mut resolve, &mut exe) else {
                self.decode_errors += 1;
                continue;
            };
            self.tree.apply(&event);
            f(&event);
            n += 1;
        }
        n
    }
}

/// The mount namespace inode of `/proc/<pid>`.
fn mnt_ns_of(pid: &str) -> Option<u32> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()?;
    link.to_str()?
        .strip_prefix("mnt:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The executed image, resolved (best effort): `/proc/PID/exe` while the process runs; else the
/// file name made absolute, with symbolic links resolved when the process shares our mount
/// namespace; else the file name as passed, made absolute.
fn exec_path(raw: &RawEvent, filename: &str, own_mnt_ns: u32) -> String {
    if let Ok(p) = std::fs::read_link(format!("/proc/{}/exe", raw.pid)) {
        return p.to_string_lossy().into_owned();
    }
    if raw.mnt_ns == own_mnt_ns
        && filename.starts_with('/')
        && let Ok(p) = std::fs::canonicalize(filename)
    {
        return p.to_string_lossy().into_owned();
    }
    filename.to_string()
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map> {
    ebpf.take_map(name).ok_or(Error::MissingMap(name))
}

fn program_error(call: &'static str, program: &str, source: aya::programs::ProgramError) -> Error {
    Error::Program {
        call,
        program: program.to_string(),
        source,
    }
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| program_error("find", name, aya::programs::ProgramError::NotLoaded))?;
    p.try_into()
        .map_err(|source| program_error("find", name, source))
}
