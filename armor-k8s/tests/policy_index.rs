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
use std::collections::BTreeMap;
use std::sync::Arc;

use armor_core::CompiledPolicy;
use armor_k8s::policies::{
    APPLIED, INVALID, NODE_MESSAGE_MAX, NodeReport, PolicyEffect, PolicyEvent, PolicyIndex,
    PolicyObject, PolicyRef,
};
use serde_json::json;

/// An index whose first lists of the three kinds were empty.
fn synced() -> PolicyIndex {
    synced_from(PolicyIndex::new())
}

/// `index` after empty first lists of the three kinds.
fn synced_from(mut index: PolicyIndex) -> PolicyIndex {
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

/// The compiled set of the Enforce effect.
fn set_of(effects: &[PolicyEffect]) -> Arc<CompiledPolicy> {
    effects
        .iter()
        .find_map(|e| match e {
            PolicyEffect::Enforce(p) => Some(Arc::clone(p)),
            _ => None,
        })
        .expect("an Enforce effect")
}

/// The node entries among `effects`: object name, node, message.
fn node_entries(effects: &[PolicyEffect]) -> Vec<(String, String, Option<String>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            PolicyEffect::NodeStatus {
                reference,
                node,
                message,
            } => Some((reference.name.clone(), node.clone(), message.clone())),
            _ => None,
        })
        .collect()
}

fn gaps(entries: &[(&str, &str)]) -> BTreeMap<PolicyRef, Vec<String>> {
    entries
        .iter()
        .map(|(name, line)| {
            (
                PolicyRef::new(PolicyKind::KubeArmorPolicy, Some("shop"), name),
                vec![(*line).to_string()],
            )
        })
        .collect()
}

/// `o` with the status `Applied` and these node entries.
fn applied_with_nodes(o: PolicyObject, nodes: &[(&str, &str)]) -> PolicyObject {
    let mut status = PolicyStatus::new(APPLIED, None);
    status.nodes = nodes
        .iter()
        .map(|(n, m)| ((*n).to_string(), (*m).to_string()))
        .collect();
    with_status(o, &status)
}

#[test]
fn a_node_reports_what_it_does_not_enforce_and_the_sets_it_refuses_in_its_own_entries() {
    let mut index = synced_from(PolicyIndex::for_node("node-a"));
    let e = index.apply(PolicyEvent::Apply(ksp("a", block("/etc/a"))));
    index.apply(PolicyEvent::Apply(ksp("b", block("/etc/b"))));
    let both = {
        // The two arrived in one burst for the node: compile them once.
        let mut i = synced_from(PolicyIndex::for_node("node-a"));
        i.take(PolicyEvent::Apply(ksp("a", block("/etc/a"))));
        i.take(PolicyEvent::Apply(ksp("b", block("/etc/b"))));
        set_of(&i.effects())
    };
    assert!(
        node_entries(&e).is_empty(),
        "no entry before the node answers"
    );
    // A set this index did not hand out is no answer: no refusal is reported.
    let effects = index.node_report(NodeReport::new(Some((both, Err("full".into()))), gaps(&[])));
    assert!(node_entries(&effects).is_empty(), "{effects:?}");

    // The node holds the set with `a` and `b`; its enforcer does not carry `a`'s rule.
    let set = {
        let e = index.apply(PolicyEvent::Apply(ksp("b", block("/etc/b2"))));
        set_of(&e)
    };
    let gap = "AppArmor does not enforce file.matchPaths[0] (Block): too large (on shop/web-1/web)";
    let effects = index.node_report(NodeReport::new(Some((set, Ok(()))), gaps(&[("a", gap)])));
    assert_eq!(
        node_entries(&effects),
        [("a".into(), "node-a".into(), Some(gap.to_string()))]
    );
    // The same report again asks nothing more; the entry comes back with another node's: the
    // outcome is not written again and the other node's entry is not ours to change.
    assert!(
        index
            .node_report(NodeReport::new(None, gaps(&[("a", gap)])))
            .is_empty()
    );
    let back = applied_with_nodes(
        ksp("a", block("/etc/a")),
        &[("node-a", gap), ("node-b", "x")],
    );
    assert!(index.apply(PolicyEvent::Apply(back)).is_empty());
    let other = applied_with_nodes(
        ksp("a", block("/etc/a")),
        &[("node-a", gap), ("node-b", "y")],
    );
    assert!(index.apply(PolicyEvent::Apply(other)).is_empty());

    // `b` changes and the node refuses the new set: `b`'s entry says the previous version
    // stays; `a` is unchanged in that set, so nothing is said of it beyond its gap.
    let refused = set_of(&index.apply(PolicyEvent::Apply(ksp("b", block("/etc/b3")))));
    let effects = index.node_report(NodeReport::new(
        Some((refused, Err("the rule map is full".into()))),
        gaps(&[("a", gap)]),
    ));
    let entries = node_entries(&effects);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].0, "b");
    let said = entries[0].2.clone().unwrap();
    assert!(
        said.contains("enforces the previous one") && said.ends_with("the rule map is full"),
        "{said}"
    );
    index.apply(PolicyEvent::Apply(applied_with_nodes(
        ksp("b", block("/etc/b3")),
        &[("node-a", &said)],
    )));
    // A new policy `c` in a refused set: not in force here at all.
    let refused = set_of(&index.apply(PolicyEvent::Apply(ksp("c", block("/etc/c")))));
    let effects = index.node_report(NodeReport::new(
        Some((refused, Err("the rule map is full".into()))),
        gaps(&[]),
    ));
    let mut entries = node_entries(&effects);
    entries.sort();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(
        entries[0],
        ("a".into(), "node-a".into(), None),
        "the gap is gone"
    );
    assert_eq!(entries[1].0, "c");
    assert!(
        entries[1]
            .2
            .as_deref()
            .unwrap()
            .contains("refused the policy set that adds it"),
        "{entries:?}"
    );

    // Room again: the next set is taken, and every entry with nothing left to say goes
    // (`b`'s, which the object has; `c`'s was never written back, so nothing to remove).
    let taken = set_of(&index.apply(PolicyEvent::Apply(ksp("c", block("/etc/c2")))));
    let effects = index.node_report(NodeReport::new(Some((taken, Ok(()))), gaps(&[])));
    assert_eq!(
        node_entries(&effects),
        [("b".into(), "node-a".into(), None)]
    );
    // Someone removes nothing of ours but rewrites `a` without our entry: nothing to say.
    let effects = index.apply(PolicyEvent::Apply(applied_with_nodes(
        ksp("a", block("/etc/a")),
        &[("node-b", "y")],
    )));
    assert!(effects.is_empty(), "{effects:?}");
}

#[test]
fn an_entry_is_managed_only_once_the_node_answered_and_is_cut_to_its_limit() {
    // An entry left by an earlier run of the agent stays until the node says what is true.
    let mut index = PolicyIndex::for_node("node-a");
    for kind in [
        PolicyKind::KubeArmorClusterPolicy,
        PolicyKind::KubeArmorHostPolicy,
    ] {
        index.apply(PolicyEvent::InitDone(kind));
    }
    index.apply(PolicyEvent::Init(PolicyKind::KubeArmorPolicy));
    index.apply(PolicyEvent::InitApply(applied_with_nodes(
        ksp("a", block("/etc/a")),
        &[("node-a", "old news")],
    )));
    let effects = index.apply(PolicyEvent::InitDone(PolicyKind::KubeArmorPolicy));
    let set = set_of(&effects);
    assert!(node_entries(&effects).is_empty(), "{effects:?}");
    let long: Vec<String> = (0..100)
        .map(|i| {
            format!("monitored only, nothing denied: no kernel enforcer (on shop/web-{i}/web)")
        })
        .collect();
    let mut report = BTreeMap::new();
    report.insert(
        PolicyRef::new(PolicyKind::KubeArmorPolicy, Some("shop"), "a"),
        long,
    );
    let effects = index.node_report(NodeReport::new(Some((set, Ok(()))), report));
    let entries = node_entries(&effects);
    let message = entries[0].2.clone().unwrap();
    assert!(message.len() <= NODE_MESSAGE_MAX, "{}", message.len());
    assert!(
        message.ends_with("(the rest is in the agent's log)"),
        "{message}"
    );

    // An index that reports for no node writes no entries.
    let mut plain = synced();
    plain.apply(PolicyEvent::Apply(ksp("a", block("/etc/a"))));
    assert!(
        plain
            .node_report(NodeReport::new(None, gaps(&[("a", "x")])))
            .is_empty()
    );
}

#[test]
fn a_refused_set_taken_on_a_new_try_ends_the_refusal_with_its_own_versions() {
    let mut index = synced_from(PolicyIndex::for_node("node-a"));
    let first = set_of(&index.apply(PolicyEvent::Apply(ksp("a", block("/etc/a")))));
    index.node_report(NodeReport::new(Some((first, Ok(()))), gaps(&[])));
    // `a` changes; the node refuses that set, then takes it when it tries again.
    let second = set_of(&index.apply(PolicyEvent::Apply(ksp("a", block("/etc/a2")))));
    let effects = index.node_report(NodeReport::new(
        Some((second.clone(), Err("the rule map is full".into()))),
        gaps(&[]),
    ));
    let said = node_entries(&effects);
    assert!(
        said[0].2.as_deref().unwrap().contains("refused"),
        "{said:?}"
    );
    index.apply(PolicyEvent::Apply(applied_with_nodes(
        ksp("a", block("/etc/a2")),
        &[("node-a", said[0].2.as_deref().unwrap())],
    )));
    // Refused again for another reason: the entry says the new one.
    let effects = index.node_report(NodeReport::new(
        Some((second.clone(), Err("enforcement is required".into()))),
        gaps(&[]),
    ));
    let again = node_entries(&effects);
    assert!(
        again[0]
            .2
            .as_deref()
            .unwrap()
            .ends_with("enforcement is required"),
        "{again:?}"
    );
    let effects = index.node_report(NodeReport::new(Some((second, Ok(()))), gaps(&[])));
    assert_eq!(
        node_entries(&effects),
        [("a".into(), "node-a".into(), None)]
    );
    // The versions in force are the retried set's: a refusal of a set where `a` is unchanged
    // says nothing of `a`.
    let third = set_of(&index.apply(PolicyEvent::Apply(ksp("b", block("/etc/b")))));
    let effects = index.node_report(NodeReport::new(
        Some((third, Err("full".into()))),
        gaps(&[]),
    ));
    let entries = node_entries(&effects);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].0, "b");
}
