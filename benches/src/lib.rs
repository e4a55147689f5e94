//! Shared setup for armor's end-to-end benchmarks (`cargo bench -p armor-benches`).
//!
//! The rule mix and its events come from [`armor_testing::mix`]; this crate only wires them to
//! the engine and the naive matcher so that every bench measures the same inputs.
#![forbid(unsafe_code)]

use armor_core::{CompiledPolicy, Container, Event, PolicySet, Posture, RuleSet, Workload};
use armor_testing::naive::NaiveMatcher;
use std::sync::Arc;

/// The workload every rule of the mix selects.
pub fn bench_workload() -> Workload {
    Container::new("bench", "app").label("app", "bench").into()
}

/// Parses and compiles the `n`-rule mix and returns the workload's rule set.
pub fn compile_mix(yaml: &str) -> Result<Arc<RuleSet>, Box<dyn std::error::Error>> {
    let set = PolicySet::parse(yaml, "mix.yaml")?;
    let compiled = CompiledPolicy::build(&set)?;
    Ok(compiled.rule_set(&bench_workload(), Posture::default()))
}

/// Everything the decide benchmark needs for `n` rules.
#[derive(Debug)]
#[non_exhaustive]
pub struct DecideSetup {
    /// The engine's compiled rules.
    pub rules: Arc<RuleSet>,
    /// The naive matcher over the same policies.
    pub naive: NaiveMatcher,
    /// The workload.
    pub workload: Workload,
    /// Half hits, half misses.
    pub events: Vec<Event>,
}

/// Builds the decide setup for `n` rules and `count` events.
pub fn decide_setup(n: usize, count: usize) -> Result<DecideSetup, Box<dyn std::error::Error>> {
    let yaml = armor_testing::mix::rule_mix_yaml(n);
    let set = PolicySet::parse(&yaml, "mix.yaml")?;
    let compiled = CompiledPolicy::build(&set)?;
    let workload = bench_workload();
    Ok(DecideSetup {
        rules: compiled.rule_set(&workload, Posture::default()),
        naive: NaiveMatcher::new(set.policies().to_vec()),
        workload,
        events: armor_testing::mix::mix_events(n, count, 42),
    })
}
