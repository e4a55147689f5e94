//! The live corpus runners' common part: how a corpus case becomes one `armor-op` run and the
//! files it needs, and the container-like root those files are made in. The BPF-LSM and the
//! AppArmor live runners (`tests/bpflsm.rs`, `tests/apparmor_live.rs`) plan and build every case
//! the same way and differ only in how they enforce and read alerts.

use std::fs;
use std::os::unix::fs::{PermissionsExt as _, chown};
use std::path::Path;

use armor_testing::corpus::Case;

use crate::op::helper_path;

/// What to run for a case: `armor-op` arguments after `--exe SOURCE`, and the files to create.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Plan {
    /// The acting executable (a copy of `armor-op` at that path).
    pub source: String,
    /// The operation, in `armor-op`'s spelling.
    pub args: Vec<String>,
    /// Every path the case names, the source first and the operation's target second.
    pub files: Vec<(String, FileKind)>,
    /// The target's owner, when the case sets one.
    pub owner: Option<u32>,
    /// The uid the operation runs as.
    pub uid: u32,
}

/// What a planned path is made as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A copy of `armor-op`, mode 0755: every path a case executes is a distinct real binary.
    Executable,
    /// A small file, mode 0666.
    Data,
    /// A directory, mode 0777.
    Directory,
}

/// The `armor-op` operation that uses exactly capability `cap` (and nothing else an LSM
/// decides), or why there is none.
fn cap_op(cap: &str) -> Result<Vec<String>, String> {
    let name = match cap.to_ascii_uppercase().trim_start_matches("CAP_") {
        "NET_RAW" => "net_raw",
        "NET_BIND_SERVICE" => "net_bind_service",
        "SYS_CHROOT" => "sys_chroot",
        "SYS_ADMIN" => "sys_admin",
        "SETUID" => "setuid",
        "KILL" => "kill",
        "NET_ADMIN" => "net_admin",
        "CHOWN" => {
            return Ok(vec![
                "cap".into(),
                "chown".into(),
                "/armor-chown-target".into(),
            ]);
        }
        other => return Err(format!("no armor-op operation uses exactly CAP_{other}")),
    };
    Ok(vec!["cap".into(), name.into()])
}

/// A case's procfs path live: the numbers naming a process (`/proc/<pid>/`, `task/<tid>/`)
/// become 1 (another process: the guest's init) or `self` and the caller's own thread id.
fn proc_path(path: &str, other: bool) -> String {
    let mut out = Vec::new();
    let mut prev = "";
    for c in path.split('/') {
        let numeric = !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit());
        out.push(match (numeric, prev, other) {
            (true, "proc", true) | (true, "task", true) => "1".to_owned(),
            (true, "proc", false) => "self".to_owned(),
            (true, "task", false) => "thread-self".to_owned(),
            _ => c.to_owned(),
        });
        prev = c;
    }
    let p = out.join("/");
    // `/proc/self/task/thread-self` is spelt `/proc/thread-self`.
    p.replace("/proc/self/task/thread-self", "/proc/thread-self")
}

/// How `case` runs live, or why it cannot (the reason is listed in the runners' report).
pub fn plan(case: &Case) -> Result<Plan, String> {
    let o = &case.operation;
    let source = o
        .source
        .clone()
        .ok_or("no acting executable in the case (the kernel always knows one)")?;
    let path = || match &o.path {
        None => Err("no path".to_owned()),
        // The corpus names a file outside the workload's tree by a path that is not absolute:
        // the bypass suite reaches such files (open_tree, /proc/PID/root, SCM_RIGHTS).
        Some(p) if !p.starts_with('/') => Err(format!(
            "`{p}` is outside the workload's tree: performed by the bypass suite's routes"
        )),
        Some(p) => Ok(p.clone()),
    };
    let mut files = vec![(source.clone(), FileKind::Executable)];
    let args = match o.kind.as_str() {
        // A file with no name: the acting executable's content from a memfd.
        "process" if o.fileless => vec!["memfd-exec".into(), source.clone(), "ok".into()],
        "process" => {
            let p = path()?;
            files.push((p.clone(), FileKind::Executable));
            let mut a = match (&o.args, o.tty) {
                (Some(_), true) => {
                    return Err("arguments and a terminal together: no armor-op route".into());
                }
                (Some(_), false) => vec!["exec-args".to_owned(), p],
                (None, true) => vec!["tty-exec".to_owned(), p, "ok".to_owned()],
                (None, false) => vec!["exec".to_owned(), p, "ok".to_owned()],
            };
            a.extend(o.args.iter().flatten().cloned());
            a
        }
        "memory" => vec![
            "anon-exec".into(),
            if o.mprotect { "mprotect" } else { "mmap" }.into(),
        ],
        // procfs (mounted in the root by armor-op): another process is pid 1, the caller's own
        // entries are `self`; nothing to create.
        "file" if o.path.as_deref().is_some_and(|p| p.starts_with("/proc/")) => {
            let p = path()?;
            let live = proc_path(&p, o.other_process);
            // armor-op mounts procfs on the root's /proc when there is one.
            files.push(("/proc".to_owned(), FileKind::Directory));
            vec![
                "open".into(),
                live,
                crate::op::open_flags(o.flags.as_deref().unwrap_or("O_RDONLY"))?,
            ]
        }
        "file" => {
            let p = path()?;
            let dir = o
                .flags
                .as_deref()
                .is_some_and(|f| f.contains("O_DIRECTORY"));
            let kind = if dir {
                FileKind::Directory
            } else {
                FileKind::Data
            };
            files.push((p.clone(), kind));
            match o.op.as_deref().unwrap_or("open") {
                "open" => vec![
                    "open".into(),
                    p,
                    crate::op::open_flags(o.flags.as_deref().unwrap_or("O_RDONLY"))?,
                ],
                "rename" => vec!["rename".into(), p.clone(), p],
                op @ ("unlink" | "truncate" | "chmod" | "chown") => vec![op.into(), p],
                other => return Err(format!("file op `{other}` is not mapped to armor-op")),
            }
        }
        "network" => {
            let num = |v: &Option<String>| -> Result<String, String> {
                match v {
                    None => Ok("0".into()),
                    Some(s) => armor_core::event::net::parse_constant(s)
                        .map(|n| n.to_string())
                        .ok_or(format!("unknown constant `{s}`")),
                }
            };
            vec![
                "socket".into(),
                num(&o.family)?,
                num(&o.sock_type)?,
                num(&o.protocol)?,
            ]
        }
        "capabilities" => {
            if o.uid != 0 {
                return Err(
                    "a capability check by a non-root uid fails in commoncap before any LSM".into(),
                );
            }
            let c = o.capability.as_deref().ok_or("no capability")?;
            let a = cap_op(c)?;
            if a.get(1).map(String::as_str) == Some("chown") {
                files.push(("/armor-chown-target".into(), FileKind::Data));
            }
            a
        }
        "syscall" => {
            return Err("syscall operations are audit-only: no LSM hook decides them".into());
        }
        other => return Err(format!("unknown kind `{other}`")),
    };
    if files.iter().any(|(p, _)| !p.starts_with('/')) {
        return Err("relative path".into());
    }
    Ok(Plan {
        source,
        args,
        files,
        owner: o.owner,
        uid: o.uid,
    })
}

/// Makes `root` afresh (mode 0777) with every file of `plan` below it, parents included (mode
/// 0777, so any uid may create and remove there); the target gets the plan's owner.
pub fn build_root(root: &Path, plan: &Plan) -> std::io::Result<()> {
    let mode = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m));
    if root.exists() {
        fs::remove_dir_all(root)?;
    }
    fs::create_dir_all(root)?;
    mode(root, 0o777)?;
    for (p, kind) in &plan.files {
        let rel = Path::new(p.trim_end_matches('/').trim_start_matches('/'));
        let dst = root.join(rel);
        let mut dir = root.to_path_buf();
        for c in rel.parent().iter().flat_map(|parent| parent.components()) {
            dir.push(c);
            if !dir.is_dir() {
                fs::create_dir(&dir)?;
                mode(&dir, 0o777)?;
            }
        }
        if rel.as_os_str().is_empty() || dst.is_dir() {
            continue;
        }
        if p.ends_with('/') || *kind == FileKind::Directory {
            fs::create_dir_all(&dst)?;
            mode(&dst, 0o777)?;
            continue;
        }
        if !dst.exists() {
            if *kind == FileKind::Executable {
                fs::copy(helper_path(), &dst)?;
                mode(&dst, 0o755)?;
            } else {
                fs::write(&dst, b"armor\n")?;
                mode(&dst, 0o666)?;
            }
        }
        // The owner belongs to the operation's target (the second file).
        if let Some(owner) = plan.owner
            && plan.files.get(1).is_some_and(|(q, _)| q == p)
        {
            chown(&dst, Some(owner), Some(owner))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn procfs_paths_name_init_or_the_caller() {
        assert_eq!(
            super::proc_path("/proc/42/environ", true),
            "/proc/1/environ"
        );
        assert_eq!(
            super::proc_path("/proc/42/task/43/environ", true),
            "/proc/1/task/1/environ"
        );
        assert_eq!(
            super::proc_path("/proc/7/environ", false),
            "/proc/self/environ"
        );
        assert_eq!(
            super::proc_path("/proc/7/task/8/status", false),
            "/proc/thread-self/status"
        );
        assert_eq!(super::proc_path("/proc/meminfo", false), "/proc/meminfo");
    }

    #[test]
    fn corpus_cases_become_armor_op_runs_and_files() {
        let cases = armor_testing::corpus::load_dir(&armor_testing::corpus::corpus_dir()).unwrap();
        let mut seen = [0usize; 4];
        for c in &cases {
            let o = &c.operation;
            let planned = plan(c);
            match o.kind.as_str() {
                "syscall" => {
                    assert!(planned.unwrap_err().contains("audit-only"), "{}", c.name);
                    seen[0] += 1;
                }
                "process" => {
                    let p = planned.unwrap();
                    // A memfd (the source's content), a terminal, arguments: their routes.
                    let want = match (o.fileless, o.tty, &o.args) {
                        (true, _, _) => "memfd-exec",
                        (false, true, _) => "tty-exec",
                        (false, false, Some(_)) => "exec-args",
                        (false, false, None) => "exec",
                    };
                    assert_eq!(p.args[0], want, "{}", c.name);
                    if o.fileless {
                        assert_eq!(p.args[1], p.source, "{}", c.name);
                    } else {
                        assert_eq!(p.files[1].1, FileKind::Executable, "{}", c.name);
                    }
                    if let Some(args) = &o.args {
                        assert_eq!(&p.args[2..], &args[..], "{}", c.name);
                    }
                    seen[1] += 1;
                }
                "memory" => {
                    let p = planned.unwrap();
                    let how = if o.mprotect { "mprotect" } else { "mmap" };
                    assert_eq!(p.args, ["anon-exec", how], "{}", c.name);
                }
                "file"
                    if o.flags
                        .as_deref()
                        .is_some_and(|f| f.contains("O_DIRECTORY")) =>
                {
                    let p = planned.unwrap();
                    assert_eq!(p.files[1].1, FileKind::Directory, "{}", c.name);
                    seen[2] += 1;
                }
                "capabilities"
                    if o.uid == 0
                        && o.capability
                            .as_deref()
                            .is_some_and(|x| x.eq_ignore_ascii_case("CAP_CHOWN")) =>
                {
                    let p = planned.unwrap();
                    assert_eq!(p.args, ["cap", "chown", "/armor-chown-target"]);
                    assert_eq!(p.files[1].0, "/armor-chown-target");
                    seen[3] += 1;
                }
                _ => {}
            }
            if let Ok(p) = plan(c) {
                assert_eq!(p.files[0], (p.source.clone(), FileKind::Executable));
                assert_eq!(p.uid, o.uid);
            }
        }
        assert!(seen.iter().all(|n| *n > 0), "{seen:?}");
    }

    #[test]
    fn the_root_holds_every_planned_file() {
        let root = std::env::temp_dir().join(format!("armor-live-root-{}", std::process::id()));
        let p = Plan {
            source: "/usr/bin/tool".into(),
            args: vec![],
            files: vec![
                ("/usr/bin/tool".into(), FileKind::Executable),
                ("/data/a/b.txt".into(), FileKind::Data),
                ("/data/dir/".into(), FileKind::Directory),
            ],
            owner: None,
            uid: 0,
        };
        fs::create_dir_all(root.join("stale")).unwrap();
        build_root(&root, &p).unwrap();
        assert!(!root.join("stale").exists());
        let exe = fs::metadata(root.join("usr/bin/tool")).unwrap();
        assert_eq!(exe.mode() & 0o777, 0o755);
        assert_eq!(exe.len(), fs::metadata(helper_path()).unwrap().len());
        assert_eq!(fs::read(root.join("data/a/b.txt")).unwrap(), b"armor\n");
        assert!(root.join("data/dir").is_dir());
        assert_eq!(
            fs::metadata(root.join("data/a")).unwrap().mode() & 0o777,
            0o777
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
