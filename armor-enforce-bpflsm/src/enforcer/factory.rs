//! [`Factory`]: builds the enforcer for a runtime's list of enforcers.

use super::*;

/// Builds the BPF-LSM enforcer for a runtime's list of enforcers (choice `bpflsm`): the trial
/// is the real load of its programs, kept, so applying a workload's rules is then only map
/// updates. When the load fails, the reason is the probe's, which names the refusal precisely
/// (`kernel refuses lsm programs (EPERM)`) and stops at the first program.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Factory {
    /// Capacities and alert rate limit of a new enforcer.
    pub config: Config,
    /// An enforcer this process already loaded, to build instead of a new one from
    /// [`Self::config`] (its programs stay attached): shared by the runtimes an embedder starts
    /// one after another. Building still loads it (a no-op when loaded).
    pub enforcer: Option<Arc<BpfLsm>>,
}

impl Factory {
    /// A factory building a new enforcer with `config`.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            enforcer: None,
        }
    }

    /// A factory building `enforcer` (already made, possibly loaded) each time.
    pub fn with_enforcer(enforcer: Arc<BpfLsm>) -> Self {
        Self {
            config: enforcer.config,
            enforcer: Some(enforcer),
        }
    }
}

impl EnforcerFactory for Factory {
    fn choice(&self) -> &'static str {
        "bpflsm"
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn build(&self) -> Result<Built, String> {
        let lsm = match &self.enforcer {
            Some(lsm) => Arc::clone(lsm),
            None => Arc::new(BpfLsm::new(self.config)),
        };
        match lsm.load() {
            Ok(()) => Ok(Built::new(lsm)),
            Err(e) => Err(match lsm.probe() {
                Support::Unsupported { reason } => reason,
                _ => armor_core::diag::error_chain(&e),
            }),
        }
    }
}
