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

use std::fmt;

use armor_core::enforcer::RuleGap;
use armor_core::engine::Decision;
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
