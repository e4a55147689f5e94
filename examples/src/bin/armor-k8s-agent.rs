//! `armor-k8s-agent`: the agent of one Kubernetes node (the DaemonSet in `deploy/`). Policies
//! come from the cluster's KubeArmorPolicy, KubeArmorClusterPolicy and KubeArmorHostPolicy
//! objects (each object's status says Applied or Invalid and why), pods' labels, annotations
//! and owners from the pods of this node, postures and visibility from the namespaces'
//! annotations and the settings ConfigMap, host policies select by this node's labels.
//! Enforcement, containerd and the KubeArmor JSON lines are `armor-agent`'s
//! ([`armor_runtime::agent::run_fed`]).
//!
//! ```text
//! armor-k8s-agent [--node NAME] [--kubeconfig FILE] [--config NAMESPACE/NAME]
//!                 [--containerd-socket PATH [--hook-socket PATH]] [--sync-timeout SECS]
//!                 [--enforcer auto|bpflsm|apparmor|none] [--require-enforcement]
//!                 [--apparmor-dir DIR] [--output stdout|FILE] [--event-ring-mib MIB]
//! ```
//!
//! The binary parses flags and runs two threads: the cluster side (kube-rs on a tokio runtime,
//! [`armor_k8s::watch::follow_node`]) and the agent's loop; [`armor_examples::k8s`] turns what
//! the first reports into what the second takes. The agent starts once every watch listed
//! once, with the cluster's policies and settings and every pod's identity of this node known,
//! or stops when that takes longer than `--sync-timeout` (nothing is applied then).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use armor_examples::k8s;
use armor_k8s::node::NodeSettings;
use armor_k8s::watch::{NodeUpdate, NodeWatch, follow_node_reporting, publish_enforcer};
use armor_runtime::RuntimeConfig;
use armor_runtime::agent::{self, AgentOptions, EnforcerChosen, Feed, PolicyReport};
use clap::Parser;

const AFTER_HELP: &str = "\
The node name comes from --node or the NODE_NAME environment variable (the DaemonSet sets it
from the downward API: fieldRef spec.nodeName). The cluster is reached with --kubeconfig FILE,
else KUBECONFIG, else ~/.kube/config, else the pod's service account (in-cluster).

What the agent needs from the API (deploy/rbac.yaml grants exactly this): get, list and watch
on the three policy kinds, pods (of this node: spec.nodeName), namespaces and nodes (this one:
metadata.name); patch on the policies' status; get, list and watch on the settings ConfigMap.

Settings (--config, default armor/armor-config; KubeArmor's kubearmor-config keys): cluster,
defaultFilePosture, defaultNetworkPosture, defaultCapabilitiesPosture, hostDefaultFilePosture,
hostDefaultNetworkPosture, hostDefaultCapabilitiesPosture, visibility, hostVisibility,
alertThrottling, maxAlertPerSec, throttleSec. A change is applied without a restart, all or
none; a ConfigMap with a bad value is not taken (every problem is logged with its field) and
the previous settings stay. Namespace annotations kubearmor-file-posture,
kubearmor-network-posture, kubearmor-capabilities-posture and kubearmor-visibility apply to the
namespace's pods.

The enforcer this node's agent chose is in its log and, where the agent may patch nodes
(deploy/optional/node-enforcer.yaml), on the node: label armor.dev/enforcer (BPFLSM, AppArmor
or none) and annotation armor.dev/enforcer-summary (what it enforces, or why it cannot):
kubectl get nodes -L armor.dev/enforcer. Without that permission the log says it was refused.

When the API server cannot be reached, the rules in force stay enforced and the watches retry
with backoff; the log says `readiness: stale (...)` until they answer again.

Enforcers (--enforcer) and the OCI hook (--hook-socket): as armor-agent's (armor-agent
--help). With the hook, a pod's container whose pod has not reached the agent yet waits for it
(2 s at most): its first instruction runs under the rules its pod's labels select.";

#[derive(Parser)]
#[command(
    name = "armor-k8s-agent",
    version,
    about = "armor's Kubernetes node agent: KubeArmor policy objects enforced and monitored on this node",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(flatten)]
    flags: armor_examples::cli::AgentFlags,
    /// This node's name.
    #[arg(long, env = "NODE_NAME", required_unless_present_any = ["probe", "uninstall"])]
    node: Option<String>,
    /// A kubeconfig file (default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The settings ConfigMap.
    #[arg(
        long,
        value_name = "NAMESPACE/NAME",
        default_value = "armor/armor-config"
    )]
    config: String,
    /// Seconds to wait for the first complete view of the cluster before giving up.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    sync_timeout: u64,
}

fn log(line: &str) {
    eprintln!("armor-k8s-agent: {line}");
}

/// The client `cli` names.
async fn client(cli_kubeconfig: Option<PathBuf>) -> Result<kube::Client> {
    let config = match cli_kubeconfig {
        Some(file) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("using {}", file.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("finding the cluster (KUBECONFIG, ~/.kube/config, in-cluster)")?,
    };
    kube::Client::try_from(config).context("building the API client")
}

/// How long a publication of the enforcer waits for its answer, and after a failed one before
/// it is tried again.
const PUBLISH_RETRY: Duration = Duration::from_secs(10);

/// Publishes the enforcer the agent runs with on `node` once the agent is ready: tried again
/// while the API server does not answer (every 10 s) or fails (10 s later), given up when it
/// refuses the request (a 4xx other than 409 and 429: the agent may not patch nodes).
async fn publish(client: kube::Client, node: String, chosen: mpsc::Receiver<EnforcerChosen>) {
    // The agent's thread chooses; this waits for it on a thread of tokio's blocking pool.
    let Ok(Ok(chosen)) = tokio::task::spawn_blocking(move || chosen.recv()).await else {
        return;
    };
    let label = chosen.name.unwrap_or("none");
    loop {
        let outcome = tokio::time::timeout(
            PUBLISH_RETRY,
            publish_enforcer(&client, &node, chosen.name, &chosen.summary),
        )
        .await;
        match outcome {
            Ok(Ok(())) => {
                log(&format!(
                    "enforcer published on node {node}: {}={label}",
                    armor_k8s::watch::ENFORCER_LABEL
                ));
                return;
            }
            Ok(Err(kube::Error::Api(e)))
                if (400..500).contains(&e.code) && e.code != 409 && e.code != 429 =>
            {
                log(&format!(
                    "enforcer not published on node {node} ({}); it is in this log only (the \
                     agent may patch its node with deploy/optional/node-enforcer.yaml)",
                    e.message
                ));
                return;
            }
            Ok(Err(e)) => {
                log(&format!(
                    "enforcer not published on node {node} yet: {e}; trying again in {} s",
                    PUBLISH_RETRY.as_secs()
                ));
                tokio::time::sleep(PUBLISH_RETRY).await;
            }
            Err(_) => log(&format!(
                "enforcer not published on node {node} yet: no answer within {} s; trying again",
                PUBLISH_RETRY.as_secs()
            )),
        }
    }
}

/// Starts the cluster side on its own thread: what it reports arrives on the receiver, which
/// disconnects when it ends (it cannot reach a client). The enforcer the agent chooses
/// (`chosen`) is published on the node by the same thread, and what the agent reports about
/// its policies (`reports`) goes into their statuses (this node's entries).
fn cluster_thread(
    kubeconfig: Option<PathBuf>,
    watch: NodeWatch,
    chosen: mpsc::Receiver<EnforcerChosen>,
    reports: mpsc::Receiver<PolicyReport>,
) -> Result<mpsc::Receiver<NodeUpdate>> {
    let (tx, rx) = mpsc::channel();
    // The agent's thread reports on a std channel; the cluster side waits on tokio's.
    let (report_tx, report_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("armor-k8s-reports".into())
        .spawn(move || {
            for r in reports {
                if report_tx.send(k8s::node_report(r)).is_err() {
                    return;
                }
            }
        })
        .context("starting the report thread")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    std::thread::Builder::new()
        .name("armor-k8s".into())
        .spawn(move || {
            runtime.block_on(async move {
                match client(kubeconfig).await {
                    Ok(c) => {
                        let publishing = publish(c.clone(), watch.node.clone(), chosen);
                        let reports = futures_of(report_rx);
                        let following = follow_node_reporting(c, &watch, reports, |u| {
                            let _gone = tx.send(u);
                        });
                        tokio::join!(following, publishing);
                    }
                    Err(e) => {
                        let _gone = tx.send(NodeUpdate::Problem(format!("{e:#}")));
                    }
                }
            });
        })
        .context("starting the cluster thread")?;
    Ok(rx)
}

/// The items of `rx` as a stream, until its senders are gone.
fn futures_of<T>(rx: tokio::sync::mpsc::UnboundedReceiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// What the first complete view of the cluster holds.
struct FirstView {
    policy: Arc<armor_core::CompiledPolicy>,
    settings: NodeSettings,
    /// Everything else, in order (pod identities, staleness).
    rest: Vec<Feed>,
}

/// Waits for every watch to list once, up to `timeout`.
fn first_view(
    rx: &mpsc::Receiver<NodeUpdate>,
    base: &RuntimeConfig,
    timeout: Duration,
) -> Result<FirstView> {
    let deadline = Instant::now() + timeout;
    let mut policy = None;
    let mut settings = NodeSettings::default();
    let mut rest = Vec::new();
    let mut last_problem = String::from("no answer");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let update = match rx.recv_timeout(left) {
            Ok(u) => u,
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "the cluster was not listed within {} s (last problem: {last_problem}); nothing \
                 was applied",
                timeout.as_secs()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("the cluster cannot be followed: {last_problem}")
            }
        };
        match update {
            NodeUpdate::Policies { policy: p, .. } => policy = Some(p),
            NodeUpdate::Settings(s) => settings = *s,
            NodeUpdate::Synced => {
                let policy = policy.ok_or_else(|| anyhow!("listed without policies"))?;
                return Ok(FirstView {
                    policy,
                    settings,
                    rest,
                });
            }
            NodeUpdate::Problem(p) => {
                log(&p);
                last_problem = p;
            }
            other => rest.extend(k8s::feed(base, other, &mut log)),
        }
    }
}

fn main() -> Result<()> {
    armor_examples::init_logging();
    let cli = Cli::parse();
    if let (Some(path), Some(addr)) = (&cli.flags.probe, cli.flags.metrics) {
        return armor_examples::cli::probe(addr, path);
    }
    if cli.flags.uninstall {
        return armor_examples::cli::uninstall(&cli.flags, &mut log);
    }
    let Some(node) = cli.node.clone() else {
        bail!("--node NAME (or NODE_NAME) is needed");
    };
    let stop = armor_examples::cli::stop_on_signals()?;
    let Some((config_ns, config_name)) = cli.config.split_once('/') else {
        bail!("--config `{}`: expected NAMESPACE/NAME", cli.config);
    };
    let mut out = armor_examples::cli::open_output(
        &cli.flags.output,
        cli.flags.output_max_mib,
        cli.flags.output_keep,
    )?;
    let mut base = RuntimeConfig::default().require_enforcement(cli.flags.require_enforcement);
    base.host_name.clone_from(&node);
    let watch = NodeWatch::new(&node).config(config_ns, config_name);
    log(&format!(
        "node {node}: following the cluster (settings in ConfigMap {})",
        cli.config
    ));
    let started = Instant::now();
    let (chosen_tx, chosen_rx) = mpsc::channel();
    let (reports_tx, reports_rx) = mpsc::channel();
    let updates = cluster_thread(cli.kubeconfig.clone(), watch, chosen_rx, reports_rx)?;
    let view = first_view(&updates, &base, Duration::from_secs(cli.sync_timeout))?;
    log(&format!(
        "cluster listed in {} ms: {} rules, {} pod identities",
        started.elapsed().as_millis(),
        view.policy.rules().len(),
        view.rest
            .iter()
            .filter(|f| matches!(f, Feed::Identity { .. }))
            .count()
    ));
    let options = cli.flags.serve_endpoints(
        cli.flags.apply(
            AgentOptions::fed(view.policy)
                .config(k8s::runtime_config(&base, &view.settings))
                .report_choice(chosen_tx)
                .report_policies(reports_tx),
        ),
        &mut log,
    )?;
    // The agent's feed: the first view's items, then whatever the cluster side reports.
    let (feed_tx, feed_rx) = mpsc::channel();
    for item in view.rest {
        feed_tx
            .send(item)
            .map_err(|_| anyhow!("the agent's feed closed"))?;
    }
    std::thread::Builder::new()
        .name("armor-k8s-feed".into())
        .spawn(move || {
            for update in updates {
                for item in k8s::feed(&base, update, &mut log) {
                    if feed_tx.send(item).is_err() {
                        return;
                    }
                }
            }
            log("the cluster side ended");
        })
        .context("starting the feed thread")?;
    agent::run_fed(&options, &feed_rx, &mut out, &mut log, &stop).map_err(|e| cli.flags.explain(e))
}
