//! One workload's rules indexed by the cheapest strategy ([`RuleSet`]), and deciding with them.

use super::*;

/// The globs anchored at one directory. Compiled on first use: most groups of a large rule set
/// are never reached by any path, and compiling every group up front dominated build time.
pub(super) struct GlobGroup {
    pub(super) patterns: Vec<String>,
    pub(super) ids: Vec<u32>,
    pub(super) sets: std::sync::OnceLock<Vec<(RegexSet, Vec<u32>)>>,
}

/// Directory rules of one directory: `(rule id, recursive)`.
pub(super) type DirEntries = Vec<(u32, bool)>;

#[derive(Default)]
pub(super) struct PathIndex {
    pub(super) exact: FxHashMap<Box<str>, Vec<u32>>,
    pub(super) names: FxHashMap<Box<str>, Vec<u32>>,
    /// Key: the directory without its trailing `/` (`""` for `/`).
    pub(super) dirs: FxHashMap<Box<str>, DirEntries>,
    /// Bit d set: a directory rule exists at depth d (number of `/` in the key); bit 63 = 63+.
    pub(super) dir_depths: u64,
    /// Globs grouped by the directory their literal prefix ends in (key as for `dirs`): a glob
    /// can only match paths below that directory, so a group's set runs only when the path
    /// passes through it.
    pub(super) globs: FxHashMap<Box<str>, GlobGroup>,
    pub(super) glob_depths: u64,
    pub(super) glob_limit: usize,
}

#[derive(Default)]
pub(super) struct CategoryIndex {
    pub(super) paths: PathIndex,
    /// Network, capability and syscall rules (small; scanned).
    pub(super) others: Vec<u32>,
    /// Capability rules by number.
    pub(super) caps: FxHashMap<u8, Vec<u32>>,
    /// Syscall rules by name.
    pub(super) syscalls: FxHashMap<Box<str>, Vec<u32>>,
    /// Preset rules (a few at most; their condition is checked by `covers`).
    pub(super) presets: Vec<u32>,
    pub(super) allow_list: bool,
}

/// The compiled rules of one workload (or of every workload the same policies select).
pub struct RuleSet {
    pub(super) shared: Arc<Shared>,
    /// The selected policies (indices in load order).
    pub(super) policy_ids: Vec<u32>,
    pub(super) ids: Vec<u32>,
    pub(super) posture: Posture,
    pub(super) host: bool,
    pub(super) cats: [CategoryIndex; 5],
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

pub(super) fn depth_bit(depth: usize) -> u64 {
    1u64 << depth.min(63)
}

/// A rule's precedence key among rules of the same verdict: higher severity, then smaller policy
/// name, namespace, kind, then earlier rule, then compile order (total).
pub(super) fn better(a: &Rule, a_id: u32, b: &Rule, b_id: u32) -> bool {
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

pub(super) fn pick<'a>(slot: &mut Option<(&'a Rule, u32)>, r: &'a Rule, id: u32) {
    match slot {
        Some((cur, cid)) if !better(r, id, cur, *cid) => {}
        _ => *slot = Some((r, id)),
    }
}

impl RuleSet {
    pub(super) fn new(
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
                Target::Preset(_) => cat.presets.push(id),
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

    pub(super) fn selected_policies(&self) -> impl Iterator<Item = &PolicyEntry> {
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

    pub(super) fn posture_of(&self, category: Category) -> PostureAction {
        match category {
            Category::Process | Category::File => self.posture.file,
            Category::Network => self.posture.network,
            Category::Capabilities => self.posture.capabilities,
            Category::Syscall => PostureAction::Audit,
        }
    }

    /// Calls `f` with every rule whose *target* matches the operation.
    pub(super) fn for_each_target_match(&self, op: &Operation, mut f: impl FnMut(u32)) {
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
            // Only presets name it.
            Operation::ExecMemory { .. } => {}
        }
        cat.presets.iter().copied().for_each(&mut f);
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

    pub(super) fn run<'s>(
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
        if self.allow_list(category) && op.under_posture() {
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
pub(super) fn dir_walk(idx: &PathIndex, path: &str, f: &mut impl FnMut(u32)) {
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
pub(super) fn glob_walk(idx: &PathIndex, path: &str, f: &mut impl FnMut(u32)) {
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

/// How a rule covers an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Covers {
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
pub(super) fn covers(rule: &Rule, event: &Event) -> Result<Covers, &'static str> {
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
        (_, Target::Preset(p)) if !p.matches(event) => {
            return Err("the preset's condition does not hold");
        }
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
    let args_ok = rule.category != Category::Process || rule.args_permitted(event.args.as_deref());
    let permitted = read_ok && owner_ok && args_ok;
    let covered = match rule.action {
        Action::Allow => permitted,
        Action::Block | Action::Audit => !permitted,
    };
    if covered {
        Ok(kind)
    } else if rule.action == Action::Allow {
        Err("outside the rule's permitted set (readOnly/ownerOnly/allowedArgs)")
    } else {
        Err("inside the rule's permitted set (readOnly/ownerOnly/allowedArgs)")
    }
}

pub(super) fn protocol_matches(m: ProtocolMatch, sock: &crate::event::Socket) -> bool {
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
