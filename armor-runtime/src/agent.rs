//! The host agent's whole loop, for `armor-agent` and for users who run it inside their own
//! process: load the policies (and the service inventory), choose the enforcer, load the eBPF
//! event source, follow containerd and the inventory's systemd services, and write KubeArmor
//! JSON lines until asked to stop.
//!
//! Under an orchestrator ([`run_fed`]: `armor-k8s-agent`), the policies, the pods' identities
//! and the configuration come through a channel of [`Feed`] items instead of files.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use armor_runtime::agent::{AgentOptions, run};
//! let options = AgentOptions::new("/etc/armor/policies")
//!     .containerd_socket("/run/containerd/containerd.sock");
//! let stop = AtomicBool::new(false); // set it from a signal handler
//! let mut out = std::io::stdout();
//! run(&options, &mut out, &mut |line| eprintln!("agent: {line}"), &stop)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant, SystemTime};

use armor_core::inventory::Inventory;
use armor_core::{CompiledPolicy, LoadLimits, PolicyFiles};
use armor_ebpf::{EventSource, Options};

use crate::containerd::ContainerInfo;
use crate::containerd::{ContainerEvent, Containerd};
use crate::enforcement::{Enforcement, EnforcementOptions, EnforcerChoice};
use crate::error::{Error, Result};
use crate::hook::{Admission, HookRequest, HookServer, HookState};
use crate::index::{ContainerChange, IdentityKey, PodIdentity};
use crate::runtime::{Runtime, RuntimeConfig, load_policy_files};

/// Where the agent's policies come from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PolicySource {
    /// A directory of policy files, re-read when a file in it changes.
    Directory(PathBuf),
    /// An orchestrator ([`run_fed`]): the policies in force at the start; the later ones
    /// arrive as [`Feed::Policy`].
    Fed(Arc<CompiledPolicy>),
}

/// What an orchestrator tells a running agent ([`run_fed`]). Items are taken in order, between
/// two turns of the loop.
#[derive(Debug)]
#[non_exhaustive]
pub enum Feed {
    /// New policies for every workload, all or none ([`Runtime::replace_policy`]); a refusal
    /// is logged and the previous policies stay.
    Policy(Arc<CompiledPolicy>),
    /// A container's pod identity, or `None` to forget it ([`Runtime::container_identity`]).
    Identity {
        /// Which container.
        key: IdentityKey,
        /// Its pod's labels, annotations and owner.
        identity: Option<PodIdentity>,
    },
    /// A new configuration, all or none ([`Runtime::reconfigure`]); a refusal is logged and
    /// the previous one stays.
    Config(Box<RuntimeConfig>),
    /// The orchestrator cannot be reached: what is in force stays, readiness says `stale` and
    /// why.
    Stale(String),
    /// The orchestrator answers again.
    Fresh,
}

/// What the agent runs with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AgentOptions {
    /// Where the policies come from.
    pub policies: PolicySource,
    /// The containerd socket to follow containers on (`None`: the host only).
    pub containerd_socket: Option<PathBuf>,
    /// The service inventory ([`armor_core::inventory`]): the systemd services that are
    /// workloads of their own (re-read when it changes; `None`: every service is the host's).
    pub inventory: Option<PathBuf>,
    /// The enforcer to use.
    pub enforcer: EnforcerChoice,
    /// Settings of the enforcers.
    pub enforcement: EnforcementOptions,
    /// Runtime settings (names, postures, throttling).
    pub config: RuntimeConfig,
    /// The socket the OCI hook (`armor-oci-hook`) asks on before a container is created
    /// ([`crate::hook`]; needs `containerd_socket`). `None`: containers get their rules from
    /// containerd's `/tasks/create` event, which can arrive after the entrypoint started.
    pub hook_socket: Option<PathBuf>,
    /// Who may ask on the hook socket, how many at once, and how long each is served
    /// ([`crate::hook::HookOptions`]).
    pub hook_options: crate::hook::HookOptions,
    /// The size of the event source's ring buffer, in bytes ([`Options::ring_bytes`]: a power
    /// of two, a multiple of the page size; 8 MiB by default). User space maps its pages
    /// twice, so the agent's resident memory counts it twice; a smaller ring holds a shorter
    /// burst, and what it cannot hold is counted and logged (`events lost in the kernel`).
    pub event_ring_bytes: u32,
    /// Under an orchestrator, how long the OCI hook's answer for a pod's container (one whose
    /// CRI labels name its pod) waits for the pod's identity ([`Feed::Identity`]) before it is
    /// decided without it: refused with [`RuntimeConfig::require_enforcement`], else admitted
    /// with the container's own labels, and logged either way.
    pub identity_wait: Duration,
    /// Told once which enforcer the agent runs with, when it is ready (the enforcer chosen,
    /// the event source loaded, every workload's rules applied; an agent that fails to start
    /// tells nothing): an embedder publishes it where its users look (the Kubernetes agent
    /// labels its node). `None`: only the log says it.
    pub chosen: Option<std::sync::mpsc::Sender<EnforcerChosen>>,
    /// Told what becomes of each policy set and what is not enforced of each policy
    /// ([`PolicyReport`]): an orchestrator writes it in each policy's status. `None`: only the
    /// log says it.
    pub policy_reports: Option<std::sync::mpsc::Sender<PolicyReport>>,
    /// Where records and the agent's own log lines also go, besides `out`: the gRPC feed
    /// KubeArmor's clients read ([`crate::feeder`]). Each client loses what its queue cannot
    /// hold, counted, and the log says so every 10 s while it does.
    pub feed: Option<crate::feeder::Feed>,
    /// Where the agent counts what it does and says whether it is alive and ready
    /// ([`crate::metrics`]). `None`: nothing is counted.
    pub metrics: Option<crate::metrics::Metrics>,
}

/// What an agent tells about its policies ([`AgentOptions::policy_reports`]): once it is ready,
/// the answer to the policies it started with; then one report for each policy set fed to it
/// ([`Feed::Policy`]), in order; one when a refused set is taken on a new try (or refused
/// again for another reason); and one whenever what it does not enforce changed (checked once
/// a second: a container came or went, an apply failed).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PolicyReport {
    /// The policy set this report answers (the one the agent started with, or one fed to
    /// it), with `Ok` when it is in force or `Err(why)` when it was refused and the previous
    /// set stays in force. `None`: only what is enforced changed.
    pub answered: Option<(Arc<CompiledPolicy>, std::result::Result<(), String>)>,
    /// What is not enforced of each policy now ([`Runtime::policy_gaps`]); a policy enforced
    /// in full is absent.
    pub gaps: BTreeMap<crate::coverage::PolicyName, Vec<String>>,
}

/// The enforcer an agent chose ([`AgentOptions::chosen`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnforcerChosen {
    /// The enforcer's name (`BPFLSM`, `AppArmor`); `None`: audit-only, nothing is denied.
    pub name: Option<&'static str>,
    /// What the log says: the rules the enforcer carries and those it does not, or why each
    /// enforcer tried was refused.
    pub summary: String,
}

impl AgentOptions {
    /// The agent on the policies under `policies`, the host only, enforcer `auto`.
    pub fn new(policies: impl Into<PathBuf>) -> Self {
        Self::with_policies(PolicySource::Directory(policies.into()))
    }

    /// The agent under an orchestrator ([`run_fed`]), starting with `policy`, the host only,
    /// enforcer `auto`.
    pub fn fed(policy: Arc<CompiledPolicy>) -> Self {
        Self::with_policies(PolicySource::Fed(policy))
    }

    fn with_policies(policies: PolicySource) -> Self {
        Self {
            policies,
            containerd_socket: None,
            inventory: None,
            enforcer: EnforcerChoice::Auto,
            enforcement: EnforcementOptions::default(),
            config: RuntimeConfig::default(),
            hook_socket: None,
            hook_options: crate::hook::HookOptions::default(),
            event_ring_bytes: Options::default().ring_bytes,
            identity_wait: Duration::from_secs(2),
            chosen: None,
            policy_reports: None,
            feed: None,
            metrics: None,
        }
    }

    /// The same with this configuration.
    #[must_use]
    pub fn config(mut self, config: RuntimeConfig) -> Self {
        self.config = config;
        self
    }

    /// The same answering the OCI hook on `socket`.
    #[must_use]
    pub fn hook_socket(mut self, socket: impl Into<PathBuf>) -> Self {
        self.hook_socket = Some(socket.into());
        self
    }

    /// The same serving the OCI hook with `options` (who may ask, how many at once, how
    /// long).
    #[must_use]
    pub fn hook_options(mut self, options: crate::hook::HookOptions) -> Self {
        self.hook_options = options;
        self
    }

    /// The same following the containerd at `socket`.
    #[must_use]
    pub fn containerd_socket(mut self, socket: impl Into<PathBuf>) -> Self {
        self.containerd_socket = Some(socket.into());
        self
    }

    /// The same with the service inventory at `file`.
    #[must_use]
    pub fn inventory(mut self, file: impl Into<PathBuf>) -> Self {
        self.inventory = Some(file.into());
        self
    }

    /// The same with an event ring buffer of `bytes` ([`AgentOptions::event_ring_bytes`]).
    #[must_use]
    pub fn event_ring_bytes(mut self, bytes: u32) -> Self {
        self.event_ring_bytes = bytes;
        self
    }

    /// The same telling `to` which enforcer it chose ([`AgentOptions::chosen`]).
    #[must_use]
    pub fn report_choice(mut self, to: std::sync::mpsc::Sender<EnforcerChosen>) -> Self {
        self.chosen = Some(to);
        self
    }

    /// The same telling `to` what becomes of its policies ([`AgentOptions::policy_reports`]).
    #[must_use]
    pub fn report_policies(mut self, to: std::sync::mpsc::Sender<PolicyReport>) -> Self {
        self.policy_reports = Some(to);
        self
    }

    /// The same also publishing to `feed` ([`AgentOptions::feed`]).
    #[must_use]
    pub fn feed(mut self, feed: crate::feeder::Feed) -> Self {
        self.feed = Some(feed);
        self
    }

    /// The same counting in `metrics` ([`AgentOptions::metrics`]).
    #[must_use]
    pub fn metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The same with enforcer `choice`.
    #[must_use]
    pub fn enforcer(mut self, choice: EnforcerChoice) -> Self {
        self.enforcer = choice;
        self
    }

    /// The same with these enforcer settings.
    #[must_use]
    pub fn enforcement(mut self, options: EnforcementOptions) -> Self {
        self.enforcement = options;
        self
    }

    /// The same failing closed ([`RuntimeConfig::require_enforcement`]): no start without a
    /// kernel enforcer or with a workload not fully enforced, no container admitted by the OCI
    /// hook and no policy change taken that would leave a rule only reported.
    #[must_use]
    pub fn require_enforcement(mut self, require: bool) -> Self {
        self.config = self.config.require_enforcement(require);
        self
    }
}

/// A file's size and modification time: what "the inventory changed" compares.
fn file_stamp(file: &Path) -> Option<(u64, Option<SystemTime>)> {
    std::fs::metadata(file)
        .ok()
        .map(|m| (m.len(), m.modified().ok()))
}

/// Loads the inventory at `file`, logging its warnings.
fn load_inventory(file: &Path, log: &mut dyn FnMut(&str)) -> Result<Inventory> {
    let inventory = Inventory::load(file).map_err(Error::Inventory)?;
    for w in inventory.warnings().warnings() {
        log(&w.to_string());
    }
    Ok(inventory)
}

/// Logs what [`Runtime::sync_services`] did.
fn describe_services(changes: Vec<ContainerChange>, log: &mut dyn FnMut(&str)) {
    for c in changes {
        match c {
            ContainerChange::Tracked(key) => log(&format!("service {key}")),
            ContainerChange::Untracked(unit) => log(&format!("service {unit} gone")),
            _ => {}
        }
    }
}

/// How often the agent looks for services that started, stopped or restarted.
const SERVICE_RESYNC: Duration = Duration::from_secs(2);

/// `error: cause: cause` on one line (a cause listing several problems, one per line, has them
/// joined by `; `).
fn chain(e: &dyn std::error::Error) -> String {
    let s = armor_core::diag::error_chain(e);
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(l);
    }
    out
}

/// Follows `ev` and says what it did, for the log.
fn describe_change(rt: &mut Runtime, id: &str, ev: &ContainerEvent) -> Option<String> {
    let change = rt.container_event(ev);
    describe(rt.enforcement(), id, change)
}

/// What a lifecycle event did. A container attached by label is logged with its label (`AppArmor profile armor.shop.web`).
fn describe(
    enforcement: Option<&Enforcement>,
    id: &str,
    change: Result<ContainerChange>,
) -> Option<String> {
    let label = |key: &armor_core::WorkloadKey| {
        enforcement
            .and_then(|e| e.label(key))
            .map(|(kind, label)| format!("{kind} {label}"))
    };
    match change {
        Ok(ContainerChange::Tracked(key)) => Some(match label(&key) {
            Some(l) => format!("container {key} ({l})"),
            None => format!("container {key}"),
        }),
        Ok(ContainerChange::Prepared(key)) => Some(match label(&key) {
            Some(l) => format!("container {key} defined: {l} loaded"),
            None => format!("container {key} defined"),
        }),
        Ok(ContainerChange::Untracked(id)) => Some(format!("container {id} gone")),
        Ok(_) => None,
        Err(e) => Some(format!("container {id}: {}", chain(&e))),
    }
}

/// Writes `records` as JSON lines, each whole (serialized first), then flushes.
fn write_records(
    out: &mut dyn Write,
    records: &[armor_core::telemetry::Telemetry],
) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(1024);
    for r in records {
        line.clear();
        serde_json::to_writer(&mut line, r)?;
        line.push(b'\n');
        out.write_all(&line)?;
    }
    out.flush()
}

/// The container an OCI hook asks about, through containerd, or why it cannot be known.
fn resolve(
    containerd: &Containerd,
    state: &HookState,
) -> std::result::Result<ContainerInfo, String> {
    let Some(ns) = state.containerd_namespace() else {
        return Err(format!(
            "bundle `{}` is not a containerd task's (…/<namespace>/<id>)",
            state.bundle.display()
        ));
    };
    // The rules go to the cgroup of the pid sent: it must be the container's.
    crate::identity::pid_in_container(state.pid, &state.id)?;
    containerd
        .get(&ns, &state.id, Some(state.pid))
        .map_err(|e| chain(&e))
}

/// The refusal of the container of `state`, and its log line.
fn refusal(state: &HookState, why: String) -> (Admission, String) {
    let line = format!("container {} refused at creation: {why}", state.id);
    (Admission::Refused(why), line)
}

/// Answers one OCI hook for the container `info`: puts its rules in force
/// ([`Runtime::container_creating`]); `t` is when the hook asked.
fn admit(
    rt: &mut Runtime,
    info: &ContainerInfo,
    state: &HookState,
    t: Instant,
) -> (Admission, String) {
    match rt.container_creating(info, &state.rootfs()) {
        Ok(ContainerChange::Tracked(key)) => {
            // The key shows its cgroup: `ns/pod/name (cgroup N)`.
            let line = format!(
                "container {key} admitted by the OCI hook in {} ms",
                t.elapsed().as_millis()
            );
            (
                Admission::Admitted(format!("rules of {key} in force")),
                line,
            )
        }
        Ok(_) => {
            let line = format!(
                "container {} admitted by the OCI hook (not tracked)",
                state.id
            );
            (Admission::Admitted("not a tracked container".into()), line)
        }
        Err(e) => refusal(state, chain(&e)),
    }
}

/// An OCI hook whose answer waits for the container's pod identity.
struct Deferred {
    request: HookRequest,
    info: ContainerInfo,
    since: Instant,
}

/// Runs the agent until `stop` is set: KubeArmor Logs and Alerts as JSON lines to `out`, what it
/// does (enforcer chosen or why audit-only, containers, reloads, problems, `ready` once the
/// host's and the existing containers' rules are in force, `stopped`) to `log`, one line each.
///
/// With a hook socket ([`AgentOptions::hook_socket`]), each container's creation waits for the
/// agent: the OCI hook's request is answered from the loop (every 10 ms at most) once the
/// container's rules are in force, or refused with the reason (logged as `container ID refused
/// at creation: …`).
///
/// With an inventory, the listed systemd services whose cgroups exist are tracked before
/// `ready` ([`Runtime::sync_services`]) and again every 2 s (started, stopped and restarted
/// services), and after the inventory file changes.
///
/// Fails, before anything is applied, when the policies or the inventory do not load (the
/// error holds every problem with its `file:line:col`), the chosen enforcer does not work here,
/// the eBPF event source does not load, or containerd cannot be reached. Once running, ordinary
/// faults do not end it: a change of the policies or inventory that does not load keeps the
/// previous one; records `out` cannot take are lost and counted; a failed read of kernel
/// events or counters, a lost containerd event stream (subscribed again with backoff, then
/// resynced), an OCI hook request that cannot be served, are each logged and outlived. Once a
/// minute the process tree is swept against `/proc` and the enforcer's state against the
/// tracked workloads, so lost exit and stop events leak nothing.
pub fn run(
    options: &AgentOptions,
    out: &mut dyn Write,
    log: &mut dyn FnMut(&str),
    stop: &AtomicBool,
) -> Result<()> {
    run_with(options, None, out, log, stop)
}

/// [`run`] under an orchestrator: besides what `run` does, the items of `feed` are taken
/// between two turns of the loop (new policies and configurations all or none, pod identities,
/// staleness), each logged when it changes something or is refused:
/// `policies from the orchestrator: N rules`, `policy update refused, keeping the previous
/// policies: …`, `configuration updated`, `readiness: stale (…): …`. A refused policy set is
/// tried again while no later one came, once what the node runs changed (a container gone may
/// have made room) or a minute passed: `policy update taken on a new try: N rules`.
///
/// With a hook socket, the creation of a pod's container (its CRI labels name its pod) whose
/// pod identity has not arrived waits for it up to [`AgentOptions::identity_wait`], so its
/// first instruction runs under the rules its pod's labels select.
///
/// A `feed` whose sender is gone stops the agent with [`Error::Usage`] (the orchestrator's
/// side ended; nothing would update the policies any more).
pub fn run_fed(
    options: &AgentOptions,
    feed: &Receiver<Feed>,
    out: &mut dyn Write,
    log: &mut dyn FnMut(&str),
    stop: &AtomicBool,
) -> Result<()> {
    run_with(options, Some(feed), out, log, stop)
}

fn run_with(
    options: &AgentOptions,
    feed: Option<&Receiver<Feed>>,
    out: &mut dyn Write,
    log: &mut dyn FnMut(&str),
    stop: &AtomicBool,
) -> Result<()> {
    // Every line the agent logs also goes to the gRPC feed's `WatchMessages` clients.
    let mut log_and_feed = |line: &str| {
        log(line);
        if let Some(f) = &options.feed {
            f.message(|| {
                crate::feeder::message_of(
                    line,
                    &options.config.cluster_name,
                    &options.config.host_name,
                )
            });
        }
    };
    let log: &mut dyn FnMut(&str) = &mut log_and_feed;
    let mut agent = Agent::start(options, feed, log)?;
    while !stop.load(Ordering::Relaxed) {
        if let Some(feed) = feed {
            let mut taken = Taken {
                answers: Vec::new(),
                metrics: options.metrics.as_ref(),
            };
            take_feed(
                &mut agent.rt,
                &agent.controls,
                &mut agent.stale,
                &agent.last_readiness,
                feed,
                &mut taken,
                log,
            )?;
            let answers = taken.answers;
            if let Some((policy, answer)) = answers.last() {
                agent.refused = answer.as_ref().err().map(|why| Refused {
                    policy: Arc::clone(policy),
                    why: why.clone(),
                    tried: Instant::now(),
                    readiness: agent.rt.readiness().summary(),
                });
            }
            if !answers.is_empty() {
                agent.report(options, answers);
            }
        }
        agent.step(options, feed.is_some(), out, log)?;
    }
    if let Err(e) = write_records(out, &[]) {
        log(&format!("output failed at the stop: {e}"));
    }
    log("stopped");
    Ok(())
}

/// The inventory file, what it holds, and its size and modification time when it was read.
struct InventoryFile {
    file: PathBuf,
    inventory: Inventory,
    stamp: Option<(u64, Option<SystemTime>)>,
    cgroup_root: PathBuf,
}

/// What the agent's loop works with, once started.
struct Agent {
    rt: Runtime,
    source: EventSource,
    controls: std::sync::Arc<armor_ebpf::Controls>,
    containerd: Option<(Containerd, std::sync::mpsc::Receiver<ContainerEvent>)>,
    hooks: Option<HookServer>,
    inventory: Option<InventoryFile>,
    /// Polling: briefly when following containerd, so a created task gets its rules before its
    /// start.
    poll: Duration,
    /// The fingerprint of the policy files last taken (applied, or refused and reported).
    policy_files: u64,
    /// A new fingerprint seen once: taken when the next check sees it again.
    changed_files: Option<u64>,
    last_check: Instant,
    last_services: Instant,
    /// When the process tree and the enforcer's state were last swept ([`SWEEP_EVERY`]).
    last_sweep: Instant,
    /// Why reading kernel events fails, while it does.
    poll_error: Option<String>,
    /// After an inventory reload: resync the services at once.
    resync_now: bool,
    last_lost: u64,
    last_readiness: String,
    /// Why the orchestrator is stale, while it is.
    stale: Option<String>,
    /// OCI hooks waiting for their container's pod identity.
    deferred: Vec<Deferred>,
    /// What was last reported as not enforced ([`AgentOptions::policy_reports`]).
    reported_gaps: BTreeMap<crate::coverage::PolicyName, Vec<String>>,
    /// The last policy set fed and refused, while no later one came: tried again
    /// ([`Agent::retry_refused`]).
    refused: Option<Refused>,
    /// The gRPC clients' drops last logged, by client, and when they were checked.
    feed_dropped: BTreeMap<u64, u64>,
    feed_checked: Instant,
    /// Records the output failed to take, the count last logged and the last error.
    output_lost: u64,
    output_logged: u64,
    output_error: Option<String>,
    /// When output losses were last logged.
    output_checked: Option<Instant>,
    /// What the enforcer no longer held at the last check (logged when it changes).
    enforcer_fault: Option<String>,
    /// containerd's event stream, lost and being subscribed again.
    resubscribe: Option<Resubscribe>,
    /// When the stream was last subscribed again, and the backoff reached then: a stream that
    /// ends again soon after goes on from that backoff (no fast loop of subscriptions).
    resubscribed: Option<(Instant, Duration)>,
    /// When containerd's list is compared again with what is tracked: a moment after a
    /// subscription, whose start nothing confirms ([`Containerd::watch`]).
    resync_at: Option<Instant>,
}

/// How often the process tree is swept against `/proc`, and the enforcer's state against the
/// tracked workloads: what lost events (exits, stops) left is reclaimed.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How long after a subscription containerd's list is compared again.
const RESYNC_AFTER: Duration = Duration::from_secs(2);

/// A lost containerd event stream, subscribed again with backoff ([`Agent::resubscribe`]).
struct Resubscribe {
    /// Why it ended.
    reason: String,
    since: Instant,
    next: Instant,
    backoff: Duration,
    tries: u32,
}

/// The first and the longest wait between two tries to subscribe to containerd's events again.
const RESUBSCRIBE_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(500), Duration::from_secs(30));

/// How often the agent logs the gRPC clients that lost records.
const FEED_DROPS_EVERY: Duration = Duration::from_secs(10);

/// A refused policy set, tried again when what the node runs changed.
struct Refused {
    policy: Arc<CompiledPolicy>,
    /// Why it was refused the last time.
    why: String,
    /// When it was last tried, and the readiness then.
    tried: Instant,
    readiness: String,
}

/// How long a refused policy set waits at least between two tries, and at most when nothing
/// changed on the node.
const RETRY_AFTER: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(60));

/// Whether a refused policy set is tried again `waited` after its last try, when what the
/// node runs `changed` since then or not.
fn retry_due(waited: Duration, changed: bool) -> bool {
    waited >= RETRY_AFTER.1 || (changed && waited >= RETRY_AFTER.0)
}

impl Agent {
    /// Everything before the loop: policies, inventory, enforcer, event source, containerd,
    /// services, the hook socket, and the `ready` line (or the refusal to start).
    /// What an orchestrator sent before the start (pod identities, above all) is taken before
    /// the existing containers are tracked, so they get their pods' rules at once.
    fn start(
        options: &AgentOptions,
        feed: Option<&Receiver<Feed>>,
        log: &mut dyn FnMut(&str),
    ) -> Result<Self> {
        let started = Instant::now();
        // The fingerprint of the policy files the agent starts with: a change is what differs.
        let mut policy_files = None;
        let policy: Arc<CompiledPolicy> = match &options.policies {
            PolicySource::Directory(dir) => {
                let files = PolicyFiles::read(&[dir], &LoadLimits::default());
                let policy = load_policy_files(&files)?;
                policy_files = Some(files.fingerprint());
                log(&format!(
                    "{} rules from {}",
                    policy.rules().len(),
                    dir.display()
                ));
                Arc::new(policy)
            }
            PolicySource::Fed(policy) => {
                log(&format!(
                    "{} rules from the orchestrator",
                    policy.rules().len()
                ));
                policy.clone()
            }
        };
        let inventory = match &options.inventory {
            Some(file) => Some(open_inventory(file, log)?),
            None => None,
        };
        if options.hook_socket.is_some() && options.containerd_socket.is_none() {
            return Err(Error::Usage(
                "the OCI hook socket needs the containerd socket (containers are resolved \
                 through containerd)"
                    .into(),
            ));
        }
        let enforcement = select_enforcement(options, log)?;
        let source = EventSource::load(Options::default().ring_bytes(options.event_ring_bytes))?;
        let controls = source.controls();
        let mut rt = Runtime::with_enforcement(
            options.config.clone(),
            policy,
            enforcement,
            Some(controls.clone()),
        );
        controls.set_default_visibility(&rt.host_visibility())?;
        controls.set_syscalls(0, &rt.host_syscalls())?;
        let mut stale = None;
        // The policies it starts with are answered first, once the agent is ready.
        let mut taken = Taken {
            answers: vec![(Arc::clone(rt.policy()), Ok(()))],
            metrics: options.metrics.as_ref(),
        };
        if let Some(feed) = feed {
            take_feed(
                &mut rt, &controls, &mut stale, "starting", feed, &mut taken, log,
            )?;
        }
        let containerd = match &options.containerd_socket {
            Some(sock) => Some(follow_containerd(&mut rt, sock, log)?),
            None => None,
        };
        if let Some(inv) = &inventory {
            describe_services(rt.sync_services(&inv.inventory, &inv.cgroup_root), log);
        }
        sweep_earlier_state(&mut rt, log);
        let hooks = match &options.hook_socket {
            Some(path) => {
                let server = HookServer::bind_with(path, options.hook_options)?;
                log(&format!("answering the OCI hook on {}", path.display()));
                Some(server)
            }
            None => None,
        };
        for p in rt.take_problems() {
            log(p.as_str());
        }
        let last_readiness = ready(&rt, options, inventory.is_some(), log)?;
        if let Some(m) = &options.metrics {
            // The first set: from the start to every workload's rules applied.
            m.applied(started.elapsed(), rt.policy().rules().len());
            m.readiness(&rt.readiness());
            if let Some(e) = rt.enforcement() {
                for (name, _) in e.refused() {
                    m.probe(name, false);
                }
                if let Some(name) = e.name() {
                    m.probe(name, true);
                }
            }
            // Checked again every second, and logged there when it fails.
            m.enforcer(rt.enforcer_health(), &rt.enforcer_capacity());
            m.turned();
            m.set_ready();
        }
        if let (Some(to), Some(enforcement)) = (&options.chosen, rt.enforcement()) {
            // Whoever asked may have stopped listening: the log has it anyway.
            let _gone = to.send(EnforcerChosen {
                name: enforcement.name(),
                summary: enforcement.summary(),
            });
        }
        let mut agent = Self {
            rt,
            source,
            controls,
            poll: Duration::from_millis(if containerd.is_some() { 10 } else { 200 }),
            containerd,
            hooks,
            inventory,
            policy_files: policy_files.unwrap_or(0),
            changed_files: None,
            last_check: Instant::now(),
            last_services: Instant::now(),
            last_sweep: Instant::now(),
            poll_error: None,
            resync_now: false,
            last_lost: 0,
            last_readiness,
            stale,
            deferred: Vec::new(),
            reported_gaps: BTreeMap::new(),
            refused: None,
            feed_dropped: BTreeMap::new(),
            feed_checked: Instant::now(),
            output_lost: 0,
            output_logged: 0,
            output_error: None,
            output_checked: None,
            enforcer_fault: None,
            resubscribe: None,
            resubscribed: None,
            resync_at: options
                .containerd_socket
                .as_ref()
                .map(|_| Instant::now() + RESYNC_AFTER),
        };
        agent.report(options, taken.answers);
        Ok(agent)
    }

    /// Tells [`AgentOptions::policy_reports`] the answer to each policy set in `answers`, in
    /// order, or, without any, what is not enforced when it changed since the last report.
    fn report(
        &mut self,
        options: &AgentOptions,
        answers: Vec<(Arc<CompiledPolicy>, std::result::Result<(), String>)>,
    ) {
        let Some(to) = &options.policy_reports else {
            return;
        };
        let gaps = self.rt.policy_gaps();
        if answers.is_empty() && gaps == self.reported_gaps {
            return;
        }
        self.reported_gaps.clone_from(&gaps);
        let mut reports: Vec<PolicyReport> = answers
            .into_iter()
            .map(|a| PolicyReport {
                answered: Some(a),
                gaps: gaps.clone(),
            })
            .collect();
        if reports.is_empty() {
            reports.push(PolicyReport {
                answered: None,
                gaps,
            });
        }
        for r in reports {
            // Whoever asked may have stopped listening: the log has it anyway.
            let _gone = to.send(r);
        }
    }

    /// One turn of the loop: kernel events, hook requests (first: runc waits on them),
    /// lifecycle events, records out; once a second the policy directory, the inventory,
    /// readiness and kernel losses; the services when due.
    fn step(
        &mut self,
        options: &AgentOptions,
        fed: bool,
        out: &mut dyn Write,
        log: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let mut batch = Vec::new();
        // A failed poll (never seen: the ring's descriptor is the agent's own) is logged when
        // it starts and ends; the loop goes on, answering hooks and applying rules.
        let polled = self.source.poll(self.poll, &mut |e| batch.push(e.clone()));
        match (&polled, &self.poll_error) {
            (Err(e), None) => {
                log(&format!(
                    "reading kernel events failed (retried each turn): {}",
                    chain(e)
                ));
                self.poll_error = Some(chain(e));
                std::thread::sleep(self.poll);
            }
            (Err(_), Some(_)) => std::thread::sleep(self.poll),
            (Ok(_), Some(_)) => {
                log("reading kernel events works again");
                self.poll_error = None;
            }
            (Ok(_), None) => {}
        }
        if let Some(m) = &options.metrics {
            m.turned();
            m.events(batch.len() as u64);
        }
        self.answer_hooks(options, fed, log);
        self.follow_lifecycle(options, log);
        self.resubscribe(options, log);
        self.resync_due(log);
        let mut records = self.rt.enforcer_records(self.source.process_tree());
        for e in &batch {
            records.extend(self.rt.handle(e, self.source.process_tree()));
        }
        // An output that fails loses this batch, counted and logged (every 10 s), and is tried
        // again with the next one: telemetry is lost, never enforcement.
        let written = write_records(out, &records);
        let n = records.len() as u64;
        if let Some(m) = &options.metrics {
            m.output(n, written.is_ok());
        }
        if let Err(e) = written {
            self.output_lost += n;
            self.output_error = Some(e.to_string());
        }
        if let Some(f) = &options.feed {
            for r in &records {
                f.publish(r);
            }
        }
        if let Some(m) = &options.metrics {
            for r in &records {
                m.record(r);
            }
        }
        for p in self.rt.take_problems() {
            log(&p);
        }
        if self.last_check.elapsed() >= Duration::from_secs(1) {
            self.last_check = Instant::now();
            self.every_second(options, log)?;
        }
        self.resync_services(log);
        Ok(())
    }

    /// Answers every waiting OCI hook: a created container gets its rules before anything
    /// else waits. Under an orchestrator (`fed`), a pod's container whose pod identity is not
    /// known yet waits for it, up to [`AgentOptions::identity_wait`].
    fn answer_hooks(&mut self, options: &AgentOptions, fed: bool, log: &mut dyn FnMut(&str)) {
        let (Some(server), Some((client, _))) = (&self.hooks, &self.containerd) else {
            return;
        };
        for notice in server.take_notices() {
            log(&notice);
        }
        while let Some(req) = server.try_recv() {
            let t = Instant::now();
            let info = match resolve(client, req.state()) {
                Ok(info) => info,
                Err(why) => {
                    let (verdict, line) = refusal(req.state(), why);
                    req.answer(verdict);
                    log(&line);
                    continue;
                }
            };
            let waits = fed
                && !info.is_sandbox()
                && IdentityKey::pod_container_of(&info).is_some()
                && self.rt.index().identity_of(&info).is_none();
            if waits {
                self.deferred.push(Deferred {
                    request: req,
                    info,
                    since: t,
                });
                continue;
            }
            let (verdict, line) = admit(&mut self.rt, &info, req.state(), t);
            req.answer(verdict);
            log(&line);
        }
        let waiting = std::mem::take(&mut self.deferred);
        for d in waiting {
            let known = self.rt.index().identity_of(&d.info).is_some();
            let waited = d.since.elapsed();
            if !known && waited < options.identity_wait {
                self.deferred.push(d);
                continue;
            }
            let state = d.request.state();
            let (verdict, line) = if known {
                let (verdict, line) = admit(&mut self.rt, &d.info, state, d.since);
                (verdict, format!("{line} (waited for its pod's identity)"))
            } else if self.rt.config().require_enforcement {
                refusal(
                    state,
                    format!(
                        "its pod's identity did not arrive within {} ms and enforcement is \
                         required",
                        waited.as_millis()
                    ),
                )
            } else {
                let (verdict, line) = admit(&mut self.rt, &d.info, state, d.since);
                (
                    verdict,
                    format!(
                        "{line} without its pod's identity (not arrived within {} ms): its \
                         own labels select its rules until it does",
                        waited.as_millis()
                    ),
                )
            };
            d.request.answer(verdict);
            log(&line);
        }
    }

    /// Follows every lifecycle event containerd delivered since the last turn. A stream that
    /// ended is subscribed again ([`Agent::resubscribe`]); meanwhile the agent is not ready.
    fn follow_lifecycle(&mut self, options: &AgentOptions, log: &mut dyn FnMut(&str)) {
        if self.resubscribe.is_some() {
            return;
        }
        let Some((_, rx)) = &self.containerd else {
            return;
        };
        while let Ok(ev) = rx.try_recv() {
            let id = match &ev {
                ContainerEvent::Defined(i)
                | ContainerEvent::Created(i)
                | ContainerEvent::Started(i) => i.id.clone(),
                ContainerEvent::Stopped { id, .. } => id.clone(),
                ContainerEvent::StreamEnded(reason) => {
                    log(&format!(
                        "containerd events ended: {reason}; subscribing again (containers \
                         created or stopped meanwhile are picked up then)"
                    ));
                    if let Some(m) = &options.metrics {
                        m.set_unready(Some(format!(
                            "containerd events lost ({reason}), not resynced yet"
                        )));
                    }
                    let now = Instant::now();
                    // Ended again within 30 s of a subscription: wait as long as the last try
                    // did, then longer.
                    let (next, backoff) = match self.resubscribed {
                        Some((at, b)) if at.elapsed() < RESUBSCRIBE_BACKOFF.1 => {
                            (now + b, (b * 2).min(RESUBSCRIBE_BACKOFF.1))
                        }
                        _ => (now, RESUBSCRIBE_BACKOFF.0),
                    };
                    self.resubscribe = Some(Resubscribe {
                        reason: reason.clone(),
                        since: now,
                        next,
                        backoff,
                        tries: 0,
                    });
                    return;
                }
            };
            if let Some(line) = describe_change(&mut self.rt, &id, &ev) {
                log(&line);
            }
        }
    }

    /// Subscribes to containerd's events again when a try is due (backoff from 0.5 s, doubling
    /// to 30 s), then resyncs against containerd's list: a running container not tracked is
    /// tracked, a tracked one whose task is gone is untracked. Until then the agent is not
    /// ready (`/readyz`), and every failed try is logged.
    fn resubscribe(&mut self, options: &AgentOptions, log: &mut dyn FnMut(&str)) {
        let (Some(r), Some(sock)) = (&mut self.resubscribe, &options.containerd_socket) else {
            return;
        };
        let now = Instant::now();
        if now < r.next {
            return;
        }
        r.tries += 1;
        let attempt = Containerd::connect(sock).and_then(|c| {
            let rx = c.watch()?;
            let listed = c.list_all()?;
            let stopped = c.stopped_tasks()?;
            Ok((c, rx, listed, stopped))
        });
        let (client, rx, listed, stopped) = match attempt {
            Ok(v) => v,
            Err(e) => {
                r.next = now + r.backoff;
                log(&format!(
                    "containerd events: try {} to subscribe again failed ({}); next in {} ms",
                    r.tries,
                    chain(&e),
                    r.backoff.as_millis()
                ));
                r.backoff = (r.backoff * 2).min(RESUBSCRIBE_BACKOFF.1);
                return;
            }
        };
        let (reason, since, tries) = (r.reason.clone(), r.since, r.tries);
        self.resubscribed = Some((Instant::now(), r.backoff));
        let (picked, gone) = self.resync(&listed, Some(&stopped), log);
        self.containerd = Some((client, rx));
        self.resubscribe = None;
        self.resync_at = Some(Instant::now() + RESYNC_AFTER);
        if let Some(m) = &options.metrics {
            m.set_unready(None);
        }
        log(&format!(
            "containerd events subscribed again after {} ms ({tries} tries; they ended: \
             {reason}); resynced: {picked} containers picked up, {gone} gone",
            since.elapsed().as_millis()
        ));
    }

    /// Compares containerd's list with what is tracked, when due ([`Agent::resync_at`]): a
    /// running container created before the subscription delivered its events is tracked.
    /// Nothing is untracked here: the stream, in place by now, reports every stop, and a
    /// container whose task just stopped may still have its last events (and its alerts) on
    /// the way. A failure is logged.
    fn resync_due(&mut self, log: &mut dyn FnMut(&str)) {
        if self.resubscribe.is_some() || self.resync_at.is_none_or(|t| Instant::now() < t) {
            return;
        }
        self.resync_at = None;
        let Some((client, _)) = &self.containerd else {
            return;
        };
        match client.list_all() {
            Ok(listed) => {
                let (picked, _) = self.resync(&listed, None, log);
                if picked > 0 {
                    log(&format!("containerd resync: {picked} containers picked up"));
                }
            }
            Err(e) => log(&format!("containerd resync failed: {}", chain(&e))),
        }
    }

    /// Tracks every container of `listed` that runs and is not tracked and, given the stopped
    /// tasks, untracks every tracked one that containerd no longer lists or whose task is in
    /// `stopped`; returns how many of each. (A container whose task is not listed yet is being
    /// created: kept.)
    fn resync(
        &mut self,
        listed: &[ContainerInfo],
        stopped: Option<&std::collections::BTreeSet<String>>,
        log: &mut dyn FnMut(&str),
    ) -> (usize, usize) {
        let tracked: std::collections::BTreeSet<String> =
            self.rt.container_ids().into_iter().collect();
        let known: std::collections::BTreeSet<&str> =
            listed.iter().map(|i| i.id.as_str()).collect();
        let (mut picked, mut gone) = (0, 0);
        for info in listed {
            if info.pid.is_some() && !tracked.contains(&info.id) {
                picked += 1;
                let ev = ContainerEvent::Created(info.clone());
                if let Some(line) = describe_change(&mut self.rt, &info.id, &ev) {
                    log(&line);
                }
            }
        }
        let Some(stopped) = stopped else {
            return (picked, 0);
        };
        for id in &tracked {
            if stopped.contains(id) || !known.contains(id.as_str()) {
                gone += 1;
                let ev = ContainerEvent::Stopped {
                    containerd_namespace: String::new(),
                    id: id.clone(),
                };
                if let Some(line) = describe_change(&mut self.rt, id, &ev) {
                    log(&line);
                }
            }
        }
        (picked, gone)
    }

    /// The once-a-second work: a changed policy directory is reloaded (all or nothing), a
    /// changed inventory too; a change of readiness and new kernel losses are logged.
    fn every_second(&mut self, options: &AgentOptions, log: &mut dyn FnMut(&str)) -> Result<()> {
        if let PolicySource::Directory(dir) = &options.policies {
            self.reload_directory(dir, options.metrics.as_ref(), log)?;
        }
        if let Some(inv) = &mut self.inventory
            && reload_inventory(inv, log)
        {
            self.resync_now = true;
        }
        self.retry_refused(options, log)?;
        self.report(options, Vec::new());
        self.report_feed_drops(options, log);
        self.report_output_losses(log);
        // What is enforced changed (a container partly enforced, an apply that failed).
        let readiness = self.rt.readiness();
        let now = readiness.summary();
        if now != self.last_readiness {
            match &self.stale {
                Some(why) => log(&format!("readiness: stale ({why}): {now}")),
                None => log(&format!("readiness: {now}")),
            }
            self.last_readiness = now;
        }
        self.check_enforcer(options, log);
        // The kernel's loss count: a failed read is logged and counts nothing.
        let lost = match self.controls.stats() {
            Ok(s) => s.lost,
            Err(e) => {
                log(&format!(
                    "reading the event source's counters failed: {}",
                    chain(&e)
                ));
                self.last_lost
            }
        };
        if self.last_sweep.elapsed() >= SWEEP_EVERY {
            self.last_sweep = Instant::now();
            let gone = self.source.sweep_process_tree();
            if gone > 0 {
                log(&format!(
                    "{gone} processes dropped from the process tree (their exits were lost)"
                ));
            }
            sweep_earlier_state(&mut self.rt, log);
        }
        if let Some(m) = &options.metrics {
            m.lost_total(lost);
            m.readiness(&readiness);
            if let Some(f) = &options.feed {
                m.feed(f.clients().len(), f.totals());
            }
        }
        if lost != self.last_lost {
            log(&format!(
                "{} events lost in the kernel (total {lost})",
                lost.saturating_sub(self.last_lost)
            ));
            self.last_lost = lost;
        }
        Ok(())
    }

    /// Checks that the enforcer holds what it applied: a fault is logged when it appears or
    /// changes and when it ends, and fails the metrics' `/healthz` meanwhile.
    fn check_enforcer(&mut self, options: &AgentOptions, log: &mut dyn FnMut(&str)) {
        let health = self.rt.enforcer_health();
        let fault = health.clone().err();
        if fault != self.enforcer_fault {
            match &fault {
                Some(why) => log(&format!("enforcer fault: {why}")),
                None => log("enforcer fault over: everything applied is in force again"),
            }
            self.enforcer_fault = fault;
        }
        if let Some(m) = &options.metrics {
            m.enforcer(health, &self.rt.enforcer_capacity());
        }
    }

    /// Logs, every 10 s at most, the records the output lost since the last line.
    fn report_output_losses(&mut self, log: &mut dyn FnMut(&str)) {
        if self.output_lost == self.output_logged
            || self
                .output_checked
                .is_some_and(|t| t.elapsed() < FEED_DROPS_EVERY)
        {
            return;
        }
        self.output_checked = Some(Instant::now());
        log(&format!(
            "output failed ({}): {} records lost (total {}); trying again with each batch",
            self.output_error.as_deref().unwrap_or("?"),
            self.output_lost - self.output_logged,
            self.output_lost
        ));
        self.output_logged = self.output_lost;
    }

    /// Logs, every 10 s at most, each gRPC client that lost records since the last line.
    fn report_feed_drops(&mut self, options: &AgentOptions, log: &mut dyn FnMut(&str)) {
        let Some(feed) = &options.feed else {
            return;
        };
        if self.feed_checked.elapsed() < FEED_DROPS_EVERY {
            return;
        }
        self.feed_checked = Instant::now();
        let clients = feed.clients();
        for c in &clients {
            let before = self.feed_dropped.get(&c.id).copied().unwrap_or(0);
            if c.dropped > before {
                log(&format!(
                    "gRPC client {} ({}, {}) lost {} records (total {}): its queue was full",
                    c.id,
                    c.peer,
                    c.stream,
                    c.dropped - before,
                    c.dropped
                ));
            }
        }
        self.feed_dropped = clients.iter().map(|c| (c.id, c.dropped)).collect();
    }

    /// Tries the refused policy set again (all or none, like the first time) once what the
    /// node runs changed (its readiness: a container gone may have made room), 5 s after the
    /// last try at the earliest, or 60 s after it when nothing changed. Taken: logged and
    /// answered `Ok` ([`AgentOptions::policy_reports`]); refused again: logged and answered
    /// only when the reason changed.
    fn retry_refused(&mut self, options: &AgentOptions, log: &mut dyn FnMut(&str)) -> Result<()> {
        let Some(r) = &self.refused else {
            return Ok(());
        };
        let changed = self.rt.readiness().summary() != r.readiness;
        if !retry_due(r.tried.elapsed(), changed) {
            return Ok(());
        }
        let policy = Arc::clone(&r.policy);
        let t = Instant::now();
        match self.rt.replace_policy(Arc::clone(&policy)) {
            Ok(()) => {
                if let Some(m) = &options.metrics {
                    m.applied(t.elapsed(), policy.rules().len());
                }
                self.refused = None;
                set_visibility(&self.controls, &self.rt, log);
                log(&format!(
                    "policy update taken on a new try: {} rules",
                    policy.rules().len()
                ));
                self.report(options, vec![(policy, Ok(()))]);
            }
            Err(e) => {
                let why = chain(&e);
                let changed = self.refused.as_ref().is_some_and(|r| r.why != why);
                self.refused = Some(Refused {
                    policy: Arc::clone(&policy),
                    why: why.clone(),
                    tried: Instant::now(),
                    readiness: self.rt.readiness().summary(),
                });
                if changed {
                    log(&format!(
                        "policy update refused again, keeping the previous policies: {why}"
                    ));
                    self.report(options, vec![(policy, Err(why))]);
                }
            }
        }
        Ok(())
    }

    /// Reloads the policy directory when a file in it changed (all or nothing).
    fn reload_directory(
        &mut self,
        dir: &Path,
        metrics: Option<&crate::metrics::Metrics>,
        log: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let files = PolicyFiles::read(&[dir], &LoadLimits::default());
        let now = files.fingerprint();
        if now == self.policy_files {
            self.changed_files = None;
            return Ok(());
        }
        // A file being written changes again within the second: what is taken has been the
        // same for two checks in a row.
        if self.changed_files != Some(now) {
            self.changed_files = Some(now);
            return Ok(());
        }
        self.changed_files = None;
        // Refused or not, this input is answered once (the error is logged, not repeated).
        self.policy_files = now;
        let t = Instant::now();
        match self.rt.reload_files(&files) {
            Ok(n) => {
                if let Some(m) = metrics {
                    m.applied(t.elapsed(), n);
                    m.reloaded(true);
                }
                set_visibility(&self.controls, &self.rt, log);
                log(&format!("policies reloaded: {n} rules"));
            }
            Err(e) => {
                if let Some(m) = metrics {
                    m.reloaded(false);
                }
                log(&format!(
                    "reload failed, keeping the previous policies: {}",
                    chain(&e)
                ));
            }
        }
        Ok(())
    }

    /// Tracks the services that started, stopped or restarted, every [`SERVICE_RESYNC`] and
    /// right after the inventory changed.
    fn resync_services(&mut self, log: &mut dyn FnMut(&str)) {
        let Some(inv) = &self.inventory else {
            return;
        };
        if !self.resync_now && self.last_services.elapsed() < SERVICE_RESYNC {
            return;
        }
        self.resync_now = false;
        self.last_services = Instant::now();
        describe_services(self.rt.sync_services(&inv.inventory, &inv.cgroup_root), log);
        for p in self.rt.take_problems() {
            log(&p);
        }
    }
}

/// What [`take_feed`] reports back: the answer to each policy set it took, in order; and where
/// it counts how long an apply took.
struct Taken<'a> {
    answers: Vec<(Arc<CompiledPolicy>, std::result::Result<(), String>)>,
    metrics: Option<&'a crate::metrics::Metrics>,
}

/// Takes every item the orchestrator sent and not taken yet; `stale` is why the orchestrator
/// is stale, while it is, and `readiness` what the log said last.
fn take_feed(
    rt: &mut Runtime,
    controls: &armor_ebpf::Controls,
    stale: &mut Option<String>,
    readiness: &str,
    feed: &Receiver<Feed>,
    taken: &mut Taken<'_>,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let metrics = taken.metrics;
    let answers = &mut taken.answers;
    loop {
        let item = match feed.try_recv() {
            Ok(item) => item,
            Err(TryRecvError::Empty) => return Ok(()),
            Err(TryRecvError::Disconnected) => {
                return Err(Error::Usage(
                    "the orchestrator's feed ended: nothing would update the policies".into(),
                ));
            }
        };
        match item {
            Feed::Policy(policy) => {
                let n = policy.rules().len();
                let t = Instant::now();
                match rt.replace_policy(Arc::clone(&policy)) {
                    Ok(()) => {
                        if let Some(m) = metrics {
                            m.applied(t.elapsed(), n);
                        }
                        set_visibility(controls, rt, log);
                        log(&format!("policies from the orchestrator: {n} rules"));
                        answers.push((policy, Ok(())));
                    }
                    Err(e) => {
                        let why = chain(&e);
                        log(&format!(
                            "policy update refused, keeping the previous policies: {why}"
                        ));
                        answers.push((policy, Err(why)));
                    }
                }
            }
            Feed::Identity { key, identity } => {
                rt.container_identity(&key, identity.as_ref());
            }
            Feed::Config(config) => match rt.reconfigure(&config) {
                Ok(()) => {
                    set_visibility(controls, rt, log);
                    log("configuration updated");
                }
                Err(e) => log(&format!(
                    "configuration update refused, keeping the previous one: {}",
                    chain(&e)
                )),
            },
            Feed::Stale(why) => {
                if stale.is_none() {
                    log(&format!("readiness: stale ({why}): {}", readiness));
                }
                *stale = Some(why);
            }
            Feed::Fresh => {
                if stale.take().is_some() {
                    log(&format!("readiness: {}", readiness));
                }
            }
        }
        for p in rt.take_problems() {
            log(&p);
        }
    }
}

/// Loads the inventory at start (a bad file stops the agent) and finds the cgroup2 mount its
/// services' cgroups are under.
fn open_inventory(file: &Path, log: &mut dyn FnMut(&str)) -> Result<InventoryFile> {
    let inventory = load_inventory(file, log)?;
    log(&format!(
        "{} services in the inventory {}",
        inventory.services().len(),
        file.display()
    ));
    Ok(InventoryFile {
        file: file.to_path_buf(),
        inventory,
        stamp: file_stamp(file),
        cgroup_root: crate::identity::cgroup2_root()?,
    })
}

/// Reloads the inventory when its file changed; a bad file keeps the previous inventory.
/// Returns whether a new inventory is in force.
fn reload_inventory(inv: &mut InventoryFile, log: &mut dyn FnMut(&str)) -> bool {
    let now = file_stamp(&inv.file);
    if now == inv.stamp {
        return false;
    }
    inv.stamp = now;
    match load_inventory(&inv.file, log) {
        Ok(new) => {
            inv.inventory = new;
            log(&format!(
                "inventory reloaded: {} services",
                inv.inventory.services().len()
            ));
            true
        }
        Err(e) => {
            log(&format!(
                "inventory reload failed, keeping the previous one: {}",
                chain(&e)
            ));
            false
        }
    }
}

/// The enforcer the options choose, said in the log; without one, `--require-enforcement`
/// refuses to start.
fn select_enforcement(options: &AgentOptions, log: &mut dyn FnMut(&str)) -> Result<Enforcement> {
    let enforcement = Enforcement::select(&options.enforcer, &options.enforcement)?;
    log(&enforcement.summary());
    if options.config.require_enforcement && enforcement.name().is_none() {
        return Err(Error::NotEnforced {
            workload: "every workload".into(),
            reason: format!(
                "enforcement is required and no kernel enforcer runs ({})",
                enforcement.summary()
            ),
        });
    }
    Ok(enforcement)
}

/// Subscribes to containerd's events first (a container created while the existing ones are
/// listed is not missed), then tracks every running or created task and loads ahead what a
/// defined container needs (an AppArmor profile).
fn follow_containerd(
    rt: &mut Runtime,
    sock: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<(Containerd, std::sync::mpsc::Receiver<ContainerEvent>)> {
    let c = Containerd::connect(sock)?;
    let rx = c.watch()?;
    for info in c.list_all()? {
        let id = info.id.clone();
        let ev = if info.pid.is_some() {
            ContainerEvent::Created(info)
        } else {
            ContainerEvent::Defined(info)
        };
        if let Some(line) = describe_change(rt, &id, &ev) {
            log(&line);
        }
    }
    Ok((c, rx))
}

/// Writes the host's visibility (the default of the event source's cgroups) and syscall filter
/// after a change; a failed write keeps the previous one and is logged, never ends the loop.
fn set_visibility(controls: &armor_ebpf::Controls, rt: &Runtime, log: &mut dyn FnMut(&str)) {
    if let Err(e) = controls.set_default_visibility(&rt.host_visibility()) {
        log(&format!(
            "setting the host's visibility failed, the previous one stays: {}",
            chain(&e)
        ));
    }
    if let Err(e) = controls.set_syscalls(0, &rt.host_syscalls()) {
        log(&format!(
            "setting the host's syscall filter failed (its syscall rules are not reported): {}",
            chain(&e)
        ));
    }
}

/// Removes what the enforcer kept for workloads that are gone, once every tracked workload
/// (host, containers, services) is applied: an earlier run's AppArmor profiles, an adopted
/// BPF-LSM set's records of workloads no longer tracked, and BPF-LSM programs of an earlier
/// version (detached only now, so enforcement never stopped).
fn sweep_earlier_state(rt: &mut Runtime, log: &mut dyn FnMut(&str)) {
    let enforcer = rt
        .enforcement()
        .and_then(Enforcement::name)
        .unwrap_or("enforcer");
    for name in rt.sweep_stale_profiles() {
        log(&format!("removed stale {enforcer} state: {name}"));
    }
}

/// Logs what is not fully enforced and the `ready` line, and returns the readiness summary;
/// with `--require-enforcement`, a workload not fully enforced refuses the start instead.
fn ready(
    rt: &Runtime,
    options: &AgentOptions,
    with_services: bool,
    log: &mut dyn FnMut(&str),
) -> Result<String> {
    let services = if with_services {
        format!(", {} services", rt.service_units().len())
    } else {
        String::new()
    };
    let readiness = rt.readiness();
    for (key, coverage) in readiness.incomplete() {
        log(&format!("not fully enforced: {key}: {coverage}"));
    }
    if options.config.require_enforcement && !readiness.fully_enforced() {
        return Err(Error::NotEnforced {
            workload: readiness
                .incomplete()
                .map(|(k, _)| k.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
            reason: format!(
                "enforcement is required and the agent is not ready: {}",
                readiness.summary()
            ),
        });
    }
    let summary = readiness.summary();
    log(&format!(
        "ready: {summary} ({} containers{services})",
        rt.containers().len()
    ));
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_set_is_tried_again_after_a_change_or_a_minute_never_in_a_loop() {
        let s = Duration::from_secs;
        assert!(!retry_due(s(1), true), "5 s between tries at least");
        assert!(retry_due(s(5), true));
        assert!(!retry_due(s(30), false), "nothing changed: once a minute");
        assert!(retry_due(s(60), false));
    }

    #[test]
    fn a_load_error_is_logged_on_one_line_with_every_position() {
        let Err(e) = Inventory::parse("services:\n  - unit: a\n  - unit: b\n", "inv.yaml") else {
            panic!("an inventory with bad units loaded");
        };
        let line = chain(&Error::Inventory(e));
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("service inventory not loaded: 2 error(s) in the input: inv.yaml:2:"),
            "{line}"
        );
        assert!(line.contains("; inv.yaml:3:"), "{line}");
    }
}
