//! Scratch directories and files on the filesystems enforcement must handle: tmpfs, overlayfs
//! (container root filesystems) and 9p (the guest's root). Mounts are undone on drop.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::mount::{MntFlags, MsFlags};

use crate::{Error, Result, Unsupported};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One line of `/proc/self/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MountEntry {
    /// The mounted source (`tmpfs`, a device, a 9p tag).
    pub source: String,
    /// The mount point.
    pub target: PathBuf,
    /// The filesystem type (`tmpfs`, `overlay`, `9p`, `cgroup2`, …).
    pub fstype: String,
    /// The mount options.
    pub options: Vec<String>,
}

/// The current mount table (`/proc/self/mounts`), in mount order.
pub fn mounts() -> Result<Vec<MountEntry>> {
    let text = fs::read_to_string("/proc/self/mounts")
        .map_err(|e| Error::syscall("read", "/proc/self/mounts", e))?;
    Ok(parse_mounts(&text))
}

/// Parses the format of `/proc/self/mounts` (octal escapes such as `\040` are decoded).
pub fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            let source = unescape(f.next()?);
            let target = PathBuf::from(unescape(f.next()?));
            let fstype = f.next()?.to_owned();
            let options = f.next()?.split(',').map(str::to_owned).collect();
            Some(MountEntry {
                source,
                target,
                fstype,
                options,
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(rest.get(..i).unwrap_or_default());
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = rest.get(i + 4..).unwrap_or_default();
            }
            None => {
                out.push('\\');
                rest = rest.get(i + 1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

/// The mount that holds `path` (the longest mount point that is a prefix of it; later mounts
/// win over earlier ones at the same point).
pub fn mount_of(path: &Path) -> Result<MountEntry> {
    let path = fs::canonicalize(path).map_err(|e| Error::syscall("canonicalize", path, e))?;
    mounts()?
        .into_iter()
        .filter(|m| path.starts_with(&m.target))
        .max_by_key(|m| m.target.as_os_str().len())
        .ok_or_else(|| Error::NotFound(format!("mount of `{}`", path.display())))
}

/// A fresh empty directory, removed (recursively) on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<parent>/armor-<tag>-<pid>-<n>` with mode 0755.
    pub fn new_in(parent: &Path, tag: &str) -> Result<Self> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("armor-{tag}-{}-{n}", std::process::id()));
        fs::create_dir(&path).map_err(|e| Error::syscall("mkdir", &path, e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::syscall("chmod", &path, e))?;
        Ok(Self { path })
    }

    /// Creates a scratch directory under the system temporary directory.
    pub fn new(tag: &str) -> Result<Self> {
        Self::new_in(&std::env::temp_dir(), tag)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` inside the directory with permission bits `mode`.
    pub fn create_file(&self, name: &str, contents: &[u8], mode: u32) -> Result<PathBuf> {
        create_file(&self.path, name, contents, mode)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ignored = fs::remove_dir_all(&self.path);
    }
}

fn create_file(dir: &Path, name: &str, contents: &[u8], mode: u32) -> Result<PathBuf> {
    let path = dir.join(name);
    fs::write(&path, contents).map_err(|e| Error::syscall("write", &path, e))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::syscall("chmod", &path, e))?;
    Ok(path)
}

fn mount(source: &str, target: &Path, fstype: &str, data: &str) -> Result<()> {
    nix::mount::mount(
        Some(source),
        target,
        Some(fstype),
        MsFlags::empty(),
        Some(data),
    )
    .map_err(|e| Error::syscall("mount", target, e.into()))
}

fn unmount(target: &Path) {
    let _ignored = nix::mount::umount2(target, MntFlags::MNT_DETACH);
}

/// A private tmpfs mounted on a scratch directory.
#[derive(Debug)]
pub struct Tmpfs {
    dir: ScratchDir,
}

impl Tmpfs {
    /// Mounts a new tmpfs (extra mount `options`, e.g. an SELinux `context=`, may be empty).
    pub fn mount(options: &str) -> Result<Self> {
        let dir = ScratchDir::new("tmpfs")?;
        let data = if options.is_empty() {
            "mode=0755".to_owned()
        } else {
            format!("mode=0755,{options}")
        };
        mount("armor-tmpfs", dir.path(), "tmpfs", &data)?;
        Ok(Self { dir })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file on the tmpfs.
    pub fn create_file(&self, name: &str, contents: &[u8], mode: u32) -> Result<PathBuf> {
        create_file(self.path(), name, contents, mode)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount(self.dir.path());
    }
}

/// An overlayfs, as a container runtime builds one: a lower and an upper layer on a private
/// tmpfs, merged at [`Overlay::path`].
#[derive(Debug)]
pub struct Overlay {
    layers: Tmpfs,
    merged: PathBuf,
}

impl Overlay {
    /// Mounts the overlay; `lower_files` are `(name, contents)` written to the lower layer first.
    pub fn mount(lower_files: &[(&str, &[u8])]) -> Result<Self> {
        let layers = Tmpfs::mount("")?;
        let base = layers.path().to_owned();
        for d in ["lower", "upper", "work", "merged"] {
            let p = base.join(d);
            fs::create_dir(&p).map_err(|e| Error::syscall("mkdir", &p, e))?;
        }
        for (name, contents) in lower_files {
            create_file(&base.join("lower"), name, contents, 0o644)?;
        }
        let merged = base.join("merged");
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            base.join("lower").display(),
            base.join("upper").display(),
            base.join("work").display()
        );
        mount("armor-overlay", &merged, "overlay", &data)?;
        Ok(Self { layers, merged })
    }

    /// The merged directory.
    pub fn path(&self) -> &Path {
        &self.merged
    }

    /// Writes a file through the overlay (it lands in the upper layer).
    pub fn create_file(&self, name: &str, contents: &[u8], mode: u32) -> Result<PathBuf> {
        create_file(&self.merged, name, contents, mode)
    }

    /// The lower layer's directory (files there appear in the merged view).
    pub fn lower(&self) -> PathBuf {
        self.layers.path().join("lower")
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        unmount(&self.merged);
    }
}

/// A scratch directory on a writable 9p mount (in the guest: the run directory the runner
/// shares). Outside the guest there is usually none: the probe reports the mount table's
/// filesystem types as the reason.
pub fn scratch_9p() -> Result<ScratchDir> {
    let all = mounts()?;
    let writable = all
        .iter()
        .find(|m| m.fstype == "9p" && m.options.iter().any(|o| o == "rw"));
    match writable {
        Some(m) => ScratchDir::new_in(&m.target, "9p"),
        None => {
            let mut types: Vec<&str> = all.iter().map(|m| m.fstype.as_str()).collect();
            types.sort_unstable();
            types.dedup();
            Err(Error::Unsupported(Unsupported::new(format!(
                "no writable 9p mount in /proc/self/mounts (filesystem types: {})",
                types.join(" ")
            ))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_lines_with_escapes() {
        let m = parse_mounts(
            "overlay / overlay rw,relatime,lowerdir=/lower 0 0\nresults /a\\040b 9p rw,sync 0 0\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].target, Path::new("/a b"));
        assert_eq!(m[1].fstype, "9p");
        assert_eq!(m[0].options, ["rw", "relatime", "lowerdir=/lower"]);
        assert_eq!(unescape("a\\\\b\\0"), "a\\\\b\\0");
    }
}
