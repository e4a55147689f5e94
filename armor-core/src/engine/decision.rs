//! What the engine decides for one event: [`Decision`], its [`Verdict`] and the alert fields.

use super::*;

/// The verdict of a decision. Deliberately exhaustive: adding a verdict must break callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[expect(clippy::exhaustive_enums, reason = "callers must handle every verdict")]
pub enum Verdict {
    /// The operation passes silently.
    Allow,
    /// The operation passes and is reported.
    Audit,
    /// The operation is denied and reported.
    Block,
}

impl Verdict {
    /// `allow`, `audit` or `block`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Audit => "audit",
            Self::Block => "block",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason<'a> {
    /// A rule won (Block, Allow or Audit).
    Rule(&'a Rule),
    /// The category is in allow-list mode and nothing covered the operation.
    DefaultPosture(PostureAction),
    /// No rule covered the operation and the category is not in allow-list mode.
    NoRule,
}

/// The decision for one event: a verdict and the one thing to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision<'a> {
    /// Allow, Audit or Block.
    pub verdict: Verdict,
    /// The winning rule or the posture.
    pub reason: Reason<'a>,
    /// The index of the winning rule in [`CompiledPolicy::rules`] (`None` for the posture and
    /// when no rule covered the operation): what an enforcer's list of rules it does not carry
    /// ([`crate::enforcer::Unenforceable::rule`]) is compared with.
    pub rule_id: Option<u32>,
    /// The operation's category.
    pub category: Category,
    /// Whether the workload is a host (alerts are `MatchedHostPolicy`).
    pub host: bool,
}

/// The policy fields of the alert a decision raises (KubeArmor field names in the docs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlertFields<'a> {
    /// `PolicyName` (`DefaultPosture` for the posture).
    pub policy_name: &'a str,
    /// The policy's namespace (KSP), not a KubeArmor field.
    pub policy_namespace: Option<&'a str>,
    /// `Severity` (empty in JSON when absent).
    pub severity: Option<u8>,
    /// `Tags`.
    pub tags: &'a [String],
    /// `Message`.
    pub message: Option<&'a str>,
    /// `Action`: `Block` or `Audit`.
    pub action: &'static str,
    /// `Result`: `Permission denied` or `Passed`.
    pub result: &'static str,
    /// `Type`: `MatchedPolicy` or `MatchedHostPolicy`.
    pub alert_type: &'static str,
    /// `Operation`.
    pub operation: &'static str,
    /// The winning rule (none for the posture).
    pub rule: Option<&'a Rule>,
}

/// `DefaultPosture`: the PolicyName of posture alerts.
pub const DEFAULT_POSTURE: &str = "DefaultPosture";

impl<'a> Decision<'a> {
    /// Whether the operation is denied.
    pub fn is_blocked(&self) -> bool {
        self.verdict == Verdict::Block
    }

    /// `Permission denied` or `Passed`.
    pub fn result(&self) -> &'static str {
        if self.is_blocked() {
            crate::telemetry::RESULT_DENIED
        } else {
            crate::telemetry::RESULT_PASSED
        }
    }

    /// The alert this decision raises (none for Allow).
    pub fn alert(&self) -> Option<AlertFields<'a>> {
        if self.verdict == Verdict::Allow {
            return None;
        }
        let action = if self.verdict == Verdict::Block {
            "Block"
        } else {
            "Audit"
        };
        let alert_type = crate::telemetry::RecordType::alert(self.host).as_str();
        let base = AlertFields {
            policy_name: DEFAULT_POSTURE,
            policy_namespace: None,
            severity: None,
            tags: &[],
            message: None,
            action,
            result: self.result(),
            alert_type,
            operation: self.category.operation_name(),
            rule: None,
        };
        Some(match self.reason {
            Reason::Rule(r) => AlertFields {
                policy_name: &r.policy.name,
                policy_namespace: r.policy.namespace.as_deref(),
                severity: r.severity,
                tags: &r.tags,
                message: r.message.as_deref(),
                rule: Some(r),
                ..base
            },
            Reason::DefaultPosture(_) | Reason::NoRule => base,
        })
    }
}
