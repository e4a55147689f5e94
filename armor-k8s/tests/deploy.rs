#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! `kubectl apply -f deploy/` against a real API server: every file, in the order kubectl takes
//! them (lexical), is accepted; the DaemonSet is not privileged, adds only named capabilities
//! and mounts the host read-only except where it must write; the settings ConfigMap holds only
//! valid armor settings.

mod support;

use std::collections::BTreeMap;

use armor_core::settings::Settings;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::Api;

/// The host paths the agent writes to: securityfs (AppArmor loads), the hook's socket
/// directory, the AppArmor profiles.
const WRITABLE: [&str; 4] = [
    "/sys/fs/bpf",
    "/sys/kernel/security",
    "/run/armor",
    "/var/lib/armor/apparmor",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_applies_in_kubectl_order_and_the_daemonset_is_least_privileged() {
    let Some(cp) = support::ControlPlane::start("deploy").await else {
        return;
    };
    let admin = cp.admin().await;
    let mut files: Vec<_> = std::fs::read_dir(support::repo().join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for f in &files {
        support::apply_file(&admin, f).await;
        if f.ends_with("crds.yaml") {
            support::wait_crds_established(&admin).await;
        }
    }

    let ds: DaemonSet = Api::namespaced(admin.clone(), "armor")
        .get("armor-agent")
        .await
        .unwrap();
    let pod = ds.spec.template.spec.unwrap();
    let sa = pod.service_account_name.clone().unwrap();
    let _: ServiceAccount = Api::namespaced(admin.clone(), "armor")
        .get(&sa)
        .await
        .unwrap();
    assert_eq!(pod.host_pid, Some(true));
    assert_ne!(pod.host_network, Some(true));
    let [agent] = pod.containers.as_slice() else {
        panic!("one container expected");
    };
    let sc = agent.security_context.clone().unwrap();
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.drop.unwrap(), ["ALL"]);
    let added = caps.add.unwrap();
    assert!(
        !added.iter().any(|c| c == "SYS_ADMIN" || c == "ALL"),
        "{added:?}"
    );
    assert_eq!(
        added,
        ["BPF", "PERFMON", "SYS_PTRACE", "MAC_ADMIN", "SYS_RESOURCE"]
    );
    // Every capability added is justified in a comment above it.
    let text = std::fs::read_to_string(support::repo().join("deploy/workload.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for cap in &added {
        let at = lines
            .iter()
            .position(|l| l.trim() == format!("- {cap}"))
            .unwrap();
        assert!(
            lines[at - 1].trim_start().starts_with('#'),
            "{cap}: no reason"
        );
    }
    let volumes: BTreeMap<String, String> = pod
        .volumes
        .unwrap()
        .into_iter()
        .map(|v| (v.name, v.host_path.unwrap().path))
        .collect();
    for m in agent.volume_mounts.clone().unwrap() {
        let host = &volumes[&m.name];
        let writable = WRITABLE.contains(&host.as_str());
        assert_eq!(
            m.read_only.unwrap_or(false),
            !writable,
            "{host} mounted {}",
            if writable { "read-only" } else { "read-write" }
        );
    }
    let env = agent.env.clone().unwrap();
    let node = env.iter().find(|e| e.name == "NODE_NAME").unwrap();
    let field = node.value_from.clone().unwrap().field_ref.unwrap();
    assert_eq!(field.field_path, "spec.nodeName");

    // The probes ask the agent's own metrics address (loopback in the pod) with the agent's
    // binary: the same address as the agent's flag, /healthz for liveness, /readyz for
    // readiness; the gRPC feed and the metrics listen on loopback.
    let args = agent.args.clone().unwrap();
    let metrics = args
        .iter()
        .find(|a| a.starts_with("--metrics="))
        .unwrap()
        .clone();
    assert_eq!(metrics, "--metrics=127.0.0.1:9090");
    assert!(
        args.iter().any(|a| a == "--grpc=127.0.0.1:32767"),
        "{args:?}"
    );
    for (probe, path) in [
        (agent.liveness_probe.clone(), "/healthz"),
        (agent.readiness_probe.clone(), "/readyz"),
    ] {
        let command = probe.unwrap().exec.unwrap().command.unwrap();
        assert_eq!(
            command,
            [
                "/usr/local/bin/armor-k8s-agent".to_string(),
                metrics.clone(),
                format!("--probe={path}")
            ]
        );
    }

    let cm: ConfigMap = Api::namespaced(admin.clone(), "armor")
        .get("armor-config")
        .await
        .unwrap();
    let (settings, warnings) =
        Settings::from_data(&cm.data.unwrap(), "ConfigMap armor/armor-config").unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut defaults = Settings::default();
    defaults.cluster_name = Some("default".to_string());
    assert_eq!(
        settings, defaults,
        "deploy's settings are the defaults, written out"
    );
}
