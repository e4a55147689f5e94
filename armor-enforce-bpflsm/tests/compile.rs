#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! `compile` is pure and deterministic; its rendering is snapshot-tested.

use armor_core::enforcer::Artifact;
use armor_core::{CompiledPolicy, Container, PolicySet, Posture, PostureAction, Workload};
use armor_enforce_bpflsm::{abi, compile};

fn rules() -> (CompiledPolicy, std::sync::Arc<armor_core::RuleSet>) {
    let text = include_str!("data/mixed.yaml");
    let set = PolicySet::parse(text, "mixed.yaml").unwrap();
    let policy = CompiledPolicy::build(&set).unwrap();
    let web = Workload::Container(Container::new("shop", "web").label("app", "web"));
    let mut posture = Posture::default();
    posture.network = PostureAction::Block;
    let rs = policy.rule_set(&web, posture);
    (policy, rs)
}

#[test]
fn rendering_is_stable() {
    let (_p, rs) = rules();
    let a = compile("shop/web", &rs);
    insta::assert_snapshot!(a.render());
}

/// Where rules were compiled for (resolved inodes, waiting for the first exec) does not make
/// them other rules: re-applying a workload's unchanged rules changes nothing, so a policy
/// reload cannot end a created container's wait for its first exec. Other rules are other.
#[test]
fn the_same_rules_for_another_destination_are_the_same_rules() {
    let (_p, rs) = rules();
    let mut created = compile("shop/web", &rs).resolve(|p| (p == "/etc/shadow").then_some((7, 42)));
    created.from_first_exec = true;
    let running = compile("shop/web", &rs);
    assert_ne!(created, running);
    assert!(created.same_rules(&running));
    assert!(!created.inodes.is_empty(), "the fixture has /etc/shadow");
    let other = compile("shop/api", &rs);
    assert!(!created.same_rules(&other));
}

#[test]
fn compile_and_encode_are_deterministic() {
    let (_p, rs) = rules();
    let a = compile("shop/web", &rs);
    let b = compile("shop/web", &rs);
    assert_eq!(a, b);
    assert_eq!(a.encode(3, 99), b.encode(3, 99));
    // Another key gives other hashes for paths, the same numbers for the rest.
    let (x, y) = (a.encode(3, 99), a.encode(3, 100));
    assert_eq!(x.rules.len(), y.rules.len());
    assert_ne!(x.rules, y.rules);
}

#[test]
fn every_rule_not_enforced_in_kernel_is_named() {
    let (policy, rs) = rules();
    let a = compile("shop/web", &rs);
    let listed: Vec<&str> = a
        .unenforceable_rules()
        .iter()
        .map(|u| policy.rules()[u.rule as usize].origin.field.as_str())
        .collect();
    assert_eq!(a.unenforceable_rules().len(), 1, "{listed:?}");
    assert!(a.unenforceable_rules()[0].reason.contains("syscall"));
    // The trait reports the same list.
    assert_eq!(Artifact::unenforceable(&a), a.unenforceable_rules());
    // Every other rule has at least one entry.
    for &id in rs.rule_ids() {
        let covered = a.entries.iter().any(|e| e.rule == id)
            || a.unenforceable_rules().iter().any(|u| u.rule == id);
        assert!(covered, "rule {id} has no entry");
    }
}

#[test]
fn encoded_chains_and_metadata() {
    let (_p, rs) = rules();
    let e = compile("shop/web", &rs).encode(5, 1);
    // One source-specific allow entry per fromSource path.
    let file_dir: Vec<_> = e
        .rules
        .iter()
        .filter(|(k, _)| k.kind == abi::kind::FILE_DIR)
        .collect();
    assert_eq!(file_dir.len(), 2);
    assert!(file_dir.iter().all(|(k, v)| k.source != 0 && v.count == 1));
    assert_eq!(e.meta.allow_list, [0, 1, 0, 0]);
    assert_eq!(e.meta.posture, [0, 0, 1, 0]);
    assert_eq!(e.meta.dir_depths[0], 1 << 1);
    assert_eq!(e.meta.dir_depths[1], 1 << 2);
    assert_ne!(e.meta.flags & abi::rs_source(abi::CAT_FILE), 0);
    assert_ne!(e.meta.flags & abi::RS_NAMES, 0);
    assert!(e.rules.iter().all(|(k, _)| k.ruleset == 5));
    // The file glob: one automaton, one entry whose target is the glob's index.
    assert_ne!(e.meta.flags & abi::rs_glob(abi::CAT_FILE), 0);
    assert_eq!(e.meta.flags & abi::rs_glob(abi::CAT_PROCESS), 0);
    assert_eq!(e.dfas.len(), 1);
    assert_eq!(e.dfas[0].0.ruleset, 5);
    assert_eq!(e.dfas[0].0.category, u32::from(abi::CAT_FILE));
    let globs: Vec<_> = e
        .rules
        .iter()
        .filter(|(k, _)| k.kind == abi::kind::FILE_GLOB)
        .collect();
    assert_eq!(globs.len(), 1);
    assert_eq!(globs[0].0.target, 0);
    let dfa = &e.dfas[0].1;
    let end = |p: &str| dfa.step(abi::DFA_START, p.as_bytes());
    assert_eq!(
        dfa.matched(end("/var/log/app.log")).collect::<Vec<_>>(),
        [0]
    );
    assert_eq!(dfa.matched(end("/var/log/a/b.log")).count(), 0);
}

/// Many globs that each need their own states: over the cap, every glob rule of the category
/// is listed as not enforced (naming the globs), and no glob entry reaches the kernel.
#[test]
fn a_glob_automaton_over_the_cap_is_reported_not_dropped() {
    let mut yaml = String::from(
        "apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: many-globs, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  file:
    matchPatterns:
",
    );
    for i in 0..40 {
        yaml.push_str(&format!("    - pattern: /data/g{i}/*.txt\n"));
    }
    yaml.push_str("    matchPaths:\n    - path: /etc/shadow\n  action: Block\n");
    let set = PolicySet::parse(&yaml, "many.yaml").unwrap();
    let policy = CompiledPolicy::build(&set).unwrap();
    let web = Workload::Container(Container::new("shop", "web").label("app", "web"));
    let rs = policy.rule_set(&web, Posture::default());
    let small = armor_enforce_bpflsm::compile_with("shop/web", &rs, 64);
    assert_eq!(small.unenforceable_rules().len(), 40);
    assert!(
        small.unenforceable_rules()[0]
            .reason
            .contains("none of its 40 globs is enforced"),
        "{}",
        small.unenforceable_rules()[0].reason
    );
    assert!(small.globs.is_empty());
    assert!(small.entries.iter().all(|e| e.kind != abi::kind::FILE_GLOB));
    // The exact rule is still enforced.
    assert_eq!(small.entries.len(), 1);
    // With the default cap the same rules compile.
    let big = compile("shop/web", &rs);
    assert!(big.unenforceable_rules().is_empty());
    assert_eq!(big.globs.len(), 1);
}

/// Issue 21: the kernel decides at most four rules with `allowedArgs` per executable; a fifth is
/// listed as not enforced (the worst-ranked), never dropped in silence.
#[test]
fn a_fifth_allowed_args_rule_on_one_executable_is_listed() {
    let mut yaml = String::new();
    for i in 0..5 {
        yaml.push_str(&format!(
            "---\napiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: \
             {{name: ls-{i}, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  \
             process:\n    matchPaths:\n    - path: /bin/ls\n      allowedArgs: [\"-{i}\"]\n  \
             action: Block\n"
        ));
    }
    let set = PolicySet::parse(&yaml, "ls.yaml").unwrap();
    let policy = CompiledPolicy::build(&set).unwrap();
    let web = Workload::Container(Container::new("shop", "web").label("app", "web"));
    let rs = policy.rule_set(&web, Posture::default());
    let a = compile("shop/web", &rs);
    let listed: Vec<u32> = a.unenforceable().iter().map(|u| u.rule).collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let worst = policy
        .rules()
        .iter()
        .position(|r| r.policy.name == "ls-4")
        .unwrap();
    assert_eq!(listed[0] as usize, worst);
    assert!(
        a.unenforceable()[0]
            .reason
            .contains("more than 4 rules with allowedArgs")
    );
    // Four with their arguments, and the fifth (a Block) as a plain Block: fail closed.
    let carried: Vec<_> = a
        .entries
        .iter()
        .filter(|e| e.kind == abi::kind::PROC_PATH)
        .collect();
    assert_eq!(carried.len(), 5, "{carried:?}");
    assert_eq!(
        carried
            .iter()
            .filter(|e| e.flags & abi::F_ARGS == 0 && e.rule as usize == worst)
            .count(),
        1
    );
}
