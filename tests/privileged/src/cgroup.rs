//! Workload cgroups (cgroup v2) for the tests.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::fs::mounts;
use crate::{Error, Result, Unsupported};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The cgroup v2 mount point, found in `/proc/self/mounts` (the host's hybrid layout has it at
/// `/sys/fs/cgroup/unified`, the guest's pure v2 at `/sys/fs/cgroup`).
pub fn cgroup2_root() -> Result<PathBuf> {
    mounts()?
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| m.target)
        .ok_or_else(|| {
            Error::Unsupported(Unsupported::new("no cgroup2 mount in /proc/self/mounts"))
        })
}

/// A cgroup v2 directory created for one test, removed on drop (its processes are killed).
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
    id: u64,
}

impl Cgroup {
    /// Creates `<cgroup2 root>/armor-test-<tag>-<pid>-<n>`.
    pub fn create(tag: &str) -> Result<Self> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = cgroup2_root()?.join(format!("armor-test-{tag}-{}-{n}", std::process::id()));
        fs::create_dir(&path).map_err(|e| Error::syscall("mkdir", &path, e))?;
        let id = fs::metadata(&path)
            .map_err(|e| Error::syscall("stat", &path, e))?
            .ino();
        Ok(Self { path, id })
    }

    /// The cgroup directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup id: the inode number of the directory, as `bpf_get_current_cgroup_id()`
    /// returns it for tasks in this cgroup.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The pids currently in the cgroup.
    pub fn procs(&self) -> Result<Vec<u32>> {
        let file = self.path.join("cgroup.procs");
        let text = fs::read_to_string(&file).map_err(|e| Error::syscall("read", &file, e))?;
        text.lines()
            .map(|l| {
                l.trim().parse().map_err(|_| Error::Parse {
                    what: "cgroup.procs",
                    input: l.to_owned(),
                })
            })
            .collect()
    }

    /// The path of this cgroup relative to the cgroup2 root, as `/proc/PID/cgroup` shows it
    /// (`0::/armor-test-…`).
    pub fn relative_path(&self) -> Result<PathBuf> {
        let root = cgroup2_root()?;
        let rel = self.path.strip_prefix(&root).map_err(|_| {
            Error::NotFound(format!(
                "`{}` under `{}`",
                self.path.display(),
                root.display()
            ))
        })?;
        Ok(Path::new("/").join(rel))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // cgroup.kill (5.14+) ends stragglers; then rmdir succeeds once they are reaped.
        let _ignored = fs::write(self.path.join("cgroup.kill"), "1");
        for _ in 0..50 {
            if fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The cgroup v2 path of process `pid` (`/proc/PID/cgroup`'s `0::` line).
pub fn cgroup_of(pid: u32) -> Result<PathBuf> {
    let file = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let text = fs::read_to_string(&file).map_err(|e| Error::syscall("read", &file, e))?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(PathBuf::from)
        .ok_or_else(|| Error::Parse {
            what: "/proc/PID/cgroup",
            input: text.clone(),
        })
}
