//! Detecting the test guest and its boot profile.
//!
//! `scripts/vm-test` boots the guest with `armor_vm_profile=<profile>` and
//! `armor_vm_kver=<release>` on the kernel command line; the kernel passes them on, and they stay
//! readable in `/proc/cmdline` whatever environment a test runs with.

use std::fmt;
use std::fs;

/// A boot profile of the test guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Profile {
    /// `lsm=lockdown,capability,landlock,yama,apparmor,bpf`.
    AppArmor,
    /// `lsm=lockdown,capability,landlock,yama,selinux,bpf`.
    SeLinux,
}

impl Profile {
    /// The profile's name on the command line (`apparmor`, `selinux`).
    pub fn name(self) -> &'static str {
        match self {
            Self::AppArmor => "apparmor",
            Self::SeLinux => "selinux",
        }
    }

    /// The active LSM list (`/sys/kernel/security/lsm`) the profile boots with.
    pub fn expected_lsms(self) -> &'static [&'static str] {
        match self {
            Self::AppArmor => &[
                "lockdown",
                "capability",
                "landlock",
                "yama",
                "apparmor",
                "bpf",
            ],
            Self::SeLinux => &[
                "lockdown",
                "capability",
                "landlock",
                "yama",
                "selinux",
                "bpf",
            ],
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "apparmor" => Some(Self::AppArmor),
            "selinux" => Some(Self::SeLinux),
            _ => None,
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The test guest this process runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Guest {
    /// The profile the guest booted, `None` when the command line names an unknown one (which
    /// makes every profile check fail).
    pub profile: Option<Profile>,
    /// The profile name exactly as on the command line.
    pub profile_name: String,
    /// The kernel release of the package the runner resolved (`armor_vm_kver=`).
    pub kernel_release: Option<String>,
}

/// The guest this process runs in, or `None` on any other machine.
///
/// The guest is recognised by `armor_vm_profile=` in `/proc/cmdline`, or by `ARMOR_VM=1` in the
/// environment (then the profile comes from `ARMOR_VM_PROFILE`).
pub fn current() -> Option<Guest> {
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    parse_cmdline(&cmdline).or_else(|| {
        (std::env::var("ARMOR_VM").as_deref() == Ok("1")).then(|| {
            let name = std::env::var("ARMOR_VM_PROFILE").unwrap_or_default();
            Guest {
                profile: Profile::from_name(&name),
                profile_name: name,
                kernel_release: None,
            }
        })
    })
}

/// Parses a kernel command line; `None` when it does not mark the test guest.
pub fn parse_cmdline(cmdline: &str) -> Option<Guest> {
    let value = |key: &str| {
        cmdline
            .split_ascii_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    };
    let name = value("armor_vm_profile")?;
    Some(Guest {
        profile: Profile::from_name(name),
        profile_name: name.to_owned(),
        kernel_release: value("armor_vm_kver").map(str::to_owned),
    })
}

/// Checks that a profile-specific test runs in the right guest.
///
/// Outside the guest it returns `Ok` (the test's own probes then decide whether it skips); in a
/// guest booted with another profile it fails, because the runner should have filtered the test
/// out and a silent pass would hide that.
pub fn require_profile(wanted: Profile) -> crate::Result<()> {
    match current() {
        Some(g) if g.profile != Some(wanted) => Err(crate::Error::WrongProfile {
            wanted: wanted.name(),
            booted: g.profile_name,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_runner_command_line() {
        let g = parse_cmdline(
            "console=ttyS0 lsm=a,b armor_vm_profile=selinux armor_vm_run=/x armor_vm_kver=6.1.0-56-amd64\n",
        )
        .unwrap();
        assert_eq!(g.profile, Some(Profile::SeLinux));
        assert_eq!(g.kernel_release.as_deref(), Some("6.1.0-56-amd64"));
        assert_eq!(parse_cmdline("console=ttyS0 armor_vm_profilex=1"), None);
        let odd = parse_cmdline("armor_vm_profile=smack").unwrap();
        assert_eq!((odd.profile, odd.profile_name.as_str()), (None, "smack"));
    }
}
