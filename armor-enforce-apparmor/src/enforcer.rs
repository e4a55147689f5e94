//! The [`Enforcer`] implementation: profile files in a directory armor owns, loaded and
//! replaced atomically with `apparmor_parser -r`, unloaded by name through the kernel's
//! `.remove` interface (falling back to `apparmor_parser -R`, which has to parse the file).

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use armor_core::enforcer::{
    AlertSink, Applied, ApplyError, Artifact, Attachment, Built, CompileError, Destination,
    Enforcer, EnforcerFactory, LabelKind, Support,
};
use armor_core::engine::RuleSet;
use armor_core::workload::WorkloadKey;
use parking_lot_free::Lock;

use crate::alerts::{AlertError, AlertReader, Installed, Registry, SinkSlot};
use crate::compile::{AppArmorArtifact, NAME_PREFIX, compile, profile_name};
use crate::profile::MARKER;

pub use crate::NAME;

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
            sink: SinkSlot::new(),
            registry: Arc::new(Registry::default()),
        }
    }

    /// Compiles `text` without loading it (`apparmor_parser -Q -K -S`): no kernel support
    /// needed. The error carries the parser's message with line numbers.
    ///
    /// The text goes to the parser on its standard input: no file is written. (A file under
    /// the shared temp directory at a predictable path would let a local user who creates that
    /// path first, as a symlink, make root write anywhere.)
    pub fn check(&self, text: &str) -> Result<(), ApplyError> {
        use std::io::Write as _;
        use std::process::Stdio;
        let mut child = Command::new(&self.parser)
            .args(["-Q", "-K", "-S"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_error(&e))?;
        // The input is written on a thread of its own while `wait_with_output` reads stderr: a
        // parser that reports a lot before it has read a large profile cannot block either
        // side. A parser that stops at an error without reading the rest ends the write early
        // (EPIPE); its status and message are what count then.
        let stdin = child.stdin.take();
        let (written, out) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || stdin.map(|mut s| s.write_all(text.as_bytes())));
            let out = child.wait_with_output();
            (writer.join().ok().flatten(), out)
        });
        let out = out.map_err(|e| spawn_error(&e))?;
        if out.status.success() {
            if let Some(Err(source)) = written {
                return Err(ApplyError::Syscall {
                    call: "write to apparmor_parser",
                    source,
                });
            }
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
    pub fn sweep_profiles(&self, keep: &[String]) -> Result<Vec<String>, ApplyError> {
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
        self.sink.get()
    }

    /// The installed profiles the alert reader maps denials against.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Starts turning the kernel's denial records into alerts for the sink set with
    /// `set_alert_sink`: from the audit multicast group, else from the kernel log. Alerts stop
    /// when the returned reader is dropped.
    pub fn start_alerts(&self) -> Result<AlertReader, AlertError> {
        AlertReader::start(self.registry(), self.sink.clone())
    }

    /// The same reading the kernel log only (where the audit socket is not wanted).
    pub fn start_alerts_from_kernel_log(&self) -> Result<AlertReader, AlertError> {
        AlertReader::start_kernel_log(self.registry(), self.sink.clone())
    }
}

/// Makes sure no other user can write into the profile directory: the enforcer writes, renames
/// and deletes files there as root, and `apparmor_parser` loads what it finds. A directory of
/// ours that is group- or world-writable (made under a permissive umask, or by an earlier
/// version) loses those bits; one owned by another user is refused.
fn check_private_dir(dir: &Path) -> Result<(), ApplyError> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let meta = std::fs::metadata(dir).map_err(|source| ApplyError::Syscall {
        call: "stat profile directory",
        source,
    })?;
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() == euid && meta.mode() & 0o022 != 0 {
        let mode = meta.mode() & 0o7777 & !0o022;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(|source| {
            ApplyError::Syscall {
                call: "chmod profile directory",
                source,
            }
        })?;
        return Ok(());
    }
    if meta.uid() != euid {
        return Err(ApplyError::Syscall {
            call: "check profile directory",
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} is owned by uid {} with mode {:o}: it must be owned by uid {euid} and \
                     writable by no one else",
                    dir.display(),
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
            ),
        });
    }
    Ok(())
}

/// Writes `text` to `path` in a file this call creates (`O_CREAT | O_EXCL`: never through a
/// link or into a file someone else made), after removing whatever was at `path`.
fn write_new(path: &Path, text: &str) -> Result<(), ApplyError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ApplyError::Syscall {
                call: "unlink",
                source,
            });
        }
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| ApplyError::Syscall {
            call: "write",
            source,
        })
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

    /// The profile of the destination's workload. Its root and start do not matter: a profile
    /// names paths as the workload sees them and confines from the exec that enters it.
    fn compile(
        &self,
        dest: &Destination,
        rules: &RuleSet,
    ) -> Result<Box<dyn Artifact>, CompileError> {
        Ok(Box::new(compile(&dest.key, rules)))
    }

    fn apply(&self, dest: &Destination, artifact: &dyn Artifact) -> Result<Applied, ApplyError> {
        let key = &dest.key;
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
        // Made writable by its owner only, whatever the umask; an existing one is checked.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)
            .map_err(|source| ApplyError::Syscall {
                call: "mkdir",
                source,
            })?;
        check_private_dir(&self.dir)?;
        // Write beside, load, then rename: a failed load keeps the previous file and profile.
        let tmp = self.dir.join(format!(".{name}.new"));
        write_new(&tmp, &a.text)?;
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
        self.sink.set(sink);
    }

    /// By profile: a container is confined when its spec names [`profile_name`] of it.
    fn attachment(&self) -> Attachment {
        Attachment::Label(LabelKind::AppArmorProfile)
    }

    fn label(&self, key: &WorkloadKey) -> Option<String> {
        Some(profile_name(key))
    }

    /// Unloads and deletes armor's profiles of workloads not in `keep`
    /// ([`AppArmor::sweep_profiles`]).
    fn sweep(&self, keep: &[WorkloadKey]) -> Result<Vec<String>, ApplyError> {
        let names: Vec<String> = keep.iter().map(profile_name).collect();
        self.sweep_profiles(&names)
    }

    /// Every profile applied (and not removed) must be listed by the kernel
    /// (`<securityfs>/profiles`) in enforce mode: one unloaded (`apparmor_parser -R`,
    /// `aa-teardown`) or switched to complain mode (`aa-complain`) by someone else confines
    /// nothing any more, and is named here.
    fn health(&self) -> Result<(), String> {
        let installed: Vec<String> = self.installed.lock().values().cloned().collect();
        if installed.is_empty() {
            return Ok(());
        }
        let list_path = self.securityfs.join("profiles");
        let list = std::fs::read_to_string(&list_path).map_err(|e| {
            format!(
                "{NAME}: cannot read {} to check its {} profiles: {e}",
                list_path.display(),
                installed.len()
            )
        })?;
        profiles_in_force(&list, &installed)
    }
}

/// Checks that each of `installed` is in `list` (the kernel's `profiles` file: `name (mode)`
/// per line) in enforce mode; names at most three that are not, and counts the rest.
fn profiles_in_force(list: &str, installed: &[String]) -> Result<(), String> {
    let loaded: BTreeMap<&str, &str> = list
        .lines()
        .filter_map(|l| l.rsplit_once(" ("))
        .map(|(name, mode)| (name, mode.trim_end_matches(')')))
        .collect();
    let wrong: Vec<String> = installed
        .iter()
        .filter_map(|name| match loaded.get(name.as_str()) {
            Some(&"enforce") => None,
            Some(mode) => Some(format!("{name} is in {mode} mode")),
            None => Some(format!("{name} is not loaded")),
        })
        .collect();
    if wrong.is_empty() {
        return Ok(());
    }
    let mut named = wrong.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if wrong.len() > 3 {
        named.push_str(&format!(" and {} more", wrong.len() - 3));
    }
    Err(format!(
        "{NAME}: {} of the {} profiles armor applied are not in force ({named}): their \
         workloads are not confined",
        wrong.len(),
        installed.len()
    ))
}

/// Builds the AppArmor enforcer for a runtime's list of enforcers (choice `apparmor`): the
/// trial is [`AppArmor::probe`] (the kernel's policy interface and a profile compiled by
/// `apparmor_parser`); the built enforcer reads denials from the audit socket, else the kernel
/// log, and says so in a note when neither can be opened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Factory {
    /// Where profiles are written (created on first use; armor only touches files it wrote).
    pub dir: PathBuf,
}

impl Factory {
    /// A factory writing profiles to `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

impl EnforcerFactory for Factory {
    fn choice(&self) -> &'static str {
        "apparmor"
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn build(&self) -> Result<Built, String> {
        let aa = AppArmor::new(&self.dir);
        if let Support::Unsupported { reason } = aa.probe() {
            return Err(reason);
        }
        let reader = aa.start_alerts();
        let mut built = Built::new(Arc::new(aa));
        match reader {
            Ok(r) => built.keep_alive.push(Box::new(r)),
            Err(e) => built.notes.push(format!(
                "AppArmor denials are not reported: {}",
                armor_core::diag::error_chain(&e)
            )),
        }
        Ok(built)
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

    /// Finding 8 of issue 16: `check` wrote the profile to
    /// `$TMPDIR/armor-aa-check-<pid>/p<hash of the text>` with `fs::write`, so whoever made that
    /// path first (a symlink to a file of their choice) chose which file root overwrote. Now
    /// nothing is written: the profile goes to the parser's standard input.
    #[test]
    fn health_names_profiles_unloaded_or_in_complain_mode() {
        let names: Vec<String> = (1..=5).map(|i| format!("armor.w{i}")).collect();
        let all = "armor.w1 (enforce)\narmor.w2 (enforce)\narmor.w2//helper (enforce)\n\
                   armor.w3 (enforce)\narmor.w4 (enforce)\narmor.w5 (enforce)\n\
                   unrelated (complain)\n";
        assert_eq!(profiles_in_force(all, &names), Ok(()));
        let e = profiles_in_force(
            "armor.w1 (complain)\narmor.w3 (enforce)\narmor.w5 (kill)\n",
            &names,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "AppArmor: 4 of the 5 profiles armor applied are not in force (armor.w1 is in \
             complain mode, armor.w2 is not loaded, armor.w4 is not loaded and 1 more): their \
             workloads are not confined"
        );

        // Through the enforcer: nothing applied is healthy without reading anything; a
        // securityfs that cannot be read is a fault once profiles are installed.
        let base = scratch("health");
        let aa = AppArmor::with_parser(base.join("profiles"), "/nonexistent/apparmor_parser")
            .with_securityfs(base.join("fs"));
        assert_eq!(Enforcer::health(&aa), Ok(()));
        aa.installed
            .lock()
            .insert("w1".to_owned(), "armor.w1".to_owned());
        let e = Enforcer::health(&aa).unwrap_err();
        assert!(
            e.contains("cannot read") && e.contains("fs/profiles"),
            "{e}"
        );
        std::fs::create_dir_all(base.join("fs")).unwrap();
        std::fs::write(base.join("fs/profiles"), "armor.w1 (enforce)\n").unwrap();
        assert_eq!(Enforcer::health(&aa), Ok(()));
    }

    #[test]
    fn check_writes_no_file() {
        let base = scratch("check-trap");
        let text = "profile x {\n}\n";
        // The file the old code wrote, planted as a link to a file that must not change.
        let fnv = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let trap = std::env::temp_dir().join(format!("armor-aa-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&trap);
        std::fs::create_dir_all(&trap).unwrap();
        let victim = base.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, trap.join(format!("p{fnv:x}"))).unwrap();
        // A parser that reads its input and succeeds.
        let parser = base.join("parser");
        std::fs::write(&parser, "#!/bin/sh\ncat > /dev/null\n").unwrap();
        std::fs::set_permissions(&parser, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let aa = AppArmor::with_parser(base.join("profiles"), &parser);
        let checked = aa.check(text);
        let after = std::fs::read_to_string(&victim).unwrap();
        let _ = std::fs::remove_dir_all(&trap);
        checked.unwrap();
        assert_eq!(after, "precious", "check wrote through the planted link");
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// The parser's verdict and message come back from its standard input.
    #[test]
    fn check_reports_the_parsers_error() {
        let base = scratch("check-error");
        let parser = base.join("parser");
        std::fs::write(
            &parser,
            "#!/bin/sh\ngrep -q broken && { echo 'AppArmor parser error at line 2' >&2; exit 1; }\nexit 0\n",
        )
        .unwrap();
        std::fs::set_permissions(&parser, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let aa = AppArmor::with_parser(base.join("profiles"), &parser);
        aa.check("profile fine {\n}\n").unwrap();
        let e = aa.check("profile x {\n broken\n}\n").unwrap_err();
        assert!(
            matches!(&e, ApplyError::Tool { stderr, .. } if stderr.contains("line 2")),
            "{e:?}"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// `apply` wrote its temporary file with `fs::write`, which follows a symlink someone left
    /// at that name; and it used a profile directory anyone could write into.
    #[test]
    fn apply_writes_only_files_it_creates_in_a_private_directory() {
        use std::os::unix::fs::PermissionsExt as _;
        let base = scratch("apply-trap");
        let profiles = base.join("profiles");
        std::fs::create_dir_all(&profiles).unwrap();
        std::fs::set_permissions(&profiles, std::fs::Permissions::from_mode(0o755)).unwrap();
        let victim = base.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let key = WorkloadKey::new("shop/web");
        let name = profile_name(&key);
        std::os::unix::fs::symlink(&victim, profiles.join(format!(".{name}.new"))).unwrap();
        // A parser that refuses to load: the apply fails after writing its temporary file.
        let aa = AppArmor::with_parser(&profiles, "/bin/false");
        let empty = armor_core::CompiledPolicy::build(&armor_core::PolicySet::new()).unwrap();
        let w = armor_core::Workload::Container(armor_core::Container::new("shop", "web"));
        let artifact = compile(&key, &empty.rule_set(&w, armor_core::Posture::default()));
        let dest = Destination::new(key.clone());
        let e = aa.apply(&dest, &artifact).unwrap_err();
        assert!(matches!(e, ApplyError::Tool { .. }), "{e:?}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!profiles.join(format!(".{name}.new")).exists());

        // A directory of ours that others can write into loses that; one of another user is
        // refused.
        std::fs::set_permissions(&profiles, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = aa.apply(&dest, &artifact).unwrap_err();
        assert!(matches!(e, ApplyError::Tool { .. }), "{e:?}");
        let mode = std::fs::metadata(&profiles).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&profiles, Some(65534), None).unwrap();
            let e = aa.apply(&dest, &artifact).unwrap_err();
            assert!(
                armor_core::diag::error_chain(&e).contains("writable by no one else"),
                "{e:?}"
            );
        }
        std::fs::remove_dir_all(&base).unwrap();
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
