//! The mount table seen from a workload's root, and resolving a rule's path to the
//! (device, inode) the hooks see.

use super::*;

/// A mount of a `mountinfo` file: its id and the kernel's device number of its super block
/// (`(major << 20) | minor`, as the hooks see it; `stat()` reports another device on overlayfs).
pub(super) struct Mount {
    pub(super) id: u64,
    pub(super) dev: u32,
}

/// The mounts a path under `root` can lie on: those of this process's mount namespace and,
/// for `/proc/PID/root`, those of that process's.
pub(super) fn mounts(root: &Path) -> Vec<Mount> {
    let mut files = vec![PathBuf::from("/proc/self/mountinfo")];
    if let Ok(rest) = root.strip_prefix("/proc")
        && rest.ends_with("root")
        && let Some(pid) = rest.parent()
    {
        files.push(Path::new("/proc").join(pid).join("mountinfo"));
    }
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        out.extend(text.lines().filter_map(|l| {
            let mut f = l.split(' ');
            let (id, _, devs) = (f.next()?, f.next()?, f.next()?);
            let (maj, min) = devs.split_once(':')?;
            let maj: u32 = maj.parse().ok()?;
            let min: u32 = min.parse().ok()?;
            Some(Mount {
                id: id.parse().ok()?,
                dev: (maj << 20) | min,
            })
        }));
    }
    out
}

/// The (kernel device, inode) of `path` as the workload whose root is `root` sees it.
///
/// The path is resolved inside `root` (`openat2` with `RESOLVE_IN_ROOT`), never through this
/// process's files: a `..` or an absolute symlink stays in the workload's tree (before, an
/// absolute symlink in an image led to a host file). Symlinks on the way are followed inside
/// the tree (`/bin/sudo` where `/bin` links to `usr/bin`); a symlink as the last component is
/// not (`O_NOFOLLOW`): the entry names the link itself, which no open or exec reaches (the
/// kernel decides the target), as a rule on a link never matches in the engine. The device is that of the mount the file was found on (its id from
/// `/proc/self/fdinfo`, its super block's device from `mountinfo`). `None` when the file does
/// not exist (or the kernel has no `openat2`, before 5.6): the path is still matched by name.
pub(super) fn resolve_inode(root: &Path, mounts: &[Mount], path: &str) -> Option<(u32, u64)> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    use std::os::fd::AsRawFd as _;
    let dir = std::fs::File::open(root).ok()?;
    let rel = path.trim_start_matches('/');
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(&dir, if rel.is_empty() { "." } else { rel }, how).ok()?;
    let ino = nix::sys::stat::fstat(&fd).ok()?.st_ino;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    let mnt_id: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))?
        .trim()
        .parse()
        .ok()?;
    let dev = mounts.iter().find(|m| m.id == mnt_id)?.dev;
    Some((dev, ino))
}
