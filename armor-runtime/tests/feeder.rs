#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The gRPC feed with a client generated from armor's `.proto` (a second code path; KubeArmor's
//! own clients are the proof of compatibility): over TCP and over a unix socket, the health
//! checks answer, alerts and logs arrive on their streams with every field of the JSON line of
//! the same record, a bad filter is refused with a clear status, and a stalled client loses
//! its own records, counted exactly, while a fast one loses nothing.

use std::time::{Duration, Instant};

use armor_core::telemetry::Telemetry;
use armor_runtime::feeder::{self, Feed, Listen, health, proto};
use tonic::transport::{Channel, Endpoint};

#[path = "support/fields.rs"]
mod fields;
use fields::{alert_fields, json_fields, log_fields};

const ALERT: &str = r#"{"Timestamp": 1796667054, "UpdatedTime": "2026-12-07T18:10:54.024097Z", "ClusterName": "default", "HostName": "node-a", "NamespaceName": "shop", "Owner": {"Ref": "Deployment", "Name": "web", "Namespace": "shop"}, "PodName": "web-7d9f-x2x", "Labels": "app=web,tier=front", "ContainerID": "42824bdb32026a33", "ContainerName": "web", "ContainerImage": "docker.io/library/nginx:1", "HostPPID": 15196, "HostPID": 15206, "PPID": 15196, "PID": 7, "UID": 0, "ParentProcessName": "/usr/sbin/runc", "ProcessName": "/bin/busybox", "PolicyName": "web-secret", "Severity": "5", "Tags": "PCI,secrets", "ATags": ["PCI", "secrets"], "Message": "secret read", "Type": "MatchedPolicy", "Source": "/bin/busybox", "Operation": "File", "Resource": "/etc/armor-secret", "Data": "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY", "Enforcer": "BPFLSM", "Action": "Block", "Result": "Permission denied", "Cwd": "/"}"#;

const LOG: &str = r#"{"Timestamp": 1796667055, "UpdatedTime": "2026-12-07T18:10:55.000001Z", "ClusterName": "default", "HostName": "node-a", "NamespaceName": "shop", "Owner": {"Ref": "Deployment", "Name": "web", "Namespace": "shop"}, "PodName": "web-7d9f-x2x", "Labels": "app=web", "ContainerID": "42824bdb32026a33", "ContainerName": "web", "ContainerImage": "docker.io/library/nginx:1", "HostPPID": 15196, "HostPID": 15207, "PPID": 15196, "PID": 8, "UID": 1000, "ParentProcessName": "/usr/sbin/runc", "ProcessName": "/usr/bin/curl", "Type": "ContainerLog", "Source": "/usr/bin/curl", "Operation": "Network", "Resource": "remoteip=10.0.0.1 port=443 protocol=TCP", "Data": "syscall=SYS_CONNECT fd=3", "Result": "Passed", "Cwd": "/app", "TTY": "pts0"}"#;

fn record(line: &str) -> Telemetry {
    serde_json::from_str(line).unwrap()
}

/// A channel to the server at `listen`.
async fn channel(listen: &Listen) -> Channel {
    match listen {
        Listen::Tcp(addr) => Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
        Listen::Unix(path) => {
            let path = path.clone();
            Endpoint::from_static("http://[::]")
                .connect_with_connector(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        let s = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                    }
                }))
                .await
                .unwrap()
        }
        _ => unreachable!("two kinds of address"),
    }
}

/// Waits until the feed has `n` clients.
async fn clients(feed: &Feed, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while feed.clients().len() < n {
        assert!(Instant::now() < deadline, "{:?}", feed.clients());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_alerts_and_logs_with_the_fields_of_the_json_line_over_tcp_and_unix() {
    let dir = std::env::temp_dir().join(format!("armor-feeder-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("feed.sock");
    for listen in [
        "127.0.0.1:0".parse::<Listen>().unwrap(),
        format!("unix:{}", sock.display()).parse().unwrap(),
    ] {
        let feed = Feed::new(64);
        let server = feeder::serve(&listen, feed.clone()).unwrap();
        let at = server.address().clone();
        if let Listen::Unix(p) = &at {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o660, "{at}");
        }
        let ch = channel(&at).await;
        let mut logs_client = proto::log_service_client::LogServiceClient::new(ch.clone());
        let nonce = logs_client
            .health_check(proto::NonceMessage { nonce: 4711 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(nonce.retval, 4711, "{at}");
        let mut h = health::health_client::HealthClient::new(ch.clone());
        for service in ["", feeder::SERVICE] {
            let r = h
                .check(health::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                r.status,
                i32::from(health::health_check_response::ServingStatus::Serving),
                "{at} {service}"
            );
        }
        let unknown = h
            .check(health::HealthCheckRequest {
                service: "nope".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound, "{at}");

        let mut alerts = logs_client
            .watch_alerts(proto::RequestMessage {
                filter: "policy".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut logs = logs_client
            .watch_logs(proto::RequestMessage {
                filter: "system".into(),
            })
            .await
            .unwrap()
            .into_inner();
        clients(&feed, 2).await;
        feed.publish(&record(ALERT));
        feed.publish(&record(LOG));
        let a = alerts.message().await.unwrap().unwrap();
        assert_eq!(alert_fields(&a), json_fields(ALERT), "{at}");
        assert_eq!(a.event_data["syscall"], "SYS_OPENAT", "{at}");
        assert_eq!(a.event_data["flags"], "O_RDONLY", "{at}");
        let l = logs.message().await.unwrap().unwrap();
        assert_eq!(log_fields(&l), json_fields(LOG), "{at}");
        // A network record's EventData also holds its Resource's tokens.
        assert_eq!(l.event_data["remoteip"], "10.0.0.1", "{at}");
        assert_eq!(l.event_data["syscall"], "SYS_CONNECT", "{at}");
        // Each stream got its own record only.
        let mut counts: Vec<(feeder::Stream, u64, u64)> = feed
            .clients()
            .iter()
            .map(|c| (c.stream, c.queued, c.dropped))
            .collect();
        counts.sort();
        assert_eq!(
            counts,
            [(feeder::Stream::Alerts, 1, 0), (feeder::Stream::Logs, 1, 0)],
            "{at}"
        );
        // Gone clients are forgotten, their counts kept in the totals.
        drop(alerts);
        drop(logs);
        drop(logs_client);
        drop(h);
        drop(ch);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !feed.clients().is_empty() {
            feed.publish(&record(LOG));
            assert!(Instant::now() < deadline, "{:?}", feed.clients());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(feed.totals().0 >= 2, "{:?}", feed.totals());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_filter_is_refused_with_a_status_that_names_the_filters() {
    let feed = Feed::new(8);
    let server = feeder::serve(&":0".parse().unwrap(), feed).unwrap();
    let mut c = proto::log_service_client::LogServiceClient::new(channel(server.address()).await);
    let e = c
        .watch_alerts(proto::RequestMessage {
            filter: "system".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("`all` or `policy`"), "{}", e.message());
    let e = c
        .watch_logs(proto::RequestMessage {
            filter: "policy".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("`all` or `system`"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_loses_its_own_records_counted_and_a_fast_one_loses_nothing() {
    const N: u64 = 20_000;
    let feed = Feed::new(1024);
    let server = feeder::serve(&":0".parse().unwrap(), feed.clone()).unwrap();
    let at = server.address().clone();
    let request = || proto::RequestMessage {
        filter: "all".into(),
    };
    // The stalled client opens its stream and never reads it.
    let mut slow = proto::log_service_client::LogServiceClient::new(channel(&at).await);
    let _stalled = slow.watch_alerts(request()).await.unwrap().into_inner();
    let mut fast = proto::log_service_client::LogServiceClient::new(channel(&at).await);
    let mut stream = fast.watch_alerts(request()).await.unwrap().into_inner();
    clients(&feed, 2).await;
    let consumed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = consumed.clone();
    let reader = tokio::spawn(async move {
        let mut n = 0u64;
        while n < N {
            stream.message().await.unwrap().unwrap();
            n += 1;
            seen.store(n, std::sync::atomic::Ordering::Relaxed);
        }
        // The stream goes back with the count: while it lives, the client stays connected.
        (n, stream)
    });
    // The producer stays at most half a queue ahead of what the fast client took (a client
    // that keeps up), so the fast client never fills its queue while the stalled one does.
    let alert = record(ALERT);
    let fast_id = feed.clients().iter().map(|c| c.id).max().unwrap();
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while sent < N {
        let taken = consumed.load(std::sync::atomic::Ordering::Relaxed);
        if sent - taken < 512 {
            for _ in 0..256.min(N - sent) {
                feed.publish(&alert);
                sent += 1;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            Instant::now() < deadline,
            "too slow: {sent} sent, {taken} taken"
        );
    }
    let (received, _open) = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the fast client got every record")
        .unwrap();
    assert_eq!(received, N);
    let stats = feed.clients();
    let fast_stats = stats.iter().find(|c| c.id == fast_id).unwrap();
    assert_eq!((fast_stats.queued, fast_stats.dropped), (N, 0));
    let slow_stats = stats.iter().find(|c| c.id != fast_id).unwrap();
    assert_eq!(slow_stats.queued + slow_stats.dropped, N, "{slow_stats:?}");
    assert!(slow_stats.dropped > 0, "{slow_stats:?}");
    println!(
        "stalled client: {} queued, {} dropped of {N}; fast client: all {N}",
        slow_stats.queued, slow_stats.dropped
    );
}

#[test]
fn addresses_are_loopback_or_unix_unless_remote_is_allowed() {
    assert_eq!(
        ":32767".parse::<Listen>().unwrap(),
        Listen::Tcp("127.0.0.1:32767".parse().unwrap())
    );
    assert!("unix:relative.sock".parse::<Listen>().is_err());
    assert!("localhost:1".parse::<Listen>().is_err());
    let e = feeder::serve(&"0.0.0.0:0".parse().unwrap(), Feed::new(1)).unwrap_err();
    assert!(matches!(e, feeder::FeedError::Remote(_)), "{e}");
    assert!(e.to_string().contains("not a loopback address"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_socket_is_never_taken_over_and_errors_are_plain_in_async_code() {
    let dir = std::env::temp_dir().join(format!("armor-feeder-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listen: Listen = format!("unix:{}", dir.join("feed.sock").display())
        .parse()
        .unwrap();
    let _first = feeder::serve(&listen, Feed::new(1)).unwrap();
    let e = feeder::serve(&listen, Feed::new(1)).unwrap_err();
    assert!(e.to_string().contains("another server listens"), "{e}");
    // A stale socket file (nothing listening) is replaced.
    let stale = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let stale_listen: Listen = format!("unix:{}", stale.display()).parse().unwrap();
    feeder::serve(&stale_listen, Feed::new(1)).unwrap();
    // Refused in async code: an error, no runtime dropped in the caller's context.
    let e = feeder::serve(&"0.0.0.0:0".parse().unwrap(), Feed::new(1)).unwrap_err();
    assert!(matches!(e, feeder::FeedError::Remote(_)), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_unix_socket_gets_the_group_asked_for() {
    use std::os::unix::fs::MetadataExt;
    let dir = std::env::temp_dir().join(format!("armor-feeder-group-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("feed.sock");
    // Root may give any group; anyone else their own.
    let gid = if armor_testing::is_root() {
        65534
    } else {
        std::fs::metadata(&dir).unwrap().gid()
    };
    let mut options = feeder::ServeOptions::default();
    options.group = Some(gid);
    feeder::serve_with(
        &format!("unix:{}", path.display()).parse().unwrap(),
        Feed::new(1),
        options,
    )
    .unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.gid(), gid);
    assert_eq!(meta.mode() & 0o777, 0o660);
    let _ = std::fs::remove_dir_all(&dir);
}
