//! Kernel events to records: the monitor's decisions, alert throttling, the injected clock
//! ([`Now`]).

use super::*;

/// A clock reading: what [`Runtime::handle_at`] takes for "now" (the alert throttle reads
/// `instant`, the records' timestamps `wall`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Now {
    /// Monotonic time.
    pub instant: Instant,
    /// Wall-clock time.
    pub wall: SystemTime,
}

impl Now {
    /// The system's clocks, read now.
    pub fn system() -> Self {
        Self {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// A given reading.
    pub fn at(instant: Instant, wall: SystemTime) -> Self {
        Self { instant, wall }
    }
}

/// The fields every record of `ev` shares: time, cluster and host, the workload's identity, the
/// process and its parent.
pub(super) fn base_record(
    config: &RuntimeConfig,
    t: &Tracked,
    ev: &armor_ebpf::Event,
    tree: &ProcessTree,
    wall: SystemTime,
) -> Telemetry {
    let mut r = Telemetry::default();
    let (secs, updated) = format::at(wall);
    r.timestamp = Some(secs);
    r.updated_time = Some(updated);
    r.cluster_name = Some(config.cluster_name.clone());
    r.host_name = Some(config.host_name.clone());
    identify(t, &mut r);
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
pub(super) fn monitor_alerts(
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
pub(super) fn throttle(
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

impl Runtime {
    /// Turns one kernel event into the records to emit (none, a Log, Alerts, a SystemEvent), at
    /// the time of the call ([`Runtime::handle_at`] with [`Now::system`]).
    pub fn handle(&mut self, ev: &armor_ebpf::Event, tree: &ProcessTree) -> Vec<Telemetry> {
        self.handle_at(ev, tree, Now::system())
    }

    /// The records one kernel event gives at `now`: its translation (armor-ebpf's
    /// [`Translator`]), decided with the rules of the workload its cgroup is, throttled per
    /// workload. The clock is only what `now` says, so a replay or a test gets the same records
    /// for the same events and times.
    pub fn handle_at(
        &mut self,
        ev: &armor_ebpf::Event,
        tree: &ProcessTree,
        now: Now,
    ) -> Vec<Telemetry> {
        let Some(tr) = self.translator.translate(ev, tree) else {
            return Vec::new();
        };
        let t = self.containers.get(&ev.cgroup_id).unwrap_or(&self.host);
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
}
