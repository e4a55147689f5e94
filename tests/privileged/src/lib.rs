//! Support for armor's privileged tests: the tests that need root and a kernel with BPF-LSM,
//! AppArmor or SELinux. They run inside the QEMU test guest started by `scripts/vm-test` (see
//! `tests/privileged/README.md`), and on any other machine they skip with a proven reason.
//!
//! # The skip rule
//! Every privileged test passes its kernel probe through [`gate`] (or the [`require!`] macro).
//! Outside the guest a probe that fails with [`Error::Unsupported`] — which always carries the
//! evidence, such as the exact errno of a trial load — prints `skipped: <reason>` and the test
//! passes. Inside the guest ([`guest::current`] is `Some`) nothing may skip: the same probe
//! failure fails the test.
//!
//! # Helpers
//! - [`cgroup::Cgroup`]: a workload cgroup v2 to run commands in, with its id.
//! - [`op::Op`] / [`op::Runner`]: the static `armor-op` helper that performs exactly one
//!   operation (exec, open, socket, capability use, chroot then open) and reports the errno,
//!   optionally inside a cgroup, as another uid, or under an AppArmor profile.
//! - [`fs`]: scratch files on tmpfs, overlayfs and 9p.
//! - [`bpf::DenyExec`]: the minimal BPF-LSM program (C, built by `build.rs`, loaded with aya).
//! - [`apparmor`], [`selinux`], [`kmsg`]: policy loading and reading denial records back.
//! - [`live`]: how a corpus case runs live (the `armor-op` run, the files of its root).

pub mod apparmor;
pub mod bpf;
pub mod cgroup;
mod error;
pub mod fs;
pub mod guest;
pub mod kmsg;
pub mod live;
pub mod lsm;
pub mod op;
pub mod selinux;
mod skip;

pub use error::{Error, Result, Unsupported, error_chain};
pub use skip::{gate, require_root};
