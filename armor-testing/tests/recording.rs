//! The Enforcer contract as the RecordingEnforcer implements it: atomic apply, failure keeps the
//! previous rules, remove, foreign artefacts refused, alerts delivered to the sink.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]

use std::sync::{Arc, Mutex};

use armor_core::enforcer::{
    AlertSink, Applied, ApplyError, Artifact, Destination, Enforcer, EnforcerAlert, Unenforceable,
};
use armor_core::{CompiledPolicy, Container, PolicySet, Posture, WorkloadKey};
use armor_testing::recording::{Call, RecordingEnforcer};

fn rules(paths: &[&str]) -> Arc<armor_core::RuleSet> {
    let items: Vec<String> = paths.iter().map(|p| format!("{{path: {p}}}")).collect();
    let text = format!(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {{name: p, namespace: n}}\nspec:\n  selector: {{matchLabels: {{a: b}}}}\n  file: {{matchPaths: [{}]}}\n",
        items.join(", ")
    );
    let set = PolicySet::parse(&text, "t.yaml").unwrap();
    CompiledPolicy::build(&set).unwrap().rule_set(
        &Container::new("n", "c").label("a", "b").into(),
        Posture::default(),
    )
}

#[derive(Debug)]
struct Foreign;
impl Artifact for Foreign {
    fn render(&self) -> String {
        String::new()
    }
    fn unenforceable(&self) -> &[Unenforceable] {
        &[]
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[test]
fn apply_update_fail_remove() {
    let e = RecordingEnforcer::new();
    let key = WorkloadKey::new("n/pod/c").with_cgroup(42);
    let dest = Destination::new(key.clone());
    let a1 = e.compile(&dest, &rules(&["/etc/a"])).unwrap();
    assert_eq!(e.apply(&dest, a1.as_ref()).unwrap(), Applied::Installed);
    assert_eq!(e.apply(&dest, a1.as_ref()).unwrap(), Applied::Unchanged);
    let a2 = e.compile(&dest, &rules(&["/etc/a", "/etc/b"])).unwrap();
    e.fail_apply(Some("map full"));
    let err = e.apply(&dest, a2.as_ref()).unwrap_err();
    assert!(matches!(err, ApplyError::Refused { .. }), "{err}");
    assert_eq!(
        e.installed()[&key],
        a1.render(),
        "a failed apply keeps the previous rules"
    );
    e.fail_apply(None);
    assert_eq!(e.apply(&dest, a2.as_ref()).unwrap(), Applied::Updated);
    assert!(e.installed()[&key].contains("/etc/b"));
    assert!(matches!(
        e.apply(&dest, &Foreign),
        Err(ApplyError::ForeignArtifact { .. })
    ));
    e.remove(&key).unwrap();
    assert!(e.installed().is_empty());
    assert!(matches!(
        e.remove(&key),
        Err(ApplyError::UnknownWorkload(_))
    ));
    let calls = e.calls();
    assert!(matches!(calls.last(), Some(Call::Remove(_, false))));
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::Compile(..)))
            .count(),
        2
    );
}

#[test]
fn alerts_reach_the_sink() {
    #[derive(Default)]
    struct Sink(Mutex<Vec<EnforcerAlert>>);
    impl AlertSink for Sink {
        fn alert(&self, a: EnforcerAlert) {
            self.0.lock().unwrap().push(a);
        }
    }
    let e = RecordingEnforcer::new();
    let mk = || {
        let rs = rules(&["/etc/a"]);
        let d = rs.decide(&armor_core::Event::open(
            "/etc/a",
            armor_core::Access::READ,
            None,
        ));
        let a = d.alert().unwrap();
        assert_eq!(a.operation, "File");
        EnforcerAlert::blocked(
            "Recording",
            a.rule.map(|_| 0),
            armor_core::Category::File,
            "/etc/a",
        )
    };
    assert!(!e.emit(mk()), "no sink yet");
    let sink = Arc::new(Sink::default());
    e.set_alert_sink(sink.clone());
    assert!(e.emit(mk()));
    assert_eq!(sink.0.lock().unwrap().len(), 1);
    assert_eq!(sink.0.lock().unwrap()[0].result(), "Permission denied");
}
