#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! Random policies (YAML from a small vocabulary, so targets, sources and events collide):
//! every compiled profile reads back to itself and is accepted by the real
//! `apparmor_parser -Q -K -S`, and the model of the profile agrees with the engine on random
//! events (verdict and rule), except in categories holding a rule `compile` lists as not
//! enforced.

use armor_core::enforcer::Artifact;
use armor_core::engine::Reason;
use armor_core::event::{Operation, net};
use armor_core::posture::{Posture, PostureAction};
use armor_core::workload::{Container, WorkloadKey};
use armor_core::{Category, CompiledPolicy, PolicySet, Verdict};
use armor_enforce_apparmor::{AaOp, AppArmor, Model, compile, parse};
use armor_testing::random::{self, Section, Vocabulary};
use proptest::prelude::*;

/// Every section; IPv4 sockets with explicit protocols (AppArmor mediates by family and
/// type, which the profile's compile warns about when a rule differs).
static V: Vocabulary = Vocabulary {
    paths: &[
        "/etc/shadow",
        "/etc/ssl/a.pem",
        "/bin/cat",
        "/bin/sh",
        "/tmp/q/r",
        "/opt/x y",
    ],
    dirs: &["/etc/", "/etc/ssl/", "/bin/", "/tmp/", "/"],
    globs: &[
        "/etc/*",
        "/tmp/**",
        "/bin/?a*",
        "/etc/ssl/*.pem",
        "/opt/{a,x}*",
    ],
    sources: &["/bin/cat", "/bin/sh", "/usr/bin/env"],
    protocols: &["tcp", "udp", "icmp", "raw", "stream", "dgram", "all"],
    capabilities: &["net_raw", "chown", "sys_admin", "dac_override"],
    sections: &[
        Section::Process,
        Section::File,
        Section::Network,
        Section::Capabilities,
    ],
    socket_families: &[net::AF_INET],
    socket_protocols: &[1, 6, 17],
    capability_numbers: &[13, 0, 21, 1],
    glob_weight: 0,
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_policies_compile_and_agree(
        p1 in proptest::collection::vec(random::rule(&V), 1..7),
        p2 in proptest::collection::vec(random::rule(&V), 0..4),
        posture in (any::<bool>(), any::<bool>(), any::<bool>()),
        events in proptest::collection::vec(random::event(&V), 1..12),
    ) {
        let mut text = random::policy_yaml(&V, "alpha", false, None, &p1);
        if !p2.is_empty() {
            text.push_str("---\n");
            text.push_str(&random::policy_yaml(&V, "beta", false, None, &p2));
        }
        let set = PolicySet::parse(&text, "gen.yaml").unwrap_or_else(|e| panic!("{text}\n{e}"));
        let policy = CompiledPolicy::build(&set).unwrap();
        let act = |b: bool| if b { PostureAction::Block } else { PostureAction::Audit };
        let mut p = Posture::default();
        p.file = act(posture.0);
        p.network = act(posture.1);
        p.capabilities = act(posture.2);
        let w: armor_core::Workload = Container::new("shop", "web").label("app", "web").into();
        let rules = policy.rule_set(&w, p);
        let a = compile(&WorkloadKey::new("shop/web"), &rules);
        prop_assert_eq!(&parse(&a.text).unwrap(), &a.profile.without_rules());
        if let Err(e) = AppArmor::new("/nonexistent").check(&a.text) {
            panic!("apparmor_parser rejected:\n{e}\npolicies:\n{text}\nprofile:\n{}", a.text);
        }
        let model = Model::new(&a.profile);
        for ev in &events {
            let e = ev.event(&V);
            let cat = e.operation.category();
            if a.unenforceable().iter().any(|u| policy.rules()[u.rule as usize].category == cat) {
                continue;
            }
            // compile's named deviation: under a file allow-list, a full fromSource child may
            // read its own binary (the kernel maps it there). It is warned on the rules that made
            // the child, which may be of another category than this file event.
            let own_binary = matches!(&e.operation, Operation::File { path, .. }
                if Some(path.as_str()) == e.source.as_deref());
            if own_binary
                && a.unenforceable().iter().any(|u| u.reason.contains("may read its own binary"))
            {
                continue;
            }
            let Some(op) = AaOp::from_event(&e) else { continue };
            let engine = rules.decide(&e);
            let d = model.decide(&*rules, e.source.as_deref(), &op);
            prop_assert_eq!(d.verdict, engine.verdict, "{:?}\n{}\n{}", e, text, a.text);
            if engine.verdict != Verdict::Allow {
                let want = match engine.reason {
                    Reason::Rule(r) => Some((r.policy.name.clone(), r.index)),
                    _ => None,
                };
                let got = d.rule.map(|id| {
                    let r = &policy.rules()[id as usize];
                    (r.policy.name.clone(), r.index)
                });
                prop_assert_eq!(got, want, "{:?}\n{}\n{}", e, text, a.text);
            }
            prop_assert!(cat != Category::Syscall);
        }
    }
}
