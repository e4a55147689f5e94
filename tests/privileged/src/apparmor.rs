//! Loading AppArmor profiles with `apparmor_parser` for a test.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{Error, Result, Unsupported, lsm};

const APPARMOR_FS: &str = "/sys/kernel/security/apparmor";

/// Probes for an active AppArmor: it must be in the LSM list and expose its securityfs
/// interface; the reason names what is missing.
pub fn probe() -> Result<()> {
    let (active, list) = lsm::is_active("apparmor")?;
    if !active {
        return Err(Error::Unsupported(Unsupported::new(format!(
            "AppArmor is not active: {} is `{list}`",
            lsm::LSM_FILE
        ))));
    }
    if !Path::new(APPARMOR_FS).join(".replace").exists() {
        return Err(Error::Unsupported(Unsupported::new(format!(
            "AppArmor is listed but {APPARMOR_FS}/.replace is missing"
        ))));
    }
    Ok(())
}

/// A profile loaded into the kernel; removed on drop.
#[derive(Debug)]
pub struct LoadedProfile {
    name: String,
}

impl LoadedProfile {
    /// Compiles and loads (`apparmor_parser --replace`) the profile text, whose profile name
    /// must be `name`.
    pub fn load(name: &str, text: &str) -> Result<Self> {
        let mut child = Command::new("apparmor_parser")
            .args(["--replace", "--skip-cache", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::syscall("spawn", "apparmor_parser", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(text.as_bytes())
                .map_err(|e| Error::syscall("write", "apparmor_parser stdin", e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::syscall("wait", "apparmor_parser", e))?;
        if !out.status.success() {
            return Err(Error::Tool {
                tool: "apparmor_parser".to_owned(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let loaded = Self {
            name: name.to_owned(),
        };
        if !loaded.is_loaded()? {
            return Err(Error::NotFound(format!(
                "profile `{name}` in {APPARMOR_FS}/profiles after loading"
            )));
        }
        Ok(loaded)
    }

    /// The profile name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the kernel lists the profile (`<name> (enforce)` in `profiles`).
    pub fn is_loaded(&self) -> Result<bool> {
        let file = Path::new(APPARMOR_FS).join("profiles");
        let text = fs::read_to_string(&file).map_err(|e| Error::syscall("read", &file, e))?;
        Ok(text
            .lines()
            .any(|l| l.strip_prefix(self.name.as_str()) == Some(" (enforce)")))
    }
}

impl Drop for LoadedProfile {
    fn drop(&mut self) {
        let _ignored = fs::write(Path::new(APPARMOR_FS).join(".remove"), &self.name);
    }
}
