//! `compile`: one workload's [`RuleSet`] → the map entries the kernel programs read.
//!
//! The artefact keeps paths as text (so [`Artifact::render`] is stable and reviewable); the
//! hashes are computed by [`BpfArtifact::encode`] with the key of the loaded enforcer. The
//! `matchPatterns` globs of each category become one automaton ([`crate::dfa`]) whose accepting
//! states name the globs; each glob's rules are entries of kind `*_GLOB` whose target is the
//! glob's index, so they join the decision like every other entry.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use armor_core::enforcer::{Artifact, Unenforceable};
use armor_core::event::Category;
use armor_core::posture::PostureAction;
use armor_core::rule::{PresetKind, ProtocolMatch, Rule, SHM_DIRS, SourceMatch, Target, trim_slash};
use armor_core::{Action, RuleSet};

use crate::abi::{self, DfaKey, DfaVal, RuleKey, RuleVal, RulesetMeta, kind};
use crate::dfa::{Dfa, DfaError};
use crate::hash;

/// Rules with `allowedArgs` on one executable (the same path or name and source) the kernel
/// decides at most; the others are listed as not enforced (the kernel keeps four such entries
/// per key, sixteen per exec).
pub const MAX_ARGS_RULES_PER_KEY: usize = 4;

/// Default of [`crate::Config::max_glob_states`]: states of one glob automaton at most.
pub const DEFAULT_MAX_GLOB_STATES: u32 = 1024;

/// What an entry matches, before hashing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EntryTarget {
    /// A full path (exact rules) or a directory (directory rules), `/` for the root.
    Path(String),
    /// An executable's basename.
    Name(String),
    /// A protocol, socket type or capability number.
    Number(u16),
    /// Every socket.
    Any,
    /// A glob (`matchPatterns`) as written; its index in the category's automaton is the
    /// entry's target.
    Pattern(String),
    /// An argument of a rule's `allowedArgs` (entry kind [`kind::PROC_ARG`]).
    Arg(String),
}

/// The globs of one category compiled into one automaton.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GlobGroup {
    /// `abi::CAT_PROCESS` or `abi::CAT_FILE`.
    pub category: u8,
    /// The globs, sorted; glob `i` is reported by the automaton as `i`.
    pub patterns: Vec<String>,
    /// The automaton.
    pub dfa: Dfa,
}

/// One map entry: a rule reachable through one target and one source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct Entry {
    /// `abi::kind::*`.
    pub kind: u8,
    /// The target.
    pub target: EntryTarget,
    /// The fromSource executable, `None` for any.
    pub source: Option<String>,
    /// Precedence among rules of the same verdict (lower wins), the engine's tie-break.
    pub rank: u32,
    /// Index into the compiled policy's rules.
    pub rule: u32,
    /// `abi::ACTION_*`.
    pub action: u8,
    /// `abi::F_*`.
    pub flags: u8,
}

/// The compiled BPF-LSM form of one workload's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BpfArtifact {
    /// The workload's name (for errors).
    pub workload: String,
    /// Whether the rules are a host's (applied outside every known workload).
    pub host: bool,
    /// Allow-list mode per category (process, file, network, capabilities).
    pub allow_list: [bool; 4],
    /// Default posture per category: `true` = block.
    pub posture_block: [bool; 4],
    /// The entries, sorted.
    pub entries: Vec<Entry>,
    /// The glob automata (process first, then file), one per category that has globs.
    pub globs: Vec<GlobGroup>,
    /// The (kernel `s_dev`, inode) of the exact paths and directories of [`Self::entries`]
    /// found below the workload's root when it was compiled ([`BpfArtifact::resolve`]): each
    /// also gets an inode entry, so hardlinks and bind mounts reach the same rule.
    pub inodes: BTreeMap<String, (u32, u64)>,
    /// Whether a first install waits for the workload's first exec
    /// ([`armor_core::enforcer::Start::FirstExec`]).
    pub from_first_exec: bool,
    unenforceable: Vec<Unenforceable>,
}

/// The engine's tie-break as a sort key: higher severity, then smaller policy name, namespace,
/// kind, rule index, rule id.
fn rank_key(r: &Rule, id: u32) -> impl Ord + '_ {
    (
        std::cmp::Reverse(r.severity.unwrap_or(0)),
        &r.policy.name,
        &r.policy.namespace,
        r.policy.kind,
        r.index,
        id,
    )
}

fn action_code(a: Action) -> u8 {
    match a {
        Action::Allow => abi::ACTION_ALLOW,
        Action::Audit => abi::ACTION_AUDIT,
        _ => abi::ACTION_BLOCK,
    }
}

/// Why a rule is not enforced by the kernel maps, or `None` when it is.
fn unenforceable_reason(r: &Rule) -> Option<&'static str> {
    match (&r.target, r.category) {
        (Target::Syscall { .. }, _) | (_, Category::Syscall) => {
            Some("syscall rules are audit-only events for the monitor; no LSM hook sees them")
        }
        (Target::Dns(_), _) => Some("matchDNSQueries needs DNS inspection, not an LSM hook"),
        _ => None,
    }
}

/// Kind, target, source: where an entry is looked up.
type EntryWhere = (u8, EntryTarget, Option<String>);

/// Kind, target, source, action, flags: entries equal in these cover the same operations.
type EntryKey = (u8, EntryTarget, Option<String>, u8, u8);

/// Compiles `rules` with the default glob automaton cap ([`DEFAULT_MAX_GLOB_STATES`]). Pure
/// and deterministic: the same rules give the same artefact.
pub fn compile(workload: &str, rules: &RuleSet) -> BpfArtifact {
    compile_with(workload, rules, DEFAULT_MAX_GLOB_STATES)
}

/// Compiles `rules`; a category whose glob automaton needs more than `max_glob_states` states
/// (or more than the kernel value holds) keeps its globs out of the kernel and lists each of
/// their rules as unenforceable, naming the globs.
pub fn compile_with(workload: &str, rules: &RuleSet, max_glob_states: u32) -> BpfArtifact {
    // A rule whose target path is not canonical never matches: it has no entry.
    let mut ids: Vec<(u32, &Rule)> = rules
        .rule_ids()
        .iter()
        .filter_map(|&id| rules.rule(id).map(|r| (id, r)))
        .filter(|(_, r)| r.target_can_match())
        .collect();
    ids.sort_by(|(ia, a), (ib, b)| rank_key(a, *ia).cmp(&rank_key(b, *ib)));
    let (allow_list, posture_block) = postures(rules);

    // Entries with the same key, action and flags cover exactly the same operations, so only the
    // best-ranked one can ever win: keep that one.
    let mut best: BTreeMap<EntryKey, (u32, u32)> = BTreeMap::new();
    let mut args_entries: Vec<Entry> = Vec::new();
    let mut unenforceable = Vec::new();
    // Glob text -> its regular expression (the engine's definition).
    let mut patterns: BTreeMap<String, String> = BTreeMap::new();
    for (rank, (id, r)) in ids.iter().enumerate() {
        let rank = u32::try_from(rank).unwrap_or(u32::MAX);
        let (k, target, recursive) = match entry_target(r, &mut patterns) {
            Ok(t) => t,
            Err(reason) => {
                unenforceable.push(unenforceable_entry(*id, &reason));
                continue;
            }
        };
        let flags = entry_flags(r, recursive);
        let action = action_code(r.action);
        if flags & abi::F_ARGS != 0 {
            // Each rule's argument list is its own: its entries are never merged with another
            // rule's, and each listed argument is an entry of its own.
            for source in entry_sources(r) {
                args_entries.push(Entry {
                    kind: k,
                    target: target.clone(),
                    source,
                    rank,
                    rule: *id,
                    action,
                    flags,
                });
            }
            let listed: std::collections::BTreeSet<&String> = r.allowed_args.iter().collect();
            for a in listed {
                args_entries.push(Entry {
                    kind: kind::PROC_ARG,
                    target: EntryTarget::Arg(a.clone()),
                    source: None,
                    rank,
                    rule: *id,
                    action,
                    flags: 0,
                });
            }
            continue;
        }
        for source in entry_sources(r) {
            best.entry((k, target.clone(), source, action, flags))
                .or_insert((rank, *id));
        }
        // filelessExec also names the shared-memory directories, by path.
        if matches!(r.target, Target::Preset(PresetKind::FilelessExec)) {
            for dir in SHM_DIRS {
                best.entry((
                    kind::PROC_DIR,
                    EntryTarget::Path(trim_slash(dir).to_owned()),
                    None,
                    action,
                    abi::F_RECURSIVE,
                ))
                .or_insert((rank, *id));
            }
        }
    }
    let mut entries: Vec<Entry> = best
        .into_iter()
        .map(
            |((kind, target, source, action, flags), (rank, rule))| Entry {
                kind,
                target,
                source,
                rank,
                rule,
                action,
                flags,
            },
        )
        .collect();
    // The kernel decides at most ARMOR_PENDING allowedArgs entries per exec, and a key's chain
    // holds at most ARMOR_CHAIN_MAX entries: past MAX_ARGS_RULES_PER_KEY rules with allowedArgs
    // on one path (name, source), the worse-ranked ones are listed, not carried.
    let mut per_key: BTreeMap<EntryWhere, Vec<(u32, u32)>> = BTreeMap::new();
    for e in args_entries.iter().filter(|e| e.flags & abi::F_ARGS != 0) {
        per_key
            .entry((e.kind, e.target.clone(), e.source.clone()))
            .or_default()
            .push((e.rank, e.rule));
    }
    let mut dropped = std::collections::BTreeSet::new();
    for (_, mut rules) in per_key {
        rules.sort_unstable();
        rules.dedup();
        for &(_, rule) in rules.iter().skip(MAX_ARGS_RULES_PER_KEY) {
            dropped.insert(rule);
        }
    }
    for &rule in &dropped {
        let block = ids
            .iter()
            .any(|(id, r)| *id == rule && r.action == Action::Block);
        unenforceable.push(unenforceable_entry(
            rule,
            &format!(
                "more than {MAX_ARGS_RULES_PER_KEY} rules with allowedArgs name this executable \
                 (path, name and source alike): the kernel decides the first \
                 {MAX_ARGS_RULES_PER_KEY} by rank{}",
                if block {
                    "; this Block rule denies every exec of it, its listed arguments too"
                } else {
                    ""
                }
            ),
        ));
    }
    // A dropped Block rule still denies (every exec of the executable): fail closed.
    for e in args_entries {
        if !dropped.contains(&e.rule) {
            entries.push(e);
        } else if e.flags & abi::F_ARGS != 0 && e.action == abi::ACTION_BLOCK {
            let flags = e.flags & !abi::F_ARGS;
            let twin = entries.iter_mut().find(|x| {
                (x.kind, &x.target, &x.source, x.action, x.flags)
                    == (e.kind, &e.target, &e.source, e.action, flags)
            });
            match twin {
                Some(x) if x.rank <= e.rank => {}
                Some(x) => {
                    x.rank = e.rank;
                    x.rule = e.rule;
                }
                None => entries.push(Entry { flags, ..e }),
            }
        }
    }
    entries.sort();
    let globs = glob_groups(
        rules,
        &mut entries,
        &patterns,
        max_glob_states,
        &mut unenforceable,
    );
    unenforceable.sort_by_key(|u| u.rule);
    BpfArtifact {
        workload: workload.to_owned(),
        host: rules.is_host(),
        allow_list,
        posture_block,
        entries,
        globs,
        inodes: BTreeMap::new(),
        from_first_exec: false,
        unenforceable,
    }
}

/// Allow-list mode and a blocking default posture, per category (process, file, network,
/// capabilities; processes follow the file posture, as in KubeArmor).
fn postures(rules: &RuleSet) -> ([bool; 4], [bool; 4]) {
    let mut allow_list = [false; 4];
    for c in Category::WITH_POSTURE {
        if let Some(slot) = c.posture_index().and_then(|i| allow_list.get_mut(i)) {
            *slot = rules.allow_list(c);
        }
    }
    let p = rules.posture();
    let posture_block = [
        p.file == PostureAction::Block,
        p.file == PostureAction::Block,
        p.network == PostureAction::Block,
        p.capabilities == PostureAction::Block,
    ];
    (allow_list, posture_block)
}

/// The entry kind, target and recursion of rule `r`, or why the kernel does not carry it. A
/// glob the automaton compiler accepts is recorded in `patterns` (text to regular expression).
fn entry_target(
    r: &Rule,
    patterns: &mut BTreeMap<String, String>,
) -> Result<(u8, EntryTarget, bool), String> {
    if let Some(reason) = unenforceable_reason(r) {
        return Err(reason.to_owned());
    }
    let file = r.category == Category::File;
    Ok(match &r.target {
        Target::Path(path) => (
            if file {
                kind::FILE_PATH
            } else {
                kind::PROC_PATH
            },
            EntryTarget::Path(trim_slash(path).to_owned()),
            false,
        ),
        Target::ExecName(n) => (kind::PROC_NAME, EntryTarget::Name(n.clone()), false),
        Target::Directory { dir, recursive } => (
            if file { kind::FILE_DIR } else { kind::PROC_DIR },
            EntryTarget::Path(trim_slash(dir).to_owned()),
            *recursive,
        ),
        Target::Protocol(ProtocolMatch::Protocol(n)) => {
            (kind::NET_PROTO, EntryTarget::Number(*n), false)
        }
        Target::Protocol(ProtocolMatch::Type(n)) => {
            (kind::NET_TYPE, EntryTarget::Number(*n), false)
        }
        Target::Protocol(_) => (kind::NET_ALL, EntryTarget::Any, false),
        Target::Capability(c) => (kind::CAP, EntryTarget::Number(u16::from(*c)), false),
        Target::Preset(p) => (
            if r.category == Category::Process {
                kind::PROC_PRESET
            } else {
                kind::FILE_PRESET
            },
            EntryTarget::Number(u16::from(p.number())),
            false,
        ),
        Target::Pattern(g) if matches!(r.category, Category::Process | Category::File) => {
            crate::dfa::check(g.regex()).map_err(|e| e.to_string())?;
            patterns.insert(g.as_str().to_owned(), g.regex().to_owned());
            (
                if file {
                    kind::FILE_GLOB
                } else {
                    kind::PROC_GLOB
                },
                EntryTarget::Pattern(g.as_str().to_owned()),
                false,
            )
        }
        _ => return Err("unknown rule target".to_owned()),
    })
}

/// The entry flags of rule `r`: readOnly (file rules), ownerOnly, recursive.
fn entry_flags(r: &Rule, recursive: bool) -> u8 {
    let mut flags = 0;
    if matches!(r.category, Category::Process | Category::File) {
        if r.read_only && r.category == Category::File {
            flags |= abi::F_READ_ONLY;
        }
        if r.owner_only {
            flags |= abi::F_OWNER_ONLY;
        }
    }
    if recursive {
        flags |= abi::F_RECURSIVE;
    }
    if r.category == Category::Process && !r.allowed_args.is_empty() {
        flags |= abi::F_ARGS;
    }
    flags
}

/// One entry per `fromSource` path of rule `r`, or one without a source.
fn entry_sources(r: &Rule) -> Vec<Option<String>> {
    if r.from_source.is_empty() {
        return vec![None];
    }
    r.from_source
        .iter()
        .filter_map(|s| match s {
            SourceMatch::Path(p) => Some(Some(p.clone())),
            _ => None,
        })
        .collect()
}

/// One automaton per category with globs (process, then file). A category whose automaton
/// does not fit keeps its globs out of the kernel: their entries are dropped and each of their
/// rules is listed in `unenforceable`, naming why.
fn glob_groups(
    rules: &RuleSet,
    entries: &mut Vec<Entry>,
    patterns: &BTreeMap<String, String>,
    max_glob_states: u32,
    unenforceable: &mut Vec<Unenforceable>,
) -> Vec<GlobGroup> {
    let mut globs = Vec::new();
    for (cat, k) in [
        (abi::CAT_PROCESS, kind::PROC_GLOB),
        (abi::CAT_FILE, kind::FILE_GLOB),
    ] {
        let texts: Vec<String> = entries
            .iter()
            .filter(|e| e.kind == k)
            .filter_map(|e| match &e.target {
                EntryTarget::Pattern(p) => Some(p.clone()),
                _ => None,
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if texts.is_empty() {
            continue;
        }
        let regexes: Vec<&str> = texts
            .iter()
            .filter_map(|t| patterns.get(t).map(String::as_str))
            .collect();
        let cap = (max_glob_states as usize).min(abi::DFA_STATES);
        match Dfa::build(&regexes, cap).and_then(|d| fits(d, cap)) {
            Ok(dfa) => globs.push(GlobGroup {
                category: cat,
                patterns: texts,
                dfa,
            }),
            Err(e) => {
                let reason = format!(
                    "the {} glob automaton of this workload does not fit: {e} \
                     (`max_glob_states` is {max_glob_states}); none of its {} globs is enforced \
                     in kernel",
                    if cat == abi::CAT_FILE {
                        "file"
                    } else {
                        "process"
                    },
                    texts.len()
                );
                let mut ids: Vec<u32> = entries
                    .iter()
                    .filter(|e| e.kind == k)
                    .map(|e| e.rule)
                    .collect();
                for (id, r) in &ids_sorted(rules) {
                    if matches!(&r.target, Target::Pattern(_)) && cat_of(r) == Some(cat) {
                        ids.push(*id);
                    }
                }
                ids.sort_unstable();
                ids.dedup();
                ids.retain(|id| !unenforceable.iter().any(|u| u.rule == *id));
                for id in ids {
                    unenforceable.push(unenforceable_entry(id, &reason));
                }
                entries.retain(|e| e.kind != k);
            }
        }
    }
    globs
}

/// The rules of `rules` with their ids.
fn ids_sorted(rules: &RuleSet) -> Vec<(u32, &Rule)> {
    rules
        .rule_ids()
        .iter()
        .filter_map(|&id| rules.rule(id).map(|r| (id, r)))
        .collect()
}

fn cat_of(r: &Rule) -> Option<u8> {
    match r.category {
        Category::Process => Some(abi::CAT_PROCESS),
        Category::File => Some(abi::CAT_FILE),
        _ => None,
    }
}

/// `dfa` when it fits the kernel's value (`struct armor_dfa`).
fn fits(dfa: Dfa, cap: usize) -> Result<Dfa, DfaError> {
    let matches: usize = dfa.accept.iter().map(Vec::len).sum();
    if dfa.states() > cap {
        return Err(DfaError::TooManyStates { limit: cap });
    }
    let cells = dfa.states() * dfa.nclasses;
    if cells > abi::DFA_CELLS || matches > abi::DFA_MATCHES {
        return Err(DfaError::TooLarge {
            states: dfa.states(),
            classes: dfa.nclasses,
            cells,
            max_cells: abi::DFA_CELLS,
            matches,
            max_matches: abi::DFA_MATCHES,
        });
    }
    Ok(dfa)
}

fn unenforceable_entry(rule: u32, reason: &str) -> Unenforceable {
    Unenforceable::new(rule, reason)
}

/// The encoded map contents of an artefact.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Encoded {
    /// The ruleset's metadata.
    pub meta: RulesetMeta,
    /// The rule entries, sorted by key (placed into the rule table and map by `table`).
    pub rules: Vec<(RuleKey, RuleVal)>,
    /// The glob automata (`armor_dfas`), process before file.
    pub dfas: Vec<(DfaKey, Box<DfaVal>)>,
}

impl BpfArtifact {
    /// Every rule the kernel does not enforce exactly as the engine decides.
    pub fn unenforceable_rules(&self) -> &[Unenforceable] {
        &self.unenforceable
    }

    /// Whether `other` carries the same rules: everything but where they were compiled for
    /// ([`Self::inodes`], resolved below a root that differs between a container's creation
    /// and its later applies) and [`Self::from_first_exec`]. An apply of the same rules
    /// changes nothing: in particular, re-applying a container's unchanged rules (a policy
    /// reload) before its first exec must not put them in force during its runtime's setup.
    pub fn same_rules(&self, other: &Self) -> bool {
        self.workload == other.workload
            && self.host == other.host
            && self.allow_list == other.allow_list
            && self.posture_block == other.posture_block
            && self.entries == other.entries
            && self.globs == other.globs
            && self.unenforceable == other.unenforceable
    }

    /// The same artefact with [`Self::inodes`] filled by `resolve` (`resolve(path) =
    /// Some((kernel s_dev, inode))`) for every exact path and directory of its entries.
    #[must_use]
    pub fn resolve(mut self, resolve: impl Fn(&str) -> Option<(u32, u64)>) -> Self {
        let mut inodes = BTreeMap::new();
        for e in &self.entries {
            if inode_kind(e.kind).is_some()
                && let EntryTarget::Path(p) = &e.target
                && !inodes.contains_key(p)
                && let Some(found) = resolve(p)
            {
                inodes.insert(p.clone(), found);
            }
        }
        self.inodes = inodes;
        self
    }

    /// The map entries with hashes under `hash_key`, for ruleset `ruleset`: the rule entries,
    /// an inode entry for each of [`Self::inodes`], the glob automata and the metadata.
    pub fn encode(&self, ruleset: u32, hash_key: u64) -> Encoded {
        let mut meta = RulesetMeta::default();
        for (i, (&a, &b)) in self.allow_list.iter().zip(&self.posture_block).enumerate() {
            if let Some(s) = meta.allow_list.get_mut(i) {
                *s = u8::from(a);
            }
            if let Some(s) = meta.posture.get_mut(i) {
                *s = u8::from(b);
            }
        }
        let mut groups: BTreeMap<RuleKey, Vec<RuleVal>> = BTreeMap::new();
        let mut dfas = Vec::new();
        for g in &self.globs {
            meta.flags |= abi::rs_glob(g.category);
            dfas.push((
                DfaKey {
                    ruleset,
                    category: u32::from(g.category),
                },
                dfa_value(&g.dfa),
            ));
        }
        for e in &self.entries {
            let cat = entry_category(e.kind);
            let target = match &e.target {
                EntryTarget::Path(p) => hash::path(hash_key, p),
                EntryTarget::Name(n) => hash::comp(hash_key, n.as_bytes()),
                EntryTarget::Number(n) => u64::from(*n),
                EntryTarget::Any => 0,
                EntryTarget::Arg(a) => hash::arg_target(hash_key, e.rule, a),
                EntryTarget::Pattern(p) => self
                    .globs
                    .iter()
                    .find(|g| g.category == cat)
                    .and_then(|g| g.patterns.binary_search(p).ok())
                    .map_or(u64::MAX, |i| i as u64),
            };
            if matches!(e.kind, kind::PROC_DIR | kind::FILE_DIR)
                && let EntryTarget::Path(p) = &e.target
            {
                let depth = hash::components(p).count().min(63);
                let slot = usize::from(e.kind == kind::FILE_DIR);
                if let Some(d) = meta.dir_depths.get_mut(slot) {
                    *d |= 1u64 << depth;
                }
            }
            if e.kind == kind::PROC_NAME {
                meta.flags |= abi::RS_NAMES;
            }
            if e.flags & abi::F_ARGS != 0 {
                meta.flags |= abi::RS_ARGS;
            }
            if matches!(e.kind, kind::PROC_PRESET | kind::FILE_PRESET)
                && let EntryTarget::Number(n) = e.target
                && let Ok(n) = u8::try_from(n)
            {
                meta.flags |= abi::rs_preset(n);
            }
            let source = match &e.source {
                Some(s) => {
                    meta.flags |= abi::rs_source(cat);
                    hash::path(hash_key, s)
                }
                None => 0,
            };
            let key = RuleKey {
                ruleset,
                kind: e.kind,
                seq: 0,
                pad: 0,
                target,
                source,
            };
            let val = RuleVal {
                rank: e.rank,
                rule: e.rule,
                action: e.action,
                flags: e.flags,
                count: 0,
                pad: 0,
                pad2: 0,
            };
            if let (Some((k, flag)), EntryTarget::Path(p)) = (inode_kind(e.kind), &e.target)
                && let Some(&(dev, ino)) = self.inodes.get(p)
            {
                meta.flags |= flag;
                let ikey = RuleKey {
                    kind: k,
                    target: hash::inode_target(dev, ino),
                    ..key
                };
                let list = groups.entry(ikey).or_default();
                if !list.contains(&val) {
                    list.push(val);
                }
            }
            groups.entry(key).or_default().push(val);
        }
        let mut rules = Vec::with_capacity(self.entries.len());
        for (key, vals) in groups {
            let count = u8::try_from(vals.len()).unwrap_or(u8::MAX);
            for (seq, mut v) in vals.into_iter().enumerate().take(usize::from(u8::MAX)) {
                let seq = u8::try_from(seq).unwrap_or(u8::MAX);
                if seq == 0 {
                    v.count = count;
                }
                rules.push((RuleKey { seq, ..key }, v));
            }
        }
        rules.sort_by_key(|a| a.0);
        Encoded { meta, rules, dfas }
    }
}

/// The inode entry kind of an exact-path or directory entry kind, with the ruleset flag it
/// sets; `None` for kinds without one.
fn inode_kind(k: u8) -> Option<(u8, u32)> {
    let cat = entry_category(k);
    match k {
        kind::PROC_PATH => Some((kind::PROC_INODE, abi::rs_inode(cat))),
        kind::FILE_PATH => Some((kind::FILE_INODE, abi::rs_inode(cat))),
        kind::PROC_DIR => Some((kind::PROC_DIR_INODE, abi::rs_dir_inode(cat))),
        kind::FILE_DIR => Some((kind::FILE_DIR_INODE, abi::rs_dir_inode(cat))),
        _ => None,
    }
}

/// The kernel's form of `dfa` (it fits: `compile` checked).
fn dfa_value(dfa: &Dfa) -> Box<DfaVal> {
    let mut v = DfaVal::boxed();
    v.nstates = u32::try_from(dfa.states()).unwrap_or(0);
    v.nclasses = u32::try_from(dfa.nclasses).unwrap_or(0);
    v.classes = dfa.classes;
    for (slot, &n) in v.next.iter_mut().zip(&dfa.next) {
        *slot = n;
    }
    let mut off = 0u32;
    for (slot, acc) in v.accept.iter_mut().zip(&dfa.accept) {
        let n = u32::try_from(acc.len()).unwrap_or(0);
        *slot = (off << 16) | n;
        for (i, &g) in acc.iter().enumerate() {
            if let Some(m) = v.matches.get_mut(off as usize + i) {
                *m = g;
            }
        }
        off += n;
    }
    v.nmatches = off;
    v
}

/// The category (`abi::CAT_*`) of an entry kind.
pub fn entry_category(k: u8) -> u8 {
    match k {
        kind::PROC_PATH
        | kind::PROC_DIR
        | kind::PROC_NAME
        | kind::PROC_INODE
        | kind::PROC_DIR_INODE => abi::CAT_PROCESS,
        kind::PROC_GLOB | kind::PROC_PRESET | kind::PROC_ARG => abi::CAT_PROCESS,
        kind::FILE_PATH
        | kind::FILE_DIR
        | kind::FILE_INODE
        | kind::FILE_DIR_INODE
        | kind::FILE_GLOB
        | kind::FILE_PRESET => abi::CAT_FILE,
        kind::NET_PROTO | kind::NET_TYPE | kind::NET_ALL => abi::CAT_NETWORK,
        _ => abi::CAT_CAPS,
    }
}

fn kind_name(k: u8) -> &'static str {
    match k {
        kind::PROC_PATH => "process-path",
        kind::PROC_DIR => "process-dir",
        kind::PROC_NAME => "process-name",
        kind::FILE_PATH => "file-path",
        kind::FILE_DIR => "file-dir",
        kind::NET_PROTO => "net-protocol",
        kind::NET_TYPE => "net-type",
        kind::NET_ALL => "net-all",
        kind::CAP => "capability",
        kind::PROC_INODE => "process-inode",
        kind::FILE_INODE => "file-inode",
        kind::PROC_GLOB => "process-glob",
        kind::FILE_GLOB => "file-glob",
        kind::PROC_PRESET => "process-preset",
        kind::FILE_PRESET => "file-preset",
        kind::PROC_ARG => "process-arg",
        _ => "unknown",
    }
}

fn action_name(a: u8) -> &'static str {
    match a {
        abi::ACTION_ALLOW => "allow",
        abi::ACTION_AUDIT => "audit",
        _ => "block",
    }
}

impl Artifact for BpfArtifact {
    fn render(&self) -> String {
        let mut s = String::new();
        let cats = ["process", "file", "network", "capabilities"];
        let _ = writeln!(
            s,
            "workload {} ({})",
            self.workload,
            if self.host { "host" } else { "container" }
        );
        for (i, c) in cats.iter().enumerate() {
            let al = self.allow_list.get(i).copied().unwrap_or(false);
            let pb = self.posture_block.get(i).copied().unwrap_or(false);
            let _ = writeln!(
                s,
                "category {c}: allow-list {}, posture {}",
                if al { "on" } else { "off" },
                if pb { "block" } else { "audit" }
            );
        }
        for e in &self.entries {
            let target = match &e.target {
                EntryTarget::Path(p)
                | EntryTarget::Name(p)
                | EntryTarget::Pattern(p)
                | EntryTarget::Arg(p) => {
                    format!("`{p}`")
                }
                EntryTarget::Number(n)
                    if matches!(e.kind, kind::PROC_PRESET | kind::FILE_PRESET) =>
                {
                    PresetKind::ALL
                        .into_iter()
                        .find(|p| u16::from(p.number()) == *n)
                        .map_or_else(|| n.to_string(), |p| p.name().to_owned())
                }
                EntryTarget::Number(n) => n.to_string(),
                EntryTarget::Any => "*".to_owned(),
            };
            let mut q = Vec::new();
            if e.flags & abi::F_READ_ONLY != 0 {
                q.push("readOnly");
            }
            if e.flags & abi::F_OWNER_ONLY != 0 {
                q.push("ownerOnly");
            }
            if e.flags & abi::F_RECURSIVE != 0 {
                q.push("recursive");
            }
            if e.flags & abi::F_ARGS != 0 {
                q.push("allowedArgs");
            }
            let _ = writeln!(
                s,
                "entry {} {} source {} -> rule {} rank {} {}{}",
                kind_name(e.kind),
                target,
                e.source
                    .as_deref()
                    .map_or("*".to_owned(), |x| format!("`{x}`")),
                e.rule,
                e.rank,
                action_name(e.action),
                if q.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", q.join(", "))
                }
            );
        }
        for g in &self.globs {
            let matches: usize = g.dfa.accept.iter().map(Vec::len).sum();
            let _ = writeln!(
                s,
                "glob automaton {}: {} globs, {} states, {} byte classes, {} matches",
                if g.category == abi::CAT_FILE {
                    "file"
                } else {
                    "process"
                },
                g.patterns.len(),
                g.dfa.states(),
                g.dfa.nclasses,
                matches
            );
        }
        for u in &self.unenforceable {
            let _ = writeln!(s, "unenforceable rule {}: {}", u.rule, u.reason);
        }
        s
    }

    fn unenforceable(&self) -> &[Unenforceable] {
        &self.unenforceable
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
