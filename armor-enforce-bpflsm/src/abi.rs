//! The `#[repr(C)]` structures shared with the kernel programs, mirrored field by field by
//! `bpf/armor_abi.h`. A test compares sizes and offsets with what the C compiler computes.
#![allow(
    unsafe_code,
    reason = "aya::Pod is an unsafe marker trait: these plain C structs have no padding holes \
              with invalid bit patterns and may be copied to and from the kernel as bytes"
)]

/// Entry kinds of the rule map (`ARMOR_KIND_*`).
pub mod kind {
    /// An executed file by full path hash.
    pub const PROC_PATH: u8 = 1;
    /// A directory of executed files.
    pub const PROC_DIR: u8 = 2;
    /// An executed file by basename hash.
    pub const PROC_NAME: u8 = 3;
    /// A file by full path hash.
    pub const FILE_PATH: u8 = 4;
    /// A directory of files.
    pub const FILE_DIR: u8 = 5;
    /// A socket protocol.
    pub const NET_PROTO: u8 = 6;
    /// A socket type.
    pub const NET_TYPE: u8 = 7;
    /// Every socket.
    pub const NET_ALL: u8 = 8;
    /// A capability.
    pub const CAP: u8 = 9;
    /// An executed file by (device, inode).
    pub const PROC_INODE: u8 = 10;
    /// A file by (device, inode).
    pub const FILE_INODE: u8 = 11;
    /// A directory of executed files by (device, inode), for bind mounts.
    pub const PROC_DIR_INODE: u8 = 12;
    /// A directory of files by (device, inode), for bind mounts.
    pub const FILE_DIR_INODE: u8 = 13;
    /// An executed file matched by a glob: target = the glob's index in the process automaton.
    pub const PROC_GLOB: u8 = 14;
    /// A file matched by a glob: target = the glob's index in the file automaton.
    pub const FILE_GLOB: u8 = 15;
    /// A process preset: target = its [`armor_core::rule::PresetKind::number`].
    pub const PROC_PRESET: u8 = 16;
    /// A file preset: target = its [`armor_core::rule::PresetKind::number`].
    pub const FILE_PRESET: u8 = 17;
    /// An argument a rule's `allowedArgs` lists: target = [`crate::hash::arg_target`].
    pub const PROC_ARG: u8 = 18;
}

/// `ARMOR_F_ARGS`: the entry's rule has `allowedArgs` (its [`kind::PROC_ARG`] entries).
pub const F_ARGS: u8 = 8;
/// `ARMOR_RS_ARGS`: the ruleset has entries with [`F_ARGS`] (the exec's arguments are read).
pub const RS_ARGS: u32 = 1 << 9;

/// `ARMOR_DETAIL_MEMORY`: a File alert about memory made executable (`anonymousMapExec`).
pub const DETAIL_MEMORY: u32 = 0x40;
/// `ARMOR_DETAIL_MPROTECT`: ... by `mprotect` (else `mmap`).
pub const DETAIL_MPROTECT: u32 = 0x80;

/// `ARMOR_DETAIL_ARGS_CHANGED`: a Process alert of an exec killed because its arguments
/// changed after the `allowedArgs` check.
pub const DETAIL_ARGS_CHANGED: u32 = 0x100;

/// `ARMOR_RS_PRESET(p)`: the ruleset has an entry of preset number `p`.
pub const fn rs_preset(p: u8) -> u32 {
    1 << (24 + p)
}

/// `ARMOR_ACTION_ALLOW`.
pub const ACTION_ALLOW: u8 = 0;
/// `ARMOR_ACTION_AUDIT`.
pub const ACTION_AUDIT: u8 = 1;
/// `ARMOR_ACTION_BLOCK`.
pub const ACTION_BLOCK: u8 = 2;

/// `ARMOR_F_READ_ONLY`.
pub const F_READ_ONLY: u8 = 1;
/// `ARMOR_F_OWNER_ONLY`.
pub const F_OWNER_ONLY: u8 = 2;
/// `ARMOR_F_RECURSIVE`.
pub const F_RECURSIVE: u8 = 4;

/// `ARMOR_CAT_*`: process, file, network, capabilities.
pub const CAT_PROCESS: u8 = 0;
/// File category.
pub const CAT_FILE: u8 = 1;
/// Network category.
pub const CAT_NETWORK: u8 = 2;
/// Capabilities category.
pub const CAT_CAPS: u8 = 3;

/// `ARMOR_RS_SOURCE(cat)`: the category has fromSource entries.
pub const fn rs_source(cat: u8) -> u32 {
    1 << cat
}
/// `ARMOR_RS_INODE(cat)`: the category has (device, inode) entries.
pub const fn rs_inode(cat: u8) -> u32 {
    1 << (4 + cat)
}
/// `ARMOR_RS_DIR_INODE(cat)`: the category has directory (device, inode) entries.
pub const fn rs_dir_inode(cat: u8) -> u32 {
    1 << (12 + cat)
}
/// `ARMOR_RS_NAMES`: the ruleset has execname entries.
pub const RS_NAMES: u32 = 1 << 8;
/// `ARMOR_RS_GLOB(cat)`: the category (process or file) has a glob automaton.
pub const fn rs_glob(cat: u8) -> u32 {
    1 << (16 + cat)
}

/// `ARMOR_DFA_STATES`: states of one glob automaton at most (the dead state included).
pub const DFA_STATES: usize = 4096;
/// `ARMOR_DFA_CELLS`: transition cells (states × byte classes) of one automaton at most.
pub const DFA_CELLS: usize = 1 << 15;
/// `ARMOR_DFA_MATCHES`: entries of one automaton's match lists at most.
pub const DFA_MATCHES: usize = 4096;
/// `ARMOR_DFA_START`: the start state (0 is the dead state).
pub const DFA_START: u32 = 1;

/// Counter slots (`ARMOR_CNT_*`).
pub mod counter {
    /// Alerts written to the ring buffer.
    pub const ALERTS: u32 = 0;
    /// Alerts dropped by the per-workload rate limit.
    pub const RATE_LIMITED: u32 = 1;
    /// Alerts lost because the ring buffer was full.
    pub const RESERVE_FAILED: u32 = 2;
    /// Paths that could not be resolved completely.
    pub const INCOMPLETE: u32 = 3;
    /// Incomplete paths denied because a rule could still match them.
    pub const INCOMPLETE_DENIED: u32 = 4;
    /// Operations denied.
    pub const BLOCKED: u32 = 5;
    /// Second (backing file) `file_open` calls on overlayfs that were skipped.
    pub const OVERLAY_SKIPPED: u32 = 6;
    /// Execs killed: their arguments changed after the `allowedArgs` check.
    pub const ARGS_KILLED: u32 = 7;
    /// Number of slots.
    pub const MAX: u32 = 8;
}

/// `ARMOR_RULE_POSTURE`: the rule id of a DefaultPosture alert.
pub const RULE_POSTURE: u32 = u32::MAX;
/// `ARMOR_ALERT_PATH`.
pub const ALERT_PATH: usize = 256;
/// `ARMOR_ALERT_F_TRUNCATED`.
pub const ALERT_F_TRUNCATED: u8 = 1;
/// `ARMOR_ALERT_F_INCOMPLETE`.
pub const ALERT_F_INCOMPLETE: u8 = 2;

/// `struct armor_rule_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[non_exhaustive]
pub struct RuleKey {
    /// The ruleset id.
    pub ruleset: u32,
    /// `kind::*`.
    pub kind: u8,
    /// Position among entries sharing target and source.
    pub seq: u8,
    /// Zero.
    pub pad: u16,
    /// Path hash, basename hash, protocol, type or capability.
    pub target: u64,
    /// Hash of the fromSource executable, 0 for any source.
    pub source: u64,
}

/// `struct armor_rule_val`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct RuleVal {
    /// Precedence among rules of the same verdict (lower wins).
    pub rank: u32,
    /// Index into the compiled policy's rules.
    pub rule: u32,
    /// `ACTION_*`.
    pub action: u8,
    /// `F_*`.
    pub flags: u8,
    /// In the `seq` 0 entry: the number of entries sharing target and source.
    pub count: u8,
    /// Zero.
    pub pad: u8,
    /// Zero.
    pub pad2: u32,
}

/// `struct armor_ruleset`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct RulesetMeta {
    /// Process and file: bit d set when a directory entry sits at depth d (63 = 63 or deeper).
    pub dir_depths: [u64; 2],
    /// Per category: allow-list mode.
    pub allow_list: [u8; 4],
    /// Per category: 1 when the default posture blocks.
    pub posture: [u8; 4],
    /// `rs_source`, `rs_inode`, `RS_NAMES`.
    pub flags: u32,
    /// Zero.
    pub pad: u32,
}

/// `ARMOR_WINDOW`: a key's slot lies at most this many slots from its home slot in the rule
/// table ([`crate::table`]).
pub const WINDOW: u32 = 8;
/// `ARMOR_TAG_EMPTY`: a slot never used; a probe stops at it.
pub const TAG_EMPTY: u64 = 0;
/// `ARMOR_TAG_DELETED`: a slot freed; a probe goes on past it.
pub const TAG_DELETED: u64 = 1;

/// `struct armor_slot`: one slot of the rule table (`armor_table`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct SlotVal {
    /// [`crate::hash::tag`] of the entry's key, or [`TAG_EMPTY`] / [`TAG_DELETED`].
    pub tag: u64,
    /// The entry.
    pub val: RuleVal,
}

impl SlotVal {
    /// A slot holding `val` under `tag`.
    pub fn new(tag: u64, val: RuleVal) -> Self {
        Self { tag, val }
    }

    /// A freed slot.
    pub fn deleted() -> Self {
        Self {
            tag: TAG_DELETED,
            val: RuleVal::default(),
        }
    }

    /// A slot never used (or freed with nothing behind it).
    pub fn empty() -> Self {
        Self::default()
    }
}

/// `struct armor_workload`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct WorkloadVal {
    /// The active ruleset (0: managed, no rules).
    pub ruleset: u32,
    /// Most alerts per second this workload may raise.
    pub alerts_per_sec: u32,
    /// `ARMOR_W_*` flags ([`W_UNTIL_EXEC`]).
    pub flags: u32,
    /// Zero.
    pub pad: u32,
    /// The active ruleset's description (zero without rules): it changes with `ruleset` in one
    /// map update.
    pub meta: RulesetMeta,
}

/// `ARMOR_W_UNTIL_EXEC`: the workload's rules are not in force until one of its tasks executes
/// a program (that first exec is decided, and clears the flag in the kernel).
pub const W_UNTIL_EXEC: u32 = 1;

/// `struct armor_config`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct ConfigVal {
    /// The path hash key.
    pub hash_key: u64,
    /// Deepest cgroup level searched for a workload ancestor.
    pub max_cgroup_level: u32,
    /// Not read by the programs: the ruleset id user space uses next, written before an id is
    /// used, so that an enforcer adopting pinned maps never reuses an id an earlier one wrote
    /// (its entries could still be in the table).
    pub next_ruleset: u32,
}

/// `struct armor_alert`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlertRaw {
    /// The workload's cgroup id (0: host).
    pub cgroup: u64,
    /// Hash of the acting executable.
    pub source_hash: u64,
    /// The rule, or `RULE_POSTURE`.
    pub rule: u32,
    /// Thread group id.
    pub pid: u32,
    /// Acting uid.
    pub uid: u32,
    /// Operation detail (access bits, socket triple, capability).
    pub detail: u32,
    /// `CAT_*`.
    pub category: u8,
    /// `ACTION_AUDIT` or `ACTION_BLOCK`.
    pub action: u8,
    /// `ALERT_F_*`.
    pub flags: u8,
    /// Zero.
    pub pad: u8,
    /// Bytes used in `path`.
    pub path_len: u16,
    /// Bytes used in `source`.
    pub source_len: u16,
    /// The resource path (its root-most components that fit when truncated).
    pub path: [u8; ALERT_PATH],
    /// The acting executable's path.
    pub source: [u8; ALERT_PATH],
}

/// `struct armor_dfa_key`: one ruleset's automaton for one category.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[non_exhaustive]
pub struct DfaKey {
    /// The ruleset id.
    pub ruleset: u32,
    /// `CAT_PROCESS` or `CAT_FILE`.
    pub category: u32,
}

/// `struct armor_dfa`: a glob automaton as the kernel walks it. State `s` on byte `b` goes to
/// `next[(s * nclasses + classes[b]) % DFA_CELLS]`; state 0 is dead, `DFA_START` the start.
/// When the path ends in state `s`, the globs `matches[off .. off + n]` match, with
/// `accept[s] = off << 16 | n`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DfaVal {
    /// Number of states.
    pub nstates: u32,
    /// Number of byte classes.
    pub nclasses: u32,
    /// Number of used `matches` entries.
    pub nmatches: u32,
    /// Zero.
    pub pad: u32,
    /// The byte class of every byte.
    pub classes: [u8; 256],
    /// Per state: match list offset (high 16 bits) and length (low 16 bits).
    pub accept: [u32; DFA_STATES],
    /// Glob indices (the rule map target of `*_GLOB` entries).
    pub matches: [u16; DFA_MATCHES],
    /// The transition table.
    pub next: [u16; DFA_CELLS],
}

impl DfaVal {
    /// An empty automaton (every state dead), on the heap: the value is 90 KiB.
    pub fn boxed() -> Box<Self> {
        Box::new(Self {
            nstates: 0,
            nclasses: 0,
            nmatches: 0,
            pad: 0,
            classes: [0; 256],
            accept: [0; DFA_STATES],
            matches: [0; DFA_MATCHES],
            next: [0; DFA_CELLS],
        })
    }

    /// The state after `bytes` from `state`, exactly as `armor_dfa_step` computes it.
    pub fn step(&self, mut state: u32, bytes: &[u8]) -> u32 {
        let ncls = self.nclasses;
        for &b in bytes {
            if state == 0 {
                break;
            }
            let class = u32::from(self.classes.get(usize::from(b)).copied().unwrap_or(0));
            let cell = (state.wrapping_mul(ncls).wrapping_add(class)) as usize % DFA_CELLS;
            state = u32::from(self.next.get(cell).copied().unwrap_or(0));
        }
        state
    }

    /// The globs that match when the input ends in `state`.
    pub fn matched(&self, state: u32) -> impl Iterator<Item = u16> + '_ {
        let acc = self
            .accept
            .get(state as usize % DFA_STATES)
            .copied()
            .unwrap_or(0);
        let (off, n) = ((acc >> 16) as usize, (acc & 0xffff) as usize);
        (off..off + n).filter_map(|i| self.matches.get(i % DFA_MATCHES).copied())
    }
}

/// `struct armor_rate`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct RateVal {
    /// Start of the current one-second window (ns).
    pub window_start: u64,
    /// Alerts in the window.
    pub count: u64,
}

// SAFETY: every type below is `#[repr(C)]`, made only of integers and integer arrays with
// explicit padding fields, so any bit pattern is valid and no byte is uninitialised.
unsafe impl aya::Pod for RuleKey {}
// SAFETY: as above.
unsafe impl aya::Pod for RuleVal {}
// SAFETY: as above.
unsafe impl aya::Pod for RulesetMeta {}
// SAFETY: as above.
unsafe impl aya::Pod for SlotVal {}
// SAFETY: as above.
unsafe impl aya::Pod for WorkloadVal {}
// SAFETY: as above.
unsafe impl aya::Pod for ConfigVal {}
// SAFETY: as above.
unsafe impl aya::Pod for RateVal {}
// SAFETY: as above.
unsafe impl aya::Pod for DfaKey {}
// SAFETY: as above.
unsafe impl aya::Pod for DfaVal {}

impl AlertRaw {
    /// Parses a ring buffer record, or `None` when it is too short.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let u64_at = |o: usize| -> Option<u64> {
            Some(u64::from_ne_bytes(b.get(o..o + 8)?.try_into().ok()?))
        };
        let u32_at = |o: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?))
        };
        let u16_at = |o: usize| -> Option<u16> {
            Some(u16::from_ne_bytes(b.get(o..o + 2)?.try_into().ok()?))
        };
        use std::mem::offset_of;
        let po = offset_of!(Self, path);
        let so = offset_of!(Self, source);
        let mut path = [0u8; ALERT_PATH];
        path.copy_from_slice(b.get(po..po + ALERT_PATH)?);
        let mut source = [0u8; ALERT_PATH];
        source.copy_from_slice(b.get(so..so + ALERT_PATH)?);
        Some(Self {
            cgroup: u64_at(offset_of!(Self, cgroup))?,
            source_hash: u64_at(offset_of!(Self, source_hash))?,
            rule: u32_at(offset_of!(Self, rule))?,
            pid: u32_at(offset_of!(Self, pid))?,
            uid: u32_at(offset_of!(Self, uid))?,
            detail: u32_at(offset_of!(Self, detail))?,
            category: *b.get(offset_of!(Self, category))?,
            action: *b.get(offset_of!(Self, action))?,
            flags: *b.get(offset_of!(Self, flags))?,
            pad: 0,
            path_len: u16_at(offset_of!(Self, path_len))?,
            source_len: u16_at(offset_of!(Self, source_len))?,
            path,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
    use super::*;
    use std::mem::{offset_of, size_of};

    // `(struct, field or "", value)` rows printed by a C program built from the header.
    const C_LAYOUT: &str = include_str!(concat!(env!("OUT_DIR"), "/abi_layout.txt"));

    fn c(name: &str) -> usize {
        C_LAYOUT
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from the C layout"))
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn layout_matches_the_c_header() {
        assert_eq!(size_of::<RuleKey>(), c("armor_rule_key"));
        assert_eq!(offset_of!(RuleKey, kind), c("armor_rule_key.kind"));
        assert_eq!(offset_of!(RuleKey, seq), c("armor_rule_key.seq"));
        assert_eq!(offset_of!(RuleKey, target), c("armor_rule_key.target"));
        assert_eq!(offset_of!(RuleKey, source), c("armor_rule_key.source"));
        assert_eq!(size_of::<RuleVal>(), c("armor_rule_val"));
        assert_eq!(offset_of!(RuleVal, rule), c("armor_rule_val.rule"));
        assert_eq!(offset_of!(RuleVal, action), c("armor_rule_val.action"));
        assert_eq!(offset_of!(RuleVal, flags), c("armor_rule_val.flags"));
        assert_eq!(offset_of!(RuleVal, count), c("armor_rule_val.count"));
        assert_eq!(size_of::<RulesetMeta>(), c("armor_ruleset"));
        assert_eq!(
            offset_of!(RulesetMeta, allow_list),
            c("armor_ruleset.allow_list")
        );
        assert_eq!(offset_of!(RulesetMeta, posture), c("armor_ruleset.posture"));
        assert_eq!(offset_of!(RulesetMeta, flags), c("armor_ruleset.flags"));
        assert_eq!(size_of::<SlotVal>(), c("armor_slot"));
        assert_eq!(offset_of!(SlotVal, val), c("armor_slot.val"));
        assert_eq!(size_of::<WorkloadVal>(), c("armor_workload"));
        assert_eq!(
            offset_of!(WorkloadVal, alerts_per_sec),
            c("armor_workload.alerts_per_sec")
        );
        assert_eq!(offset_of!(WorkloadVal, flags), c("armor_workload.flags"));
        assert_eq!(offset_of!(WorkloadVal, meta), c("armor_workload.rs"));
        assert_eq!(W_UNTIL_EXEC as usize, c("ARMOR_W_UNTIL_EXEC"));
        assert_eq!(size_of::<ConfigVal>(), c("armor_config"));
        assert_eq!(
            offset_of!(ConfigVal, max_cgroup_level),
            c("armor_config.max_cgroup_level")
        );
        assert_eq!(size_of::<RateVal>(), c("armor_rate"));
        assert_eq!(size_of::<DfaKey>(), c("armor_dfa_key"));
        assert_eq!(offset_of!(DfaKey, category), c("armor_dfa_key.category"));
        assert_eq!(size_of::<DfaVal>(), c("armor_dfa"));
        assert_eq!(offset_of!(DfaVal, nclasses), c("armor_dfa.nclasses"));
        assert_eq!(offset_of!(DfaVal, classes), c("armor_dfa.classes"));
        assert_eq!(offset_of!(DfaVal, accept), c("armor_dfa.accept"));
        assert_eq!(offset_of!(DfaVal, matches), c("armor_dfa.matches"));
        assert_eq!(offset_of!(DfaVal, next), c("armor_dfa.next"));
        assert_eq!(size_of::<AlertRaw>(), c("armor_alert"));
        assert_eq!(offset_of!(AlertRaw, rule), c("armor_alert.rule"));
        assert_eq!(offset_of!(AlertRaw, detail), c("armor_alert.detail"));
        assert_eq!(offset_of!(AlertRaw, category), c("armor_alert.category"));
        assert_eq!(offset_of!(AlertRaw, flags), c("armor_alert.flags"));
        assert_eq!(offset_of!(AlertRaw, path_len), c("armor_alert.path_len"));
        assert_eq!(
            offset_of!(AlertRaw, source_len),
            c("armor_alert.source_len")
        );
        assert_eq!(offset_of!(AlertRaw, path), c("armor_alert.path"));
        assert_eq!(offset_of!(AlertRaw, source), c("armor_alert.source"));
    }

    #[test]
    fn alert_parses_from_bytes() {
        let mut b = vec![0u8; size_of::<AlertRaw>()];
        b[0..8].copy_from_slice(&7u64.to_ne_bytes());
        b[16..20].copy_from_slice(&3u32.to_ne_bytes());
        b[32] = CAT_FILE;
        b[33] = ACTION_BLOCK;
        b[36..38].copy_from_slice(&4u16.to_ne_bytes());
        b[40..44].copy_from_slice(b"/etc");
        let a = AlertRaw::from_bytes(&b).unwrap();
        assert_eq!(
            (a.cgroup, a.rule, a.category, a.action),
            (7, 3, CAT_FILE, ACTION_BLOCK)
        );
        assert_eq!(&a.path[..a.path_len as usize], b"/etc");
        assert!(AlertRaw::from_bytes(&b[..100]).is_none());
    }
}
