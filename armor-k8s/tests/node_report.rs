#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! `follow_node_reporting` against a real API server: what each node's agent reports it does
//! not enforce becomes that node's entry in the policies' statuses, under deploy/'s RBAC.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use armor_core::CompiledPolicy;
use armor_k8s::policies::{NodeReport, PolicyRef};
use armor_k8s::watch::{NodeUpdate, NodeWatch, follow_node_reporting};
use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};

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
