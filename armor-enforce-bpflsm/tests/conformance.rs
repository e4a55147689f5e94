#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! The whole corpus through the user-space model of the kernel algorithm, operating on the
//! encoded map entries of `compile`'s artefact. It must agree with the engine on every case
//! except those whose category holds a rule `compile` lists as not enforced.

use armor_enforce_bpflsm::table::Table;
use armor_enforce_bpflsm::{KernelOp, Model, abi, compile};
use armor_testing::corpus::{self, Case, DecisionMaker, Outcome};

/// The model with a rule table of this many slots (`None`: sized as the enforcer sizes it for
/// the entries alone; a tiny table sends most entries down the overflow path).
struct BpfModel(Option<u32>);

const KEY: u64 = 0x005e_ed0f_a70c_0de5;

fn category_of(r: &armor_core::Rule) -> Option<u8> {
    use armor_core::Category;
    match r.category {
        Category::Process => Some(abi::CAT_PROCESS),
        Category::File => Some(abi::CAT_FILE),
        Category::Network => Some(abi::CAT_NETWORK),
        Category::Capabilities => Some(abi::CAT_CAPS),
        _ => None,
    }
}

impl DecisionMaker for BpfModel {
    fn name(&self) -> &str {
        "bpflsm-model"
    }

    fn decide(&self, case: &Case) -> Result<Outcome, String> {
        let corpus::Prepared {
            policy,
            event,
            rules,
            ..
        } = case.prepare()?;
        let artifact = compile(&case.name, &rules);
        let Some(op) = KernelOp::from_event(&event) else {
            return Err("syscall operations have no LSM hook (audit-only, monitor)".to_owned());
        };
        let cat = match &op {
            KernelOp::Path { category, .. } => *category,
            KernelOp::Memory { .. } => abi::CAT_FILE,
            KernelOp::Socket { .. } => abi::CAT_NETWORK,
            _ => abi::CAT_CAPS,
        };
        let blocked: Vec<String> = artifact
            .unenforceable_rules()
            .iter()
            .filter(|u| {
                policy
                    .rules()
                    .get(u.rule as usize)
                    .and_then(category_of)
                    .is_some_and(|c| c == cat)
            })
            .map(|u| format!("rule {}: {}", u.rule, u.reason))
            .collect();
        if !blocked.is_empty() {
            return Err(format!("not enforced in kernel: {}", blocked.join("; ")));
        }
        let encoded = artifact.encode(7, KEY);
        let model = match self.0 {
            Some(slots) => Model::with_table(&encoded, 7, KEY, Table::new(slots)),
            None => Model::new(&encoded, 7, KEY),
        };
        let d = model.decide(&op, event.source.as_deref(), event.uid);
        let rule = d.rule.and_then(|id| policy.rules().get(id as usize));
        Ok(Outcome::reported(d.verdict, rule, rules.is_host()))
    }
}

#[test]
fn corpus_agrees_with_the_engine_through_the_kernel_model() {
    let cases = corpus::load_dir(&corpus::corpus_dir()).unwrap();
    assert!(cases.len() >= 250, "corpus too small: {}", cases.len());
    let report = corpus::run(&cases, &BpfModel(None));
    // The engine must agree with the same cases (the corpus is the engine's spec).
    let engine = corpus::run(&cases, &corpus::Engine);
    assert!(engine.ok(), "{engine}");
    println!("{report}");
    assert!(report.ok(), "{report}");
    // Every skip is a case with a syscall operation or a rule compile lists as not enforced.
    for (name, why) in &report.skipped {
        assert!(
            why.starts_with("not enforced in kernel") || why.starts_with("syscall operations"),
            "{name}: {why}"
        );
    }
    assert!(
        report.passed * 10 >= cases.len() * 8,
        "only {} of {} cases decided",
        report.passed,
        cases.len()
    );
}

#[test]
fn corpus_agrees_when_entries_overflow_the_table() {
    let cases = corpus::load_dir(&corpus::corpus_dir()).unwrap();
    let full = corpus::run(&cases, &BpfModel(None));
    // Eight slots: one window, every entry past the eighth of a ruleset lives in the map.
    let tiny = corpus::run(&cases, &BpfModel(Some(8)));
    assert!(tiny.ok(), "{tiny}");
    assert_eq!(
        (tiny.passed, tiny.skipped.len()),
        (full.passed, full.skipped.len())
    );
}
