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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use armor_k8s::crd::{KubeArmorPolicy, KubeArmorPolicySpec};
use armor_k8s::policies::{APPLIED, PolicyIndex};
use armor_k8s::watch::follow_policies;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_works_with_exactly_the_cluster_role_of_deploy() {
    let Some(cp) = support::ControlPlane::start("rbac").await else {
        return;
    };
    let admin = cp.admin().await;
    support::apply_file(&admin, &support::repo().join("deploy/crds.yaml")).await;
    support::apply_file(&admin, &support::repo().join("deploy/rbac.yaml")).await;
    // The CRDs serve once established; a first create may race it.
    let admin_api: Api<KubeArmorPolicy> = Api::namespaced(admin.clone(), "default");
    let mut spec = KubeArmorPolicySpec::default();
    spec.spec = serde_json::from_value(serde_json::json!({
        "selector": {"matchLabels": {"app": "web"}},
        "file": {"matchPaths": [{"path": "/etc/shadow"}]}, "action": "Block"}))
    .unwrap();
    let mut p = KubeArmorPolicy::new("no-shadow", spec);
    p.metadata.namespace = Some("default".into());
    let mut created = false;
    for _ in 0..100 {
        if admin_api.create(&PostParams::default(), &p).await.is_ok() {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(created, "the policy could not be created");

    let agent = cp.client_with(support::AGENT_TOKEN).await;
    // What the agent does, as the agent.
    let enforced = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (e, r) = (enforced.clone(), errors.clone());
    let follower = agent.clone();
    let task = tokio::spawn(async move {
        let mut index = PolicyIndex::new();
        follow_policies(
            follower,
            &mut index,
            move |p| e.lock().unwrap().push(p.rules().len()),
            move |report| r.lock().unwrap().push(format!("{report:?}")),
        )
        .await;
    });
    support::status_of(&admin_api, "no-shadow", APPLIED).await;
    assert_eq!(*enforced.lock().unwrap(), vec![1]);
    assert!(
        errors.lock().unwrap().is_empty(),
        "{:?}",
        errors.lock().unwrap()
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
    task.abort();
}
