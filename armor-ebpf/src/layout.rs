//! The kernel record (`struct armor_event` in `bpf/armor_event.h`) and its decoder.
//!
//! The record is decoded from bytes with explicit offsets rather than through a `#[repr(C)]`
//! struct, so no `unsafe` is needed; the offsets below are the ones the C header asserts with
//! `_Static_assert`, and a test reads the header and compares them.
//!
//! `args` per kind (`e->args[i]`):
//!
//! | kind | args |
//! |---|---|
//! | exec | `[0]` argv length, `[1]` pid before exec |
//! | open, openat, openat2 | `[0]` dirfd, `[1]` flags, `[2]` mode, `[3]` resolve (openat2) |
//! | unlink, unlinkat, rmdir | `[0]` dirfd, `[1]` flags (unlinkat) |
//! | rename, renameat, renameat2 | `[0]` old dirfd, `[1]` new dirfd, `[2]` flags (renameat2) |
//! | chmod, fchmodat, mkdir, mkdirat | `[0]` dirfd, `[1]` mode |
//! | chown, lchown, fchownat | `[0]` dirfd, `[1]` uid, `[2]` gid, `[3]` flags (fchownat) |
//! | chdir, fchdir | `[0]` fd (fchdir) or `AT_FDCWD` |
//! | socket | `[0]` family, `[1]` type, `[2]` protocol |
//! | connect, bind | `[0]` fd, `[1]` address length; the address is in `addr` |
//! | listen | `[0]` fd, `[1]` backlog |
//! | accept, accept4 | `[0]` fd, `[3]` flags; the peer address is in `addr` |

/// Size of one record.
pub const SIZE: usize = 672;
/// Length of the string fields.
pub const STR_MAX: usize = 256;
/// Length of the address field.
pub const ADDR_MAX: usize = 32;

/// `(field, offset)` of every field, in the header's order.
pub const OFFSETS: &[(&str, usize)] = &[
    ("ts_ns", TS_NS),
    ("cgroup_id", CGROUP_ID),
    ("kind", KIND),
    ("pid", PID),
    ("tid", TID),
    ("ppid", PPID),
    ("uid", UID),
    ("gid", GID),
    ("pid_ns", PID_NS),
    ("mnt_ns", MNT_NS),
    ("ns_pid", NS_PID),
    ("ns_ppid", NS_PPID),
    ("ret", RET),
    ("args", ARGS),
    ("comm", COMM),
    ("addr", ADDR),
    ("path", PATH),
    ("path2", PATH2),
];

const TS_NS: usize = 0;
const CGROUP_ID: usize = 8;
const KIND: usize = 16;
const PID: usize = 20;
const TID: usize = 24;
const PPID: usize = 28;
const UID: usize = 32;
const GID: usize = 36;
const PID_NS: usize = 40;
const MNT_NS: usize = 44;
const NS_PID: usize = 48;
const NS_PPID: usize = 52;
const RET: usize = 56;
const ARGS: usize = 64;
const COMM: usize = 112;
const ADDR: usize = 128;
const PATH: usize = 160;
const PATH2: usize = 416;

/// Kind numbers (`ARMOR_*` in the header).
pub mod kind {
    /// `execve`/`execveat` completed (`sched_process_exec`).
    pub const EXEC: u32 = 1;
    /// A process was created (`sched_process_fork`, threads excluded).
    pub const FORK: u32 = 2;
    /// A process ended (`sched_process_exit`, thread-group leader).
    pub const EXIT: u32 = 3;
    /// `open(2)`.
    pub const OPEN: u32 = 10;
    /// `openat(2)`.
    pub const OPENAT: u32 = 11;
    /// `openat2(2)`.
    pub const OPENAT2: u32 = 12;
    /// `socket(2)`.
    pub const SOCKET: u32 = 20;
    /// `connect(2)`.
    pub const CONNECT: u32 = 21;
    /// `bind(2)`.
    pub const BIND: u32 = 22;
    /// `listen(2)`.
    pub const LISTEN: u32 = 23;
    /// `accept(2)`.
    pub const ACCEPT: u32 = 24;
    /// `accept4(2)`.
    pub const ACCEPT4: u32 = 25;
    /// `unlink(2)`.
    pub const UNLINK: u32 = 30;
    /// `unlinkat(2)`.
    pub const UNLINKAT: u32 = 31;
    /// `rmdir(2)`.
    pub const RMDIR: u32 = 32;
    /// `rename(2)`.
    pub const RENAME: u32 = 33;
    /// `renameat(2)`.
    pub const RENAMEAT: u32 = 34;
    /// `renameat2(2)`.
    pub const RENAMEAT2: u32 = 35;
    /// `chmod(2)`.
    pub const CHMOD: u32 = 36;
    /// `fchmodat(2)`.
    pub const FCHMODAT: u32 = 37;
    /// `chown(2)`.
    pub const CHOWN: u32 = 38;
    /// `lchown(2)`.
    pub const LCHOWN: u32 = 39;
    /// `fchownat(2)`.
    pub const FCHOWNAT: u32 = 40;
    /// `mkdir(2)`.
    pub const MKDIR: u32 = 41;
    /// `mkdirat(2)`.
    pub const MKDIRAT: u32 = 42;
    /// `chdir(2)`.
    pub const CHDIR: u32 = 43;
    /// `fchdir(2)`.
    pub const FCHDIR: u32 = 44;
    /// A syscall a workload's syscall rules name (the syscall filter): `args[0]` = its
    /// number, `args[1..6]` = its first five arguments, `path` = its path argument's string.
    pub const SYSCALL: u32 = 60;
}

/// One record as the kernel wrote it, fields decoded, strings still raw.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawEvent {
    /// `bpf_ktime_get_ns()` (monotonic clock).
    pub ts_ns: u64,
    /// cgroup v2 id of the acting task.
    pub cgroup_id: u64,
    /// One of [`kind`].
    pub kind: u32,
    /// Host tgid (for fork: the child).
    pub pid: u32,
    /// Host thread id.
    pub tid: u32,
    /// Host tgid of the parent.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// pid namespace inode.
    pub pid_ns: u32,
    /// mount namespace inode.
    pub mnt_ns: u32,
    /// tgid inside the task's pid namespace.
    pub ns_pid: u32,
    /// Parent's tgid inside the parent's pid namespace.
    pub ns_ppid: u32,
    /// Return value (exit: exit code).
    pub ret: i64,
    /// Arguments, per kind (see the module docs).
    pub args: [i64; 6],
    /// `comm`.
    pub comm: String,
    /// The sockaddr bytes, when the call has one.
    pub addr: [u8; ADDR_MAX],
    /// First path (bytes up to the first NUL).
    pub path: Vec<u8>,
    /// Second path, or exec argv (NUL separated, `args[0]` bytes).
    pub path2: Vec<u8>,
}

/// A record shorter than [`SIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("kernel record has {0} bytes, expected {SIZE}")]
#[non_exhaustive]
pub struct ShortRecord(pub usize);

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        a.copy_from_slice(s);
    }
    u32::from_ne_bytes(a)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(off..off + 8) {
        a.copy_from_slice(s);
    }
    u64::from_ne_bytes(a)
}

fn i64_at(b: &[u8], off: usize) -> i64 {
    i64::from_ne_bytes(u64_at(b, off).to_ne_bytes())
}

fn cstr(b: &[u8], off: usize, max: usize) -> &[u8] {
    let s = b.get(off..off + max).unwrap_or(&[]);
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    s.get(..end).unwrap_or(&[])
}

impl RawEvent {
    /// Decodes one ring-buffer record.
    pub fn decode(b: &[u8]) -> Result<Self, ShortRecord> {
        if b.len() < SIZE {
            return Err(ShortRecord(b.len()));
        }
        let kind = u32_at(b, KIND);
        let mut args = [0i64; 6];
        for (i, a) in args.iter_mut().enumerate() {
            *a = i64_at(b, ARGS + 8 * i);
        }
        let mut addr = [0u8; ADDR_MAX];
        if let Some(s) = b.get(ADDR..ADDR + ADDR_MAX) {
            addr.copy_from_slice(s);
        }
        let path2 = if kind == kind::EXEC {
            let len = usize::try_from(args[0]).unwrap_or(0).min(STR_MAX);
            b.get(PATH2..PATH2 + len).unwrap_or(&[]).to_vec()
        } else {
            cstr(b, PATH2, STR_MAX).to_vec()
        };
        Ok(Self {
            ts_ns: u64_at(b, TS_NS),
            cgroup_id: u64_at(b, CGROUP_ID),
            kind,
            pid: u32_at(b, PID),
            tid: u32_at(b, TID),
            ppid: u32_at(b, PPID),
            uid: u32_at(b, UID),
            gid: u32_at(b, GID),
            pid_ns: u32_at(b, PID_NS),
            mnt_ns: u32_at(b, MNT_NS),
            ns_pid: u32_at(b, NS_PID),
            ns_ppid: u32_at(b, NS_PPID),
            ret: i64_at(b, RET),
            args,
            comm: String::from_utf8_lossy(cstr(b, COMM, 16)).into_owned(),
            addr,
            path: cstr(b, PATH, STR_MAX).to_vec(),
            path2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offsets the C header asserts are the ones this decoder uses.
    #[test]
    fn header_offsets_agree() {
        let header = include_str!("../bpf/armor_event.h");
        let mut found = Vec::new();
        for line in header.lines() {
            let Some(rest) =
                line.strip_prefix("_Static_assert(__builtin_offsetof(struct armor_event, ")
            else {
                continue;
            };
            let (field, rest) = rest.split_once(')').unwrap();
            let off: usize = rest
                .trim_start_matches(" == ")
                .split(',')
                .next()
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            found.push((field.to_string(), off));
        }
        let ours: Vec<(String, usize)> = OFFSETS.iter().map(|(f, o)| (f.to_string(), *o)).collect();
        assert_eq!(found, ours);
        assert!(header.contains(&format!("sizeof(struct armor_event) == {SIZE}")));
        for (name, value) in [
            ("ARMOR_EXEC", kind::EXEC),
            ("ARMOR_OPENAT", kind::OPENAT),
            ("ARMOR_CONNECT", kind::CONNECT),
            ("ARMOR_MKDIRAT", kind::MKDIRAT),
            ("ARMOR_ACCEPT4", kind::ACCEPT4),
        ] {
            assert!(
                header.contains(&format!("#define {name} {value}\n")),
                "{name}"
            );
        }
    }

    #[test]
    fn decodes_a_record() {
        let mut b = vec![0u8; SIZE];
        b[KIND..KIND + 4].copy_from_slice(&kind::OPENAT.to_ne_bytes());
        b[PID..PID + 4].copy_from_slice(&42u32.to_ne_bytes());
        b[RET..RET + 8].copy_from_slice(&(-2i64).to_ne_bytes());
        b[ARGS..ARGS + 8].copy_from_slice(&(-100i64).to_ne_bytes());
        b[PATH..PATH + 4].copy_from_slice(b"/etc");
        b[COMM..COMM + 3].copy_from_slice(b"cat");
        let e = RawEvent::decode(&b).unwrap();
        assert_eq!(
            (e.kind, e.pid, e.ret, e.args[0]),
            (kind::OPENAT, 42, -2, -100)
        );
        assert_eq!(e.path, b"/etc");
        assert_eq!(e.comm, "cat");
        assert_eq!(RawEvent::decode(&b[..10]), Err(ShortRecord(10)));
    }
}
