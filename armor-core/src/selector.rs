//! Which workloads a policy applies to.
//!
//! See the [semantics](crate::manual::semantics) for the rules. In short: KSP = namespace +
//! every `matchLabels` pair + every expression; CSP = namespace and label expressions; HSP =
//! every `nodeSelector.matchLabels` pair. Expressions are order-independent (unlike KubeArmor).

use std::collections::BTreeMap;

use crate::model::{ExpressionKey, Operator, Policy, PolicyKind};
use crate::workload::{Container, Host, Workload};

/// The special `matchLabels` key that limits a policy to named containers of a pod.
pub const CONTAINER_NAME_LABEL: &str = "kubearmor.io/container.name";

/// Node label keys that also match the node name in host selectors.
pub const HOSTNAME_LABELS: &[&str] = &["kubernetes.io/hostname", "kubearmor.io/hostname"];

/// A compiled selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledSelector {
    kind: PolicyKind,
    namespace: Option<String>,
    labels: Vec<(String, String)>,
    containers: Vec<String>,
    label_exprs: Vec<(Operator, Vec<(String, String)>)>,
    namespace_exprs: Vec<(Operator, Vec<String>)>,
}

/// Parses `"[a, b]"` into the container names (empty items skipped; `""`/`"[]"` = all).
pub fn parse_container_list(value: &str) -> Vec<String> {
    let t = value.trim();
    let inner = t
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(t);
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn split_label(v: &str) -> (String, String) {
    match v.split_once('=') {
        Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
        None => (v.trim().to_string(), String::new()),
    }
}

fn has_label(labels: &BTreeMap<String, String>, (k, v): &(String, String)) -> bool {
    labels.get(k).is_some_and(|have| have == v)
}

impl CompiledSelector {
    /// Compiles the selector of `policy`.
    pub fn new(policy: &Policy) -> Self {
        let mut out = Self {
            kind: policy.kind,
            namespace: None,
            labels: Vec::new(),
            containers: Vec::new(),
            label_exprs: Vec::new(),
            namespace_exprs: Vec::new(),
        };
        match policy.kind {
            PolicyKind::KubeArmorHostPolicy => {
                out.labels = policy
                    .spec
                    .node_selector
                    .match_labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
            }
            _ => {
                if policy.kind == PolicyKind::KubeArmorPolicy {
                    out.namespace = Some(
                        policy
                            .namespace
                            .clone()
                            .unwrap_or_else(|| "default".to_string()),
                    );
                }
                for (k, v) in &policy.spec.selector.match_labels {
                    if k == CONTAINER_NAME_LABEL {
                        out.containers = parse_container_list(v);
                    } else {
                        out.labels.push((k.clone(), v.clone()));
                    }
                }
                for e in &policy.spec.selector.match_expressions {
                    match e.key {
                        ExpressionKey::Label => out.label_exprs.push((
                            e.operator,
                            e.values.iter().map(|v| split_label(v)).collect(),
                        )),
                        ExpressionKey::Namespace => out.namespace_exprs.push((
                            e.operator,
                            e.values.iter().map(|v| v.trim().to_string()).collect(),
                        )),
                    }
                }
            }
        }
        out
    }

    /// Whether the policy applies to `workload`.
    pub fn selects(&self, workload: &Workload) -> bool {
        match (self.kind, workload) {
            (PolicyKind::KubeArmorHostPolicy, Workload::Host(h)) => self.selects_host(h),
            (PolicyKind::KubeArmorHostPolicy, _) | (_, Workload::Host(_)) => false,
            (_, Workload::Container(c)) => self.selects_container(c),
        }
    }

    fn selects_host(&self, h: &Host) -> bool {
        self.labels.iter().all(|(k, v)| {
            has_label(&h.labels, &(k.clone(), v.clone()))
                || (HOSTNAME_LABELS.contains(&k.as_str()) && host_name_matches(v, &h.node_name))
        })
    }

    fn selects_container(&self, c: &Container) -> bool {
        if let Some(ns) = &self.namespace
            && *ns != c.namespace
        {
            return false;
        }
        if !self.containers.is_empty() && !self.containers.contains(&c.name) {
            return false;
        }
        if !self.labels.iter().all(|l| has_label(&c.labels, l)) {
            return false;
        }
        let labels_ok = self.label_exprs.iter().all(|(op, values)| {
            let any = values.iter().any(|l| has_label(&c.labels, l));
            match op {
                Operator::In => any,
                Operator::NotIn => !any,
            }
        });
        let ns_ok = self.namespace_exprs.iter().all(|(op, values)| {
            let any = values.contains(&c.namespace);
            match op {
                Operator::In => any,
                Operator::NotIn => !any,
            }
        });
        labels_ok && ns_ok
    }
}

/// `kubearmor.io/hostname` accepts a comma list of names or `*`.
fn host_name_matches(value: &str, node: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .any(|v| v == "*" || v == node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_lists() {
        assert_eq!(parse_container_list("[a, b]"), vec!["a", "b"]);
        assert!(parse_container_list("[]").is_empty());
        assert!(parse_container_list("").is_empty());
        assert_eq!(parse_container_list("[c1,,]"), vec!["c1"]);
    }
}
