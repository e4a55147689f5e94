#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The enforcer seam: an enforcer defined here, outside the workspace's backends, registered in
//! the runtime's list of factories, selected, and driven through the runtime end to end — the
//! host's and containers' rules compiled for the right destination (root, start), applied,
//! covered or not by how it attaches, its alerts enriched with the container's identity, its
//! stale state swept, its rules removed when the container goes. Nothing in the runtime names
//! it: the runtime sees `Arc<dyn Enforcer>` only.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use armor_core::enforcer::{
    AlertSink, Applied, ApplyError, Artifact, Attachment, Built, CompileError, Destination,
    Enforcer, EnforcerAlert, EnforcerFactory, LabelKind, Start, Support, Unenforceable,
};
use armor_core::{Category, PolicySet, RuleSet, WorkloadKey};
use armor_ebpf::ProcessTree;
use armor_runtime::containerd::{ContainerEvent, ContainerInfo};
use armor_runtime::coverage::Coverage;
use armor_runtime::{
    ContainerChange, Enforcement, EnforcementOptions, EnforcerChoice, Runtime, RuntimeConfig,
};
use parking_lot::Mutex;

const POLICY: &str = r#"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: block-secret, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  file:
    matchPaths: [{path: /etc/secret}]
  action: Block
"#;

/// What the test enforcer was asked, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Compile(Destination, usize),
    Apply(Destination),
    Remove(WorkloadKey),
    Sweep(Vec<WorkloadKey>),
}

/// The artefact: the rule ids, nothing left out.
#[derive(Debug)]
struct Ids(Vec<u32>);

impl Artifact for Ids {
    fn render(&self) -> String {
        format!("{:?}", self.0)
    }
    fn unenforceable(&self) -> &[Unenforceable] {
        &[]
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// An enforcer that keeps rule ids per workload and attaches by cgroup or by a label.
struct Outside {
    label: bool,
    seen: Mutex<Vec<Seen>>,
    installed: Mutex<Vec<WorkloadKey>>,
    sink: Mutex<Option<Arc<dyn AlertSink>>>,
}

impl std::fmt::Debug for Outside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outside")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl Outside {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    /// Raises a denial of `path` by rule `rule` for `key`, as its own kernel would.
    fn deny(&self, key: &WorkloadKey, rule: u32, path: &str) {
        let sink = self.sink.lock().clone().expect("a sink is set");
        sink.alert(
            EnforcerAlert::blocked("Outside", Some(rule), Category::File, path)
                .with_workload(key.clone())
                .with_process(4242, 0, Some("/bin/cat".into())),
        );
    }
}

impl Enforcer for Outside {
    fn name(&self) -> &'static str {
        "Outside"
    }

    fn probe(&self) -> Support {
        Support::Supported
    }

    fn compile(
        &self,
        dest: &Destination,
        rules: &RuleSet,
    ) -> Result<Box<dyn Artifact>, CompileError> {
        self.seen
            .lock()
            .push(Seen::Compile(dest.clone(), rules.rule_ids().len()));
        Ok(Box::new(Ids(rules.rule_ids().to_vec())))
    }

    fn apply(&self, dest: &Destination, artifact: &dyn Artifact) -> Result<Applied, ApplyError> {
        artifact
            .as_any()
            .downcast_ref::<Ids>()
            .ok_or(ApplyError::ForeignArtifact {
                enforcer: "Outside",
            })?;
        self.seen.lock().push(Seen::Apply(dest.clone()));
        let mut inst = self.installed.lock();
        if inst.contains(&dest.key) {
            return Ok(Applied::Updated);
        }
        inst.push(dest.key.clone());
        Ok(Applied::Installed)
    }

    fn remove(&self, key: &WorkloadKey) -> Result<(), ApplyError> {
        self.seen.lock().push(Seen::Remove(key.clone()));
        let mut inst = self.installed.lock();
        let before = inst.len();
        inst.retain(|k| k != key);
        if inst.len() == before {
            return Err(ApplyError::UnknownWorkload(key.name.clone()));
        }
        Ok(())
    }

    fn set_alert_sink(&self, sink: Arc<dyn AlertSink>) {
        *self.sink.lock() = Some(sink);
    }

    fn attachment(&self) -> Attachment {
        if self.label {
            Attachment::Label(LabelKind::SelinuxContext)
        } else {
            Attachment::Cgroup
        }
    }

    fn label(&self, key: &WorkloadKey) -> Option<String> {
        self.label
            .then(|| format!("outside_{}_t", key.name.replace('/', "_")))
    }

    fn sweep(&self, keep: &[WorkloadKey]) -> Result<Vec<String>, ApplyError> {
        self.seen.lock().push(Seen::Sweep(keep.to_vec()));
        Ok(Vec::new())
    }
}

/// Builds the same [`Outside`] each time (so the test can look at it), or refuses.
#[derive(Debug)]
struct OutsideFactory {
    enforcer: Arc<Outside>,
    refuse: Option<&'static str>,
}

impl OutsideFactory {
    fn new(label: bool) -> Self {
        Self {
            enforcer: Arc::new(Outside {
                label,
                seen: Mutex::new(Vec::new()),
                installed: Mutex::new(Vec::new()),
                sink: Mutex::new(None),
            }),
            refuse: None,
        }
    }
}

impl EnforcerFactory for OutsideFactory {
    fn choice(&self) -> &'static str {
        "outside"
    }
    fn name(&self) -> &'static str {
        "Outside"
    }
    fn build(&self) -> Result<Built, String> {
        if let Some(why) = self.refuse {
            return Err(why.to_string());
        }
        let mut b = Built::new(self.enforcer.clone());
        b.notes.push("built outside the workspace".into());
        Ok(b)
    }
}

/// A factory that always refuses, standing in for a backend this kernel lacks.
#[derive(Debug)]
struct Refusing;

impl EnforcerFactory for Refusing {
    fn choice(&self) -> &'static str {
        "refusing"
    }
    fn name(&self) -> &'static str {
        "Refusing"
    }
    fn build(&self) -> Result<Built, String> {
        Err("no such kernel feature (trial load: ENOENT)".into())
    }
}

fn policy() -> armor_core::CompiledPolicy {
    let set = PolicySet::parse(POLICY, "p.yaml").unwrap();
    armor_core::CompiledPolicy::build(&set).unwrap()
}

/// Pod `shop/web-0`, container `web`, label `app: web`, task pid `pid`.
fn web(id: &str, pid: Option<u32>) -> ContainerInfo {
    let mut info = ContainerInfo::default();
    info.id = id.to_string();
    info.containerd_namespace = "k8s.io".into();
    for (k, v) in [
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.pod.name", "web-0"),
        ("io.kubernetes.container.name", "web"),
        ("app", "web"),
    ] {
        info.labels.insert(k.into(), v.into());
    }
    info.image = "busybox:1".into();
    info.pid = pid;
    info
}

/// `auto` walks the list in order: a refusing backend first is skipped with its reason, the
/// outside enforcer is taken; a named choice builds exactly that one, or fails with its reason.
#[test]
fn selection_walks_the_list_and_takes_a_registered_enforcer() {
    let outside = OutsideFactory::new(false);
    let options = EnforcementOptions::empty()
        .register(Arc::new(outside))
        .prefer(Arc::new(Refusing));
    assert_eq!(options.choices(), ["auto", "refusing", "outside", "none"]);
    let auto = Enforcement::select(&EnforcerChoice::Auto, &options).unwrap();
    assert_eq!(auto.name(), Some("Outside"));
    assert_eq!(
        auto.refused(),
        [(
            "Refusing",
            "no such kernel feature (trial load: ENOENT)".to_string()
        )]
    );
    let summary = auto.summary();
    assert!(
        summary.starts_with(
            "enforcing with Outside: the host and every tracked container (by cgroup)"
        ),
        "{summary}"
    );
    assert!(
        summary.ends_with("; built outside the workspace"),
        "{summary}"
    );

    let named = Enforcement::select(&"refusing".parse().unwrap(), &options).unwrap_err();
    assert_eq!(
        named.to_string(),
        "enforcer `Refusing` unavailable: no such kernel feature (trial load: ENOENT)"
    );
    let mut refused = OutsideFactory::new(false);
    refused.refuse = Some("refused by the test");
    let only = EnforcementOptions::empty().register(Arc::new(refused));
    let fallback = Enforcement::select(&EnforcerChoice::Auto, &only).unwrap();
    assert_eq!(fallback.name(), None);
    assert!(
        fallback.summary().starts_with(
            "NOT ENFORCING: no kernel enforcer available (Outside: refused by the test)"
        ),
        "{}",
        fallback.summary()
    );
}

/// Attached by cgroup: the host's rules go to `/`, a running container's to `/proc/PID/root`,
/// a container being created to its root file system from its first exec; each is enforced;
/// the enforcer's alert comes out with the container's identity; the container's rules are
/// removed when it stops, and the sweep keeps exactly the tracked workloads.
#[test]
fn a_cgroup_enforcer_from_outside_is_driven_end_to_end() {
    let factory = OutsideFactory::new(false);
    let outside = factory.enforcer.clone();
    let options = EnforcementOptions::empty().register(Arc::new(factory));
    let enforcement = Enforcement::select(&"outside".parse().unwrap(), &options).unwrap();
    let mut rt = Runtime::with_enforcement(RuntimeConfig::default(), policy(), enforcement, None);

    let host = WorkloadKey::new("host");
    assert_eq!(
        outside.seen(),
        [
            Seen::Compile(Destination::new(host.clone()).with_root("/"), 0),
            Seen::Apply(Destination::new(host.clone()).with_root("/")),
        ]
    );

    let key = rt.add_container_with_cgroup(&web("c1", Some(4242)), 77);
    assert_eq!(key, WorkloadKey::new("shop/web-0/web").with_cgroup(77));
    let running = Destination::new(key.clone()).with_root("/proc/4242/root");
    assert_eq!(
        outside.seen()[2..],
        [Seen::Compile(running.clone(), 1), Seen::Apply(running)]
    );
    let readiness = rt.readiness();
    assert_eq!(readiness.enforcer, Some("Outside"));
    assert!(readiness.workloads.iter().any(|(k, c)| k == &key
        && *c
            == Coverage::Enforced {
                enforcer: "Outside"
            }));

    // Its denial, raised from its own thread, becomes a KubeArmor alert of the container.
    let rule = rt.policy().rules().len() as u32 - 1;
    std::thread::scope(|s| {
        s.spawn(|| outside.deny(&key, rule, "/etc/secret"));
    });
    let records = rt.enforcer_records(&ProcessTree::new());
    assert_eq!(records.len(), 1, "{records:?}");
    let json = serde_json::to_value(&records[0]).unwrap();
    assert_eq!(json["Enforcer"], "Outside");
    assert_eq!(json["Action"], "Block");
    assert_eq!(json["Result"], "Permission denied");
    assert_eq!(json["PolicyName"], "block-secret");
    assert_eq!(json["NamespaceName"], "shop");
    assert_eq!(json["PodName"], "web-0");
    assert_eq!(json["ContainerName"], "web");
    assert_eq!(json["ContainerID"], "c1");
    assert_eq!(json["Resource"], "/etc/secret");

    assert!(matches!(
        rt.container_event(&ContainerEvent::Stopped {
            containerd_namespace: "k8s.io".into(),
            id: "c1".into(),
        })
        .unwrap(),
        ContainerChange::Untracked(_)
    ));
    assert_eq!(outside.seen().last(), Some(&Seen::Remove(key)));
    assert!(rt.sweep_stale_profiles().is_empty());
    assert_eq!(outside.seen().last(), Some(&Seen::Sweep(vec![host])));
}

/// A container being created (the OCI hook's path): compiled for its root file system, in
/// force from its first exec.
#[test]
fn a_container_being_created_is_compiled_for_its_rootfs_from_its_first_exec() {
    let factory = OutsideFactory::new(false);
    let outside = factory.enforcer.clone();
    let options = EnforcementOptions::empty().register(Arc::new(factory));
    let enforcement = Enforcement::select(&EnforcerChoice::Auto, &options).unwrap();
    let mut rt = Runtime::with_enforcement(RuntimeConfig::default(), policy(), enforcement, None);
    // This process plays the container's init: its cgroup is the container's.
    let me = std::process::id();
    let rootfs = PathBuf::from("/run/containerd/bundle/c2/rootfs");
    match rt.container_creating(&web("c2", Some(me)), &rootfs) {
        Ok(ContainerChange::Tracked(key)) => {
            let dest = Destination::new(key)
                .with_root(&rootfs)
                .starting(Start::FirstExec);
            assert_eq!(
                outside.seen()[2..],
                [Seen::Compile(dest.clone(), 1), Seen::Apply(dest)]
            );
        }
        // Only where this process's cgroup v2 cannot be found (no cgroup2 mount).
        Err(e) if !Path::new("/proc/self/cgroup").exists() => {
            println!("skipped: {e}");
        }
        other => panic!("{other:?}"),
    }
}

/// Attached by label: a defined container's rules are loaded ahead; a container whose spec
/// names its label is enforced; one whose spec does not is monitored only, and the reason
/// says which spec field to set; the host is not confined by it.
#[test]
fn a_label_enforcer_from_outside_is_checked_against_the_spec() {
    let factory = OutsideFactory::new(true);
    let outside = factory.enforcer.clone();
    let options = EnforcementOptions::empty().register(Arc::new(factory));
    let enforcement = Enforcement::select(&EnforcerChoice::Auto, &options).unwrap();
    assert!(enforcement.loads_ahead());
    let summary = enforcement.summary();
    assert!(
        summary.contains("a SELinux context per workload")
            && summary.contains("process.selinuxLabel"),
        "{summary}"
    );
    let mut rt = Runtime::with_enforcement(RuntimeConfig::default(), policy(), enforcement, None);
    let label = "outside_shop_web-0_web_t".to_string();

    let mut named = web("c3", None);
    named
        .security_labels
        .insert(LabelKind::SelinuxContext, label.clone());
    let change = rt
        .container_event(&ContainerEvent::Defined(named.clone()))
        .unwrap();
    assert_eq!(
        change,
        ContainerChange::Prepared(WorkloadKey::new("shop/web-0/web"))
    );
    assert!(
        outside
            .seen()
            .contains(&Seen::Apply(Destination::new(WorkloadKey::new(
                "shop/web-0/web"
            ))))
    );
    let key = rt.add_container_with_cgroup(&web_with(named, 10), 88);
    let coverage = |rt: &Runtime, key: &WorkloadKey| {
        rt.readiness()
            .workloads
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, c)| c)
            .unwrap()
    };
    assert_eq!(
        coverage(&rt, &key),
        Coverage::Enforced {
            enforcer: "Outside"
        }
    );

    let bare = rt.add_container_with_cgroup(&web("c4", Some(11)), 89);
    let Coverage::MonitoredOnly { reason } = coverage(&rt, &bare) else {
        panic!("{:?}", coverage(&rt, &bare));
    };
    assert_eq!(
        reason,
        format!(
            "Outside: its OCI spec names SELinux context `none`, not `{label}`: set \
             process.selinuxLabel (Kubernetes: securityContext.seLinuxOptions {{type: {label}}})"
        )
    );
    let problems = rt.take_problems().join("\n");
    assert!(
        problems.contains("rules loaded but not enforced"),
        "{problems}"
    );
    // The host has no rules here, so its coverage says so rather than why it is not confined.
    assert_eq!(coverage(&rt, &WorkloadKey::new("host")), Coverage::NoRules);
}

fn web_with(mut info: ContainerInfo, pid: u32) -> ContainerInfo {
    info.pid = Some(pid);
    info
}

/// The monitor's records depend only on the events and the clock it is given: three Audit
/// alerts at one instant with a limit of two give two alerts and the AlertThreshold event, then
/// nothing until the throttle period has passed, then alerts again; every record carries the
/// wall-clock time it was given.
#[test]
fn handle_at_is_a_function_of_the_events_and_the_injected_clock() {
    use armor_ebpf::{Event as KernelEvent, EventKind, FileOp, Syscall};
    use armor_runtime::Now;
    use std::time::{Duration, Instant, SystemTime};

    let audit = POLICY.replace("action: Block", "action: Audit");
    let set = PolicySet::parse(&audit, "p.yaml").unwrap();
    let policy = armor_core::CompiledPolicy::build(&set).unwrap();
    let config = RuntimeConfig::default().throttling(2, Duration::from_secs(10));
    let mut rt = Runtime::new(config, policy, Vec::new(), None);
    rt.add_container_with_cgroup(&web("c5", Some(4242)), 91);
    let open = {
        let mut ev = KernelEvent::new(
            Syscall::Openat,
            EventKind::File(FileOp::new("/etc/secret", -100, 0)),
        );
        ev.cgroup_id = 91;
        ev.pid = 4242;
        ev
    };
    let tree = ProcessTree::new();
    let t0 = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let at = |secs: u64| Now::at(t0 + Duration::from_secs(secs), wall);
    let kinds = |records: Vec<armor_core::telemetry::Telemetry>| -> Vec<String> {
        records
            .into_iter()
            .map(|r| {
                assert_eq!(r.timestamp, Some(1_700_000_000));
                format!(
                    "{}:{}",
                    r.kind.unwrap_or_default(),
                    r.operation.unwrap_or_default()
                )
            })
            .collect()
    };
    assert_eq!(
        kinds(rt.handle_at(&open, &tree, at(0))),
        ["MatchedPolicy:File"]
    );
    assert_eq!(
        kinds(rt.handle_at(&open, &tree, at(0))),
        ["MatchedPolicy:File"]
    );
    assert_eq!(
        kinds(rt.handle_at(&open, &tree, at(0))),
        ["SystemEvent:AlertThreshold"]
    );
    assert!(rt.handle_at(&open, &tree, at(9)).is_empty());
    assert_eq!(
        kinds(rt.handle_at(&open, &tree, at(10))),
        ["MatchedPolicy:File"]
    );
}
