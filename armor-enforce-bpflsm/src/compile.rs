//! `compile`: one workload's [`RuleSet`] → the map entries the kernel programs read.
//!
//! The artefact keeps paths as text (so [`Artifact::render`] is stable and reviewable); the
//! hashes are computed by [`BpfArtifact::encode`] with the key of the loaded enforcer.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use armor_core::enforcer::{Artifact, Unenforceable};
use armor_core::event::Category;
use armor_core::posture::PostureAction;
use armor_core::rule::{ProtocolMatch, Rule, SourceMatch, Target};
use armor_core::{Action, RuleSet};

use crate::abi::{self, RuleKey, RuleVal, RulesetMeta, kind};
use crate::hash;

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

fn trim_slash(p: &str) -> &str {
    if p.len() > 1 {
        p.strip_suffix('/').unwrap_or(p)
    } else {
        p
    }
}

fn cat_index(c: Category) -> Option<usize> {
    match c {
        Category::Process => Some(0),
        Category::File => Some(1),
        Category::Network => Some(2),
        Category::Capabilities => Some(3),
        _ => None,
    }
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
        (Target::Pattern(_), _) => Some(
            "matchPatterns globs are not compiled into the kernel maps yet (a glob automaton \
             would join the rule map under its own kind)",
        ),
        (Target::Syscall { .. }, _) | (_, Category::Syscall) => {
            Some("syscall rules are audit-only events for the monitor; no LSM hook sees them")
        }
        (Target::Dns(_), _) => Some("matchDNSQueries needs DNS inspection, not an LSM hook"),
        _ => None,
    }
}

/// Kind, target, source, action, flags: entries equal in these cover the same operations.
type EntryKey = (u8, EntryTarget, Option<String>, u8, u8);

/// Compiles `rules`. Pure and deterministic: the same rules give the same artefact.
pub fn compile(workload: &str, rules: &RuleSet) -> BpfArtifact {
    let mut ids: Vec<(u32, &Rule)> = rules
        .rule_ids()
        .iter()
        .filter_map(|&id| rules.rule(id).map(|r| (id, r)))
        .collect();
    ids.sort_by(|(ia, a), (ib, b)| rank_key(a, *ia).cmp(&rank_key(b, *ib)));

    let mut allow_list = [false; 4];
    for c in [
        Category::Process,
        Category::File,
        Category::Network,
        Category::Capabilities,
    ] {
        if let Some(slot) = cat_index(c).and_then(|i| allow_list.get_mut(i)) {
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

    // Entries with the same key, action and flags cover exactly the same operations, so only the
    // best-ranked one can ever win: keep that one.
    let mut best: BTreeMap<EntryKey, (u32, u32)> = BTreeMap::new();
    let mut unenforceable = Vec::new();
    for (rank, (id, r)) in ids.iter().enumerate() {
        let rank = u32::try_from(rank).unwrap_or(u32::MAX);
        if let Some(reason) = unenforceable_reason(r) {
            unenforceable.push(unenforceable_entry(*id, reason));
            continue;
        }
        let file = r.category == Category::File;
        let (k, target, recursive) = match &r.target {
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
            _ => {
                unenforceable.push(unenforceable_entry(*id, "unknown rule target"));
                continue;
            }
        };
        let mut flags = 0;
        if matches!(r.category, Category::Process | Category::File) {
            if r.read_only && file {
                flags |= abi::F_READ_ONLY;
            }
            if r.owner_only {
                flags |= abi::F_OWNER_ONLY;
            }
        }
        if recursive {
            flags |= abi::F_RECURSIVE;
        }
        let action = action_code(r.action);
        let sources: Vec<Option<String>> = if r.from_source.is_empty() {
            vec![None]
        } else {
            r.from_source
                .iter()
                .filter_map(|s| match s {
                    SourceMatch::Path(p) => Some(Some(p.clone())),
                    _ => None,
                })
                .collect()
        };
        for source in sources {
            best.entry((k, target.clone(), source, action, flags))
                .or_insert((rank, *id));
        }
    }
    let entries = best
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
    BpfArtifact {
        workload: workload.to_owned(),
        host: rules.is_host(),
        allow_list,
        posture_block,
        entries,
        unenforceable,
    }
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
    /// The rule map entries, sorted by key.
    pub rules: Vec<(RuleKey, RuleVal)>,
}

impl BpfArtifact {
    /// Every rule the kernel does not enforce exactly as the engine decides.
    pub fn unenforceable_rules(&self) -> &[Unenforceable] {
        &self.unenforceable
    }

    /// The map entries with hashes under `hash_key`, for ruleset `ruleset`.
    pub fn encode(&self, ruleset: u32, hash_key: u64) -> Encoded {
        self.encode_with(ruleset, hash_key, |_| None)
    }

    /// Like [`BpfArtifact::encode`], plus (device, inode) entries for every exact path and
    /// directory that `resolve` finds (`resolve(path) = Some((kernel s_dev, inode))`), so
    /// hardlinks and bind mounts reach the same rule.
    pub fn encode_with(
        &self,
        ruleset: u32,
        hash_key: u64,
        resolve: impl Fn(&str) -> Option<(u32, u64)>,
    ) -> Encoded {
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
        for e in &self.entries {
            let cat = entry_category(e.kind);
            let target = match &e.target {
                EntryTarget::Path(p) => hash::path(hash_key, p),
                EntryTarget::Name(n) => hash::comp(hash_key, n.as_bytes()),
                EntryTarget::Number(n) => u64::from(*n),
                EntryTarget::Any => 0,
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
            let inode_kind = match e.kind {
                kind::PROC_PATH => Some((kind::PROC_INODE, abi::rs_inode(cat))),
                kind::FILE_PATH => Some((kind::FILE_INODE, abi::rs_inode(cat))),
                kind::PROC_DIR => Some((kind::PROC_DIR_INODE, abi::rs_dir_inode(cat))),
                kind::FILE_DIR => Some((kind::FILE_DIR_INODE, abi::rs_dir_inode(cat))),
                _ => None,
            };
            if let (Some((k, flag)), EntryTarget::Path(p)) = (inode_kind, &e.target)
                && let Some((dev, ino)) = resolve(p)
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
        Encoded { meta, rules }
    }
}

/// The category (`abi::CAT_*`) of an entry kind.
pub fn entry_category(k: u8) -> u8 {
    match k {
        kind::PROC_PATH
        | kind::PROC_DIR
        | kind::PROC_NAME
        | kind::PROC_INODE
        | kind::PROC_DIR_INODE => abi::CAT_PROCESS,
        kind::FILE_PATH | kind::FILE_DIR | kind::FILE_INODE | kind::FILE_DIR_INODE => abi::CAT_FILE,
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
                EntryTarget::Path(p) | EntryTarget::Name(p) => format!("`{p}`"),
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
