//! The benchmark rule mix: it parses, compiles, hits and misses as designed, and both
//! implementations agree on it; a 50k-rule file loads.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]

use armor_core::{CompiledPolicy, Container, PolicySet, Posture, PostureConfig, Workload};
use armor_testing::corpus::Outcome;
use armor_testing::mix::{mix_events, rule_mix_yaml};
use armor_testing::naive::NaiveMatcher;

#[test]
fn mix_hits_half_and_agrees_with_naive() {
    let set = PolicySet::parse(&rule_mix_yaml(1000), "mix.yaml").unwrap();
    let compiled = CompiledPolicy::build(&set).unwrap();
    assert_eq!(compiled.rules().len(), 1000);
    let counts = armor_core::engine::strategy_counts(compiled.rules());
    assert_eq!(counts["exact"], 600); // 40 % exact + 20 % fromSource-qualified exact
    assert_eq!(counts["directory"], 300);
    assert_eq!(counts["glob"], 100);
    let w: Workload = Container::new("bench", "app").label("app", "bench").into();
    let rules = compiled.rule_set(&w, Posture::default());
    let naive = NaiveMatcher::new(set.policies().to_vec());
    let events = mix_events(1000, 2000, 7);
    let mut blocked = 0;
    for e in &events {
        let d = rules.decide(e);
        blocked += usize::from(d.is_blocked());
        assert_eq!(
            Outcome::from_decision(&d),
            naive.decide(&PostureConfig::new(), &w, e),
            "{e:?}"
        );
    }
    assert_eq!(
        blocked, 1000,
        "every even event hits a Block rule, every odd one misses"
    );
}

#[test]
fn fifty_thousand_rules_load() {
    let yaml = rule_mix_yaml(50_000);
    let set = PolicySet::parse(&yaml, "big.yaml").unwrap();
    let compiled = CompiledPolicy::build(&set).unwrap();
    assert_eq!(compiled.rules().len(), 50_000);
    let w: Workload = Container::new("bench", "app").label("app", "bench").into();
    let rules = compiled.rule_set(&w, Posture::default());
    let events = mix_events(50_000, 100, 1);
    assert_eq!(
        events
            .iter()
            .filter(|e| rules.decide(e).is_blocked())
            .count(),
        50
    );
}
