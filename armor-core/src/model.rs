//! The policy model: `KubeArmorPolicy`, `KubeArmorClusterPolicy` and `KubeArmorHostPolicy`
//! (`security.kubearmor.com/v1`) with every field KubeArmor defines.
//!
//! These types are what a YAML document *says*, before normalisation: optional fields stay
//! optional and nothing is inherited yet. [`crate::rule::normalize`] turns them into [`crate::Rule`]s.
//! Every rule remembers where it was written ([`crate::Location`]) and its field path, so later
//! stages (shadowing checks, `explain`) can point at it.

use std::collections::BTreeMap;
use std::fmt;

use crate::diag::Location;

/// The three policy kinds armor enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PolicyKind {
    /// `KubeArmorPolicy`: namespaced, selects containers by labels.
    KubeArmorPolicy,
    /// `KubeArmorClusterPolicy`: cluster-wide, selects containers by namespace and labels.
    KubeArmorClusterPolicy,
    /// `KubeArmorHostPolicy`: selects nodes (hosts) by labels.
    KubeArmorHostPolicy,
}

impl PolicyKind {
    /// The `kind:` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KubeArmorPolicy => "KubeArmorPolicy",
            Self::KubeArmorClusterPolicy => "KubeArmorClusterPolicy",
            Self::KubeArmorHostPolicy => "KubeArmorHostPolicy",
        }
    }

    /// Whether the kind applies to hosts (else to containers).
    pub fn is_host(self) -> bool {
        self == Self::KubeArmorHostPolicy
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's or policy's action (as the CRDs write it: `Allow`, `Audit`, `Block`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub enum Action {
    /// Permit what the rule covers (and put its category in allow-list mode).
    Allow,
    /// Report what the rule covers without changing the verdict.
    Audit,
    /// Deny what the rule covers.
    Block,
}

impl Action {
    /// `Allow`, `Audit` or `Block`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "Allow",
            Self::Audit => "Audit",
            Self::Block => "Block",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Severity, tags, message and action as they may appear on a policy, a section or a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Meta {
    /// `severity` (1..=10).
    pub severity: Option<u8>,
    /// `tags`.
    pub tags: Vec<String>,
    /// `message`.
    pub message: Option<String>,
    /// `action`.
    pub action: Option<Action>,
}

/// One `fromSource` entry of process, file, network and capability rules.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourcePath {
    /// The absolute path of the acting executable.
    pub path: String,
}

/// One `fromSource` entry of syscall rules: a path, or a directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SyscallSource {
    /// An executable path.
    pub path: Option<String>,
    /// A directory of executables.
    pub dir: Option<String>,
    /// With `dir`: all descendants instead of direct children.
    pub recursive: bool,
}

/// Where a rule was written: its location and field path (relative to `spec`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Origin {
    /// Position of the rule's first key.
    pub location: Location,
    /// Field path, for example `file.matchPaths[2]`.
    pub field: String,
}

/// `process.matchPaths[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessPathRule {
    /// `path`: absolute executable path.
    pub path: Option<String>,
    /// `execname`: executable basename.
    pub execname: Option<String>,
    /// `ownerOnly`.
    pub owner_only: bool,
    /// `pts` (BPF-LSM only in KubeArmor; validated, not decided by the engine).
    pub pts: Option<bool>,
    /// `allowedArgs` (at most 20; validated, not decided by the engine).
    pub allowed_args: Vec<String>,
    /// `fromSource`.
    pub from_source: Vec<SourcePath>,
    /// Rule-level severity, tags, message, action.
    pub meta: Meta,
    /// Where it was written.
    pub origin: Origin,
}

/// `process.matchDirectories[]` and `file.matchDirectories[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectoryRule {
    /// `dir`: absolute, ends with `/`.
    pub dir: String,
    /// `recursive`.
    pub recursive: bool,
    /// `ownerOnly`.
    pub owner_only: bool,
    /// `readOnly` (file rules only).
    pub read_only: bool,
    /// `pts`.
    pub pts: Option<bool>,
    /// `fromSource`.
    pub from_source: Vec<SourcePath>,
    /// Rule-level severity, tags, message, action.
    pub meta: Meta,
    /// Where it was written.
    pub origin: Origin,
}

/// `process.matchPatterns[]` and `file.matchPatterns[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PatternRule {
    /// `pattern`: an AppArmor-style glob.
    pub pattern: String,
    /// `ownerOnly`.
    pub owner_only: bool,
    /// `readOnly` (file rules only).
    pub read_only: bool,
    /// Rule-level severity, tags, message, action.
    pub meta: Meta,
    /// Where it was written.
    pub origin: Origin,
}

/// `file.matchPaths[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FilePathRule {
    /// `path`: absolute file path.
    pub path: String,
    /// `readOnly`.
    pub read_only: bool,
    /// `ownerOnly`.
    pub owner_only: bool,
    /// `pts`.
    pub pts: Option<bool>,
    /// `fromSource`.
    pub from_source: Vec<SourcePath>,
    /// Rule-level severity, tags, message, action.
    pub meta: Meta,
    /// Where it was written.
    pub origin: Origin,
}

/// `process:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessSection {
    /// Section-level severity, tags, message, action.
    pub meta: Meta,
    /// `matchPaths`.
    pub match_paths: Vec<ProcessPathRule>,
    /// `matchDirectories`.
    pub match_directories: Vec<DirectoryRule>,
    /// `matchPatterns`.
    pub match_patterns: Vec<PatternRule>,
}

/// `file:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileSection {
    /// Section-level severity, tags, message, action.
    pub meta: Meta,
    /// `matchPaths`.
    pub match_paths: Vec<FilePathRule>,
    /// `matchDirectories`.
    pub match_directories: Vec<DirectoryRule>,
    /// `matchPatterns`.
    pub match_patterns: Vec<PatternRule>,
}

/// `network.matchProtocols[]` (a comma list in `protocol` is expanded during normalisation).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProtocolRule {
    /// `protocol`, as written.
    pub protocol: String,
    /// `pts`.
    pub pts: Option<bool>,
    /// `fromSource`.
    pub from_source: Vec<SourcePath>,
    /// Rule-level severity, tags, message, action.
    pub meta: Meta,
    /// Where it was written.
    pub origin: Origin,
}

/// `network.matchDNSQueries[]` (validated; enforced by enforcers that support it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsRule {
    /// `domain`.
    pub domain: String,
    /// `fromSource`.
    pub from_source: Vec<SourcePath>,
    /// Rule-level severity, tags, message, action.
    pub meta: Meta,
    /// Where it was written.
    pub origin: Origin,
}

/// `network:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkSection {
    /// Section-level severity, tags, message, action.
    pub meta: Meta,
    /// `matchProtocols`.
    pub match_protocols: Vec<ProtocolRule>,
    /// `matchDNSQueries`.
    pub match_dns_queries: Vec<DnsRule>,
}

/// `capabilities.matchCapabilities[]` (comma lists expanded during normalisation).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CapabilityRule {
    /// `capability`, as written.
    pub capability: String,
    /// `fromSource`.
    pub from_source: Vec<SourcePath>,
    /// Rule-level severity, tags, message, action.
    pub meta: Meta,
    /// Where it was written.
    pub origin: Origin,
}

/// `capabilities:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CapabilitiesSection {
    /// Section-level severity, tags, message, action.
    pub meta: Meta,
    /// `matchCapabilities`.
    pub match_capabilities: Vec<CapabilityRule>,
}

/// `syscalls.matchSyscalls[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyscallRule {
    /// `syscall`: syscall names.
    pub syscalls: Vec<String>,
    /// `fromSource`.
    pub from_source: Vec<SyscallSource>,
    /// Rule-level severity, tags, message (an action here is ignored: syscall rules audit).
    pub meta: Meta,
    /// Where it was written.
    pub origin: Origin,
}

/// `syscalls.matchPaths[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyscallPathRule {
    /// `path`: a file, or a directory ending with `/`.
    pub path: String,
    /// `recursive` (directories).
    pub recursive: bool,
    /// `syscall`: syscall names.
    pub syscalls: Vec<String>,
    /// `fromSource`.
    pub from_source: Vec<SyscallSource>,
    /// Rule-level severity, tags, message.
    pub meta: Meta,
    /// Where it was written.
    pub origin: Origin,
}

/// `syscalls:` (audit only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyscallsSection {
    /// Section-level severity, tags, message.
    pub meta: Meta,
    /// `matchSyscalls`.
    pub match_syscalls: Vec<SyscallRule>,
    /// `matchPaths`.
    pub match_paths: Vec<SyscallPathRule>,
}

/// `presets[]` (KSP/CSP; enforced by BPF-LSM).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Preset {
    /// `name`: `filelessExec`, `protectEnv`, `exec`, `protectProc` or `anonymousMapExec`.
    pub name: String,
    /// `action`.
    pub action: Option<Action>,
    /// Where it was written.
    pub origin: Origin,
}

/// `device.matchDevice[]` (HSP only; USB devices).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceRule {
    /// `class`.
    pub class: String,
    /// `subClass`.
    pub sub_class: Option<i32>,
    /// `protocol`.
    pub protocol: Option<i32>,
    /// `level` (at least 1).
    pub level: Option<i32>,
    /// Rule-level severity, tags, message, action.
    pub meta: Meta,
    /// Where it was written.
    pub origin: Origin,
}

/// `device:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceSection {
    /// Section-level severity, tags, message, action.
    pub meta: Meta,
    /// `matchDevice`.
    pub match_device: Vec<DeviceRule>,
}

/// The operator of a selector expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operator {
    /// At least one value present.
    In,
    /// No value present.
    NotIn,
}

/// What a selector expression tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExpressionKey {
    /// Values are `key=value` label strings.
    Label,
    /// Values are namespace names (cluster policies only).
    Namespace,
}

/// `selector.matchExpressions[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Expression {
    /// `key`.
    pub key: ExpressionKey,
    /// `operator`.
    pub operator: Operator,
    /// `values`.
    pub values: Vec<String>,
}

/// `selector:` of KSP and CSP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Selector {
    /// `matchLabels` (including the special `kubearmor.io/container.name`).
    pub match_labels: BTreeMap<String, String>,
    /// `matchExpressions`.
    pub match_expressions: Vec<Expression>,
}

/// `nodeSelector:` of HSP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeSelector {
    /// `matchLabels`.
    pub match_labels: BTreeMap<String, String>,
}

/// `spec:`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicySpec {
    /// `selector` (KSP, CSP).
    pub selector: Selector,
    /// `nodeSelector` (HSP).
    pub node_selector: NodeSelector,
    /// Policy-level severity, tags, message, action.
    pub meta: Meta,
    /// `process`.
    pub process: ProcessSection,
    /// `file`.
    pub file: FileSection,
    /// `network`.
    pub network: NetworkSection,
    /// `capabilities`.
    pub capabilities: CapabilitiesSection,
    /// `syscalls`.
    pub syscalls: SyscallsSection,
    /// `presets`.
    pub presets: Vec<Preset>,
    /// `apparmor`: raw AppArmor lines (AppArmor enforcer only).
    pub apparmor: Option<String>,
    /// `device` (HSP).
    pub device: DeviceSection,
}

/// One policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Policy {
    /// `kind`.
    pub kind: PolicyKind,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (KSP; `default` when absent).
    pub namespace: Option<String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec`.
    pub spec: PolicySpec,
    /// Where the document starts.
    pub location: Location,
}

impl Policy {
    /// `namespace/name` for namespaced policies, `name` otherwise: the name diagnostics use.
    pub fn display_name(&self) -> String {
        match &self.namespace {
            Some(ns) if self.kind == PolicyKind::KubeArmorPolicy => format!("{ns}/{}", self.name),
            _ => self.name.clone(),
        }
    }
}
