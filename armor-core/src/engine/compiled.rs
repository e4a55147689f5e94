//! The compiled policies ([`CompiledPolicy`]) and their cache of rule sets per workload.

use super::*;

/// Why [`CompiledPolicy::build`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// More rules than [`Config::max_rules`].
    #[error("{count} rules exceed the limit of {limit}")]
    TooManyRules {
        /// Rules in the set.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A glob compiles to an automaton larger than [`Config::glob_size_limit`].
    #[error(
        "{location}: in policy {policy}: {rule}: pattern `{pattern}` compiles to more than \
         {limit} bytes"
    )]
    GlobTooLarge {
        /// `kind namespace/name` of the policy.
        policy: String,
        /// The rule's field path (`file.matchPatterns[3]`).
        rule: String,
        /// Where the rule is written (`file:line:col`).
        location: String,
        /// The pattern as written.
        pattern: String,
        /// The limit, in bytes.
        limit: usize,
    },
}

pub(super) struct PolicyEntry {
    pub(super) selector: CompiledSelector,
    pub(super) rules: std::ops::Range<usize>,
    pub(super) info: Arc<PolicyInfo>,
    /// Raw AppArmor lines (`spec.apparmor`).
    pub(super) apparmor: Option<String>,
    /// Presets with their effective action (Block when absent, like rules).
    pub(super) presets: Vec<(String, Action)>,
}

/// The immutable part of a compiled policy, shared with every [`RuleSet`] made from it.
pub(super) struct Shared {
    pub(super) config: Config,
    pub(super) rules: Vec<Rule>,
    pub(super) policies: Vec<PolicyEntry>,
}

impl Shared {
    pub(super) fn rule(&self, id: u32) -> Option<&Rule> {
        self.rules.get(id as usize)
    }
}

/// The shared part plus the rule-set cache. Rule sets hold only [`Shared`], never `Inner`, so the
/// cache does not keep itself alive through them.
pub(super) struct Inner {
    pub(super) shared: Arc<Shared>,
    pub(super) cache: Mutex<RuleSetCache>,
}

/// Rule sets by (selected policies, posture, host).
pub(super) type RuleSetCache = FxHashMap<(Vec<u32>, Posture, bool), Arc<RuleSet>>;

/// An immutable, compiled set of policies. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct CompiledPolicy {
    pub(super) inner: Arc<Inner>,
}

impl fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledPolicy")
            .field("policies", &self.inner.shared.policies.len())
            .field("rules", &self.inner.shared.rules.len())
            .finish()
    }
}

impl CompiledPolicy {
    /// Compiles `set` with the default [`Config`].
    pub fn build(set: &PolicySet) -> Result<Self, BuildError> {
        Self::build_with(set, Config::default())
    }

    /// Compiles `set` with `config`.
    pub fn build_with(set: &PolicySet, config: Config) -> Result<Self, BuildError> {
        let mut rules = Vec::new();
        let mut policies = Vec::with_capacity(set.policies.len());
        // Normalised once, when each policy entered the set.
        for (p, normalized) in set.policies.iter().zip(&set.rules) {
            let start = rules.len();
            rules.extend(normalized.iter().cloned());
            if rules.len() > config.max_rules {
                return Err(BuildError::TooManyRules {
                    count: rules.len(),
                    limit: config.max_rules,
                });
            }
            policies.push(PolicyEntry {
                selector: CompiledSelector::new(p),
                rules: start..rules.len(),
                info: Arc::new(PolicyInfo::of(p)),
                apparmor: p.spec.apparmor.clone(),
                presets: p
                    .spec
                    .presets
                    .iter()
                    .map(|pr| (pr.name.clone(), pr.action.unwrap_or(Action::Block)))
                    .collect(),
            });
        }
        check_glob_sizes(&rules, config.glob_size_limit)?;
        tracing::debug!(
            policies = policies.len(),
            rules = rules.len(),
            strategies = ?strategy_counts(&rules),
            "policy compiled"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    config,
                    rules,
                    policies,
                }),
                cache: Mutex::new(FxHashMap::default()),
            }),
        })
    }

    /// Every rule, in policy order.
    pub fn rules(&self) -> &[Rule] {
        &self.inner.shared.rules
    }

    /// The indices (into [`CompiledPolicy::rules`]) of the rules that apply to `workload`.
    pub fn selected_rules(&self, workload: &crate::workload::Workload) -> Vec<u32> {
        let mut out = Vec::new();
        for p in &self.inner.shared.policies {
            if p.selector.selects(workload) {
                out.extend(p.rules.clone().filter_map(|i| u32::try_from(i).ok()));
            }
        }
        out
    }

    /// The rules of a workload that every policy of its kind selects: every host policy
    /// (`host`) or every container policy (KubeArmorPolicy and KubeArmorClusterPolicy), under
    /// `posture`. What an offline report (`armorctl validate --enforcer`) compiles: a real
    /// workload gets a subset of these rules.
    pub fn rule_set_of_every_policy(&self, host: bool, posture: Posture) -> Arc<RuleSet> {
        let selected = self.policies_where(|p| p.info.kind.is_host() == host);
        self.cached_rule_set(selected, posture, host)
    }

    /// The compiled rules of `workload` under `posture`, shared with every workload that the same
    /// policies select.
    pub fn rule_set(&self, workload: &crate::workload::Workload, posture: Posture) -> Arc<RuleSet> {
        let selected = self.policies_where(|p| p.selector.selects(workload));
        self.cached_rule_set(selected, posture, workload.is_host())
    }

    /// The indices (load order) of the policies for which `keep` holds.
    pub(super) fn policies_where(&self, keep: impl Fn(&PolicyEntry) -> bool) -> Vec<u32> {
        self.inner
            .shared
            .policies
            .iter()
            .enumerate()
            .filter(|(_, p)| keep(p))
            .filter_map(|(i, _)| u32::try_from(i).ok())
            .collect()
    }

    /// The rule set of the policies `selected` (indices in load order), from the cache.
    pub(super) fn cached_rule_set(
        &self,
        selected: Vec<u32>,
        posture: Posture,
        host: bool,
    ) -> Arc<RuleSet> {
        let key = (selected, posture, host);
        if let Some(rs) = self.inner.cache.lock().get(&key) {
            return rs.clone();
        }
        let ids: Vec<u32> = key
            .0
            .iter()
            .filter_map(|&p| self.inner.shared.policies.get(p as usize))
            .flat_map(|p| p.rules.clone())
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        let rs = Arc::new(RuleSet::new(
            self.inner.shared.clone(),
            key.0.clone(),
            ids,
            posture,
            host,
        ));
        self.inner.cache.lock().insert(key, rs.clone());
        rs
    }
}
