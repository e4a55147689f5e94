//! The static `armor-op` helper: one operation per process, its errno reported back.
//!
//! `helper/armor-op.c` is compiled with `cc -static` by `build.rs`, so the same binary runs on
//! the host and in the guest, and an exec of it maps no shared library.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::errno::Errno;

use crate::cgroup::Cgroup;
use crate::{Error, Result};

/// The helper binary built by `build.rs`.
pub const HELPER: &str = concat!(env!("OUT_DIR"), "/armor-op");

/// Exit code of `armor-op` for usage and setup errors (never an errno it reports).
pub const SETUP_FAILURE: i32 = 254;

/// The path of the helper binary.
pub fn helper_path() -> &'static Path {
    Path::new(HELPER)
}

/// A copy of the helper that every uid can execute: `<tmp>/armor-op-<size>-<mtime>/armor-op`
/// (directory 0755, file 0755), made once per build of the helper and reused.
///
/// The helper built by `build.rs` lives in the checkout's target directory, and a checkout may
/// sit under a directory only its owner can traverse (root's home is 0700 on Debian, and so is
/// every `mktemp -d`): another uid cannot even reach it there. Tests that run the helper as
/// another uid run this copy.
pub fn helper_for_every_uid() -> Result<&'static Path> {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(p) = COPY.get() {
        return Ok(p);
    }
    let copy = copy_for_every_uid(Path::new(HELPER), &std::env::temp_dir())?;
    Ok(COPY.get_or_init(|| copy))
}

/// Copies `binary` into a directory under `parent` that every uid can traverse, named after
/// the binary's size and modification time (a rebuilt helper gets a new copy), and returns the
/// copy's path. Concurrent callers each write a private file and rename it into place.
pub fn copy_for_every_uid(binary: &Path, parent: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let meta = std::fs::metadata(binary).map_err(|e| Error::syscall("stat", binary, e))?;
    let name = binary
        .file_name()
        .ok_or_else(|| Error::syscall("copy", binary, std::io::ErrorKind::InvalidInput.into()))?;
    let dir = parent.join(format!(
        "{}-{}-{}",
        name.to_string_lossy(),
        meta.size(),
        meta.mtime()
    ));
    let target = dir.join(name);
    if target.exists() {
        return Ok(target);
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::syscall("mkdir", &dir, e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::syscall("chmod", &dir, e))?;
    let tmp = dir.join(format!(
        ".{}.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::copy(binary, &tmp).map_err(|e| Error::syscall("copy", &tmp, e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::syscall("chmod", &tmp, e))?;
    std::fs::rename(&tmp, &target).map_err(|e| Error::syscall("rename", &target, e))?;
    Ok(target)
}

/// A capability use `armor-op cap` performs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capability {
    /// `bind(127.0.0.1:1023)` on a TCP socket (`CAP_NET_BIND_SERVICE`).
    NetBindService,
    /// `socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)` (`CAP_NET_RAW`).
    NetRaw,
    /// `chroot("/")` (`CAP_SYS_CHROOT`).
    SysChroot,
    /// `unshare(CLONE_NEWUTS)` (`CAP_SYS_ADMIN`).
    SysAdmin,
    /// `setuid` to a uid the caller does not hold (`CAP_SETUID`).
    SetUid,
    /// `kill(1, 0)` (`CAP_KILL` when pid 1 belongs to another user).
    Kill,
    /// `chown(path, 65534, 65534)` (`CAP_CHOWN`).
    Chown(PathBuf),
}

/// The one operation `armor-op` performs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// `execv(path, [path, args…])`.
    Exec {
        /// The program.
        path: PathBuf,
        /// Its arguments after `argv[0]`.
        args: Vec<OsString>,
    },
    /// `open(path, flags)`; flags are a comma list: `rdonly`, `wronly`, `rdwr`, `creat`, `excl`,
    /// `trunc`, `append`, `directory`, `nofollow`, `path`, `noatime`.
    Open {
        /// The file.
        path: PathBuf,
        /// The flags.
        flags: String,
    },
    /// `socket(domain, type, protocol)`; names (`inet`, `stream`, `tcp`, …) or numbers.
    Socket {
        /// The domain.
        domain: String,
        /// The type.
        ty: String,
        /// The protocol.
        protocol: String,
    },
    /// A capability use.
    Cap(Capability),
    /// `chroot(root)`, `chdir("/")`, then `open(path, flags)`.
    ChrootOpen {
        /// The new root.
        root: PathBuf,
        /// The file, relative to the new root.
        path: PathBuf,
        /// The open flags, as for [`Op::Open`].
        flags: String,
    },
}

impl Op {
    /// An exec of `path` with `args`.
    pub fn exec(path: impl Into<PathBuf>, args: &[&str]) -> Self {
        Self::Exec {
            path: path.into(),
            args: args.iter().map(OsString::from).collect(),
        }
    }

    /// An open of `path` with `flags`.
    pub fn open(path: impl Into<PathBuf>, flags: &str) -> Self {
        Self::Open {
            path: path.into(),
            flags: flags.to_owned(),
        }
    }

    /// A `socket(domain, ty, protocol)` call.
    pub fn socket(domain: &str, ty: &str, protocol: &str) -> Self {
        Self::Socket {
            domain: domain.to_owned(),
            ty: ty.to_owned(),
            protocol: protocol.to_owned(),
        }
    }

    /// The helper's command-line arguments for this operation.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        match self {
            Self::Exec { path, args } => {
                a.push("exec".into());
                a.push(path.into());
                a.extend(args.iter().cloned());
            }
            Self::Open { path, flags } => {
                a.extend(["open".into(), path.into(), flags.into()]);
            }
            Self::Socket {
                domain,
                ty,
                protocol,
            } => {
                a.extend(["socket".into(), domain.into(), ty.into(), protocol.into()]);
            }
            Self::Cap(cap) => {
                a.push("cap".into());
                let name = match cap {
                    Capability::NetBindService => "net_bind_service",
                    Capability::NetRaw => "net_raw",
                    Capability::SysChroot => "sys_chroot",
                    Capability::SysAdmin => "sys_admin",
                    Capability::SetUid => "setuid",
                    Capability::Kill => "kill",
                    Capability::Chown(_) => "chown",
                };
                a.push(name.into());
                if let Capability::Chown(path) = cap {
                    a.push(path.into());
                }
            }
            Self::ChrootOpen { root, path, flags } => {
                a.extend(["chroot-open".into(), root.into(), path.into(), flags.into()]);
            }
        }
        a
    }
}

/// What one `armor-op` run reported.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// The errno the operation failed with, `None` when it succeeded (or an exec succeeded and
    /// the new program ran).
    pub errno: Option<Errno>,
    /// The process's exit code (`None` when a signal ended it).
    pub exit_code: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Outcome {
    /// Whether the operation succeeded and the process exited with 0.
    pub fn succeeded(&self) -> bool {
        self.errno.is_none() && self.exit_code == Some(0)
    }
}

/// Parses the helper's report from its stdout and exit code.
pub fn parse_report(stdout: &str, exit_code: Option<i32>) -> Result<Option<Errno>> {
    let Some(report) = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("armor-op: "))
    else {
        return Ok(None);
    };
    if report == "ok" {
        return Ok(None);
    }
    let errno = report
        .strip_prefix("errno ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<i32>().ok())
        .ok_or_else(|| Error::Parse {
            what: "armor-op report",
            input: report.to_owned(),
        })?;
    // The exit code repeats the errno: a mismatch means the report line is not the helper's.
    if exit_code != Some(errno) {
        return Err(Error::Parse {
            what: "armor-op report (exit code differs)",
            input: format!("{report} / exit {exit_code:?}"),
        });
    }
    Ok(Some(Errno::from_raw(errno)))
}

/// Runs `armor-op` with an optional cgroup, uid/gid and AppArmor profile.
#[derive(Debug, Clone, Default)]
pub struct Runner {
    cgroup: Option<PathBuf>,
    ids: Option<(u32, u32)>,
    apparmor_profile: Option<String>,
}

impl Runner {
    /// A runner with no cgroup, the caller's uid and no profile change.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the helper into `cgroup` before the operation.
    #[must_use]
    pub fn in_cgroup(mut self, cgroup: &Cgroup) -> Self {
        self.cgroup = Some(cgroup.path().to_owned());
        self
    }

    /// Runs the helper as `uid`/`gid` (no supplementary groups); needs root. The helper then
    /// runs from [`helper_for_every_uid`], which that uid can reach wherever the checkout is.
    #[must_use]
    pub fn as_user(mut self, uid: u32, gid: u32) -> Self {
        self.ids = Some((uid, gid));
        self
    }

    /// Runs the helper confined by the loaded AppArmor profile `name` (through `aa-exec`).
    #[must_use]
    pub fn apparmor_profile(mut self, name: &str) -> Self {
        self.apparmor_profile = Some(name.to_owned());
        self
    }

    /// Performs `op` in a new helper process and returns what it reported.
    pub fn run(&self, op: &Op) -> Result<Outcome> {
        let helper = match self.ids {
            Some(_) => helper_for_every_uid()?,
            None => helper_path(),
        };
        let mut cmd = match &self.apparmor_profile {
            Some(profile) => {
                let mut c = Command::new("aa-exec");
                c.args(["-p", profile, "--"]).arg(helper);
                c
            }
            None => Command::new(helper),
        };
        if let Some(cgroup) = &self.cgroup {
            cmd.arg("--cgroup").arg(cgroup);
        }
        cmd.args(op.args());
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
        let out = cmd
            .output()
            .map_err(|e| Error::syscall("spawn", helper, e))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let exit_code = out.status.code();
        if exit_code == Some(SETUP_FAILURE) {
            return Err(Error::Tool {
                tool: "armor-op".to_owned(),
                status: out.status.to_string(),
                stderr,
            });
        }
        let errno = parse_report(&stdout, exit_code)?;
        Ok(Outcome {
            errno,
            exit_code,
            stdout,
            stderr,
        })
    }
}

/// armor-op's spelling (`rdonly,creat`) of a corpus case's open flags (`O_RDONLY|O_CREAT`);
/// no flags mean a read. `O_CLOEXEC` does not change the access and is dropped.
pub fn open_flags(flags: &str) -> std::result::Result<String, String> {
    let mut out = Vec::new();
    for f in flags.split('|').map(str::trim).filter(|f| !f.is_empty()) {
        out.push(match f {
            "O_RDONLY" => "rdonly",
            "O_WRONLY" => "wronly",
            "O_RDWR" => "rdwr",
            "O_CREAT" => "creat",
            "O_TRUNC" => "trunc",
            "O_APPEND" => "append",
            "O_DIRECTORY" => "directory",
            "O_CLOEXEC" => continue,
            other => return Err(format!("open flag `{other}` has no armor-op spelling")),
        });
    }
    if out.is_empty() {
        out.push("rdonly");
    }
    Ok(out.join(","))
}

#[cfg(test)]
mod tests {

    #[test]
    fn open_flags_are_spelled_for_armor_op() {
        assert_eq!(
            open_flags("O_WRONLY | O_CREAT|O_CLOEXEC").unwrap(),
            "wronly,creat"
        );
        assert_eq!(open_flags("").unwrap(), "rdonly");
        assert!(open_flags("O_PATH").unwrap_err().contains("O_PATH"));
    }

    use super::*;

    #[test]
    fn parses_reports() {
        assert_eq!(parse_report("armor-op: ok\n", Some(0)).unwrap(), None);
        assert_eq!(
            parse_report("armor-op: errno 1 EPERM\n", Some(1)).unwrap(),
            Some(Errno::EPERM)
        );
        assert_eq!(
            parse_report("hello from the exec'd program\n", Some(3)).unwrap(),
            None
        );
        assert!(parse_report("armor-op: errno 13 EACCES\n", Some(0)).is_err());
        assert!(parse_report("armor-op: garbage\n", Some(1)).is_err());
    }

    #[test]
    fn a_copy_for_every_uid_leaves_a_private_directory() {
        use std::os::unix::fs::PermissionsExt as _;
        let base = std::env::temp_dir().join(format!("armor-op-copy-{}", std::process::id()));
        let private = base.join("private");
        let shared = base.join("shared");
        std::fs::create_dir_all(&private).unwrap();
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let bin = private.join("tool");
        std::fs::write(&bin, b"#!/bin/sh\n").unwrap();
        let copy = copy_for_every_uid(&bin, &shared).unwrap();
        assert!(copy.starts_with(&shared), "{}", copy.display());
        assert_eq!(std::fs::read(&copy).unwrap(), b"#!/bin/sh\n");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&copy), 0o755);
        assert_eq!(mode(copy.parent().unwrap()), 0o755);
        // The same build of the binary reuses its copy; nothing else is left in the directory.
        assert_eq!(copy_for_every_uid(&bin, &shared).unwrap(), copy);
        assert_eq!(
            std::fs::read_dir(copy.parent().unwrap()).unwrap().count(),
            1
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn builds_arguments() {
        let args = Op::Cap(Capability::Chown("/x".into())).args();
        assert_eq!(args, ["cap", "chown", "/x"]);
        assert_eq!(
            Op::socket("inet", "stream", "0").args(),
            ["socket", "inet", "stream", "0"]
        );
    }
}
