//! Enforcer alerts with the workload's identity, and the identity fields of every record.

use super::*;

/// Sets the workload identity fields of `r` for a container or service (the host has none): a
/// service's `ContainerID` is its unit and its `ContainerImage` is empty.
pub(super) fn identify(t: &Tracked, r: &mut Telemetry) {
    let Workload::Container(c) = &t.workload else {
        return;
    };
    let (id, image) = match (&t.info, &t.service) {
        (Some(info), _) => (info.id.clone(), info.image.clone()),
        (None, Some(s)) => (s.unit.clone(), String::new()),
        (None, None) => return,
    };
    r.namespace_name = Some(c.namespace.clone());
    r.pod_name = c.pod.clone();
    r.labels = Some(labels_text(c));
    r.container_id = Some(id);
    r.container_name = Some(c.name.clone());
    r.container_image = Some(image);
}

/// KubeArmor's `Labels`: `k=v` pairs joined by commas, in key order.
pub(super) fn labels_text(c: &Container) -> String {
    c.labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Runtime {
    /// The alerts the kernel enforcer raised since the last call, as KubeArmor Alerts with the
    /// workload's identity ([`Runtime::enforcer_alert`]). Alerts dropped because they were not
    /// read fast enough are reported through [`Runtime::take_problems`].
    pub fn enforcer_records(&mut self, tree: &ProcessTree) -> Vec<Telemetry> {
        let Some(en) = &self.enforcement else {
            return Vec::new();
        };
        let alerts = en.take_alerts();
        let dropped = en.dropped_alerts();
        if dropped > self.dropped_alerts {
            self.problems.push(format!(
                "{} enforcer alerts dropped (not read in time; total {dropped})",
                dropped - self.dropped_alerts
            ));
            self.dropped_alerts = dropped;
        }
        alerts
            .iter()
            .map(|a| self.enforcer_alert(a, tree))
            .collect()
    }
}

impl Runtime {
    /// An enforcer's alert with the workload's identity added.
    pub fn enforcer_alert(&self, a: &EnforcerAlert, tree: &ProcessTree) -> Telemetry {
        // By cgroup id; an enforcer that names workloads only (AppArmor profiles loaded ahead of
        // the task) by name.
        let t = a
            .workload
            .as_ref()
            .and_then(|k| match k.cgroup_id {
                Some(id) => self.containers.get(&id),
                None => self.containers.values().find(|t| t.key.name == k.name),
            })
            .unwrap_or(&self.host);
        let mut r = Telemetry::default();
        let (secs, updated) = format::now();
        r.timestamp = Some(secs);
        r.updated_time = Some(updated);
        r.cluster_name = Some(self.config.cluster_name.clone());
        r.host_name = Some(self.config.host_name.clone());
        identify(t, &mut r);
        r.host_pid = Some(i64::from(a.pid));
        r.uid = Some(i64::from(a.uid));
        r.process_name = tree.get(a.pid).map(|p| p.exe.clone());
        r.source.clone_from(&a.source);
        let rule = a
            .rule
            .and_then(|i| self.policy.rules().get(usize::try_from(i).ok()?));
        r.policy_name =
            Some(rule.map_or_else(|| "DefaultPosture".to_string(), |r| r.policy.name.clone()));
        r.severity = Some(
            rule.and_then(|r| r.severity)
                .map(|s| s.to_string())
                .unwrap_or_default(),
        );
        r.kind = Some(RecordType::alert(t.workload.is_host()).to_string());
        r.operation = Some(a.operation.to_string());
        r.resource = Some(a.resource.clone());
        r.action = Some(a.action.to_string());
        r.result = Some(a.result().to_string());
        r.enforcer = Some(a.enforcer.to_string());
        r
    }
}
