//! Making syscall path arguments absolute and canonical, in user space.
//!
//! The kernel record carries the path string exactly as the caller passed it. This module turns
//! it into the absolute, normalised path the policy engine expects:
//!
//! * relative paths are joined to the caller's working directory (as the process tree follows it
//!   through `chdir`/`fchdir` events, else `readlink /proc/PID/cwd`) or,
//!   for `*at` calls with a directory fd, to that directory (`readlink /proc/PID/fd/N`);
//! * `.` and `..` components and repeated `/` are removed lexically.
//!
//! **Best effort**, and said so in every place that uses it:
//!
//! * `/proc` is read when the event is processed, not when the call ran: a process that has
//!   exited, changed directory or closed the fd since then yields the path as passed (relative)
//!   or a wrong base. Absolute paths are never affected.
//! * Symbolic links are **not** resolved (the kernel resolves them during the call; doing it
//!   afterwards would read a file system that may have changed, and inside a container would
//!   need its mount namespace). A rule on the link target does not match an open through a link
//!   in these events; enforcement in the kernel (BPF-LSM) sees the resolved path.
//! * For processes in containers `/proc/PID/cwd` shows the path inside the container's mount
//!   namespace, which is what container policies name.

use std::fs;

/// `AT_FDCWD`.
pub const AT_FDCWD: i32 = -100;

/// Lexically normalises an absolute path: no `.`, no `..` (above `/` stays `/`), no repeated or
/// trailing `/`. A relative input is normalised the same way and stays relative.
pub fn normalize(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// Joins `path` to `base` (when relative) and normalises.
pub fn join(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        normalize(path)
    } else if path.is_empty() {
        normalize(base)
    } else {
        normalize(&format!("{base}/{path}"))
    }
}

/// Makes `path`, passed by process `pid` with directory fd `dirfd`, absolute (see the module
/// docs for what is best effort). Returns the normalised input when the base is unknown.
pub fn resolve(pid: u32, dirfd: i32, path: &str) -> String {
    resolve_with_cwd(pid, dirfd, path, None)
}

/// Like [`resolve`], with the caller's working directory when it is known (the process tree
/// follows `chdir`, so this works after the process has exited).
pub fn resolve_with_cwd(pid: u32, dirfd: i32, path: &str, cwd: Option<&str>) -> String {
    if path.starts_with('/') {
        return normalize(path);
    }
    if dirfd == AT_FDCWD
        && let Some(cwd) = cwd.filter(|c| c.starts_with('/'))
    {
        return join(cwd, path);
    }
    let link = if dirfd == AT_FDCWD {
        format!("/proc/{pid}/cwd")
    } else {
        format!("/proc/{pid}/fd/{dirfd}")
    };
    match fs::read_link(&link) {
        Ok(base) => join(&base.to_string_lossy(), path),
        Err(_) => normalize(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        assert_eq!(normalize("/a/./b//c/../d/"), "/a/b/d");
        assert_eq!(normalize("/../.."), "/");
        assert_eq!(normalize("a/../../b"), "../b");
        assert_eq!(join("/home/u", "../etc/passwd"), "/home/etc/passwd");
        assert_eq!(join("/home/u", "/etc/./x"), "/etc/x");
        assert_eq!(join("/tmp", ""), "/tmp");
    }

    #[test]
    fn resolves_against_our_cwd_and_dirfd() {
        use std::os::fd::AsRawFd as _;
        let me = std::process::id();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            resolve(me, AT_FDCWD, "x/../y"),
            format!("{}/y", cwd.display())
        );
        let dir = std::fs::File::open("/usr").unwrap();
        assert_eq!(resolve(me, dir.as_raw_fd(), "bin/./ls"), "/usr/bin/ls");
        // No such process: the path stays as passed, normalised.
        assert_eq!(resolve(u32::MAX, AT_FDCWD, "./a"), "a");
    }
}
