//! Engine benchmarks: compile from YAML (parsing included) at 10/100/1k/10k rules, and decide at
//! 1k rules, engine against the naive matcher in the same run.

#![allow(
    clippy::expect_used,
    reason = "benchmark harness: a setup failure must abort the run"
)]

use std::hint::black_box;

use armor_benches::{compile_mix, decide_setup};
use armor_core::PostureConfig;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile_from_yaml");
    g.sample_size(20);
    for n in [10usize, 100, 1_000, 10_000] {
        let yaml = armor_testing::mix::rule_mix_yaml(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &yaml, |b, yaml| {
            b.iter(|| compile_mix(black_box(yaml)).expect("mix compiles"))
        });
    }
    g.finish();
}

fn decide(c: &mut Criterion) {
    const EVENTS: usize = 4096;
    let setup = decide_setup(1_000, EVENTS).expect("setup");
    let cfg = PostureConfig::new();
    let mut g = c.benchmark_group("decide_1k_rules");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("engine", |b| {
        b.iter(|| {
            let mut blocked = 0usize;
            for e in &setup.events {
                blocked += usize::from(setup.rules.decide(black_box(e)).is_blocked());
            }
            blocked
        })
    });
    g.sample_size(10);
    g.bench_function("naive", |b| {
        b.iter(|| {
            let mut blocked = 0usize;
            for e in &setup.events {
                let o = setup.naive.decide(&cfg, &setup.workload, black_box(e));
                blocked += usize::from(o.verdict == "block");
            }
            blocked
        })
    });
    g.finish();
}

criterion_group!(benches, compile, decide);
criterion_main!(benches);
