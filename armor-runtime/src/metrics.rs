//! The agent's health as Prometheus metrics (text exposition, `prometheus-client`) and its
//! liveness and readiness, on a small HTTP endpoint of its own ([`serve`]):
//!
//! - `GET /metrics`: the series below;
//! - `GET /healthz`: 200, or 503 with the reason when the agent's loop has not turned for 10 s
//!   (it turns at least every 200 ms), or when its enforcer no longer holds what it applied
//!   (checked every second: [`Enforcer::health`](armor_core::enforcer::Enforcer::health), e.g.
//!   an AppArmor profile unloaded or put in complain mode by someone else);
//! - `GET /readyz`: 503 until the agent applied its first policy set (its `ready` line), then
//!   200, except while it has lost containerd's event stream and not resynced yet (503 with
//!   why).
//!
//! | series | what |
//! |---|---|
//! | `armor_events_total{source}` | kernel events the agent read (`source="ebpf"`) |
//! | `armor_events_lost_total{source}` | events the kernel's ring buffer could not hold |
//! | `armor_records_total{kind}` | records written: `alert`, `log` |
//! | `armor_alerts_total{policy,action}` | alerts by policy and action (`Block`, `Audit (Block)`, …) |
//! | `armor_policy_apply_seconds` | how long putting a policy set in force took (histogram) |
//! | `armor_policy_reloads_total{outcome}` | changes of the policy directory: `applied`, or `refused` (a file unreadable or invalid: the previous policies stay) |
//! | `armor_apply_failures_total` | workload applies an enforcer failed (their workloads keep their previous rules or are monitored only) |
//! | `armor_policy_rules` | rules of the policies in force |
//! | `armor_workloads{state}` | workloads by coverage: `enforced`, `partly_enforced`, `monitored_only`, `no_rules` |
//! | `armor_enforcer_probe{enforcer,result}` | 1 per enforcer tried: `chosen` or `refused` |
//! | `armor_enforcer_healthy` | 1 while the enforcer holds what it applied (or there is none), else 0 |
//! | `armor_enforcer_capacity{enforcer,resource}` | size of a kernel resource the enforcer fills (BPF-LSM: `workloads`, `rule_table_slots`, `rule_map_entries`, `glob_automata`) |
//! | `armor_enforcer_capacity_used{enforcer,resource}` | how much of it is used |
//! | `armor_grpc_clients` | gRPC feed clients connected |
//! | `armor_grpc_records_total{outcome}` | records for gRPC clients: `queued` or `dropped` (a full queue), over every client |
//! | `armor_output_records_total{outcome}` | records for the outputs (`--output`): `written`, or `lost` when an output failed |
//! | `armor_build_info{version}` | 1, with the agent's version |
//!
//! ```no_run
//! let metrics = armor_runtime::metrics::Metrics::new();
//! let endpoint = armor_runtime::metrics::serve("127.0.0.1:9090".parse()?, metrics.clone())?;
//! println!("metrics on http://{endpoint}/metrics");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::coverage::Readiness;

type Labels = Vec<(String, String)>;

/// How long the agent's loop may not turn before `/healthz` fails.
pub const STALL_AFTER: Duration = Duration::from_secs(10);

/// The agent's metrics: cheap to clone (shared), updated by the agent, rendered on a scrape.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

/// Handles on the fixed-label series (each shares its counter with its family).
#[derive(Debug)]
struct Fixed {
    events: Counter,
    lost: Counter,
    alert_records: Counter,
    log_records: Counter,
    written: Counter,
    output_lost: Counter,
    grpc_queued: Counter,
    grpc_dropped: Counter,
    reloads_applied: Counter,
    reloads_refused: Counter,
}

#[derive(Debug)]
struct Inner {
    registry: Mutex<Registry>,
    events: Family<Labels, Counter>,
    lost: Family<Labels, Counter>,
    records: Family<Labels, Counter>,
    alerts: Family<Labels, Counter>,
    apply: Histogram,
    apply_failures: Counter,
    rules: Gauge,
    workloads: Family<Labels, Gauge>,
    probe: Family<Labels, Gauge>,
    healthy: Gauge,
    capacity: Family<Labels, Gauge>,
    capacity_used: Family<Labels, Gauge>,
    /// What the enforcer no longer holds, as last checked (`/healthz`).
    enforcer_fault: Mutex<Option<String>>,
    /// Why the agent is not ready any more, while it is not (`/readyz`).
    unready: Mutex<Option<String>>,
    grpc_clients: Gauge,
    grpc_records: Family<Labels, Counter>,
    output: Family<Labels, Counter>,
    /// The series whose labels are fixed, taken once: the loop's hot path counts on them without
    /// building labels or looking them up.
    fixed: Fixed,
    /// What was last added from cumulative sources (the kernel's loss count, the feed's
    /// totals), so that counters only ever add the difference.
    seen_lost: AtomicU64,
    seen_failures: AtomicU64,
    seen_grpc: Mutex<(u64, u64)>,
    /// When the agent's loop last turned (milliseconds since `start`), and whether it is ready.
    start: Instant,
    turned: AtomicI64,
    ready: AtomicBool,
    /// How long the loop may not turn before `/healthz` fails.
    stall_after: Duration,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every series registered, at zero (build info set); `/healthz` fails after
    /// [`STALL_AFTER`] without a turn of the loop.
    pub fn new() -> Self {
        Self::with_stall_after(STALL_AFTER)
    }

    /// The same, failing `/healthz` after `stall_after` without a turn of the loop.
    pub fn with_stall_after(stall_after: Duration) -> Self {
        let mut registry = Registry::with_prefix("armor");
        let events: Family<Labels, Counter> = Family::default();
        let lost: Family<Labels, Counter> = Family::default();
        let records: Family<Labels, Counter> = Family::default();
        let output: Family<Labels, Counter> = Family::default();
        let grpc_records: Family<Labels, Counter> = Family::default();
        let reloads: Family<Labels, Counter> = Family::default();
        // Every series with its fixed labels exists from the start (at zero).
        let fixed = Fixed {
            events: events.get_or_create_owned(&labels(&[("source", "ebpf")])),
            lost: lost.get_or_create_owned(&labels(&[("source", "ebpf")])),
            alert_records: records.get_or_create_owned(&labels(&[("kind", "alert")])),
            log_records: records.get_or_create_owned(&labels(&[("kind", "log")])),
            written: output.get_or_create_owned(&labels(&[("outcome", "written")])),
            output_lost: output.get_or_create_owned(&labels(&[("outcome", "lost")])),
            grpc_queued: grpc_records.get_or_create_owned(&labels(&[("outcome", "queued")])),
            grpc_dropped: grpc_records.get_or_create_owned(&labels(&[("outcome", "dropped")])),
            reloads_applied: reloads.get_or_create_owned(&labels(&[("outcome", "applied")])),
            reloads_refused: reloads.get_or_create_owned(&labels(&[("outcome", "refused")])),
        };
        let inner = Inner {
            registry: Mutex::new(Registry::default()),
            events,
            lost,
            records,
            alerts: Family::default(),
            apply: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            apply_failures: Counter::default(),
            rules: Gauge::default(),
            workloads: Family::default(),
            probe: Family::default(),
            healthy: Gauge::default(),
            capacity: Family::default(),
            capacity_used: Family::default(),
            enforcer_fault: Mutex::new(None),
            unready: Mutex::new(None),
            grpc_clients: Gauge::default(),
            grpc_records,
            output,
            fixed,
            seen_lost: AtomicU64::new(0),
            seen_failures: AtomicU64::new(0),
            seen_grpc: Mutex::new((0, 0)),
            start: Instant::now(),
            turned: AtomicI64::new(0),
            ready: AtomicBool::new(false),
            stall_after,
        };
        registry.register(
            "events",
            "Kernel events the agent read",
            inner.events.clone(),
        );
        registry.register(
            "events_lost",
            "Events the kernel's ring buffer could not hold",
            inner.lost.clone(),
        );
        registry.register("records", "Records written", inner.records.clone());
        registry.register(
            "alerts",
            "Alerts by policy and action",
            inner.alerts.clone(),
        );
        registry.register(
            "policy_apply_seconds",
            "How long putting a policy set in force took",
            inner.apply.clone(),
        );
        registry.register(
            "policy_reloads",
            "Changes of the policy directory: applied or refused",
            reloads,
        );
        registry.register(
            "apply_failures",
            "Workload applies an enforcer failed",
            inner.apply_failures.clone(),
        );
        registry.register(
            "policy_rules",
            "Rules of the policies in force",
            inner.rules.clone(),
        );
        registry.register(
            "workloads",
            "Workloads by coverage",
            inner.workloads.clone(),
        );
        registry.register(
            "enforcer_probe",
            "Enforcers tried: chosen or refused",
            inner.probe.clone(),
        );
        inner.healthy.set(1);
        registry.register(
            "enforcer_healthy",
            "1 while the enforcer holds what it applied, else 0",
            inner.healthy.clone(),
        );
        registry.register(
            "enforcer_capacity",
            "Size of a kernel resource the enforcer fills",
            inner.capacity.clone(),
        );
        registry.register(
            "enforcer_capacity_used",
            "How much of a kernel resource the enforcer fills is used",
            inner.capacity_used.clone(),
        );
        registry.register(
            "grpc_clients",
            "gRPC feed clients connected",
            inner.grpc_clients.clone(),
        );
        registry.register(
            "grpc_records",
            "Records for gRPC clients: queued or dropped",
            inner.grpc_records.clone(),
        );
        registry.register(
            "output_records",
            "Records for the outputs: written or lost (an output failed)",
            inner.output.clone(),
        );
        let build: Family<Labels, Gauge> = Family::default();
        build
            .get_or_create(&labels(&[("version", env!("CARGO_PKG_VERSION"))]))
            .set(1);
        registry.register("build_info", "The agent's version", build);
        *inner.registry.lock() = registry;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// `n` kernel events read.
    pub fn events(&self, n: u64) {
        self.inner.fixed.events.inc_by(n);
    }

    /// The kernel's cumulative count of events lost (only the increase is added).
    pub fn lost_total(&self, total: u64) {
        let before = self.inner.seen_lost.swap(total, Ordering::Relaxed);
        if total > before {
            self.inner.fixed.lost.inc_by(total - before);
        }
    }

    /// One record written.
    pub fn record(&self, t: &armor_core::telemetry::Telemetry) {
        if crate::feeder::is_alert(t) {
            self.inner.fixed.alert_records.inc();
            let policy = t.policy_name.as_deref().unwrap_or("");
            let action = t.action.as_deref().unwrap_or("");
            self.inner
                .alerts
                .get_or_create(&labels(&[("policy", policy), ("action", action)]))
                .inc();
        } else {
            self.inner.fixed.log_records.inc();
        }
    }

    /// `n` records given to the outputs: `written`, or lost (an output failed).
    pub fn output(&self, n: u64, written: bool) {
        let counter = if written {
            &self.inner.fixed.written
        } else {
            &self.inner.fixed.output_lost
        };
        counter.inc_by(n);
    }

    /// A policy set put in force in `took`, with `rules` rules.
    pub fn applied(&self, took: Duration, rules: usize) {
        self.inner.apply.observe(took.as_secs_f64());
        self.inner
            .rules
            .set(i64::try_from(rules).unwrap_or(i64::MAX));
    }

    /// A change of the policy directory taken (`applied`) or refused (the previous policies
    /// stay).
    pub fn reloaded(&self, applied: bool) {
        let fixed = &self.inner.fixed;
        if applied {
            fixed.reloads_applied.inc();
        } else {
            fixed.reloads_refused.inc();
        }
    }

    /// What is enforced now: workloads by coverage and the apply failures so far.
    pub fn readiness(&self, r: &Readiness) {
        let c = r.counts();
        for (state, n) in [
            ("enforced", c.enforced),
            ("partly_enforced", c.partial),
            ("monitored_only", c.monitored_only),
            ("no_rules", c.no_rules),
        ] {
            self.inner
                .workloads
                .get_or_create(&labels(&[("state", state)]))
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let before = self
            .inner
            .seen_failures
            .swap(r.apply_failures, Ordering::Relaxed);
        if r.apply_failures > before {
            self.inner.apply_failures.inc_by(r.apply_failures - before);
        }
    }

    /// An enforcer tried at start: `chosen`, or refused.
    pub fn probe(&self, enforcer: &str, chosen: bool) {
        let result = if chosen { "chosen" } else { "refused" };
        self.inner
            .probe
            .get_or_create(&labels(&[("enforcer", enforcer), ("result", result)]))
            .set(1);
    }

    /// The enforcer's state as checked ([`Runtime::enforcer_health`] and
    /// [`Runtime::enforcer_capacity`]): a fault fails `/healthz` with its reason until a later
    /// check is `Ok`.
    ///
    /// [`Runtime::enforcer_health`]: crate::Runtime::enforcer_health
    /// [`Runtime::enforcer_capacity`]: crate::Runtime::enforcer_capacity
    pub fn enforcer(
        &self,
        health: Result<(), String>,
        capacity: &[(&str, armor_core::enforcer::Capacity)],
    ) {
        self.inner.healthy.set(i64::from(health.is_ok()));
        *self.inner.enforcer_fault.lock() = health.err();
        for (enforcer, c) in capacity {
            let l = labels(&[("enforcer", enforcer), ("resource", c.resource)]);
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.inner.capacity.get_or_create(&l).set(n(c.limit));
            self.inner.capacity_used.get_or_create(&l).set(n(c.used));
        }
    }

    /// The gRPC feed's clients and its cumulative totals (queued, dropped).
    pub fn feed(&self, clients: usize, totals: (u64, u64)) {
        self.inner
            .grpc_clients
            .set(i64::try_from(clients).unwrap_or(i64::MAX));
        let mut seen = self.inner.seen_grpc.lock();
        let fixed = &self.inner.fixed;
        for (counter, now, before) in [
            (&fixed.grpc_queued, totals.0, seen.0),
            (&fixed.grpc_dropped, totals.1, seen.1),
        ] {
            if now > before {
                counter.inc_by(now - before);
            }
        }
        *seen = totals;
    }

    /// The agent's loop turned.
    pub fn turned(&self) {
        let ms = i64::try_from(self.inner.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.inner.turned.store(ms, Ordering::Relaxed);
    }

    /// The agent applied its first policy set.
    pub fn set_ready(&self) {
        self.inner.ready.store(true, Ordering::Relaxed);
    }

    /// The text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry.lock());
        out
    }

    /// `Ok` while the loop turns and the enforcer holds what it applied, else why not
    /// (`/healthz`).
    pub fn health(&self) -> Result<(), String> {
        if let Some(fault) = self.inner.enforcer_fault.lock().clone() {
            return Err(fault);
        }
        let now = i64::try_from(self.inner.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        let last = self.inner.turned.load(Ordering::Relaxed);
        let stalled = Duration::from_millis(u64::try_from(now - last).unwrap_or(0));
        if self.inner.ready.load(Ordering::Relaxed) && stalled >= self.inner.stall_after {
            return Err(format!(
                "the agent's loop has not turned for {} s",
                stalled.as_secs()
            ));
        }
        Ok(())
    }

    /// `Ok` once the first policy set is applied (`/readyz`).
    pub fn ready(&self) -> Result<(), String> {
        if !self.inner.ready.load(Ordering::Relaxed) {
            return Err("the first policy set is not applied yet".to_string());
        }
        match self.inner.unready.lock().clone() {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// Says why the agent is not ready any more (`/readyz` answers 503 with it), or that it is
    /// again (`None`): the containerd event stream lost and not resynced yet.
    pub fn set_unready(&self, why: Option<String>) {
        *self.inner.unready.lock() = why;
    }
}

/// How many requests are answered at once; a connection beyond them is closed at once.
const CONNECTIONS: usize = 8;
/// The most of a request that is read (its request line and headers).
const REQUEST_MAX: u64 = 8 * 1024;

/// Serves `metrics` on `addr` (HTTP/1.1, one request per connection) until the process ends;
/// returns the address it listens on. Each connection is answered on a thread of its own, 8 at
/// most at once, reading 8 KiB of request at most with 2 s per read, so a slow or idle client
/// does not hold up the probes. A non-loopback address is the caller's choice to make (the agent
/// asks for a flag).
pub fn serve(addr: SocketAddr, metrics: Metrics) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("armor-metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let conn = match conn {
                    Ok(c) => c,
                    // Out of file descriptors, say: wait rather than spin.
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                if busy.fetch_add(1, Ordering::AcqRel) >= CONNECTIONS {
                    busy.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
                let metrics = metrics.clone();
                let busy_now = Arc::clone(&busy);
                let spawned = std::thread::Builder::new()
                    .name("armor-metrics-req".into())
                    .spawn(move || {
                        answer(conn, &metrics);
                        busy_now.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    busy.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok(bound)
}

/// Answers one request.
fn answer(mut conn: TcpStream, metrics: &Metrics) {
    let mut line = String::new();
    let Ok(reader) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(std::io::Read::take(reader, REQUEST_MAX));
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // The headers: read up to the blank line (nothing in them matters here).
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => break,
            Ok(_) if h == "\r\n" || h == "\n" => break,
            Ok(_) => {}
        }
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        ("GET", "/healthz") => match metrics.health() {
            Ok(()) => ("200 OK", "text/plain", "ok\n".to_string()),
            Err(why) => ("503 Service Unavailable", "text/plain", format!("{why}\n")),
        },
        ("GET", "/readyz") => match metrics.ready() {
            Ok(()) => ("200 OK", "text/plain", "ok\n".to_string()),
            Err(why) => ("503 Service Unavailable", "text/plain", format!("{why}\n")),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: /metrics, /healthz, /readyz\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
