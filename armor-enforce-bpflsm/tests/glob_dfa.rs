#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! The glob automaton against armor-core's own glob matcher (the engine's anchored regular
//! expressions): random globs, random paths, the same matches. Then the same property through
//! the encoded kernel value and the model's byte feed.

use armor_core::glob::Glob;
use armor_enforce_bpflsm::abi;
use armor_enforce_bpflsm::dfa::Dfa;
use proptest::prelude::*;

/// Glob pieces: literals (ASCII, `/`, `.`, multi-byte), every operator, nested alternatives.
fn piece() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a",
        "b",
        "x",
        "/",
        ".",
        "é",
        "*",
        "**",
        "?",
        "[a-c]",
        "[^b]",
        "[^/]",
        "[é-ë]",
        "{a,b/}",
        "{,x*}",
        "{a,{b,é}}",
        "\\*",
        "-",
        "[-a]",
    ])
    .prop_map(str::to_owned)
}

fn glob() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..6).prop_map(|v| format!("/{}", v.concat()))
}

fn path() -> impl Strategy<Value = String> {
    let ch = prop::sample::select(vec![
        'a', 'b', 'c', 'x', '/', '.', 'é', 'ê', '日', '😀', '*', '-', '\n',
    ]);
    prop::collection::vec(ch, 0..10).prop_map(|v| format!("/{}", v.into_iter().collect::<String>()))
}

fn engine_matches(globs: &[Glob], path: &str) -> Vec<u16> {
    globs
        .iter()
        .enumerate()
        .filter(|(_, g)| regex::Regex::new(g.regex()).unwrap().is_match(path))
        .map(|(i, _)| i as u16)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn automaton_agrees_with_the_engine(
        texts in prop::collection::vec(glob(), 1..4),
        paths in prop::collection::vec(path(), 1..8),
    ) {
        let globs: Vec<Glob> = texts.iter().map(|t| Glob::new(t).unwrap()).collect();
        let regexes: Vec<&str> = globs.iter().map(Glob::regex).collect();
        let dfa = Dfa::build(&regexes, 4096).unwrap();
        for p in &paths {
            prop_assert_eq!(dfa.matches(p.as_bytes()), &engine_matches(&globs, p)[..], "path {:?} globs {:?}", p, texts);
        }
        // Paths the globs are made to match: each glob's own text with operators replaced.
        for t in &texts {
            let p = t.replace("**", "a/b").replace(['*', '?'], "x").replace(['{', '}', ',', '[', ']', '^', '\\'], "");
            prop_assert_eq!(dfa.matches(p.as_bytes()), &engine_matches(&globs, &p)[..], "path {:?} globs {:?}", p, texts);
        }
    }
}

/// The same globs through `compile`'s kernel value: the table the kernel walks decides alike.
#[test]
fn kernel_value_walks_like_the_automaton() {
    use armor_core::{CompiledPolicy, Container, PolicySet, Posture, Workload};
    let yaml = "apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: globs, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  file:
    matchPatterns:
    - pattern: /etc/*.conf
    - pattern: /home/**/.ssh/*
    - pattern: /var/{log,tmp}/app[0-9].?
  action: Block
";
    let set = PolicySet::parse(yaml, "globs.yaml").unwrap();
    let policy = CompiledPolicy::build(&set).unwrap();
    let web = Workload::Container(Container::new("shop", "web").label("app", "web"));
    let rs = policy.rule_set(&web, Posture::default());
    let a = armor_enforce_bpflsm::compile("shop/web", &rs);
    let e = a.encode(1, 1);
    let value = &e.dfas[0].1;
    let group = &a.globs[0];
    for p in [
        "/etc/a.conf",
        "/etc/x/a.conf",
        "/home/u/.ssh/id_rsa",
        "/home/.ssh/id",
        "/var/log/app1.x",
        "/var/tmp/app9.é",
        "/var/tmp/app9.",
        "/",
        "/etc",
    ] {
        let want: Vec<u16> = group.dfa.matches(p.as_bytes()).to_vec();
        let got = armor_enforce_bpflsm::simulation::glob_matches(value, p);
        assert_eq!(got, want, "{p}");
        let globs: Vec<Glob> = group
            .patterns
            .iter()
            .map(|t| Glob::new(t).unwrap())
            .collect();
        assert_eq!(want, engine_matches(&globs, p), "{p}");
    }
    assert_eq!(value.nstates as usize, group.dfa.states());
    assert!(abi::DFA_START < value.nstates);
}
