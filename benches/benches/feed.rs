//! The gRPC feed under load, on loopback, with real clients (tonic, generated from armor's
//! `.proto`): bounded in count and time, it prints its figures.
//!
//! 1. **One fast client**: alerts published through `Feed::publish` (the agent's path) and
//!    received by one client; the producer stays at most half a queue ahead of what the client
//!    took, so nothing is dropped and the figure is what one client can be delivered. Goal:
//!    ≥ 200k alerts/s.
//! 2. **Ten clients, one stalled**: nine read, one never does. Goals: the nine lose nothing;
//!    the stalled one's queued + dropped equals what was published, exactly.
//! 3. **A metrics scrape under that load**: `Metrics::render` timed while case 2 runs. Goal:
//!    ≤ 5 ms.
//!
//! The baseline, in the same run (the machine is shared and noisy): the same alerts written as
//! JSON lines to memory (what `--output` does per record).
//!
//! `cargo bench -p armor-benches --bench feed`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::indexing_slicing,
    reason = "bench code: a failure is a bench failure; figures are printed"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use armor_core::telemetry::Telemetry;
use armor_runtime::feeder::{self, Feed, Listen, proto};
use armor_runtime::metrics::Metrics;

const ALERT: &str = r#"{"Timestamp": 1796667054, "UpdatedTime": "2026-12-07T18:10:54.024097Z", "ClusterName": "default", "HostName": "node-a", "NamespaceName": "shop", "Owner": {"Ref": "Deployment", "Name": "web", "Namespace": "shop"}, "PodName": "web-7d9f-x2x", "Labels": "app=web,tier=front", "ContainerID": "42824bdb32026a33", "ContainerName": "web", "ContainerImage": "docker.io/library/nginx:1", "HostPPID": 15196, "HostPID": 15206, "PPID": 15196, "PID": 7, "UID": 0, "ParentProcessName": "/usr/sbin/runc", "ProcessName": "/bin/busybox", "PolicyName": "web-secret", "Severity": "5", "Tags": "PCI,secrets", "ATags": ["PCI", "secrets"], "Message": "secret read", "Type": "MatchedPolicy", "Source": "/bin/busybox", "Operation": "File", "Resource": "/etc/armor-secret", "Data": "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY", "Enforcer": "BPFLSM", "Action": "Block", "Result": "Permission denied", "Cwd": "/"}"#;

/// Each client's queue.
const QUEUE: usize = 4096;

/// A channel to the feed at `addr`.
async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A client reading `stream` on `rt` until it took `n`, counting into `taken`.
fn reader(
    rt: &tokio::runtime::Runtime,
    at: &Listen,
    n: u64,
    taken: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Instant> {
    let Listen::Tcp(addr) = at.clone() else {
        unreachable!("a TCP address")
    };
    rt.spawn(async move {
        let mut c = proto::log_service_client::LogServiceClient::new(channel(addr).await);
        let mut s = c
            .watch_alerts(proto::RequestMessage {
                filter: "all".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut got = 0;
        while got < n {
            s.message().await.unwrap().unwrap();
            got += 1;
            taken.store(got, Ordering::Relaxed);
        }
        Instant::now()
    })
}

/// Publishes `n` alerts, staying at most half a queue ahead of the slowest of `taken`.
fn publish(feed: &Feed, alert: &Telemetry, n: u64, taken: &[Arc<AtomicU64>]) -> Instant {
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < n {
        let slowest = taken
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .min()
            .unwrap_or(sent);
        if sent - slowest < (QUEUE / 2) as u64 {
            for _ in 0..256.min(n - sent) {
                feed.publish(alert);
                sent += 1;
            }
        } else {
            std::thread::yield_now();
        }
    }
    start
}

fn wait_clients(feed: &Feed, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while feed.clients().len() < n {
        assert!(Instant::now() < deadline, "clients did not connect");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn per_sec(n: u64, d: Duration) -> String {
    format!("{:.0}k/s", n as f64 / d.as_secs_f64() / 1000.0)
}

fn main() {
    let alert: Telemetry = serde_json::from_str(ALERT).unwrap();
    // The clients run on a runtime of their own (two threads: the machine has two cores).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    // Baseline: JSON lines to memory.
    let n = 200_000u64;
    let t = Instant::now();
    let mut out = Vec::with_capacity(1 << 20);
    for _ in 0..n {
        out.clear();
        serde_json::to_writer(&mut out, &alert).unwrap();
        out.push(b'\n');
    }
    let json = t.elapsed();
    println!(
        "baseline: {n} alerts as JSON lines to memory in {:.0} ms ({})",
        json.as_secs_f64() * 1000.0,
        per_sec(n, json)
    );

    // 1. One fast client.
    let feed = Feed::new(QUEUE);
    let server = feeder::serve(&":0".parse().unwrap(), feed.clone()).unwrap();
    let n = 500_000u64;
    let taken = Arc::new(AtomicU64::new(0));
    let done = reader(&rt, server.address(), n, taken.clone());
    wait_clients(&feed, 1);
    let start = publish(&feed, &alert, n, &[taken]);
    let end = rt.block_on(done).unwrap();
    let took = end - start;
    let c = &feed.clients()[0];
    println!(
        "one client: {n} alerts delivered in {:.0} ms ({}; goal >= 200k/s), {} dropped",
        took.as_secs_f64() * 1000.0,
        per_sec(n, took),
        c.dropped
    );
    assert_eq!(c.dropped, 0);

    // 2. Ten clients, one stalled; 3. scrapes meanwhile.
    let feed = Feed::new(QUEUE);
    let server = feeder::serve(&":0".parse().unwrap(), feed.clone()).unwrap();
    let Listen::Tcp(addr) = server.address().clone() else {
        unreachable!("a TCP address")
    };
    let stalled = rt.block_on(async {
        let mut c = proto::log_service_client::LogServiceClient::new(channel(addr).await);
        c.watch_alerts(proto::RequestMessage {
            filter: "all".into(),
        })
        .await
        .unwrap()
        .into_inner()
    });
    let n = 200_000u64;
    let takens: Vec<Arc<AtomicU64>> = (0..9).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let readers: Vec<_> = takens
        .iter()
        .map(|t| reader(&rt, server.address(), n, t.clone()))
        .collect();
    wait_clients(&feed, 10);
    let metrics = Metrics::new();
    let scraping = {
        let metrics = metrics.clone();
        let feed = feed.clone();
        std::thread::spawn(move || {
            let mut times = Vec::new();
            let until = Instant::now() + Duration::from_secs(60);
            while Instant::now() < until && times.len() < 2_000 {
                metrics.feed(feed.clients().len(), feed.totals());
                let t = Instant::now();
                let text = metrics.render();
                times.push(t.elapsed());
                assert!(text.contains("armor_grpc_records_total"));
                std::thread::sleep(Duration::from_millis(1));
            }
            times
        })
    };
    let start = publish(&feed, &alert, n, &takens);
    let ends: Vec<Instant> = readers
        .into_iter()
        .map(|r| rt.block_on(r).unwrap())
        .collect();
    let took = ends.into_iter().max().unwrap() - start;
    let stats = feed.clients();
    let mut fast_dropped = 0;
    let mut slow = None;
    for c in &stats {
        if c.queued == n && c.dropped == 0 {
            continue;
        }
        if c.queued + c.dropped == n && c.dropped > 0 && slow.is_none() {
            slow = Some(c.clone());
        } else {
            fast_dropped += c.dropped;
        }
    }
    let slow = slow.expect("the stalled client lost records, counted exactly");
    println!(
        "ten clients (one stalled): {n} alerts to each of nine in {:.0} ms ({} per client, {} in all); \
         the nine lost {fast_dropped}; the stalled one: {} queued + {} dropped = {} (published {n})",
        took.as_secs_f64() * 1000.0,
        per_sec(n, took),
        per_sec(9 * n, took),
        slow.queued,
        slow.dropped,
        slow.queued + slow.dropped
    );
    assert_eq!(fast_dropped, 0);
    drop(stalled);
    let mut times = scraping.join().unwrap();
    times.sort();
    let p = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "metrics scrape under that load: {} scrapes, median {:.3} ms, p99 {:.3} ms, max {:.3} ms \
         (goal <= 5 ms)",
        times.len(),
        p(0.5).as_secs_f64() * 1000.0,
        p(0.99).as_secs_f64() * 1000.0,
        times.last().unwrap().as_secs_f64() * 1000.0
    );
}
