//! Workload cgroups (cgroup v2) for the tests: armor-testing's, shared with the host tests of
//! armor-ebpf and armor-runtime.

pub use armor_testing::cgroup::{Cgroup, cgroup_of, cgroup2_root};
