//! The minimal BPF-LSM program the test kernel must run: `bpf/deny_exec.bpf.c`, built by
//! `build.rs` with clang against the vendored CO-RE `vmlinux.h` and loaded with aya.
//!
//! # Kernel requirements
//! `CONFIG_BPF_LSM=y`, `bpf` in the `lsm=` boot list, BTF (`CONFIG_DEBUG_INFO_BTF=y`) and BPF
//! trampolines; 5.7 or newer. The test guest's Debian 6.1 kernel has all of them; our host
//! lists `bpf` but refuses every `lsm/` program with EPERM.

use aya::maps::{Array, HashMap, MapData};
use aya::programs::{Lsm, ProgramError};
use aya::{Btf, Ebpf};

use crate::{Error, Result, Unsupported, lsm};

/// The compiled object, embedded at build time.
pub static DENY_EXEC_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/deny_exec.bpf.o"));

/// The LSM hook the program attaches to.
pub const HOOK: &str = "bprm_check_security";
const PROGRAM: &str = "deny_exec";

/// `deny_exec` loaded and attached: an exec of a listed inode from a listed cgroup fails with
/// EPERM. Dropping it detaches the program.
pub struct DenyExec {
    cgroups: HashMap<MapData, u64, u8>,
    inodes: HashMap<MapData, u64, u8>,
    denied: Array<MapData, u64>,
    // Owns the program and its link; kept last so the maps above are dropped first.
    _ebpf: Ebpf,
}

impl DenyExec {
    /// Loads and attaches the program with empty deny lists.
    ///
    /// A kernel that refuses the program yields [`Error::Unsupported`] naming the syscall, the
    /// exact errno and the active LSM list, which is what the skip rule prints.
    pub fn load() -> Result<Self> {
        let mut ebpf = Ebpf::load(DENY_EXEC_OBJ).map_err(Error::Ebpf)?;
        let btf = Btf::from_sys_fs().map_err(Error::Btf)?;
        let program: &mut Lsm = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| Error::NotFound(format!("program `{PROGRAM}` in deny_exec.bpf.o")))?
            .try_into()
            .map_err(|source| Error::Program {
                call: "load",
                program: PROGRAM,
                source,
            })?;
        program.load(HOOK, &btf).map_err(|e| classify("load", e))?;
        program.attach().map_err(|e| classify("attach", e))?;
        let cgroups = take_hash(&mut ebpf, "deny_cgroups")?;
        let inodes = take_hash(&mut ebpf, "deny_inodes")?;
        let map = ebpf
            .take_map("denied")
            .ok_or_else(|| Error::NotFound("map `denied`".to_owned()))?;
        let denied = Array::try_from(map).map_err(|source| Error::Map {
            map: "denied",
            source,
        })?;
        Ok(Self {
            cgroups,
            inodes,
            denied,
            _ebpf: ebpf,
        })
    }

    /// Denies, from the cgroup with id `cgroup_id`, execs of the file with inode number `inode`
    /// (lists are independent: every listed inode is denied in every listed cgroup).
    pub fn deny(&mut self, cgroup_id: u64, inode: u64) -> Result<()> {
        self.cgroups
            .insert(cgroup_id, 1, 0)
            .map_err(|source| Error::Map {
                map: "deny_cgroups",
                source,
            })?;
        self.inodes
            .insert(inode, 1, 0)
            .map_err(|source| Error::Map {
                map: "deny_inodes",
                source,
            })
    }

    /// How many execs the program denied so far.
    pub fn denied_count(&self) -> Result<u64> {
        self.denied.get(&0, 0).map_err(|source| Error::Map {
            map: "denied",
            source,
        })
    }
}

impl std::fmt::Debug for DenyExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenyExec")
            .field("hook", &HOOK)
            .finish_non_exhaustive()
    }
}

fn take_hash(ebpf: &mut Ebpf, name: &'static str) -> Result<HashMap<MapData, u64, u8>> {
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| Error::NotFound(format!("map `{name}`")))?;
    HashMap::try_from(map).map_err(|source| Error::Map { map: name, source })
}

/// Turns a kernel refusal into [`Error::Unsupported`] with its evidence; other failures (a bad
/// object, a verifier rejection of a real bug) stay errors.
fn classify(call: &'static str, source: ProgramError) -> Error {
    let (errno, log) = match &source {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => (io_error.raw_os_error(), verifier_log.to_string()),
        ProgramError::SyscallError(e) => (e.io_error.raw_os_error(), String::new()),
        _ => (None, String::new()),
    };
    let refused = matches!(
        errno,
        Some(nix::libc::EPERM | nix::libc::EINVAL | nix::libc::EOPNOTSUPP | 524)
    );
    // EINVAL with a verifier log is the verifier rejecting our program: a bug, not support.
    if !refused || (errno == Some(nix::libc::EINVAL) && !log.trim().is_empty()) {
        return Error::Program {
            call,
            program: PROGRAM,
            source,
        };
    }
    let errno = errno.map_or_else(
        || "?".to_owned(),
        |e| format!("{} (errno {e})", nix::errno::Errno::from_raw(e)),
    );
    let lsms = match lsm::is_active("bpf") {
        Ok((true, list)) => format!("although `bpf` is listed in {} ({list})", lsm::LSM_FILE),
        Ok((false, list)) => format!("and `bpf` is not listed in {} ({list})", lsm::LSM_FILE),
        Err(e) => format!("and the LSM list is unreadable ({e})"),
    };
    let log = if log.trim().is_empty() {
        "empty verifier log".to_owned()
    } else {
        format!("verifier log: {}", log.trim())
    };
    Error::Unsupported(Unsupported::new(format!(
        "BPF-LSM unavailable: {call} of `lsm/{HOOK}` failed with {errno} {lsms}; {log}"
    )))
}
