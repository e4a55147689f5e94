#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The cluster's policies followed live against a real API server: applied, updated, refused
//! with a status naming the field, deleted, and followed across an API server restart without
//! losing an event or applying one twice.

mod support;

use std::time::Duration;

use armor_k8s::crd::{KubeArmorPolicy, KubeArmorPolicySpec};
use armor_k8s::policies::{APPLIED, INVALID};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

fn policy(name: &str, yaml_spec: &str) -> KubeArmorPolicy {
    let spec: armor_core::crd::PolicySpec = serde_json::from_value(
        armor_core::crd::documents(yaml_spec, "spec")
            .unwrap()
            .remove(0),
    )
    .unwrap();
    let mut s = KubeArmorPolicySpec::default();
    s.spec = spec;
    let mut p = KubeArmorPolicy::new(name, s);
    p.metadata.namespace = Some("default".to_string());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_followed_validated_and_survive_an_api_server_restart() {
    let Some(mut cp) = support::ControlPlane::start("live-policies").await else {
        return;
    };
    let client = cp.admin().await;
    support::install_crds(&client).await;
    let api: Api<KubeArmorPolicy> = Api::namespaced(client.clone(), "default");

    let follower = support::Follower::start(client.clone());

    // The first lists (empty) are enforced once: an empty set.
    assert_eq!(
        follower.enforced_at_least(1, "the cold start").await,
        vec![0]
    );

    // Applied: enforced with its rule, status Applied.
    let block = "selector: {matchLabels: {app: web}}\nfile:\n  matchPaths: [{path: /etc/shadow}]\naction: Block\n";
    api.create(&PostParams::default(), &policy("no-shadow", block))
        .await
        .unwrap();
    assert_eq!(
        follower.enforced_at_least(2, "the first policy").await,
        vec![0, 1]
    );
    support::status_of(&api, "no-shadow", APPLIED).await;

    // Updated: enforced again with both rules.
    let two = "selector: {matchLabels: {app: web}}\nfile:\n  matchPaths: [{path: /etc/shadow}, {path: /etc/gshadow}]\naction: Block\n";
    let patch = serde_json::json!({"spec": armor_core::crd::documents(two, "spec").unwrap()[0]});
    api.patch("no-shadow", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(
        follower.enforced_at_least(3, "the update").await,
        vec![0, 1, 2]
    );

    // Invalid for armor-core (an unclosed glob class), valid for the schema: refused with the
    // field, nothing enforced anew.
    let bad = "selector: {matchLabels: {app: web}}\nfile:\n  matchPatterns: [{pattern: '/etc/[ab'}]\naction: Block\n";
    api.create(&PostParams::default(), &policy("bad-glob", bad))
        .await
        .unwrap();
    let message = support::status_of(&api, "bad-glob", INVALID)
        .await
        .unwrap_or_default();
    assert!(
        message.starts_with("spec.file.matchPatterns[0].pattern: "),
        "{message}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        follower.enforced.lock().unwrap().len(),
        3,
        "an invalid policy changes no rules"
    );

    // The API server restarts: the watches resume (or list again); nothing unchanged is
    // applied twice.
    cp.stop_apiserver();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cp.start_apiserver().await;
    let client = cp.admin().await;
    let api: Api<KubeArmorPolicy> = Api::namespaced(client.clone(), "default");
    // A change made after the restart is followed.
    api.delete("no-shadow", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        follower
            .enforced_at_least(4, "the delete after the restart")
            .await,
        vec![0, 1, 2, 0]
    );
    assert!(
        follower
            .watch_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the restart was seen by the watches (else this test proves nothing)"
    );
}
