//! Choosing and running the kernel enforcer: [`Enforcement::select`] builds the enforcer the user
//! asked for (`auto`, `bpflsm`, `apparmor`, `none`), [`crate::Runtime::with_enforcement`] applies
//! it to every workload, and its alerts come back through
//! [`crate::Runtime::enforcer_records`] as KubeArmor Alerts with the workload's identity.
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
//! source sees and reported as `Audit (Block)` alerts, not enforced. The AppArmor profile name of
//! a container is [`apparmor_profile_name`] of `namespace/pod/container` (or
//! `namespace/container` without a pod).
//!
//! # Example
//!
//! ```no_run
//! use armor_runtime::enforcement::{Enforcement, EnforcementOptions, EnforcerChoice};
//! let enforcement = Enforcement::select("auto".parse()?, &EnforcementOptions::default())?;
//! // `enforcing with BPF-LSM: ...`, or why every enforcer was refused and that armor falls
//! // back to audit-only monitoring.
//! eprintln!("{}", enforcement.summary());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use armor_core::WorkloadKey;
use armor_core::enforcer::{AlertSink, ApplyError, Enforcer, EnforcerAlert, Support};
use armor_enforce_apparmor::{AlertReader, AppArmor};
use armor_enforce_bpflsm::BpfLsm;

use crate::containerd::ContainerInfo;
use crate::error::{Error, Result};

/// The BPF-LSM enforcer's name (the `Enforcer` field of its alerts).
pub const BPFLSM: &str = armor_enforce_bpflsm::NAME;
/// The AppArmor enforcer's name (the `Enforcer` field of its alerts).
pub const APPARMOR: &str = armor_enforce_apparmor::NAME;

/// Enforcer alerts kept while the agent has not read them; more are counted and dropped.
pub const ALERT_QUEUE: usize = 65_536;

/// Which enforcer the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EnforcerChoice {
    /// The first that works here, by a real trial: BPF-LSM, then AppArmor, else audit-only.
    #[default]
    Auto,
    /// BPF-LSM or an error.
    BpfLsm,
    /// AppArmor or an error.
    AppArmor,
    /// No kernel enforcer: audit-only monitoring.
    None,
}

impl EnforcerChoice {
    /// Every choice, as written on the command line.
    pub const NAMES: &'static [&'static str] = &["auto", "bpflsm", "apparmor", "none"];
}

impl FromStr for EnforcerChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "bpflsm" => Ok(Self::BpfLsm),
            "apparmor" => Ok(Self::AppArmor),
            "none" => Ok(Self::None),
            other => Err(Error::Parse {
                what: "enforcer (auto, bpflsm, apparmor or none)",
                input: other.to_string(),
            }),
        }
    }
}

impl fmt::Display for EnforcerChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::BpfLsm => "bpflsm",
            Self::AppArmor => "apparmor",
            Self::None => "none",
        })
    }
}

/// Settings of the enforcers [`Enforcement::select`] may build.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EnforcementOptions {
    /// BPF-LSM capacities and alert rate limit.
    pub bpflsm: armor_enforce_bpflsm::Config,
    /// The BPF-LSM enforcer to select instead of building a new one from [`Self::bpflsm`]: one
    /// this process already loaded (its programs stay attached), e.g. shared by the runtimes an
    /// embedder starts one after another. Selection still loads it (a no-op when it is loaded)
    /// and falls back as usual when that fails.
    pub bpflsm_enforcer: Option<Arc<BpfLsm>>,
    /// Where AppArmor profiles are written (created on first use; armor only touches files it
    /// wrote).
    pub apparmor_dir: PathBuf,
}

impl Default for EnforcementOptions {
    fn default() -> Self {
        Self {
            bpflsm: armor_enforce_bpflsm::Config::default(),
            bpflsm_enforcer: None,
            apparmor_dir: PathBuf::from("/var/lib/armor/apparmor"),
        }
    }
}

impl EnforcementOptions {
    /// The same with AppArmor profiles written to `dir`.
    #[must_use]
    pub fn apparmor_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.apparmor_dir = dir.into();
        self
    }

    /// The same with these BPF-LSM settings.
    #[must_use]
    pub fn bpflsm(mut self, config: armor_enforce_bpflsm::Config) -> Self {
        self.bpflsm = config;
        self
    }

    /// The same, selecting `enforcer` (with its own settings) when BPF-LSM is selected, instead
    /// of building a new enforcer (the `bpflsm_enforcer` field).
    #[must_use]
    pub fn bpflsm_enforcer(mut self, enforcer: Arc<BpfLsm>) -> Self {
        self.bpflsm_enforcer = Some(enforcer);
        self
    }
}

/// The AppArmor profile armor loads for the workload named `workload` (`namespace/pod/container`,
/// `namespace/container`, `host`): the name to put in a container's OCI spec or pod
/// `securityContext`.
pub fn apparmor_profile_name(workload: &str) -> String {
    armor_enforce_apparmor::profile_name(&WorkloadKey::new(workload))
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

enum Backend {
    BpfLsm(Arc<BpfLsm>),
    AppArmor {
        enforcer: Arc<AppArmor>,
        // Reads denials while it lives; `None` when no audit source could be opened.
        _reader: Option<AlertReader>,
    },
}

/// The enforcer in use (or none), its alerts, and why the others were not chosen.
pub struct Enforcement {
    choice: EnforcerChoice,
    backend: Option<Backend>,
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

fn unsupported(s: Support) -> Option<String> {
    match s {
        Support::Supported => None,
        Support::Unsupported { reason } => Some(reason),
        other => Some(format!("probe inconclusive: {other:?}")),
    }
}

/// The message for audit-only monitoring: which enforcers were tried and why each was refused.
fn fallback_message(choice: EnforcerChoice, refused: &[(&'static str, String)]) -> String {
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

impl Enforcement {
    /// Audit-only monitoring: no kernel enforcer.
    pub fn none() -> Self {
        Self::with(EnforcerChoice::None, None, Vec::new(), Vec::new())
    }

    fn with(
        choice: EnforcerChoice,
        backend: Option<Backend>,
        refused: Vec<(&'static str, String)>,
        notes: Vec<String>,
    ) -> Self {
        let (tx, alerts) = mpsc::sync_channel(ALERT_QUEUE);
        let sink = Arc::new(ChannelSink {
            tx,
            dropped: AtomicU64::new(0),
        });
        let e = Self {
            choice,
            backend,
            refused,
            notes,
            alerts,
            sink,
        };
        if let Some(enforcer) = e.enforcer() {
            enforcer.set_alert_sink(e.sink.clone());
        }
        e
    }

    /// Builds the enforcer `choice` names. `Auto` tries BPF-LSM (a real load of its programs),
    /// then AppArmor (kernel interface and a profile compiled by `apparmor_parser`), and falls
    /// back to audit-only monitoring, saying why in [`Enforcement::summary`]. An explicit choice
    /// that does not work here is an error naming the reason.
    pub fn select(choice: EnforcerChoice, options: &EnforcementOptions) -> Result<Self> {
        let mut refused = Vec::new();
        let mut notes = Vec::new();
        let want_bpf = matches!(choice, EnforcerChoice::Auto | EnforcerChoice::BpfLsm);
        let want_aa = matches!(choice, EnforcerChoice::Auto | EnforcerChoice::AppArmor);
        if want_bpf {
            match try_bpflsm(options) {
                Ok(b) => return Ok(Self::with(choice, Some(b), refused, notes)),
                Err(reason) if choice == EnforcerChoice::Auto => {
                    refused.push((armor_enforce_bpflsm::NAME, reason));
                }
                Err(reason) => {
                    return Err(Error::Enforcer {
                        enforcer: armor_enforce_bpflsm::NAME,
                        reason,
                    });
                }
            }
        }
        if want_aa {
            match try_apparmor(options, &mut notes) {
                Ok(b) => return Ok(Self::with(choice, Some(b), refused, notes)),
                Err(reason) if choice == EnforcerChoice::Auto => {
                    refused.push((armor_enforce_apparmor::NAME, reason));
                }
                Err(reason) => {
                    return Err(Error::Enforcer {
                        enforcer: armor_enforce_apparmor::NAME,
                        reason,
                    });
                }
            }
        }
        Ok(Self::with(choice, None, refused, notes))
    }

    /// What the user asked for.
    pub fn choice(&self) -> EnforcerChoice {
        self.choice
    }

    /// The enforcer in use (`BPFLSM`, `AppArmor`), or `None` for audit-only monitoring.
    pub fn name(&self) -> Option<&'static str> {
        self.enforcer().map(|e| e.name())
    }

    /// The enforcer in use, as the runtime applies it.
    pub fn enforcer(&self) -> Option<Arc<dyn Enforcer>> {
        match self.backend.as_ref()? {
            Backend::BpfLsm(b) => Some(b.clone()),
            Backend::AppArmor { enforcer, .. } => Some(enforcer.clone()),
        }
    }

    /// The BPF-LSM enforcer, when it is the one in use (for its counters).
    pub fn bpflsm(&self) -> Option<&Arc<BpfLsm>> {
        match self.backend.as_ref()? {
            Backend::BpfLsm(b) => Some(b),
            Backend::AppArmor { .. } => None,
        }
    }

    /// The enforcers tried and refused, with the reason of each (`auto` only).
    pub fn refused(&self) -> &[(&'static str, String)] {
        &self.refused
    }

    /// One line for the operator: which enforcer runs and what it covers, or that armor falls
    /// back to audit-only monitoring and why.
    pub fn summary(&self) -> String {
        let mut s = match &self.backend {
            Some(Backend::BpfLsm(_)) => "enforcing with BPF-LSM: the host and every tracked \
                container (by cgroup), from the moment its rules are applied; containerd \
                containers on task create, before their entrypoint runs"
                .to_string(),
            Some(Backend::AppArmor { .. }) => "enforcing with AppArmor: a profile per workload; \
                containers are enforced when their OCI spec names their profile \
                (securityContext.appArmorProfile Localhost in Kubernetes), the host only for \
                processes started under its profile; the Block rules of everything else are \
                reported as `Audit (Block)`"
                .to_string(),
            None => fallback_message(self.choice, &self.refused),
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

    /// Whether the enforcer attaches by name, so a container's rules must be loaded before its
    /// task exists (AppArmor: runc applies the profile the spec names when it creates the task).
    pub fn loads_ahead(&self) -> bool {
        matches!(self.backend, Some(Backend::AppArmor { .. }))
    }

    /// Called before a workload's rules are applied: BPF-LSM resolves the (device, inode) of the
    /// workload's paths through `/proc/PID/root` of its task (the host uses `/`).
    pub(crate) fn prepare(&self, key: &WorkloadKey, pid: Option<u32>) {
        if let (Some(Backend::BpfLsm(b)), Some(pid)) = (&self.backend, pid) {
            b.set_root(key, format!("/proc/{pid}/root"));
        }
    }

    /// Called before the rules of a container that its runtime is creating are applied (from
    /// an OCI `createRuntime` hook): BPF-LSM resolves its paths from `rootfs` (the container's
    /// root as the host sees it: the init process has not switched to it yet) and keeps the
    /// rules out of force until the container's first exec
    /// ([`BpfLsm::from_first_exec`](armor_enforce_bpflsm::BpfLsm::from_first_exec)).
    pub(crate) fn prepare_creating(&self, key: &WorkloadKey, rootfs: &Path) {
        if let Some(Backend::BpfLsm(b)) = &self.backend {
            b.set_root(key, rootfs);
            b.from_first_exec(key);
        }
    }

    /// Called before a service's rules are applied: BPF-LSM resolves its paths from the host's
    /// root (a service's own `RootDirectory=` is not followed).
    pub(crate) fn prepare_service(&self, key: &WorkloadKey) {
        if let Some(Backend::BpfLsm(b)) = &self.backend {
            b.set_root(key, "/");
        }
    }

    /// Whether applied rules are enforced on a service's processes: BPF-LSM enforces by cgroup;
    /// AppArmor confines only processes systemd starts under the service's profile, which the
    /// runtime cannot see, so it does not count them as enforced and says how to confine them.
    pub(crate) fn covers_service(
        &self,
        key: &WorkloadKey,
        unit: &str,
    ) -> std::result::Result<(), String> {
        match &self.backend {
            None | Some(Backend::BpfLsm(_)) => Ok(()),
            Some(Backend::AppArmor { .. }) => Err(format!(
                "a service is confined by AppArmor only when systemd starts it under its \
                 profile: set `AppArmorProfile={}` in {unit}",
                armor_enforce_apparmor::profile_name(key)
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
        match &self.backend {
            None | Some(Backend::BpfLsm(_)) => Ok(()),
            Some(Backend::AppArmor { .. }) => {
                let profile = armor_enforce_apparmor::profile_name(key);
                if host {
                    return Err(format!(
                        "the host is not confined by AppArmor: only processes started under \
                         `{profile}` are"
                    ));
                }
                match info.and_then(|i| i.apparmor_profile.as_deref()) {
                    Some(p) if p == profile => Ok(()),
                    named => Err(format!(
                        "its OCI spec names AppArmor profile `{}`, not `{profile}`: set \
                         process.apparmorProfile (Kubernetes: securityContext.appArmorProfile \
                         {{type: Localhost, localhostProfile: {profile}}})",
                        named.unwrap_or("none")
                    )),
                }
            }
        }
    }

    /// AppArmor: unloads and deletes armor's profiles of workloads not in `keep` (also from an
    /// earlier run). Other enforcers have nothing to sweep. Returns the profiles removed.
    pub fn sweep(&self, keep: &[WorkloadKey]) -> std::result::Result<Vec<String>, ApplyError> {
        match &self.backend {
            Some(Backend::AppArmor { enforcer, .. }) => {
                let names: Vec<String> = keep
                    .iter()
                    .map(armor_enforce_apparmor::profile_name)
                    .collect();
                enforcer.sweep(&names)
            }
            _ => Ok(Vec::new()),
        }
    }
}

fn try_bpflsm(options: &EnforcementOptions) -> std::result::Result<Backend, String> {
    let lsm = match &options.bpflsm_enforcer {
        Some(lsm) => lsm.clone(),
        None => Arc::new(BpfLsm::new(options.bpflsm)),
    };
    // The trial is the real load (kept: applying a container's rules is then only map
    // updates). When it fails, the probe names the refusal precisely (`kernel refuses lsm
    // programs (EPERM)`); it fails on the first program, so that costs little.
    match lsm.load() {
        Ok(()) => Ok(Backend::BpfLsm(lsm)),
        Err(e) => {
            Err(unsupported(lsm.probe()).unwrap_or_else(|| armor_core::diag::error_chain(&e)))
        }
    }
}

fn try_apparmor(
    options: &EnforcementOptions,
    notes: &mut Vec<String>,
) -> std::result::Result<Backend, String> {
    let aa = AppArmor::new(&options.apparmor_dir);
    if let Some(reason) = unsupported(aa.probe()) {
        return Err(reason);
    }
    let reader = match aa.start_alerts() {
        Ok(r) => Some(r),
        Err(e) => {
            notes.push(format!(
                "AppArmor denials are not reported: {}",
                armor_core::diag::error_chain(&e)
            ));
            None
        }
    };
    Ok(Backend::AppArmor {
        enforcer: Arc::new(aa),
        _reader: reader,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn choices_parse_and_print() {
        for name in EnforcerChoice::NAMES {
            let c: EnforcerChoice = name.parse().unwrap();
            assert_eq!(c.to_string(), *name);
        }
        let err = "selinux".parse::<EnforcerChoice>().unwrap_err().to_string();
        assert!(err.contains("`selinux`"), "{err}");
    }

    #[test]
    fn fallback_names_every_refusal() {
        let m = fallback_message(
            EnforcerChoice::Auto,
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
    }

    /// On a machine where neither enforcer works (ours), `auto` falls back and an explicit
    /// choice fails with the same reason; where one works, `auto` picks it.
    #[test]
    fn auto_agrees_with_explicit_choices() {
        let opts = EnforcementOptions::default()
            .apparmor_dir(std::env::temp_dir().join(format!("armor-rt-aa-{}", std::process::id())));
        let auto = Enforcement::select(EnforcerChoice::Auto, &opts).unwrap();
        let bpf = Enforcement::select(EnforcerChoice::BpfLsm, &opts);
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
                assert!(Enforcement::select(EnforcerChoice::AppArmor, &opts).is_err());
            }
        }
    }

    #[test]
    fn profile_names_are_the_apparmor_enforcers() {
        let n = apparmor_profile_name("shop/web-0/web");
        assert!(n.starts_with("armor.shop"), "{n}");
        assert_eq!(
            n,
            armor_enforce_apparmor::profile_name(
                &WorkloadKey::new("shop/web-0/web").with_cgroup(7)
            )
        );
    }
}
