#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! `follow_node` against a real API server: several agents on one cluster agree on every
//! policy's status and leave the API server alone once they did (no write at rest); a node's
//! agent hears of its pods only; a namespace annotation changes its settings; what each node's
//! agent reports it does not enforce becomes that node's entry in the policies' statuses.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use armor_core::CompiledPolicy;
use armor_k8s::pods::PodEffect;
use armor_k8s::policies::{NodeReport, PolicyRef};
use armor_k8s::watch::{NodeUpdate, NodeWatch, follow_node, follow_node_reporting};
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

/// The node entries of policy `name`'s status, once `done` holds for them (30 s at most).
async fn nodes_of(
    api: &Api<DynamicObject>,
    name: &str,
    done: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let mut last = BTreeMap::new();
    for _ in 0..300 {
        let p = api.get(name).await.unwrap();
        last = p
            .data
            .pointer("/status/nodes")
            .and_then(|n| serde_json::from_value(n.clone()).ok())
            .unwrap_or_default();
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the node entries of {name} are still {last:?}");
}

/// A node's agent whose policy reports the test makes: the sets it is handed are kept.
struct Reporting {
    sets: Arc<Mutex<Vec<Arc<CompiledPolicy>>>>,
    reports: tokio::sync::mpsc::UnboundedSender<NodeReport>,
    task: tokio::task::JoinHandle<()>,
}

fn start_reporting(client: Client, node: &str) -> Reporting {
    let sets: Arc<Mutex<Vec<Arc<CompiledPolicy>>>> = Arc::default();
    let (reports, rx) = tokio::sync::mpsc::unbounded_channel();
    let kept = sets.clone();
    let watch = NodeWatch::new(node);
    let task = tokio::spawn(async move {
        let rx =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
        follow_node_reporting(client, &watch, rx, |u| {
            if let NodeUpdate::Policies { policy, .. } = u {
                kept.lock().unwrap().push(policy);
            }
        })
        .await;
    });
    Reporting {
        sets,
        reports,
        task,
    }
}

impl Reporting {
    /// Waits for the `n`th set handed to the agent.
    async fn set(&self, n: usize) -> Arc<CompiledPolicy> {
        for _ in 0..300 {
            if let Some(p) = self.sets.lock().unwrap().get(n - 1) {
                return p.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no policy set number {n}");
    }

    fn report(
        &self,
        answered: Option<(Arc<CompiledPolicy>, Result<(), String>)>,
        gaps: &[(&str, &str)],
    ) {
        let gaps = gaps
            .iter()
            .map(|(name, line)| {
                (
                    PolicyRef::new(
                        armor_core::model::PolicyKind::KubeArmorPolicy,
                        Some("default"),
                        name,
                    ),
                    vec![(*line).to_string()],
                )
            })
            .collect();
        self.reports.send(NodeReport::new(answered, gaps)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_writes_what_it_does_not_enforce_in_its_own_entry_of_the_status() {
    let Some((cp, admin)) = support::with_deploy_rbac("node-report").await else {
        return;
    };
    let policies = support::policy_api(&admin, "KubeArmorPolicy", Some("default"));
    let policy = |name: &str, path: &str| -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorPolicy",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "file": {"matchPaths": [{"path": path}]}, "action": "Block"}
        }))
        .unwrap()
    };
    for (name, path) in [("p-1", "/data/1"), ("p-2", "/data/2")] {
        policies
            .create(&PostParams::default(), &policy(name, path))
            .await
            .unwrap();
    }
    // Under deploy/'s RBAC: the entries are in the status subresource it may patch.
    let agent_client = cp.client_with(support::AGENT_TOKEN).await;
    let a = start_reporting(agent_client.clone(), "node-a");
    let b = start_reporting(agent_client, "node-b");
    let (first_a, first_b) = (a.set(1).await, b.set(1).await);
    let gap =
        "AppArmor does not enforce file.matchPaths[0] (Block): too large (on default/web-1/web)";
    a.report(Some((first_a, Ok(()))), &[("p-1", gap)]);
    b.report(
        Some((first_b, Ok(()))),
        &[(
            "p-1",
            "monitored only, nothing denied: no kernel enforcer (audit-only) (on host)",
        )],
    );
    let nodes = nodes_of(&policies, "p-1", |n| n.len() == 2).await;
    assert_eq!(nodes["node-a"], gap);
    assert!(nodes["node-b"].starts_with("monitored only"), "{nodes:?}");
    // The outcome every node agrees on is there too, and p-2 has nothing to say.
    let typed: Api<armor_k8s::crd::KubeArmorPolicy> = Api::namespaced(admin.clone(), "default");
    support::status_of(&typed, "p-1", armor_k8s::policies::APPLIED).await;
    assert!(nodes_of(&policies, "p-2", |_| true).await.is_empty());

    // p-2 changes and node-a refuses the new set: its entry on p-2 says so.
    policies
        .replace("p-2", &PostParams::default(), &{
            let mut p = policy("p-2", "/data/2b");
            p.metadata.resource_version =
                policies.get("p-2").await.unwrap().metadata.resource_version;
            p
        })
        .await
        .unwrap();
    let second = a.set(2).await;
    a.report(
        Some((second.clone(), Err("the rule map is full".into()))),
        &[("p-1", gap)],
    );
    let nodes = nodes_of(&policies, "p-2", |n| n.contains_key("node-a")).await;
    assert!(
        nodes["node-a"].contains("refused") && nodes["node-a"].ends_with("the rule map is full"),
        "{nodes:?}"
    );

    // p-2 changes again; node-a takes that set and now enforces p-1 in full: its entries
    // go, node-b's stays.
    policies
        .replace("p-2", &PostParams::default(), &{
            let mut p = policy("p-2", "/data/2c");
            p.metadata.resource_version =
                policies.get("p-2").await.unwrap().metadata.resource_version;
            p
        })
        .await
        .unwrap();
    let third = a.set(3).await;
    assert!(!Arc::ptr_eq(&second, &third));
    a.report(Some((third, Ok(()))), &[]);
    nodes_of(&policies, "p-2", BTreeMap::is_empty).await;
    let nodes = nodes_of(&policies, "p-1", |n| !n.contains_key("node-a")).await;
    assert_eq!(nodes.keys().collect::<Vec<_>>(), ["node-b"]);
    for r in [a, b] {
        r.task.abort();
    }
}
