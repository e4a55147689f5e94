//! What the kernel really enforces, per workload, and the agent's readiness built from it.
//!
//! Coverage is per rule. After the runtime applies a workload's rules it knows, from the
//! artefact the enforcer compiled ([`armor_core::enforcer::Artifact::unenforceable`]), which
//! rules the kernel carries. Each rule the kernel does not carry is reported when it is applied,
//! and its Block decisions on the operations the monitor sees (processes, files, sockets; not
//! DNS queries) are alerted as `Audit (Block)` with `Enforcer: eBPF Monitor`: never silently
//! dropped. A workload whose rules no kernel enforcer holds (no enforcer
//! chosen, the enforcer does not cover it, its apply failed) is *monitored only*: every Block
//! decision of it is such an alert.
//!
//! ```
//! use armor_runtime::coverage::{Coverage, Readiness};
//! fn report(r: &Readiness) -> Vec<String> {
//!     let mut lines = vec![r.summary()];
//!     for (key, coverage) in r.incomplete() {
//!         if let Coverage::Partial { gaps, .. } = coverage {
//!             lines.extend(gaps.iter().map(|g| format!("{key}: {g}")));
//!         } else {
//!             lines.push(format!("{key}: {coverage}"));
//!         }
//!     }
//!     lines
//! }
//! let empty = Readiness::default();
//! assert!(empty.fully_enforced());
//! assert_eq!(report(&empty).len(), 1);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use armor_core::RuleSet;
use armor_core::enforcer::RuleGap;
use armor_core::engine::Decision;
use armor_core::model::{Action, PolicyKind};
use armor_core::rule::PolicyInfo;
use armor_core::workload::WorkloadKey;

/// How much of one workload's rules the kernel enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Coverage {
    /// No policy selects the workload: there is nothing to enforce.
    NoRules,
    /// The kernel enforcer carries every rule.
    Enforced {
        /// The enforcer (`BPFLSM`, `AppArmor`).
        enforcer: &'static str,
    },
    /// The kernel enforcer carries the rules except `gaps`; the monitor decides those and
    /// alerts their Block decisions as `Audit (Block)`.
    Partial {
        /// The enforcer.
        enforcer: &'static str,
        /// The rules it does not carry.
        gaps: Vec<RuleGap>,
    },
    /// No kernel enforcer holds the rules: every Block decision is reported as `Audit (Block)`
    /// by the monitor and nothing is denied.
    MonitoredOnly {
        /// Why (no enforcer, not covered, the apply failed).
        reason: String,
    },
}

impl Coverage {
    /// Whether a kernel enforcer holds (some of) the workload's rules.
    pub fn in_kernel(&self) -> bool {
        matches!(self, Self::Enforced { .. } | Self::Partial { .. })
    }

    /// Whether the kernel decides `d` (so the kernel's alert is the report of a Block): the
    /// workload's rules are in the kernel and the winning rule is not one of its gaps.
    pub fn kernel_decides(&self, d: &Decision<'_>) -> bool {
        match self {
            Self::Enforced { .. } => true,
            Self::Partial { gaps, .. } => d
                .rule_id
                .is_none_or(|id| !gaps.iter().any(|g| g.rule == id)),
            Self::NoRules | Self::MonitoredOnly { .. } => false,
        }
    }

    /// Whether nothing of the workload's rules is left to the monitor alone.
    pub fn complete(&self) -> bool {
        matches!(self, Self::Enforced { .. } | Self::NoRules)
    }

    /// `enforced`, `partly enforced`, `monitored only`, `no rules`.
    pub fn state(&self) -> &'static str {
        match self {
            Self::NoRules => "no rules",
            Self::Enforced { .. } => "enforced",
            Self::Partial { .. } => "partly enforced",
            Self::MonitoredOnly { .. } => "monitored only",
        }
    }
}

impl fmt::Display for Coverage {
    /// The state, with the enforcer, the rules left out or the reason.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRules => f.write_str("no rules"),
            Self::Enforced { enforcer } => write!(f, "enforced by {enforcer}"),
            Self::Partial { enforcer, gaps } => {
                let fields: Vec<String> = gaps
                    .iter()
                    .map(|g| format!("{} of {}", g.field, g.policy))
                    .collect();
                write!(
                    f,
                    "partly enforced by {enforcer}; only reported (Audit (Block)): {}",
                    fields.join(", ")
                )
            }
            Self::MonitoredOnly { reason } => write!(f, "monitored only: {reason}"),
        }
    }
}

/// How many workloads are in each [`Coverage`] state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Every rule in the kernel.
    pub enforced: usize,
    /// Some rules only reported.
    pub partial: usize,
    /// Nothing in the kernel.
    pub monitored_only: usize,
    /// Nothing to enforce.
    pub no_rules: usize,
}

/// What the runtime really enforces now: per workload, and the apply failures so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Readiness {
    /// The kernel enforcer in use (`None`: audit-only monitoring).
    pub enforcer: Option<&'static str>,
    /// The host first, then the containers and services by key.
    pub workloads: Vec<(WorkloadKey, Coverage)>,
    /// Applies that failed since the runtime started (a capacity error, a tool or a system
    /// call that failed); each left its workload on its previous rules or monitored only.
    pub apply_failures: u64,
}

impl Readiness {
    /// The number of workloads in each state.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for (_, cov) in &self.workloads {
            match cov {
                Coverage::NoRules => c.no_rules += 1,
                Coverage::Enforced { .. } => c.enforced += 1,
                Coverage::Partial { .. } => c.partial += 1,
                Coverage::MonitoredOnly { .. } => c.monitored_only += 1,
            }
        }
        c
    }

    /// Whether every workload's rules are all in the kernel (or it has none) and no apply failed.
    pub fn fully_enforced(&self) -> bool {
        self.apply_failures == 0 && self.workloads.iter().all(|(_, c)| c.complete())
    }

    /// The workloads whose rules are not all in the kernel, with why.
    pub fn incomplete(&self) -> impl Iterator<Item = &(WorkloadKey, Coverage)> {
        self.workloads.iter().filter(|(_, c)| !c.complete())
    }

    /// One line: `enforcing with BPFLSM: 3 enforced, 1 partly enforced, 0 monitored only, 2
    /// without rules; 0 apply failures` (or `audit-only (no kernel enforcer): …`).
    pub fn summary(&self) -> String {
        let c = self.counts();
        format!(
            "{}: {} enforced, {} partly enforced, {} monitored only, {} without rules; {} apply \
             failures",
            self.enforcer.map_or_else(
                || "audit-only (no kernel enforcer)".to_string(),
                |e| format!("enforcing with {e}")
            ),
            c.enforced,
            c.partial,
            c.monitored_only,
            c.no_rules,
            self.apply_failures
        )
    }
}

/// A policy by its identity: kind, namespace (`KubeArmorPolicy` only) and name, as an
/// orchestrator names the object it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct PolicyName {
    /// The kind.
    pub kind: PolicyKind,
    /// `metadata.namespace` (`KubeArmorPolicy` only).
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl From<&PolicyInfo> for PolicyName {
    fn from(p: &PolicyInfo) -> Self {
        Self {
            kind: p.kind,
            namespace: p.namespace.clone(),
            name: p.name.clone(),
        }
    }
}

impl fmt::Display for PolicyName {
    /// `KubeArmorPolicy shop/block-secrets`, `KubeArmorClusterPolicy no-shells`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Why a workload is [`Coverage::MonitoredOnly`] when the machine has no kernel enforcer at all
/// (audit-only): the same for every workload.
pub const NO_ENFORCER: &str = "no kernel enforcer (audit-only)";

/// How many workloads a line of [`policy_gaps`] names before it counts the rest.
const NAMED_WORKLOADS: usize = 5;

/// What is not enforced of each policy, from each workload's coverage and rules: per policy,
/// one line per distinct problem, naming the workloads it concerns (five, then how many
/// more), in a stable order. Policies with nothing missing are absent. A problem is:
/// - a Block or Allow rule the enforcer does not carry ([`Coverage::Partial`]):
///   `AppArmor does not enforce file.matchPaths[0] (Block): <reason> (on shop/web-1/web)`;
/// - a workload no kernel enforcer holds ([`Coverage::MonitoredOnly`]), for each policy with a
///   Block or Allow rule for it: `monitored only, nothing denied: <reason> (on host)`. Without
///   any kernel enforcer ([`NO_ENFORCER`], the same for every workload) the line names no
///   workload: `monitored only, nothing denied: no kernel enforcer (audit-only) on this
///   node`, so it does not change as workloads come and go.
///
/// - on such a workload, for each policy with presets or DNS rules (whatever their action: the
///   monitor cannot decide them): `presets and DNS rules neither enforced nor alerted: <reason>`.
///
/// Other Audit rules are left out: the monitor alerts them whether the kernel holds them or not
/// (a [`Coverage::Partial`] gap of an Audit preset or DNS rule is listed like a Block rule's).
/// A gap whose rule `rules` does not hold names no policy and is left out here (the agent's
/// log still has it).
pub fn policy_gaps<'a>(
    workloads: impl IntoIterator<Item = (&'a WorkloadKey, &'a Coverage, &'a RuleSet)>,
) -> BTreeMap<PolicyName, Vec<String>> {
    // By policy (its shared `PolicyInfo`, by address: no name is built per rule), then by line.
    type Lines<'a> = BTreeMap<String, Vec<&'a str>>;
    let mut problems: HashMap<*const PolicyInfo, (&'a PolicyInfo, Lines<'a>)> = HashMap::new();
    let mut add = |policy: &'a PolicyInfo, line: &str, on: Option<&'a str>| {
        let (_, lines) = problems
            .entry(std::ptr::from_ref(policy))
            .or_insert_with(|| (policy, BTreeMap::new()));
        let workloads = match lines.get_mut(line) {
            Some(w) => w,
            None => lines.entry(line.to_string()).or_default(),
        };
        if let Some(name) = on {
            workloads.push(name);
        }
    };
    for (key, coverage, rules) in workloads {
        match coverage {
            Coverage::Partial { enforcer, gaps } => {
                for g in gaps {
                    let Some(rule) = rules.rule(g.rule) else {
                        continue;
                    };
                    let line = format!(
                        "{enforcer} does not enforce {} ({}): {}",
                        g.field, g.action, g.reason
                    );
                    add(&rule.policy, &line, Some(&key.name));
                }
            }
            Coverage::MonitoredOnly { reason } => {
                // A policy's rules are next to each other: one name per run of them.
                let mut policies: Vec<&std::sync::Arc<PolicyInfo>> = Vec::new();
                let mut blind: Vec<&std::sync::Arc<PolicyInfo>> = Vec::new();
                for r in rules.rules() {
                    let list = if !r.monitor_decides() {
                        &mut blind
                    } else if r.action != Action::Audit {
                        &mut policies
                    } else {
                        continue;
                    };
                    if !list
                        .last()
                        .is_some_and(|p| std::sync::Arc::ptr_eq(p, &r.policy))
                    {
                        list.push(&r.policy);
                    }
                }
                let node_wide = reason == NO_ENFORCER;
                let on = if node_wide { " on this node" } else { "" };
                let line = format!("monitored only, nothing denied: {reason}{on}");
                for p in policies {
                    add(p, &line, (!node_wide).then_some(key.name.as_str()));
                }
                // Presets and DNS rules: the monitor's events do not carry what they decide
                // on, so without a kernel enforcer they are not even alerted.
                let blind_line =
                    format!("presets and DNS rules neither enforced nor alerted: {reason}{on}");
                for p in blind {
                    add(p, &blind_line, (!node_wide).then_some(key.name.as_str()));
                }
            }
            Coverage::Enforced { .. } | Coverage::NoRules => {}
        }
    }
    // Two `PolicyInfo`s of one name (rule sets compiled apart) are one policy: merged.
    let mut by_name: BTreeMap<PolicyName, Lines<'a>> = BTreeMap::new();
    for (policy, lines) in problems.into_values() {
        let merged = by_name.entry(PolicyName::from(policy)).or_default();
        for (line, on) in lines {
            merged.entry(line).or_default().extend(on);
        }
    }
    by_name
        .into_iter()
        .map(|(policy, lines)| {
            let lines = lines
                .into_iter()
                .map(|(line, mut on)| {
                    if on.is_empty() {
                        return line;
                    }
                    on.sort_unstable();
                    on.dedup();
                    let more = on.len().saturating_sub(NAMED_WORKLOADS);
                    on.truncate(NAMED_WORKLOADS);
                    let mut named = on.join(", ");
                    if more > 0 {
                        named.push_str(&format!(" and {more} more"));
                    }
                    format!("{line} (on {named})")
                })
                .collect();
            (policy, lines)
        })
        .collect()
}
