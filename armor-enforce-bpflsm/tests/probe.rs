#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! `probe` trial-loads a real lsm program and reports the exact outcome.

use armor_core::enforcer::{Enforcer, Support};
use armor_enforce_bpflsm::{BpfLsm, Config};

fn lsm_list() -> Option<String> {
    std::fs::read_to_string("/sys/kernel/security/lsm").ok()
}

/// Inside the test kernel (scripts/vm-test) nothing may be unsupported.
fn in_test_kernel() -> bool {
    std::fs::read_to_string("/proc/cmdline").is_ok_and(|c| c.contains("armor_vm_profile="))
        || std::env::var_os("ARMOR_VM").is_some()
}

#[test]
fn probe_names_the_errno_or_supports() {
    let lsm = BpfLsm::new(Config::default());
    let support = lsm.probe();
    eprintln!("probe: {support:?}");
    let list = lsm_list().unwrap_or_default();
    match support {
        Support::Supported => {
            // Only a kernel with the BPF LSM active can load lsm programs.
            assert!(
                list.split(',').any(|l| l.trim() == "bpf"),
                "lsm list: {list}"
            );
            lsm.load().unwrap();
        }
        Support::Unsupported { reason } => {
            assert!(
                !in_test_kernel(),
                "unsupported in the test kernel: {reason}"
            );
            // Without CAP_BPF even the maps fail; with it, the lsm program load names the errno.
            let errno_named = reason.contains("(errno ") || reason.contains("os error");
            assert!(errno_named, "reason lacks the errno: {reason}");
            if reason.starts_with("kernel refuses lsm programs") {
                assert!(reason.contains("EPERM (errno 1)"), "{reason}");
                assert!(reason.contains("bpf_prog_load of `lsm/"), "{reason}");
            }
            // The same refusal makes `apply` fail cleanly rather than pretend.
            let err = lsm.load().unwrap_err();
            eprintln!("load: {err}");
        }
        other => panic!("unexpected support value {other:?}"),
    }
}
