#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! `follow_node` against a real API server: several agents on one cluster agree on every
//! policy's status and leave the API server alone once they did (no write at rest); a node's
//! agent hears of its pods only; a namespace annotation changes its settings.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use armor_k8s::pods::PodEffect;
use armor_k8s::watch::{NodeUpdate, NodeWatch, follow_node};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};

/// The API server's PATCH requests so far, by resource.
async fn writes(admin: &Client) -> BTreeMap<String, f64> {
    support::request_counts(admin)
        .await
        .into_iter()
        .filter(|(k, _)| k.starts_with("PATCH "))
        .collect()
}

type Seen = Arc<Mutex<Vec<String>>>;

fn start_agent(client: Client, node: &str) -> (Seen, tokio::task::JoinHandle<()>) {
    start_watch(client, NodeWatch::new(node))
}

fn start_watch(client: Client, watch: NodeWatch) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        follow_node(client, &watch, |u| {
            let line = match u {
                NodeUpdate::Policies { policy, .. } => format!("policies {}", policy.rules().len()),
                NodeUpdate::Pod(PodEffect::PodLabels(p)) => {
                    format!("pod {} {:?}", p.pod_uid, p.labels)
                }
                NodeUpdate::Pod(other) => format!("pod effect {other:?}"),
                NodeUpdate::Settings(s) => format!("settings {:?}", s.namespace_annotations),
                NodeUpdate::Synced => "synced".to_string(),
                other => format!("{other:?}"),
            };
            log.lock().unwrap().push(line);
        })
        .await;
    });
    (seen, task)
}

async fn wait_for(seen: &Seen, what: &str) {
    for _ in 0..300 {
        if seen.lock().unwrap().iter().any(|l| l.contains(what)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`{what}` not seen: {:?}", seen.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_agree_on_statuses_hear_their_own_pods_and_follow_annotations() {
    let Some((cp, admin)) = support::with_deploy_rbac("live-node").await else {
        return;
    };
    let policies = support::policy_api(&admin, "KubeArmorPolicy", Some("default"));
    for i in 0..20 {
        let p: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorPolicy",
            "metadata": {"name": format!("p-{i}"), "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "file": {"matchPaths": [{"path": format!("/data/{i}")}]}, "action": "Block"}
        }))
        .unwrap();
        policies.create(&PostParams::default(), &p).await.unwrap();
    }
    let cluster = support::policy_api(&admin, "KubeArmorClusterPolicy", None);
    for i in 0..20 {
        cluster
            .create(&PostParams::default(), &support::cluster_policy(i))
            .await
            .unwrap();
    }
    for node in ["node-a", "node-b"] {
        let n: Node =
            serde_json::from_value(serde_json::json!({"metadata": {"name": node}})).unwrap();
        Api::<Node>::all(admin.clone())
            .create(&PostParams::default(), &n)
            .await
            .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-b", "labels": {"app": "web"}},
        "spec": {"nodeName": "node-b", "containers": [{"name": "web", "image": "nginx"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let agent_client = cp.client_with(support::AGENT_TOKEN).await;
    let agents: Vec<_> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|n| start_agent(agent_client.clone(), n))
        .collect();
    for (seen, _) in &agents {
        wait_for(seen, "synced").await;
    }
    // Every status written once, then nothing more: the agents agree.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = writes(&admin).await;
    let status_writes: f64 = settled.values().sum();
    assert!(
        (40.0..=120.0).contains(&status_writes),
        "{status_writes} status writes for 40 policies and 3 agents: {settled:?}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rest = writes(&admin).await;
    assert_eq!(settled, rest, "writes at rest");

    // Only node-b's agent hears of node-b's pod.
    let heard = |i: usize| {
        agents[i]
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("pod ") && l.contains("\"app\": \"web\""))
    };
    assert!(!heard(0) && heard(1) && !heard(2));

    // A namespace annotation reaches every agent's settings.
    let ns = Patch::Merge(serde_json::json!({"metadata": {"annotations":
        {"kubearmor-file-posture": "block"}}}));
    Api::<Namespace>::all(admin.clone())
        .patch("default", &PatchParams::default(), &ns)
        .await
        .unwrap();
    for (seen, _) in &agents {
        wait_for(seen, "kubearmor-file-posture").await;
    }
    for (_, task) in agents {
        task.abort();
    }
}

/// Creates cluster policies `range` (a process rule each), 32 requests at a time.
async fn create_cluster_policies(admin: &Client, range: std::ops::Range<usize>) {
    use futures::StreamExt;
    let gvk =
        kube::core::GroupVersionKind::gvk("security.kubearmor.com", "v1", "KubeArmorClusterPolicy");
    let api: Api<DynamicObject> =
        Api::all_with(admin.clone(), &kube::api::ApiResource::from_gvk(&gvk));
    futures::stream::iter(range)
        .map(|i| {
            let api = api.clone();
            async move {
                let p: DynamicObject = serde_json::from_value(serde_json::json!({
                    "apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorClusterPolicy",
                    "metadata": {"name": format!("burst-{i}")},
                    "spec": {"selector": {"matchExpressions": [{"key": "namespace",
                            "operator": "NotIn", "values": ["kube-system"]}]},
                        "process": {"matchPaths": [{"path": format!("/opt/burst/{i}")}]},
                        "action": "Block"}
                }))
                .unwrap();
                api.create(&PostParams::default(), &p).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

/// Thousands of policies at once, before and after the start: the agent syncs (a compile at
/// the end of a burst on a quiet cluster is not left waiting for the next event), a burst is
/// compiled a few times rather than once per object, and every status is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_policies_is_compiled_in_a_few_steps_and_the_agent_syncs() {
    let Some((cp, admin)) = support::with_deploy_rbac("burst").await else {
        return;
    };
    create_cluster_policies(&admin, 0..1_500).await;
    let (seen, task) = start_agent(cp.client_with(support::AGENT_TOKEN).await, "node-a");
    wait_for(&seen, "synced").await;
    assert!(
        seen.lock().unwrap().contains(&"policies 1500".to_string()),
        "{:?}",
        seen.lock().unwrap()
    );
    create_cluster_policies(&admin, 1_500..3_000).await;
    wait_for(&seen, "policies 3000").await;
    let compiles = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("policies "))
        .count();
    // How many depends on how the events trickle in (101 on an idle machine); fewer than one
    // per object in any case.
    assert!(
        compiles < 1_500,
        "{compiles} compiles for 1,500 policies created at once"
    );
    // Every object gets its status (3,000 writes, 16 at a time, beside the watches).
    let gvk =
        kube::core::GroupVersionKind::gvk("security.kubearmor.com", "v1", "KubeArmorClusterPolicy");
    let api: Api<DynamicObject> =
        Api::all_with(admin.clone(), &kube::api::ApiResource::from_gvk(&gvk));
    let mut without = usize::MAX;
    for _ in 0..120 {
        let list = api.list(&Default::default()).await.unwrap();
        without = list
            .items
            .iter()
            .filter(|o| o.data["status"]["status"] != "Applied")
            .count();
        if without == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(without, 0, "policies without status Applied");
    println!("{compiles} compiles for 3,000 policies in two bursts");
    task.abort();
}

/// A watch the agent's RBAC refuses (the settings in a namespace its Role does not cover):
/// the agent is stale, stays so (the probe of that resource is refused too), and never
/// reports itself synced, so an agent binary would not start on a partial view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_watch_keeps_the_agent_stale_and_unsynced() {
    let Some((cp, _admin)) = support::with_deploy_rbac("refused").await else {
        return;
    };
    let client = cp.client_with(support::AGENT_TOKEN).await;
    let (seen, task) = start_watch(client, NodeWatch::new("node-a").config("default", "other"));
    wait_for(&seen, "Stale(\"settings watch").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let lines = seen.lock().unwrap().clone();
    assert!(
        !lines.iter().any(|l| l == "synced" || l == "Fresh"),
        "{lines:?}"
    );
    task.abort();
}
