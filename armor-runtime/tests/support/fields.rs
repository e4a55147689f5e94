//! A record's fields named and rendered as its JSON line names them, from the JSON line and
//! from the wire's `Alert` or `Log`: equal maps mean the gRPC feed carries what the JSON line
//! does. Shared by the feed's tests (armor-runtime's and the agent's in examples/).
#![allow(dead_code, reason = "each test binary uses part of the shared module")]

use std::collections::BTreeMap;

use armor_runtime::feeder::proto;

/// The JSON line's fields as strings (arrays joined by `,`, the owner as `Ref/Namespace/Name`),
/// without the empty ones.
pub(crate) fn json_fields(line: &str) -> BTreeMap<String, String> {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let mut m = BTreeMap::new();
    for (k, v) in v.as_object().unwrap() {
        let s = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join(","),
            // The owner as `Ref/Namespace/Name` (each part may be absent: empty); any other
            // object (`EventData`) as its sorted `key=value` pairs.
            serde_json::Value::Object(o) if k == "Owner" => {
                let part = |f: &str| o.get(f).and_then(|v| v.as_str()).unwrap_or_default();
                format!("{}/{}/{}", part("Ref"), part("Namespace"), part("Name"))
            }
            serde_json::Value::Object(o) => {
                let mut pairs: Vec<String> = o.iter().map(|(k, v)| format!("{k}={v}")).collect();
                pairs.sort();
                pairs.join(",")
            }
            other => other.to_string(),
        };
        if !s.is_empty() && s != "0" {
            m.insert(k.clone(), s);
        }
    }
    m
}

/// The same for a wire message, from its fields named as the JSON line names them.
fn wire_fields(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty() && v != "0")
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

fn owner(o: Option<&proto::Podowner>) -> String {
    o.map(|o| format!("{}/{}/{}", o.r#ref, o.namespace, o.name))
        .unwrap_or_default()
}

pub(crate) fn alert_fields(a: &proto::Alert) -> BTreeMap<String, String> {
    wire_fields(&[
        ("Timestamp", a.timestamp.to_string()),
        ("UpdatedTime", a.updated_time.clone()),
        ("ClusterName", a.cluster_name.clone()),
        ("HostName", a.host_name.clone()),
        ("NamespaceName", a.namespace_name.clone()),
        ("Owner", owner(a.owner.as_ref())),
        ("PodName", a.pod_name.clone()),
        ("Labels", a.labels.clone()),
        ("ContainerID", a.container_id.clone()),
        ("ContainerName", a.container_name.clone()),
        ("ContainerImage", a.container_image.clone()),
        ("HostPPID", a.host_ppid.to_string()),
        ("HostPID", a.host_pid.to_string()),
        ("PPID", a.ppid.to_string()),
        ("PID", a.pid.to_string()),
        ("UID", a.uid.to_string()),
        ("ParentProcessName", a.parent_process_name.clone()),
        ("ProcessName", a.process_name.clone()),
        ("PolicyName", a.policy_name.clone()),
        ("Severity", a.severity.clone()),
        ("Tags", a.tags.clone()),
        ("ATags", a.a_tags.join(",")),
        ("Message", a.message.clone()),
        ("Type", a.r#type.clone()),
        ("Source", a.source.clone()),
        ("Operation", a.operation.clone()),
        ("Resource", a.resource.clone()),
        ("Data", a.data.clone()),
        ("Enforcer", a.enforcer.clone()),
        ("Action", a.action.clone()),
        ("Result", a.result.clone()),
        ("Cwd", a.cwd.clone()),
        ("TTY", a.tty.clone()),
    ])
}

pub(crate) fn log_fields(l: &proto::Log) -> BTreeMap<String, String> {
    wire_fields(&[
        ("Timestamp", l.timestamp.to_string()),
        ("UpdatedTime", l.updated_time.clone()),
        ("ClusterName", l.cluster_name.clone()),
        ("HostName", l.host_name.clone()),
        ("NamespaceName", l.namespace_name.clone()),
        ("Owner", owner(l.owner.as_ref())),
        ("PodName", l.pod_name.clone()),
        ("Labels", l.labels.clone()),
        ("ContainerID", l.container_id.clone()),
        ("ContainerName", l.container_name.clone()),
        ("ContainerImage", l.container_image.clone()),
        ("HostPPID", l.host_ppid.to_string()),
        ("HostPID", l.host_pid.to_string()),
        ("PPID", l.ppid.to_string()),
        ("PID", l.pid.to_string()),
        ("UID", l.uid.to_string()),
        ("ParentProcessName", l.parent_process_name.clone()),
        ("ProcessName", l.process_name.clone()),
        ("Type", l.r#type.clone()),
        ("Source", l.source.clone()),
        ("Operation", l.operation.clone()),
        ("Resource", l.resource.clone()),
        ("Data", l.data.clone()),
        ("Result", l.result.clone()),
        ("Cwd", l.cwd.clone()),
        ("TTY", l.tty.clone()),
    ])
}
