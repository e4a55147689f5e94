//! The process tree: pid → executable, parent and command line, seeded from `/proc` at start
//! and kept current from exec/fork/exit events, so that processes started before the agent
//! still get their names.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;

use crate::event::{Event, EventKind};

/// What the tree knows about one process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ProcessInfo {
    /// Host tgid.
    pub pid: u32,
    /// Host tgid of the parent.
    pub ppid: u32,
    /// tgid in its own pid namespace (0 when unknown).
    pub ns_pid: u32,
    /// The executable (absolute path; empty for kernel threads).
    pub exe: String,
    /// Command line, arguments joined by spaces.
    pub cmdline: String,
    /// Working directory (empty when unknown).
    pub cwd: String,
}

/// Processes by host pid.
#[derive(Debug, Default)]
pub struct ProcessTree {
    procs: HashMap<u32, ProcessInfo>,
    exited: VecDeque<u32>,
    dead: HashSet<u32>,
}

/// Exited processes are kept this long (counted in exits) so late lookups of their children
/// still find the parent's name.
const KEEP_EXITED: usize = 4096;

/// Reads one process from `/proc` (`None` when it is gone).
pub fn read_proc(pid: u32) -> Option<ProcessInfo> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
    let after = stat.rsplit_once(')')?.1;
    let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| {
            p.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string()
        })
        .unwrap_or_default();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let ns_pid = fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().last().map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cwd = read_cwd(pid).unwrap_or_default();
    Some(ProcessInfo {
        pid,
        ppid,
        ns_pid,
        exe,
        cmdline,
        cwd,
    })
}

fn read_cwd(pid: u32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/cwd"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

impl ProcessTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree with every process now in `/proc`.
    pub fn from_proc() -> Self {
        let mut tree = Self::new();
        if let Ok(dir) = fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                if let Some(info) = read_proc(pid) {
                    tree.procs.insert(pid, info);
                }
            }
        }
        tree
    }

    /// Number of processes known (exited ones still kept included).
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// The process `pid`, if known.
    pub fn get(&self, pid: u32) -> Option<&ProcessInfo> {
        self.procs.get(&pid)
    }

    /// The process `pid`, read from `/proc` if the tree does not know it yet.
    pub fn get_or_load(&mut self, pid: u32) -> Option<&ProcessInfo> {
        match self.procs.entry(pid) {
            std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => Some(v.insert(read_proc(pid)?)),
        }
        .map(|i| &*i)
    }

    /// The working directory of `pid`, when known.
    pub fn cwd(&self, pid: u32) -> Option<&str> {
        self.procs
            .get(&pid)
            .map(|i| i.cwd.as_str())
            .filter(|c| !c.is_empty())
    }

    /// Inserts or replaces a process.
    pub fn insert(&mut self, info: ProcessInfo) {
        self.procs.insert(info.pid, info);
    }

    /// Updates the tree from one event.
    pub fn apply(&mut self, event: &Event) {
        match &event.kind {
            EventKind::Exec { path, argv, .. } => {
                self.dead.remove(&event.pid);
                let info = self.procs.entry(event.pid).or_default();
                info.pid = event.pid;
                info.ppid = event.ppid;
                info.ns_pid = event.ns_pid;
                info.exe.clone_from(path);
                info.cmdline = argv.join(" ");
                if info.cwd.is_empty() {
                    info.cwd = read_cwd(event.pid).unwrap_or_default();
                }
            }
            EventKind::Fork => {
                self.dead.remove(&event.pid);
                let parent = self.procs.get(&event.ppid).cloned().unwrap_or_default();
                self.procs.insert(
                    event.pid,
                    ProcessInfo {
                        pid: event.pid,
                        ppid: event.ppid,
                        ns_pid: event.ns_pid,
                        exe: parent.exe,
                        cmdline: parent.cmdline,
                        cwd: parent.cwd,
                    },
                );
            }
            EventKind::Chdir { path } => {
                if event.ret == 0
                    && let Some(info) = self.procs.get_mut(&event.pid)
                {
                    if path.starts_with('/') {
                        info.cwd.clone_from(path);
                    } else {
                        info.cwd = read_cwd(event.pid).unwrap_or_default();
                    }
                }
            }
            EventKind::Exit { .. } => {
                self.exited.push_back(event.pid);
                self.dead.insert(event.pid);
                while self.exited.len() > KEEP_EXITED {
                    // A pid reused since its exit is alive again: keep it.
                    if let Some(old) = self.exited.pop_front()
                        && self.dead.remove(&old)
                    {
                        self.procs.remove(&old);
                    }
                }
            }
            _ => {
                if let std::collections::hash_map::Entry::Vacant(v) = self.procs.entry(event.pid)
                    && let Some(info) = read_proc(event.pid)
                {
                    v.insert(info);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_from_proc_knows_us_and_our_parent() {
        let tree = ProcessTree::from_proc();
        let me = tree.get(std::process::id()).unwrap();
        assert_eq!(me.exe, std::env::current_exe().unwrap().to_string_lossy());
        assert!(me.ppid > 0);
        assert!(tree.get(me.ppid).is_some());
        assert!(me.cmdline.contains(&*std::env::args().next().unwrap()));
    }
}
