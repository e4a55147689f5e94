#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! One definition: the CRD types (armor-core's `crd`, what the API stores and the custom
//! resources read) and armor-core's policy loader describe the same policies. Every corpus
//! policy read into the typed spec and written back decides every corpus case exactly as the
//! YAML it came from.

use armor_core::crd::{ClusterPolicySpec, HostPolicySpec, PolicySpec};
use armor_testing::corpus::{Outcome, corpus_dir, load_dir};

/// `spec` read into its kind's typed spec and written back.
fn through_types(kind: &str, spec: &serde_json::Value) -> Result<serde_json::Value, String> {
    let back =
        match kind {
            "KubeArmorPolicy" => {
                serde_json::from_value::<PolicySpec>(spec.clone()).and_then(serde_json::to_value)
            }
            "KubeArmorClusterPolicy" => serde_json::from_value::<ClusterPolicySpec>(spec.clone())
                .and_then(serde_json::to_value),
            "KubeArmorHostPolicy" => serde_json::from_value::<HostPolicySpec>(spec.clone())
                .and_then(serde_json::to_value),
            other => return Err(format!("not a policy kind: {other}")),
        };
    back.map_err(|e| e.to_string())
}

#[test]
fn every_corpus_policy_decides_the_same_after_the_crd_types() {
    let cases = load_dir(&corpus_dir()).unwrap();
    // Spelled otherwise than the CRDs' enums and patterns: the API server refuses them
    // (tests/crds.rs), so they never reach the typed resources.
    let not_typed = [
        "inherit-policy-action-lowercase-block",
        "inherit-policy-action-uppercase-audit",
        "inherit-policy-action-lowercase-allow",
    ];
    let mut checked = 0;
    let mut untyped = Vec::new();
    for case in &cases {
        let docs = armor_core::crd::documents(&case.policies, &case.name).unwrap();
        let mut texts = Vec::new();
        let mut typed = true;
        for mut d in docs {
            let kind = d["kind"].as_str().unwrap().to_string();
            match through_types(&kind, &d["spec"]) {
                Ok(back) => d["spec"] = back,
                Err(e) => {
                    untyped.push(format!("{}: {e}", case.name));
                    typed = false;
                }
            }
            texts.push(serde_json::to_string_pretty(&d).unwrap());
        }
        if !typed {
            continue;
        }
        let mut again = case.clone();
        again.policies = texts.join("\n---\n");
        let want = case.prepare().unwrap();
        let have = again.prepare().unwrap_or_else(|e| {
            panic!(
                "{}: the typed policies do not load: {e}\n{}",
                case.name, again.policies
            )
        });
        assert_eq!(
            Outcome::from_decision(&have.decide()),
            Outcome::from_decision(&want.decide()),
            "{}: {}",
            case.name,
            again.policies
        );
        checked += 1;
    }
    let untyped_names: Vec<&str> = untyped
        .iter()
        .map(|u| u.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(untyped_names, not_typed, "{untyped:#?}");
    assert!(
        checked >= cases.len() - not_typed.len(),
        "{checked} of {}",
        cases.len()
    );
}

#[test]
fn the_crd_types_carry_every_field_of_the_fixtures_and_examples() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut seen = 0;
    for dir in ["testdata/policies", "examples/policies"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for d in armor_core::crd::documents(&text, &path.display().to_string()).unwrap() {
                let kind = d["kind"].as_str().unwrap();
                let back = through_types(kind, &d["spec"]).unwrap();
                assert_eq!(
                    back,
                    d["spec"],
                    "{}: a field is lost or changed",
                    path.display()
                );
                seen += 1;
            }
        }
    }
    assert!(seen >= 8, "{seen} policies");
}
