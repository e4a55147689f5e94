//! Cgroup v2 directories for tests that run processes as a workload of their own: created under
//! the cgroup2 mount, identified by their id (the directory's inode, what
//! `bpf_get_current_cgroup_id()` returns for their tasks), killed and removed on drop.
//!
//! Shared by the host tests of armor-ebpf and armor-runtime and the privileged guest tests.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The cgroup v2 mount point, found in `/proc/self/mounts` (a hybrid layout has it at
/// `/sys/fs/cgroup/unified`, a pure v2 one at `/sys/fs/cgroup`).
pub fn cgroup2_root() -> io::Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    mounts
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let target = f.nth(1)?;
            (f.next()? == "cgroup2").then(|| PathBuf::from(target))
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no cgroup2 mount in /proc/self/mounts",
            )
        })
}

/// The cgroup v2 path of process `pid` (`/proc/PID/cgroup`'s `0::` line).
pub fn cgroup_of(pid: u32) -> io::Result<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(PathBuf::from)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no cgroup v2 line in /proc/{pid}/cgroup: {text:?}"),
            )
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
    pub fn create(tag: &str) -> io::Result<Self> {
        Self::create_named(&format!("armor-test-{tag}"))
    }

    /// Creates `<cgroup2 root>/<name>-<pid>-<n>` (a name a test needs, such as `kubepods-…`).
    pub fn create_named(name: &str) -> io::Result<Self> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = cgroup2_root()?.join(format!("{name}-{}-{n}", std::process::id()));
        fs::create_dir(&path)?;
        let id = fs::metadata(&path)?.ino();
        Ok(Self { path, id })
    }

    /// The cgroup directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup id: the inode number of the directory.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The pids in the cgroup now.
    pub fn procs(&self) -> io::Result<Vec<u32>> {
        let text = fs::read_to_string(self.path.join("cgroup.procs"))?;
        text.lines()
            .map(|l| {
                l.trim().parse().map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("cgroup.procs line {l:?}"),
                    )
                })
            })
            .collect()
    }

    /// Its path relative to the cgroup2 root, as `/proc/PID/cgroup` shows it (`/armor-test-…`).
    pub fn relative_path(&self) -> io::Result<PathBuf> {
        let root = cgroup2_root()?;
        let rel = self.path.strip_prefix(&root).map_err(|_| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "`{}` is not under `{}`",
                    self.path.display(),
                    root.display()
                ),
            )
        })?;
        Ok(Path::new("/").join(rel))
    }

    /// Runs `script` with `/bin/sh -c` inside this cgroup (the shell moves itself in, then
    /// executes the script) and waits for it.
    pub fn sh(&self, script: &str) -> io::Result<Output> {
        Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"echo $$ > "$1" && exec /bin/sh -c "$2""#)
            .arg("sh")
            .arg(self.path.join("cgroup.procs"))
            .arg(script)
            .output()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // cgroup.kill (5.14+) ends stragglers; rmdir succeeds once they are reaped.
        let _ignored = fs::write(self.path.join("cgroup.kill"), "1");
        for _ in 0..100 {
            if fs::remove_dir(&self.path).is_ok() || !self.path.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
