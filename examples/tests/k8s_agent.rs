#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! `armor-k8s-agent` against a real API server, under exactly the RBAC of deploy/ (its service
//! account's token): it starts from the cluster's policies, settings, node labels and pods;
//! writes the status; a host policy selected by the node's labels alerts with the node's name
//! and the cluster name of the ConfigMap; a bad ConfigMap is refused naming its field and a
//! good one is taken without a restart; an API server restart makes it stale, then fresh. Its
//! enforcer is in its log only under deploy/'s RBAC, and on its node with
//! deploy/optional/node-enforcer.yaml.

#[path = "../../armor-k8s/tests/support/mod.rs"]
mod support;

mod common;

use common::{KillOnDrop, alerts};

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use armor_k8s::crd::KubeArmorHostPolicy;
use armor_k8s::policies::APPLIED;
use armor_testing::lines::Lines;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};

async fn create<K>(api: &Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_agent_follows_the_cluster_under_the_rbac_of_deploy() {
    if !armor_testing::is_root() {
        println!("skipped: needs root (the agent's event source)");
        return;
    }
    let Some((mut cp, admin)) = support::with_deploy_rbac("k8s-agent").await else {
        return;
    };

    let dir = cp.dir.join("agent");
    std::fs::create_dir_all(&dir).unwrap();
    let marker: PathBuf = dir.join("armor-k8s-marker");
    std::fs::copy("/bin/true", &marker).unwrap();
    let nodes: Api<Node> = Api::all(admin.clone());
    create(
        &nodes,
        serde_json::json!({"metadata": {"name": "node-a", "labels": {"role": "edge"}}}),
    )
    .await;
    let configs: Api<ConfigMap> = Api::namespaced(admin.clone(), "armor");
    create(
        &configs,
        serde_json::json!({"metadata": {"name": "armor-config"}, "data": {"cluster": "test-cluster"}}),
    )
    .await;
    let hosts: Api<KubeArmorHostPolicy> = Api::all(admin.clone());
    create(
        &hosts,
        serde_json::json!({"apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorHostPolicy",
            "metadata": {"name": "block-marker"},
            "spec": {"nodeSelector": {"matchLabels": {"role": "edge"}},
                "process": {"matchPaths": [{"path": marker.display().to_string()}]},
                "action": "Block"}}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    create(
        &pods,
        serde_json::json!({"metadata": {"name": "web-1", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-a", "containers": [{"name": "web", "image": "nginx"}]}}),
    )
    .await;

    let out = dir.join("out.jsonl");
    let kubeconfig = cp.kubeconfig("agent", support::AGENT_TOKEN);
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_armor-k8s-agent"))
            // The DaemonSet's ring size (deploy/workload.yaml).
            .args([
                "--event-ring-mib=2",
                "--node",
                "node-a",
                "--enforcer",
                "none",
            ])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--output")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = start();
    let pid = child.id();
    let _kill = KillOnDrop(pid);
    let mut lines = Lines::new(child.stderr.take().unwrap());
    let listed = lines.until("cluster listed in");
    assert!(listed.ends_with(": 1 rules, 1 pod identities"), "{listed}");
    lines.until("ready:");
    support::status_of(&hosts, "block-marker", APPLIED).await;
    // Audit-only: the node's own entry in the policy's status says that it only monitors the
    // host for this policy, and why (the fail-closed report).
    let entry = node_entry(&hosts, "block-marker", "node-a").await;
    assert_eq!(
        entry,
        "monitored only, nothing denied: no kernel enforcer (audit-only) on this node"
    );
    // deploy/'s RBAC may not patch nodes: the enforcer is in the log only.
    let not_published = "enforcer not published on node node-a (";
    if !lines.seen.contains(not_published) {
        lines.until(not_published);
    }
    let labels = nodes.get("node-a").await.unwrap().metadata.labels.unwrap();
    assert!(!labels.contains_key("armor.dev/enforcer"), "{labels:?}");

    // The node's label selects the host policy: an alert with the node and the cluster name.
    assert!(Command::new(&marker).status().unwrap().success());
    let found = alerts(&out, "block-marker", 1);
    assert!(!found.is_empty(), "no alert:\n{}", lines.seen);
    assert_eq!(found[0]["HostName"], "node-a", "{}", found[0]);
    assert_eq!(found[0]["ClusterName"], "test-cluster", "{}", found[0]);
    assert_eq!(found[0]["Type"], "MatchedHostPolicy", "{}", found[0]);

    // A bad ConfigMap: refused with its field, the previous settings stay.
    let patch = |data: serde_json::Value| Patch::Merge(serde_json::json!({ "data": data }));
    configs
        .patch(
            "armor-config",
            &PatchParams::default(),
            &patch(serde_json::json!({"defaultFilePosture": "blok"})),
        )
        .await
        .unwrap();
    let refused = lines.until("not taken, the previous settings stay");
    assert!(
        refused.contains("ConfigMap armor/armor-config: data.defaultFilePosture: `blok`"),
        "{refused}"
    );
    // A good one: taken without a restart.
    configs
        .patch(
            "armor-config",
            &PatchParams::default(),
            &patch(serde_json::json!({"defaultFilePosture": "audit", "cluster": "renamed"})),
        )
        .await
        .unwrap();
    lines.until("configuration updated");
    assert!(Command::new(&marker).status().unwrap().success());
    let found = alerts(&out, "block-marker", 2);
    assert_eq!(
        found.last().map(|r| r["ClusterName"].clone()),
        Some("renamed".into()),
        "{found:?}"
    );

    // The API server goes away: stale, what is in force stays; back: fresh.
    cp.stop_apiserver();
    lines.until("readiness: stale (");
    cp.start_apiserver().await;
    let back = Instant::now();
    // The watches retry with kube-runtime's backoff (up to 30 s between attempts), and right
    // after a restart the API server refuses (403) until its RBAC caches are filled.
    lines.timeout = Duration::from_secs(180);
    lines.until_line("a fresh readiness line", |l| {
        l.contains("armor-k8s-agent: readiness: ") && !l.contains("stale")
    });
    println!(
        "fresh {} ms after the API server was back",
        back.elapsed().as_millis()
    );

    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    lines.until("armor-k8s-agent: stopped");
    assert!(child.wait().unwrap().success(), "{}", lines.seen);
    println!("{}", lines.seen);

    // With the optional RBAC, the agent labels its node with its enforcer (audit-only here).
    support::apply_file(
        &admin,
        &support::repo().join("deploy/optional/node-enforcer.yaml"),
    )
    .await;
    let mut child = start();
    let mut guard = KillOnDrop(child.id());
    let mut lines = Lines::new(child.stderr.take().unwrap());
    // RBAC changes reach the API server's authorizer within moments; the agent gives up on a
    // refusal, so a refusal here is retried by starting it again, for 30 s at most.
    let published = "enforcer published on node node-a: armor.dev/enforcer=none";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = lines.until_line("the enforcer published or refused", |l| {
            l.contains(published) || l.contains(not_published)
        });
        if answer.contains(published) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused 30 s after the RBAC was applied:\n{}",
            lines.seen
        );
        let _ = child.kill();
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(500));
        child = start();
        guard.0 = child.id();
        lines = Lines::new(child.stderr.take().unwrap());
    }
    let node = nodes.get("node-a").await.unwrap();
    let labels = node.metadata.labels.unwrap();
    assert_eq!(labels["armor.dev/enforcer"], "none", "{labels:?}");
    assert_eq!(
        labels["role"], "edge",
        "the node's own labels stay: {labels:?}"
    );
    let summary = &node.metadata.annotations.unwrap()["armor.dev/enforcer-summary"];
    assert!(summary.contains("audit-only"), "{summary}");
    let _ = child.kill();
    let _ = child.wait();
}

/// `node`'s entry in the status of host policy `name`, once written (30 s at most).
async fn node_entry(api: &Api<KubeArmorHostPolicy>, name: &str, node: &str) -> String {
    for _ in 0..300 {
        let p = api.get(name).await.unwrap();
        if let Some(entry) = p.status.and_then(|s| s.nodes.get(node).cloned()) {
            return entry;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} has no entry of {node} in its status");
}
