//! What a node's agent reports it does not enforce, per policy (`Runtime::policy_gaps`, which
//! the Kubernetes agent computes once a second for the policies' `status.nodes`): its cost
//! with 1,000 policies selecting 110 containers (the per-node pod maximum), when every rule is
//! enforced (the common case) and when none is (an audit-only node, the worst case), against
//! `Runtime::readiness` (what the agent already computes once a second) in the same run.
//!
//! `cargo bench -p armor-benches --bench coverage`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "bench code: a failure is a bench failure"
)]

use std::sync::Arc;

use armor_core::{CompiledPolicy, PolicySet};
use armor_runtime::containerd::ContainerInfo;
use armor_runtime::{Runtime, RuntimeConfig};
use armor_testing::recording::RecordingEnforcer;
use criterion::{Criterion, criterion_group, criterion_main};

/// 1,000 policies, each blocking one file for `app: web` in `default`.
fn policies() -> CompiledPolicy {
    let yaml: String = (0..1_000)
        .map(|i| {
            format!(
                "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: \
                 {{name: p-{i}, namespace: default}}\nspec:\n  selector: {{matchLabels: \
                 {{app: web}}}}\n  file:\n    matchPaths: [{{path: /data/{i}}}]\n  action: \
                 Block\n---\n"
            )
        })
        .collect();
    CompiledPolicy::build(&PolicySet::parse(&yaml, "bench.yaml").unwrap()).unwrap()
}

/// A runtime with the policies and 110 `app: web` containers; `enforced`: one enforcer holds
/// every rule, else none (audit-only).
fn runtime(policy: &Arc<CompiledPolicy>, enforced: bool) -> Runtime {
    let enforcers: Vec<Arc<dyn armor_core::enforcer::Enforcer>> = if enforced {
        vec![Arc::new(RecordingEnforcer::new())]
    } else {
        Vec::new()
    };
    let mut rt = Runtime::new(RuntimeConfig::default(), policy.clone(), enforcers, None);
    for n in 0..110u32 {
        let mut info = ContainerInfo::default();
        info.id = format!("c{n:06}");
        info.containerd_namespace = "k8s.io".into();
        info.pid = Some(1_000 + n);
        for (k, v) in [
            ("io.kubernetes.pod.name", format!("web-{n}")),
            ("io.kubernetes.pod.namespace", "default".to_string()),
            ("io.kubernetes.container.name", "web".to_string()),
            ("app", "web".to_string()),
        ] {
            info.labels.insert(k.to_string(), v);
        }
        rt.add_container_with_cgroup(&info, 10_000 + u64::from(n));
    }
    rt
}

fn coverage(c: &mut Criterion) {
    let policy = Arc::new(policies());
    let mut g = c.benchmark_group("policy_gaps, 1,000 policies x 110 containers");
    for (what, enforced) in [("all enforced", true), ("audit-only", false)] {
        let rt = runtime(&policy, enforced);
        let gaps = rt.policy_gaps();
        assert_eq!(gaps.len(), if enforced { 0 } else { 1_000 }, "{what}");
        g.bench_function(format!("readiness (baseline), {what}"), |b| {
            b.iter(|| rt.readiness());
        });
        g.bench_function(format!("policy_gaps, {what}"), |b| {
            b.iter(|| rt.policy_gaps())
        });
    }
    g.finish();
}

criterion_group!(benches, coverage);
criterion_main!(benches);
