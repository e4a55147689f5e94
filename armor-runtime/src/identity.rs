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
    fn our_own_process() {
        let path = proc_cgroup(std::process::id()).unwrap();
        assert!(path.starts_with('/'));
        let (pid_ns, mnt_ns) = namespaces(std::process::id()).unwrap();
        assert!(pid_ns > 0 && mnt_ns > 0);
        let root = cgroup2_root().unwrap();
        assert!(cgroup_id(&root, "/").unwrap() > 0);
    }
}
