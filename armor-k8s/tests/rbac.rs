#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The agent works under exactly the RBAC of deploy/: its service account follows the policies
//! and writes their status, and is refused one verb more.

mod support;

use armor_k8s::crd::{KubeArmorPolicy, KubeArmorPolicySpec};
use armor_k8s::policies::APPLIED;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_works_with_exactly_the_cluster_role_of_deploy() {
    let Some((cp, admin)) = support::with_deploy_rbac("rbac").await else {
        return;
    };
    let admin_api: Api<KubeArmorPolicy> = Api::namespaced(admin.clone(), "default");
    let mut spec = KubeArmorPolicySpec::default();
    spec.spec = serde_json::from_value(serde_json::json!({
        "selector": {"matchLabels": {"app": "web"}},
        "file": {"matchPaths": [{"path": "/etc/shadow"}]}, "action": "Block"}))
    .unwrap();
    let mut p = KubeArmorPolicy::new("no-shadow", spec);
    p.metadata.namespace = Some("default".into());
    admin_api.create(&PostParams::default(), &p).await.unwrap();

    let agent = cp.client_with(support::AGENT_TOKEN).await;
    // What the agent does, as the agent.
    let follower = support::Follower::start(agent.clone());
    support::status_of(&admin_api, "no-shadow", APPLIED).await;
    assert_eq!(*follower.enforced.lock().unwrap(), vec![1]);
    // Watch errors while the new role binding reaches the authorizer are retried; a status
    // the role does not let it write would be a `Status` report.
    let reports = follower.reports.lock().unwrap().clone();
    assert!(
        !reports.iter().any(|r| r.starts_with("Status")),
        "{reports:?}"
    );
    // The rest of what it reads.
    Api::<Pod>::all(agent.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(agent.clone(), "armor")
        .get_opt("armor-config")
        .await
        .unwrap();

    // One verb more is refused: writing a policy's spec, creating one, reading secrets or
    // another ConfigMap.
    let agent_api: Api<KubeArmorPolicy> = Api::namespaced(agent.clone(), "default");
    let forbidden = |r: Result<(), kube::Error>, what: &str| match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403, got {other:?}"),
    };
    forbidden(
        agent_api
            .patch(
                "no-shadow",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"action": "Audit"}})),
            )
            .await
            .map(drop),
        "patch a policy's spec",
    );
    forbidden(
        agent_api.create(&PostParams::default(), &p).await.map(drop),
        "create a policy",
    );
    forbidden(
        Api::<Secret>::all(agent.clone())
            .list(&ListParams::default())
            .await
            .map(drop),
        "list secrets",
    );
    forbidden(
        Api::<ConfigMap>::namespaced(agent.clone(), "armor")
            .get("other")
            .await
            .map(drop),
        "read another ConfigMap",
    );
}
