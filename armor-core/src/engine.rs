//! The reference decision engine: compile once, match many.
//!
//! ```text
//! YAML ──PolicySet::parse──▶ PolicySet ──CompiledPolicy::build──▶ CompiledPolicy
//!        (all diagnostics)     (validated)                          │ rule_set(workload, posture)
//!                                                                   ▼
//!                                                   Arc<RuleSet> ──decide(&Event)──▶ Decision
//! ```
//!
//! A [`RuleSet`] holds the rules of one workload sorted into the cheapest strategy: exact paths
//! and executable names in hash maps, directories in a hash map probed at every `/` of the path
//! (only at depths that carry a directory rule), globs in compiled regex sets grouped by the
//! directory their literal prefix names (built on first use), protocols,
//! capabilities and syscalls in small tables. [`RuleSet::decide`] never fails and never panics;
//! it allocates only when a path reaches a glob group (the regex set's match list, and the
//! group's compilation the first time). Rule sets are cached per (selected policies, posture), so every container of
//! a deployment shares one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use regex::RegexSet;
use rustc_hash::FxHashMap;

use crate::diag::{Diagnostics, LoadError};
use crate::event::{Category, Event, Operation, net};
use crate::model::{Action, Policy};
use crate::posture::{Posture, PostureAction};
use crate::rule::{
    PolicyInfo, ProtocolMatch, Rule, SyscallPath, Target, dir_matches, normalize, trim_slash,
};
use crate::selector::CompiledSelector;
use crate::yaml::LoadLimits;

/// Limits and options for loading and compiling policies (untrusted input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Bounds on each YAML input.
    pub load_limits: LoadLimits,
    /// Most rules a compiled policy may hold.
    pub max_rules: usize,
    /// Most bytes one `matchPatterns` glob may compile to (its automaton); a larger one fails
    /// [`CompiledPolicy::build`] with [`BuildError::GlobTooLarge`] naming the rule. Checked when
    /// the policy is built, so a decision never compiles anything unbounded.
    pub glob_size_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            load_limits: LoadLimits::default(),
            max_rules: 1_000_000,
            glob_size_limit: 256 << 10,
        }
    }
}

/// A validated set of policies: what [`CompiledPolicy::build`] takes.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: Vec<Policy>,
    /// The normalised rules of each policy, once computed (by `finish` or `push`).
    rules: Vec<Vec<Rule>>,
    diagnostics: Diagnostics,
}

impl PolicySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses and validates `text` (one or more YAML documents) named `file` in diagnostics.
    /// Fails with every diagnostic when any of them is an error.
    pub fn parse(text: &str, file: &str) -> Result<Self, LoadError> {
        let mut set = Self::new();
        set.add_text(text, file, &Config::default());
        set.finish()
    }

    /// Reads every file and every `*.yaml`/`*.yml` below every directory of `paths` (sorted), and
    /// validates the whole set. I/O errors become diagnostics too.
    pub fn load_paths<P: AsRef<Path>>(paths: &[P], config: &Config) -> Result<Self, LoadError> {
        let mut set = Self::new();
        for p in paths {
            let mut files = Vec::new();
            if let Err(e) = collect_files(p.as_ref(), &mut files) {
                set.diagnostics.push(io_diag(p.as_ref(), &e));
            }
            for f in files {
                match std::fs::read_to_string(&f) {
                    Ok(text) => set.add_text(&text, &f.display().to_string(), config),
                    Err(e) => set.diagnostics.push(io_diag(&f, &e)),
                }
            }
        }
        set.finish()
    }

    /// Adds the documents of `text` without failing; call [`PolicySet::finish`] afterwards.
    pub fn add_text(&mut self, text: &str, file: &str, config: &Config) {
        let file: Arc<str> = Arc::from(file);
        match crate::yaml::load(text, &config.load_limits) {
            Err(e) => self.diagnostics.push(crate::diag::Diagnostic {
                level: crate::diag::Level::Error,
                location: e.pos.location(&file),
                policy: None,
                field: String::new(),
                message: e.message,
            }),
            Ok(docs) => {
                for doc in docs {
                    if let Some(p) = crate::parse::policy(&file, &doc.root, &mut self.diagnostics) {
                        self.policies.push(p);
                    }
                }
            }
        }
    }

    /// Runs the set-wide checks (duplicate policy names, shadowed and never-matching rules) and
    /// returns the set, or every diagnostic if there is an error.
    pub fn finish(mut self) -> Result<Self, LoadError> {
        self.rules = crate::validate::check_set(&self.policies, &mut self.diagnostics);
        self.diagnostics.sort();
        if self.diagnostics.has_errors() {
            return Err(LoadError {
                diagnostics: self.diagnostics,
            });
        }
        Ok(self)
    }

    /// The policies, in load order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The warnings of the load (a set with errors is never returned).
    pub fn diagnostics(&self) -> &Diagnostics {
        &self.diagnostics
    }

    /// Adds an already-built policy (skipping YAML). It is validated again by
    /// [`CompiledPolicy::build`] only for set-wide limits; callers that build policies in code
    /// own their correctness.
    pub fn push(&mut self, policy: Policy) {
        if self.rules.len() == self.policies.len() {
            self.rules.push(normalize(&policy));
        }
        self.policies.push(policy);
    }
}

fn io_diag(path: &Path, e: &std::io::Error) -> crate::diag::Diagnostic {
    crate::diag::Diagnostic {
        level: crate::diag::Level::Error,
        location: crate::diag::Location::new(Arc::from(path.display().to_string()), 1, 1),
        policy: None,
        field: String::new(),
        message: format!("cannot read: {e}"),
    }
}

fn collect_files(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            if e.is_dir() {
                collect_files(&e, out)?;
            } else if matches!(e.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
                out.push(e);
            }
        }
        Ok(())
    } else {
        std::fs::metadata(p)?;
        out.push(p.to_path_buf());
        Ok(())
    }
}

/// Why [`CompiledPolicy::build`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// More rules than [`Config::max_rules`].
    #[error("{count} rules exceed the limit of {limit}")]
    TooManyRules {
        /// Rules in the set.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A glob compiles to an automaton larger than [`Config::glob_size_limit`].
    #[error(
        "{location}: in policy {policy}: {rule}: pattern `{pattern}` compiles to more than \
         {limit} bytes"
    )]
    GlobTooLarge {
        /// `kind namespace/name` of the policy.
        policy: String,
        /// The rule's field path (`file.matchPatterns[3]`).
        rule: String,
        /// Where the rule is written (`file:line:col`).
        location: String,
        /// The pattern as written.
        pattern: String,
        /// The limit, in bytes.
        limit: usize,
    },
}

/// Bytes a compiled automaton may take per byte of a glob's regular expression, with a margin:
/// a pattern whose `1 KiB + regex length × this` is within the limit fits without compiling it
/// (the property test `glob_size_bound_holds` checks the bound on generated globs).
const GLOB_BYTES_PER_REGEX_BYTE: usize = 1024;

/// Most bytes one lazily built glob set may take (sets larger are split), and the lazy DFA
/// cache of each set.
const GLOB_SET_LIMIT: usize = 64 << 20;
const GLOB_CACHE_LIMIT: usize = 8 << 20;

/// An upper bound of what `regex` compiles to, in bytes.
fn glob_size_bound(regex: &str) -> usize {
    regex
        .len()
        .saturating_add(1)
        .saturating_mul(GLOB_BYTES_PER_REGEX_BYTE)
}

/// Checks that every glob of `rules` compiles within `limit`: a cheap bound first, the real
/// compiler only for a pattern whose bound exceeds it.
fn check_glob_sizes(rules: &[Rule], limit: usize) -> Result<(), BuildError> {
    for r in rules {
        let Target::Pattern(g) = &r.target else {
            continue;
        };
        if glob_size_bound(g.regex()) <= limit {
            continue;
        }
        if regex::RegexSetBuilder::new([g.regex()])
            .size_limit(limit)
            .dfa_size_limit(GLOB_CACHE_LIMIT)
            .build()
            .is_err()
        {
            return Err(BuildError::GlobTooLarge {
                policy: format!("{} {}", r.policy.kind, r.policy.display_name()),
                rule: r.origin.field.clone(),
                location: r.origin.location.to_string(),
                pattern: g.as_str().to_string(),
                limit,
            });
        }
    }
    Ok(())
}

struct PolicyEntry {
    selector: CompiledSelector,
    rules: std::ops::Range<usize>,
    info: Arc<PolicyInfo>,
    /// Raw AppArmor lines (`spec.apparmor`).
    apparmor: Option<String>,
    /// Presets with their effective action (Block when absent, like rules).
    presets: Vec<(String, Action)>,
}

/// The immutable part of a compiled policy, shared with every [`RuleSet`] made from it.
struct Shared {
    config: Config,
    rules: Vec<Rule>,
    policies: Vec<PolicyEntry>,
}

impl Shared {
    fn rule(&self, id: u32) -> Option<&Rule> {
        self.rules.get(id as usize)
    }
}

/// The shared part plus the rule-set cache. Rule sets hold only [`Shared`], never `Inner`, so the
/// cache does not keep itself alive through them.
struct Inner {
    shared: Arc<Shared>,
    cache: Mutex<RuleSetCache>,
}

/// Rule sets by (selected policies, posture, host).
type RuleSetCache = FxHashMap<(Vec<u32>, Posture, bool), Arc<RuleSet>>;

/// An immutable, compiled set of policies. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct CompiledPolicy {
    inner: Arc<Inner>,
}

impl fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("policies", &self.inner.shared.policies.len())
            .field("rules", &self.inner.shared.rules.len())
            .finish()
    }
}

impl CompiledPolicy {
    /// Compiles `set` with the default [`Config`].
    pub fn build(set: &PolicySet) -> Result<Self, BuildError> {
        Self::build_with(set, Config::default())
    }

    /// Compiles `set` with `config`.
    pub fn build_with(set: &PolicySet, config: Config) -> Result<Self, BuildError> {
        let mut rules = Vec::new();
        let mut policies = Vec::with_capacity(set.policies.len());
        let normalized = set.rules.len() == set.policies.len();
        for (i, p) in set.policies.iter().enumerate() {
            let start = rules.len();
            match set.rules.get(i).filter(|_| normalized) {
                Some(r) => rules.extend(r.iter().cloned()),
                None => rules.extend(normalize(p)),
            }
            if rules.len() > config.max_rules {
                return Err(BuildError::TooManyRules {
                    count: rules.len(),
                    limit: config.max_rules,
                });
            }
            policies.push(PolicyEntry {
                selector: CompiledSelector::new(p),
                rules: start..rules.len(),
                info: Arc::new(PolicyInfo::of(p)),
                apparmor: p.spec.apparmor.clone(),
                presets: p
                    .spec
                    .presets
                    .iter()
                    .map(|pr| (pr.name.clone(), pr.action.unwrap_or(Action::Block)))
                    .collect(),
            });
        }
        check_glob_sizes(&rules, config.glob_size_limit)?;
        tracing::debug!(
            policies = policies.len(),
            rules = rules.len(),
            strategies = ?strategy_counts(&rules),
            "policy compiled"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    config,
                    rules,
                    policies,
                }),
                cache: Mutex::new(FxHashMap::default()),
            }),
        })
    }

    /// Every rule, in policy order.
    pub fn rules(&self) -> &[Rule] {
        &self.inner.shared.rules
    }

    /// The indices (into [`CompiledPolicy::rules`]) of the rules that apply to `workload`.
    pub fn selected_rules(&self, workload: &crate::workload::Workload) -> Vec<u32> {
        let mut out = Vec::new();
        for p in &self.inner.shared.policies {
            if p.selector.selects(workload) {
                out.extend(p.rules.clone().filter_map(|i| u32::try_from(i).ok()));
            }
        }
        out
    }

    /// The rules of a workload that every policy of its kind selects: every host policy
    /// (`host`) or every container policy (KubeArmorPolicy and KubeArmorClusterPolicy), under
    /// `posture`. What an offline report (`armorctl validate --enforcer`) compiles: a real
    /// workload gets a subset of these rules.
    pub fn rule_set_of_every_policy(&self, host: bool, posture: Posture) -> Arc<RuleSet> {
        let selected = self.policies_where(|p| p.info.kind.is_host() == host);
        self.cached_rule_set(selected, posture, host)
    }

    /// The compiled rules of `workload` under `posture`, shared with every workload that the same
    /// policies select.
    pub fn rule_set(&self, workload: &crate::workload::Workload, posture: Posture) -> Arc<RuleSet> {
        let selected = self.policies_where(|p| p.selector.selects(workload));
        self.cached_rule_set(selected, posture, workload.is_host())
    }

    /// The indices (load order) of the policies for which `keep` holds.
    fn policies_where(&self, keep: impl Fn(&PolicyEntry) -> bool) -> Vec<u32> {
        self.inner
            .shared
            .policies
            .iter()
            .enumerate()
            .filter(|(_, p)| keep(p))
            .filter_map(|(i, _)| u32::try_from(i).ok())
            .collect()
    }

    /// The rule set of the policies `selected` (indices in load order), from the cache.
    fn cached_rule_set(&self, selected: Vec<u32>, posture: Posture, host: bool) -> Arc<RuleSet> {
        let key = (selected, posture, host);
        if let Some(rs) = self.inner.cache.lock().get(&key) {
            return rs.clone();
        }
        let ids: Vec<u32> = key
            .0
            .iter()
            .filter_map(|&p| self.inner.shared.policies.get(p as usize))
            .flat_map(|p| p.rules.clone())
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        let rs = Arc::new(RuleSet::new(
            self.inner.shared.clone(),
            key.0.clone(),
            ids,
            posture,
            host,
        ));
        self.inner.cache.lock().insert(key, rs.clone());
        rs
    }
}

/// The verdict of a decision. Deliberately exhaustive: adding a verdict must break callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[expect(clippy::exhaustive_enums, reason = "callers must handle every verdict")]
pub enum Verdict {
    /// The operation passes silently.
    Allow,
    /// The operation passes and is reported.
    Audit,
    /// The operation is denied and reported.
    Block,
}

impl Verdict {
    /// `allow`, `audit` or `block`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Audit => "audit",
            Self::Block => "block",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason<'a> {
    /// A rule won (Block, Allow or Audit).
    Rule(&'a Rule),
    /// The category is in allow-list mode and nothing covered the operation.
    DefaultPosture(PostureAction),
    /// No rule covered the operation and the category is not in allow-list mode.
    NoRule,
}

/// The decision for one event: a verdict and the one thing to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision<'a> {
    /// Allow, Audit or Block.
    pub verdict: Verdict,
    /// The winning rule or the posture.
    pub reason: Reason<'a>,
    /// The index of the winning rule in [`CompiledPolicy::rules`] (`None` for the posture and
    /// when no rule covered the operation): what an enforcer's list of rules it does not carry
    /// ([`crate::enforcer::Unenforceable::rule`]) is compared with.
    pub rule_id: Option<u32>,
    /// The operation's category.
    pub category: Category,
    /// Whether the workload is a host (alerts are `MatchedHostPolicy`).
    pub host: bool,
}

/// The policy fields of the alert a decision raises (KubeArmor field names in the docs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlertFields<'a> {
    /// `PolicyName` (`DefaultPosture` for the posture).
    pub policy_name: &'a str,
    /// The policy's namespace (KSP), not a KubeArmor field.
    pub policy_namespace: Option<&'a str>,
    /// `Severity` (empty in JSON when absent).
    pub severity: Option<u8>,
    /// `Tags`.
    pub tags: &'a [String],
    /// `Message`.
    pub message: Option<&'a str>,
    /// `Action`: `Block` or `Audit`.
    pub action: &'static str,
    /// `Result`: `Permission denied` or `Passed`.
    pub result: &'static str,
    /// `Type`: `MatchedPolicy` or `MatchedHostPolicy`.
    pub alert_type: &'static str,
    /// `Operation`.
    pub operation: &'static str,
    /// The winning rule (none for the posture).
    pub rule: Option<&'a Rule>,
}

/// `DefaultPosture`: the PolicyName of posture alerts.
pub const DEFAULT_POSTURE: &str = "DefaultPosture";

impl<'a> Decision<'a> {
    /// Whether the operation is denied.
    pub fn is_blocked(&self) -> bool {
        self.verdict == Verdict::Block
    }

    /// `Permission denied` or `Passed`.
    pub fn result(&self) -> &'static str {
        if self.is_blocked() {
            "Permission denied"
        } else {
            "Passed"
        }
    }

    /// The alert this decision raises (none for Allow).
    pub fn alert(&self) -> Option<AlertFields<'a>> {
        if self.verdict == Verdict::Allow {
            return None;
        }
        let action = if self.verdict == Verdict::Block {
            "Block"
        } else {
            "Audit"
        };
        let alert_type = if self.host {
            "MatchedHostPolicy"
        } else {
            "MatchedPolicy"
        };
        let base = AlertFields {
            policy_name: DEFAULT_POSTURE,
            policy_namespace: None,
            severity: None,
            tags: &[],
            message: None,
            action,
            result: self.result(),
            alert_type,
            operation: self.category.operation_name(),
            rule: None,
        };
        Some(match self.reason {
            Reason::Rule(r) => AlertFields {
                policy_name: &r.policy.name,
                policy_namespace: r.policy.namespace.as_deref(),
                severity: r.severity,
                tags: &r.tags,
                message: r.message.as_deref(),
                rule: Some(r),
                ..base
            },
            Reason::DefaultPosture(_) | Reason::NoRule => base,
        })
    }
}

/// Which precedence step settled a decision (for `explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// A Block rule won among the rules of the highest source specificity.
    BlockRule {
        /// Whether the winning rules had a matching `fromSource`.
        from_source: bool,
    },
    /// An Allow rule won among the rules of the highest source specificity.
    AllowRule {
        /// Whether the winning rules had a matching `fromSource`.
        from_source: bool,
    },
    /// Nothing covered the operation in allow-list mode: the posture decided.
    Posture(PostureAction),
    /// Nothing covered the operation outside allow-list mode.
    NotCovered,
}

/// One rule considered for an event, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Considered<'a> {
    /// The rule.
    pub rule: &'a Rule,
    /// Whether it covers the event (target, source and qualifiers).
    pub covers: bool,
    /// Why it does or does not cover it.
    pub why: String,
}

/// A decision with everything that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Explanation<'a> {
    /// The decision itself.
    pub decision: Decision<'a>,
    /// The precedence step that settled it.
    pub step: Step,
    /// Whether the category is in allow-list mode for the workload.
    pub allow_list: bool,
    /// The workload's posture.
    pub posture: Posture,
    /// Every rule whose target matched, covering or not.
    pub considered: Vec<Considered<'a>>,
    /// Rules of this category the engine does not evaluate (pts, allowedArgs, DNS).
    pub not_evaluated: Vec<String>,
}

/// The globs anchored at one directory. Compiled on first use: most groups of a large rule set
/// are never reached by any path, and compiling every group up front dominated build time.
struct GlobGroup {
    patterns: Vec<String>,
    ids: Vec<u32>,
    sets: std::sync::OnceLock<Vec<(RegexSet, Vec<u32>)>>,
}

/// Directory rules of one directory: `(rule id, recursive)`.
type DirEntries = Vec<(u32, bool)>;

#[derive(Default)]
struct PathIndex {
    exact: FxHashMap<Box<str>, Vec<u32>>,
    names: FxHashMap<Box<str>, Vec<u32>>,
    /// Key: the directory without its trailing `/` (`""` for `/`).
    dirs: FxHashMap<Box<str>, DirEntries>,
    /// Bit d set: a directory rule exists at depth d (number of `/` in the key); bit 63 = 63+.
    dir_depths: u64,
    /// Globs grouped by the directory their literal prefix ends in (key as for `dirs`): a glob
    /// can only match paths below that directory, so a group's set runs only when the path
    /// passes through it.
    globs: FxHashMap<Box<str>, GlobGroup>,
    glob_depths: u64,
    glob_limit: usize,
}

#[derive(Default)]
struct CategoryIndex {
    paths: PathIndex,
    /// Network, capability and syscall rules (small; scanned).
    others: Vec<u32>,
    /// Capability rules by number.
    caps: FxHashMap<u8, Vec<u32>>,
    /// Syscall rules by name.
    syscalls: FxHashMap<Box<str>, Vec<u32>>,
    allow_list: bool,
}

/// The compiled rules of one workload (or of every workload the same policies select).
pub struct RuleSet {
    shared: Arc<Shared>,
    /// The selected policies (indices in load order).
    policy_ids: Vec<u32>,
    ids: Vec<u32>,
    posture: Posture,
    host: bool,
    cats: [CategoryIndex; 5],
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.ids.len())
            .field("posture", &self.posture)
            .field("host", &self.host)
            .finish()
    }
}

fn depth_bit(depth: usize) -> u64 {
    1u64 << depth.min(63)
}

/// A rule's precedence key among rules of the same verdict: higher severity, then smaller policy
/// name, namespace, kind, then earlier rule, then compile order (total).
fn better(a: &Rule, a_id: u32, b: &Rule, b_id: u32) -> bool {
    let sa = a.severity.unwrap_or(0);
    let sb = b.severity.unwrap_or(0);
    if sa != sb {
        return sa > sb;
    }
    let ka = (
        &a.policy.name,
        &a.policy.namespace,
        a.policy.kind,
        a.index,
        a_id,
    );
    let kb = (
        &b.policy.name,
        &b.policy.namespace,
        b.policy.kind,
        b.index,
        b_id,
    );
    ka < kb
}

fn pick<'a>(slot: &mut Option<(&'a Rule, u32)>, r: &'a Rule, id: u32) {
    match slot {
        Some((cur, cid)) if !better(r, id, cur, *cid) => {}
        _ => *slot = Some((r, id)),
    }
}

impl RuleSet {
    fn new(
        policy: Arc<Shared>,
        policy_ids: Vec<u32>,
        ids: Vec<u32>,
        posture: Posture,
        host: bool,
    ) -> Self {
        let mut cats: [CategoryIndex; 5] = Default::default();
        let mut globs: [BTreeMap<String, Vec<(String, u32)>>; 5] = Default::default();
        for &id in &ids {
            let Some(rule) = policy.rule(id) else {
                continue;
            };
            if !rule.engine_evaluated() {
                continue;
            }
            let ci = rule.category.index();
            let Some(cat) = cats.get_mut(ci) else {
                continue;
            };
            if rule.action == Action::Allow && rule.category != Category::Syscall {
                cat.allow_list = true;
            }
            match &rule.target {
                Target::Path(p) => cat
                    .paths
                    .exact
                    .entry(trim_slash(p).into())
                    .or_default()
                    .push(id),
                Target::ExecName(n) => cat
                    .paths
                    .names
                    .entry(n.as_str().into())
                    .or_default()
                    .push(id),
                Target::Directory { dir, recursive } => {
                    let key = if dir == "/" { "" } else { trim_slash(dir) };
                    cat.paths.dir_depths |= depth_bit(key.matches('/').count());
                    cat.paths
                        .dirs
                        .entry(key.into())
                        .or_default()
                        .push((id, *recursive));
                }
                Target::Pattern(g) => {
                    if let Some(groups) = globs.get_mut(ci) {
                        let lit = g.literal_prefix();
                        let anchor = lit.rfind('/').and_then(|i| lit.get(..i)).unwrap_or("");
                        groups
                            .entry(anchor.to_string())
                            .or_default()
                            .push((g.regex().to_string(), id));
                    }
                }
                Target::Capability(c) => cat.caps.entry(*c).or_default().push(id),
                Target::Syscall { names, .. } => {
                    for n in names {
                        cat.syscalls.entry(n.as_str().into()).or_default().push(id);
                    }
                }
                Target::Protocol(_) | Target::Dns(_) => cat.others.push(id),
            }
        }
        let limit = policy.config.glob_size_limit.max(GLOB_SET_LIMIT);
        for (cat, groups) in cats.iter_mut().zip(globs) {
            cat.paths.glob_limit = limit;
            for (anchor, list) in groups {
                let (patterns, ids): (Vec<String>, Vec<u32>) = list.into_iter().unzip();
                cat.paths.glob_depths |= depth_bit(anchor.matches('/').count());
                cat.paths.globs.insert(
                    anchor.as_str().into(),
                    GlobGroup {
                        patterns,
                        ids,
                        sets: std::sync::OnceLock::new(),
                    },
                );
            }
        }
        Self {
            shared: policy,
            policy_ids,
            ids,
            posture,
            host,
            cats,
        }
    }

    /// The rules of this set (indices into [`CompiledPolicy::rules`]).
    pub fn rule_ids(&self) -> &[u32] {
        &self.ids
    }

    /// The rules of this set.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.ids.iter().filter_map(|&i| self.shared.rule(i))
    }

    fn selected_policies(&self) -> impl Iterator<Item = &PolicyEntry> {
        self.policy_ids
            .iter()
            .filter_map(|&i| self.shared.policies.get(i as usize))
    }

    /// The raw `spec.apparmor` lines of the selected policies, with their policy, in load order
    /// (only the AppArmor enforcer uses them; the engine does not decide them).
    pub fn native_apparmor(&self) -> impl Iterator<Item = (&PolicyInfo, &str)> {
        self.selected_policies()
            .filter_map(|p| p.apparmor.as_deref().map(|a| (&*p.info, a)))
    }

    /// The presets of the selected policies with their effective action (`Block` when absent).
    pub fn presets(&self) -> impl Iterator<Item = (&PolicyInfo, &str, Action)> {
        self.selected_policies().flat_map(|p| {
            p.presets
                .iter()
                .map(move |(name, action)| (&*p.info, name.as_str(), *action))
        })
    }

    /// The rule with index `id` (an index into [`CompiledPolicy::rules`]).
    pub fn rule(&self, id: u32) -> Option<&Rule> {
        self.shared.rule(id)
    }

    /// The posture the set was compiled with.
    pub fn posture(&self) -> Posture {
        self.posture
    }

    /// Whether the set belongs to a host.
    pub fn is_host(&self) -> bool {
        self.host
    }

    /// Whether `category` is in allow-list mode.
    pub fn allow_list(&self, category: Category) -> bool {
        self.cats
            .get(category.index())
            .is_some_and(|c| c.allow_list)
    }

    fn posture_of(&self, category: Category) -> PostureAction {
        match category {
            Category::Process | Category::File => self.posture.file,
            Category::Network => self.posture.network,
            Category::Capabilities => self.posture.capabilities,
            Category::Syscall => PostureAction::Audit,
        }
    }

    /// Calls `f` with every rule whose *target* matches the operation.
    fn for_each_target_match(&self, op: &Operation, mut f: impl FnMut(u32)) {
        let Some(cat) = self.cats.get(op.category().index()) else {
            return;
        };
        match op {
            Operation::Process { path, .. } | Operation::File { path, .. } => {
                let path = trim_slash(path);
                let idx = &cat.paths;
                if let Some(ids) = idx.exact.get(path) {
                    ids.iter().copied().for_each(&mut f);
                }
                if !idx.names.is_empty()
                    && matches!(op, Operation::Process { .. })
                    && let Some(name) = path.rsplit('/').next()
                    && let Some(ids) = idx.names.get(name)
                {
                    ids.iter().copied().for_each(&mut f);
                }
                if !idx.dirs.is_empty() {
                    dir_walk(idx, path, &mut f);
                }
                if !idx.globs.is_empty() {
                    glob_walk(idx, path, &mut f);
                }
            }
            Operation::Network(_) => cat.others.iter().copied().for_each(&mut f),
            Operation::Capability(c) => {
                if let Some(ids) = cat.caps.get(c) {
                    ids.iter().copied().for_each(&mut f);
                }
            }
            Operation::Syscall { name, .. } => {
                if let Some(ids) = cat.syscalls.get(name.as_str()) {
                    ids.iter().copied().for_each(&mut f);
                }
            }
        }
    }

    /// Decides `event`. Never fails, never panics; allocates only for glob candidates.
    pub fn decide(&self, event: &Event) -> Decision<'_> {
        self.run(event, None).0
    }

    /// Decides `event` and explains every step.
    pub fn explain(&self, event: &Event) -> Explanation<'_> {
        let mut considered = Vec::new();
        let (decision, step) = self.run(event, Some(&mut considered));
        let category = event.operation.category();
        let not_evaluated = self
            .rules()
            .filter(|r| r.category == category)
            .filter_map(|r| {
                let what = if !r.engine_evaluated() {
                    "matchDNSQueries"
                } else if r.pts.is_some() {
                    "pts"
                } else if !r.allowed_args.is_empty() {
                    "allowedArgs"
                } else {
                    return None;
                };
                Some(format!(
                    "{} {} ({what} is not evaluated by the engine)",
                    r.policy.display_name(),
                    r.origin.field
                ))
            })
            .collect();
        Explanation {
            decision,
            step,
            allow_list: self.allow_list(category),
            posture: self.posture,
            considered,
            not_evaluated,
        }
    }

    fn run<'s>(
        &'s self,
        event: &Event,
        mut trace: Option<&mut Vec<Considered<'s>>>,
    ) -> (Decision<'s>, Step) {
        let op = &event.operation;
        let category = op.category();
        // [specificity] → best rule of that action.
        let mut block: [Option<(&Rule, u32)>; 2] = [None, None];
        let mut allow: [Option<(&Rule, u32)>; 2] = [None, None];
        let mut audit: Option<(&Rule, u32)> = None;
        self.for_each_target_match(op, |id| {
            let Some(rule) = self.shared.rule(id) else {
                return;
            };
            let cover = covers(rule, event);
            if let Some(t) = trace.as_deref_mut() {
                t.push(Considered {
                    rule,
                    covers: cover.is_ok(),
                    why: match &cover {
                        Ok(s) => s.to_string(),
                        Err(s) => s.to_string(),
                    },
                });
            }
            let Ok(kind) = cover else {
                return;
            };
            let spec = usize::from(kind == Covers::FromSource);
            match rule.action {
                Action::Block => {
                    if let Some(slot) = block.get_mut(spec) {
                        pick(slot, rule, id);
                    }
                }
                Action::Allow => {
                    if let Some(slot) = allow.get_mut(spec) {
                        pick(slot, rule, id);
                    }
                }
                Action::Audit => pick(&mut audit, rule, id),
            }
        });
        let mk = |verdict, reason, rule_id| Decision {
            verdict,
            reason,
            rule_id,
            category,
            host: self.host,
        };
        for spec in [1usize, 0] {
            let from_source = spec == 1;
            if let Some(&Some((r, id))) = block.get(spec) {
                return (
                    mk(Verdict::Block, Reason::Rule(r), Some(id)),
                    Step::BlockRule { from_source },
                );
            }
            if let Some(&Some((r, id))) = allow.get(spec) {
                let step = Step::AllowRule { from_source };
                return match audit {
                    Some((a, aid)) => (mk(Verdict::Audit, Reason::Rule(a), Some(aid)), step),
                    None => (mk(Verdict::Allow, Reason::Rule(r), Some(id)), step),
                };
            }
        }
        if self.allow_list(category) {
            let posture = self.posture_of(category);
            let step = Step::Posture(posture);
            return match (posture, audit) {
                (PostureAction::Block, _) => (
                    mk(Verdict::Block, Reason::DefaultPosture(posture), None),
                    step,
                ),
                (_, Some((a, aid))) => (mk(Verdict::Audit, Reason::Rule(a), Some(aid)), step),
                (_, None) => (
                    mk(Verdict::Audit, Reason::DefaultPosture(posture), None),
                    step,
                ),
            };
        }
        match audit {
            Some((a, aid)) => (
                mk(Verdict::Audit, Reason::Rule(a), Some(aid)),
                Step::NotCovered,
            ),
            None => (mk(Verdict::Allow, Reason::NoRule, None), Step::NotCovered),
        }
    }
}

/// Probes the directory map at every `/` of `path` (and at `path` itself), only at depths that
/// carry a directory rule.
fn dir_walk(idx: &PathIndex, path: &str, f: &mut impl FnMut(u32)) {
    let bytes = path.as_bytes();
    let last_slash = path.rfind('/');
    let mut depth = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'/' {
            continue;
        }
        if idx.dir_depths & depth_bit(depth) != 0
            && let Some(prefix) = path.get(..i)
            && let Some(entries) = idx.dirs.get(prefix)
        {
            let direct = Some(i) == last_slash;
            for &(id, recursive) in entries {
                if recursive || direct {
                    f(id);
                }
            }
        }
        depth += 1;
    }
    // The directory itself (`/etc` for `dir: /etc/`); `/` is the key "".
    let own = if path == "/" { "" } else { path };
    let own_depth = if path == "/" { 0 } else { depth };
    if idx.dir_depths & depth_bit(own_depth) != 0
        && let Some(entries) = idx.dirs.get(own)
    {
        for &(id, _) in entries {
            f(id);
        }
    }
}

/// Runs the glob groups anchored at every `/` of `path` (only at depths that carry one).
fn glob_walk(idx: &PathIndex, path: &str, f: &mut impl FnMut(u32)) {
    let mut depth = 0usize;
    for (i, &b) in path.as_bytes().iter().enumerate() {
        if b != b'/' {
            continue;
        }
        if idx.glob_depths & depth_bit(depth) != 0
            && let Some(prefix) = path.get(..i)
            && let Some(group) = idx.globs.get(prefix)
        {
            // The size limit is split among parts, so a group always compiles; see
            // `build_glob_sets`.
            let sets = group
                .sets
                .get_or_init(|| build_glob_sets(&group.patterns, &group.ids, idx.glob_limit));
            for (set, ids) in sets {
                for m in set.matches(path).iter() {
                    if let Some(&id) = ids.get(m) {
                        f(id);
                    }
                }
            }
        }
        depth += 1;
    }
}

/// Compiles `pats` into as few regex sets as fit `limit`, halving a group that does not fit.
/// Every pattern was checked to compile within [`Config::glob_size_limit`] when the policy was
/// built, so a single pattern compiles within `limit` (the larger of that and
/// [`GLOB_SET_LIMIT`]) and no rule is left out; the lazy DFA of each set is bounded too.
fn build_glob_sets(pats: &[String], ids: &[u32], limit: usize) -> Vec<(RegexSet, Vec<u32>)> {
    let built = regex::RegexSetBuilder::new(pats)
        .size_limit(limit)
        .dfa_size_limit(GLOB_CACHE_LIMIT)
        .build();
    match built {
        Ok(set) => vec![(set, ids.to_vec())],
        Err(e) if pats.len() > 1 => {
            tracing::debug!(error = %e, patterns = pats.len(), "glob set too large; splitting it");
            let mid = pats.len() / 2;
            let (pl, pr) = pats.split_at(mid);
            let (il, ir) = ids.split_at(mid);
            let mut out = build_glob_sets(pl, il, limit);
            out.extend(build_glob_sets(pr, ir, limit));
            out
        }
        Err(e) => {
            // Not reachable: the pattern compiled within a smaller limit when the policy was
            // built. Said loudly if it ever happens.
            tracing::error!(error = %e, rules = ?ids, "glob rule cannot be compiled: it will not match");
            Vec::new()
        }
    }
}

/// How a rule covers an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Covers {
    AnySource,
    FromSource,
}

impl fmt::Display for Covers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AnySource => "covers (no fromSource)",
            Self::FromSource => "covers (fromSource matched)",
        })
    }
}

/// Whether a rule whose target matched covers the event: source, qualifiers, syscall path.
fn covers(rule: &Rule, event: &Event) -> Result<Covers, &'static str> {
    let kind = if rule.from_source.is_empty() {
        Covers::AnySource
    } else {
        match &event.source {
            Some(src) if rule.from_source.iter().any(|s| s.matches(src)) => Covers::FromSource,
            Some(_) => return Err("fromSource does not list the acting executable"),
            None => return Err("fromSource set but the acting executable is unknown"),
        }
    };
    match (&event.operation, &rule.target) {
        (Operation::Network(sock), Target::Protocol(m)) if !protocol_matches(*m, sock) => {
            return Err("protocol does not match");
        }
        (Operation::Syscall { path, .. }, Target::Syscall { path: want, .. }) => match (want, path)
        {
            (None, _) => {}
            (Some(_), None) => return Err("syscall has no path"),
            (Some(SyscallPath::File(p)), Some(have)) => {
                if trim_slash(have) != p.as_str() {
                    return Err("syscall path does not match");
                }
            }
            (Some(SyscallPath::Dir { dir, recursive }), Some(have)) => {
                if !dir_matches(dir, *recursive, have) {
                    return Err("syscall path is not under the directory");
                }
            }
        },
        _ => {}
    }
    if !rule.has_qualifiers() {
        return Ok(kind);
    }
    let (write, owner, uid) = match &event.operation {
        Operation::File { access, owner, .. } => (access.write, *owner, event.uid),
        Operation::Process { owner, .. } => (false, *owner, event.uid),
        _ => return Ok(kind),
    };
    let read_ok = !(rule.read_only && rule.category == Category::File && write);
    let owner_ok = !rule.owner_only || owner == Some(uid);
    let permitted = read_ok && owner_ok;
    let covered = match rule.action {
        Action::Allow => permitted,
        Action::Block | Action::Audit => !permitted,
    };
    if covered {
        Ok(kind)
    } else if rule.action == Action::Allow {
        Err("outside the rule's permitted set (readOnly/ownerOnly)")
    } else {
        Err("inside the rule's permitted set (readOnly/ownerOnly)")
    }
}

fn protocol_matches(m: ProtocolMatch, sock: &crate::event::Socket) -> bool {
    match m {
        ProtocolMatch::All => true,
        ProtocolMatch::Type(t) => sock.sock_type == t,
        ProtocolMatch::Protocol(p) => {
            let have = sock.effective_protocol();
            have == p
                || (p == net::IPPROTO_ICMP
                    && sock.family == net::AF_INET6
                    && have == net::IPPROTO_ICMPV6)
        }
    }
}

/// Summary counts of a compiled policy per strategy, for logs and `armorctl`.
pub fn strategy_counts(rules: &[Rule]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for r in rules {
        let k = match r.target {
            Target::Path(_) => "exact",
            Target::ExecName(_) => "execname",
            Target::Directory { .. } => "directory",
            Target::Pattern(_) => "glob",
            Target::Protocol(_) => "protocol",
            Target::Capability(_) => "capability",
            Target::Syscall { .. } => "syscall",
            Target::Dns(_) => "dns",
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Container;

    /// Issue 16, finding 10: before, a glob was compiled on the first event that reached its
    /// group, without a limit when it did not fit; now the build fails, naming the rule.
    #[test]
    fn a_glob_over_the_size_limit_is_a_located_build_error() {
        let long = format!("/data/{}", "?[^a]*".repeat(30));
        let text = format!(
            "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {{name: p, namespace: n}}\nspec:\n  selector: {{matchLabels: {{a: b}}}}\n  file:\n    matchPatterns:\n    - pattern: /ok/*.txt\n    - pattern: \"{long}\"\n"
        );
        let set = PolicySet::parse(&text, "big.yaml").unwrap();
        let config = Config {
            glob_size_limit: 16 << 10,
            ..Config::default()
        };
        let Err(e) = CompiledPolicy::build_with(&set, config) else {
            panic!("a glob over the limit was accepted");
        };
        let BuildError::GlobTooLarge {
            policy,
            rule,
            location,
            pattern,
            limit,
            ..
        } = &e
        else {
            panic!("{e:?}");
        };
        assert_eq!(policy, "KubeArmorPolicy n/p");
        assert_eq!(rule, "file.matchPatterns[1]");
        assert_eq!(location, "big.yaml:9:7");
        assert_eq!(pattern, &long);
        assert_eq!(*limit, 16 << 10);
        assert!(
            e.to_string().starts_with(
                "big.yaml:9:7: in policy KubeArmorPolicy n/p: file.matchPatterns[1]: pattern"
            ),
            "{e}"
        );
        // The default limit takes it, and the decision matches it.
        let compiled = CompiledPolicy::build(&set).unwrap();
        let rs = compiled.rule_set(
            &Container::new("n", "c").label("a", "b").into(),
            Posture::default(),
        );
        let path = format!("/data/{}", "xbyy".repeat(30));
        let d = rs.decide(&Event::open(path, crate::event::Access::READ, None));
        assert_eq!(d.verdict, Verdict::Block);
        assert_eq!(d.rule_id, Some(1));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

        /// A glob within its size bound compiles within it: what lets the build skip
        /// compiling patterns whose bound is under the limit.
        #[test]
        fn glob_size_bound_holds(parts in proptest::collection::vec(proptest::sample::select(&[
            "a", "\u{e9}", "\u{10ffff}", "?", "*", "**", "/", "[^a]", "[a-z]", "[^\u{80}-\u{10fffe}]",
            "[\u{1}-\u{10ffff}]", "{a,b}", "{x,[^y],\u{7ff}}", ".", "\\*",
        ][..]), 1..60)) {
            let text = format!("/{}", parts.concat());
            if let Ok(g) = crate::glob::Glob::new(&text) {
                let bound = glob_size_bound(g.regex());
                let built = regex::RegexSetBuilder::new([g.regex()])
                    .size_limit(bound)
                    .dfa_size_limit(GLOB_CACHE_LIMIT)
                    .build();
                proptest::prop_assert!(built.is_ok(), "{text}: bound {bound}: {built:?}");
            }
        }
    }

    #[test]
    fn rule_sets_do_not_keep_the_compiled_policy_alive() {
        let set = PolicySet::parse(
            "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: p, namespace: n}\nspec:\n  selector: {matchLabels: {a: b}}\n  file: {matchPaths: [{path: /x}]}\n",
            "t.yaml",
        )
        .unwrap();
        let compiled = CompiledPolicy::build(&set).unwrap();
        let weak = Arc::downgrade(&compiled.inner);
        let rs = compiled.rule_set(
            &Container::new("n", "c").label("a", "b").into(),
            Posture::default(),
        );
        let again = compiled.rule_set(
            &Container::new("n", "d").label("a", "b").into(),
            Posture::default(),
        );
        assert!(
            Arc::ptr_eq(&rs, &again),
            "same policies, same posture: one shared rule set"
        );
        drop(compiled);
        assert!(
            weak.upgrade().is_none(),
            "the cache must not form a cycle through its rule sets"
        );
        assert_eq!(
            rs.rules().count(),
            1,
            "a rule set outlives its compiled policy"
        );
    }

    #[test]
    fn native_apparmor_lines_and_presets_follow_selection() {
        let set = PolicySet::parse(
            "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: p, namespace: n}\nspec:\n  selector: {matchLabels: {a: b}}\n  presets: [{name: filelessExec}, {name: protectEnv, action: Audit}]\n  apparmor: |\n    deny /etc/hostname w,\n---\napiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: q, namespace: n}\nspec:\n  selector: {matchLabels: {a: c}}\n  apparmor: deny /x r,\n",
            "t.yaml",
        )
        .unwrap();
        let compiled = CompiledPolicy::build(&set).unwrap();
        let rs = compiled.rule_set(
            &Container::new("n", "c").label("a", "b").into(),
            Posture::default(),
        );
        let lines: Vec<(&str, &str)> = rs
            .native_apparmor()
            .map(|(p, l)| (p.name.as_str(), l))
            .collect();
        assert_eq!(lines, [("p", "deny /etc/hostname w,\n")]);
        let presets: Vec<(&str, Action)> = rs.presets().map(|(_, n, a)| (n, a)).collect();
        assert_eq!(
            presets,
            [
                ("filelessExec", Action::Block),
                ("protectEnv", Action::Audit)
            ]
        );
    }
}
