#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! Snapshot of the profile of every policy fixture (each policy applied to a workload it
//! selects through the whole set), read back and compiled by the real parser.

use armor_core::posture::{Posture, PostureAction};
use armor_core::workload::WorkloadKey;
use armor_core::{CompiledPolicy, Config, PolicySet};
use armor_enforce_apparmor::{AppArmor, compile, parse};
use std::fmt::Write as _;
use std::path::Path;

#[test]
fn fixture_profiles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = String::new();
    let aa = AppArmor::new("/nonexistent");
    for dir in ["testdata/policies", "examples/policies"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for f in files {
            let set = PolicySet::load_paths(&[&f], &Config::default()).unwrap();
            let policy = CompiledPolicy::build(&set).unwrap();
            // Every rule of the file, as one workload, under a block posture.
            let mut posture = Posture::default();
            posture.file = PostureAction::Block;
            posture.network = PostureAction::Block;
            posture.capabilities = PostureAction::Block;
            assert!(!policy.rules().is_empty());
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            let key = WorkloadKey::new(format!("fixture/{name}"));
            let w = workload_for(&set);
            let rules = policy.rule_set(&w, posture);
            let a = compile(&key, &rules);
            assert_eq!(
                parse(&a.text).unwrap(),
                a.profile.without_rules(),
                "{name}: read-back"
            );
            aa.check(&a.text)
                .unwrap_or_else(|e| panic!("{name}: rejected: {e}\n{}", a.text));
            writeln!(out, "==== {dir}/{name}").unwrap();
            out.push_str(&a.text);
            for u in &a.not_enforced {
                writeln!(out, "# not enforced: rule {}: {}", u.rule, u.reason).unwrap();
            }
        }
    }
    insta::assert_snapshot!(out);
}

/// A workload the first policy of the set selects.
fn workload_for(set: &PolicySet) -> armor_core::Workload {
    use armor_core::{Container, Host, PolicyKind};
    let p = &set.policies()[0];
    match p.kind {
        PolicyKind::KubeArmorHostPolicy => {
            let mut h = Host::new("node-1");
            for (k, v) in &p.spec.node_selector.match_labels {
                h = h.label(k.clone(), v.clone());
            }
            h.into()
        }
        _ => {
            let ns = p.namespace.clone().unwrap_or_else(|| "default".to_owned());
            let mut c = Container::new(ns, "c");
            for (k, v) in &p.spec.selector.match_labels {
                c = c.label(k.clone(), v.clone());
            }
            c.into()
        }
    }
}
