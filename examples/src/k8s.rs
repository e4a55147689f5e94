//! What `armor-k8s-agent` does between armor-k8s and armor-runtime: each [`NodeUpdate`] from
//! the cluster becomes the [`Feed`] items the agent takes (the two crates do not know each
//! other), and the node's settings become the runtime's configuration.

use armor_k8s::node::NodeSettings;
use armor_k8s::pods::{ContainerIdentity, PodEffect, PodLabels};
use armor_k8s::policies::{NodeReport, PolicyRef};
use armor_k8s::watch::NodeUpdate;
use armor_runtime::RuntimeConfig;
use armor_runtime::agent::{Feed, PolicyReport};
use armor_runtime::index::{IdentityKey, PodIdentity};

/// What the agent reports about its policies ([`PolicyReport`]) as the cluster side takes it
/// ([`NodeReport`]): each policy named by its object.
pub fn node_report(report: PolicyReport) -> NodeReport {
    let gaps = report
        .gaps
        .into_iter()
        .map(|(p, lines)| {
            (
                PolicyRef::new(p.kind, p.namespace.as_deref(), &p.name),
                lines,
            )
        })
        .collect();
    NodeReport::new(report.answered, gaps)
}

/// `base` (the node's name, enforcement settings) under the cluster's `settings`: cluster
/// name, node labels, default postures and visibility, namespace annotations, throttling.
pub fn runtime_config(base: &RuntimeConfig, settings: &NodeSettings) -> RuntimeConfig {
    let mut c = base.clone();
    let s = &settings.settings;
    if let Some(name) = &s.cluster_name {
        c.cluster_name.clone_from(name);
    }
    c.host_labels.clone_from(&settings.node_labels);
    c.posture.container_default = s.container_posture;
    c.posture.host_default = s.host_posture;
    c.posture.container_visibility = s.container_visibility;
    c.posture.host_visibility = s.host_visibility;
    c.posture
        .namespace_annotations
        .clone_from(&settings.namespace_annotations);
    c.max_alerts_per_sec = s.max_alerts_per_sec;
    c.throttle = s.throttle;
    c
}

fn pod_identity(p: &PodLabels) -> PodIdentity {
    PodIdentity::new(p.labels.clone())
        .annotations(p.annotations.clone())
        .owner(p.owner.clone())
}

fn container_identity(c: &ContainerIdentity) -> PodIdentity {
    PodIdentity::new(c.labels.clone())
        .annotations(c.annotations.clone())
        .owner(c.owner.clone())
}

/// What the agent is fed for a pod's change: each container of a pod's spec by pod uid and
/// name (before it exists), each container with a runtime id by that id.
pub fn pod_feed(effect: &PodEffect) -> Vec<Feed> {
    let by_name = |p: &PodLabels, identity: Option<PodIdentity>| -> Vec<Feed> {
        p.containers
            .iter()
            .map(|name| Feed::Identity {
                key: IdentityKey::PodContainer {
                    pod_uid: p.pod_uid.clone(),
                    container: name.clone(),
                },
                identity: identity.clone(),
            })
            .collect()
    };
    match effect {
        PodEffect::PodLabels(p) => by_name(p, Some(pod_identity(p))),
        PodEffect::PodGone(p) => by_name(p, None),
        PodEffect::Known(c) => vec![Feed::Identity {
            key: IdentityKey::ContainerId(c.container_id.clone()),
            identity: Some(container_identity(c)),
        }],
        PodEffect::Gone(id) => vec![Feed::Identity {
            key: IdentityKey::ContainerId(id.clone()),
            identity: None,
        }],
        _ => Vec::new(),
    }
}

/// What the agent is fed for `update` (`base`: see [`runtime_config`]); a problem goes to
/// `log`, and `Synced` gives nothing.
pub fn feed(base: &RuntimeConfig, update: NodeUpdate, log: &mut dyn FnMut(&str)) -> Vec<Feed> {
    match update {
        NodeUpdate::Policies { policy, .. } => vec![Feed::Policy(policy)],
        NodeUpdate::Pod(effect) => pod_feed(&effect),
        NodeUpdate::Settings(s) => vec![Feed::Config(Box::new(runtime_config(base, &s)))],
        NodeUpdate::Stale(why) => vec![Feed::Stale(why)],
        NodeUpdate::Fresh => vec![Feed::Fresh],
        NodeUpdate::Problem(p) => {
            log(&p);
            Vec::new()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]
    use super::*;
    use armor_k8s::pods::PodIndex;
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::watcher::Event;

    #[test]
    fn a_pod_feeds_its_containers_by_name_then_by_id_and_its_deletion_forgets_both() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1",
                "labels": {"app": "web"}, "ownerReferences": [{"apiVersion": "apps/v1",
                "kind": "StatefulSet", "name": "web", "uid": "s1", "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "web"}],
                "initContainers": [{"name": "init"}]},
            "status": {"containerStatuses": [{"name": "web", "image": "nginx", "imageID": "",
                "ready": true, "restartCount": 0, "containerID": "containerd://abc"}]}
        }))
        .unwrap();
        let mut index = PodIndex::new();
        let fed: Vec<Feed> = index
            .apply(Event::Apply(pod.clone()))
            .iter()
            .flat_map(pod_feed)
            .collect();
        let keys: Vec<String> = fed
            .iter()
            .map(|f| match f {
                Feed::Identity {
                    key,
                    identity: Some(i),
                } => format!(
                    "{key:?} {} {}",
                    i.labels["app"],
                    i.owner.as_ref().unwrap().kind
                ),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            keys,
            [
                r#"PodContainer { pod_uid: "u1", container: "web" } web StatefulSet"#,
                r#"PodContainer { pod_uid: "u1", container: "init" } web StatefulSet"#,
                r#"ContainerId("abc") web StatefulSet"#,
            ]
        );
        let gone: Vec<Feed> = index
            .apply(Event::Delete(pod))
            .iter()
            .flat_map(pod_feed)
            .collect();
        assert_eq!(gone.len(), 3);
        assert!(
            gone.iter()
                .all(|f| matches!(f, Feed::Identity { identity: None, .. }))
        );
    }

    #[test]
    fn settings_become_the_runtime_configuration_over_the_base() {
        let mut base = RuntimeConfig::default();
        base.host_name = "n1".into();
        let data = std::collections::BTreeMap::from([
            ("cluster".to_string(), "prod".to_string()),
            ("defaultFilePosture".to_string(), "block".to_string()),
            ("alertThrottling".to_string(), "false".to_string()),
        ]);
        let (settings, _) = armor_core::settings::Settings::from_data(&data, "c").unwrap();
        let mut node = NodeSettings::default();
        node.settings = settings;
        node.node_labels.insert("role".into(), "edge".into());
        let c = runtime_config(&base, &node);
        assert_eq!(
            (c.cluster_name.as_str(), c.host_name.as_str()),
            ("prod", "n1")
        );
        assert_eq!(c.host_labels["role"], "edge");
        assert_eq!(
            c.posture.container_default.file,
            armor_core::PostureAction::Block
        );
        assert_eq!(c.max_alerts_per_sec, 0);
    }
}
