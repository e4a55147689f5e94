#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Issue 21, "nothing accepted is silently ignored": every rule of every policy the shared
//! corpus and the all-fields policies hold is, in BPF-LSM's artefact, either carried by an entry
//! (its own, or that of an identical rule that ranks before it), listed as not enforced with a
//! reason, or a rule that can never match (a path that is not canonical).

use std::path::Path;

use armor_core::{CompiledPolicy, Container, Host, PolicySet, Posture, Rule, Workload};
use armor_enforce_bpflsm::compile;
use armor_testing::corpus;

/// Two rules that compile to the same entries (the kernel keeps the better-ranked one).
fn same_entries(a: &Rule, b: &Rule) -> bool {
    a.category == b.category
        && a.target == b.target
        && a.from_source == b.from_source
        && a.action == b.action
        && a.read_only == b.read_only
        && a.owner_only == b.owner_only
        && a.allowed_args == b.allowed_args
}

fn check(what: &str, policy: &CompiledPolicy, workload: &Workload) -> usize {
    let rules = policy.rule_set(workload, Posture::default());
    let artifact = compile(what, &rules);
    let carried = |id: u32| artifact.entries.iter().any(|e| e.rule == id);
    let mut checked = 0;
    for &id in rules.rule_ids() {
        let r = rules.rule(id).unwrap();
        let listed = artifact.unenforceable_rules().iter().any(|u| u.rule == id);
        let twin = rules
            .rule_ids()
            .iter()
            .any(|&o| o != id && carried(o) && same_entries(r, rules.rule(o).unwrap()));
        assert!(
            carried(id) || listed || twin || !r.target_can_match(),
            "{what}: rule {id} ({} {}) is neither in the kernel nor listed as not enforced",
            r.origin.field,
            r.target
        );
        checked += 1;
    }
    checked
}

#[test]
fn every_rule_is_carried_or_listed() {
    let mut checked = 0;
    for case in corpus::load_dir(&corpus::corpus_dir()).unwrap() {
        let p = case.prepare().unwrap();
        checked += check(&case.name, &p.policy, &p.workload);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/policies");
    let set = PolicySet::load_paths(&[dir], &armor_core::Config::default()).unwrap();
    let policy = CompiledPolicy::build(&set).unwrap();
    // A container and a host every policy of the directory selects.
    let container = Workload::Container(
        Container::new("shop", "web")
            .label("app", "web")
            .label("tier", "frontend"),
    );
    let mut host = Host::new("node-1");
    for p in set.policies() {
        for (k, v) in &p.spec.node_selector.match_labels {
            host.labels.insert(k.clone(), v.clone());
        }
    }
    let in_container = check("all-fields container", &policy, &container);
    let on_host = check("all-fields host", &policy, &Workload::Host(host));
    assert!(
        in_container >= 20 && on_host >= 5,
        "the all-fields policies select too little: {in_container} container rules, \
         {on_host} host rules"
    );
    checked += in_container + on_host;
    assert!(checked > 300, "only {checked} rules checked");
}
