#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The pod reducer alone: pod watch events in, container identities out.

use armor_k8s::pods::{ContainerKind, PodEffect, PodIndex};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;
use serde_json::json;

fn status(name: &str, id: Option<&str>) -> serde_json::Value {
    let mut s = json!({"name": name, "image": format!("{name}:1"), "imageID": "", "ready": true,
                       "restartCount": 0});
    if let Some(id) = id {
        s["containerID"] = json!(format!("containerd://{id}"));
    }
    s
}

/// Pod `web-7d9f-x` of Deployment `web` (ReplicaSet `web-7d9f`), with an init container, an
/// ephemeral container, host networking, and the given container ids (`None`: not created yet).
fn pod(
    labels: serde_json::Value,
    web: Option<&str>,
    init: Option<&str>,
    debug: Option<&str>,
) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web-7d9f-x", "namespace": "shop", "uid": "uid-1",
            "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f",
                "uid": "rs", "controller": true}]},
        "spec": {"nodeName": "n1", "hostNetwork": true,
            "initContainers": [{"name": "setup", "image": "setup:1"}],
            "containers": [{"name": "web", "image": "web:1"}],
            "ephemeralContainers": [{"name": "debug", "image": "debug:1"}]},
        "status": {
            "containerStatuses": [status("web", web)],
            "initContainerStatuses": [status("setup", init)],
            "ephemeralContainerStatuses": [status("debug", debug)]}
    }))
    .unwrap()
}

fn known(effects: &[PodEffect]) -> Vec<(String, ContainerKind)> {
    effects
        .iter()
        .filter_map(|e| match e {
            PodEffect::Known(c) => Some((c.container_id.clone(), c.kind)),
            _ => None,
        })
        .collect()
}

fn gone(effects: &[PodEffect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            PodEffect::Gone(id) => Some(id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn every_container_of_a_pod_is_identified_with_its_pods_labels_and_owner() {
    let mut index = PodIndex::new();
    let labels = json!({"app": "web", "pod-template-hash": "7d9f"});
    let effects = index.apply(Event::Apply(pod(
        labels,
        Some("w1"),
        Some("i1"),
        Some("d1"),
    )));
    let mut k = known(&effects);
    k.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        k,
        vec![
            ("d1".to_string(), ContainerKind::Ephemeral),
            ("i1".to_string(), ContainerKind::Init),
            ("w1".to_string(), ContainerKind::Regular),
        ]
    );
    let web = index.container("w1").unwrap();
    assert_eq!(
        (
            web.namespace.as_str(),
            web.pod.as_str(),
            web.container.as_str()
        ),
        ("shop", "web-7d9f-x", "web")
    );
    assert_eq!(web.labels["app"], "web");
    assert_eq!(
        (web.owner.kind.as_str(), web.owner.name.as_str()),
        ("Deployment", "web")
    );
    assert_eq!(web.runtime, "containerd");
    assert!(web.host_network && !web.host_pid);
    assert_eq!(web.node.as_deref(), Some("n1"));
    assert_eq!(index.len(), 3);
}

#[test]
fn a_container_is_known_once_its_id_arrives_and_follows_label_changes_and_restarts() {
    let mut index = PodIndex::new();
    // Created, not started: no ids yet, but the spec's labels by pod uid and container name.
    let effects = index.apply(Event::Apply(pod(json!({"app": "web"}), None, None, None)));
    let [PodEffect::PodLabels(p)] = effects.as_slice() else {
        panic!("{effects:?}")
    };
    assert_eq!(p.pod_uid, "uid-1");
    assert_eq!(p.containers, ["web", "setup", "debug"]);
    assert_eq!(p.labels["app"], "web");
    assert_eq!(index.pod_labels("uid-1").unwrap().labels["app"], "web");
    // The kubelet reports the id: known now.
    let effects = index.apply(Event::Apply(pod(
        json!({"app": "web"}),
        Some("w1"),
        None,
        None,
    )));
    assert_eq!(
        known(&effects),
        vec![("w1".to_string(), ContainerKind::Regular)]
    );
    // The same pod again: nothing.
    assert!(
        index
            .apply(Event::Apply(pod(
                json!({"app": "web"}),
                Some("w1"),
                None,
                None
            )))
            .is_empty()
    );
    // Relabelled: the spec's labels again, then the container known again with them.
    let effects = index.apply(Event::Apply(pod(
        json!({"app": "api"}),
        Some("w1"),
        None,
        None,
    )));
    assert!(matches!(&effects[0], PodEffect::PodLabels(p) if p.labels["app"] == "api"));
    assert_eq!(known(&effects).len(), 1);
    assert_eq!(index.container("w1").unwrap().labels["app"], "api");
    // Restarted: the old id is gone, the new one known.
    let effects = index.apply(Event::Apply(pod(
        json!({"app": "api"}),
        Some("w2"),
        None,
        None,
    )));
    assert_eq!(gone(&effects), vec!["w1"]);
    assert_eq!(
        known(&effects),
        vec![("w2".to_string(), ContainerKind::Regular)]
    );
    assert!(index.container("w1").is_none());
    // Deleted: the pod's labels and its container are gone.
    let effects = index.apply(Event::Delete(pod(
        json!({"app": "api"}),
        Some("w2"),
        None,
        None,
    )));
    assert!(matches!(&effects[0], PodEffect::PodGone(p) if p.pod_uid == "uid-1"));
    assert_eq!(gone(&effects), vec!["w2"]);
    assert!(index.is_empty());
    assert!(index.pod_labels("uid-1").is_none());
}

#[test]
fn a_relist_drops_the_pods_not_listed_and_repeats_nothing() {
    let mut index = PodIndex::new();
    index.apply(Event::Apply(pod(
        json!({"app": "web"}),
        Some("w1"),
        Some("i1"),
        None,
    )));
    let mut other: Pod = serde_json::from_value(json!({
        "metadata": {"name": "db-0", "namespace": "shop", "uid": "uid-2",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
                "uid": "ss", "controller": true}]},
        "spec": {"containers": [{"name": "db", "image": "db:1"}]},
        "status": {"containerStatuses": [status("db", Some("b1"))]}
    }))
    .unwrap();
    let effects = index.apply(Event::Apply(other.clone()));
    assert_eq!(index.container("b1").unwrap().owner.kind, "StatefulSet");
    assert_eq!(known(&effects).len(), 1);
    // The watch restarts; only the web pod is listed (db-0 was deleted meanwhile).
    assert!(index.apply(Event::Init).is_empty());
    assert!(
        index
            .apply(Event::InitApply(pod(
                json!({"app": "web"}),
                Some("w1"),
                Some("i1"),
                None
            )))
            .is_empty()
    );
    let effects = index.apply(Event::InitDone);
    assert!(
        matches!(&effects[0], PodEffect::PodGone(p) if p.pod_uid == "uid-2"),
        "{effects:?}"
    );
    assert_eq!(effects[1..], [PodEffect::Gone("b1".to_string())]);
    // A bare pod is its own owner.
    other.metadata.owner_references = None;
    index.apply(Event::Apply(other));
    assert_eq!(index.container("b1").unwrap().owner.kind, "Pod");
}
