//! A user-space evaluator of AppArmor's semantics over a generated [`Profile`]: the offline
//! conformance oracle, and the map from a kernel denial (profile + operation + path) back to
//! the rule that caused it.
//!
//! Per profile: an access is allowed when every requested permission is granted by some allow
//! line and denied by no deny line (deny wins inside a profile). A task in a stack is allowed
//! only when every profile of the stack allows. `audit` allow lines that grant the access make
//! an audit record.

use armor_core::engine::RuleSet;
use armor_core::event::{Event, Operation};
use armor_core::glob::Glob;
use armor_core::rule::ProtocolMatch;
use armor_core::{Rule, Verdict};
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};

use crate::profile::{Body, Line, Perms, Profile, unquote};

/// An operation as AppArmor mediates it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AaOp {
    /// An open or write-like operation on a path.
    File {
        /// The path.
        path: String,
        /// Whether it writes.
        write: bool,
        /// Whether it reads.
        read: bool,
        /// Whether the acting uid owns the file.
        owner: bool,
    },
    /// An exec of a path.
    Exec {
        /// The executed path.
        path: String,
        /// Whether the acting uid owns the file.
        owner: bool,
    },
    /// A socket.
    Socket {
        /// Socket type name (`stream`).
        sock_type: String,
        /// Protocol name (`tcp`) or empty.
        protocol: String,
    },
    /// A capability (lowercase, without `cap_`).
    Capability(String),
}

impl AaOp {
    /// The operation a profile decides for an engine event, or `None` for operations AppArmor
    /// does not mediate (syscalls) and capabilities its parser does not name. The file's owner
    /// is the acting uid's when the event says so.
    pub fn from_event(e: &Event) -> Option<Self> {
        let owner = |o: Option<u32>| o == Some(e.uid);
        Some(match &e.operation {
            Operation::File {
                path,
                access,
                owner: o,
            } => Self::File {
                path: path.clone(),
                read: access.read,
                write: access.write,
                owner: owner(*o),
            },
            Operation::Process { path, owner: o } => Self::Exec {
                path: path.clone(),
                owner: owner(*o),
            },
            Operation::Network(s) => Self::Socket {
                sock_type: sock_type_name(s.sock_type),
                protocol: protocol_name(s.protocol),
            },
            Operation::Capability(c) => Self::Capability(
                armor_core::event::caps::name(*c)?
                    .to_ascii_lowercase()
                    .trim_start_matches("cap_")
                    .to_owned(),
            ),
            _ => return None,
        })
    }
}

/// The model's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AaDecision {
    /// Allow, Audit (an audit line granted it) or Block.
    pub verdict: Verdict,
    /// The rule of the deny or audit line that explains it; `None` for an implicit denial
    /// (DefaultPosture) or an allow.
    pub rule: Option<u32>,
}

/// The compiled globs of one section's lines (same order as the lines).
#[derive(Clone)]
struct Compiled {
    globs: Vec<Option<Regex>>,
}

/// The evaluator of one workload's profile. It owns a copy of the profile and the compiled
/// globs of every line, so the enforcer builds it once per installed profile and reuses it for
/// every denial record.
#[derive(Clone)]
pub struct Model {
    profile: Profile,
    sections: Vec<Compiled>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("sections", &self.sections.len())
            .finish()
    }
}

fn glob_of(line: &Line) -> Option<&str> {
    match &line.body {
        Body::File { glob, .. } | Body::Exec { glob, .. } => Some(unquote(glob)),
        _ => None,
    }
}

fn compile_glob(g: &str) -> Option<Regex> {
    let glob = Glob::new(g).ok()?;
    Regex::new(glob.regex()).ok()
}

/// The engine's tie-break between rules of one verdict: which of two rule ids wins.
pub trait Precedence {
    /// Whether rule `a` beats rule `b`.
    fn better(&self, a: u32, b: u32) -> bool;
}

/// The engine's order: for Allow and Block rules `fromSource` rules first (source
/// specificity), then severity, policy name, namespace, kind, rule order, id. Audit rules have no
/// specificity step (the engine picks the reported Audit rule by severity, name, namespace, rule
/// order only), so for them the first component is neutral.
impl Precedence for RuleSet {
    fn better(&self, a: u32, b: u32) -> bool {
        let (Some(ra), Some(rb)) = (self.rule(a), self.rule(b)) else {
            return false;
        };
        let key = |r: &Rule, id: u32| {
            (
                r.action != armor_core::Action::Audit && r.from_source.is_empty(),
                std::cmp::Reverse(r.severity.unwrap_or(0)),
                r.policy.name.clone(),
                r.policy.namespace.clone(),
                r.policy.kind,
                r.index,
                id,
            )
        };
        key(ra, a) < key(rb, b)
    }
}

/// The engine's order over the rules of one profile, kept without the rule set (what the
/// enforcer holds to map kernel denials back to rules).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranking {
    /// Rule id → position, best first.
    pos: BTreeMap<u32, usize>,
}

impl Ranking {
    /// The order of `ids` under `rules`' precedence.
    pub fn of(rules: &RuleSet, ids: impl IntoIterator<Item = u32>) -> Self {
        let mut v: Vec<u32> = ids
            .into_iter()
            .collect::<BTreeSet<u32>>()
            .into_iter()
            .collect();
        v.sort_by(|a, b| {
            if rules.better(*a, *b) {
                std::cmp::Ordering::Less
            } else if rules.better(*b, *a) {
                std::cmp::Ordering::Greater
            } else {
                a.cmp(b)
            }
        });
        Self {
            pos: v.into_iter().enumerate().map(|(i, id)| (id, i)).collect(),
        }
    }

    /// The number of ranked rules.
    pub fn len(&self) -> usize {
        self.pos.len()
    }

    /// Whether no rule is ranked.
    pub fn is_empty(&self) -> bool {
        self.pos.is_empty()
    }
}

impl Precedence for Ranking {
    fn better(&self, a: u32, b: u32) -> bool {
        match (self.pos.get(&a), self.pos.get(&b)) {
            (Some(x), Some(y)) => x < y,
            _ => false,
        }
    }
}

fn pick<P: Precedence + ?Sized>(rules: &P, slot: &mut Option<u32>, id: u32) {
    match slot {
        Some(cur) if !rules.better(id, *cur) => {}
        _ => *slot = Some(id),
    }
}

impl Model {
    /// Compiles the globs of every line.
    pub fn new(profile: &Profile) -> Self {
        let sections = profile
            .sections
            .iter()
            .map(|s| Compiled {
                globs: s
                    .lines
                    .iter()
                    .map(|l| glob_of(l).and_then(compile_glob))
                    .collect(),
            })
            .collect();
        Self {
            profile: profile.clone(),
            sections,
        }
    }

    /// The profile this model evaluates.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The profiles confining a task whose executable is `source` (started under the main
    /// profile): the main profile, the source's child, or both when the child is stacked.
    pub fn label(&self, source: Option<&str>) -> Vec<&str> {
        let child = source.and_then(|s| {
            self.profile
                .sections
                .iter()
                .skip(1)
                .find(|c| c.source.as_deref() == Some(s))
        });
        match (self.profile.main(), child) {
            (Some(m), Some(c)) if c.stacked => vec![m.name.as_str(), c.name.as_str()],
            (_, Some(c)) => vec![c.name.as_str()],
            (Some(m), None) => vec![m.name.as_str()],
            (None, None) => Vec::new(),
        }
    }

    /// Whether `line` (compiled glob `re`) matches `op`.
    fn matches(line: &Line, re: Option<&Regex>, op: &AaOp) -> bool {
        match (&line.body, op) {
            (Body::File { owner, .. }, AaOp::File { path, owner: o, .. })
            | (Body::Exec { owner, .. }, AaOp::Exec { path, owner: o }) => {
                owner.admits(*o) && re.is_some_and(|r| r.is_match(path))
            }
            (
                Body::Network { what },
                AaOp::Socket {
                    sock_type,
                    protocol,
                },
            ) => what.is_empty() || what == sock_type || what == protocol,
            (Body::Capability { name }, AaOp::Capability(c)) => name.is_empty() || name == c,
            _ => false,
        }
    }

    /// What a file line's permissions contribute to `op`'s request (`None`: not relevant).
    fn perms_of(line: &Line) -> Perms {
        match &line.body {
            Body::File { perms, .. } => *perms,
            _ => Perms::ALL,
        }
    }

    /// Decides `op` inside one section: `Err(Some(rule))` explicit deny, `Err(None)` implicit
    /// denial, `Ok(audit rule)` allowed.
    pub fn decide_in<P: Precedence + ?Sized>(
        &self,
        rules: &P,
        section: &str,
        op: &AaOp,
    ) -> Result<Option<u32>, Option<u32>> {
        let Some((sec, c)) = self
            .profile
            .sections
            .iter()
            .zip(&self.sections)
            .find(|(s, _)| s.name == section)
        else {
            return Err(None);
        };
        let (need_r, need_w) = match op {
            AaOp::File { read, write, .. } => (*read, *write),
            _ => (true, false),
        };
        let relevant = |p: Perms| match op {
            AaOp::File { .. } => (need_r && p.read) || (need_w && p.write),
            _ => true,
        };
        let (mut got_r, mut got_w) = (false, false);
        let mut deny: Option<u32> = None;
        let mut denied = false;
        let mut audit: Option<u32> = None;
        for (line, re) in sec.lines.iter().zip(&c.globs) {
            if !Self::matches(line, re.as_ref(), op) {
                continue;
            }
            let p = Self::perms_of(line);
            if !relevant(p) {
                continue;
            }
            if line.deny {
                denied = true;
                if let Some(r) = line.rule {
                    pick(rules, &mut deny, r);
                }
                continue;
            }
            match op {
                AaOp::File { .. } => {
                    got_r |= p.read;
                    got_w |= p.write;
                }
                _ => {
                    got_r = true;
                    got_w = true;
                }
            }
            if line.audit
                && let Some(r) = line.rule
            {
                pick(rules, &mut audit, r);
            }
        }
        if denied {
            return Err(deny);
        }
        if (need_r && !got_r) || (need_w && !got_w) {
            return Err(None);
        }
        Ok(audit)
    }

    /// Decides `op` for a task whose executable is `source`.
    pub fn decide<P: Precedence + ?Sized>(
        &self,
        rules: &P,
        source: Option<&str>,
        op: &AaOp,
    ) -> AaDecision {
        let mut block: Option<Option<u32>> = None;
        let mut audit: Option<u32> = None;
        for name in self.label(source) {
            match self.decide_in(rules, name, op) {
                Err(r) => {
                    block = match (block, r) {
                        (None, r) => Some(r),
                        (Some(None), r) => Some(r),
                        (Some(Some(a)), Some(b)) => {
                            Some(Some(if rules.better(b, a) { b } else { a }))
                        }
                        (Some(Some(a)), None) => Some(Some(a)),
                    };
                }
                Ok(Some(r)) => pick(rules, &mut audit, r),
                Ok(None) => {}
            }
        }
        match (block, audit) {
            (Some(rule), _) => AaDecision {
                verdict: Verdict::Block,
                rule,
            },
            (None, Some(r)) => AaDecision {
                verdict: Verdict::Audit,
                rule: Some(r),
            },
            (None, None) => AaDecision {
                verdict: Verdict::Allow,
                rule: None,
            },
        }
    }
}

/// The AppArmor name of a socket type number.
pub fn sock_type_name(t: u16) -> String {
    ProtocolMatch::Type(t).name().to_owned()
}

/// The AppArmor name of a protocol number (empty for 0 / unknown).
pub fn protocol_name(p: u16) -> String {
    match ProtocolMatch::Protocol(p).name() {
        "protocol" => String::new(),
        n => n.to_owned(),
    }
}
