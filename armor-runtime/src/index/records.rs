//! Records: kernel events decided with their workload's rules (logs, the monitor's alerts,
//! alert throttling) and enforcer alerts, each with the workload's identity.

use std::time::Duration;

use armor_core::telemetry::{ACTION_AUDIT_BLOCK, RecordType, format};
use armor_core::{Category, Container, Event, Verdict};

use super::*;

/// The `Enforcer` field of alerts matched in user space.
pub const MONITOR: &str = "eBPF Monitor";

/// Sets the workload identity fields of `r` for a container or service (the host has none): a
/// service's `ContainerID` is its unit and its `ContainerImage` is empty.
fn identify(t: &Tracked, r: &mut Telemetry) {
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
    r.owner.clone_from(&c.owner);
    r.labels = Some(labels_text(c));
    r.container_id = Some(id);
    r.container_name = Some(c.name.clone());
    r.container_image = Some(image);
}

/// KubeArmor's `Labels`: `k=v` pairs joined by commas, in key order.
fn labels_text(c: &Container) -> String {
    c.labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The fields every record of a workload shares: time, cluster and host, the workload's
/// identity.
fn identified(config: &RuntimeConfig, t: &Tracked, wall: SystemTime) -> Telemetry {
    let mut r = Telemetry::default();
    let (secs, updated) = format::at(wall);
    r.timestamp = Some(secs);
    r.updated_time = Some(updated);
    r.cluster_name = Some(config.cluster_name.clone());
    r.host_name = Some(config.host_name.clone());
    identify(t, &mut r);
    r
}

/// The fields every record of `ev` shares: [`identified`], the process and its parent.
fn base_record(
    config: &RuntimeConfig,
    t: &Tracked,
    ev: &armor_ebpf::Event,
    tree: &ProcessTree,
    wall: SystemTime,
) -> Telemetry {
    let mut r = identified(config, t, wall);
    r.host_pid = Some(i64::from(ev.pid));
    r.host_ppid = Some(i64::from(ev.ppid));
    r.pid = Some(i64::from(ev.ns_pid));
    r.ppid = Some(i64::from(ev.ns_ppid));
    r.uid = Some(i64::from(ev.uid));
    r.process_name = tree.get(ev.pid).map(|p| p.exe.clone());
    r.parent_process_name = tree.get(ev.ppid).map(|p| p.exe.clone());
    r.cwd = tree.cwd(ev.pid).map(str::to_string);
    r
}

/// The monitor's alerts for `decide` (the operations of one event) under `t`'s rules: every
/// decision with an alert, except Block decisions the kernel enforcer makes (it reports those
/// itself); a Block the kernel does not make is `Audit (Block)`.
fn monitor_alerts(
    t: &Tracked,
    decide: &[(Event, Category)],
    base: &Telemetry,
    result: &str,
) -> Vec<Telemetry> {
    let mut out = Vec::new();
    for (event, op) in decide {
        let d = t.rules.decide(event);
        let Some(alert) = d.alert() else {
            continue;
        };
        if d.verdict == Verdict::Block && t.coverage.kernel_decides(&d) {
            continue;
        }
        let mut a = base.with_decision(&d, MONITOR);
        a.operation = Some(op.to_string());
        a.result = Some(result.to_string());
        a.enforcer = Some(MONITOR.to_string());
        a.action = Some(if d.verdict == Verdict::Block {
            ACTION_AUDIT_BLOCK.to_string()
        } else {
            alert.action.to_string()
        });
        out.push(a);
    }
    out
}

/// `alerts` of workload `key` at `now`, unless its alert rate passed the configured maximum:
/// then one `AlertThreshold` SystemEvent, and nothing more for the throttle period.
fn throttle(
    throttles: &mut HashMap<String, Throttle>,
    config: &RuntimeConfig,
    key: &str,
    alerts: Vec<Telemetry>,
    base: &Telemetry,
    now: Instant,
) -> Vec<Telemetry> {
    if config.max_alerts_per_sec == 0 {
        return alerts;
    }
    let th = throttles.entry(key.to_string()).or_default();
    if let Some(until) = th.dropping_until {
        if now < until {
            return Vec::new();
        }
        th.dropping_until = None;
        th.window_start = None;
    }
    match th.window_start {
        Some(start) if now.saturating_duration_since(start) < Duration::from_secs(1) => {}
        _ => {
            th.window_start = Some(now);
            th.count = 0;
        }
    }
    let n = u32::try_from(alerts.len()).unwrap_or(u32::MAX);
    th.count = th.count.saturating_add(n);
    if th.count <= config.max_alerts_per_sec {
        return alerts;
    }
    th.dropping_until = Some(now + config.throttle);
    vec![Telemetry::alert_threshold(
        base,
        key,
        config.max_alerts_per_sec,
        config.throttle,
    )]
}

impl WorkloadIndex {
    /// The records one kernel event gives at `now` ([`Input::Kernel`] without the effect
    /// wrapping: the per-event path): its translation (armor-ebpf's [`Translator`]), decided
    /// with the rules of the workload its cgroup is, throttled per workload.
    pub fn kernel_records(
        &mut self,
        ev: &armor_ebpf::Event,
        tree: &ProcessTree,
        now: Now,
    ) -> Vec<Telemetry> {
        let Some(tr) = self.translator.translate(ev, tree) else {
            return Vec::new();
        };
        let t = self.workloads.get(&ev.cgroup_id).unwrap_or(&self.host);
        let mut base = base_record(&self.config, t, ev, tree, now.wall);
        if tr.process_name.is_some() {
            base.process_name = tr.process_name;
        }
        base.source = tr.source;
        base.operation = Some(tr.operation.to_string());
        base.resource = Some(tr.resource);
        base.data = Some(tr.data);
        let alerts = monitor_alerts(t, &tr.decide, &base, &tr.result);
        if !alerts.is_empty() {
            return throttle(
                &mut self.throttles,
                &self.config,
                &t.key.name,
                alerts,
                &base,
                now.instant,
            );
        }
        let visible = match tr.operation {
            Category::Process => t.visibility.process,
            Category::File => t.visibility.file,
            Category::Network => t.visibility.network,
            _ => false,
        };
        if !visible {
            return Vec::new();
        }
        base.kind = Some(RecordType::log(t.workload.is_host()).to_string());
        base.result = Some(tr.result);
        vec![base]
    }

    /// An enforcer's alert as a KubeArmor Alert at `now`, with the workload's identity: found
    /// by cgroup id, or by name for an enforcer that names workloads only (AppArmor profiles
    /// loaded ahead of the task); the host's when neither is tracked.
    pub fn enforcer_alert(&self, a: &EnforcerAlert, tree: &ProcessTree, now: Now) -> Telemetry {
        let t = a
            .workload
            .as_ref()
            .and_then(|k| match k.cgroup_id {
                Some(id) => self.workloads.get(&id),
                None => self.workloads.values().find(|t| t.key.name == k.name),
            })
            .unwrap_or(&self.host);
        let mut r = identified(&self.config, t, now.wall);
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
