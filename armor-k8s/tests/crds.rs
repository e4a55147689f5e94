#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The CRDs: generated from armor-core's types, committed under deploy/, and accepted by a real
//! API server together with the policies KubeArmor's CRDs accept.

mod support;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};

#[test]
fn deploy_holds_exactly_the_generated_crds() {
    let generated = armor_k8s::crd::crds_yaml().unwrap();
    let committed =
        std::fs::read_to_string(support::repo().join("deploy/crds.yaml")).unwrap_or_default();
    if generated != committed {
        let path = std::env::temp_dir().join("armor-crds.yaml");
        std::fs::write(&path, &generated).unwrap();
        panic!(
            "deploy/crds.yaml differs from the generated CRDs (written to {}); regenerate it with \
             `cargo run -p armor-examples --bin armorctl -- crd > deploy/crds.yaml`",
            path.display()
        );
    }
}

#[test]
fn the_generated_yaml_reads_back_as_the_crds() {
    let docs =
        armor_core::crd::documents(&armor_k8s::crd::crds_yaml().unwrap(), "crds.yaml").unwrap();
    let back: Vec<CustomResourceDefinition> = docs
        .into_iter()
        .map(|d| serde_json::from_value(d).unwrap())
        .collect();
    assert_eq!(back, armor_k8s::crd::crds());
}

/// Creates the object `doc` (apiVersion, kind, metadata, spec) through the API; the error text
/// when the API server refuses it.
async fn create(client: &Client, doc: &serde_json::Value) -> Result<(), String> {
    let kind = doc["kind"].as_str().unwrap();
    let gvk = GroupVersionKind::gvk("security.kubearmor.com", "v1", kind);
    let plural = match kind {
        "KubeArmorPolicy" => "kubearmorpolicies",
        "KubeArmorClusterPolicy" => "kubearmorclusterpolicies",
        "KubeArmorHostPolicy" => "kubearmorhostpolicies",
        other => panic!("not a policy kind: {other}"),
    };
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
    let api: Api<DynamicObject> = match obj.metadata.namespace.as_deref() {
        Some(ns) if kind == "KubeArmorPolicy" => Api::namespaced_with(client.clone(), ns, &ar),
        None if kind == "KubeArmorPolicy" => Api::namespaced_with(client.clone(), "default", &ar),
        _ => Api::all_with(client.clone(), &ar),
    };
    api.create(&PostParams::default(), &obj)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn ensure_namespace(client: &Client, ns: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    let api: Api<Namespace> = Api::all(client.clone());
    let mut n = Namespace::default();
    n.metadata.name = Some(ns.to_string());
    let _ = api.create(&PostParams::default(), &n).await;
}

#[tokio::test]
async fn the_api_server_accepts_the_crds_the_examples_and_the_corpus_policies() {
    let Some(cp) = support::ControlPlane::start("crds").await else {
        return;
    };
    let client = cp.admin().await;
    support::install_crds(&client).await;

    // Every policy of the examples and of the corpus, by name (made unique per source).
    let mut docs: Vec<(String, serde_json::Value)> = Vec::new();
    for entry in std::fs::read_dir(support::repo().join("examples/policies")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for d in armor_core::crd::documents(&text, &path.display().to_string()).unwrap() {
            docs.push((path.display().to_string(), d));
        }
    }
    let cases = armor_testing::corpus::load_dir(&armor_testing::corpus::corpus_dir()).unwrap();
    for (i, case) in cases.iter().enumerate() {
        for (j, mut d) in armor_core::crd::documents(&case.policies, &case.name)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            // One object per case and document: names repeat across cases.
            let name = format!("c{i}-{j}");
            d["metadata"]["name"] = serde_json::Value::String(name);
            docs.push((format!("corpus case {}", case.name), d));
        }
    }
    // The corpus also holds policies armor's file loader accepts and KubeArmor's CRDs refuse
    // (an action or capability not spelled as the CRD's enum and pattern spell it): the API
    // server must refuse exactly those, for exactly that field.
    let expect_refused: Vec<(&str, &str)> = vec![
        (
            "corpus case cap-uppercase-name",
            "spec.capabilities.matchCapabilities[0].capability",
        ),
        (
            "corpus case inherit-policy-action-lowercase-block",
            "spec.action",
        ),
        (
            "corpus case inherit-policy-action-uppercase-audit",
            "spec.action",
        ),
        (
            "corpus case inherit-policy-action-lowercase-allow",
            "spec.action",
        ),
    ];
    let mut refused: Vec<(String, String)> = Vec::new();
    for (from, d) in &docs {
        if let Some(ns) = d["metadata"]["namespace"].as_str() {
            ensure_namespace(&client, ns).await;
        }
        if let Err(e) = create(&client, d).await {
            refused.push((from.clone(), e));
        }
    }
    let unexpected: Vec<String> = refused
        .iter()
        .filter(|(from, e)| {
            !expect_refused
                .iter()
                .any(|(f, field)| from == f && e.contains(&format!("{field}:")))
        })
        .map(|(from, e)| format!("{from}: {e}"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} of {} policies refused unexpectedly:\n{}",
        unexpected.len(),
        docs.len(),
        unexpected.join("\n")
    );
    let refused_from: Vec<&str> = refused.iter().map(|(f, _)| f.as_str()).collect();
    let expected_from: Vec<&str> = expect_refused.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        refused_from, expected_from,
        "the refusals KubeArmor's CRDs make"
    );
    // What the API server stored reads back as the typed resources.
    let stored = Api::<armor_k8s::crd::KubeArmorPolicy>::all(client.clone())
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .len()
        + Api::<armor_k8s::crd::KubeArmorClusterPolicy>::all(client.clone())
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len()
        + Api::<armor_k8s::crd::KubeArmorHostPolicy>::all(client.clone())
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len();
    assert_eq!(stored, docs.len() - refused.len());
    println!(
        "the API server accepted {} of {} policies and refused the {} its schema must refuse",
        docs.len() - refused.len(),
        docs.len(),
        refused.len()
    );
}

#[tokio::test]
async fn the_api_server_refuses_what_kubearmors_crds_refuse_naming_the_field() {
    let Some(cp) = support::ControlPlane::start("crd-refusals").await else {
        return;
    };
    let client = cp.admin().await;
    support::install_crds(&client).await;
    let cases = [
        (
            "kind: KubeArmorHostPolicy\nmetadata: {name: dir-without-slash}\nspec:\n  nodeSelector: {matchLabels: {a: b}}\n  process:\n    matchDirectories: [{dir: /usr/bin}]\n",
            "spec.process.matchDirectories[0].dir",
        ),
        (
            "kind: KubeArmorHostPolicy\nmetadata: {name: protocol-without-source}\nspec:\n  nodeSelector: {matchLabels: {a: b}}\n  network:\n    matchProtocols: [{protocol: tcp}]\n",
            "spec.network.matchProtocols[0].fromSource",
        ),
        (
            "kind: KubeArmorHostPolicy\nmetadata: {name: no-node-selector}\nspec:\n  file:\n    matchPaths: [{path: /etc/shadow}]\n",
            "spec.nodeSelector",
        ),
        (
            "kind: KubeArmorPolicy\nmetadata: {name: severity-11, namespace: default}\nspec:\n  severity: 11\n  file:\n    matchPaths: [{path: /etc/shadow}]\n",
            "spec.severity",
        ),
        (
            "kind: KubeArmorPolicy\nmetadata: {name: path-ends-with-slash, namespace: default}\nspec:\n  file:\n    matchPaths: [{path: /etc/}]\n",
            "spec.file.matchPaths[0].path",
        ),
        (
            "kind: KubeArmorClusterPolicy\nmetadata: {name: unknown-key}\nspec:\n  selector:\n    matchExpressions: [{key: pod, operator: In, values: [x]}]\n  file:\n    matchPaths: [{path: /etc/shadow}]\n",
            "spec.selector.matchExpressions[0].key",
        ),
        (
            "kind: KubeArmorPolicy\nmetadata: {name: unknown-syscall, namespace: default}\nspec:\n  syscalls:\n    matchSyscalls: [{syscall: [not_a_syscall]}]\n",
            "spec.syscalls.matchSyscalls[0].syscall[0]",
        ),
    ];
    for (yaml, field) in cases {
        let mut doc = armor_core::crd::documents(yaml, "case.yaml")
            .unwrap()
            .remove(0);
        doc["apiVersion"] = serde_json::Value::String("security.kubearmor.com/v1".to_string());
        let e = create(&client, &doc).await.expect_err(yaml);
        assert!(
            e.contains(&format!("{field}:")) || e.contains(&format!("{field} ")),
            "{field}: {e}"
        );
    }
}
