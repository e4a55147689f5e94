#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! `armor-agent --grpc` read by KubeArmor's own client, `karmor logs` (built from KubeArmor's
//! Go module by scripts/kubearmor-tools), and by a client generated from armor's `.proto`: the
//! alert of a live event arrives with the fields of its JSON line, karmor's filters select it
//! (or not), and the agent's own log lines arrive as messages. Needs root (the agent's event
//! source).

#[path = "../../armor-runtime/tests/support/fields.rs"]
mod fields;
#[path = "../../armor-runtime/tests/support/scrape.rs"]
mod scrape;

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use armor_runtime::feeder::proto;
use armor_testing::lines::Lines;
use common::{KillOnDrop, alerts, free_port};
use fields::{alert_fields, json_fields};
use scrape::{http_get, series};

/// The directory holding `karmor` and `feed-client` (scripts/kubearmor-tools), or why the test
/// cannot run them (under `CI=true` a missing tool fails the test).
fn kubearmor_tools() -> Option<PathBuf> {
    match std::env::var_os("ARMOR_KUBEARMOR_TOOLS") {
        Some(p) if Path::new(&p).join("karmor").is_file() => Some(PathBuf::from(p)),
        _ => {
            let why = "ARMOR_KUBEARMOR_TOOLS is not set; run `export \
                       ARMOR_KUBEARMOR_TOOLS=$(scripts/kubearmor-tools)` to build KubeArmor's \
                       karmor and the feed client";
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
            assert!(!ci, "CI must run the KubeArmor client tests: {why}");
            println!("skipped: {why}");
            None
        }
    }
}

/// A fresh directory `<tag>-<pid>` with a marker program (a copy of `/bin/true`) and, under
/// `policies/`, a host policy `name` (severity 5, tags PCI and marker) blocking its exec:
/// the directory, the policy directory and the marker.
fn marked(tag: &str, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("{tag}-{}", std::process::id()));
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let marker = dir.join(format!("{tag}-marker"));
    std::fs::copy("/bin/true", &marker).unwrap();
    std::fs::write(
        policies.join("marker.yaml"),
        format!(
            "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata: \
             {{name: {name}}}\nspec:\n  nodeSelector: {{matchLabels: {{}}}}\n  severity: 5\n  \
             tags: [PCI, marker]\n  process:\n    matchPaths: [{{path: {}}}]\n  action: \
             Block\n",
            marker.display()
        ),
    )
    .unwrap();
    (dir, policies, marker)
}

/// `karmor logs` against the agent, with `args`; its output lines arrive on the receiver.
fn karmor_logs(
    karmor: &Path,
    kubeconfig: &Path,
    port: u16,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(karmor)
        .args(["logs", "--gRPC", &format!("127.0.0.1:{port}")])
        .args(args)
        // karmor loads a kubeconfig before any command (it never contacts the cluster here).
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send(format!("stderr: {line}"));
        }
    });
    (child, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubearmor_clients_read_the_agents_alerts_and_messages() {
    if !armor_testing::is_root() {
        println!("skipped: needs root (the agent's event source)");
        return;
    }
    let Some(tools) = kubearmor_tools() else {
        return;
    };
    let karmor = tools.join("karmor");
    let feed_client = tools.join("feed-client");
    let (dir, policies, marker) = marked("armor-grpc-feed", "block-marker");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: none, cluster: {server: \
         'https://127.0.0.1:1'}}]\nusers: [{name: none, user: {}}]\ncontexts: [{name: none, \
         context: {cluster: none, user: none}}]\ncurrent-context: none\n",
    )
    .unwrap();
    let out = dir.join("out.jsonl");
    let out2 = dir.join("out2.jsonl");
    let port = free_port();
    let socket = dir.join("feed.sock");
    let metrics_port = free_port();
    let metrics_addr: std::net::SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_armor-agent"))
        .arg("--policies")
        .arg(&policies)
        .args(["--enforcer", "none", "--grpc", &format!("127.0.0.1:{port}")])
        .args(["--metrics", &format!("127.0.0.1:{metrics_port}")])
        .arg("--grpc")
        .arg(format!("unix:{}", socket.display()))
        .arg("--output")
        .arg(&out)
        // A second output: it gets every line too (rotation at 64 MiB: not reached here; the
        // rotation itself is armor-runtime's tests/output.rs).
        .arg("--output")
        .arg(&out2)
        .args(["--output-max-mib", "64", "--output-keep", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _stop = KillOnDrop(agent.id());
    let mut lines = Lines::new(agent.stderr.take().unwrap());
    lines.timeout = Duration::from_secs(120);
    let serving = lines.until("serving KubeArmor's gRPC log feed");
    assert!(
        serving.ends_with(&format!("on 127.0.0.1:{port}")),
        "{serving}"
    );
    let serving = lines.until("serving KubeArmor's gRPC log feed");
    assert!(
        serving.ends_with(&format!("on unix:{}", socket.display())),
        "{serving}"
    );
    lines.until("ready:");
    // Ready (probed as Kubernetes does, until it answers), alive, and the marker's alert
    // counter not there yet.
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get(metrics_addr, "/readyz").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "/readyz: {:?}",
            http_get(metrics_addr, "/readyz")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_get(metrics_addr, "/healthz").0, 200);
    // The binary's own exec probe (`--probe`, what deploy/'s DaemonSet runs): 0 when the
    // agent answers 200, 1 with its answer otherwise.
    let probe = |path: &str| {
        Command::new(env!("CARGO_BIN_EXE_armor-agent"))
            .args(["--metrics", &metrics_addr.to_string(), "--probe", path])
            .output()
            .unwrap()
    };
    for path in ["/healthz", "/readyz"] {
        let asked = probe(path);
        assert!(asked.status.success(), "{path}: {asked:?}");
    }
    let asked = probe("/nothing");
    assert_eq!(asked.status.code(), Some(1), "{asked:?}");
    let said = String::from_utf8_lossy(&asked.stderr);
    assert!(said.contains("404 Not Found"), "{said}");
    let marker_alerts = "armor_alerts_total{policy=\"block-marker\",action=\"Audit (Block)\"}";
    let (_, before) = http_get(metrics_addr, "/metrics");
    assert_eq!(series(&before, marker_alerts), None, "{before}");
    let tcp = format!("127.0.0.1:{port}");
    let unix = format!("unix://{}", socket.display());

    // The client on KubeArmor's Go package: both health checks answer, over TCP and the socket;
    // a bad filter is refused with a status that says why.
    for addr in [&tcp, &unix] {
        let o = Command::new(&feed_client)
            .args([addr, "health"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "nonce=1234 status=SERVING",
            "{addr}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let o = Command::new(&feed_client)
            .args([addr, "alerts", "system", "1"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(3), "{addr}");
        let said = String::from_utf8_lossy(&o.stdout);
        assert!(
            said.starts_with("error: InvalidArgument: ") && said.contains("`all` or `policy`"),
            "{addr}: {said}"
        );
    }
    // It watches alerts over both, and takes the next one each.
    let mut go_clients: Vec<_> = [&tcp, &unix]
        .iter()
        .map(|addr| {
            let child = Command::new(&feed_client)
                .args([addr.as_str(), "alerts", "policy", "1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            ((*addr).clone(), child)
        })
        .collect();

    // armor's client, generated from armor's .proto.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = proto::log_service_client::LogServiceClient::new(channel);
    let reply = client
        .health_check(proto::NonceMessage { nonce: 32767 })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().retval, 32767);
    let mut ours = client
        .watch_alerts(proto::RequestMessage {
            filter: "policy".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut messages = client
        .watch_messages(proto::RequestMessage {
            filter: String::new(),
        })
        .await
        .unwrap()
        .into_inner();

    // KubeArmor's client: one selecting Process alerts, one File alerts (none comes). `--limit`
    // counts what arrives before karmor's filters.
    let (mut process, process_rx) = karmor_logs(
        &karmor,
        &kubeconfig,
        port,
        &[
            "--logFilter",
            "policy",
            "--json",
            "--operation",
            "Process",
            "--limit",
            "1",
        ],
    );
    let (mut file, file_rx) = karmor_logs(
        &karmor,
        &kubeconfig,
        port,
        &[
            "--logFilter",
            "policy",
            "--json",
            "--operation",
            "File",
            "--limit",
            "1",
        ],
    );

    // Exec the marker until every client took its alert: karmor's (the Process one printed it,
    // the File one exited at its limit) and the Go clients (exited after one). Each connects in
    // its own time, so a client that connected after an exec waits for the next one.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut printed = Vec::new();
    let karmor_alert = loop {
        assert!(Command::new(&marker).status().unwrap().success());
        std::thread::sleep(Duration::from_millis(300));
        printed.extend(process_rx.try_iter());
        let karmor_printed = printed
            .iter()
            .find(|l| l.trim_start().starts_with('{'))
            .cloned();
        let others_done = file.try_wait().unwrap().is_some()
            && go_clients
                .iter_mut()
                .all(|(_, c)| c.try_wait().unwrap().is_some());
        if let (Some(l), true) = (&karmor_printed, others_done) {
            break l.clone();
        }
        assert!(
            Instant::now() < deadline,
            "not every client took an alert: karmor printed {printed:#?}\nagent: {}",
            lines.seen
        );
    };
    let ours_alert = tokio::time::timeout(Duration::from_secs(30), ours.message())
        .await
        .expect("armor's client got an alert")
        .unwrap()
        .unwrap();
    // The metrics counted the alerts and the events, and see the gRPC clients.
    let (_, after) = http_get(metrics_addr, "/metrics");
    assert!(
        series(&after, marker_alerts).is_some_and(|n| n >= 1.0),
        "{after}"
    );
    assert!(
        series(&after, "armor_events_total{source=\"ebpf\"}").is_some_and(|n| n >= 1.0),
        "{after}"
    );
    assert!(
        series(&after, "armor_records_total{kind=\"alert\"}").is_some_and(|n| n >= 1.0),
        "{after}"
    );

    // The JSON line of the alert karmor printed (the same UpdatedTime and PID).
    println!("karmor logs --json printed: {karmor_alert}");
    let karmor_json: serde_json::Value = serde_json::from_str(&karmor_alert).unwrap();
    assert_eq!(karmor_json["PolicyName"], "block-marker", "{karmor_json}");
    assert_eq!(karmor_json["Operation"], "Process", "{karmor_json}");
    let written = alerts(&out, "block-marker", 1);
    let line = written
        .iter()
        .find(|r| r["UpdatedTime"] == karmor_json["UpdatedTime"])
        .unwrap_or_else(|| panic!("no JSON line for {karmor_json}: {written:#?}"));
    let line_text = line.to_string();
    let want = json_fields(&line_text);
    // karmor prints what it decoded from the wire with KubeArmor's Go types: every field of the
    // JSON line is there, with the same value.
    let theirs = json_fields(&karmor_json.to_string());
    for (k, v) in &want {
        assert_eq!(
            theirs.get(k),
            Some(v),
            "karmor's {k}: {karmor_json}\nline: {line_text}"
        );
    }
    // armor's client: the first alert it got has the fields of its own JSON line.
    let first = written
        .iter()
        .find(|r| r["UpdatedTime"] == ours_alert.updated_time.as_str())
        .unwrap();
    assert_eq!(alert_fields(&ours_alert), json_fields(&first.to_string()));
    assert_eq!(ours_alert.tags, "PCI,marker");
    assert_eq!(ours_alert.a_tags, ["PCI", "marker"]);

    // The Go clients got an alert each, with every field of its JSON line.
    for (addr, child) in go_clients {
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{addr}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let got: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
        let line = alerts(&out, "block-marker", 1)
            .into_iter()
            .find(|r| r["UpdatedTime"] == got["UpdatedTime"])
            .unwrap_or_else(|| panic!("{addr}: no JSON line for {got}"));
        let theirs = json_fields(&got.to_string());
        for (k, v) in json_fields(&line.to_string()) {
            assert_eq!(theirs.get(&k), Some(&v), "{addr}: {k}: {got}\nline: {line}");
        }
    }

    // The second output has the alert lines of the first.
    let first_lines = alerts(&out, "block-marker", 1);
    let second_lines = alerts(&out2, "block-marker", first_lines.len());
    assert_eq!(
        second_lines.get(..first_lines.len()),
        Some(first_lines.as_slice())
    );

    // The File client took an alert too (its limit) and printed none.
    let status = file.wait().unwrap();
    let file_out: Vec<String> = file_rx.try_iter().collect();
    assert!(
        !file_out.iter().any(|l| l.trim_start().starts_with('{')),
        "karmor --operation File printed: {file_out:#?}"
    );
    println!("karmor --operation File ({status}): {file_out:?}");
    let _ = process.wait();

    // The agent's log lines reach WatchMessages: a policy reload logs one.
    std::fs::write(policies.join("touch.yaml"), "# nothing\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), messages.message())
            .await
            .expect("a message")
            .unwrap()
            .unwrap();
        if m.message.contains("policies reloaded") {
            assert_eq!(m.r#type, "Message");
            assert!(m.timestamp > 0);
            break;
        }
        assert!(Instant::now() < deadline, "no reload message");
    }

    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// An output that fails (`/dev/full`: every write is ENOSPC) loses its records, counted in the
/// log and the metrics, while the agent keeps running and the gRPC feed still gets them:
/// telemetry is lost, never enforcement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_output_loses_records_counted_and_the_agent_keeps_running() {
    if !armor_testing::is_root() {
        println!("skipped: needs root (the agent's event source)");
        return;
    }
    let (dir, policies, marker) = marked("armor-full-output", "block-full-marker");
    let port = free_port();
    let metrics_port = free_port();
    let metrics_addr: std::net::SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_armor-agent"))
        .arg("--policies")
        .arg(&policies)
        .args([
            "--enforcer",
            "none",
            "--output",
            "/dev/full",
            "--output-max-mib",
            "0",
        ])
        .args(["--grpc", &format!("127.0.0.1:{port}")])
        .args(["--metrics", &format!("127.0.0.1:{metrics_port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _stop = KillOnDrop(agent.id());
    let mut lines = Lines::new(agent.stderr.take().unwrap());
    lines.timeout = Duration::from_secs(120);
    lines.until("ready:");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = proto::log_service_client::LogServiceClient::new(channel);
    let mut alerts_stream = client
        .watch_alerts(proto::RequestMessage {
            filter: "all".into(),
        })
        .await
        .unwrap()
        .into_inner();
    // Exec the marker until the feed delivers its alert (the client has subscribed by then).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Command::new(&marker).status().unwrap().success());
        let got = tokio::time::timeout(Duration::from_millis(500), alerts_stream.message()).await;
        if let Ok(Ok(Some(a))) = got {
            assert_eq!(a.policy_name, "block-full-marker");
            break;
        }
        assert!(Instant::now() < deadline, "no alert on the feed");
    }
    let lost = lines.until("records lost (total ");
    assert!(lost.contains("output failed ("), "{lost}");
    let (_, text) = http_get(metrics_addr, "/metrics");
    assert!(
        series(&text, "armor_output_records_total{outcome=\"lost\"}").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(agent.try_wait().unwrap().is_none(), "the agent stopped");
    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    assert!(agent.wait().unwrap().success(), "{}", lines.seen);
    let _ = std::fs::remove_dir_all(&dir);
}
