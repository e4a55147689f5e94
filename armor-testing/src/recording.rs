//! An enforcer that enforces nothing and records every call, for tests of code that drives
//! enforcers (the runtime, the k8s agent) and for fuzzing.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use armor_core::RuleSet;
use armor_core::enforcer::{
    AlertSink, Applied, ApplyError, Artifact, Built, Capacity, CompileError, Destination, Enforcer,
    EnforcerAlert, EnforcerFactory, Support, Unenforceable,
};
use armor_core::rule::Rule;
use armor_core::workload::WorkloadKey;
use parking_lot::Mutex;

/// One call the enforcer received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Call {
    /// `compile` for a destination (the workload, its root, when its rules take force), with the
    /// rendered artefact.
    Compile(Destination, String),
    /// `apply` for a workload, with the rendered artefact and the result.
    Apply(WorkloadKey, String, Result<Applied, String>),
    /// `remove` for a workload, with whether it was installed.
    Remove(WorkloadKey, bool),
}

/// The artefact of the [`RecordingEnforcer`]: the rule ids and a text rendering of each rule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedArtifact {
    /// Indices into the compiled policy's rules.
    pub rules: Vec<u32>,
    /// One line per rule.
    pub text: String,
    /// The rules left out ([`RecordingEnforcer::leave_out`]).
    pub left_out: Vec<Unenforceable>,
}

impl Artifact for RecordedArtifact {
    fn render(&self) -> String {
        self.text.clone()
    }
    fn unenforceable(&self) -> &[Unenforceable] {
        &self.left_out
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Which rules an artefact leaves out, and why.
type LeaveOut = Arc<dyn Fn(&Rule) -> Option<String> + Send + Sync>;

/// Records calls; keeps the installed artefact per workload; can be told to fail and to leave
/// rules out of its artefacts.
#[derive(Default)]
pub struct RecordingEnforcer {
    calls: Mutex<Vec<Call>>,
    installed: Mutex<BTreeMap<WorkloadKey, String>>,
    /// Applies that still succeed before one fails with the reason; whether only that one
    /// fails (else every later one).
    fail_apply: Mutex<Option<(usize, String, bool)>>,
    leave_out: Mutex<Option<LeaveOut>>,
    /// What `health` answers ([`RecordingEnforcer::set_health`]).
    fault: Mutex<Option<String>>,
    sink: armor_core::enforcer::AlertSlot,
}

impl std::fmt::Debug for RecordingEnforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingEnforcer")
            .field("calls", &self.calls.lock().len())
            .field("installed", &self.installed.lock().len())
            .finish()
    }
}

impl RecordingEnforcer {
    /// A new enforcer with no calls.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }

    /// The installed artefact text per workload.
    pub fn installed(&self) -> BTreeMap<WorkloadKey, String> {
        self.installed.lock().clone()
    }

    /// Makes every later `apply` fail with `reason` (None: succeed again).
    pub fn fail_apply(&self, reason: Option<&str>) {
        *self.fail_apply.lock() = reason.map(|r| (0, r.to_string(), false));
    }

    /// Lets the next `successes` applies succeed, makes the one after them fail with `reason`
    /// and the later ones succeed again: one failure half-way through a policy replacement.
    pub fn fail_apply_after(&self, successes: usize, reason: &str) {
        *self.fail_apply.lock() = Some((successes, reason.to_string(), true));
    }

    /// Makes later artefacts list every rule for which `why` returns a reason as not enforced
    /// ([`Artifact::unenforceable`]), as a kernel enforcer does for what it cannot represent.
    pub fn leave_out(&self, why: impl Fn(&Rule) -> Option<String> + Send + Sync + 'static) {
        *self.leave_out.lock() = Some(Arc::new(why));
    }

    /// Makes `health` fail with `fault` (None: healthy again), as a kernel enforcer does when
    /// what it applied was taken away.
    pub fn set_health(&self, fault: Option<&str>) {
        *self.fault.lock() = fault.map(str::to_owned);
    }

    /// Sends `alert` to the configured sink, as a kernel enforcer's reader thread would.
    /// Returns whether a sink was set.
    pub fn emit(&self, alert: EnforcerAlert) -> bool {
        let sink = self.sink.get();
        match sink {
            Some(s) => {
                s.alert(alert);
                true
            }
            None => false,
        }
    }
}

impl Enforcer for RecordingEnforcer {
    fn name(&self) -> &'static str {
        "Recording"
    }

    fn probe(&self) -> Support {
        Support::Supported
    }

    fn compile(
        &self,
        dest: &Destination,
        rules: &RuleSet,
    ) -> Result<Box<dyn Artifact>, CompileError> {
        let mut text = String::new();
        for r in rules.rules() {
            text.push_str(&format!(
                "{} {} {} {}\n",
                r.policy.display_name(),
                r.origin.field,
                r.action,
                r.target
            ));
        }
        self.calls
            .lock()
            .push(Call::Compile(dest.clone(), text.clone()));
        let leave_out = self.leave_out.lock().clone();
        let left_out = match leave_out {
            Some(why) => rules
                .rule_ids()
                .iter()
                .filter_map(|&id| {
                    let reason = why(rules.rule(id)?)?;
                    Some(Unenforceable::new(id, reason))
                })
                .collect(),
            None => Vec::new(),
        };
        Ok(Box::new(RecordedArtifact {
            rules: rules.rule_ids().to_vec(),
            text,
            left_out,
        }))
    }

    fn apply(&self, dest: &Destination, artifact: &dyn Artifact) -> Result<Applied, ApplyError> {
        let key = &dest.key;
        let Some(a) = artifact.as_any().downcast_ref::<RecordedArtifact>() else {
            return Err(ApplyError::ForeignArtifact {
                enforcer: self.name(),
            });
        };
        let mut fail = self.fail_apply.lock();
        let failure = match &mut *fail {
            Some((0, reason, once)) => {
                let reason = reason.clone();
                if *once {
                    *fail = None;
                }
                Some(reason)
            }
            Some((n, _, _)) => {
                *n -= 1;
                None
            }
            None => None,
        };
        drop(fail);
        if let Some(reason) = failure {
            self.calls.lock().push(Call::Apply(
                key.clone(),
                a.text.clone(),
                Err(reason.clone()),
            ));
            return Err(ApplyError::Refused {
                enforcer: self.name(),
                reason,
            });
        }
        let mut inst = self.installed.lock();
        let result = match inst.insert(key.clone(), a.text.clone()) {
            None => Applied::Installed,
            Some(old) if old == a.text => Applied::Unchanged,
            Some(_) => Applied::Updated,
        };
        drop(inst);
        self.calls
            .lock()
            .push(Call::Apply(key.clone(), a.text.clone(), Ok(result.clone())));
        Ok(result)
    }

    fn remove(&self, key: &WorkloadKey) -> Result<(), ApplyError> {
        let was = self.installed.lock().remove(key).is_some();
        self.calls.lock().push(Call::Remove(key.clone(), was));
        if was {
            Ok(())
        } else {
            Err(ApplyError::UnknownWorkload(key.name.clone()))
        }
    }

    fn set_alert_sink(&self, sink: Arc<dyn AlertSink>) {
        self.sink.set(sink);
    }

    /// `workloads`: the workloads installed, of [`RecordingEnforcer::CAPACITY`].
    fn capacity(&self) -> Vec<Capacity> {
        let n = u64::try_from(self.installed.lock().len()).unwrap_or(u64::MAX);
        vec![Capacity::new("workloads", n, Self::CAPACITY)]
    }

    /// What [`RecordingEnforcer::set_health`] set last (`Ok` at first).
    fn health(&self) -> Result<(), String> {
        match &*self.fault.lock() {
            Some(fault) => Err(fault.clone()),
            None => Ok(()),
        }
    }
}

impl RecordingEnforcer {
    /// The `workloads` capacity it reports.
    pub const CAPACITY: u64 = 1024;
}

/// Builds (hands out) one shared [`RecordingEnforcer`], choice `recording`: for tests of code
/// that selects its enforcer from a list of factories, as the agent does.
#[derive(Debug, Clone, Default)]
pub struct RecordingFactory(Arc<RecordingEnforcer>);

impl RecordingFactory {
    /// A factory handing out `enforcer`.
    pub fn new(enforcer: Arc<RecordingEnforcer>) -> Self {
        Self(enforcer)
    }
}

impl EnforcerFactory for RecordingFactory {
    fn choice(&self) -> &'static str {
        "recording"
    }

    fn name(&self) -> &'static str {
        "Recording"
    }

    fn build(&self) -> Result<Built, String> {
        Ok(Built::new(self.0.clone()))
    }
}
