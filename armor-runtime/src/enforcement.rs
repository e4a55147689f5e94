//! Choosing and running the kernel enforcer: [`Enforcement::select`] walks an ordered list of
//! [`EnforcerFactory`]s ([`EnforcementOptions::factories`]: BPF-LSM, then AppArmor) and builds
//! the one the user asked for (`auto`: the first that works here, by a real trial; a factory's
//! [`choice`](EnforcerFactory::choice) such as `bpflsm`; `none`).
//! [`crate::Runtime::with_enforcement`] applies it to every workload, and its alerts come back
//! through [`crate::Runtime::enforcer_records`] as KubeArmor Alerts with the workload's identity.
//!
//! The runtime knows an enforcer only through the [`Enforcer`] trait: how its rules reach
//! processes ([`Enforcer::attachment`]: by cgroup, or by a label the container's spec must
//! name), the label of a workload, and what to sweep. An embedder adds a backend with
//! [`EnforcementOptions::register`] (or [`EnforcementOptions::prefer`]); nothing else changes.
//!
//! # Which workloads each enforcer covers
//!
//! | enforcer | host | containers |
//! |---|---|---|
//! | BPF-LSM (`BPFLSM`) | every host process outside a tracked container | every tracked container, by its cgroup, from the moment its rules are applied (on containerd's task create: before the entrypoint runs) |
//! | AppArmor (`AppArmor`) | only processes started under the host profile (exec transition, e.g. `aa-exec -p <profile>`); other host processes are monitored only | containers whose OCI spec names the container's profile (`process.apparmorProfile`, or in Kubernetes `securityContext.appArmorProfile: {type: Localhost, localhostProfile: <profile>}`), loaded when the container is defined ([`crate::containerd::ContainerEvent::Defined`]), before runc applies it at task creation; others are monitored only |
//! | none | monitored only | monitored only |
//!
//! "Monitored only" means Block rules are matched in user space on the events the eBPF event
//! source sees and reported as `Audit (Block)` alerts, not enforced. The AppArmor profile of a
//! container is [`Enforcement::label`] of its key (`namespace/pod/container`, or
//! `namespace/container` without a pod).
//!
//! # Example
//!
//! ```no_run
//! use armor_runtime::enforcement::{Enforcement, EnforcementOptions, EnforcerChoice};
//! let enforcement = Enforcement::select(&"auto".parse()?, &EnforcementOptions::default())?;
//! // `enforcing with BPFLSM: ...`, or why every enforcer was refused and that armor falls
//! // back to audit-only monitoring.
//! eprintln!("{}", enforcement.summary());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use armor_core::WorkloadKey;
use armor_core::enforcer::{
    AlertSink, ApplyError, Attachment, Enforcer, EnforcerAlert, EnforcerFactory,
};

use crate::containerd::ContainerInfo;
use crate::error::{Error, Result};

/// Enforcer alerts kept while the agent has not read them; more are counted and dropped.
pub const ALERT_QUEUE: usize = 65_536;

/// Which enforcer the user asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EnforcerChoice {
    /// The first in the list that works here, by a real trial, else audit-only.
    #[default]
    Auto,
    /// The enforcer whose factory has this [`choice`](EnforcerFactory::choice) (`bpflsm`), or
    /// an error.
    Named(String),
    /// No kernel enforcer: audit-only monitoring.
    None,
}

impl FromStr for EnforcerChoice {
    type Err = Error;

    /// `auto`, `none`, or a factory's choice (checked against the list by
    /// [`Enforcement::select`]): lower-case letters, digits and `-`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "none" => Ok(Self::None),
            name if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
            {
                Ok(Self::Named(name.to_string()))
            }
            other => Err(Error::Parse {
                what: "enforcer (auto, none or an enforcer's name)",
                input: other.to_string(),
            }),
        }
    }
}

impl fmt::Display for EnforcerChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Named(n) => n,
            Self::None => "none",
        })
    }
}

/// The enforcers [`Enforcement::select`] may build, in the order `auto` tries them.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EnforcementOptions {
    /// The factories, in order; choices are unique.
    pub factories: Vec<Arc<dyn EnforcerFactory>>,
}

impl Default for EnforcementOptions {
    /// BPF-LSM with its default capacities, pinned under `/sys/fs/bpf/armor`, then AppArmor
    /// writing its profiles to `/var/lib/armor/apparmor`.
    fn default() -> Self {
        Self {
            factories: vec![
                Arc::new(armor_enforce_bpflsm::Factory::default()),
                Arc::new(armor_enforce_apparmor::Factory::new(
                    "/var/lib/armor/apparmor",
                )),
            ],
        }
    }
}

impl EnforcementOptions {
    /// No enforcer at all (every choice but `none` finds nothing): the start of a list an
    /// embedder builds with [`Self::register`].
    pub fn empty() -> Self {
        Self {
            factories: Vec::new(),
        }
    }

    /// The same with `factory` in place of the one with its choice, or last when there is none.
    #[must_use]
    pub fn register(mut self, factory: Arc<dyn EnforcerFactory>) -> Self {
        match self
            .factories
            .iter_mut()
            .find(|f| f.choice() == factory.choice())
        {
            Some(slot) => *slot = factory,
            None => self.factories.push(factory),
        }
        self
    }

    /// The same with `factory` first (`auto` tries it before the others), replacing the one
    /// with its choice.
    #[must_use]
    pub fn prefer(mut self, factory: Arc<dyn EnforcerFactory>) -> Self {
        self.factories.retain(|f| f.choice() != factory.choice());
        self.factories.insert(0, factory);
        self
    }

    /// The same with AppArmor profiles written to `dir`.
    #[must_use]
    pub fn apparmor_dir(self, dir: impl Into<PathBuf>) -> Self {
        self.register(Arc::new(armor_enforce_apparmor::Factory::new(dir)))
    }

    /// The same with these BPF-LSM settings (pinned under
    /// [`armor_enforce_bpflsm::DEFAULT_PIN_ROOT`]).
    #[must_use]
    pub fn bpflsm(self, config: armor_enforce_bpflsm::Config) -> Self {
        self.register(Arc::new(armor_enforce_bpflsm::Factory::new(config)))
    }

    /// The same with BPF-LSM (default settings) pinning its programs under `root`
    /// ([`armor_enforce_bpflsm::Pinning`]): they stay attached when the agent exits and the next
    /// agent adopts them. `None`: not pinned, enforcement ends with the agent.
    #[must_use]
    pub fn bpflsm_pin_root(self, root: Option<PathBuf>) -> Self {
        self.register(Arc::new(
            armor_enforce_bpflsm::Factory::default().pin_root(root),
        ))
    }

    /// The same, building `enforcer` (with its own settings, possibly loaded already: its
    /// programs stay attached) when BPF-LSM is selected, instead of a new one.
    #[must_use]
    pub fn bpflsm_enforcer(self, enforcer: Arc<armor_enforce_bpflsm::BpfLsm>) -> Self {
        self.register(Arc::new(armor_enforce_bpflsm::Factory::with_enforcer(
            enforcer,
        )))
    }

    /// Every choice, as written on the command line: `auto`, each factory's, `none`.
    pub fn choices(&self) -> Vec<&'static str> {
        let mut c = vec!["auto"];
        c.extend(self.factories.iter().map(|f| f.choice()));
        c.push("none");
        c
    }
}

/// Forwards enforcer alerts to the runtime, dropping (and counting) them when the queue is full:
/// enforcers call it from their reader threads, which must never block.
struct ChannelSink {
    tx: mpsc::SyncSender<EnforcerAlert>,
    dropped: AtomicU64,
}

impl AlertSink for ChannelSink {
    fn alert(&self, alert: EnforcerAlert) {
        if self.tx.try_send(alert).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The enforcer in use (or none), its alerts, and why the others were not chosen.
pub struct Enforcement {
    choice: EnforcerChoice,
    enforcer: Option<Arc<dyn Enforcer>>,
    /// What the factory said must live as long as the enforcer (an alert reader).
    _keep_alive: Vec<Box<dyn Any + Send>>,
    refused: Vec<(&'static str, String)>,
    notes: Vec<String>,
    alerts: mpsc::Receiver<EnforcerAlert>,
    sink: Arc<ChannelSink>,
}

impl fmt::Debug for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enforcement")
            .field("choice", &self.choice)
            .field("enforcer", &self.name())
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

/// The message for audit-only monitoring: which enforcers were tried and why each was refused.
fn fallback_message(choice: &EnforcerChoice, refused: &[(&'static str, String)]) -> String {
    let tail = "audit-only monitoring: Block rules are reported as `Audit (Block)` alerts, \
        NOTHING IS DENIED";
    if refused.is_empty() {
        return format!("enforcer {choice}: {tail}");
    }
    let why: Vec<String> = refused.iter().map(|(n, r)| format!("{n}: {r}")).collect();
    format!(
        "NOT ENFORCING: no kernel enforcer available ({}): falling back to {tail}",
        why.join("; ")
    )
}

/// What `enforcer` covers, for the operator, from how it attaches.
fn coverage_summary(enforcer: &dyn Enforcer) -> String {
    let name = enforcer.name();
    match enforcer.attachment() {
        Attachment::Label(kind) => format!(
            "enforcing with {name}: a {kind} per workload; containers are enforced when their \
             OCI spec names theirs ({}; in Kubernetes {}), the host only for processes started \
             under its {kind}; the Block rules of everything else are reported as \
             `Audit (Block)`",
            kind.oci_field(),
            kind.kubernetes_field("<name>")
        ),
        _ => format!(
            "enforcing with {name}: the host and every tracked container (by cgroup), from \
             the moment its rules are applied; containerd containers on task create, before \
             their entrypoint runs"
        ),
    }
}

impl Enforcement {
    /// Audit-only monitoring: no kernel enforcer.
    pub fn none() -> Self {
        Self::with(EnforcerChoice::None, None, Vec::new())
    }

    fn with(
        choice: EnforcerChoice,
        built: Option<armor_core::enforcer::Built>,
        refused: Vec<(&'static str, String)>,
    ) -> Self {
        let (tx, alerts) = mpsc::sync_channel(ALERT_QUEUE);
        let sink = Arc::new(ChannelSink {
            tx,
            dropped: AtomicU64::new(0),
        });
        let (enforcer, keep_alive, notes) = match built {
            Some(b) => (Some(b.enforcer), b.keep_alive, b.notes),
            None => (None, Vec::new(), Vec::new()),
        };
        if let Some(e) = &enforcer {
            e.set_alert_sink(sink.clone());
        }
        Self {
            choice,
            enforcer,
            _keep_alive: keep_alive,
            refused,
            notes,
            alerts,
            sink,
        }
    }

    /// Builds the enforcer `choice` names from `options`' factories. `Auto` tries each in
    /// order (BPF-LSM: a real load of its programs; AppArmor: its kernel interface and a
    /// profile compiled by `apparmor_parser`) and falls back to audit-only monitoring, saying
    /// why in [`Enforcement::summary`]. A named choice that does not work here is an error
    /// naming the reason; one no factory has is a usage error listing the choices.
    pub fn select(choice: &EnforcerChoice, options: &EnforcementOptions) -> Result<Self> {
        let mut refused = Vec::new();
        match choice {
            EnforcerChoice::None => Ok(Self::with(choice.clone(), None, refused)),
            EnforcerChoice::Named(name) => {
                let Some(f) = options.factories.iter().find(|f| f.choice() == name) else {
                    return Err(Error::Usage(format!(
                        "no enforcer `{name}`: choose one of {}",
                        options.choices().join(", ")
                    )));
                };
                match f.build() {
                    Ok(b) => Ok(Self::with(choice.clone(), Some(b), refused)),
                    Err(reason) => Err(Error::Enforcer {
                        enforcer: f.name(),
                        reason,
                    }),
                }
            }
            _ => {
                for f in &options.factories {
                    match f.build() {
                        Ok(b) => return Ok(Self::with(choice.clone(), Some(b), refused)),
                        Err(reason) => refused.push((f.name(), reason)),
                    }
                }
                Ok(Self::with(choice.clone(), None, refused))
            }
        }
    }

    /// What the user asked for.
    pub fn choice(&self) -> &EnforcerChoice {
        &self.choice
    }

    /// The enforcer in use (`BPFLSM`, `AppArmor`), or `None` for audit-only monitoring.
    pub fn name(&self) -> Option<&'static str> {
        self.enforcer.as_ref().map(|e| e.name())
    }

    /// The enforcer in use, as the runtime applies it.
    pub fn enforcer(&self) -> Option<Arc<dyn Enforcer>> {
        self.enforcer.clone()
    }

    /// The enforcers tried and refused, with the reason of each (`auto` only).
    pub fn refused(&self) -> &[(&'static str, String)] {
        &self.refused
    }

    /// One line for the operator: which enforcer runs and what it covers, or that armor falls
    /// back to audit-only monitoring and why.
    pub fn summary(&self) -> String {
        let mut s = match &self.enforcer {
            Some(e) => coverage_summary(e.as_ref()),
            None => fallback_message(&self.choice, &self.refused),
        };
        for n in &self.notes {
            s.push_str("; ");
            s.push_str(n);
        }
        s
    }

    /// Enforcer alerts dropped because the runtime did not read them fast enough.
    pub fn dropped_alerts(&self) -> u64 {
        self.sink.dropped.load(Ordering::Relaxed)
    }

    /// The enforcer alerts delivered since the last call.
    pub fn take_alerts(&self) -> Vec<EnforcerAlert> {
        self.alerts.try_iter().collect()
    }

    /// Whether the enforcer attaches by a label the container's spec names, so a container's
    /// rules must be loaded before its task exists (AppArmor: runc applies the profile the
    /// spec names when it creates the task).
    pub fn loads_ahead(&self) -> bool {
        self.enforcer
            .as_ref()
            .is_some_and(|e| matches!(e.attachment(), Attachment::Label(_)))
    }

    /// The label `key`'s processes must carry for the enforcer's rules to apply (its AppArmor
    /// profile), for an enforcer that attaches by label, with the kind of label.
    pub fn label(&self, key: &WorkloadKey) -> Option<(armor_core::enforcer::LabelKind, String)> {
        let e = self.enforcer.as_ref()?;
        match e.attachment() {
            Attachment::Label(kind) => Some((kind, e.label(key)?)),
            _ => None,
        }
    }

    /// Whether applied rules are enforced on a service's processes (its unit `unit`): an
    /// enforcer that attaches by cgroup does; one that attaches by label confines only the
    /// processes systemd starts under the service's label, which the runtime cannot see, so
    /// they do not count as enforced and the error says how to confine them.
    pub(crate) fn covers_service(
        &self,
        key: &WorkloadKey,
        unit: &str,
    ) -> std::result::Result<(), String> {
        match self.label(key) {
            None => Ok(()),
            Some((kind, label)) => Err(format!(
                "a service is confined by {} only when systemd starts it under its {kind}: \
                 set `{}={label}` in {unit}",
                self.name().unwrap_or("?"),
                kind.systemd_directive()
            )),
        }
    }

    /// Whether applied rules are enforced on the workload's processes; `Err` says why not (they
    /// are then reported as `Audit (Block)` by the monitor).
    pub(crate) fn covers(
        &self,
        key: &WorkloadKey,
        host: bool,
        info: Option<&ContainerInfo>,
    ) -> std::result::Result<(), String> {
        let Some((kind, label)) = self.label(key) else {
            return Ok(());
        };
        let name = self.name().unwrap_or("?");
        if host {
            return Err(format!(
                "the host is not confined by {name}: only processes started under `{label}` are"
            ));
        }
        match info.and_then(|i| i.security_label(kind)) {
            Some(l) if l == label => Ok(()),
            named => Err(format!(
                "its OCI spec names {kind} `{}`, not `{label}`: set {} (Kubernetes: {})",
                named.unwrap_or("none"),
                kind.oci_field(),
                kind.kubernetes_field(&label)
            )),
        }
    }

    /// Removes what the enforcer keeps for workloads not in `keep`, also from an earlier run
    /// (AppArmor's profiles). Returns what was removed.
    pub fn sweep(&self, keep: &[WorkloadKey]) -> std::result::Result<Vec<String>, ApplyError> {
        match &self.enforcer {
            Some(e) => e.sweep(keep),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn choices_parse_and_print() {
        let opts = EnforcementOptions::default();
        assert_eq!(opts.choices(), ["auto", "bpflsm", "apparmor", "none"]);
        for name in opts.choices() {
            let c: EnforcerChoice = name.parse().unwrap();
            assert_eq!(c.to_string(), name);
        }
        let err = "SELinux!"
            .parse::<EnforcerChoice>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("`SELinux!`"), "{err}");
        let unknown = Enforcement::select(&"selinux".parse().unwrap(), &opts)
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("no enforcer `selinux`: choose one of auto, bpflsm, apparmor, none"),
            "{unknown}"
        );
    }

    #[test]
    fn fallback_names_every_refusal() {
        let m = fallback_message(
            &EnforcerChoice::Auto,
            &[
                (
                    "BPFLSM",
                    "kernel refuses lsm programs (EPERM (errno 1))".into(),
                ),
                ("AppArmor", "AppArmor is not in the kernel".into()),
            ],
        );
        assert!(
            m.starts_with("NOT ENFORCING: no kernel enforcer available (BPFLSM: kernel refuses")
        );
        assert!(m.contains("; AppArmor: AppArmor is not in the kernel)"));
        assert!(m.contains("falling back to audit-only monitoring"));
        let none = Enforcement::none();
        assert_eq!(none.name(), None);
        assert!(none.summary().starts_with("enforcer none: audit-only"));
        let empty = Enforcement::select(&EnforcerChoice::Auto, &EnforcementOptions::empty());
        assert!(
            empty
                .unwrap()
                .summary()
                .starts_with("enforcer auto: audit-only")
        );
    }

    /// On a machine where neither enforcer works (ours), `auto` falls back and an explicit
    /// choice fails with the same reason; where one works, `auto` picks it.
    #[test]
    fn auto_agrees_with_explicit_choices() {
        let opts = EnforcementOptions::default()
            .apparmor_dir(std::env::temp_dir().join(format!("armor-rt-aa-{}", std::process::id())));
        let auto = Enforcement::select(&EnforcerChoice::Auto, &opts).unwrap();
        let bpf = Enforcement::select(&"bpflsm".parse().unwrap(), &opts);
        match auto.name() {
            Some("BPFLSM") => assert!(bpf.is_ok()),
            Some(other) => {
                assert_eq!(other, "AppArmor");
                assert!(bpf.is_err());
            }
            None => {
                let refused = auto.refused();
                assert_eq!(refused.len(), 2, "{refused:?}");
                let msg = bpf.unwrap_err().to_string();
                assert!(
                    refused
                        .first()
                        .is_some_and(|(_, r)| msg.contains(r.as_str())),
                    "{msg} vs {refused:?}"
                );
                assert!(auto.summary().contains("falling back to audit-only"));
                assert!(Enforcement::select(&"apparmor".parse().unwrap(), &opts).is_err());
            }
        }
    }

    /// `register` replaces the factory with the same choice in place; `prefer` moves it first.
    #[test]
    fn factories_are_replaced_in_place_or_put_first() {
        let opts = EnforcementOptions::default().apparmor_dir("/tmp/x");
        assert_eq!(opts.choices(), ["auto", "bpflsm", "apparmor", "none"]);
        let opts = opts.prefer(Arc::new(armor_enforce_apparmor::Factory::new("/tmp/y")));
        assert_eq!(opts.choices(), ["auto", "apparmor", "bpflsm", "none"]);
        assert_eq!(EnforcementOptions::empty().choices(), ["auto", "none"]);
    }
}
