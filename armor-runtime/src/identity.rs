//! Container identity from cgroup paths, `/proc/PID/cgroup` and namespaces.
//!
//! The kernel knows a task's cgroup and namespaces, not its container. The cgroup path that
//! container runtimes create names the container:
//!
//! | runtime | cgroup path (last components) |
//! |---|---|
//! | containerd (cgroupfs) | `/k8s.io/<id>`, `/kubepods/<qos>/pod<uid>/<id>` |
//! | containerd (systemd) | `…/kubepods-<qos>-pod<uid>.slice/cri-containerd-<id>.scope` |
//! | Docker | `/docker/<id>`, `/system.slice/docker-<id>.scope` |
//! | CRI-O | `…/crio-<id>.scope` |
//! | podman | `/libpod_parent/libpod-<id>`, `…/libpod-<id>.scope` |
//! | systemd service | `/system.slice/<name>.service` |
//!
//! The other way round, [`find_units`] finds the cgroups of the systemd services a service
//! inventory lists ([`armor_core::inventory`]) by walking the cgroup2 mount for directories named
//! like the units, without asking systemd.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Who created a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Runtime {
    /// containerd (directly or through the CRI).
    Containerd,
    /// Docker (moby).
    Docker,
    /// CRI-O.
    CriO,
    /// podman.
    Podman,
    /// A systemd service (not a container).
    Systemd,
}

/// What a cgroup path says about its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CgroupOwner {
    /// The runtime.
    pub runtime: Runtime,
    /// The container id (64 hex digits), or the unit name for systemd services.
    pub id: String,
    /// The pod uid, for Kubernetes paths.
    pub pod_uid: Option<String>,
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn strip_scope(s: &str) -> &str {
    s.strip_suffix(".scope").unwrap_or(s)
}

/// The pod uid in `pod<uid>` or `kubepods-<qos>-pod<uid_with_underscores>.slice`.
fn pod_uid(component: &str) -> Option<String> {
    let c = component.strip_suffix(".slice").unwrap_or(component);
    let uid = c
        .rsplit_once("-pod")
        .map(|(_, u)| u)
        .or_else(|| c.strip_prefix("pod"))?;
    (!uid.is_empty()).then(|| uid.replace('_', "-"))
}

/// Parses a cgroup path (as in `/proc/PID/cgroup`).
pub fn parse_cgroup_path(path: &str) -> Option<CgroupOwner> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let pod = parts.iter().rev().find_map(|p| {
        (p.starts_with("pod") || p.contains("-pod"))
            .then(|| pod_uid(p))
            .flatten()
    });
    let kube = parts.iter().any(|p| p.starts_with("kubepods"));
    let (last, parent) = match parts.as_slice() {
        [] => return None,
        [.., parent, last] => (*last, Some(*parent)),
        [last] => (*last, None),
    };
    let owner = |runtime, id: &str| {
        Some(CgroupOwner {
            runtime,
            id: id.to_string(),
            pod_uid: if kube { pod.clone() } else { None },
        })
    };
    let bare = strip_scope(last);
    for (prefix, runtime) in [
        ("cri-containerd-", Runtime::Containerd),
        ("docker-", Runtime::Docker),
        ("crio-", Runtime::CriO),
        ("libpod-", Runtime::Podman),
    ] {
        if let Some(id) = bare.strip_prefix(prefix)
            && is_container_id(id)
        {
            return owner(runtime, id);
        }
    }
    if is_container_id(last) {
        let runtime = match parent {
            Some("docker") => Runtime::Docker,
            Some(p) if p.starts_with("libpod") => Runtime::Podman,
            // `k8s.io/<id>`, `moby`-less containerd namespaces and cgroupfs kubepods paths.
            _ => Runtime::Containerd,
        };
        return owner(runtime, last);
    }
    if last.ends_with(".service") {
        return owner(Runtime::Systemd, last);
    }
    None
}

/// The cgroup v2 path in the text of `/proc/PID/cgroup` (the `0::` line), else the path of the
/// `name=systemd` v1 hierarchy, else of the first line.
pub fn parse_proc_cgroup(text: &str) -> Option<String> {
    let lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let _id = f.next()?;
            Some((f.next()?, f.next()?))
        })
        .collect();
    lines
        .iter()
        .find(|(ctl, p)| ctl.is_empty() && *p != "/")
        .or_else(|| lines.iter().find(|(ctl, _)| *ctl == "name=systemd"))
        .or_else(|| lines.iter().find(|(_, p)| *p != "/"))
        .or_else(|| lines.first())
        .map(|(_, p)| (*p).to_string())
}

/// The cgroup path of process `pid`.
pub fn proc_cgroup(pid: u32) -> Result<String> {
    let file = format!("/proc/{pid}/cgroup");
    let text = fs::read_to_string(&file).map_err(|source| Error::io("read", &file, source))?;
    parse_proc_cgroup(&text).ok_or(Error::Parse {
        what: "/proc/PID/cgroup",
        input: text,
    })
}

/// Checks that process `pid` is in the cgroup of container `id`: the last component of its
/// cgroup path is the container's, exactly `<id>` (cgroupfs: `/default/<id>`) or
/// `<prefix>-<id>.scope` (systemd: `cri-containerd-<id>.scope`, `libpod-<id>.scope`):
/// runc, containerd and podman name a container's cgroup after its id.
/// `Err` says where the process is instead. What the OCI hook sends is checked so: a client
/// cannot bind a container's rules to another process's cgroup.
pub fn pid_in_container(pid: u32, id: &str) -> std::result::Result<(), String> {
    let path = proc_cgroup(pid).map_err(|e| armor_core::diag::error_chain(&e))?;
    let last = path.rsplit('/').next().unwrap_or("");
    let scope = last
        .strip_suffix(".scope")
        .and_then(|b| b.strip_suffix(id))
        .is_some_and(|prefix| prefix.ends_with('-'));
    if !id.is_empty() && (last == id || scope) {
        Ok(())
    } else {
        Err(format!(
            "process {pid} is in cgroup {path}, not in container {id}'s"
        ))
    }
}

/// The cgroup2 mount point, from `/proc/self/mounts`.
pub fn cgroup2_root() -> Result<PathBuf> {
    let text = fs::read_to_string("/proc/self/mounts")
        .map_err(|source| Error::io("read", "/proc/self/mounts", source))?;
    text.lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let _dev = f.next()?;
            let target = f.next()?;
            (f.next()? == "cgroup2").then(|| PathBuf::from(target))
        })
        .ok_or(Error::Parse {
            what: "/proc/self/mounts (no cgroup2 mount)",
            input: String::new(),
        })
}

/// The cgroup id (inode of the cgroup2 directory) of the cgroup at `path` (as in
/// `/proc/PID/cgroup`) under the cgroup2 mount `root`.
pub fn cgroup_id(root: &Path, path: &str) -> Result<u64> {
    let dir = root.join(path.trim_start_matches('/'));
    fs::metadata(&dir)
        .map(|m| m.ino())
        .map_err(|source| Error::io("stat", &dir.display().to_string(), source))
}

/// How deep [`find_units`] looks below the cgroup2 root: deep enough for system services
/// (`system.slice/nginx.service`, depth 2), services in nested slices and per-user services
/// (`user.slice/user-1000.slice/user@1000.service/app.slice/foo.service`, depth 5).
pub const UNIT_SEARCH_DEPTH: usize = 6;

/// A systemd unit's cgroup found by [`find_units`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnitCgroup {
    /// The cgroup path relative to the root, as in `/proc/PID/cgroup` (`/system.slice/nginx.service`).
    pub path: String,
    /// The cgroup id (the directory's inode).
    pub cgroup_id: u64,
}

/// The cgroups of the systemd `units` (`nginx.service`) under the cgroup2 mount `root`: for each
/// unit, the directory named exactly like it, at most `max_depth` levels below `root`
/// ([`UNIT_SEARCH_DEPTH`] for the agent). The search goes breadth first, each directory's entries
/// in name order, so when two directories carry the name (a system and a user unit), the
/// shallower one wins, and on a tie the first in name order. It does not descend into a unit's
/// cgroup (cgroups below a unit are the unit's own), follows no symlinks, and skips directories it
/// cannot read. Units without a cgroup (not running) are absent from the result.
pub fn find_units(
    root: &Path,
    units: &[&str],
    max_depth: usize,
) -> std::collections::BTreeMap<String, UnitCgroup> {
    let mut found = std::collections::BTreeMap::new();
    if units.is_empty() {
        return found;
    }
    let mut level: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    for _ in 0..max_depth {
        let mut next = Vec::new();
        for (dir, rel) in &level {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            let mut subdirs: Vec<(String, PathBuf)> = entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                .collect();
            subdirs.sort();
            for (name, path) in subdirs {
                let child = format!("{rel}/{name}");
                if units.contains(&name.as_str()) {
                    if !found.contains_key(&name)
                        && let Ok(m) = fs::symlink_metadata(&path)
                    {
                        found.insert(
                            name,
                            UnitCgroup {
                                path: child,
                                cgroup_id: m.ino(),
                            },
                        );
                    }
                    continue;
                }
                next.push((path, child));
            }
        }
        if found.len() == units.len() || next.is_empty() {
            break;
        }
        level = next;
    }
    found
}

/// The cgroups below the cgroup at `path` (as in `/proc/PID/cgroup`) under the cgroup2 mount
/// `root`, at most `max_depth` levels down, breadth first and in name order; paths relative to
/// `root`. A unit that manages its own cgroups (`Delegate=`) runs processes in them.
pub fn cgroups_below(root: &Path, path: &str, max_depth: usize) -> Vec<UnitCgroup> {
    let mut out = Vec::new();
    let mut level: Vec<(PathBuf, String)> = vec![(
        root.join(path.trim_start_matches('/')),
        path.trim_end_matches('/').to_string(),
    )];
    for _ in 0..max_depth {
        let mut next = Vec::new();
        for (dir, rel) in &level {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            let mut subdirs: Vec<(String, PathBuf, u64)> = entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| {
                    let ino = fs::symlink_metadata(e.path()).ok()?.ino();
                    Some((e.file_name().into_string().ok()?, e.path(), ino))
                })
                .collect();
            subdirs.sort();
            for (name, child, cgroup_id) in subdirs {
                let rel = format!("{rel}/{name}");
                out.push(UnitCgroup {
                    path: rel.clone(),
                    cgroup_id,
                });
                next.push((child, rel));
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    out
}

/// The pid and mount namespace inodes of process `pid`.
pub fn namespaces(pid: u32) -> Result<(u32, u32)> {
    let read = |ns: &str| -> Result<u32> {
        let file = format!("/proc/{pid}/ns/{ns}");
        let link = fs::read_link(&file).map_err(|source| Error::io("readlink", &file, source))?;
        let text = link.to_string_lossy().into_owned();
        text.strip_prefix(&format!("{ns}:["))
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|n| n.parse().ok())
            .ok_or(Error::Parse {
                what: "namespace link",
                input: text,
            })
    };
    Ok((read("pid")?, read("mnt")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "775fb27125ee8d9e2f34d6731fbf3bf677a1038f79fe8134856337612007d9ae";

    /// A process is in a container's cgroup when its cgroup's last component names the
    /// container: this test's own cgroup names itself, not another id.
    #[test]
    fn a_pid_is_checked_against_the_containers_cgroup() {
        let me = std::process::id();
        let e = pid_in_container(me, ID).unwrap_err();
        assert!(e.contains(&format!("not in container {ID}'s")), "{e}");
        assert!(pid_in_container(me, "").is_err());
        let own = proc_cgroup(me).unwrap();
        match own.rsplit('/').next().filter(|l| !l.is_empty()) {
            Some(last) => {
                // Its whole name, or the id inside `<prefix>-<id>.scope`; never a part.
                let id = last
                    .strip_suffix(".scope")
                    .and_then(|b| b.rsplit_once('-').map(|(_, id)| id))
                    .unwrap_or(last);
                assert_eq!(pid_in_container(me, id), Ok(()));
                if id.len() > 1 {
                    assert!(pid_in_container(me, &id[1..]).is_err(), "a part of {id}");
                }
            }
            None => println!("the test runs in the root cgroup: no name to check against"),
        }
        assert!(
            pid_in_container(u32::MAX, ID)
                .unwrap_err()
                .contains("/proc/")
        );
    }

    fn owner(path: &str) -> (Runtime, String, Option<String>) {
        let o = parse_cgroup_path(path).unwrap_or_else(|| panic!("{path}"));
        (o.runtime, o.id, o.pod_uid)
    }

    #[test]
    fn container_runtimes() {
        let c = Runtime::Containerd;
        assert_eq!(owner(&format!("/k8s.io/{ID}")), (c, ID.into(), None));
        assert_eq!(
            owner(&format!(
                "/kubepods/besteffort/pod0d4b5a8c-3b1e-4f7a-9d55-0e2c8f6a1b2c/{ID}"
            )),
            (
                c,
                ID.into(),
                Some("0d4b5a8c-3b1e-4f7a-9d55-0e2c8f6a1b2c".into())
            )
        );
        assert_eq!(
            owner(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0d4b5a8c_3b1e_4f7a_9d55_0e2c8f6a1b2c.slice/cri-containerd-{ID}.scope"
            )),
            (
                c,
                ID.into(),
                Some("0d4b5a8c-3b1e-4f7a-9d55-0e2c8f6a1b2c".into())
            )
        );
        assert_eq!(
            owner(&format!("/system.slice/docker-{ID}.scope")),
            (Runtime::Docker, ID.into(), None)
        );
        assert_eq!(
            owner(&format!("/docker/{ID}")),
            (Runtime::Docker, ID.into(), None)
        );
        assert_eq!(
            owner(&format!(
                "/kubepods.slice/kubepods-pod1234.slice/crio-{ID}.scope"
            )),
            (Runtime::CriO, ID.into(), Some("1234".into()))
        );
        assert_eq!(
            owner(&format!("/libpod_parent/libpod-{ID}")),
            (Runtime::Podman, ID.into(), None)
        );
        assert_eq!(
            owner(&format!("/machine.slice/libpod-{ID}.scope")),
            (Runtime::Podman, ID.into(), None)
        );
        assert_eq!(
            owner("/system.slice/nginx.service"),
            (Runtime::Systemd, "nginx.service".into(), None)
        );
        // Not containers: the root, user sessions, conmon scopes, short ids.
        for p in [
            "/",
            "/user.slice/user-0.slice/session-3.scope",
            &format!("/machine.slice/libpod-conmon-{ID}.scope"),
            "/k8s.io/abc",
        ] {
            assert_eq!(parse_cgroup_path(p), None, "{p}");
        }
    }

    #[test]
    fn proc_cgroup_text() {
        let hybrid = format!(
            "12:pids:/kubepods/besteffort/podx/{ID}\n1:name=systemd:/kubepods/besteffort/podx/{ID}\n0::/kubepods/besteffort/podx/{ID}\n"
        );
        assert_eq!(
            parse_proc_cgroup(&hybrid).unwrap(),
            format!("/kubepods/besteffort/podx/{ID}")
        );
        let v1_only = "3:cpu:/\n1:name=systemd:/system.slice/cron.service\n";
        assert_eq!(
            parse_proc_cgroup(v1_only).unwrap(),
            "/system.slice/cron.service"
        );
        assert_eq!(parse_proc_cgroup("0::/\n").unwrap(), "/");
        assert_eq!(parse_proc_cgroup(""), None);
    }

    #[test]
    fn units_are_found_by_directory_name_within_the_depth() {
        let root = std::env::temp_dir().join(format!("armor-units-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for d in [
            "system.slice/nginx.service/sub",
            "system.slice/cron.service",
            // Deeper than the system unit: the shallower one wins.
            "user.slice/user-1000.slice/user@1000.service/app.slice/nginx.service",
            // Only deep enough with a larger bound.
            "a/b/c/deep.service",
            // Below a unit: not searched (its cgroups are the unit's).
            "system.slice/cron.service/inner.service",
            // Same depth: the first in name order wins.
            "x.slice/twice.service",
            "y.slice/twice.service",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        // A file named like a unit is not a cgroup.
        fs::write(root.join("system.slice/file.service"), "").unwrap();
        let ino = |p: &str| fs::metadata(root.join(p)).unwrap().ino();
        let units = [
            "nginx.service",
            "cron.service",
            "deep.service",
            "inner.service",
            "twice.service",
            "file.service",
            "absent.service",
        ];
        let found = find_units(&root, &units, 3);
        let got: Vec<(&str, &str, u64)> = found
            .iter()
            .map(|(u, c)| (u.as_str(), c.path.as_str(), c.cgroup_id))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "cron.service",
                    "/system.slice/cron.service",
                    ino("system.slice/cron.service")
                ),
                (
                    "nginx.service",
                    "/system.slice/nginx.service",
                    ino("system.slice/nginx.service")
                ),
                (
                    "twice.service",
                    "/x.slice/twice.service",
                    ino("x.slice/twice.service")
                ),
            ]
        );
        let deep = find_units(&root, &["deep.service"], 4);
        assert_eq!(deep["deep.service"].path, "/a/b/c/deep.service");
        assert!(find_units(&root, &["deep.service"], 3).is_empty());
        let user = find_units(&root, &["app.slice"], UNIT_SEARCH_DEPTH);
        assert_eq!(
            user["app.slice"].path,
            "/user.slice/user-1000.slice/user@1000.service/app.slice"
        );
        assert!(find_units(&root, &[], UNIT_SEARCH_DEPTH).is_empty());
        assert!(find_units(&root.join("missing"), &units, UNIT_SEARCH_DEPTH).is_empty());
        // The cgroups below a unit, which are its own.
        let below: Vec<(String, u64)> =
            cgroups_below(&root, "/system.slice/cron.service", UNIT_SEARCH_DEPTH)
                .into_iter()
                .map(|c| (c.path, c.cgroup_id))
                .collect();
        assert_eq!(
            below,
            vec![(
                "/system.slice/cron.service/inner.service".to_string(),
                ino("system.slice/cron.service/inner.service")
            )]
        );
        fs::create_dir_all(root.join("system.slice/nginx.service/sub/a/b")).unwrap();
        let paths = |depth| -> Vec<String> {
            cgroups_below(&root, "/system.slice/nginx.service", depth)
                .into_iter()
                .map(|c| c.path)
                .collect()
        };
        assert_eq!(
            paths(2),
            [
                "/system.slice/nginx.service/sub",
                "/system.slice/nginx.service/sub/a"
            ]
        );
        assert_eq!(paths(UNIT_SEARCH_DEPTH).len(), 3);
        assert!(cgroups_below(&root, "/system.slice/gone.service", 3).is_empty());
        // The path is the one `cgroup_id` takes.
        assert_eq!(
            cgroup_id(&root, "/system.slice/nginx.service").unwrap(),
            ino("system.slice/nginx.service")
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn our_own_process() {
        let path = proc_cgroup(std::process::id()).unwrap();
        assert!(path.starts_with('/'));
        let (pid_ns, mnt_ns) = namespaces(std::process::id()).unwrap();
        assert!(pid_ns > 0 && mnt_ns > 0);
        let root = cgroup2_root().unwrap();
        assert!(cgroup_id(&root, "/").unwrap() > 0);
    }
}
