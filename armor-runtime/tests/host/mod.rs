//! What the runtime tests on real kernel events share: the root check and a fresh temporary
//! directory (their cgroups are `armor_testing::cgroup::Cgroup`).

#![allow(dead_code, reason = "each test binary uses part of this module")]

use std::fs;
use std::path::PathBuf;

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
