//! The contract every enforcer (BPF-LSM, AppArmor, SELinux) implements.
//!
//! Compiling is pure and unprivileged: it turns one workload's [`RuleSet`] into an [`Artifact`]
//! (map entries, a profile text, a CIL module) and names every rule it cannot enforce exactly the
//! way the [engine](crate::engine) decides it. Applying is the separate, privileged step; it is
//! atomic per workload: a failed apply keeps the workload's previous rules.
//!
//! ```
//! use armor_core::enforcer::{Artifact, Enforcer, Support};
//! fn report(e: &dyn Enforcer) -> String {
//!     match e.probe() {
//!         Support::Supported => format!("{}: supported", e.name()),
//!         Support::Unsupported { reason } => format!("{}: unsupported: {reason}", e.name()),
//!         _ => format!("{}: unknown", e.name()),
//!     }
//! }
//! ```

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::engine::RuleSet;
use crate::workload::WorkloadKey;

/// Whether an enforcer works on this machine, found out by a real trial (loading a program,
/// parsing a profile), never by reading a list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Support {
    /// A trial succeeded.
    Supported,
    /// A trial failed; `reason` says exactly how (`kernel refuses lsm programs (EPERM)`).
    Unsupported {
        /// What the trial returned.
        reason: String,
    },
}

/// A rule the artefact does not enforce exactly as the engine decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unenforceable {
    /// Index of the rule in [`crate::CompiledPolicy::rules`].
    pub rule: u32,
    /// What differs.
    pub reason: String,
}

impl Unenforceable {
    /// Rule `rule` (an index into [`crate::CompiledPolicy::rules`]) is not enforced exactly:
    /// `reason` says what differs.
    pub fn new(rule: u32, reason: impl Into<String>) -> Self {
        Self {
            rule,
            reason: reason.into(),
        }
    }
}

/// A rule of a workload that an enforcer's artefact does not carry, with everything a person
/// needs to find it: the policy, the rule's field and position, its action and why.
///
/// Made from an artefact's [`Artifact::unenforceable`] list by [`RuleGap::list`]; the agent logs
/// one line per gap when it applies a workload's rules, and `armorctl validate --enforcer`
/// prints the same lines offline. A Block rule in this list is reported, not blocked: the
/// user-space monitor still decides it on the operations it sees (not DNS queries) and alerts
/// its Block decisions as `Audit (Block)`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuleGap {
    /// The enforcer that does not carry the rule (`BPFLSM`, `AppArmor`).
    pub enforcer: &'static str,
    /// Index of the rule in [`crate::CompiledPolicy::rules`].
    pub rule: u32,
    /// `KubeArmorPolicy shop/block-secrets` (kind and name as written).
    pub policy: String,
    /// The rule's field path (`file.matchPatterns[0]`).
    pub field: String,
    /// Where the rule is written (`file:line:col`).
    pub location: String,
    /// The rule's effective action.
    pub action: crate::model::Action,
    /// What the enforcer cannot represent.
    pub reason: String,
}

impl RuleGap {
    /// The gaps of `artifact` (made by `enforcer` from `rules`) that change what is denied, in
    /// rule order: its Block and Allow rules. An Audit rule is left out: its alerts come from
    /// the monitor whether the kernel carries it or not, and it denies nothing. An entry whose
    /// rule `rules` does not hold is still listed, under the policy `?`: a gap is never dropped.
    pub fn list(enforcer: &'static str, rules: &RuleSet, artifact: &dyn Artifact) -> Vec<Self> {
        let mut out: Vec<Self> = artifact
            .unenforceable()
            .iter()
            .filter(|u| {
                rules
                    .rule(u.rule)
                    .is_none_or(|r| r.action != crate::model::Action::Audit)
            })
            .map(|u| match rules.rule(u.rule) {
                Some(r) => Self {
                    enforcer,
                    rule: u.rule,
                    policy: format!("{} {}", r.policy.kind, r.policy.display_name()),
                    field: r.origin.field.clone(),
                    location: r.origin.location.to_string(),
                    action: r.action,
                    reason: u.reason.clone(),
                },
                None => Self {
                    enforcer,
                    rule: u.rule,
                    policy: "?".to_string(),
                    field: format!("rule {}", u.rule),
                    location: "?".to_string(),
                    action: crate::model::Action::Block,
                    reason: u.reason.clone(),
                },
            })
            .collect();
        out.sort_by_key(|g| g.rule);
        out
    }
}

impl fmt::Display for RuleGap {
    /// `AppArmor does not enforce file.matchPatterns[0] (Block) of KubeArmorPolicy shop/p at
    /// p.yaml:9:7: <reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} does not enforce {} ({}) of {} at {}: {}",
            self.enforcer, self.field, self.action, self.policy, self.location, self.reason
        )
    }
}

/// The compiled form of one workload's rules for one enforcer.
pub trait Artifact: Send + Sync + fmt::Debug {
    /// A deterministic text rendering (the profile, or the map entries), for snapshots and review.
    fn render(&self) -> String;

    /// Every rule this artefact does not enforce exactly.
    fn unenforceable(&self) -> &[Unenforceable];

    /// The concrete type, for the enforcer that made it.
    fn as_any(&self) -> &dyn Any;
}

/// What `apply` did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Applied {
    /// The workload had no rules in this enforcer before.
    Installed,
    /// The workload's rules were replaced.
    Updated,
    /// The new rules equal the installed ones; nothing changed.
    Unchanged,
}

/// Why compiling failed (the rules cannot be represented at all, not merely inexactly).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot compile rules for `{workload}`: {reason}")]
#[non_exhaustive]
pub struct CompileError {
    /// The workload.
    pub workload: String,
    /// Why.
    pub reason: String,
}

impl CompileError {
    /// A compile error for `workload`.
    pub fn new(workload: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            workload: workload.into(),
            reason: reason.into(),
        }
    }
}

/// Why applying or removing failed. The workload keeps its previous rules.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The artefact was made by another enforcer.
    #[error("artifact was not made by the `{enforcer}` enforcer")]
    ForeignArtifact {
        /// The enforcer asked to apply it.
        enforcer: &'static str,
    },
    /// The rules do not fit the configured capacity.
    #[error("rules of `{workload}` do not fit: {detail}")]
    Capacity {
        /// The workload.
        workload: String,
        /// What overflowed.
        detail: String,
    },
    /// A system call failed.
    #[error("`{call}` failed")]
    Syscall {
        /// The call (`bpf_map_update_elem`).
        call: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An external tool failed.
    #[error("`{tool}` failed with {status}: {stderr}")]
    Tool {
        /// The tool (`apparmor_parser`).
        tool: &'static str,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The workload is not known to the enforcer.
    #[error("workload `{0}` is not installed")]
    UnknownWorkload(String),
    /// The enforcer does not work here.
    #[error("enforcer unsupported: {0}")]
    Unsupported(String),
}

/// An alert raised by an enforcer (a kernel denial or an audit-posture pass), before identity
/// enrichment. The runtime adds container, pod and process fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnforcerAlert {
    /// The enforcer's name (`BPFLSM`, `AppArmor`, `SELinux`).
    pub enforcer: &'static str,
    /// The workload the kernel attributed the event to.
    pub workload: Option<WorkloadKey>,
    /// The rule (index into the compiled policy's rules), or `None` for DefaultPosture.
    pub rule: Option<u32>,
    /// `Block` or `Audit`.
    pub action: &'static str,
    /// `Permission denied` or `Passed`.
    pub result: &'static str,
    /// `Process`, `File`, `Network`, `Capabilities`.
    pub operation: &'static str,
    /// The resource (path, protocol, capability).
    pub resource: String,
    /// The acting executable.
    pub source: Option<String>,
    /// Host pid.
    pub pid: u32,
    /// Acting uid.
    pub uid: u32,
}

impl EnforcerAlert {
    fn new(
        enforcer: &'static str,
        rule: Option<u32>,
        action: &'static str,
        result: &'static str,
        operation: &'static str,
        resource: String,
    ) -> Self {
        Self {
            enforcer,
            workload: None,
            rule,
            action,
            result,
            operation,
            resource,
            source: None,
            pid: 0,
            uid: 0,
        }
    }

    /// A denial (`Action: Block`, `Result: Permission denied`) by `rule` (`None`: DefaultPosture).
    pub fn blocked(
        enforcer: &'static str,
        rule: Option<u32>,
        operation: &'static str,
        resource: impl Into<String>,
    ) -> Self {
        Self::new(
            enforcer,
            rule,
            "Block",
            "Permission denied",
            operation,
            resource.into(),
        )
    }

    /// A pass that is reported (`Action: Audit`, `Result: Passed`): an audit-posture
    /// DefaultPosture (`rule: None`) or an Audit rule.
    pub fn audited(
        enforcer: &'static str,
        rule: Option<u32>,
        operation: &'static str,
        resource: impl Into<String>,
    ) -> Self {
        Self::new(
            enforcer,
            rule,
            "Audit",
            "Passed",
            operation,
            resource.into(),
        )
    }

    /// The same alert attributed to `workload`.
    #[must_use]
    pub fn with_workload(mut self, workload: WorkloadKey) -> Self {
        self.workload = Some(workload);
        self
    }

    /// The same alert with the acting process.
    #[must_use]
    pub fn with_process(mut self, pid: u32, uid: u32, source: Option<String>) -> Self {
        self.pid = pid;
        self.uid = uid;
        self.source = source;
        self
    }
}

/// Where an enforcer delivers its alerts. Implementations must not block for long: enforcers call
/// it from their reader thread.
pub trait AlertSink: Send + Sync {
    /// One alert.
    fn alert(&self, alert: EnforcerAlert);
}

/// An LSM backend.
pub trait Enforcer: Send + Sync + fmt::Debug {
    /// `BPFLSM`, `AppArmor`, `SELinux` (the `Enforcer` field of alerts).
    fn name(&self) -> &'static str;

    /// Tries the enforcer for real on this machine.
    fn probe(&self) -> Support;

    /// Compiles one workload's rules. Pure, deterministic, unprivileged.
    fn compile(
        &self,
        key: &WorkloadKey,
        rules: &RuleSet,
    ) -> Result<Box<dyn Artifact>, CompileError>;

    /// Installs or replaces a workload's rules, atomically.
    fn apply(&self, key: &WorkloadKey, artifact: &dyn Artifact) -> Result<Applied, ApplyError>;

    /// Removes a workload's rules.
    fn remove(&self, key: &WorkloadKey) -> Result<(), ApplyError>;

    /// Sets where alerts go (replacing any previous sink). Enforcers without alerts ignore it.
    fn set_alert_sink(&self, sink: Arc<dyn AlertSink>) {
        let _ = sink;
    }
}
