//! The kernel's active LSM list.

use std::fs;
use std::path::Path;

use crate::{Error, Result};

/// Where securityfs lists the active LSMs, in initialisation order.
pub const LSM_FILE: &str = "/sys/kernel/security/lsm";

/// The active LSMs (`/sys/kernel/security/lsm`), mounting securityfs first when it is absent
/// (root only; the mount is left in place, as a distribution's init would do).
pub fn active() -> Result<Vec<String>> {
    if !Path::new(LSM_FILE).exists() {
        nix::mount::mount(
            Some("securityfs"),
            "/sys/kernel/security",
            Some("securityfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| Error::syscall("mount securityfs", "/sys/kernel/security", e.into()))?;
    }
    let text = fs::read_to_string(LSM_FILE).map_err(|e| Error::syscall("read", LSM_FILE, e))?;
    Ok(parse(&text))
}

/// Splits the comma-separated list of `/sys/kernel/security/lsm`.
pub fn parse(text: &str) -> Vec<String> {
    text.trim()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `name` is among the active LSMs; the list is returned for error messages.
pub fn is_active(name: &str) -> Result<(bool, String)> {
    let list = active()?;
    Ok((list.iter().any(|l| l == name), list.join(",")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_list() {
        assert_eq!(
            super::parse("lockdown,capability,bpf\n"),
            ["lockdown", "capability", "bpf"]
        );
        assert!(super::parse("\n").is_empty());
    }
}
