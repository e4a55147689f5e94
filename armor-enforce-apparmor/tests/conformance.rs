#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The whole corpus through the user-space model of AppArmor, evaluating the *read-back* text
//! of each generated profile. It must agree with the engine on every case except those whose
//! category holds a rule `compile` lists as not enforced. Every profile also compiles with the
//! real `apparmor_parser`.

use armor_core::enforcer::Artifact;
use armor_core::event::Operation;
use armor_core::workload::WorkloadKey;
use armor_core::{Category, CompiledPolicy, PolicySet};
use armor_enforce_apparmor::{AaOp, AppArmor, Model, compile, parse};
use armor_testing::corpus::{self, Case, DecisionMaker, Outcome};

struct AaModel;

impl DecisionMaker for AaModel {
    fn name(&self) -> &str {
        "apparmor-model"
    }

    fn decide(&self, case: &Case) -> Result<Outcome, String> {
        let corpus::Prepared {
            policy,
            event,
            rules,
            ..
        } = case.prepare()?;
        let artifact = compile(&WorkloadKey::new(case.name.clone()), &rules);
        let profile = parse(&artifact.text).map_err(|e| format!("read-back: {e}"))?;
        assert_eq!(
            profile,
            artifact.profile.without_rules(),
            "{}: read-back differs",
            case.name
        );
        let cat = event.operation.category();
        if cat == Category::Syscall {
            return Err("syscall operations are not mediated by AppArmor".to_owned());
        }
        let not: Vec<String> = artifact
            .unenforceable()
            .iter()
            .filter(|u| policy.rules()[u.rule as usize].category == cat)
            .map(|u| format!("rule {}: {}", u.rule, u.reason))
            .collect();
        if !not.is_empty() {
            return Err(format!("not enforced: {}", not.join("; ")));
        }
        if let Operation::File { path, .. } | Operation::Process { path, .. } = &event.operation
            && !path.starts_with('/')
        {
            return Err(
                "not enforced exactly: AppArmor names a file outside the workload's tree by its \
                 path from the top of its own tree (the profiles attach disconnected paths), \
                 which path rules may or may not match"
                    .to_owned(),
            );
        }
        if let Operation::ExecMemory { .. } = &event.operation {
            // AppArmor mediates no anonymous memory: it lets every such mapping pass.
            return Ok(Outcome::reported(
                armor_core::Verdict::Allow,
                None,
                rules.is_host(),
            ));
        }
        let op = AaOp::from_event(&event).ok_or("unsupported operation")?;
        // The read-back equals the structure up to rule numbers: decide over the structure,
        // which names the rules.
        let model = Model::new(&artifact.profile);
        let d = model.decide(&*rules, event.source.as_deref(), &op);
        let rule = d.rule.and_then(|id| policy.rules().get(id as usize));
        Ok(Outcome::reported(d.verdict, rule, rules.is_host()))
    }
}

#[test]
fn corpus_agrees_with_the_engine_through_the_profile_model() {
    let cases = corpus::load_dir(&corpus::corpus_dir()).unwrap();
    assert!(cases.len() >= 250, "corpus too small: {}", cases.len());
    let engine = corpus::run(&cases, &corpus::Engine);
    assert!(engine.ok(), "{engine}");
    let report = corpus::run(&cases, &AaModel);
    println!("{report}");
    assert!(report.ok(), "{report}");
    for (name, why) in &report.skipped {
        assert!(
            why.starts_with("not enforced") || why.starts_with("syscall operations"),
            "{name}: {why}"
        );
    }
    assert!(
        report.passed * 10 >= cases.len() * 6,
        "only {} of {} cases decided",
        report.passed,
        cases.len()
    );
}

fn parser_available() -> bool {
    std::process::Command::new("apparmor_parser")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn every_corpus_profile_compiles_with_apparmor_parser() {
    assert!(
        parser_available(),
        "apparmor_parser missing: scripts/lib/prereqs.sh installs `apparmor`"
    );
    let aa = AppArmor::new("/nonexistent");
    let cases = corpus::load_dir(&corpus::corpus_dir()).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for c in &cases {
        let set = PolicySet::parse(&c.policies, &c.name).unwrap();
        let policy = CompiledPolicy::build(&set).unwrap();
        let workload = c.workload().unwrap();
        let (posture, _) = c.posture_config().unwrap().posture_for(&workload);
        let rules = policy.rule_set(&workload, posture);
        let a = compile(&WorkloadKey::new("corpus/w"), &rules);
        if seen.insert(a.text.clone()) {
            aa.check(&a.text)
                .unwrap_or_else(|e| panic!("{}: rejected: {e}\n{}", c.name, a.text));
        }
    }
    assert!(seen.len() > 50, "only {} distinct profiles", seen.len());
}
