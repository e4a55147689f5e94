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

impl ProcessTree {
    /// Drops every process that `/proc` no longer lists and that is not kept on purpose after
    /// its exit (the last 4,096 exits): what lost exit events left. Returns how many.
    /// Bounds the tree by the processes that exist, whatever events were lost.
    pub fn sweep(&mut self) -> usize {
        let Ok(entries) = fs::read_dir("/proc") else {
            return 0;
        };
        let alive: HashSet<u32> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        self.sweep_against(&alive)
    }

    fn sweep_against(&mut self, alive: &HashSet<u32>) -> usize {
        let before = self.procs.len();
        let dead = &self.dead;
        self.procs
            .retain(|pid, _| alive.contains(pid) || dead.contains(pid));
        before - self.procs.len()
    }
}

/// Exited processes are kept this long (counted in exits) so late lookups of their children
/// still find the parent's name.
const KEEP_EXITED: usize = 4096;

/// Reads one process from `/proc` (`None` when it is gone).
pub fn read_proc(pid: u32) -> Option<ProcessInfo> {
    read_proc_and_comm(pid).map(|(info, _)| info)
}

/// [`read_proc`] and the process's current `comm`.
fn read_proc_and_comm(pid: u32) -> Option<(ProcessInfo, String)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
    let (head, after) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
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
    Some((
        ProcessInfo {
            pid,
            ppid,
            ns_pid,
            exe,
            cmdline,
            cwd,
        },
        comm,
    ))
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
                if self.procs.contains_key(&event.pid) {
                    return;
                }
                let Some((mut info, comm)) = read_proc_and_comm(event.pid) else {
                    return;
                };
                // `/proc` is read after the event: a process whose fork we did not see (it was
                // in an invisible cgroup, like a container runtime's init before it joins the
                // container's cgroup) may have executed another image since. Its `comm` then
                // differs from the event's, and what `/proc` shows now did not make the
                // event: before an exec a process runs its parent's image.
                if comm != event.comm {
                    let parent = self
                        .procs
                        .get(&event.ppid)
                        .cloned()
                        .or_else(|| read_proc(event.ppid));
                    let (exe, cmdline) = parent.map(|p| (p.exe, p.cmdline)).unwrap_or_default();
                    info.exe = exe;
                    info.cmdline = cmdline;
                }
                self.procs.insert(event.pid, info);
            }
        }
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
    use crate::event::{FileOp, Syscall};

    /// Processes whose exit was lost go at the next sweep; the live ones and those kept after
    /// a seen exit stay; the real `/proc` keeps this process.
    #[test]
    fn the_sweep_drops_what_lost_exits_left() {
        let mut tree = ProcessTree::default();
        for pid in [10, 11, 12] {
            tree.insert(ProcessInfo {
                pid,
                exe: format!("/bin/p{pid}"),
                ..ProcessInfo::default()
            });
        }
        let mut exit = open_event(12, 1, "p12");
        exit.kind = EventKind::Exit { code: 0 };
        tree.apply(&exit);
        let alive: HashSet<u32> = [10].into_iter().collect();
        assert_eq!(tree.sweep_against(&alive), 1, "11's exit was lost");
        assert!(tree.get(10).is_some() && tree.get(11).is_none());
        assert!(tree.get(12).is_some(), "kept after its exit, on purpose");

        let me = std::process::id();
        let mut real = ProcessTree::default();
        real.insert(ProcessInfo {
            pid: me,
            ..ProcessInfo::default()
        });
        real.insert(ProcessInfo {
            pid: u32::MAX - 1,
            ..ProcessInfo::default()
        });
        assert_eq!(real.sweep(), 1);
        assert!(real.get(me).is_some());
    }

    fn open_event(pid: u32, ppid: u32, comm: &str) -> Event {
        Event {
            ts_ns: 0,
            cgroup_id: 0,
            syscall: Syscall::Openat,
            pid,
            tid: pid,
            ppid,
            ns_pid: pid,
            ns_ppid: ppid,
            uid: 0,
            gid: 0,
            pid_ns: 0,
            mnt_ns: 0,
            comm: comm.to_string(),
            ret: 0,
            kind: EventKind::File(FileOp {
                path: "/etc/hostname".to_string(),
                raw_path: "/etc/hostname".to_string(),
                dirfd: -100,
                flags: 0,
                mode: 0,
                target: None,
                owner: None,
            }),
        }
    }

    /// A child that has already executed `sleep`: an event it made before (another `comm`)
    /// gets its parent's image, one made after keeps what `/proc` shows.
    #[test]
    fn an_unknown_process_that_executed_since_its_event_gets_its_parents_image() {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id();
        // Wait for the exec to have completed (comm becomes `sleep` during the exec, the new
        // argv is readable a little later).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !read_proc_and_comm(pid).is_some_and(|(i, c)| c == "sleep" && !i.cmdline.is_empty()) {
            assert!(
                std::time::Instant::now() < deadline,
                "child never became sleep"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let me = std::process::id();
        let my_exe = std::env::current_exe()
            .unwrap()
            .to_string_lossy()
            .into_owned();

        let mut tree = ProcessTree::new();
        tree.apply(&open_event(pid, me, "runc:[2:INIT]"));
        assert_eq!(tree.get(pid).unwrap().exe, my_exe);
        assert_eq!(tree.get(pid).unwrap().ppid, me);

        let mut tree = ProcessTree::new();
        tree.apply(&open_event(pid, me, "sleep"));
        let sleep = tree.get(pid).unwrap();
        assert!(sleep.exe.ends_with("/sleep"), "{sleep:?}");
        assert_eq!(sleep.cmdline, "/bin/sleep 5");
        child.kill().unwrap();
        child.wait().unwrap();
    }

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
