//! The [`Enforcer`] implementation: profile files in a directory armor owns, loaded and
//! replaced atomically with `apparmor_parser -r`, unloaded by name through the kernel's
//! `.remove` interface (falling back to `apparmor_parser -R`, which has to parse the file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use armor_core::enforcer::{
    AlertSink, Applied, ApplyError, Artifact, CompileError, Enforcer, Support,
};
use armor_core::engine::RuleSet;
use armor_core::workload::WorkloadKey;
use parking_lot_free::Lock;

use crate::alerts::{AlertError, AlertReader, Installed, Registry, SinkSlot};
use crate::compile::{AppArmorArtifact, NAME_PREFIX, compile, profile_name};
use crate::profile::MARKER;

/// The enforcer's name (the `Enforcer` field of alerts).
pub const NAME: &str = "AppArmor";

/// The tool that compiles and loads profiles.
pub const PARSER: &str = "apparmor_parser";

/// AppArmor's policy interface in securityfs.
pub const SECURITYFS: &str = "/sys/kernel/security/apparmor";

mod parking_lot_free {
    /// A poison-tolerant mutex.
    #[derive(Default)]
    pub(crate) struct Lock<T>(std::sync::Mutex<T>);

    impl<T> Lock<T> {
        pub(crate) fn new(v: T) -> Self {
            Self(std::sync::Mutex::new(v))
        }

        pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}

/// The AppArmor enforcer.
pub struct AppArmor {
    dir: PathBuf,
    parser: PathBuf,
    securityfs: PathBuf,
    installed: Lock<BTreeMap<String, String>>,
    sink: SinkSlot,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for AppArmor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppArmor")
            .field("dir", &self.dir)
            .field("parser", &self.parser)
            .field("installed", &self.installed.lock().len())
            .finish()
    }
}

fn tool_error(status: &std::process::ExitStatus, stderr: &[u8]) -> ApplyError {
    ApplyError::Tool {
        tool: PARSER,
        status: status.to_string(),
        stderr: String::from_utf8_lossy(stderr).trim().to_owned(),
    }
}

fn spawn_error(e: &std::io::Error) -> ApplyError {
    ApplyError::Tool {
        tool: PARSER,
        status: "not started".to_owned(),
        stderr: e.to_string(),
    }
}

impl AppArmor {
    /// An enforcer writing its profiles to `dir` (created on first apply), using
    /// `apparmor_parser` from `PATH`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_parser(dir, PARSER)
    }

    /// The same with an explicit parser binary.
    pub fn with_parser(dir: impl Into<PathBuf>, parser: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            parser: parser.into(),
            securityfs: PathBuf::from(SECURITYFS),
            installed: Lock::new(BTreeMap::new()),
            sink: Arc::new(std::sync::Mutex::new(None)),
            registry: Arc::new(Registry::default()),
        }
    }

    /// Compiles `text` without loading it (`apparmor_parser -Q -K -S`): no kernel support
    /// needed. The error carries the parser's message with line numbers.
    pub fn check(&self, text: &str) -> Result<(), ApplyError> {
        let dir = std::env::temp_dir().join(format!("armor-aa-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| ApplyError::Syscall {
            call: "mkdir",
            source,
        })?;
        let file = dir.join(format!("p{:x}", fnv64(text)));
        std::fs::write(&file, text).map_err(|source| ApplyError::Syscall {
            call: "write",
            source,
        })?;
        let out = Command::new(&self.parser)
            .args(["-Q", "-K", "-S"])
            .arg(&file)
            .output();
        let _ = std::fs::remove_file(&file);
        let out = out.map_err(|e| spawn_error(&e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(tool_error(&out.status, &out.stderr))
        }
    }

    /// The same with AppArmor's policy interface at `dir` instead of [`SECURITYFS`] (for a
    /// securityfs mounted elsewhere).
    #[must_use]
    pub fn with_securityfs(mut self, dir: impl Into<PathBuf>) -> Self {
        self.securityfs = dir.into();
        self
    }

    /// Unloads the loaded profile `name` and its children: the name is written to the
    /// kernel's `.remove` interface (no parsing; a profile that is not loaded, as after a
    /// reboot, is not an error). Without that interface, `apparmor_parser -R file` does it
    /// from the profile's file.
    pub fn unload(&self, name: &str, file: &Path) -> Result<(), ApplyError> {
        use std::io::Write as _;
        let iface = self.securityfs.join(".remove");
        match std::fs::OpenOptions::new().write(true).open(&iface) {
            Ok(mut f) => match f.write_all(name.as_bytes()) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(ApplyError::Syscall {
                    call: "write .remove",
                    source,
                }),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.run(&["-R"], file),
            Err(source) => Err(ApplyError::Syscall {
                call: "open .remove",
                source,
            }),
        }
    }

    fn file_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn run(&self, args: &[&str], file: &Path) -> Result<(), ApplyError> {
        let out = Command::new(&self.parser)
            .args(args)
            .arg(file)
            .output()
            .map_err(|e| spawn_error(&e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(tool_error(&out.status, &out.stderr))
        }
    }

    /// Unloads and deletes every armor profile file in the directory (recognised by the
    /// marker line and the name prefix) whose profile is not in `keep`: profiles of workloads
    /// that are gone, also from an earlier run. Files without the marker are never touched.
    /// Returns the names removed.
    pub fn sweep(&self, keep: &[String]) -> Result<Vec<String>, ApplyError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ApplyError::Syscall {
                    call: "readdir",
                    source,
                });
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(NAME_PREFIX) && !keep.contains(n))
            .collect();
        names.sort();
        let mut removed = Vec::new();
        for n in names {
            let path = self.file_of(&n);
            let marked =
                std::fs::read_to_string(&path).is_ok_and(|t| t.lines().next() == Some(MARKER));
            if !marked {
                continue;
            }
            self.unload(&n, &path)?;
            std::fs::remove_file(&path).map_err(|source| ApplyError::Syscall {
                call: "unlink",
                source,
            })?;
            self.installed.lock().retain(|_, v| v != &n);
            self.registry.remove(&n);
            removed.push(n);
        }
        Ok(removed)
    }

    /// The alert sink, if one is set.
    pub fn sink(&self) -> Option<Arc<dyn AlertSink>> {
        self.sink
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The installed profiles the alert reader maps denials against.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Starts turning the kernel's denial records into alerts for the sink set with
    /// `set_alert_sink`: from the audit multicast group, else from the kernel log. Alerts stop
    /// when the returned reader is dropped.
    pub fn start_alerts(&self) -> Result<AlertReader, AlertError> {
        AlertReader::start(self.registry(), Arc::clone(&self.sink))
    }

    /// The same reading the kernel log only (where the audit socket is not wanted).
    pub fn start_alerts_from_kernel_log(&self) -> Result<AlertReader, AlertError> {
        AlertReader::start_kernel_log(self.registry(), Arc::clone(&self.sink))
    }
}

fn fnv64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Enforcer for AppArmor {
    fn name(&self) -> &'static str {
        NAME
    }

    /// A real trial: the kernel must expose AppArmor's policy interface, and the parser must
    /// compile a profile.
    fn probe(&self) -> armor_core::enforcer::Support {
        let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled");
        match enabled.as_deref().map(str::trim) {
            Ok("Y") => {}
            Ok(v) => {
                return Support::Unsupported {
                    reason: format!("/sys/module/apparmor/parameters/enabled is `{v}`"),
                };
            }
            Err(e) => {
                return Support::Unsupported {
                    reason: format!(
                        "AppArmor is not in the kernel: /sys/module/apparmor/parameters/enabled: {e}"
                    ),
                };
            }
        }
        if let Err(e) = std::fs::metadata("/sys/kernel/security/apparmor/.replace") {
            return Support::Unsupported {
                reason: format!(
                    "AppArmor policy interface missing: /sys/kernel/security/apparmor/.replace: {e}"
                ),
            };
        }
        let trial = format!(
            "{MARKER}\nprofile {NAME_PREFIX}probe flags=(attach_disconnected) {{\n  file,\n}}\n"
        );
        match self.check(&trial) {
            Ok(()) => Support::Supported,
            Err(e) => Support::Unsupported {
                reason: e.to_string(),
            },
        }
    }

    fn compile(
        &self,
        key: &WorkloadKey,
        rules: &RuleSet,
    ) -> Result<Box<dyn Artifact>, CompileError> {
        Ok(Box::new(compile(key, rules)))
    }

    fn apply(&self, key: &WorkloadKey, artifact: &dyn Artifact) -> Result<Applied, ApplyError> {
        let a = artifact
            .as_any()
            .downcast_ref::<AppArmorArtifact>()
            .ok_or(ApplyError::ForeignArtifact { enforcer: NAME })?;
        let name = profile_name(key);
        let path = self.file_of(&name);
        let previous = std::fs::read_to_string(&path).ok();
        if previous.as_deref() == Some(a.text.as_str())
            && self.installed.lock().contains_key(&key.name)
        {
            return Ok(Applied::Unchanged);
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| ApplyError::Syscall {
            call: "mkdir",
            source,
        })?;
        // Write beside, load, then rename: a failed load keeps the previous file and profile.
        let tmp = self.dir.join(format!(".{name}.new"));
        std::fs::write(&tmp, &a.text).map_err(|source| ApplyError::Syscall {
            call: "write",
            source,
        })?;
        if let Err(e) = self.run(&["-r"], &tmp) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &path).map_err(|source| ApplyError::Syscall {
            call: "rename",
            source,
        })?;
        self.registry.insert(Installed::of(a));
        let was = self.installed.lock().insert(key.name.clone(), name);
        Ok(if was.is_some() || previous.is_some() {
            Applied::Updated
        } else {
            Applied::Installed
        })
    }

    fn remove(&self, key: &WorkloadKey) -> Result<(), ApplyError> {
        let name = profile_name(key);
        let path = self.file_of(&name);
        let marked = std::fs::read_to_string(&path).is_ok_and(|t| t.lines().next() == Some(MARKER));
        if !marked {
            return Err(ApplyError::UnknownWorkload(key.name.clone()));
        }
        self.unload(&name, &path)?;
        std::fs::remove_file(&path).map_err(|source| ApplyError::Syscall {
            call: "unlink",
            source,
        })?;
        self.installed.lock().remove(&key.name);
        self.registry.remove(&name);
        Ok(())
    }

    fn set_alert_sink(&self, sink: Arc<dyn AlertSink>) {
        *self
            .sink
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sink);
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("armor-aa-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn unload_writes_the_name_to_the_remove_interface() {
        let fs = scratch("secfs");
        std::fs::write(fs.join(".remove"), "").unwrap();
        // A parser that cannot run proves the interface was used, not the fallback.
        let aa = AppArmor::with_parser(fs.join("profiles"), "/nonexistent/apparmor_parser")
            .with_securityfs(&fs);
        aa.unload("armor.shop_web_eb78a544", &fs.join("unused"))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(fs.join(".remove")).unwrap(),
            "armor.shop_web_eb78a544"
        );
        std::fs::remove_dir_all(&fs).unwrap();
    }

    #[test]
    fn without_the_interface_unload_falls_back_to_the_parser() {
        let fs = scratch("nosecfs");
        let aa = AppArmor::with_parser(fs.join("profiles"), "/nonexistent/apparmor_parser")
            .with_securityfs(fs.join("missing"));
        let e = aa
            .unload("armor.x_00000000", &fs.join("armor.x_00000000"))
            .unwrap_err();
        assert!(
            matches!(&e, ApplyError::Tool { status, .. } if status == "not started"),
            "{e:?}"
        );
        std::fs::remove_dir_all(&fs).unwrap();
    }
}
