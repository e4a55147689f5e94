//! Test support for armor.
//!
//! * [`cgroup`]: cgroup v2 directories tests run processes in, with their ids.
//! * [`lines`]: a child process's log lines, waited for with a deadline.
//! * [`corpus`]: the shared decision corpus (`corpus/`, shipped with the crate), its runner and the
//!   [`corpus::DecisionMaker`] trait every engine and enforcer model implements.
//! * [`naive`]: a naive reference matcher sharing no matching code with the engine.
//! * [`recording`]: an [`armor_core::enforcer::Enforcer`] that records calls.
//! * [`mix`]: the benchmark rule mix and its events.
//! * [`random`]: random policies and operations for property tests, over a vocabulary each
//!   suite chooses.
//! * [`fuzz`]: a mutation fuzzer on stable Rust for the parsers of untrusted bytes.

#![forbid(unsafe_code)]

pub mod cgroup;
pub mod corpus;
pub mod fuzz;
pub mod lines;
pub mod mix;
#[allow(
    clippy::indexing_slicing,
    reason = "deliberately naive reference code: simple indexing keeps it obviously right; a panic fails a test"
)]
pub mod naive;
pub mod random;
pub mod recording;

/// Whether this process runs with effective uid 0 (from `/proc/self/status`): what tests that
/// start containerd, load eBPF or run an agent with its event source check before they run.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}
