//! [`Factory`]: builds the enforcer for a runtime's list of enforcers.

use super::*;

/// Builds the BPF-LSM enforcer for a runtime's list of enforcers (choice `bpflsm`): the trial
/// is the real load of its programs, kept, so applying a workload's rules is then only map
/// updates. When the load fails, the reason is the probe's, which names the refusal precisely
/// (`kernel refuses lsm programs (EPERM)`) and stops at the first program.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Factory {
    /// Capacities and alert rate limit of a new enforcer.
    pub config: Config,
    /// Where a new enforcer pins its programs ([`BpfLsm::pinned`]; default
    /// [`DEFAULT_PIN_ROOT`]); `None`: not pinned, enforcement ends with the enforcer.
    pub pin_root: Option<PathBuf>,
    /// An enforcer this process already loaded, to build instead of a new one from
    /// [`Self::config`] (its programs stay attached): shared by the runtimes an embedder starts
    /// one after another. Building still loads it (a no-op when loaded).
    pub enforcer: Option<Arc<BpfLsm>>,
}

impl Default for Factory {
    /// The default capacities, pinned under [`DEFAULT_PIN_ROOT`].
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl Factory {
    /// A factory building a new enforcer with `config`, pinned under [`DEFAULT_PIN_ROOT`].
    pub fn new(config: Config) -> Self {
        Self {
            config,
            pin_root: Some(PathBuf::from(DEFAULT_PIN_ROOT)),
            enforcer: None,
        }
    }

    /// The same pinning under `root` (`None`: not pinned).
    #[must_use]
    pub fn pin_root(mut self, root: Option<PathBuf>) -> Self {
        self.pin_root = root;
        self
    }

    /// A factory building `enforcer` (already made, possibly loaded) each time.
    pub fn with_enforcer(enforcer: Arc<BpfLsm>) -> Self {
        Self {
            config: enforcer.config,
            pin_root: enforcer.pin_root.clone(),
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

    /// Loads (or adopts) the programs; the note says what became of pinning.
    fn build(&self) -> Result<Built, String> {
        let lsm = match (&self.enforcer, &self.pin_root) {
            (Some(lsm), _) => Arc::clone(lsm),
            (None, Some(root)) => Arc::new(BpfLsm::pinned(self.config, root)),
            (None, None) => Arc::new(BpfLsm::new(self.config)),
        };
        match lsm.load() {
            Ok(()) => {
                let pinning = lsm.pinning();
                let mut built = Built::new(lsm);
                if pinning != Pinning::Off {
                    built.notes.push(pinning.to_string());
                }
                Ok(built)
            }
            Err(e) => Err(match lsm.probe() {
                Support::Unsupported { reason } => reason,
                _ => armor_core::diag::error_chain(&e),
            }),
        }
    }
}
