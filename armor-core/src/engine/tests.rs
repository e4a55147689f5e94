//! The engine's own tests (the corpus runs in armor-testing).

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
