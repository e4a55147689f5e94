#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! The policy reducer alone: watch events in, effects out.

use armor_core::crd::PolicyStatus;
use armor_core::model::PolicyKind;
use armor_k8s::policies::{
    APPLIED, INVALID, PolicyEffect, PolicyEvent, PolicyIndex, PolicyObject, PolicyRef,
};
use serde_json::json;

/// An index whose first lists of the three kinds were empty.
fn synced() -> PolicyIndex {
    let mut index = PolicyIndex::new();
    let kinds = [
        PolicyKind::KubeArmorPolicy,
        PolicyKind::KubeArmorClusterPolicy,
        PolicyKind::KubeArmorHostPolicy,
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let effects = index.apply(PolicyEvent::InitDone(kind));
        // Nothing before the last first list; then the empty set.
        assert_eq!(enforced(&effects), (i == 2).then_some(0));
    }
    index
}

fn ksp(name: &str, spec: serde_json::Value) -> PolicyObject {
    PolicyObject::new(
        PolicyRef::new(PolicyKind::KubeArmorPolicy, Some("shop"), name),
        spec,
    )
}

fn block(path: &str) -> serde_json::Value {
    json!({"selector": {"matchLabels": {"app": "web"}},
           "file": {"matchPaths": [{"path": path}]}, "action": "Block"})
}

/// The rule count of the Enforce effect, if any.
fn enforced(effects: &[PolicyEffect]) -> Option<usize> {
    effects.iter().find_map(|e| match e {
        PolicyEffect::Enforce(p) => Some(p.rules().len()),
        _ => None,
    })
}

fn statuses(effects: &[PolicyEffect]) -> Vec<(String, PolicyStatus)> {
    effects
        .iter()
        .filter_map(|e| match e {
            PolicyEffect::Status { reference, status } => {
                Some((reference.name.clone(), status.clone()))
            }
            _ => None,
        })
        .collect()
}

fn with_status(mut o: PolicyObject, status: &PolicyStatus) -> PolicyObject {
    o.status = Some(status.clone());
    o
}

#[test]
fn a_policy_is_enforced_and_marked_applied_once() {
    let mut index = synced();
    let effects = index.apply(PolicyEvent::Apply(ksp("a", block("/etc/shadow"))));
    assert_eq!(enforced(&effects), Some(1));
    let st = statuses(&effects);
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].1.status.as_deref(), Some(APPLIED));
    // Our status write comes back: nothing to do.
    let back = with_status(ksp("a", block("/etc/shadow")), &st[0].1);
    assert!(index.apply(PolicyEvent::Apply(back)).is_empty());
    // A change of the spec: enforced again, no new status (it is still Applied).
    let changed = with_status(ksp("a", block("/etc/gshadow")), &st[0].1);
    let effects = index.apply(PolicyEvent::Apply(changed));
    assert_eq!(enforced(&effects), Some(1));
    assert!(statuses(&effects).is_empty());
}

#[test]
fn an_invalid_policy_is_refused_with_its_field_and_the_others_stay() {
    let mut index = synced();
    index.apply(PolicyEvent::Apply(ksp("good", block("/etc/shadow"))));
    // Relative paths pass no schema here: the validator is what refuses them.
    let bad = json!({"selector": {"matchLabels": {"app": "web"}},
                     "file": {"matchPaths": [{"path": "etc/shadow"}]}, "action": "Block"});
    let effects = index.apply(PolicyEvent::Apply(ksp("bad", bad)));
    assert_eq!(
        enforced(&effects),
        None,
        "the valid policies did not change"
    );
    let st = statuses(&effects);
    assert_eq!(st.len(), 1, "{st:?}");
    assert_eq!(st[0].0, "bad");
    assert_eq!(st[0].1.status.as_deref(), Some(INVALID));
    let message = st[0].1.message.clone().unwrap();
    assert!(
        message.starts_with("spec.file.matchPaths[0].path: "),
        "{message}"
    );
    assert_eq!(index.objects().iter().filter(|(_, ok)| *ok).count(), 1);
    // Fixed: enforced with both.
    let effects = index.apply(PolicyEvent::Apply(ksp("bad", block("/etc/passwd"))));
    assert_eq!(enforced(&effects), Some(2));
    assert_eq!(statuses(&effects)[0].1.status.as_deref(), Some(APPLIED));
}

#[test]
fn a_relist_replaces_a_kind_and_applies_nothing_twice() {
    let mut index = synced();
    for (n, p) in [("a", "/etc/a"), ("b", "/etc/b")] {
        let effects = index.apply(PolicyEvent::Apply(ksp(n, block(p))));
        let st = statuses(&effects);
        // The status write comes back.
        index.apply(PolicyEvent::Apply(with_status(ksp(n, block(p)), &st[0].1)));
    }
    let applied = PolicyStatus::new(APPLIED, None);
    // The watch restarts: `a` is listed again unchanged, `b` was deleted meanwhile.
    assert!(
        index
            .apply(PolicyEvent::Init(PolicyKind::KubeArmorPolicy))
            .is_empty()
    );
    let again = with_status(ksp("a", block("/etc/a")), &applied);
    assert!(index.apply(PolicyEvent::InitApply(again)).is_empty());
    let effects = index.apply(PolicyEvent::InitDone(PolicyKind::KubeArmorPolicy));
    assert_eq!(enforced(&effects), Some(1), "b is gone");
    assert!(statuses(&effects).is_empty());
    // A relist of another kind does not touch these.
    index.apply(PolicyEvent::Init(PolicyKind::KubeArmorHostPolicy));
    assert!(
        index
            .apply(PolicyEvent::InitDone(PolicyKind::KubeArmorHostPolicy))
            .is_empty()
    );
    // The same relist again: nothing at all.
    index.apply(PolicyEvent::Init(PolicyKind::KubeArmorPolicy));
    index.apply(PolicyEvent::InitApply(with_status(
        ksp("a", block("/etc/a")),
        &applied,
    )));
    assert!(
        index
            .apply(PolicyEvent::InitDone(PolicyKind::KubeArmorPolicy))
            .is_empty()
    );
}

#[test]
fn deleting_an_invalid_policy_changes_no_rules() {
    let mut index = synced();
    index.apply(PolicyEvent::Apply(ksp("good", block("/etc/shadow"))));
    index.apply(PolicyEvent::Apply(ksp(
        "bad",
        json!({"file": {"matchPaths": [{"path": "x"}]}}),
    )));
    let effects = index.apply(PolicyEvent::Delete(PolicyRef::new(
        PolicyKind::KubeArmorPolicy,
        Some("shop"),
        "bad",
    )));
    assert!(effects.is_empty(), "{effects:?}");
    let effects = index.apply(PolicyEvent::Delete(PolicyRef::new(
        PolicyKind::KubeArmorPolicy,
        Some("shop"),
        "good",
    )));
    assert_eq!(enforced(&effects), Some(0));
}

#[test]
fn nothing_is_enforced_before_every_kind_is_listed_then_everything_at_once() {
    let mut index = PolicyIndex::new();
    index.apply(PolicyEvent::Init(PolicyKind::KubeArmorPolicy));
    index.apply(PolicyEvent::InitApply(ksp("a", block("/etc/a"))));
    assert!(enforced(&index.apply(PolicyEvent::InitDone(PolicyKind::KubeArmorPolicy))).is_none());
    let early = index.apply(PolicyEvent::Apply(ksp("b", block("/etc/b"))));
    assert!(
        early.is_empty(),
        "no Enforce and no status before the sync: {early:?}"
    );
    assert!(
        enforced(&index.apply(PolicyEvent::InitDone(PolicyKind::KubeArmorHostPolicy))).is_none()
    );
    let effects = index.apply(PolicyEvent::InitDone(PolicyKind::KubeArmorClusterPolicy));
    assert_eq!(enforced(&effects), Some(2), "one Enforce with both");
    assert_eq!(statuses(&effects).len(), 2, "then both statuses");
}

#[test]
fn a_status_changed_by_someone_else_is_written_again() {
    let mut index = synced();
    let effects = index.apply(PolicyEvent::Apply(ksp("a", block("/etc/a"))));
    let ours = statuses(&effects).remove(0).1;
    index.apply(PolicyEvent::Apply(with_status(
        ksp("a", block("/etc/a")),
        &ours,
    )));
    // Overwritten (or the object re-created with the same spec and no status).
    let effects = index.apply(PolicyEvent::Apply(ksp("a", block("/etc/a"))));
    assert_eq!(statuses(&effects).len(), 1, "{effects:?}");
    assert_eq!(statuses(&effects)[0].1, ours);
}
