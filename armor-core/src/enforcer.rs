//! The contract every enforcer (BPF-LSM, AppArmor, or one an embedder adds) implements.
//!
//! Compiling is unprivileged and deterministic (it reads nothing but the files below the
//! destination's root): it turns one workload's [`RuleSet`] into an [`Artifact`]
//! (map entries, a profile text) and names every rule it cannot enforce exactly the
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
use std::path::PathBuf;
use std::sync::Arc;

use crate::engine::RuleSet;
use crate::event::Category;
use crate::model::Action;
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
/// user-space monitor still decides it on the operations it sees and alerts its Block
/// decisions as `Audit (Block)`, except a rule it cannot decide (DNS queries and presets: see
/// [`crate::Rule::monitor_decides`]), which is neither enforced nor alerted: the gap line is
/// all the user gets, so such a rule is listed whatever its action.
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
    /// The gaps of `artifact` (made by `enforcer` from `rules`) that change what is denied or
    /// alerted, in rule order: its Block and Allow rules, and its Audit rules that the monitor
    /// cannot decide ([`crate::Rule::monitor_decides`]: presets, DNS rules), whose alerts only
    /// an enforcer carrying them raises. Any other Audit rule is left out: its alerts come from
    /// the monitor whether the kernel carries it or not, and it denies nothing. An entry whose
    /// rule `rules` does not hold is still listed, under the policy `?`: a gap is never dropped.
    pub fn list(enforcer: &'static str, rules: &RuleSet, artifact: &dyn Artifact) -> Vec<Self> {
        let mut out: Vec<Self> = artifact
            .unenforceable()
            .iter()
            .filter(|u| {
                rules
                    .rule(u.rule)
                    .is_none_or(|r| r.action != crate::model::Action::Audit || !r.monitor_decides())
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
    /// The rules do not fit the configured capacity; the workload keeps its previous rules.
    #[error(
        "rules of `{workload}` do not fit: {needed} {resource} needed, {free} free (`{setting}`)"
    )]
    Capacity {
        /// The workload.
        workload: String,
        /// What ran out (`rule entries`, `glob automata`, `workload slots`).
        resource: &'static str,
        /// How many the rules need.
        needed: usize,
        /// How many are free.
        free: usize,
        /// The setting that bounds it (`max_rule_entries`).
        setting: &'static str,
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
    /// The enforcer attaches by cgroup and the workload has no cgroup id.
    #[error("workload `{0}` has no cgroup id")]
    NoCgroup(String),
    /// The enforcer does not work here (its programs do not load).
    #[error("the `{enforcer}` enforcer does not work here")]
    Unsupported {
        /// The enforcer.
        enforcer: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The enforcer refused the artefact for a reason of its own (an enforcer outside this
    /// workspace whose failures fit no other variant, a test double).
    #[error("the `{enforcer}` enforcer refused the rules: {reason}")]
    Refused {
        /// The enforcer.
        enforcer: &'static str,
        /// Why.
        reason: String,
    },
}

/// An alert raised by an enforcer (a kernel denial or an audit-posture pass), before identity
/// enrichment. The runtime adds container, pod and process fields; the KubeArmor strings
/// (`Action`, `Result`, `Operation`) come from the typed fields here, in one place
/// ([`EnforcerAlert::result`], [`Category::operation_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnforcerAlert {
    /// The enforcer's name (`BPFLSM`, `AppArmor`).
    pub enforcer: &'static str,
    /// The workload the kernel attributed the event to.
    pub workload: Option<WorkloadKey>,
    /// The rule (index into the compiled policy's rules), or `None` for DefaultPosture.
    pub rule: Option<u32>,
    /// [`Action::Block`] (the operation was denied) or [`Action::Audit`] (it passed and is
    /// reported).
    pub action: Action,
    /// What kind of operation: process, file, network, capabilities.
    pub operation: Category,
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
        action: Action,
        operation: Category,
        resource: String,
    ) -> Self {
        Self {
            enforcer,
            workload: None,
            rule,
            action,
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
        operation: Category,
        resource: impl Into<String>,
    ) -> Self {
        Self::new(enforcer, rule, Action::Block, operation, resource.into())
    }

    /// A pass that is reported (`Action: Audit`, `Result: Passed`): an audit-posture
    /// DefaultPosture (`rule: None`) or an Audit rule.
    pub fn audited(
        enforcer: &'static str,
        rule: Option<u32>,
        operation: Category,
        resource: impl Into<String>,
    ) -> Self {
        Self::new(enforcer, rule, Action::Audit, operation, resource.into())
    }

    /// KubeArmor's `Result`: `Permission denied` for a denial, `Passed` otherwise.
    pub fn result(&self) -> &'static str {
        if self.action == Action::Block {
            crate::telemetry::RESULT_DENIED
        } else {
            crate::telemetry::RESULT_PASSED
        }
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

/// Where an enforcer keeps the sink its alerts go to: [`Enforcer::set_alert_sink`] sets it, the
/// enforcer's reader thread delivers through it. Clones share one slot. Every enforcer holds
/// one, so setting, replacing and reading the sink is written once.
#[derive(Clone, Default)]
pub struct AlertSlot(Arc<std::sync::Mutex<Option<Arc<dyn AlertSink>>>>);

impl AlertSlot {
    /// An empty slot: alerts are dropped until a sink is set.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<dyn AlertSink>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets the sink (replacing any previous one).
    pub fn set(&self, sink: Arc<dyn AlertSink>) {
        *self.lock() = Some(sink);
    }

    /// The sink, if one is set.
    pub fn get(&self) -> Option<Arc<dyn AlertSink>> {
        self.lock().clone()
    }

    /// Delivers `alert` to the sink; `false` when none is set (the alert is dropped).
    pub fn deliver(&self, alert: EnforcerAlert) -> bool {
        match self.get() {
            Some(s) => {
                s.alert(alert);
                true
            }
            None => false,
        }
    }
}

impl fmt::Debug for AlertSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertSlot")
            .field("set", &self.lock().is_some())
            .finish()
    }
}

/// Where an enforcer delivers its alerts. Implementations must not block for long: enforcers call
/// it from their reader thread.
pub trait AlertSink: Send + Sync {
    /// One alert.
    fn alert(&self, alert: EnforcerAlert);
}

/// When a workload's rules take force the first time they are installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Start {
    /// As soon as `apply` returns.
    #[default]
    Now,
    /// From the first program a process of the workload executes: the workload is a container
    /// its runtime is creating (an OCI `createRuntime` hook), whose init process is still setting
    /// it up (mounts, `/dev`, `pivot_root`). That exec (the entrypoint) is the first operation
    /// decided, so a blocked entrypoint is refused and the runtime's own setup is not. An apply
    /// that *updates* an installed workload puts its rules in force at once whatever this says:
    /// a container that already runs must never be re-opened.
    FirstExec,
}

/// Where a workload's rules go, besides the rules themselves: the workload, where its files
/// are, and when its rules take force. The runtime fills it in for `compile` and `apply`; an
/// enforcer keeps none of it between calls, so compiling twice for the same destination gives
/// the same artefact (while the files stay the same).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Destination {
    /// The workload (its name and, for a container or service, its cgroup id).
    pub key: WorkloadKey,
    /// Where the workload's files are seen from this process: `/` for the host and for
    /// services, `/proc/PID/root` of a running container's process, the bundle's root file
    /// system for a container being created. Enforcers that decide by (device, inode) as well
    /// as by path (BPF-LSM: hardlinks and bind mounts of a protected file) resolve the rules'
    /// paths below it when compiling. `None`: not known; such entries are left out.
    pub root: Option<PathBuf>,
    /// When the rules take force on a first install.
    pub start: Start,
}

impl Destination {
    /// `key` with an unknown root, in force at once.
    pub fn new(key: WorkloadKey) -> Self {
        Self {
            key,
            root: None,
            start: Start::Now,
        }
    }

    /// The same with the workload's files seen below `root`.
    #[must_use]
    pub fn with_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = Some(root.into());
        self
    }

    /// The same taking force as `start` says.
    #[must_use]
    pub fn starting(mut self, start: Start) -> Self {
        self.start = start;
        self
    }
}

/// The kind of security label an enforcer attaches its rules by. Each knows where the label is
/// written for the systems armor runs with, so the runtime can check and explain it without
/// knowing the enforcer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LabelKind {
    /// An AppArmor profile name.
    AppArmorProfile,
    /// An SELinux process context (its type).
    SelinuxContext,
}

impl LabelKind {
    /// Every kind.
    pub const ALL: [Self; 2] = [Self::AppArmorProfile, Self::SelinuxContext];

    /// `AppArmor profile`, `SELinux context`.
    pub fn noun(self) -> &'static str {
        match self {
            Self::AppArmorProfile => "AppArmor profile",
            Self::SelinuxContext => "SELinux context",
        }
    }

    /// The OCI runtime spec field that names it (`process.apparmorProfile`).
    pub fn oci_field(self) -> &'static str {
        match self {
            Self::AppArmorProfile => "process.apparmorProfile",
            Self::SelinuxContext => "process.selinuxLabel",
        }
    }

    /// The systemd unit directive that starts a service under it (`AppArmorProfile`).
    pub fn systemd_directive(self) -> &'static str {
        match self {
            Self::AppArmorProfile => "AppArmorProfile",
            Self::SelinuxContext => "SELinuxContext",
        }
    }

    /// How a Kubernetes pod names `label` for a container.
    pub fn kubernetes_field(self, label: &str) -> String {
        match self {
            Self::AppArmorProfile => format!(
                "securityContext.appArmorProfile {{type: Localhost, localhostProfile: {label}}}"
            ),
            Self::SelinuxContext => format!("securityContext.seLinuxOptions {{type: {label}}}"),
        }
    }
}

impl fmt::Display for LabelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noun())
    }
}

/// One kernel resource an enforcer fills as workloads are applied, and how much of it is used
/// ([`Enforcer::capacity`]): what runs out first when a node takes more workloads or rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capacity {
    /// What is counted, as a metric label: lower case with underscores (`rule_table_slots`).
    pub resource: &'static str,
    /// How much of it is in use.
    pub used: u64,
    /// How much there is.
    pub limit: u64,
}

impl Capacity {
    /// `used` of `limit` of `resource`.
    pub fn new(resource: &'static str, used: u64, limit: u64) -> Self {
        Self {
            resource,
            used,
            limit,
        }
    }
}

/// How an enforcer's rules reach a workload's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attachment {
    /// By the workload's cgroup (BPF-LSM): every process of a container's or service's cgroup
    /// from the moment `apply` returns, and for the host every process outside them.
    Cgroup,
    /// By a security label the processes must carry ([`Enforcer::label`]): a container is
    /// enforced only when its spec names the label, so its rules must be loaded before its task
    /// exists; the host and services only for processes started under it.
    Label(LabelKind),
}

/// An enforcer that works on this machine, as an [`EnforcerFactory`] built it.
#[non_exhaustive]
pub struct Built {
    /// The enforcer.
    pub enforcer: Arc<dyn Enforcer>,
    /// Remarks for the operator about what works less than fully (`AppArmor denials are not
    /// reported: …`).
    pub notes: Vec<String>,
    /// What must live as long as the enforcer is used (an alert reader thread).
    pub keep_alive: Vec<Box<dyn Any + Send>>,
}

impl Built {
    /// `enforcer`, with nothing to say and nothing to keep alive.
    pub fn new(enforcer: Arc<dyn Enforcer>) -> Self {
        Self {
            enforcer,
            notes: Vec::new(),
            keep_alive: Vec::new(),
        }
    }
}

impl fmt::Debug for Built {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Built")
            .field("enforcer", &self.enforcer.name())
            .field("notes", &self.notes)
            .field("keep_alive", &self.keep_alive.len())
            .finish()
    }
}

/// Builds an enforcer and proves that it works here by a real trial (loading its programs,
/// compiling a profile). The runtime walks an ordered list of factories — BPF-LSM, then AppArmor
/// by default — and uses the first that builds; an embedder adds its own to the list.
pub trait EnforcerFactory: Send + Sync + fmt::Debug {
    /// What a user writes to choose it (`bpflsm`): lower case, unique in a list, never `auto`
    /// or `none`.
    fn choice(&self) -> &'static str;

    /// The enforcer's name ([`Enforcer::name`]: `BPFLSM`).
    fn name(&self) -> &'static str;

    /// The enforcer, working; `Err` says exactly why it does not work here.
    fn build(&self) -> Result<Built, String>;
}

/// An LSM backend.
///
/// Besides compiling and applying, an enforcer says how its rules reach processes
/// ([`Enforcer::attachment`]), what it keeps that no workload needs any more
/// ([`Enforcer::sweep`]) and where its alerts go ([`Enforcer::set_alert_sink`]); each has a
/// default for enforcers that attach by cgroup and keep nothing.
pub trait Enforcer: Send + Sync + fmt::Debug {
    /// `BPFLSM`, `AppArmor`, `SELinux` (the `Enforcer` field of alerts).
    fn name(&self) -> &'static str;

    /// Tries the enforcer for real on this machine.
    fn probe(&self) -> Support;

    /// Compiles one workload's rules into the complete artefact `apply` writes. Deterministic,
    /// unprivileged, keeps no state: it reads nothing but what `dest` names (the files below
    /// its root, to resolve their (device, inode)) and writes nothing.
    fn compile(
        &self,
        dest: &Destination,
        rules: &RuleSet,
    ) -> Result<Box<dyn Artifact>, CompileError>;

    /// Installs or replaces a workload's rules, atomically: writes the artefact `compile` made
    /// for the same destination, and nothing else.
    fn apply(&self, dest: &Destination, artifact: &dyn Artifact) -> Result<Applied, ApplyError>;

    /// Removes a workload's rules.
    fn remove(&self, key: &WorkloadKey) -> Result<(), ApplyError>;

    /// Sets where alerts go (replacing any previous sink). Enforcers without alerts ignore it.
    fn set_alert_sink(&self, sink: Arc<dyn AlertSink>) {
        let _ = sink;
    }

    /// How its rules reach a workload's processes. Default: by cgroup.
    fn attachment(&self) -> Attachment {
        Attachment::Cgroup
    }

    /// The label a workload's processes must carry for its rules to apply (the name of its
    /// AppArmor profile), for an enforcer that attaches by label. Default: `None`.
    fn label(&self, key: &WorkloadKey) -> Option<String> {
        let _ = key;
        None
    }

    /// Removes what the enforcer keeps for workloads not in `keep` — also what an earlier run
    /// left (AppArmor's profile files) — and returns what it removed. Default: nothing kept
    /// beyond the workloads `remove` is called for.
    fn sweep(&self, keep: &[WorkloadKey]) -> Result<Vec<String>, ApplyError> {
        let _ = keep;
        Ok(Vec::new())
    }

    /// The kernel resources it fills and how much of each is used, for the operator's metrics.
    /// Default: none (nothing it keeps has a fixed size).
    fn capacity(&self) -> Vec<Capacity> {
        Vec::new()
    }

    /// `Ok` while what `apply` installed is in force as installed; else what is not, for the
    /// agent's liveness (`/healthz`): a profile unloaded or switched to complain mode by
    /// someone else, the thread that reads its alerts gone. Cheap enough to call every second;
    /// never changes anything. Default: `Ok` (nothing outside the enforcer can take its rules
    /// away).
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}
