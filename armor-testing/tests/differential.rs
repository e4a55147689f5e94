//! Property test: on random policies and events, the engine and the naive matcher agree.
//!
//! Policies are generated as YAML text from a small vocabulary (so that targets, sources and
//! events collide often), parsed by the real loader, then decided by both implementations.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]

use armor_core::event::net;
use armor_core::posture::{Posture, PostureAction, PostureConfig};
use armor_core::workload::{Container, Host, Workload};
use armor_core::{CompiledPolicy, PolicySet};
use armor_testing::corpus::Outcome;
use armor_testing::naive::NaiveMatcher;
use armor_testing::random::{self, Section, Vocabulary};
use proptest::prelude::*;

/// Every section; paths, directories and globs that overlap, comma lists of protocols and
/// capabilities.
static V: Vocabulary = Vocabulary {
    paths: &[
        "/etc/shadow",
        "/etc/passwd",
        "/etc/ssl/certs/ca.pem",
        "/bin/cat",
        "/bin/sh",
        "/usr/bin/curl",
        "/tmp/x/y",
        "/tmp/a",
    ],
    dirs: &[
        "/",
        "/etc/",
        "/etc/ssl/",
        "/bin/",
        "/tmp/",
        "/tmp/x/",
        "/usr/",
    ],
    globs: &[
        "/etc/*",
        "/etc/**",
        "/tmp/?",
        "/bin/{ca,s}*",
        "/usr/**/curl",
        "/etc/ssl/[a-c]*/*.pem",
        "/tmp/*/y",
    ],
    sources: &["/bin/cat", "/bin/sh", "/usr/bin/curl"],
    protocols: &[
        "tcp", "udp", "icmp", "raw", "stream", "dgram", "all", "tcp,udp",
    ],
    capabilities: &["net_raw", "sys_admin", "chown", "net_raw,chown"],
    sections: &[
        Section::Process,
        Section::File,
        Section::Network,
        Section::Capabilities,
    ],
    socket_families: &[net::AF_INET, net::AF_INET6, net::AF_UNIX],
    socket_protocols: &[0, 1, 6, 17, 58],
    capability_numbers: &[13, 21, 0, 7],
    glob_weight: 0,
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_naive_matcher(
        host in any::<bool>(),
        p1 in proptest::collection::vec(random::rule(&V), 1..6),
        p2 in proptest::collection::vec(random::rule(&V), 0..4),
        a1 in proptest::option::of(proptest::sample::select(&["Allow", "Audit", "Block", "block"][..])),
        posture in (any::<bool>(), any::<bool>(), any::<bool>()),
        events in proptest::collection::vec(random::event(&V), 1..8),
    ) {
        let mut text = random::policy_yaml(&V, "alpha", host, a1, &p1);
        if !p2.is_empty() {
            text.push_str("---\n");
            text.push_str(&random::policy_yaml(&V, "beta", host, None, &p2));
        }
        let set = match PolicySet::parse(&text, "gen.yaml") {
            Ok(s) => s,
            Err(e) => panic!("generated policy rejected:\n{text}\n{e}"),
        };
        let compiled = CompiledPolicy::build(&set).unwrap();
        let act = |b: bool| if b { PostureAction::Block } else { PostureAction::Audit };
        let mut p = Posture::default();
        p.file = act(posture.0);
        p.network = act(posture.1);
        p.capabilities = act(posture.2);
        let mut cfg = PostureConfig::new();
        cfg.container_default = p;
        cfg.host_default = p;
        let workload: Workload = if host {
            Host::new("n1").label("role", "edge").into()
        } else {
            Container::new("shop", "web").label("app", "web").into()
        };
        let rules = compiled.rule_set(&workload, p);
        let naive = NaiveMatcher::new(set.policies().to_vec());
        for ev in &events {
            let e = ev.event(&V);
            let engine = Outcome::from_decision(&rules.decide(&e));
            let reference = naive.decide(&cfg, &workload, &e);
            prop_assert_eq!(&engine, &reference, "event {:?}\npolicies:\n{}", e, text);
        }
    }
}
