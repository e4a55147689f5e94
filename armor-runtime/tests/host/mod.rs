//! What the runtime tests on real kernel events share: the root check, a fresh temporary
//! directory, and a cgroup of the test's own that is killed and removed when dropped.

#![allow(dead_code, reason = "each test binary uses part of this module")]

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::Duration;

/// Whether the test can load eBPF programs and move processes between cgroups; says why not.
pub(crate) fn root_or_skip() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    println!("skipping: loading eBPF programs and moving processes between cgroups need root");
    false
}

/// An empty directory `<tmp>/<prefix>-<tag>-<pid>` (what was there is removed).
pub(crate) fn fresh_dir(prefix: &str, tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("{prefix}-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&p);
    fs::create_dir_all(&p).unwrap();
    p
}

/// A cgroup `<cgroup2 root>/<name>-<pid>`; its processes are killed and it is removed on drop.
pub(crate) struct Cg(pub(crate) PathBuf);

impl Cg {
    /// Creates the cgroup; returns it with its id.
    pub(crate) fn new(name: &str) -> (Self, u64) {
        let root = armor_runtime::identity::cgroup2_root().unwrap();
        let cg = Self(root.join(format!("{name}-{}", std::process::id())));
        fs::create_dir_all(&cg.0).unwrap();
        let id = fs::metadata(&cg.0).unwrap().ino();
        (cg, id)
    }
}

impl Drop for Cg {
    fn drop(&mut self) {
        let _ = fs::write(self.0.join("cgroup.kill"), "1");
        for _ in 0..100 {
            if fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
