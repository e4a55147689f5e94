//! The shared corpus against the reference engine and the naive matcher.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]

use armor_testing::corpus::{self, DecisionMaker, Engine};
use armor_testing::naive::Naive;

fn check(maker: &dyn DecisionMaker) {
    let cases = corpus::load_dir(&corpus::corpus_dir()).expect("corpus loads");
    assert!(
        cases.len() >= 100,
        "the corpus has only {} cases",
        cases.len()
    );
    let report = corpus::run(&cases, maker);
    println!("{report}");
    assert!(report.ok(), "{report}");
    assert!(
        report.skipped.is_empty(),
        "no case may be skipped by {}: {report}",
        maker.name()
    );
    assert_eq!(report.passed, cases.len());
}

#[test]
fn corpus_against_engine() {
    check(&Engine);
}

#[test]
fn corpus_against_naive_matcher() {
    check(&Naive);
}

#[test]
fn a_wrong_expectation_is_caught() {
    // The runner must be able to fail: flip one expectation and see it reported.
    let mut cases = corpus::load_dir(&corpus::corpus_dir()).expect("corpus loads");
    let mut case = cases.remove(0);
    case.expect.verdict = if case.expect.verdict == "block" {
        "allow".into()
    } else {
        "block".into()
    };
    let report = corpus::run(&[case], &Engine);
    assert_eq!(report.failed.len(), 1, "{report}");
}
