//! Unit tests of the parts that need no kernel: inode resolution inside a root.

#![allow(clippy::unwrap_used, reason = "test code")]
use super::*;
use std::os::unix::fs::MetadataExt as _;

#[test]
fn inode_resolution() {
    let dir = std::env::temp_dir().join(format!("armor-inode-{}", std::process::id()));
    let m = mounts(&dir);
    assert!(!m.is_empty());
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/shadow"), b"x").unwrap();
    let (dev, ino) = resolve_inode(&dir, &m, "/etc/shadow").unwrap();
    assert_eq!(
        ino,
        std::fs::metadata(dir.join("etc/shadow")).unwrap().ino()
    );
    assert_ne!(dev, 0);
    assert!(resolve_inode(&dir, &m, "/etc/missing").is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 16, finding 3: a rule path is resolved inside the workload's tree. Before,
/// `canonicalize` followed an absolute symlink (and `/proc/PID/root` itself) to this
/// process's own files, so the rule's (device, inode) entry named a host file.
#[test]
fn inode_targets_resolve_inside_the_workload_root() {
    let dir = std::env::temp_dir().join(format!("armor-inode-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(dir.join("etc/passwd"), b"the workload's own\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("app/abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../etc/passwd", dir.join("app/up")).unwrap();
    let m = mounts(&dir);
    let own = std::fs::metadata(dir.join("etc/passwd")).unwrap().ino();
    let host = std::fs::metadata("/etc/passwd").unwrap().ino();
    assert_ne!(own, host);
    // `..` stays inside the root.
    let (_, ino) = resolve_inode(&dir, &m, "/app/../../../etc/passwd").unwrap();
    assert_eq!(ino, own);
    // A symlink as the last component names the link itself, never its target (the
    // engine never matches a rule on a link), let alone a host file.
    for link in ["/app/abs", "/app/up"] {
        let (_, ino) = resolve_inode(&dir, &m, link).unwrap();
        let own_link = std::fs::symlink_metadata(dir.join(link.trim_start_matches('/')))
            .unwrap()
            .ino();
        assert_eq!(ino, own_link, "{link}");
    }
    // A symlinked directory on the way is followed inside the root (merged /usr).
    std::os::unix::fs::symlink("etc", dir.join("cfg")).unwrap();
    let (_, ino) = resolve_inode(&dir, &m, "/cfg/passwd").unwrap();
    assert_eq!(ino, own);
    let (dev, _) = resolve_inode(&dir, &m, "/etc/passwd").unwrap();
    assert!(m.iter().any(|mount| mount.dev == dev));
    std::fs::remove_dir_all(&dir).unwrap();
}
