//! The Kubernetes side against a real API server (`scripts/k8s-tools`): cold start, update
//! latency, the agent's memory with thousands of policies, and many agents on one API server.
//!
//! ```text
//! export ARMOR_K8S_TESTENV=$(scripts/k8s-tools)
//! cargo build --release -p armor-examples --bin armor-k8s-agent   # for the RSS figure (root)
//! cargo bench -p armor-benches --bench k8s
//! ```
//!
//! 1. **Cold start**: 1,000 KubeArmorPolicy objects and 110 pods on one node (the kubelet's
//!    default pod limit) are listed by [`follow_node`], validated and compiled, then put in
//!    force by a [`Runtime`] with a recording enforcer for the 110 pods' containers (by their
//!    CRI labels, as containerd reports them). Printed: time to the first complete view, time
//!    to every container's rules applied, and the rules applied.
//! 2. **Update latency**: 100 times, one policy's path changes (a merge patch); the time from
//!    the watch event's arrival in [`follow_node`] (`NodeUpdate::Policies::since`) until the
//!    runtime took the new policies for every workload (the issue's goal), split into
//!    validation and compile of all 1,000 and applying for 110 containers; and the time from
//!    the patch request (the API server's write and watch delivery included): p50, p99, max.
//! 3. **Agent RSS**: the real `armor-k8s-agent` (audit-only, root: its eBPF event source
//!    loads) runs under the agent's RBAC until `ready`, and its VmRSS (split into anonymous,
//!    file-backed and shared pages) and VmHWM are read: with no policy (its baseline), with
//!    the 1,000 policies, and with 5,000 KubeArmorClusterPolicy objects more. The agent runs
//!    with deploy/workload.yaml's `GLIBC_TUNABLES` (`ARMOR_K8S_BENCH_MALLOC=default`: without)
//!    and `--event-ring-mib` (`ARMOR_K8S_BENCH_RING_MIB=N`: N instead);
//!    `ARMOR_K8S_BENCH_SMAPS=1` prints its largest mappings too.
//! 4. **Many agents**: 10, then 50 agent processes (this binary with `--sim-agent`: the
//!    agent's Kubernetes side and its runtime, no kernel), each its own node with 100 pods, all
//!    watching the one API server with 6,000 policies. Printed: their memory in total, the API
//!    server's requests (its `apiserver_request_total`) during their cold start, at rest and
//!    while 10 policies change per second, and how many watches are open.
//!    `ARMOR_K8S_BENCH_AGENTS` chooses the runs (default `10,50`; empty: none).
//! 5. **Agent RSS with the 5,000 cluster policies alone** (the issue's case): the 1,000
//!    namespaced policies deleted, the agent measured as in 3.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "a bench binary: a failure is the bench's failure"
)]

#[path = "../../armor-k8s/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use armor_k8s::watch::{NodeUpdate, NodeWatch, follow_node};
use armor_runtime::containerd::ContainerInfo;
use armor_runtime::{Runtime, RuntimeConfig};
use armor_testing::recording::RecordingEnforcer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, Resource};

/// How many objects are created at once.
const CONCURRENCY: usize = 32;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--sim-agent") {
        sim_agent(&args[2], Path::new(&args[3]));
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench());
}

/// Creates `objects` with at most [`CONCURRENCY`] requests in flight.
async fn create_all<K>(api: &Api<K>, objects: Vec<K>)
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    futures::stream::iter(objects)
        .map(|o| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &o).await.unwrap() }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
}

fn object(value: serde_json::Value) -> DynamicObject {
    serde_json::from_value(value).unwrap()
}

/// Policy `i` of the namespaced set: a file rule for the pods labelled `app: app<i % 50>`.
fn namespaced_policy(i: usize, version: usize) -> DynamicObject {
    object(serde_json::json!({
        "apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorPolicy",
        "metadata": {"name": format!("p-{i}"), "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": format!("app{}", i % 50)}},
            "file": {"matchPaths": [{"path": format!("/data/{i}/v{version}/secret")}]},
            "process": {"matchDirectories": [{"dir": format!("/opt/tool{i}/"), "recursive": true}]},
            "action": "Block"}
    }))
}

fn pod(node: &str, i: usize) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{node}-pod-{i}"), "namespace": "default",
            "labels": {"app": format!("app{}", i % 50)}},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox"}]}
    }))
    .unwrap()
}

async fn create_node(client: &Client, name: &str) {
    let n: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &n)
        .await
        .unwrap();
}

/// The containerd view of a pod's container (the CRI labels the runtime matches pods by).
fn container_of(p: &Pod, n: usize) -> ContainerInfo {
    let mut info = ContainerInfo::default();
    info.id = format!("c{n:06}");
    info.containerd_namespace = "k8s.io".into();
    info.pid = Some(1_000 + u32::try_from(n).unwrap());
    for (k, v) in [
        ("io.kubernetes.pod.uid", p.metadata.uid.clone().unwrap()),
        ("io.kubernetes.pod.name", p.metadata.name.clone().unwrap()),
        ("io.kubernetes.pod.namespace", "default".to_string()),
        ("io.kubernetes.container.name", "main".to_string()),
    ] {
        info.labels.insert(k.to_string(), v);
    }
    info
}

/// Follows `node` on a task of its own: what it reports, each with when it arrived.
fn follow(
    client: Client,
    node: &str,
) -> (
    mpsc::Receiver<(Instant, NodeUpdate)>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel();
    let watch = NodeWatch::new(node);
    let task = tokio::spawn(async move {
        follow_node(client, &watch, |u| {
            let _ = tx.send((Instant::now(), u));
        })
        .await;
    });
    (rx, task)
}

/// One update's times (see the header, 2.).
struct Timing {
    /// From the patch request.
    request: Duration,
    /// From the watch event's arrival in `follow_node`.
    event: Duration,
    /// From the watch event until the compiled policies were handed over.
    compile: Duration,
    /// `Runtime::replace_policy`.
    apply: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

async fn bench() {
    let Some((cp, admin)) = support::with_deploy_rbac("bench").await else {
        return;
    };
    let agent_client = cp.client_with(support::AGENT_TOKEN).await;

    // --- 1. Cold start -------------------------------------------------------------------
    create_node(&admin, "bench-node").await;
    let pods_api: Api<Pod> = Api::namespaced(admin.clone(), "default");
    create_all(&pods_api, (0..110).map(|i| pod("bench-node", i)).collect()).await;
    // The agent's baseline: the node and its pods, no policy.
    agent_rss(&cp, "no policy");
    let t = Instant::now();
    let policies = support::policy_api(&admin, "KubeArmorPolicy", Some("default"));
    create_all(
        &policies,
        (0..1_000).map(|i| namespaced_policy(i, 0)).collect(),
    )
    .await;
    println!("setup: 1,000 policies created in {}", ms(t.elapsed()));
    let pods: Vec<Pod> = pods_api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("bench-node"))
        .collect();

    let start = Instant::now();
    let (rx, follower) = follow(agent_client.clone(), "bench-node");
    let latest: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let latest_w = latest.clone();
    let (done_tx, done_rx) = mpsc::channel::<(Duration, Duration, usize)>();
    let (lat_tx, lat_rx) = mpsc::channel::<Timing>();
    // The runtime's side, on a thread of its own as in the agent.
    std::thread::spawn(move || {
        let mut identities = Vec::new();
        let mut policy = None;
        let synced = loop {
            let (at, u) = rx.recv().unwrap();
            match u {
                NodeUpdate::Policies { policy: p, .. } => policy = Some(p),
                NodeUpdate::Pod(effect) => identities.extend(fed_identities(&effect)),
                NodeUpdate::Synced => break at,
                _ => {}
            }
        };
        let mut config = RuntimeConfig::default();
        config.host_name = "bench-node".into();
        let enforcer = Arc::new(RecordingEnforcer::new());
        let mut rt = Runtime::new(config, policy.unwrap(), vec![enforcer.clone()], None);
        for (key, identity) in &identities {
            rt.container_identity(key, identity.as_ref());
        }
        for (n, p) in pods.iter().enumerate() {
            rt.add_container_with_cgroup(&container_of(p, n), 10_000 + n as u64);
        }
        let rules: usize = enforcer
            .installed()
            .values()
            .map(|a| a.lines().count())
            .sum();
        let applied = Instant::now();
        done_tx
            .send((synced - start, applied - start, rules))
            .unwrap();
        // --- 2. Updates: every new policy set applied, timed from the patch request and from
        // the watch event.
        while let Ok((at, u)) = rx.recv() {
            if let NodeUpdate::Policies { policy, since } = u {
                rt.replace_policy(policy).unwrap();
                let applied = Instant::now();
                if let Some(t) = latest_w.lock().unwrap().take() {
                    lat_tx
                        .send(Timing {
                            request: applied - t,
                            event: applied - since,
                            compile: at - since,
                            apply: applied - at,
                        })
                        .unwrap();
                }
            }
        }
    });
    let (synced, applied, rules) = done_rx.recv().unwrap();
    println!(
        "cold start, 1,000 policies and 110 pods: first complete view {}, every rule applied \
         {} ({} rule lines installed for 110 containers and the host)",
        ms(synced),
        ms(applied),
        rules
    );

    let mut timings = Vec::new();
    for n in 1..=100 {
        let i = n * 7 % 1_000;
        let p = namespaced_policy(i, n);
        let patch = Patch::Merge(serde_json::json!({"spec": p.data["spec"].clone()}));
        // Timed from the request: its answer can come after the watch event.
        *latest.lock().unwrap() = Some(Instant::now());
        policies
            .patch(&format!("p-{i}"), &PatchParams::default(), &patch)
            .await
            .unwrap();
        let d = tokio::task::block_in_place(|| lat_rx.recv_timeout(Duration::from_secs(30)))
            .expect("the update was applied");
        timings.push(d);
    }
    println!("policy update (1,000 policies, 110 containers), 100 updates:");
    for (what, part) in [
        (
            "watch event -> runtime updated (the goal)",
            (|t: &Timing| t.event) as fn(&Timing) -> Duration,
        ),
        ("  of which validate + compile all", |t| t.compile),
        ("  of which apply for every workload", |t| t.apply),
        ("patch request -> runtime updated", |t| t.request),
    ] {
        let mut d: Vec<Duration> = timings.iter().map(part).collect();
        d.sort();
        println!(
            "  {what}: p50 {}, p99 {}, max {}",
            ms(percentile(&d, 0.5)),
            ms(percentile(&d, 0.99)),
            ms(d[d.len() - 1])
        );
    }

    // The follower and its runtime are done.
    follower.abort();
    agent_rss(&cp, "1,000 policies (namespaced)");

    // --- 3. The agent's memory with 5,000 cluster policies more ---------------------------
    let t = Instant::now();
    let cluster = support::policy_api(&admin, "KubeArmorClusterPolicy", None);
    create_all(&cluster, (0..5_000).map(support::cluster_policy).collect()).await;
    println!(
        "setup: 5,000 cluster policies created in {}",
        ms(t.elapsed())
    );
    agent_rss(&cp, "6,000 policies (1,000 namespaced, 5,000 cluster)");

    // --- 4. Many agents ---------------------------------------------------------------
    let kubeconfig = cp.kubeconfig("sim", support::AGENT_TOKEN);
    let mut made = 0;
    // ARMOR_K8S_BENCH_AGENTS: the simulations to run (default "10,50"; empty for none).
    let runs: Vec<usize> = std::env::var("ARMOR_K8S_BENCH_AGENTS")
        .unwrap_or_else(|_| "10,50".into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .expect("ARMOR_K8S_BENCH_AGENTS: numbers, comma-separated")
        })
        .collect();
    for agents in runs {
        let t = Instant::now();
        for a in made..agents {
            let node = format!("sim-{a}");
            create_node(&admin, &node).await;
            create_all(&pods_api, (0..100).map(|i| pod(&node, i)).collect()).await;
        }
        made = agents;
        println!(
            "setup: {agents} nodes with 100 pods each (made in {})",
            ms(t.elapsed())
        );
        simulate(&admin, agents, &kubeconfig).await;
    }

    // --- 5. The memory goal's case: the 5,000 cluster policies alone -------------------------
    policies
        .delete_collection(&Default::default(), &Default::default())
        .await
        .unwrap();
    agent_rss(&cp, "5,000 cluster policies");
}

/// The pod identities `armor-k8s-agent` feeds its runtime for `effect`
/// ([`armor_examples::k8s::pod_feed`]), as `Runtime::container_identity` takes them.
fn fed_identities(
    effect: &armor_k8s::pods::PodEffect,
) -> Vec<(
    armor_runtime::index::IdentityKey,
    Option<armor_runtime::index::PodIdentity>,
)> {
    armor_examples::k8s::pod_feed(effect)
        .into_iter()
        .filter_map(|f| match f {
            armor_runtime::agent::Feed::Identity { key, identity } => Some((key, identity)),
            _ => None,
        })
        .collect()
}

/// `VmRSS`, `VmHWM`, `RssAnon`, `RssFile` and `RssShmem` of `pid`, in KiB.
fn memory_of(pid: u32) -> [u64; 5] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    [
        field("VmRSS:"),
        field("VmHWM:"),
        field("RssAnon:"),
        field("RssFile:"),
        field("RssShmem:"),
    ]
}

/// The 12 mappings of `pid` with the most resident memory (`ARMOR_K8S_BENCH_SMAPS=1`).
fn print_largest_mappings(pid: u32) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut maps: Vec<(u64, String)> = Vec::new();
    let mut name = String::new();
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            name = line
                .split_whitespace()
                .skip(5)
                .collect::<Vec<_>>()
                .join(" ");
            if name.is_empty() {
                name = "[anonymous]".into();
            }
        } else if first == "Rss:" {
            let kb = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            maps.push((kb, name.clone()));
        }
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.0));
    for (kb, name) in maps.iter().take(12) {
        println!("    {kb:>8} KiB  {name}");
    }
}

/// How deploy/workload.yaml runs the agent: its `GLIBC_TUNABLES` (`None` with
/// `ARMOR_K8S_BENCH_MALLOC=default`) and its `--event-ring-mib` (`ARMOR_K8S_BENCH_RING_MIB`
/// instead when set).
fn as_deployed() -> (Option<String>, String) {
    let workload = std::fs::read_to_string(support::repo().join("deploy/workload.yaml")).unwrap();
    let mut lines = workload.lines();
    lines
        .by_ref()
        .find(|l| l.trim() == "- name: GLIBC_TUNABLES")
        .expect("deploy/workload.yaml sets GLIBC_TUNABLES");
    let tunables = lines
        .next()
        .and_then(|l| l.trim().strip_prefix("value: "))
        .expect("GLIBC_TUNABLES: value on the next line")
        .to_string();
    let ring = workload
        .lines()
        .find_map(|l| l.trim().strip_prefix("- --event-ring-mib="))
        .expect("deploy/workload.yaml sets --event-ring-mib")
        .to_string();
    (
        (std::env::var("ARMOR_K8S_BENCH_MALLOC").as_deref() != Ok("default")).then_some(tunables),
        std::env::var("ARMOR_K8S_BENCH_RING_MIB").unwrap_or(ring),
    )
}

/// Runs the real agent with every policy of the API server and reads its memory.
fn agent_rss(cp: &support::ControlPlane, what: &str) {
    let binary = std::env::var_os("ARMOR_K8S_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::repo().join("target/release/armor-k8s-agent"));
    if !binary.is_file() || !armor_testing::is_root() {
        println!(
            "agent RSS: not measured: needs root and {} (cargo build --release -p \
             armor-examples --bin armor-k8s-agent, or ARMOR_K8S_AGENT=PATH)",
            binary.display()
        );
        return;
    }
    let mut agent = Command::new(&binary);
    // As deploy/workload.yaml runs it (ARMOR_K8S_BENCH_MALLOC=default: glibc's defaults).
    let (tunables, ring) = as_deployed();
    match tunables {
        Some(tunables) => agent.env("GLIBC_TUNABLES", tunables),
        None => agent.env_remove("GLIBC_TUNABLES"),
    };
    let mut child = agent
        .arg(format!("--event-ring-mib={ring}"))
        .args(["--node", "bench-node", "--enforcer", "none", "--kubeconfig"])
        .arg(cp.kubeconfig("rss", support::AGENT_TOKEN))
        .args(["--output", "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let mut lines = armor_testing::lines::Lines::new(child.stderr.take().unwrap());
    let listed = lines.until("cluster listed in");
    lines.until("ready:");
    let ready = t.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let [rss, hwm, anon, file, shmem] = memory_of(child.id());
    if std::env::var_os("ARMOR_K8S_BENCH_SMAPS").is_some() {
        print_largest_mappings(child.id());
    }
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "agent RSS with {what} and 110 pods: VmRSS {:.1} MiB (anonymous {:.1}, file {:.1}, \
         shared {:.1}), VmHWM {:.1} MiB (ready in {}; {})",
        rss as f64 / 1024.0,
        anon as f64 / 1024.0,
        file as f64 / 1024.0,
        shmem as f64 / 1024.0,
        hwm as f64 / 1024.0,
        ms(ready),
        listed.trim_start_matches("armor-k8s-agent: ")
    );
}

/// The API server's `apiserver_request_total` by verb and resource.
async fn requests(admin: &Client) -> BTreeMap<String, f64> {
    support::request_counts(admin).await
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    let mut parts = Vec::new();
    let mut total = 0.0;
    for (verb, v) in after {
        let d = v - before.get(verb).copied().unwrap_or(0.0);
        if d >= 0.5 {
            parts.push(format!("{verb} {d:.0}"));
            total += d;
        }
    }
    format!("{total:.0} ({})", parts.join(", "))
}

/// The open watches of the API server (`apiserver_longrunning_requests`, verb WATCH).
async fn watches(admin: &Client) -> f64 {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = admin.request_text(req).await.unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_longrunning_requests{") && l.contains("verb=\"WATCH\"")
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// `agents` simulated agents (this binary, `--sim-agent`) on nodes `sim-0`…
async fn simulate(admin: &Client, agents: usize, kubeconfig: &Path) {
    let before = requests(admin).await;
    let watches_before = watches(admin).await;
    let t = Instant::now();
    let me = std::env::current_exe().unwrap();
    let mut children: Vec<Child> = (0..agents)
        .map(|a| {
            Command::new(&me)
                .arg("--sim-agent")
                .arg(format!("sim-{a}"))
                .arg(kubeconfig)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ready = Vec::new();
    for c in &mut children {
        let mut line = String::new();
        let mut out = std::io::BufReader::new(c.stdout.take().unwrap());
        tokio::task::block_in_place(|| out.read_line(&mut line)).unwrap();
        assert!(
            line.starts_with("synced "),
            "a simulated agent failed: {line}"
        );
        ready.push(t.elapsed());
    }
    let all_synced = t.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cold = requests(admin).await;
    let open = watches(admin).await - watches_before;
    let memory: u64 = children.iter().map(|c| memory_of(c.id())[0]).sum();
    // At rest.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rest = requests(admin).await;
    // 10 policy changes per second for 10 s.
    let policies = support::policy_api(admin, "KubeArmorPolicy", Some("default"));
    for n in 0..100 {
        let i = (n * 13) % 1_000;
        let p = namespaced_policy(i, 1_000 + n);
        let patch = Patch::Merge(serde_json::json!({"spec": p.data["spec"].clone()}));
        policies
            .patch(&format!("p-{i}"), &PatchParams::default(), &patch)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let churn = requests(admin).await;
    let memory_after: u64 = children.iter().map(|c| memory_of(c.id())[0]).sum();
    for c in &mut children {
        drop(c.stdin.take());
    }
    for c in &mut children {
        let _ = c.wait();
    }
    println!(
        "{agents} agents, 6,000 policies, 100 pods each: all synced in {} (first {}); {open:.0} \
         watches open ({:.1} per agent); agents' RSS {:.0} MiB in total ({:.1} MiB each), {:.0} \
         MiB after the churn; API server requests: cold start {}, 10 s at rest {}, 100 policy \
         changes in 12 s {}",
        ms(all_synced),
        ms(ready.iter().min().copied().unwrap_or_default()),
        open / agents as f64,
        memory as f64 / 1024.0,
        memory as f64 / 1024.0 / agents as f64,
        memory_after as f64 / 1024.0,
        delta(&before, &cold),
        delta(&cold, &rest),
        delta(&rest, &churn),
    );
}

/// A simulated agent: the Kubernetes side of `armor-k8s-agent` for `node` and a runtime taking
/// its policies (no kernel); prints `synced <ms>` once it has its first complete view, and
/// runs until its stdin closes.
fn sim_agent(node: &str, kubeconfig: &Path) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let node_name = node.to_string();
    let kubeconfig = kubeconfig.to_path_buf();
    std::thread::spawn(move || {
        rt.block_on(async move {
            let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .unwrap();
            let client = Client::try_from(config).unwrap();
            follow_node(client, &NodeWatch::new(&node_name), |u| {
                let _ = tx.send(u);
            })
            .await;
        });
    });
    std::thread::spawn(|| {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
        std::process::exit(0);
    });
    let t = Instant::now();
    let mut config = RuntimeConfig::default();
    config.host_name = node.to_string();
    let mut runtime: Option<Runtime> = None;
    let mut first = None;
    let mut identities = Vec::new();
    for u in rx {
        match u {
            NodeUpdate::Policies { policy: p, .. } => match &mut runtime {
                Some(r) => r.replace_policy(p).unwrap(),
                None => first = Some(p),
            },
            NodeUpdate::Pod(effect) => {
                let fed = fed_identities(&effect);
                match &mut runtime {
                    Some(r) => {
                        for (k, i) in &fed {
                            r.container_identity(k, i.as_ref());
                        }
                    }
                    None => identities.extend(fed),
                }
            }
            NodeUpdate::Synced => {
                let mut r = Runtime::new(config.clone(), first.take().unwrap(), vec![], None);
                for (k, i) in &identities {
                    r.container_identity(k, i.as_ref());
                }
                runtime = Some(r);
                println!("synced {}", t.elapsed().as_millis());
                let _ = std::io::stdout().flush();
            }
            _ => {}
        }
    }
}
