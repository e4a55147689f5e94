//! Compiling a CIL policy with `secilc` and loading it through selinuxfs.
//!
//! Loading a policy replaces the running one for the whole machine, so this is done only where
//! nothing else depends on SELinux: the test guest, which boots SELinux without a policy.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::fs::ScratchDir;
use crate::{Error, Result, Unsupported, guest, lsm};

/// The selinuxfs mount point.
pub const SELINUXFS: &str = "/sys/fs/selinux";

/// Probes for an SELinux that a test may load a policy into: active, selinuxfs mounted, and
/// inside the test guest (loading a policy on a host would replace its policy for every
/// process).
pub fn probe() -> Result<()> {
    let (active, list) = lsm::is_active("selinux")?;
    if !active {
        return Err(Error::Unsupported(Unsupported::new(format!(
            "SELinux is not active: {} is `{list}`",
            lsm::LSM_FILE
        ))));
    }
    if !Path::new(SELINUXFS).join("load").exists() {
        return Err(Error::Unsupported(Unsupported::new(format!(
            "SELinux is active but selinuxfs is not mounted at {SELINUXFS}"
        ))));
    }
    if guest::current().is_none() {
        return Err(Error::Unsupported(Unsupported::new(
            "SELinux is active on this host; loading a test policy would replace the host's policy",
        )));
    }
    Ok(())
}

/// Compiles CIL source with `secilc` into a binary kernel policy.
pub fn compile(cil: &str) -> Result<Vec<u8>> {
    let dir = ScratchDir::new("cil")?;
    let src = dir.create_file("policy.cil", cil.as_bytes(), 0o644)?;
    let policy = dir.path().join("policy.bin");
    let out = Command::new("secilc")
        .arg("-o")
        .arg(&policy)
        .args(["-f", "/dev/null"])
        .arg(&src)
        .output()
        .map_err(|e| Error::syscall("spawn", "secilc", e))?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: "secilc".to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    fs::read(&policy).map_err(|e| Error::syscall("read", &policy, e))
}

/// Loads a binary policy (`/sys/fs/selinux/load`).
pub fn load(policy: &[u8]) -> Result<()> {
    let file = Path::new(SELINUXFS).join("load");
    fs::write(&file, policy).map_err(|e| Error::syscall("write", &file, e))
}

/// Switches between enforcing and permissive mode.
pub fn set_enforcing(on: bool) -> Result<()> {
    let file = Path::new(SELINUXFS).join("enforce");
    fs::write(&file, if on { "1" } else { "0" }).map_err(|e| Error::syscall("write", &file, e))
}

/// Whether SELinux enforces.
pub fn enforcing() -> Result<bool> {
    let file = Path::new(SELINUXFS).join("enforce");
    let text = fs::read_to_string(&file).map_err(|e| Error::syscall("read", &file, e))?;
    Ok(text.trim() == "1")
}

/// The security context of `path`, as `stat -c %C` prints it.
pub fn file_context(path: &Path) -> Result<String> {
    let out = Command::new("stat")
        .args(["-c", "%C"])
        .arg(path)
        .output()
        .map_err(|e| Error::syscall("spawn", "stat", e))?;
    if !out.status.success() {
        return Err(Error::Tool {
            tool: "stat".to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Switches to enforcing mode until the returned guard drops.
pub fn enforce() -> Result<EnforcingGuard> {
    set_enforcing(true)?;
    Ok(EnforcingGuard { _private: () })
}

/// Restores permissive mode on drop (the loaded policy itself cannot be unloaded).
#[derive(Debug)]
pub struct EnforcingGuard {
    _private: (),
}

impl Drop for EnforcingGuard {
    fn drop(&mut self) {
        let _ignored = set_enforcing(false);
    }
}
