#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The reducer alone: inputs and a fixed clock in, effects out, no kernel, no enforcer.

use std::any::Any;
use std::time::Duration;

use armor_core::PolicySet;
use armor_core::enforcer::{Artifact, Start, Unenforceable};

use super::*;

const POLICIES: &str = r#"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: block-touch, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  process:
    matchPaths: [{path: /usr/bin/touch}]
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: block-mkdir, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  process:
    matchPaths: [{path: /usr/bin/mkdir}]
  action: Block
"#;

const OTHER: &str = r#"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: block-rm, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  process:
    matchPaths: [{path: /usr/bin/rm}]
  action: Block
"#;

fn compiled(yaml: &str) -> CompiledPolicy {
    CompiledPolicy::build(&PolicySet::parse(yaml, "p.yaml").unwrap()).unwrap()
}

fn now() -> Now {
    Now::at(
        Instant::now(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    )
}

fn config(require: bool) -> RuntimeConfig {
    let mut c = RuntimeConfig::default().require_enforcement(require);
    c.host_name = "node-1".to_string();
    c
}

fn web(id: &str, pid: u32) -> ContainerInfo {
    let mut info = ContainerInfo {
        id: id.to_string(),
        pid: Some(pid),
        ..ContainerInfo::default()
    };
    for (k, v) in [
        ("io.kubernetes.pod.name", format!("web-{id}")),
        ("io.kubernetes.pod.namespace", "shop".to_string()),
        ("io.kubernetes.container.name", "web".to_string()),
        ("app", "web".to_string()),
    ] {
        info.labels.insert(k.to_string(), v);
    }
    info
}

/// An index with `yaml`, started, its host apply answered by one enforcer holding everything.
fn started(yaml: &str, require: bool) -> WorkloadIndex {
    let mut index = WorkloadIndex::new(config(require), compiled(yaml));
    let effects = index.apply(&Input::Start, now());
    assert_eq!(applies(&effects), vec![Slot::Host]);
    let rest = index.apply(
        &Input::Applied {
            slot: &Slot::Host,
            outcome: &held(&[]),
        },
        now(),
    );
    assert!(rest.is_empty(), "{rest:?}");
    index
}

fn applies(effects: &[Effect]) -> Vec<Slot> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Apply(a) => Some(a.slot.clone()),
            _ => None,
        })
        .collect()
}

fn problems(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Problem(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

/// One enforcer `TEST` that holds the rules and confines the workload.
fn held(gaps: &[RuleGap]) -> ApplyOutcome {
    ApplyOutcome::new(vec![EnforcerOutcome::Held {
        enforcer: "TEST",
        gaps: gaps.to_vec(),
    }])
}

fn failed(error: &str) -> ApplyOutcome {
    ApplyOutcome::new(vec![EnforcerOutcome::Failed {
        enforcer: "TEST",
        error: error.to_string(),
    }])
}

#[derive(Debug)]
struct Leaves(Vec<Unenforceable>);

impl Artifact for Leaves {
    fn render(&self) -> String {
        String::new()
    }
    fn unenforceable(&self) -> &[Unenforceable] {
        &self.0
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The gap of `rules`' rule on `path` as an enforcer that leaves it out reports it.
fn gap_of(rules: &RuleSet, policy: &CompiledPolicy, path: &str) -> RuleGap {
    let id = rules
        .rule_ids()
        .iter()
        .copied()
        .find(|&i| policy.rules()[i as usize].target.to_string().contains(path))
        .unwrap();
    let artifact = Leaves(vec![Unenforceable::new(id, "too large")]);
    RuleGap::list("TEST", rules, &artifact).remove(0)
}

/// Answers every apply among `effects` with `outcome`, depth-first, as the shell does;
/// returns every effect that is not an apply, in order.
fn drive(
    index: &mut WorkloadIndex,
    effects: Vec<Effect>,
    outcome: &dyn Fn(&Application) -> ApplyOutcome,
) -> Vec<Effect> {
    let mut queue: std::collections::VecDeque<Effect> = effects.into();
    let mut out = Vec::new();
    while let Some(e) = queue.pop_front() {
        match e {
            Effect::Apply(app) => {
                let answer = outcome(&app);
                let more = index.apply(
                    &Input::Applied {
                        slot: &app.slot,
                        outcome: &answer,
                    },
                    now(),
                );
                for m in more.into_iter().rev() {
                    queue.push_front(m);
                }
                out.push(Effect::Problem(format!("applied {:?}", app.slot)));
            }
            other => out.push(other),
        }
    }
    out
}

#[test]
fn a_running_container_is_applied_then_made_visible_and_its_coverage_comes_from_the_answer() {
    let mut index = started(POLICIES, false);
    let info = web("c1", 100);
    let effects = index.apply(
        &Input::ContainerRunning {
            info: &info,
            cgroup_id: 7,
        },
        now(),
    );
    assert!(matches!(&effects[0], Effect::Apply(a)
        if a.slot == Slot::Cgroup(7)
            && a.destination.root.as_deref() == Some(Path::new("/proc/100/root"))
            && a.destination.start == Start::Now
            && a.container.as_ref().is_some_and(|c| c.id == "c1")
            && !a.host && a.unit.is_none()));
    assert!(
        matches!(&effects[1], Effect::SetVisibility { cgroup_id: 7, visibility, .. }
        if visibility.process && visibility.file)
    );
    let key = WorkloadKey::new("shop/web-c1/web").with_cgroup(7);
    assert!(matches!(&effects[2], Effect::Changed(ContainerChange::Tracked(k)) if *k == key));
    assert_eq!(index.containers(), vec![key.clone()]);
    // No answer yet: nothing is claimed.
    assert_eq!(index.coverages()[1], (key.clone(), Coverage::NoRules));

    // The enforcer leaves `touch` out: one report, naming the rule, and Partial coverage.
    let rules = index.workloads[&7].rules.clone();
    let gap = gap_of(&rules, index.policy(), "/usr/bin/touch");
    let more = index.apply(
        &Input::Applied {
            slot: &Slot::Cgroup(7),
            outcome: &held(std::slice::from_ref(&gap)),
        },
        now(),
    );
    let p = problems(&more);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("shop/block-touch") && p[0].contains("Audit (Block)"),
        "{p:?}"
    );
    assert!(
        matches!(&index.coverages()[1].1, Coverage::Partial { gaps, .. } if *gaps == vec![gap.clone()])
    );

    // Answered again the same way (a reload of the same rules): not reported twice.
    let again = index.apply_in_place(Slot::Cgroup(7));
    assert!(matches!(again, Effect::Apply(_)));
    let more = index.apply(
        &Input::Applied {
            slot: &Slot::Cgroup(7),
            outcome: &held(&[gap]),
        },
        now(),
    );
    assert!(problems(&more).is_empty(), "{more:?}");

    // The same task again changes nothing; a restart (another pid) replaces it.
    let same = index.apply(
        &Input::ContainerRunning {
            info: &info,
            cgroup_id: 7,
        },
        now(),
    );
    assert!(matches!(
        same.as_slice(),
        [Effect::Changed(ContainerChange::Unchanged)]
    ));
    let restarted = web("c1", 200);
    let effects = index.apply(
        &Input::ContainerRunning {
            info: &restarted,
            cgroup_id: 8,
        },
        now(),
    );
    assert!(matches!(&effects[0], Effect::Remove(k) if *k == key));
    assert!(matches!(
        &effects[1],
        Effect::ClearVisibility { cgroup_id: 7, .. }
    ));
    assert_eq!(applies(&effects), vec![Slot::Cgroup(8)]);
    assert_eq!(index.task_of("c1"), Some(200));
}

#[test]
fn an_apply_nobody_asked_for_is_a_problem_not_a_change() {
    let mut index = started(POLICIES, false);
    let effects = index.apply(
        &Input::Applied {
            slot: &Slot::Cgroup(9),
            outcome: &held(&[]),
        },
        now(),
    );
    assert_eq!(problems(&effects).len(), 1);
    assert!(index.containers().is_empty());
}

#[test]
fn a_container_being_created_is_tracked_only_once_admitted() {
    let mut index = started(POLICIES, false);
    let info = web("c2", 300);
    let rootfs = Path::new("/run/bundle/rootfs");
    let effects = index.apply(
        &Input::ContainerCreating {
            info: &info,
            cgroup_id: 11,
            rootfs,
        },
        now(),
    );
    let [Effect::Apply(app)] = effects.as_slice() else {
        panic!("{effects:?}")
    };
    assert_eq!(app.destination.start, Start::FirstExec);
    assert_eq!(app.destination.root.as_deref(), Some(rootfs));
    // Not tracked while its apply is pending.
    assert!(index.containers().is_empty());

    // An enforcer failed: whatever was applied is discarded, the container refused with why.
    let out = index.apply(
        &Input::Applied {
            slot: &app.slot,
            outcome: &failed("map full"),
        },
        now(),
    );
    assert!(matches!(&out[0], Effect::Discard(k) if k.name == "shop/web-c2/web"));
    assert!(
        matches!(&out[1], Effect::Refused { workload, reason }
        if workload == "shop/web-c2/web" && reason.contains("map full")),
        "{out:?}"
    );
    assert!(index.containers().is_empty());
    assert!(
        problems(&out).is_empty(),
        "the reason is the refusal's, not a second report"
    );

    // Again, held: admitted with its visibility.
    let effects = index.apply(
        &Input::ContainerCreating {
            info: &info,
            cgroup_id: 11,
            rootfs,
        },
        now(),
    );
    let out = drive(&mut index, effects, &|_| held(&[]));
    assert!(
        out.iter()
            .any(|e| matches!(e, Effect::SetVisibility { cgroup_id: 11, .. }))
    );
    assert!(out.iter().any(
        |e| matches!(e, Effect::Changed(ContainerChange::Tracked(k)) if k.cgroup_id == Some(11))
    ));
    assert_eq!(index.task_of("c2"), Some(300));
}

#[test]
fn a_creation_is_refused_when_enforcement_is_required_and_incomplete_or_nothing_confines_it() {
    let mut index = started(POLICIES, true);
    let info = web("c3", 400);
    let rootfs = Path::new("/r");
    let effects = index.apply(
        &Input::ContainerCreating {
            info: &info,
            cgroup_id: 12,
            rootfs,
        },
        now(),
    );
    let rules = index.policy().rule_set(
        &Workload::Container({
            let mut c = armor_core::Container::new("shop", "web");
            c.labels.insert("app".into(), "web".into());
            c
        }),
        armor_core::Posture::default(),
    );
    let gap = gap_of(&rules, index.policy(), "/usr/bin/mkdir");
    let out = drive(&mut index, effects, &|_| held(std::slice::from_ref(&gap)));
    assert!(out.iter().any(|e| matches!(e, Effect::Refused { reason, .. } if reason.contains("enforcement is required"))), "{out:?}");
    assert!(index.containers().is_empty());

    // Not required, but the only enforcer does not confine it: refused too (fail closed).
    let mut index = started(POLICIES, false);
    let effects = index.apply(
        &Input::ContainerCreating {
            info: &info,
            cgroup_id: 12,
            rootfs,
        },
        now(),
    );
    let out = drive(&mut index, effects, &|_| {
        ApplyOutcome::new(vec![EnforcerOutcome::NotCovered {
            enforcer: "TEST",
            why: "its spec names no profile".to_string(),
        }])
    });
    assert!(
        out.iter().any(
            |e| matches!(e, Effect::Refused { reason, .. } if reason.contains("names no profile"))
        ),
        "{out:?}"
    );
    // Audit-only (no enforcer at all): admitted, monitored only.
    let effects = index.apply(
        &Input::ContainerCreating {
            info: &info,
            cgroup_id: 12,
            rootfs,
        },
        now(),
    );
    let out = drive(&mut index, effects, &|_| ApplyOutcome::default());
    assert!(
        out.iter()
            .any(|e| matches!(e, Effect::Changed(ContainerChange::Tracked(_)))),
        "{out:?}"
    );
    assert!(
        matches!(&index.coverages()[1].1, Coverage::MonitoredOnly { reason } if reason.contains("audit-only"))
    );
}

#[test]
fn a_defined_container_is_loaded_ahead_without_reports_and_kept_until_its_task_stops() {
    let mut index = started(POLICIES, false);
    let info = web("c4", 0);
    let effects = index.apply(&Input::ContainerDefined(&info), now());
    let out = drive(&mut index, effects, &|_| {
        ApplyOutcome::new(vec![EnforcerOutcome::NotCovered {
            enforcer: "TEST",
            why: "no task yet".to_string(),
        }])
    });
    assert!(
        problems(&out).iter().all(|p| p.starts_with("applied")),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|e| matches!(e, Effect::Changed(ContainerChange::Prepared(_))))
    );
    assert!(index.keep().iter().any(|k| k.name == "shop/web-c4/web"));
    let out = index.apply(&Input::ContainerStopped { id: "c4" }, now());
    assert!(matches!(
        out.as_slice(),
        [Effect::Changed(ContainerChange::Unchanged)]
    ));
    assert!(!index.keep().iter().any(|k| k.name == "shop/web-c4/web"));
}

#[test]
fn a_replacement_that_fails_on_one_workload_puts_every_switched_one_back_in_reverse_order() {
    let mut index = started(POLICIES, false);
    for (id, cg) in [("a", 21), ("b", 22)] {
        let info = web(id, 500 + cg as u32);
        let effects = index.apply(
            &Input::ContainerRunning {
                info: &info,
                cgroup_id: cg,
            },
            now(),
        );
        drive(&mut index, effects, &|_| held(&[]));
    }
    let before = index.policy().clone();
    let new = Arc::new(compiled(OTHER));
    let effects = index.apply(&Input::ReplacePolicy(&new), now());
    assert_eq!(
        applies(&effects),
        vec![Slot::Host],
        "one workload at a time, the host first"
    );
    // The host and cgroup 21 switch; cgroup 22 fails.
    let out = drive(&mut index, effects, &|a| match a.slot {
        Slot::Cgroup(22) if a.rules.rule_ids().len() == 1 => failed("no room"),
        _ => held(&[]),
    });
    let order: Vec<String> = problems(&out)
        .into_iter()
        .filter(|p| p.starts_with("applied"))
        .collect();
    assert_eq!(
        order,
        vec![
            "applied Host",
            "applied Cgroup(21)",
            "applied Cgroup(22)",
            // Back, last switched first.
            "applied Cgroup(22)",
            "applied Cgroup(21)",
            "applied Host",
        ]
    );
    let Some(Effect::Refused { workload, reason }) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(workload, "shop/web-b/web");
    assert!(reason.contains("no room"), "{reason}");
    assert!(
        Arc::ptr_eq(index.policy(), &before),
        "the previous policies stay in force"
    );
    assert_eq!(index.workloads[&21].rules.rule_ids().len(), 2);

    // Without a failure it goes through, every workload on the new rules.
    let effects = index.apply(&Input::ReplacePolicy(&new), now());
    let out = drive(&mut index, effects, &|_| held(&[]));
    assert!(
        !out.iter().any(|e| matches!(e, Effect::Refused { .. })),
        "{out:?}"
    );
    assert!(Arc::ptr_eq(index.policy(), &new));
    assert_eq!(index.workloads[&22].rules.rule_ids().len(), 1);
}

#[test]
fn services_follow_their_units_and_the_cgroups_below_them() {
    let mut index = started(POLICIES, false);
    let inv = Inventory::parse(
        "services:\n  - unit: nginx.service\n    namespace: web\n    labels: {app: web}\n",
        "inv.yaml",
    )
    .unwrap();
    let found = BTreeMap::from([(
        "nginx.service".to_string(),
        FoundUnit::new(31, BTreeMap::from([(32, "/worker".to_string())])),
    )]);
    let effects = index.apply(
        &Input::Services {
            inventory: &inv,
            found: &found,
        },
        now(),
    );
    let out = drive(&mut index, effects, &|a| {
        assert_eq!(a.unit.as_deref(), Some("nginx.service"));
        assert_eq!(a.destination.root.as_deref(), Some(Path::new("/")));
        held(&[])
    });
    let tracked: Vec<String> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Changed(ContainerChange::Tracked(k)) => Some(k.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        tracked,
        vec!["web/nginx.service", "web/nginx.service/worker"]
    );
    assert_eq!(index.service_units(), vec!["nginx.service".to_string()]);

    // The unit restarted (a new cgroup, nothing below): both go, the new one comes.
    let found = BTreeMap::from([(
        "nginx.service".to_string(),
        FoundUnit::new(33, BTreeMap::new()),
    )]);
    let effects = index.apply(
        &Input::Services {
            inventory: &inv,
            found: &found,
        },
        now(),
    );
    let out = drive(&mut index, effects, &|_| held(&[]));
    let cleared: Vec<u64> = out
        .iter()
        .filter_map(|e| match e {
            Effect::ClearVisibility { cgroup_id, .. } => Some(*cgroup_id),
            _ => None,
        })
        .collect();
    assert_eq!(cleared, vec![32, 31]);
    assert_eq!(
        index
            .services()
            .iter()
            .map(|k| k.cgroup_id)
            .collect::<Vec<_>>(),
        vec![Some(33)]
    );
}

#[test]
fn a_failed_load_ahead_is_reported_though_its_coverage_is_not() {
    let mut index = started(POLICIES, false);
    let info = web("c5", 0);
    let effects = index.apply(&Input::ContainerDefined(&info), now());
    let out = drive(&mut index, effects, &|_| failed("profile rejected"));
    let reported: Vec<String> = problems(&out)
        .into_iter()
        .filter(|p| !p.starts_with("applied"))
        .collect();
    assert_eq!(reported.len(), 1, "{out:?}");
    assert!(reported[0].contains("profile rejected"), "{reported:?}");
}

#[test]
fn a_replacement_changes_visibility_only_once_every_workload_switched() {
    let mut index = started(POLICIES, false);
    for (id, cg) in [("a", 41), ("b", 42)] {
        let info = web(id, 600 + cg as u32);
        let effects = index.apply(
            &Input::ContainerRunning {
                info: &info,
                cgroup_id: cg,
            },
            now(),
        );
        drive(&mut index, effects, &|_| held(&[]));
    }
    let new = Arc::new(compiled(OTHER));
    // Rolled back: no visibility entry is touched.
    let effects = index.apply(&Input::ReplacePolicy(&new), now());
    let out = drive(&mut index, effects, &|a| match a.slot {
        Slot::Cgroup(42) if a.rules.rule_ids().len() == 1 => failed("no room"),
        _ => held(&[]),
    });
    assert!(
        !out.iter()
            .any(|e| matches!(e, Effect::SetVisibility { .. })),
        "{out:?}"
    );
    // Taken: both entries, after the last apply.
    let effects = index.apply(&Input::ReplacePolicy(&new), now());
    let out = drive(&mut index, effects, &|_| held(&[]));
    let last_apply = out
        .iter()
        .rposition(|e| matches!(e, Effect::Problem(p) if p.starts_with("applied")))
        .unwrap();
    let set: Vec<(usize, u64)> = out
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Effect::SetVisibility { cgroup_id, .. } => Some((i, *cgroup_id)),
            _ => None,
        })
        .collect();
    assert_eq!(set.iter().map(|s| s.1).collect::<Vec<_>>(), vec![41, 42]);
    assert!(set.iter().all(|(i, _)| *i > last_apply), "{out:?}");
}

#[test]
fn a_cgroup_found_as_two_services_is_one_workload() {
    let mut index = started(POLICIES, false);
    let inv = Inventory::parse(
        "services:\n  - unit: outer.service\n    namespace: web\n  - unit: inner.service\n    namespace: web\n",
        "inv.yaml",
    )
    .unwrap();
    // `inner.service`'s cgroup is reported below `outer.service`'s as well.
    let found = BTreeMap::from([
        (
            "outer.service".to_string(),
            FoundUnit::new(51, BTreeMap::from([(52, "/inner.service".to_string())])),
        ),
        (
            "inner.service".to_string(),
            FoundUnit::new(52, BTreeMap::new()),
        ),
    ]);
    let effects = index.apply(
        &Input::Services {
            inventory: &inv,
            found: &found,
        },
        now(),
    );
    let slots = applies(&effects);
    let mut unique = slots.clone();
    unique.dedup();
    assert_eq!(slots, unique, "one apply per slot: {effects:?}");
    let out = drive(&mut index, effects, &|_| held(&[]));
    let reported: Vec<String> = problems(&out)
        .into_iter()
        .filter(|p| !p.starts_with("applied"))
        .collect();
    assert_eq!(reported.len(), 1, "{out:?}");
    assert!(
        reported[0].contains("tracked as web/outer.service/inner.service"),
        "{reported:?}"
    );
    assert_eq!(index.services().len(), 2);
}

#[test]
fn a_kernel_event_emits_the_records_of_its_workload_throttled_on_the_given_clock() {
    use armor_ebpf::{Event as KernelEvent, EventKind, FileOp, Syscall};
    let audit = r#"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: audit-secret, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  file:
    matchPaths: [{path: /etc/secret}]
  action: Audit
"#;
    let mut config = config(false).throttling(2, Duration::from_secs(10));
    config.host_name = "node-1".to_string();
    let mut index = WorkloadIndex::new(config, compiled(audit));
    let effects = index.apply(&Input::Start, now());
    drive(&mut index, effects, &|_| held(&[]));
    let info = web("c9", 900);
    let effects = index.apply(
        &Input::ContainerRunning {
            info: &info,
            cgroup_id: 61,
        },
        now(),
    );
    drive(&mut index, effects, &|_| held(&[]));
    let mut open = KernelEvent::new(
        Syscall::Openat,
        EventKind::File(FileOp::new("/etc/secret", -100, 0)),
    );
    open.cgroup_id = 61;
    open.pid = 4242;
    let tree = ProcessTree::new();
    let t0 = Instant::now();
    let at = |secs: u64| {
        Now::at(
            t0 + Duration::from_secs(secs),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs),
        )
    };
    let emitted = |effects: Vec<Effect>| -> Vec<String> {
        effects
            .into_iter()
            .map(|e| match e {
                Effect::Emit(r) => format!(
                    "{}:{}:{}:{}",
                    r.kind.unwrap_or_default(),
                    r.pod_name.unwrap_or_default(),
                    r.policy_name.unwrap_or_default(),
                    r.timestamp.unwrap_or_default()
                ),
                other => panic!("a kernel event gives records only: {other:?}"),
            })
            .collect()
    };
    let input = Input::Kernel {
        event: &open,
        tree: &tree,
    };
    assert_eq!(
        emitted(index.apply(&input, at(0))),
        ["MatchedPolicy:web-c9:audit-secret:1700000000"]
    );
    assert_eq!(
        emitted(index.apply(&input, at(0))),
        ["MatchedPolicy:web-c9:audit-secret:1700000000"]
    );
    assert_eq!(
        emitted(index.apply(&input, at(0))),
        ["SystemEvent:web-c9::1700000000"]
    );
    assert!(index.apply(&input, at(9)).is_empty(), "throttled for 10 s");
    assert_eq!(
        emitted(index.apply(&input, at(10))),
        ["MatchedPolicy:web-c9:audit-secret:1700000010"]
    );
    // The same through the per-event path.
    assert_eq!(index.kernel_records(&open, &tree, at(10)).len(), 1);
}

#[test]
fn pod_labels_select_a_container_known_before_or_after_it_runs() {
    // The container's own labels select nothing; its pod's (`app: web`) select both policies.
    let mut index = started(POLICIES, false);
    let bare = |id: &str, pid: u32| {
        let mut info = web(id, pid);
        info.labels.remove("app");
        info.labels
            .insert("io.kubernetes.pod.uid".into(), format!("uid-{id}"));
        info
    };
    let pod_labels = PodIdentity::new(BTreeMap::from([("app".to_string(), "web".to_string())]));
    let rules_of =
        |index: &WorkloadIndex, cgroup: u64| index.workloads[&cgroup].rules.rule_ids().len();

    // Known before, from the pod's spec (pod uid and container name): the first apply already
    // carries the pod's rules, and nothing is reported.
    let early = IdentityKey::PodContainer {
        pod_uid: "uid-early".into(),
        container: "web".into(),
    };
    index.apply(
        &Input::ContainerIdentity {
            key: &early,
            identity: Some(&pod_labels),
        },
        now(),
    );
    let info = bare("early", 700);
    assert!(early.names(&info));
    let effects = index.apply(
        &Input::ContainerRunning {
            info: &info,
            cgroup_id: 71,
        },
        now(),
    );
    let out = drive(&mut index, effects, &|_| held(&[]));
    assert_eq!(rules_of(&index, 71), 2);
    assert!(
        problems(&out).iter().all(|p| p.starts_with("applied")),
        "{out:?}"
    );

    // Known after, by runtime id: tracked with its own labels (no rules), then applied again
    // with the pod's, and the wait is reported once.
    let t0 = Instant::now();
    let at = |ms: u64| Now::at(t0 + Duration::from_millis(ms), SystemTime::UNIX_EPOCH);
    let info = bare("late", 701);
    let effects = index.apply(
        &Input::ContainerRunning {
            info: &info,
            cgroup_id: 72,
        },
        at(0),
    );
    drive(&mut index, effects, &|_| held(&[]));
    assert_eq!(rules_of(&index, 72), 0);
    let late = IdentityKey::ContainerId("late".into());
    let effects = index.apply(
        &Input::ContainerIdentity {
            key: &late,
            identity: Some(&pod_labels),
        },
        at(250),
    );
    assert_eq!(applies(&effects), vec![Slot::Cgroup(72)]);
    let reported = problems(&effects);
    assert!(
        reported.iter().any(|p| p.contains("arrived 250 ms after")),
        "{reported:?}"
    );
    drive(&mut index, effects, &|_| held(&[]));
    assert_eq!(rules_of(&index, 72), 2);
    // The same labels again: nothing to do, nothing reported.
    let effects = index.apply(
        &Input::ContainerIdentity {
            key: &late,
            identity: Some(&pod_labels),
        },
        at(300),
    );
    assert!(effects.is_empty(), "{effects:?}");
    // Forgotten (the pod is going): the running container keeps its rules until it stops.
    let effects = index.apply(
        &Input::ContainerIdentity {
            key: &late,
            identity: None,
        },
        at(400),
    );
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(rules_of(&index, 72), 2);
}

#[test]
fn an_owner_alone_changes_the_records_and_not_the_rules() {
    let mut index = started(POLICIES, false);
    let info = web("owned", 710);
    let effects = index.apply(
        &Input::ContainerRunning {
            info: &info,
            cgroup_id: 81,
        },
        now(),
    );
    drive(&mut index, effects, &|_| held(&[]));
    let key = IdentityKey::ContainerId("owned".into());
    let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
    let identity =
        PodIdentity::new(labels).owner(armor_core::Owner::new("Deployment", "web", "shop"));
    let effects = index.apply(
        &Input::ContainerIdentity {
            key: &key,
            identity: Some(&identity),
        },
        now(),
    );
    assert!(effects.is_empty(), "{effects:?}");
    let Workload::Container(c) = &index.workloads[&81].workload else {
        panic!("not a container");
    };
    assert_eq!(c.owner.as_ref().map(|o| o.name.as_str()), Some("web"));
    // Annotations select postures: a change applies the rules again.
    let annotated = identity.clone().annotations(BTreeMap::from([(
        "kubearmor-file-posture".to_string(),
        "block".to_string(),
    )]));
    let effects = index.apply(
        &Input::ContainerIdentity {
            key: &key,
            identity: Some(&annotated),
        },
        now(),
    );
    assert_eq!(applies(&effects), vec![Slot::Cgroup(81)]);
}

const HOST_POLICY: &str = r#"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata: {name: block-host-touch}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  process:
    matchPaths: [{path: /usr/bin/touch}]
  action: Block
"#;

#[test]
fn a_new_configuration_is_taken_all_or_none() {
    let mut index = started(HOST_POLICY, false);
    let info = web("cfg", 720);
    let effects = index.apply(
        &Input::ContainerRunning {
            info: &info,
            cgroup_id: 91,
        },
        now(),
    );
    drive(&mut index, effects, &|_| held(&[]));
    assert_eq!(index.host.rules.rule_ids().len(), 0);
    let mut labelled = index.config().clone();
    labelled.host_labels.insert("role".into(), "edge".into());
    labelled.cluster_name = "prod".into();

    // The container's apply fails: everything goes back, the host's rules and the config too.
    let effects = index.apply(&Input::Reconfigure(&labelled), now());
    assert_eq!(applies(&effects), vec![Slot::Host]);
    let out = drive(&mut index, effects, &|a| match a.slot {
        Slot::Cgroup(91) => failed("no room"),
        _ => held(&[]),
    });
    assert!(
        out.iter()
            .any(|e| matches!(e, Effect::Refused { reason, .. }
            if reason.starts_with("configuration not replaced: ") && reason.contains("no room"))),
        "{out:?}"
    );
    assert_eq!(index.config().cluster_name, "default");
    assert!(index.config().host_labels.is_empty());
    assert_eq!(index.host.rules.rule_ids().len(), 0);

    // Taken: the node's new label selects the host policy.
    let effects = index.apply(&Input::Reconfigure(&labelled), now());
    let out = drive(&mut index, effects, &|_| held(&[]));
    assert!(
        !out.iter().any(|e| matches!(e, Effect::Refused { .. })),
        "{out:?}"
    );
    assert_eq!(index.config().cluster_name, "prod");
    assert_eq!(index.host.rules.rule_ids().len(), 1);
    let Workload::Host(h) = &index.host.workload else {
        panic!("the host is not a host");
    };
    assert_eq!(h.labels["role"], "edge");
}

#[test]
fn what_is_not_enforced_is_said_per_policy_with_the_workloads_it_concerns() {
    let mut index = started(POLICIES, false);
    assert!(index.policy_gaps().is_empty(), "everything held");
    // Three containers: the enforcer leaves `touch` out of two; the third no enforcer holds.
    for (id, cgroup) in [("c1", 7), ("c2", 8), ("c3", 9)] {
        let info = web(id, 100 + cgroup);
        let effects = index.apply(
            &Input::ContainerRunning {
                info: &info,
                cgroup_id: u64::from(cgroup),
            },
            now(),
        );
        let rules = index.workloads[&u64::from(cgroup)].rules.clone();
        let gap = gap_of(&rules, index.policy(), "/usr/bin/touch");
        drive(&mut index, effects, &|_| {
            if id == "c3" {
                failed("the map is full")
            } else {
                held(std::slice::from_ref(&gap))
            }
        });
    }
    let gaps = index.policy_gaps();
    let name = |n: &str| crate::coverage::PolicyName {
        kind: armor_core::model::PolicyKind::KubeArmorPolicy,
        namespace: Some("shop".to_string()),
        name: n.to_string(),
    };
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    let touch = &gaps[&name("block-touch")];
    assert_eq!(touch.len(), 2, "{touch:?}");
    assert!(
        touch.iter().any(|l| l
            .starts_with("TEST does not enforce process.matchPaths[0] (Block): too large")
            && l.ends_with("(on shop/web-c1/web, shop/web-c2/web)")),
        "{touch:?}"
    );
    let monitored = |l: &String| {
        l.starts_with("monitored only, nothing denied: ")
            && l.contains("the map is full")
            && l.ends_with("(on shop/web-c3/web)")
    };
    assert!(touch.iter().any(monitored), "{touch:?}");
    let mkdir = &gaps[&name("block-mkdir")];
    assert_eq!(mkdir.len(), 1, "{mkdir:?}");
    assert!(monitored(&mkdir[0]), "{mkdir:?}");
    assert_eq!(
        name("block-mkdir").to_string(),
        "KubeArmorPolicy shop/block-mkdir"
    );
}

#[test]
fn without_any_enforcer_each_policy_gets_one_line_that_names_no_workload() {
    let mut index = started(POLICIES, false);
    for (id, cgroup) in [("c1", 7u64), ("c2", 8)] {
        let info = web(id, 100);
        let effects = index.apply(
            &Input::ContainerRunning {
                info: &info,
                cgroup_id: cgroup,
            },
            now(),
        );
        drive(&mut index, effects, &|_| ApplyOutcome::default());
    }
    let gaps = index.policy_gaps();
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    for lines in gaps.values() {
        assert_eq!(
            lines,
            &["monitored only, nothing denied: no kernel enforcer (audit-only) on this node"]
        );
    }
}

/// Issue 21: a workload's syscall rules go to the event source's syscall filter with its
/// visibility (x86_64 numbers, sorted, once each); a workload without any gets an empty list.
#[test]
fn a_containers_syscall_rules_reach_the_syscall_filter_with_its_visibility() {
    let yaml = r#"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: rare, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  syscalls:
    matchSyscalls:
    - syscall: [unshare, ptrace]
    matchPaths:
    - path: /tmp/
      syscall: [mount, ptrace]
"#;
    let mut index = started(yaml, false);
    let effects = index.apply(
        &Input::ContainerRunning {
            info: &web("c1", 100),
            cgroup_id: 7,
        },
        now(),
    );
    let syscalls = effects.iter().find_map(|e| match e {
        Effect::SetVisibility {
            cgroup_id: 7,
            syscalls,
            ..
        } => Some(syscalls.clone()),
        _ => None,
    });
    assert_eq!(syscalls, Some(vec![101, 165, 272]), "{effects:?}");
    let mut plain = started(POLICIES, false);
    let effects = plain.apply(
        &Input::ContainerRunning {
            info: &web("c2", 101),
            cgroup_id: 8,
        },
        now(),
    );
    assert!(effects.iter().any(
        |e| matches!(e, Effect::SetVisibility { cgroup_id: 8, syscalls, .. } if syscalls.is_empty())
    ));
}

/// Issue 21: on a workload no kernel enforcer holds, a policy's presets (Audit ones included)
/// are said to be neither enforced nor alerted; its other Audit rules are not listed.
#[test]
fn presets_on_a_monitored_only_workload_are_said_to_be_neither_enforced_nor_alerted() {
    let yaml = r#"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: watch, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  file:
    matchPaths: [{path: /etc/passwd}]
    action: Audit
  presets:
  - name: protectEnv
    action: Audit
"#;
    let mut index = started(yaml, false);
    let info = web("c1", 107);
    let effects = index.apply(
        &Input::ContainerRunning {
            info: &info,
            cgroup_id: 7,
        },
        now(),
    );
    drive(&mut index, effects, &|_| failed("the map is full"));
    let gaps = index.policy_gaps();
    let lines: Vec<&String> = gaps.values().flatten().collect();
    assert_eq!(lines.len(), 1, "{gaps:?}");
    assert!(
        lines[0].starts_with("presets and DNS rules neither enforced nor alerted: ")
            && lines[0].contains("the map is full")
            && lines[0].ends_with("(on shop/web-c1/web)"),
        "{lines:?}"
    );
}
