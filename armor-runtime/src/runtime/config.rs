//! The runtime's settings ([`RuntimeConfig`]), where kernel visibility goes ([`VisibilitySink`])
//! and loading policies.

use super::*;

/// Where the runtime sets per-cgroup visibility in the kernel (the event source's
/// [`armor_ebpf::Controls`]; tests record the calls).
pub trait VisibilitySink: Send + Sync {
    /// Makes `v` visible for the cgroup.
    fn set(&self, cgroup_id: u64, v: &Visibility) -> Result<()>;
    /// Removes the cgroup's entry (its syscall filter too).
    fn clear(&self, cgroup_id: u64) -> Result<()>;
    /// Sets the syscalls (x86_64 numbers) the cgroup reports whatever its visibility (its
    /// syscall rules name them; 0: the host); empty removes its filter.
    fn set_syscalls(&self, cgroup_id: u64, syscalls: &[u16]) -> Result<()>;
}

impl VisibilitySink for armor_ebpf::Controls {
    fn set(&self, cgroup_id: u64, v: &Visibility) -> Result<()> {
        Ok(self.set_visibility(cgroup_id, v)?)
    }
    fn clear(&self, cgroup_id: u64) -> Result<()> {
        // Both, whatever the first one says.
        let syscalls = self.set_syscalls(cgroup_id, &[]);
        self.clear_visibility(cgroup_id)?;
        Ok(syscalls?)
    }
    fn set_syscalls(&self, cgroup_id: u64, syscalls: &[u16]) -> Result<()> {
        Ok(armor_ebpf::Controls::set_syscalls(
            self, cgroup_id, syscalls,
        )?)
    }
}

/// Runtime settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// `ClusterName`.
    pub cluster_name: String,
    /// `HostName` and the host workload's node name.
    pub host_name: String,
    /// Node labels (for host policies).
    pub host_labels: std::collections::BTreeMap<String, String>,
    /// Default postures, visibility and namespace annotations.
    pub posture: PostureConfig,
    /// Alerts per second per workload before throttling (0: never throttle).
    pub max_alerts_per_sec: u32,
    /// How long alerts are dropped once the limit is hit.
    pub throttle: Duration,
    /// Refuse what would run with rules outside the kernel: a container reported by the OCI
    /// hook whose rules are not all enforced ([`Coverage::complete`](crate::coverage::Coverage::complete)) is refused, and a
    /// policy replacement that would leave a selected workload so is rolled back. Without it,
    /// such rules are reported per rule and their Block decisions alerted as `Audit (Block)`.
    pub require_enforcement: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cluster_name: "default".to_string(),
            host_name: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            host_labels: std::collections::BTreeMap::new(),
            posture: PostureConfig::new(),
            max_alerts_per_sec: 10,
            throttle: Duration::from_secs(30),
            require_enforcement: false,
        }
    }
}

impl RuntimeConfig {
    /// Sets the alert throttling.
    #[must_use]
    pub fn throttling(mut self, max_alerts_per_sec: u32, throttle: Duration) -> Self {
        self.max_alerts_per_sec = max_alerts_per_sec;
        self.throttle = throttle;
        self
    }

    /// Sets [`RuntimeConfig::require_enforcement`].
    #[must_use]
    pub fn require_enforcement(mut self, require: bool) -> Self {
        self.require_enforcement = require;
        self
    }
}

/// Loads and compiles every policy under `paths`.
pub fn load_policies<P: AsRef<Path>>(paths: &[P]) -> Result<CompiledPolicy> {
    load_policy_files(&armor_core::PolicyFiles::read(
        paths,
        &Config::default().load_limits,
    ))
}

/// Parses, validates and compiles policy files already read ([`armor_core::PolicyFiles`]),
/// like [`load_policies`].
pub fn load_policy_files(files: &armor_core::PolicyFiles) -> Result<CompiledPolicy> {
    let set = files.load(&Config::default()).map_err(Error::Policies)?;
    CompiledPolicy::build(&set).map_err(Error::Build)
}
