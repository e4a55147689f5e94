#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Random process and file policies where globs meet exact paths, directories, fromSource,
//! readOnly, ownerOnly, every action and both postures: the model of the kernel (walking the
//! encoded glob automaton and probing the encoded rule map) decides every random event exactly
//! as the engine does, verdict and reported rule.

use armor_core::posture::{Posture, PostureAction};
use armor_core::{Container, PolicySet, Workload};
use armor_enforce_bpflsm::{KernelOp, Model, compile};
use armor_testing::random::{self, Section, Vocabulary};
use proptest::prelude::*;

/// Process and file rules, globs twice as often as in the engine's test; paths with a space
/// and a non-ASCII name.
static V: Vocabulary = Vocabulary {
    paths: &[
        "/etc/shadow",
        "/etc/ssl/a.pem",
        "/etc/ssl/b.key",
        "/bin/cat",
        "/bin/sh",
        "/tmp/q/r",
        "/opt/x y",
        "/opt/é/z",
    ],
    dirs: &["/etc/", "/etc/ssl/", "/bin/", "/tmp/", "/"],
    globs: &[
        "/etc/*",
        "/etc/**",
        "/tmp/**",
        "/bin/?a*",
        "/etc/ssl/*.{pem,key}",
        "/opt/{a,x}*",
        "/opt/?/*",
        "/**/r",
        "/etc/ssl/[a-b].*",
        "/bin/[^c]*",
    ],
    sources: &["/bin/cat", "/bin/sh"],
    protocols: &["tcp"],
    capabilities: &["net_raw"],
    sections: &[Section::Process, Section::File],
    socket_families: &[2],
    socket_protocols: &[0],
    capability_numbers: &[13],
    glob_weight: 1,
};
const KEY: u64 = 0x0123_4567_89ab_cdef;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn kernel_model_with_globs_agrees_with_the_engine(
        a in prop::collection::vec(random::rule(&V), 1..6),
        b in prop::collection::vec(random::rule(&V), 0..4),
        posture_block in any::<bool>(),
        events in prop::collection::vec(random::event(&V), 1..12),
    ) {
        let mut text = random::policy_yaml(&V, "pa", false, None, &a);
        if !b.is_empty() {
            text.push_str("---\n");
            text.push_str(&random::policy_yaml(&V, "pb", false, None, &b));
        }
        let set = PolicySet::parse(&text, "random.yaml").unwrap();
        let policy = armor_core::CompiledPolicy::build(&set).unwrap();
        let web = Workload::Container(Container::new("shop", "web").label("app", "web"));
        let mut posture = Posture::default();
        posture.file = if posture_block { PostureAction::Block } else { PostureAction::Audit };
        let rules = policy.rule_set(&web, posture);
        let artifact = compile("shop/web", &rules);
        prop_assert!(artifact.unenforceable_rules().is_empty(), "{:?}", artifact.unenforceable_rules());
        let encoded = artifact.encode(3, KEY);
        let model = Model::new(&encoded, 3, KEY);
        for ev in &events {
            let e = ev.event(&V);
            let want = rules.decide(&e);
            let op = KernelOp::from_event(&e).unwrap();
            let got = model.decide(&op, e.source.as_deref(), e.uid);
            prop_assert_eq!(got.verdict, want.verdict, "event {:?}\n{}", e, text);
            if want.verdict != armor_core::Verdict::Allow {
                let want_rule = match want.reason {
                    armor_core::engine::Reason::Rule(r) => Some(r),
                    _ => None,
                };
                let got_rule = got.rule.and_then(|id| policy.rules().get(id as usize));
                prop_assert_eq!(got_rule, want_rule, "event {:?}\n{}", e, text);
            }
        }
    }
}
