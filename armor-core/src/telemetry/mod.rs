//! KubeArmor-compatible telemetry: the Log and Alert records (PascalCase JSON field names, as
//! KubeArmor prints them) and the conversion of a recorded Log back into an engine [`Event`],
//! which is what `armorctl replay` does with telemetry recorded on real clusters.
//!
//! One type, [`Telemetry`], carries both Logs and Alerts: an Alert is a Log with the policy
//! fields (`PolicyName`, `Severity`, `Tags`, `ATags`, `Message`, `Enforcer`, `Action`) set.
//! Fields armor does not interpret (`ExecEvent`, hashes, …) are kept in
//! [`Telemetry::extra`] and written back unchanged.
//!
//! ```
//! use armor_core::telemetry::Telemetry;
//! let log: Telemetry = serde_json::from_str(r#"{"Type":"ContainerLog","NamespaceName":"shop",
//!   "Labels":"app=web","ContainerName":"web","Operation":"File","Source":"/bin/cat /etc/shadow",
//!   "Resource":"/etc/shadow","Data":"syscall=SYS_OPENAT fd=-100 flags=O_RDONLY","UID":0}"#)?;
//! let (workload, event) = log.to_event(&Default::default())?;
//! assert!(!workload.is_host());
//! assert_eq!(event.source.as_deref(), Some("/bin/cat"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod format;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::engine::{Decision, Verdict};
use crate::event::{Access, Event, Operation, Socket, caps, net};
use crate::workload::{Container, Host, Owner, Workload};

/// A KubeArmor Log or Alert record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
#[allow(
    missing_docs,
    reason = "fields are KubeArmor's, documented in its kubearmor.proto"
)]
pub struct Telemetry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    #[serde(
        default,
        rename = "ContainerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_process_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_name: Option<String>,
    #[serde(default, rename = "HostPPID", skip_serializing_if = "Option::is_none")]
    pub host_ppid: Option<i64>,
    #[serde(default, rename = "HostPID", skip_serializing_if = "Option::is_none")]
    pub host_pid: Option<i64>,
    #[serde(default, rename = "PPID", skip_serializing_if = "Option::is_none")]
    pub ppid: Option<i64>,
    #[serde(default, rename = "PID", skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
    #[serde(default, rename = "UID", skip_serializing_if = "Option::is_none")]
    pub uid: Option<i64>,
    /// armor extension: owner uid of the file or executable (for ownerOnly rules).
    #[serde(default, rename = "OwnerUID", skip_serializing_if = "Option::is_none")]
    pub owner_uid: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<String>,
    #[serde(default, rename = "ATags", skip_serializing_if = "Option::is_none")]
    pub atags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, rename = "Type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, rename = "TTY", skip_serializing_if = "Option::is_none")]
    pub tty: Option<String>,
    /// Every other field of the record, kept as it was.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Why a record cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// A field the operation needs is missing.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// The operation is not one armor decides.
    #[error(
        "operation `{0}` is not replayable (expected Process, File, Network, Capabilities or Syscall)"
    )]
    Operation(String),
    /// A field could not be understood.
    #[error("field `{field}`: cannot read `{value}`")]
    Field {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
}

/// What replay needs beyond the record itself: the node's labels (host records carry only the
/// host name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplayContext {
    /// Node name override (else `HostName`).
    pub node_name: Option<String>,
    /// Node labels for host policies.
    pub node_labels: BTreeMap<String, String>,
}

impl ReplayContext {
    /// A context with a node name and labels.
    pub fn new(node_name: Option<String>, node_labels: BTreeMap<String, String>) -> Self {
        Self {
            node_name,
            node_labels,
        }
    }
}

/// `k=v,k=v` → map (items without `=` get an empty value).
pub fn parse_labels(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|i| match i.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (i.to_string(), String::new()),
        })
        .collect()
}

/// `key=value` tokens of a `Data` or `Resource` string.
pub fn tokens(s: &str) -> BTreeMap<&str, &str> {
    s.split_whitespace()
        .filter_map(|t| t.split_once('='))
        .collect()
}

fn first_word(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or("")
}

/// Syscalls that write to their path argument (`Data: syscall=SYS_UNLINKAT`).
const WRITE_SYSCALLS: &[&str] = &[
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "link",
    "linkat",
    "truncate",
    "ftruncate",
    "chmod",
    "fchmod",
    "fchmodat",
    "chown",
    "fchown",
    "fchownat",
    "lchown",
    "rmdir",
    "mkdir",
    "mkdirat",
    "creat",
    "symlink",
    "symlinkat",
    "mknod",
    "mknodat",
];

/// A record's `Type`, as KubeArmor writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordType {
    /// `ContainerLog`: an operation of a container (or service).
    ContainerLog,
    /// `HostLog`: an operation of the host.
    HostLog,
    /// `MatchedPolicy`: an alert of a container policy.
    MatchedPolicy,
    /// `MatchedHostPolicy`: an alert of a host policy.
    MatchedHostPolicy,
    /// `SystemEvent`: about the agent itself (an alert threshold reached).
    SystemEvent,
}

impl RecordType {
    /// The `Type` field's text.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ContainerLog => "ContainerLog",
            Self::HostLog => "HostLog",
            Self::MatchedPolicy => "MatchedPolicy",
            Self::MatchedHostPolicy => "MatchedHostPolicy",
            Self::SystemEvent => "SystemEvent",
        }
    }

    /// The type of a log of a host (`host`) or container.
    pub const fn log(host: bool) -> Self {
        if host {
            Self::HostLog
        } else {
            Self::ContainerLog
        }
    }

    /// The type of an alert of a host (`host`) or container policy.
    pub const fn alert(host: bool) -> Self {
        if host {
            Self::MatchedHostPolicy
        } else {
            Self::MatchedPolicy
        }
    }

    /// The type `text` names, if any.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::ContainerLog,
            Self::HostLog,
            Self::MatchedPolicy,
            Self::MatchedHostPolicy,
            Self::SystemEvent,
        ]
        .into_iter()
        .find(|t| t.as_str() == text)
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Result` of an operation that was allowed.
pub const RESULT_PASSED: &str = "Passed";

/// `Result` of an operation that was denied.
pub const RESULT_DENIED: &str = "Permission denied";

/// `Action` of a Block decision that no kernel enforcer made (reported, not denied).
pub const ACTION_AUDIT_BLOCK: &str = "Audit (Block)";

/// `Operation` of the SystemEvent that says alerts are being dropped.
pub const OPERATION_ALERT_THRESHOLD: &str = "AlertThreshold";

impl Telemetry {
    /// Whether the record is about a host (`Type: HostLog`/`MatchedHostPolicy`, or no namespace).
    pub fn is_host(&self) -> bool {
        match self.kind.as_deref().and_then(RecordType::parse) {
            Some(RecordType::HostLog | RecordType::MatchedHostPolicy) => true,
            Some(RecordType::ContainerLog | RecordType::MatchedPolicy) => false,
            _ => self.namespace_name.as_deref().unwrap_or("").is_empty(),
        }
    }

    /// The `AlertThreshold` SystemEvent: alerts of `workload` (whose identity and time `base`
    /// carries) passed `max_per_sec` in a second and are dropped for `period`.
    pub fn alert_threshold(
        base: &Telemetry,
        workload: &str,
        max_per_sec: u32,
        period: std::time::Duration,
    ) -> Telemetry {
        let mut s = Telemetry {
            timestamp: base.timestamp,
            updated_time: base.updated_time.clone(),
            cluster_name: base.cluster_name.clone(),
            host_name: base.host_name.clone(),
            namespace_name: base.namespace_name.clone(),
            pod_name: base.pod_name.clone(),
            labels: base.labels.clone(),
            container_id: base.container_id.clone(),
            container_name: base.container_name.clone(),
            ..Telemetry::default()
        };
        s.kind = Some(RecordType::SystemEvent.to_string());
        s.operation = Some(OPERATION_ALERT_THRESHOLD.to_string());
        s.resource = Some(workload.to_string());
        s.data = Some(format!(
            "MaxAlertsPerSec={max_per_sec} DroppingAlertsInterval={}s",
            period.as_secs()
        ));
        s.message = Some(format!(
            "alert threshold of {max_per_sec} per second reached: dropping alerts of \
             `{workload}` for {}s",
            period.as_secs()
        ));
        s.result = Some(RESULT_PASSED.to_string());
        s
    }

    /// The workload and the operation this record describes.
    pub fn to_event(&self, ctx: &ReplayContext) -> Result<(Workload, Event), ReplayError> {
        let workload = if self.is_host() {
            let mut h = Host::new(
                ctx.node_name
                    .clone()
                    .or_else(|| self.host_name.clone())
                    .unwrap_or_default(),
            );
            h.labels = ctx.node_labels.clone();
            Workload::Host(h)
        } else {
            let mut c = Container::new(
                self.namespace_name.clone().unwrap_or_default(),
                self.container_name.clone().unwrap_or_default(),
            );
            c.labels = parse_labels(self.labels.as_deref().unwrap_or(""));
            c.pod = self.pod_name.clone();
            c.owner = self.owner.clone();
            Workload::Container(c)
        };
        let op = self
            .operation
            .as_deref()
            .ok_or(ReplayError::Missing("Operation"))?;
        let resource = self.resource.as_deref().unwrap_or("");
        let data = self.data.as_deref().unwrap_or("");
        let data_tokens = tokens(data);
        let syscall = data_tokens
            .get("syscall")
            .map(|s| s.trim_start_matches("SYS_").to_ascii_lowercase());
        let source = self
            .source
            .as_deref()
            .map(first_word)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let owner = self.owner_uid.and_then(|o| u32::try_from(o).ok());
        let operation = match op {
            "Process" => {
                let exe = first_word(resource);
                let exe = if exe.is_empty() {
                    self.process_name.as_deref().unwrap_or("")
                } else {
                    exe
                };
                if exe.is_empty() {
                    return Err(ReplayError::Missing("Resource"));
                }
                Operation::Process {
                    path: exe.to_string(),
                    owner,
                }
            }
            "File" => {
                let path = resource.trim();
                if path.is_empty() {
                    return Err(ReplayError::Missing("Resource"));
                }
                let access = if syscall
                    .as_deref()
                    .is_some_and(|s| WRITE_SYSCALLS.contains(&s))
                {
                    Access::WRITE
                } else {
                    Access::from_open_flags(data_tokens.get("flags").copied().unwrap_or(""))
                };
                Operation::File {
                    path: path.to_string(),
                    access,
                    owner,
                }
            }
            "Network" => Operation::Network(parse_socket(resource)?),
            "Capabilities" => {
                let name = first_word(resource);
                let num = caps::number(name).ok_or_else(|| ReplayError::Field {
                    field: "Resource",
                    value: resource.to_string(),
                })?;
                Operation::Capability(num)
            }
            "Syscall" => Operation::Syscall {
                name: syscall.ok_or(ReplayError::Missing("Data (syscall=...)"))?,
                path: Some(resource.trim())
                    .filter(|p| p.starts_with('/'))
                    .map(str::to_string),
            },
            other => return Err(ReplayError::Operation(other.to_string())),
        };
        let uid = match self.uid {
            Some(u) => u32::try_from(u).map_err(|_| ReplayError::Field {
                field: "UID",
                value: u.to_string(),
            })?,
            None => 0,
        };
        Ok((
            workload,
            Event {
                operation,
                source,
                uid,
                facts: crate::event::Facts::default(),
                args: None,
            },
        ))
    }

    /// This record as the policies decided it: an Alert (policy fields set, `Type`
    /// `MatchedPolicy`/`MatchedHostPolicy`) or a Log with its `Result`.
    pub fn with_decision(&self, d: &Decision<'_>, enforcer: &str) -> Telemetry {
        let mut out = self.clone();
        out.result = Some(d.result().to_string());
        match d.alert() {
            Some(a) => {
                out.policy_name = Some(a.policy_name.to_string());
                out.severity = Some(a.severity.map(|s| s.to_string()).unwrap_or_default());
                out.tags = Some(a.tags.join(","));
                out.atags = Some(a.tags.to_vec());
                out.message = Some(a.message.unwrap_or("").to_string());
                out.kind = Some(a.alert_type.to_string());
                out.action = Some(a.action.to_string());
                out.enforcer = Some(enforcer.to_string());
            }
            None => {
                debug_assert_eq!(d.verdict, Verdict::Allow);
                out.policy_name = None;
                out.severity = None;
                out.tags = None;
                out.atags = None;
                out.message = None;
                out.action = None;
                out.enforcer = None;
                out.kind = Some(RecordType::log(d.host).to_string());
            }
        }
        out
    }
}

/// Parses `domain=AF_INET type=SOCK_RAW protocol=ICMP`, `remoteip=… port=… protocol=TCP` or
/// `sa_family=AF_INET …`.
fn parse_socket(resource: &str) -> Result<Socket, ReplayError> {
    let t = tokens(resource);
    let bad = |v: &str| ReplayError::Field {
        field: "Resource",
        value: v.to_string(),
    };
    let family = match t.get("domain").or_else(|| t.get("sa_family")) {
        Some(f) => net::parse_constant(f).ok_or_else(|| bad(resource))?,
        None => match t.get("remoteip").or_else(|| t.get("localip")) {
            Some(ip) if ip.contains(':') => net::AF_INET6,
            Some(_) => net::AF_INET,
            None => 0,
        },
    };
    let protocol = match t.get("protocol") {
        Some(p) => net::parse_constant(p).ok_or_else(|| bad(resource))?,
        None => 0,
    };
    let sock_type = match t.get("type") {
        Some(ty) => net::parse_constant(ty).ok_or_else(|| bad(resource))?,
        None => match protocol {
            net::IPPROTO_TCP | net::IPPROTO_SCTP => net::SOCK_STREAM,
            net::IPPROTO_UDP => net::SOCK_DGRAM,
            _ => 0,
        },
    };
    if family == 0 && protocol == 0 && sock_type == 0 {
        return Err(bad(resource));
    }
    Ok(Socket::new(family, sock_type, protocol))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_resources() {
        let s = parse_socket("domain=AF_INET type=SOCK_RAW protocol=ICMP").unwrap();
        assert_eq!((s.family, s.sock_type, s.protocol), (2, 3, 1));
        let s = parse_socket("remoteip=10.0.0.1 port=80 protocol=TCP").unwrap();
        assert_eq!((s.family, s.sock_type, s.protocol), (2, 1, 6));
        assert!(parse_socket("nothing here").is_err());
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let text = r#"{"Type":"ContainerLog","Owner":{"Ref":"Deployment","Name":"web","Namespace":"shop"},"HashAlgo":"sha256","Operation":"File"}"#;
        let t: Telemetry = serde_json::from_str(text).unwrap();
        assert_eq!(t.extra["HashAlgo"], "sha256");
        assert_eq!(t.owner, Some(Owner::new("Deployment", "web", "shop")));
        let back = serde_json::to_string(&t).unwrap();
        assert!(
            back.contains(r#""Owner":{"Ref":"Deployment","Name":"web","Namespace":"shop"}"#),
            "{back}"
        );
    }

    #[test]
    fn file_writes_from_syscalls() {
        let t = Telemetry {
            kind: Some("HostLog".into()),
            operation: Some("File".into()),
            resource: Some("/etc/passwd".into()),
            data: Some("syscall=SYS_UNLINKAT".into()),
            ..Telemetry::default()
        };
        let (w, e) = t.to_event(&ReplayContext::default()).unwrap();
        assert!(w.is_host());
        assert!(matches!(e.operation, Operation::File { access, .. } if access.write));
    }
}
