//! Set-wide and semantic checks, run after every document has been parsed.
//!
//! * the same policy (kind, namespace, name) defined twice: error;
//! * an Allow rule that can never allow anything because a Block rule of the same policy (or of
//!   a policy with the very same selector) covers everything it covers at the same or higher
//!   source specificity — Block wins, path specificity is not a step: warning;
//! * the same rule twice in one policy: warning;
//! * a path that is not canonical (`//`, `/./`, `/../`): the kernel reports resolved paths, so
//!   the rule never matches: warning;
//! * a selector that can never match (`In` and `NotIn` of the same value): warning;
//! * a policy without any rule: warning.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use crate::diag::{Diagnostic, Diagnostics, Level, Location};
use crate::model::{Action, Operator, Policy};
use crate::rule::{Rule, SourceMatch, Target};

fn warn(diags: &mut Diagnostics, loc: &Location, policy: String, field: &str, message: String) {
    diags.push(Diagnostic {
        level: Level::Warning,
        location: loc.clone(),
        policy: Some(policy),
        field: field.to_string(),
        message,
    });
}

/// Whether a Block rule `b` beats an Allow rule `a` on everything `a` covers.
fn sources_dominate(a: &[SourceMatch], b: &[SourceMatch]) -> bool {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => true,
        (false, false) => a.iter().all(|s| b.contains(s)),
        // A source-specific Allow beats a source-less Block; a source-specific Block leaves
        // other sources to the Allow.
        _ => false,
    }
}

/// Runs the set-wide checks and returns the normalised rules of each policy.
pub(crate) fn check_set(policies: &[Policy], normalized: &[Vec<Rule>], diags: &mut Diagnostics) {
    duplicate_definitions(policies, diags);
    let groups = per_policy(policies, normalized, diags);
    shadowed_allows(&groups, diags);
    duplicate_rules(&groups, diags);
}

/// A policy defined twice (same kind, name and namespace) is an error at the second.
fn duplicate_definitions(policies: &[Policy], diags: &mut Diagnostics) {
    // Duplicate definitions.
    let mut seen: BTreeMap<(String, Option<String>, &'static str), &Location> = BTreeMap::new();
    for p in policies {
        let key = (p.name.clone(), p.namespace.clone(), p.kind.as_str());
        if let Some(first) = seen.get(&key) {
            diags.push(Diagnostic {
                level: Level::Error,
                location: p.location.clone(),
                policy: Some(p.display_name()),
                field: "metadata.name".into(),
                message: format!(
                    "{} `{}` is already defined at {first}",
                    p.kind,
                    p.display_name()
                ),
            });
        } else {
            seen.insert(key, &p.location);
        }
    }
}

/// The checks of each policy on its own (no rules, non-canonical paths, selectors); returns
/// each policy with its normalised rules.
fn per_policy<'p>(
    policies: &'p [Policy],
    normalized: &'p [Vec<Rule>],
    diags: &mut Diagnostics,
) -> Vec<(&'p Policy, &'p [Rule])> {
    // Rules grouped by "applies to the same workloads": same kind, namespace and selector.
    let mut groups: Vec<(&Policy, &[Rule])> = Vec::new();
    for (p, rules) in policies.iter().zip(normalized) {
        let rules = rules.as_slice();
        if rules.is_empty()
            && p.spec.presets.is_empty()
            && p.spec.apparmor.is_none()
            && p.spec.device.match_device.is_empty()
        {
            warn(
                diags,
                &p.location,
                p.display_name(),
                "",
                "policy has no rules".into(),
            );
        }
        for r in rules {
            let path = match &r.target {
                Target::Path(p) => Some(p.as_str()),
                Target::Directory { dir, .. } => Some(dir.as_str()),
                _ => None,
            };
            if let Some(path) = path
                && !crate::rule::is_canonical(path)
            {
                warn(
                    diags,
                    &r.origin.location,
                    p.display_name(),
                    &r.origin.field,
                    format!(
                        "never matches: `{path}` is not a canonical path, and rules match resolved paths"
                    ),
                );
            }
        }
        check_selector(p, diags);
        groups.push((p, rules));
    }
    groups
}

/// An Allow rule that a Block rule of a policy with the same scope (kind, namespace and
/// selectors) covers entirely never allows anything: warned.
fn shadowed_allows(groups: &[(&Policy, &[Rule])], diags: &mut Diagnostics) {
    // Policies with the same kind, namespace and selectors apply to the same workloads.
    let mut scopes: Vec<Vec<usize>> = Vec::new();
    for (i, (p, _)) in groups.iter().enumerate() {
        let same = scopes.iter_mut().find(|s| {
            s.first()
                .and_then(|&j| groups.get(j))
                .is_some_and(|(q, _)| {
                    q.kind == p.kind
                        && q.namespace == p.namespace
                        && q.spec.selector == p.spec.selector
                        && q.spec.node_selector == p.spec.node_selector
                })
        });
        match same {
            Some(s) => s.push(i),
            None => scopes.push(vec![i]),
        }
    }
    for scope in &scopes {
        let members: Vec<&(&Policy, &[Rule])> =
            scope.iter().filter_map(|&i| groups.get(i)).collect();
        let has_allow = members
            .iter()
            .any(|(_, rules)| rules.iter().any(|r| r.action == Action::Allow));
        if !has_allow {
            continue;
        }
        let index = BlockIndex::new(members.iter().flat_map(|(_, rules)| rules.iter()));
        for (pa, ra) in &members {
            for a in ra.iter() {
                if a.action != Action::Allow || !a.engine_evaluated() {
                    continue;
                }
                if let Some(b) = index.shadowing(a) {
                    warn(
                        diags,
                        &a.origin.location,
                        pa.display_name(),
                        &a.origin.field,
                        format!(
                            "shadowed: this Allow rule never allows anything, because the Block rule {} {} (at {}) covers all it covers and Block wins at equal source specificity",
                            b.policy.display_name(),
                            b.origin.field,
                            b.origin.location
                        ),
                    );
                }
            }
        }
    }
}

/// The same rule twice in one policy: the second is warned as a duplicate.
fn duplicate_rules(groups: &[(&Policy, &[Rule])], diags: &mut Diagnostics) {
    // The same rule twice in one policy.
    for (pa, ra) in groups {
        type Key<'r> = (
            crate::event::Category,
            &'r Target,
            Action,
            &'r [SourceMatch],
            bool,
            bool,
        );
        let mut first: HashMap<Key<'_>, &Rule> = HashMap::default();
        for a in ra.iter() {
            let key = (
                a.category,
                &a.target,
                a.action,
                a.from_source.as_slice(),
                a.read_only,
                a.owner_only,
            );
            match first.get(&key) {
                Some(b) if b.origin.field != a.origin.field => warn(
                    diags,
                    &a.origin.location,
                    pa.display_name(),
                    &a.origin.field,
                    format!("duplicate of {} (at {})", b.origin.field, b.origin.location),
                ),
                Some(_) => {}
                None => {
                    first.insert(key, a);
                }
            }
        }
    }
}

/// The Block rules without qualifiers of one scope, indexed like the engine indexes rules, so
/// that finding what shadows an Allow rule costs a few lookups, not a scan.
struct BlockIndex<'r> {
    exact: HashMap<(crate::event::Category, &'r str), Vec<&'r Rule>>,
    names: HashMap<&'r str, Vec<&'r Rule>>,
    /// Key: category and the directory without its trailing `/` (`""` for `/`).
    dirs: HashMap<(crate::event::Category, &'r str), Vec<(&'r Rule, bool)>>,
    /// Block globs, matched together by one set.
    patterns: Vec<&'r Rule>,
    pattern_set: Option<regex::RegexSet>,
    other: Vec<&'r Rule>,
}

fn dir_key(dir: &str) -> &str {
    if dir == "/" {
        ""
    } else {
        dir.strip_suffix('/').unwrap_or(dir)
    }
}

impl<'r> BlockIndex<'r> {
    fn new(rules: impl Iterator<Item = &'r Rule>) -> Self {
        let mut ix = Self {
            exact: HashMap::default(),
            names: HashMap::default(),
            dirs: HashMap::default(),
            patterns: Vec::new(),
            pattern_set: None,
            other: Vec::new(),
        };
        for b in rules {
            if b.action != Action::Block || b.has_qualifiers() || !b.engine_evaluated() {
                continue;
            }
            match &b.target {
                Target::Path(p) => ix.exact.entry((b.category, p)).or_default().push(b),
                Target::ExecName(n) => ix.names.entry(n).or_default().push(b),
                Target::Directory { dir, recursive } => ix
                    .dirs
                    .entry((b.category, dir_key(dir)))
                    .or_default()
                    .push((b, *recursive)),
                Target::Pattern(_) => ix.patterns.push(b),
                _ => ix.other.push(b),
            }
        }
        let regexes = ix.patterns.iter().filter_map(|b| match &b.target {
            Target::Pattern(g) => Some(g.regex()),
            _ => None,
        });
        ix.pattern_set = regex::RegexSet::new(regexes).ok();
        ix
    }

    /// The first Block rule (in rule order) that shadows Allow rule `a`.
    fn shadowing(&self, a: &Rule) -> Option<&'r Rule> {
        let mut found: Vec<&'r Rule> = Vec::new();
        let cat = a.category;
        match &a.target {
            Target::Path(p) => {
                found.extend(self.exact.get(&(cat, p.as_str())).into_iter().flatten());
                if cat == crate::event::Category::Process
                    && let Some(name) = p.rsplit('/').next()
                {
                    found.extend(self.names.get(name).into_iter().flatten());
                }
                // Directories: every `/`-prefix of the path, and the path itself.
                let last = p.rfind('/');
                for (i, _) in p.match_indices('/') {
                    let key = p.get(..i).unwrap_or("");
                    for (b, rec) in self.dirs.get(&(cat, key)).into_iter().flatten() {
                        if *rec || Some(i) == last {
                            found.push(b);
                        }
                    }
                }
                for (b, _) in self.dirs.get(&(cat, p.as_str())).into_iter().flatten() {
                    found.push(b);
                }
                if let Some(set) = &self.pattern_set {
                    found.extend(set.matches(p).iter().filter_map(|i| self.patterns.get(i)));
                }
            }
            Target::ExecName(n) => found.extend(self.names.get(n.as_str()).into_iter().flatten()),
            Target::Directory { dir, recursive } => {
                let own = dir_key(dir);
                for (b, rec) in self.dirs.get(&(cat, own)).into_iter().flatten() {
                    if *rec || !*recursive {
                        found.push(b);
                    }
                }
                for (i, _) in own.match_indices('/') {
                    let key = own.get(..i).unwrap_or("");
                    for (b, rec) in self.dirs.get(&(cat, key)).into_iter().flatten() {
                        if *rec {
                            found.push(b);
                        }
                    }
                }
            }
            Target::Pattern(g) => found.extend(
                self.patterns
                    .iter()
                    .copied()
                    .filter(|b| matches!(&b.target, Target::Pattern(h) if h == g)),
            ),
            other => found.extend(self.other.iter().copied().filter(|b| {
                b.category == cat
                    && (b.target == *other
                        || b.target == Target::Protocol(crate::rule::ProtocolMatch::All))
            })),
        }
        found
            .into_iter()
            .filter(|b| b.category == cat && sources_dominate(&a.from_source, &b.from_source))
            .min_by(|x, y| (&x.policy.name, x.index).cmp(&(&y.policy.name, y.index)))
    }
}

fn check_selector(p: &Policy, diags: &mut Diagnostics) {
    let mut notins: Vec<(&crate::model::ExpressionKey, &str)> = Vec::new();
    for e in &p.spec.selector.match_expressions {
        if e.operator == Operator::NotIn {
            notins.extend(e.values.iter().map(|v| (&e.key, v.as_str())));
        }
        if e.operator == Operator::In && e.values.is_empty() {
            warn(
                diags,
                &p.location,
                p.display_name(),
                "selector.matchExpressions",
                "never matches: an `In` expression without values selects nothing".into(),
            );
        }
    }
    // Only an `In` expression with a single value is certain to be required.
    for e in &p.spec.selector.match_expressions {
        if e.operator == Operator::In
            && let [only] = e.values.as_slice()
            && notins.contains(&(&e.key, only.as_str()))
        {
            warn(
                diags,
                &p.location,
                p.display_name(),
                "selector.matchExpressions",
                format!("never matches: `{only}` is both required (In) and excluded (NotIn)"),
            );
        }
    }
    for (k, v) in &p.spec.selector.match_labels {
        if notins.contains(&(
            &crate::model::ExpressionKey::Label,
            format!("{k}={v}").as_str(),
        )) {
            warn(
                diags,
                &p.location,
                p.display_name(),
                "selector",
                format!(
                    "never matches: `{k}={v}` is required by matchLabels and excluded by NotIn"
                ),
            );
        }
    }
}
