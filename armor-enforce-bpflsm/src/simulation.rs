//! The kernel's decision algorithm, written in user space over the same map entries.
//!
//! `bpf/armor_match.h` implements exactly these steps; the offline conformance test runs the
//! whole corpus through this model (`tests/conformance.rs`), and the live test compares the
//! kernel with the engine. Steps for one operation of category `c` in ruleset `rs`:
//!
//! 1. Probe the rule map for every key the operation can reach: the full path hash (exact
//!    rules), the basename hash (execname, processes only), the hash of every prefix at a depth
//!    whose bit is set in `dir_depths` (directory rules: the path itself and its parent take
//!    every entry, further ancestors only recursive ones), the protocol, type and "all" keys of
//!    a socket, the capability number, and for a path whose category has a glob automaton, one
//!    `*_GLOB` key per glob the automaton matches (it runs over `/` and the bytes of every
//!    component, root to leaf, exactly as the kernel's dentry walk feeds it). Each key is probed with the source hash of the acting
//!    executable (only when `c` has fromSource entries) and with source 0, behind the filter
//!    ([`crate::filter`]); each hit is a chain of `count` entries (`seq` 0..count), whose first entry comes
//!    from the rule table ([`crate::table`]) or, when its window was full, from the map, and
//!    the rest from the map.
//! 2. An entry without qualifiers covers the operation; one with qualifiers covers it when they say so (`readOnly`, `ownerOnly`: Allow
//!    covers the permitted set, Block and Audit cover its complement). Covering entries fill
//!    five slots — Block and Allow for each source specificity, and Audit — keeping the lowest
//!    rank (the engine's tie-break, computed at compile time).
//! 3. Verdict: for specificity fromSource then any: a Block slot blocks; an Allow slot allows (or
//!    audits when the Audit slot is set). Otherwise, in allow-list mode, the posture blocks, or
//!    audits (reporting the Audit slot's rule when set). Otherwise the Audit slot audits, else
//!    the operation is allowed silently.

use std::collections::HashMap;

use armor_core::event::{Event, Facts, Operation, net};
use armor_core::rule::PresetKind;

use crate::abi::{self, DfaVal, RuleKey, RuleVal, RulesetMeta, kind};
use crate::compile::Encoded;
use crate::filter::Filter;
use crate::hash;
use crate::table::{Found, Table};

/// An operation as the kernel programs see it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelOp {
    /// An exec of a file, or an access to one.
    Path {
        /// `abi::CAT_PROCESS` or `abi::CAT_FILE`.
        category: u8,
        /// The resolved path from the mount-namespace root; one that does not start with `/`
        /// stands for a file outside the caller's tree (a detached tree, another mount
        /// namespace's file, an fd received from outside), which has no path there.
        path: String,
        /// The access writes (file operations).
        write: bool,
        /// The file's owner uid.
        owner: Option<u32>,
        /// What the hook knows beyond the path (the presets' conditions).
        facts: Facts,
        /// An exec's arguments after the program name, when known (`allowedArgs`).
        args: Option<Vec<String>>,
    },
    /// Memory that is no named file made executable (the `anonymousMapExec` preset).
    Memory {
        /// By `mprotect` (else `mmap`).
        mprotect: bool,
    },
    /// A socket (family, type, protocol).
    Socket {
        /// `AF_*`.
        family: u16,
        /// `SOCK_*`.
        sock_type: u16,
        /// `IPPROTO_*` (0: the family's default).
        protocol: u16,
    },
    /// A capability check.
    Capability(u8),
}

impl KernelOp {
    /// The operation of an engine event, or `None` for syscall events (no LSM hook).
    pub fn from_event(e: &Event) -> Option<Self> {
        Some(match &e.operation {
            Operation::Process { path, owner } => Self::Path {
                category: abi::CAT_PROCESS,
                path: path.clone(),
                write: false,
                owner: *owner,
                facts: e.facts,
                args: e.args.clone(),
            },
            Operation::File {
                path,
                access,
                owner,
            } => Self::Path {
                category: abi::CAT_FILE,
                path: path.clone(),
                write: access.write,
                owner: *owner,
                facts: e.facts,
                args: None,
            },
            Operation::ExecMemory { mprotect } => Self::Memory {
                mprotect: *mprotect,
            },
            Operation::Network(s) => Self::Socket {
                family: s.family,
                sock_type: s.sock_type,
                protocol: s.protocol,
            },
            Operation::Capability(c) => Self::Capability(*c),
            _ => return None,
        })
    }

    fn category(&self) -> u8 {
        match self {
            Self::Path { category, .. } => *category,
            Self::Memory { .. } => abi::CAT_FILE,
            Self::Socket { .. } => abi::CAT_NETWORK,
            Self::Capability(_) => abi::CAT_CAPS,
        }
    }
}

/// What the kernel decides: `rule` is `None` for DefaultPosture (and for a silent allow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KernelDecision {
    /// Allow, Audit or Block.
    pub verdict: armor_core::Verdict,
    /// The reported rule (`None`: DefaultPosture when not Allow).
    pub rule: Option<u32>,
}

#[derive(Clone, Copy)]
struct Slot {
    rank: u32,
    rule: u32,
}

const EMPTY: Slot = Slot {
    rank: u32::MAX,
    rule: 0,
};

#[derive(Clone, Copy)]
struct Slots {
    block: [Slot; 2],
    allow: [Slot; 2],
    audit: Slot,
}

fn set(slot: &mut Slot, v: &RuleVal) {
    if v.rank < slot.rank {
        *slot = Slot {
            rank: v.rank,
            rule: v.rule,
        };
    }
}

/// One ruleset loaded into a model of the kernel maps.
#[derive(Debug, Clone)]
pub struct Model {
    hash_key: u64,
    ruleset: u32,
    meta: RulesetMeta,
    filter: Filter,
    table: Table,
    slots: HashMap<u32, RuleVal>,
    map: HashMap<RuleKey, RuleVal>,
    dfas: HashMap<u32, DfaVal>,
}

/// The globs the automaton of `dfa` matches for `path`, fed as the kernel feeds it: `/` and the
/// component's bytes for every component, root to leaf (`/` alone for the root).
pub fn glob_matches(dfa: &DfaVal, path: &str) -> Vec<u16> {
    let mut state = abi::DFA_START;
    let mut any = false;
    for c in hash::components(path) {
        any = true;
        state = dfa.step(state, b"/");
        state = dfa.step(state, c.as_bytes());
    }
    if !any {
        state = dfa.step(state, b"/");
    }
    dfa.matched(state).collect()
}

impl Model {
    /// The maps of `encoded` (made with `hash_key` for `ruleset`), in a rule table sized as the
    /// enforcer sizes one for this many entries alone.
    pub fn new(encoded: &Encoded, ruleset: u32, hash_key: u64) -> Self {
        Self::with_table(
            encoded,
            ruleset,
            hash_key,
            Table::for_entries(encoded.rules.len()),
        )
    }

    /// Like [`Model::new`], with the entries placed into `table` (a small one sends most entries
    /// to the map, the kernel's overflow path).
    pub fn with_table(encoded: &Encoded, ruleset: u32, hash_key: u64, mut table: Table) -> Self {
        let placed = table.place_all(&encoded.rules);
        let mut filter = Filter::for_entries(encoded.rules.len());
        filter.add(encoded.rules.iter().map(|(k, _)| k));
        Self {
            hash_key,
            ruleset,
            meta: encoded.meta,
            filter,
            table,
            slots: placed.slots.iter().map(|(i, s)| (*i, s.val)).collect(),
            map: placed.map.into_iter().collect(),
            dfas: encoded
                .dfas
                .iter()
                .filter(|(k, _)| k.ruleset == ruleset)
                .map(|(k, v)| (k.category, **v))
                .collect(),
        }
    }

    fn probe(
        &self,
        slots: &mut Slots,
        k: u8,
        target: u64,
        source: Option<u64>,
        ctx: &Ctx,
        recursive_only: bool,
    ) {
        // The kernel's armor_check: no lookup when the filter rules the pair out.
        if !self.filter.maybe(self.ruleset, k, target) {
            return;
        }
        for (spec, src) in [(1usize, source), (0, Some(0))] {
            let Some(src) = src else { continue };
            let mut key = RuleKey {
                ruleset: self.ruleset,
                kind: k,
                seq: 0,
                pad: 0,
                target,
                source: src,
            };
            // armor_first: the table, then the map when the window was full.
            let first = match self.table.find(hash::tag(&key)) {
                Found::Slot(i) => self.slots.get(&i),
                Found::Absent => None,
                Found::Overflow => self.map.get(&key),
            };
            let Some(first) = first.copied() else {
                continue;
            };
            for seq in 0..first.count.max(1) {
                key.seq = seq;
                let v = if seq == 0 {
                    first
                } else {
                    match self.map.get(&key) {
                        Some(v) => *v,
                        None => break,
                    }
                };
                let v = &v;
                if recursive_only && v.flags & abi::F_RECURSIVE == 0 {
                    continue;
                }
                let read_ok = !(v.flags & abi::F_READ_ONLY != 0 && ctx.write);
                let owner_ok = v.flags & abi::F_OWNER_ONLY == 0 || ctx.owner == Some(ctx.uid);
                let args_ok = v.flags & abi::F_ARGS == 0 || self.args_listed(v.rule, ctx.args);
                let permitted = read_ok && owner_ok && args_ok;
                let qualified =
                    v.flags & (abi::F_READ_ONLY | abi::F_OWNER_ONLY | abi::F_ARGS) != 0;
                let covered = if !qualified {
                    true
                } else if v.action == abi::ACTION_ALLOW {
                    permitted
                } else {
                    !permitted
                };
                if !covered {
                    continue;
                }
                match v.action {
                    abi::ACTION_ALLOW => {
                        if let Some(s) = slots.allow.get_mut(spec) {
                            set(s, v);
                        }
                    }
                    abi::ACTION_AUDIT => set(&mut slots.audit, v),
                    _ => {
                        if let Some(s) = slots.block.get_mut(spec) {
                            set(s, v);
                        }
                    }
                }
            }
        }
    }

    /// Decides `op` performed by `uid` running the executable `source`.
    pub fn decide(&self, op: &KernelOp, source: Option<&str>, uid: u32) -> KernelDecision {
        let cat = op.category();
        let src = if self.meta.flags & abi::rs_source(cat) != 0 {
            source.map(|s| hash::path(self.hash_key, s))
        } else {
            None
        };
        let mut slots = Slots {
            block: [EMPTY; 2],
            allow: [EMPTY; 2],
            audit: EMPTY,
        };
        match op {
            KernelOp::Memory { .. } => {
                let ctx = Ctx {
                    write: false,
                    owner: None,
                    uid,
                    args: None,
                };
                if self.meta.flags & abi::rs_preset(PresetKind::AnonymousMapExec.number()) != 0 {
                    let t = u64::from(PresetKind::AnonymousMapExec.number());
                    self.probe(&mut slots, kind::FILE_PRESET, t, src, &ctx, false);
                }
                // Outside the file posture.
                return self.verdict_with(cat, &slots, false);
            }
            KernelOp::Path {
                category,
                path,
                write,
                owner,
                facts,
                args,
            } => {
                let ctx = Ctx {
                    write: *write,
                    owner: *owner,
                    uid,
                    args: args.as_deref(),
                };
                if !path.starts_with('/') {
                    // A file outside the caller's mount-namespace tree: no path to probe (its
                    // (device, inode) entries are not modelled), and like a path the walk did
                    // not resolve completely, denied in allow-list mode. The presets' conditions
                    // do not depend on the path (a memfd has none).
                    self.probe_presets(&mut slots, *category, path, facts, src, &ctx);
                    let c = usize::from(*category);
                    if self.meta.allow_list.get(c).copied().unwrap_or(0) != 0 {
                        return KernelDecision {
                            verdict: armor_core::Verdict::Block,
                            rule: None,
                        };
                    }
                    return self.verdict(cat, &slots);
                }
                let file = *category == abi::CAT_FILE;
                let prefixes = hash::prefixes(self.hash_key, path);
                let depth = prefixes.len().saturating_sub(1);
                let (k_path, k_dir) = if file {
                    (kind::FILE_PATH, kind::FILE_DIR)
                } else {
                    (kind::PROC_PATH, kind::PROC_DIR)
                };
                if let Some(&full) = prefixes.last() {
                    self.probe(&mut slots, k_path, full, src, &ctx, false);
                }
                if !file
                    && self.meta.flags & abi::RS_NAMES != 0
                    && let Some(name) = hash::components(path).last()
                {
                    let t = hash::comp(self.hash_key, name.as_bytes());
                    self.probe(&mut slots, kind::PROC_NAME, t, src, &ctx, false);
                }
                let bits = self
                    .meta
                    .dir_depths
                    .get(usize::from(file))
                    .copied()
                    .unwrap_or(0);
                if self.meta.flags & abi::rs_glob(*category) != 0
                    && let Some(dfa) = self.dfas.get(&u32::from(*category))
                {
                    let k_glob = if file {
                        kind::FILE_GLOB
                    } else {
                        kind::PROC_GLOB
                    };
                    for g in glob_matches(dfa, path) {
                        self.probe(&mut slots, k_glob, u64::from(g), src, &ctx, false);
                    }
                }
                for (d, &h) in prefixes.iter().enumerate() {
                    if bits & (1u64 << d.min(63)) == 0 {
                        continue;
                    }
                    let recursive_only = d + 1 < depth;
                    self.probe(&mut slots, k_dir, h, src, &ctx, recursive_only);
                }
                self.probe_presets(&mut slots, *category, path, facts, src, &ctx);
            }
            KernelOp::Socket {
                family,
                sock_type,
                protocol,
            } => {
                let ctx = Ctx {
                    write: false,
                    owner: None,
                    uid,
                    args: None,
                };
                let eff = match (*protocol, *family, *sock_type) {
                    (0, net::AF_INET | net::AF_INET6, net::SOCK_STREAM) => net::IPPROTO_TCP,
                    (0, net::AF_INET | net::AF_INET6, net::SOCK_DGRAM) => net::IPPROTO_UDP,
                    (p, _, _) => p,
                };
                self.probe(
                    &mut slots,
                    kind::NET_PROTO,
                    u64::from(eff),
                    src,
                    &ctx,
                    false,
                );
                if *family == net::AF_INET6 && eff == net::IPPROTO_ICMPV6 {
                    let icmp = u64::from(net::IPPROTO_ICMP);
                    self.probe(&mut slots, kind::NET_PROTO, icmp, src, &ctx, false);
                }
                let t = u64::from(*sock_type);
                self.probe(&mut slots, kind::NET_TYPE, t, src, &ctx, false);
                self.probe(&mut slots, kind::NET_ALL, 0, src, &ctx, false);
            }
            KernelOp::Capability(c) => {
                let ctx = Ctx {
                    write: false,
                    owner: None,
                    uid,
                    args: None,
                };
                self.probe(&mut slots, kind::CAP, u64::from(*c), src, &ctx, false);
            }
        }
        self.verdict(cat, &slots)
    }

    /// The preset entries a path operation reaches (the kernel's check_presets): an exec of a
    /// file with no link or by a task with a terminal; an open of another process's procfs
    /// entry, or of its `environ`.
    fn probe_presets(
        &self,
        slots: &mut Slots,
        category: u8,
        path: &str,
        facts: &Facts,
        src: Option<u64>,
        ctx: &Ctx,
    ) {
        let has = |p: PresetKind| self.meta.flags & abi::rs_preset(p.number()) != 0;
        let probe = |slots: &mut Slots, k: u8, p: PresetKind| {
            self.probe(slots, k, u64::from(p.number()), src, ctx, false);
        };
        if category == abi::CAT_PROCESS {
            if facts.fileless && has(PresetKind::FilelessExec) {
                probe(slots, kind::PROC_PRESET, PresetKind::FilelessExec);
            }
            if facts.tty && has(PresetKind::Exec) {
                probe(slots, kind::PROC_PRESET, PresetKind::Exec);
            }
        } else if facts.other_process {
            if has(PresetKind::ProtectProc) {
                probe(slots, kind::FILE_PRESET, PresetKind::ProtectProc);
            }
            if has(PresetKind::ProtectEnv) && hash::components(path).last() == Some("environ") {
                probe(slots, kind::FILE_PRESET, PresetKind::ProtectEnv);
            }
        }
    }

    /// Whether every argument is one rule `rule` lists (the kernel's check of the captured
    /// argument hashes against the rule's [`kind::PROC_ARG`] entries, with its limits).
    fn args_listed(&self, rule: u32, args: Option<&[String]>) -> bool {
        let Some(args) = args else {
            return false;
        };
        args.len() <= armor_core::rule::MAX_CHECKED_ARGS
            && args.iter().all(|a| {
                a.len() <= armor_core::rule::MAX_ARG_LEN
                    && self.has_entry(kind::PROC_ARG, hash::arg_target(self.hash_key, rule, a))
            })
    }

    /// Whether the ruleset has an entry of (`k`, `target`) without a source.
    fn has_entry(&self, k: u8, target: u64) -> bool {
        if !self.filter.maybe(self.ruleset, k, target) {
            return false;
        }
        let key = RuleKey {
            ruleset: self.ruleset,
            kind: k,
            seq: 0,
            pad: 0,
            target,
            source: 0,
        };
        match self.table.find(hash::tag(&key)) {
            Found::Slot(i) => self.slots.contains_key(&i),
            Found::Absent => false,
            Found::Overflow => self.map.contains_key(&key),
        }
    }

    fn verdict(&self, cat: u8, s: &Slots) -> KernelDecision {
        self.verdict_with(cat, s, true)
    }

    /// The verdict of the probed slots; `posture`: the category's allow-list mode applies.
    fn verdict_with(&self, cat: u8, s: &Slots, posture: bool) -> KernelDecision {
        use armor_core::Verdict;
        let mk = |verdict, slot: Option<Slot>| KernelDecision {
            verdict,
            rule: slot.map(|s| s.rule),
        };
        let has = |s: &Slot| s.rank != u32::MAX;
        for spec in [1usize, 0] {
            if let Some(b) = s.block.get(spec).filter(|b| has(b)) {
                return mk(Verdict::Block, Some(*b));
            }
            if let Some(a) = s.allow.get(spec).filter(|a| has(a)) {
                return if has(&s.audit) {
                    mk(Verdict::Audit, Some(s.audit))
                } else {
                    mk(Verdict::Allow, Some(*a))
                };
            }
        }
        let c = usize::from(cat);
        if posture && self.meta.allow_list.get(c).copied().unwrap_or(0) != 0 {
            if self.meta.posture.get(c).copied().unwrap_or(0) != 0 {
                return mk(Verdict::Block, None);
            }
            return if has(&s.audit) {
                mk(Verdict::Audit, Some(s.audit))
            } else {
                mk(Verdict::Audit, None)
            };
        }
        if has(&s.audit) {
            mk(Verdict::Audit, Some(s.audit))
        } else {
            mk(Verdict::Allow, None)
        }
    }
}

struct Ctx<'a> {
    write: bool,
    owner: Option<u32>,
    uid: u32,
    /// An exec's arguments after the program name, when known.
    args: Option<&'a [String]>,
}
