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

use crate::diag::{Diagnostic, Diagnostics, Level, Location};
use crate::model::{Action, Operator, Policy};
use crate::rule::{Rule, SourceMatch, Target, dir_matches, normalize};

fn warn(diags: &mut Diagnostics, loc: &Location, policy: String, field: &str, message: String) {
    diags.push(Diagnostic {
        level: Level::Warning,
        location: loc.clone(),
        policy: Some(policy),
        field: field.to_string(),
        message,
    });
}

/// Whether every path `inner` matches is matched by `outer` (conservative: false when unsure).
fn target_within(inner: &Target, outer: &Target) -> bool {
    match (inner, outer) {
        (Target::Path(p), Target::Path(q)) => p == q,
        (Target::Path(p), Target::Directory { dir, recursive }) => dir_matches(dir, *recursive, p),
        (Target::Path(p), Target::ExecName(n)) => p.rsplit('/').next() == Some(n.as_str()),
        (Target::Path(p), Target::Pattern(g)) => {
            regex::Regex::new(g.regex()).is_ok_and(|re| re.is_match(p))
        }
        (Target::ExecName(a), Target::ExecName(b)) => a == b,
        (
            Target::Directory {
                dir: d1,
                recursive: r1,
            },
            Target::Directory {
                dir: d2,
                recursive: r2,
            },
        ) => {
            if d1 == d2 {
                *r2 || !*r1
            } else {
                *r2 && d1.starts_with(d2.as_str())
            }
        }
        (Target::Pattern(a), Target::Pattern(b)) => a == b,
        (Target::Protocol(a), Target::Protocol(b)) => {
            a == b || *b == crate::rule::ProtocolMatch::All
        }
        (Target::Capability(a), Target::Capability(b)) => a == b,
        _ => false,
    }
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

fn non_canonical(path: &str) -> bool {
    path.contains("//")
        || path.contains("/./")
        || path.contains("/../")
        || path.ends_with("/.")
        || path.ends_with("/..")
}

/// Runs the set-wide checks.
pub(crate) fn check_set(policies: &[Policy], diags: &mut Diagnostics) {
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
                message: format!("{} `{}` is already defined at {first}", p.kind, p.display_name()),
            });
        } else {
            seen.insert(key, &p.location);
        }
    }

    // Rules grouped by "applies to the same workloads": same kind, namespace and selector.
    let mut groups: Vec<(&Policy, Vec<Rule>)> = Vec::new();
    for p in policies {
        let rules = normalize(p);
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
        for r in &rules {
            let path = match &r.target {
                Target::Path(p) => Some(p.as_str()),
                Target::Directory { dir, .. } => Some(dir.as_str()),
                _ => None,
            };
            if let Some(path) = path
                && non_canonical(path)
            {
                warn(
                    diags,
                    &r.origin.location,
                    p.display_name(),
                    &r.origin.field,
                    format!("never matches: `{path}` is not a canonical path, and rules match resolved paths"),
                );
            }
        }
        check_selector(p, diags);
        groups.push((p, rules));
    }

    let same_scope = |a: &Policy, b: &Policy| {
        a.kind == b.kind
            && a.namespace == b.namespace
            && a.spec.selector == b.spec.selector
            && a.spec.node_selector == b.spec.node_selector
    };
    for (pa, ra) in &groups {
        for a in ra.iter() {
            if a.action != Action::Allow || !a.engine_evaluated() {
                continue;
            }
            let shadow = groups
                .iter()
                .filter(|(pb, _)| same_scope(pa, pb))
                .flat_map(|(_, rb)| rb.iter())
                .find(|b| {
                    b.action == Action::Block
                        && b.category == a.category
                        && !b.has_qualifiers()
                        && sources_dominate(&a.from_source, &b.from_source)
                        && target_within(&a.target, &b.target)
                });
            if let Some(b) = shadow {
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
        // Duplicates within the policy.
        for (i, a) in ra.iter().enumerate() {
            if let Some(b) = ra.iter().take(i).find(|b| {
                b.category == a.category
                    && b.target == a.target
                    && b.action == a.action
                    && b.from_source == a.from_source
                    && b.read_only == a.read_only
                    && b.owner_only == a.owner_only
                    && b.origin.field != a.origin.field
            }) {
                warn(
                    diags,
                    &a.origin.location,
                    pa.display_name(),
                    &a.origin.field,
                    format!("duplicate of {} (at {})", b.origin.field, b.origin.location),
                );
            }
        }
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
        if notins.contains(&(&crate::model::ExpressionKey::Label, format!("{k}={v}").as_str())) {
            warn(
                diags,
                &p.location,
                p.display_name(),
                "selector",
                format!("never matches: `{k}={v}` is required by matchLabels and excluded by NotIn"),
            );
        }
    }
}
