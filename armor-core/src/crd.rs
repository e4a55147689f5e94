//! The policies as the Kubernetes API carries them: the `spec` of `KubeArmorPolicy`,
//! `KubeArmorClusterPolicy` and `KubeArmorHostPolicy` objects (group `security.kubearmor.com`,
//! version `v1`) as serde types, with — feature `schema` — the JSON schema their CRDs publish.
//!
//! These types are the wire shape only: what the API server checks structurally (types, enums,
//! patterns, ranges, required fields: the same checks KubeArmor's own CRDs make, so the CRDs
//! accept what KubeArmor's accept). What a policy *means* is decided by the same validator as
//! for a file: [`crate::PolicySet::parse`] of the object (every error located by its field
//! path, such as `file.matchDirectories[0].dir`). `armor-k8s` derives its custom resources from
//! them.
//!
//! Field names are the CRD's (camelCase); absent optional fields are not serialized, and
//! unknown fields are ignored when reading (the API server prunes them).
//!
//! ```
//! use armor_core::crd::PolicySpec;
//! let spec: PolicySpec = serde_json::from_str(
//!     r#"{"selector": {"matchLabels": {"app": "web"}},
//!         "file": {"matchPaths": [{"path": "/etc/shadow"}]}, "action": "Block"}"#,
//! )
//! .unwrap();
//! assert_eq!(spec.sections.file.unwrap().match_paths[0].path, "/etc/shadow");
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::model::Action;

/// What a `matchPaths` path must look like: absolute, not ending with `/` (KubeArmor's
/// `MatchPathType`).
pub const PATH_PATTERN: &str = r"^\/+.*[^\/]$";
/// What a `matchDirectories` dir must look like: `/`, or absolute and ending with `/`.
pub const DIR_PATTERN: &str = r"^\/$|^\/.*\/$";
/// A syscall `matchPaths` path: a file or a directory.
pub const SYSCALL_PATH_PATTERN: &str = r"(^\/+.*[^\/]$)|(^\/$|^\/.*\/$)";
/// An `execname`: a basename.
pub const EXECNAME_PATTERN: &str = r"^[^\/]+$";
/// The protocols `matchProtocols` names (as KubeArmor's CRD: matched at the end, both cases).
pub const PROTOCOL_PATTERN: &str = "(tcp|TCP|udp|UDP|raw|RAW|icmp|ICMP|icmpv6|ICMPV6|sctp|SCTP|stream|STREAM|dgram|DGRAM|rdm|RDM|seqpacket|SEQPACKET|dccp|DCCP|packet|PACKET|all|ALL)$";
/// The capabilities `matchCapabilities` names (as KubeArmor's CRD: matched at the end).
pub const CAPABILITY_PATTERN: &str = "(chown|dac_override|dac_read_search|fowner|fsetid|kill|setgid|setuid|setpcap|linux_immutable|net_bind_service|net_broadcast|net_admin|net_raw|ipc_lock|ipc_owner|sys_module|sys_rawio|sys_chroot|sys_ptrace|sys_pacct|sys_admin|sys_boot|sys_nice|sys_resource|sys_time|sys_tty_config|mknod|lease|audit_write|audit_control|setfcap|mac_override|mac_admin)$";

/// Severity, tags and message: on everything, and all that syscall rules carry (they only
/// audit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AuditMeta {
    /// 1 (lowest) to 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 10)))]
    pub severity: Option<u8>,
    /// Tags copied into alerts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// A message copied into alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Severity, tags, message and action, on a policy, a section or a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Meta {
    /// Severity, tags and message.
    #[serde(flatten)]
    pub audit: AuditMeta,
    /// `Allow`, `Audit` or `Block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

/// A `fromSource` entry: the program a rule is limited to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Source {
    /// The program's absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = PATH_PATTERN), length(max = 200)))]
    pub path: Option<String>,
}

/// A syscall rule's `fromSource` entry: a program, or the programs under a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SyscallSource {
    /// A program's absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = PATH_PATTERN), length(max = 200)))]
    pub path: Option<String>,
    /// A directory of programs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Its subdirectories too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
}

/// `process.matchPaths[]`: a program by path or by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ProcessPath {
    /// The program's absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = PATH_PATTERN), length(max = 200)))]
    pub path: Option<String>,
    /// The program's basename.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = EXECNAME_PATTERN)))]
    pub execname: Option<String>,
    /// The arguments the program may be run with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "schema", schemars(length(max = 20)))]
    pub allowed_args: Vec<String>,
    /// Only when the file's owner runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_only: Option<bool>,
    /// Only with (`true`) or without a terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pts: Option<bool>,
    /// The programs the rule is limited to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_source: Vec<Source>,
    /// Severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

/// `process.matchDirectories[]` and `file.matchDirectories[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Directory {
    /// The directory, absolute, ending with `/`.
    #[cfg_attr(feature = "schema", schemars(regex(pattern = DIR_PATTERN)))]
    pub dir: String,
    /// Its subdirectories too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
    /// Files only (`file`): reads allowed, writes covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Only for the file's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_only: Option<bool>,
    /// Only with (`true`) or without a terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pts: Option<bool>,
    /// The programs the rule is limited to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_source: Vec<Source>,
    /// Severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

/// `process.matchPatterns[]` and `file.matchPatterns[]`: an AppArmor glob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Pattern {
    /// The glob.
    pub pattern: String,
    /// Files only (`file`): reads allowed, writes covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Only for the file's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_only: Option<bool>,
    /// Severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

/// `file.matchPaths[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FilePath {
    /// The file's absolute path.
    #[cfg_attr(feature = "schema", schemars(regex(pattern = PATH_PATTERN), length(max = 200)))]
    pub path: String,
    /// Reads allowed, writes covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Only for the file's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_only: Option<bool>,
    /// Only with (`true`) or without a terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pts: Option<bool>,
    /// The programs the rule is limited to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_source: Vec<Source>,
    /// Severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

/// The `process` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ProcessSection {
    /// Programs by path or name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_paths: Vec<ProcessPath>,
    /// Programs under directories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_directories: Vec<Directory>,
    /// Programs by glob.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_patterns: Vec<Pattern>,
    /// The section's severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

/// The `file` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FileSection {
    /// Files by path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_paths: Vec<FilePath>,
    /// Files under directories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_directories: Vec<Directory>,
    /// Files by glob.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_patterns: Vec<Pattern>,
    /// The section's severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

/// `network.matchProtocols[]` of a container policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Protocol {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `raw`, `stream`, …, `all`.
    #[cfg_attr(feature = "schema", schemars(regex(pattern = PROTOCOL_PATTERN)))]
    pub protocol: String,
    /// Only with (`true`) or without a terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pts: Option<bool>,
    /// The programs the rule is limited to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_source: Vec<Source>,
    /// Severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

/// `network.matchProtocols[]` of a host policy: `fromSource` is required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HostProtocol {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`, `raw`, `stream`, …, `all`.
    #[cfg_attr(feature = "schema", schemars(regex(pattern = PROTOCOL_PATTERN)))]
    pub protocol: String,
    /// The programs the rule is limited to.
    pub from_source: Vec<Source>,
    /// Severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

/// `network.matchDNSQueries[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DnsQuery {
    /// The domain.
    pub domain: String,
    /// The programs the rule is limited to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_source: Vec<Source>,
    /// Severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

/// The `network` section, generic over its protocol rule ([`Protocol`], [`HostProtocol`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", bound(deserialize = "P: Deserialize<'de>"))]
#[non_exhaustive]
pub struct NetworkSection<P> {
    /// Sockets by protocol or type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_protocols: Vec<P>,
    /// DNS queries by domain.
    #[serde(
        default,
        rename = "matchDNSQueries",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub match_dns_queries: Vec<DnsQuery>,
    /// The section's severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

impl<P> Default for NetworkSection<P> {
    fn default() -> Self {
        Self {
            match_protocols: Vec::new(),
            match_dns_queries: Vec::new(),
            meta: Meta::default(),
        }
    }
}

/// `capabilities.matchCapabilities[]` of a container policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Capability {
    /// The capability, lowercase without `cap_` (`net_raw`).
    #[cfg_attr(feature = "schema", schemars(regex(pattern = CAPABILITY_PATTERN)))]
    pub capability: String,
    /// The programs the rule is limited to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_source: Vec<Source>,
    /// Severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

/// `capabilities.matchCapabilities[]` of a host policy: `fromSource` is required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HostCapability {
    /// The capability, lowercase without `cap_` (`net_raw`).
    #[cfg_attr(feature = "schema", schemars(regex(pattern = CAPABILITY_PATTERN)))]
    pub capability: String,
    /// The programs the rule is limited to.
    pub from_source: Vec<Source>,
    /// Severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

/// The `capabilities` section, generic over its rule ([`Capability`], [`HostCapability`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", bound(deserialize = "C: Deserialize<'de>"))]
#[non_exhaustive]
pub struct CapabilitiesSection<C> {
    /// Capabilities by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_capabilities: Vec<C>,
    /// The section's severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

impl<C> Default for CapabilitiesSection<C> {
    fn default() -> Self {
        Self {
            match_capabilities: Vec::new(),
            meta: Meta::default(),
        }
    }
}

/// A syscall name: one of [`crate::syscalls::SYSCALLS`] (the schema lists them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
#[non_exhaustive]
pub struct Syscall(pub String);

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Syscall {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Syscall".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "enum": crate::syscalls::SYSCALLS,
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// `syscalls.matchSyscalls[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SyscallMatch {
    /// The syscalls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syscall: Vec<Syscall>,
    /// The programs the rule is limited to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_source: Vec<SyscallSource>,
}

/// `syscalls.matchPaths[]`: syscalls on a file or under a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SyscallPath {
    /// The file or directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(regex(pattern = SYSCALL_PATH_PATTERN)))]
    pub path: Option<String>,
    /// Below the directory too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
    /// The syscalls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syscall: Vec<Syscall>,
    /// The programs the rule is limited to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_source: Vec<SyscallSource>,
}

/// The `syscalls` section (audit only: no action).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SyscallsSection {
    /// Syscalls by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_syscalls: Vec<SyscallMatch>,
    /// Syscalls on paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_paths: Vec<SyscallPath>,
    /// The section's severity, tags, message.
    #[serde(flatten)]
    pub meta: AuditMeta,
}

/// A `presets[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Preset {
    /// `filelessExec`, `anonMapExec`, `protectEnv`, `exec`, `protectProc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

/// `In` or `NotIn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub enum Operator {
    /// The value is one of the values.
    In,
    /// The value is none of them.
    NotIn,
}

/// What a container policy's `matchExpressions` may test: labels only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LabelKey {
    /// `values` are `key=value` labels.
    Label,
}

/// What a cluster policy's `matchExpressions` may test: namespaces or labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ClusterKey {
    /// `values` are namespace names.
    Namespace,
    /// `values` are `key=value` labels.
    Label,
}

/// A `matchExpressions[]` entry over keys `K`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", bound(deserialize = "K: Deserialize<'de>"))]
#[non_exhaustive]
pub struct Expression<K> {
    /// What is tested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<K>,
    /// How.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Operator>,
    /// Against what.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A container policy's selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Selector {
    /// Labels the workload must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Label tests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Expression<LabelKey>>,
}

/// A cluster policy's selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterSelector {
    /// Namespace and label tests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Expression<ClusterKey>>,
}

/// A host policy's node selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct NodeSelector {
    /// Labels the node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// `device.matchDevice[]` (host policies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Device {
    /// The USB class (`HID`, `0x3`).
    pub class: String,
    /// The USB subclass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_class: Option<i32>,
    /// The USB protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<i32>,
    /// The USB level (1 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub level: Option<i32>,
    /// Severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

/// The `device` section (host policies).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DeviceSection {
    /// Devices by class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_device: Vec<Device>,
    /// The section's severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

/// The rule sections every kind has, with its protocol (`P`) and capability (`C`) rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(
    rename_all = "camelCase",
    bound(deserialize = "P: Deserialize<'de>, C: Deserialize<'de>")
)]
#[non_exhaustive]
pub struct Sections<P, C> {
    /// Programs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessSection>,
    /// Files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSection>,
    /// Sockets and DNS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSection<P>>,
    /// Capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<CapabilitiesSection<C>>,
    /// Syscalls (audit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<SyscallsSection>,
    /// Raw AppArmor rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apparmor: Option<String>,
    /// The policy's severity, tags, message, action.
    #[serde(flatten)]
    pub meta: Meta,
}

impl<P, C> Default for Sections<P, C> {
    fn default() -> Self {
        Self {
            process: None,
            file: None,
            network: None,
            capabilities: None,
            syscalls: None,
            apparmor: None,
            meta: Meta::default(),
        }
    }
}

/// The spec of a `KubeArmorPolicy` (namespaced: the pods of its namespace).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PolicySpec {
    /// Which containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
    /// Presets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub presets: Vec<Preset>,
    /// Its rules.
    #[serde(flatten)]
    pub sections: Sections<Protocol, Capability>,
}

/// The spec of a `KubeArmorClusterPolicy` (cluster-scoped: pods by namespace and label).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterPolicySpec {
    /// Which namespaces and containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<ClusterSelector>,
    /// Presets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub presets: Vec<Preset>,
    /// Its rules.
    #[serde(flatten)]
    pub sections: Sections<Protocol, Capability>,
}

/// The spec of a `KubeArmorHostPolicy` (cluster-scoped: nodes by label).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HostPolicySpec {
    /// Which nodes.
    pub node_selector: NodeSelector,
    /// USB devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceSection>,
    /// Its rules.
    #[serde(flatten)]
    pub sections: Sections<HostProtocol, HostCapability>,
}

/// What armor writes back into a policy object's `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PolicyStatus {
    /// `Applied` or `Invalid` (KubeArmor's one field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Why it is invalid: every error, located by its field path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What each node does not enforce of the policy, by node name (the fail-closed report):
    /// the node refused the policy set, rules its enforcer does not carry, workloads it
    /// only monitors, each with why. A node that enforces all of it has no entry; each
    /// node's agent writes its own entry only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<String, String>,
}

impl PolicyStatus {
    /// `status` with an optional `message`.
    pub fn new(status: impl Into<String>, message: Option<String>) -> Self {
        Self {
            status: Some(status.into()),
            message,
            nodes: BTreeMap::new(),
        }
    }

    /// Whether `status` and `message` are the same as `other`'s (the outcome every node
    /// agrees on; the per-node entries are left out).
    pub fn same_outcome(&self, other: &Self) -> bool {
        self.status == other.status && self.message == other.message
    }
}

/// Why a YAML input could not be read as JSON documents ([`documents`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
#[non_exhaustive]
pub struct DocumentError {
    /// Where.
    pub location: crate::diag::Location,
    /// What is wrong.
    pub message: String,
}

/// The documents of a YAML input (`file` names it in errors) as JSON values, the way the
/// Kubernetes API reads them: scalars typed by the YAML 1.2 core schema, as armor-core's loader
/// types them (`0x1F` an integer, `"1"` a string), aliases expanded within the loader's limits.
/// Empty documents are left out.
///
/// ```
/// let docs = armor_core::crd::documents("a: 1\nb: [x, true]\n---\n---\nc: null\n", "in.yaml")
///     .unwrap();
/// assert_eq!(docs, vec![
///     serde_json::json!({"a": 1, "b": ["x", true]}),
///     serde_json::json!({"c": null}),
/// ]);
/// ```
pub fn documents(text: &str, file: &str) -> Result<Vec<serde_json::Value>, DocumentError> {
    let file: std::sync::Arc<str> = file.into();
    let docs = crate::yaml::load(text, &crate::yaml::LoadLimits::default()).map_err(|e| {
        DocumentError {
            location: e.pos.location(&file),
            message: e.message,
        }
    })?;
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        let v = to_json(&d.root, &file)?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

fn to_json(
    node: &crate::yaml::Node,
    file: &std::sync::Arc<str>,
) -> Result<serde_json::Value, DocumentError> {
    use crate::yaml::{NodeKind, ScalarType, scalar_type};
    use serde_json::Value;
    let error = |message: String| DocumentError {
        location: node.pos.location(file),
        message,
    };
    Ok(match &*node.kind {
        NodeKind::Seq(items) => Value::Array(
            items
                .iter()
                .map(|n| to_json(n, file))
                .collect::<Result<_, _>>()?,
        ),
        NodeKind::Map(pairs) => {
            let mut m = serde_json::Map::with_capacity(pairs.len());
            for (k, v) in pairs {
                let NodeKind::Scalar { value, .. } = &*k.kind else {
                    return Err(error("a mapping key that is not a scalar".to_string()));
                };
                m.insert(value.clone(), to_json(v, file)?);
            }
            Value::Object(m)
        }
        NodeKind::Scalar { value, style } => match scalar_type(value, *style) {
            ScalarType::Null => Value::Null,
            ScalarType::Bool => Value::Bool(value.eq_ignore_ascii_case("true")),
            ScalarType::Int => {
                let parsed = if let Some(hex) = value.strip_prefix("0x") {
                    i64::from_str_radix(hex, 16)
                } else if let Some(oct) = value.strip_prefix("0o") {
                    i64::from_str_radix(oct, 8)
                } else {
                    value.parse::<i64>()
                };
                Value::from(parsed.map_err(|_| error(format!("integer `{value}` out of range")))?)
            }
            ScalarType::Float => {
                let f: f64 = value
                    .parse()
                    .map_err(|_| error(format!("`{value}` is not a JSON number")))?;
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| error(format!("`{value}` is not a JSON number")))?
            }
            ScalarType::Str => Value::String(value.clone()),
        },
    })
}
