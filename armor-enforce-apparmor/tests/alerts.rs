#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! Denial records → alerts: hostile records never panic the parser, and records of an
//! installed profile map back to the rule the engine names for the same operation.

use std::time::{Duration, Instant};

use armor_core::event::{Access, Category, Event};
use armor_core::posture::{Posture, PostureAction};
use armor_core::workload::{Container, WorkloadKey};
use armor_core::{Action, CompiledPolicy, PolicySet, Verdict};
use armor_enforce_apparmor::alerts::{
    Dedup, Installed, Registry, lost_in, netlink_messages, operation_of,
};
use armor_enforce_apparmor::{Denial, compile, resolve};
use proptest::prelude::*;

const POLICY: &str = r#"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: guard
  namespace: shop
spec:
  selector:
    matchLabels:
      app: web
  severity: 7
  file:
    matchPaths:
    - path: /etc/shadow
    - path: /etc/passwd
      readOnly: true
    matchDirectories:
    - dir: /secret/
      recursive: true
      fromSource:
      - path: /bin/cat
  process:
    matchPaths:
    - path: /usr/bin/curl
  capabilities:
    matchCapabilities:
    - capability: net_raw
  action: Block
"#;

struct Fixture {
    registry: Registry,
    main: String,
    child: String,
    policy: CompiledPolicy,
    rules: std::sync::Arc<armor_core::engine::RuleSet>,
}

fn fixture() -> Fixture {
    let set = PolicySet::parse(POLICY, "guard.yaml").unwrap();
    let policy = CompiledPolicy::build(&set).unwrap();
    let w: armor_core::Workload = Container::new("shop", "web").label("app", "web").into();
    let mut posture = Posture::default();
    posture.file = PostureAction::Block;
    let rules = policy.rule_set(&w, posture);
    let a = compile(&WorkloadKey::new("shop/web"), &rules);
    let main = a.name().to_owned();
    let child = a.profile.sections[1].name.clone();
    let registry = Registry::default();
    registry.insert(Installed::of(&a));
    Fixture {
        registry,
        main,
        child,
        policy,
        rules,
    }
}

fn record(profile: &str, op: &str, extra: &str) -> String {
    format!(
        r#"audit(1700000000.5:77): apparmor="DENIED" operation="{op}" class="file" profile="{profile}" {extra} pid=42 comm="x" fsuid=1000 ouid=0"#
    )
}

/// The engine's rule for `e`, as (policy, index).
fn engine_rule(f: &Fixture, e: &Event) -> Option<(String, u32)> {
    let d = f.rules.decide(e);
    assert_eq!(d.verdict, Verdict::Block, "{e:?}");
    match d.reason {
        armor_core::engine::Reason::Rule(r) => Some((r.policy.name.clone(), r.index)),
        _ => None,
    }
}

fn alert_rule(f: &Fixture, id: Option<u32>) -> Option<(String, u32)> {
    id.map(|i| {
        let r = &f.policy.rules()[i as usize];
        (r.policy.name.clone(), r.index)
    })
}

#[test]
fn file_denial_maps_to_the_engines_rule() {
    let f = fixture();
    let d = Denial::parse(&record(
        &f.main,
        "open",
        r#"name="/etc/shadow" requested_mask="r" denied_mask="r""#,
    ))
    .unwrap();
    let a = resolve(&f.registry, &d).unwrap();
    assert_eq!(
        (a.enforcer, a.action, a.result(), a.operation),
        (
            "AppArmor",
            Action::Block,
            "Permission denied",
            Category::File
        )
    );
    assert_eq!(a.resource, "/etc/shadow");
    assert_eq!(a.pid, 42);
    assert_eq!(a.workload.as_ref().unwrap().name, "shop/web");
    let e = Event::open("/etc/shadow", Access::READ, None).with_uid(1000);
    assert_eq!(alert_rule(&f, a.rule), engine_rule(&f, &e));
    assert!(a.rule.is_some());

    // A write to the readOnly path: its rule; a read of it is allowed (no record expected).
    let w = Denial::parse(&record(
        &f.main,
        "open",
        r#"name="/etc/passwd" requested_mask="w" denied_mask="w""#,
    ))
    .unwrap();
    let a = resolve(&f.registry, &w).unwrap();
    let e = Event::open("/etc/passwd", Access::WRITE, None).with_uid(1000);
    assert_eq!(alert_rule(&f, a.rule), engine_rule(&f, &e));
}

#[test]
fn child_denial_names_the_source_and_its_rule() {
    let f = fixture();
    let d = Denial::parse(&record(
        &f.child,
        "open",
        r#"name="/secret/k/v" requested_mask="r" denied_mask="r""#,
    ))
    .unwrap();
    let a = resolve(&f.registry, &d).unwrap();
    assert_eq!(a.source.as_deref(), Some("/bin/cat"));
    let e = Event::open("/secret/k/v", Access::READ, Some("/bin/cat")).with_uid(1000);
    assert_eq!(alert_rule(&f, a.rule), engine_rule(&f, &e));
}

#[test]
fn exec_and_capability_denials() {
    let f = fixture();
    let x = format!(
        r#"audit(1.0:3): apparmor="DENIED" operation="exec" class="file" profile="{}" name="/usr/bin/curl" pid=7 comm="sh" requested_mask="x" denied_mask="x" fsuid=0 ouid=0"#,
        f.main
    );
    let a = resolve(&f.registry, &Denial::parse(&x).unwrap()).unwrap();
    assert_eq!(a.operation, Category::Process);
    let e = Event::exec("/usr/bin/curl", None);
    assert_eq!(alert_rule(&f, a.rule), engine_rule(&f, &e));

    let c = format!(
        r#"audit(1.0:4): apparmor="DENIED" operation="capable" class="cap" profile="{}" pid=7 comm="ping" capability=13  capname="net_raw""#,
        f.main
    );
    let a = resolve(&f.registry, &Denial::parse(&c).unwrap()).unwrap();
    assert_eq!(
        (a.operation, a.resource.as_str()),
        (Category::Capabilities, "CAP_NET_RAW")
    );
    let e = Event::capability(13, None);
    assert_eq!(alert_rule(&f, a.rule), engine_rule(&f, &e));
}

#[test]
fn records_of_other_profiles_are_ignored() {
    let f = fixture();
    for p in ["unconfined", "armor.other_00000000", "docker-default"] {
        let d = Denial::parse(&record(
            p,
            "open",
            r#"name="/etc/shadow" requested_mask="r""#,
        ))
        .unwrap();
        assert!(resolve(&f.registry, &d).is_none(), "{p}");
    }
    // A STATUS record of an armor profile (load/replace) is not an alert.
    let s = format!(
        r#"audit(1.0:5): apparmor="STATUS" operation="profile_replace" profile="unconfined" name="{}" pid=1 comm="apparmor_parser""#,
        f.main
    );
    assert!(resolve(&f.registry, &Denial::parse(&s).unwrap()).is_none());
}

#[test]
fn a_stacks_two_records_resolve_as_the_childs() {
    use armor_enforce_apparmor::alerts::StackPairing;
    let f = fixture();
    let main = Denial::parse(&record(
        &f.main,
        "open",
        r#"name="/secret/a" requested_mask="r""#,
    ))
    .unwrap();
    let child = Denial::parse(&record(
        &f.child,
        "open",
        r#"name="/secret/a" requested_mask="r""#,
    ))
    .unwrap();
    let mut p = StackPairing::default();
    let t = Instant::now();
    assert!(
        p.push(&f.registry, Some(main.clone()), t).is_empty(),
        "held"
    );
    assert_eq!(p.push(&f.registry, Some(child.clone()), t), vec![child]);
    // Alone, the main record is released after the window.
    assert!(p.push(&f.registry, Some(main.clone()), t).is_empty());
    assert!(
        p.push(&f.registry, None, t + Duration::from_millis(5))
            .is_empty()
    );
    assert_eq!(
        p.push(&f.registry, None, t + Duration::from_millis(200)),
        vec![main.clone()]
    );
    // Followed by another access, it is released at once.
    let other = Denial::parse(&record(
        &f.main,
        "open",
        r#"name="/etc/shadow" requested_mask="r""#,
    ))
    .unwrap();
    assert!(p.push(&f.registry, Some(main.clone()), t).is_empty());
    assert_eq!(p.push(&f.registry, Some(other.clone()), t), vec![main]);
    assert_eq!(
        p.push(&f.registry, None, t + Duration::from_secs(1)),
        vec![other]
    );
}

#[test]
fn stacked_duplicates_are_one_alert() {
    let f = fixture();
    let d = Denial::parse(&record(
        &f.main,
        "open",
        r#"name="/etc/shadow" requested_mask="r""#,
    ))
    .unwrap();
    let a = resolve(&f.registry, &d).unwrap();
    let mut dd = Dedup::default();
    let t = Instant::now();
    assert!(dd.admit(&a, t));
    assert!(!dd.admit(&a, t + Duration::from_millis(5)));
    assert!(dd.admit(&a, t + Duration::from_millis(500)));
}

#[test]
fn netlink_datagrams_and_lost_counts() {
    let mut dgram = Vec::new();
    for (ty, text) in [
        (1400_u16, "audit(1.0:1): apparmor=\"DENIED\""),
        (1300, "x=1"),
    ] {
        let len = 16 + text.len();
        dgram.extend_from_slice(&u32::try_from(len).unwrap().to_ne_bytes());
        dgram.extend_from_slice(&ty.to_ne_bytes());
        dgram.extend_from_slice(&0_u16.to_ne_bytes());
        dgram.extend_from_slice(&[0; 8]);
        dgram.extend_from_slice(text.as_bytes());
        while dgram.len() % 4 != 0 {
            dgram.push(0);
        }
    }
    let m = netlink_messages(&dgram);
    assert_eq!(m.len(), 2);
    assert_eq!(m[0], (1400, "audit(1.0:1): apparmor=\"DENIED\"".to_owned()));
    assert_eq!(m[1].0, 1300);
    assert_eq!(netlink_messages(&dgram[..10]), Vec::new());
    assert_eq!(
        lost_in("audit_log_start: 12 callbacks suppressed"),
        Some(12)
    );
    assert_eq!(
        lost_in("audit: audit_lost=3 audit_rate_limit=0 audit_backlog_limit=64 lost=3"),
        Some(3)
    );
    assert_eq!(lost_in("audit: rate limit exceeded"), Some(1));
    assert_eq!(lost_in("eth0: link up"), None);
}

static SHARED: std::sync::LazyLock<Fixture> = std::sync::LazyLock::new(fixture);

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02X}")).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes: the parser and the netlink splitter never panic.
    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = Denial::parse(&s);
        let _ = Denial::parse(&format!("audit: type=1400 audit(1.0:1): {s}"));
        let _ = netlink_messages(&bytes);
        let _ = lost_in(&s);
    }

    /// Well-formed records with hostile values: names come back exactly (quoted or hex),
    /// truncation at any byte never panics and never yields a wrong name.
    #[test]
    fn hostile_records(
        name in "/[ -~\\t]{0,40}",
        quoted in any::<bool>(),
        huge in 0usize..3,
        cut in 0usize..400,
        drop_pid in any::<bool>(),
    ) {
        let f = &*SHARED;
        let plain = !name.contains([' ', '"', '\t']) && quoted;
        let enc = if plain { format!("\"{name}\"") } else { hex(&name) };
        let pad = "A".repeat([0, 5000, 70_000][huge]);
        let pid = if drop_pid { String::new() } else { "pid=99 ".to_owned() };
        let text = format!(
            r#"audit(1.0:9): apparmor="DENIED" operation="open" class="file" profile="{}" name={enc} {pid}comm="{pad}" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#,
            f.main
        );
        match Denial::parse(&text) {
            Some(d) => {
                prop_assert_eq!(d.name.as_deref(), Some(name.as_str()));
                prop_assert_eq!(d.pid, (!drop_pid).then_some(99));
                let a = resolve(&f.registry, &d);
                prop_assert!(a.is_some());
                let a = a.unwrap();
                let want = if name.len() > 1 { name.trim_end_matches('/') } else { name.as_str() };
                prop_assert_eq!(a.resource.as_str(), want);
                prop_assert_eq!(a.operation, Category::File);
            }
            None => prop_assert!(text.len() > armor_enforce_apparmor::denial::MAX_RECORD),
        }
        let t = text.get(..cut.min(text.len())).unwrap_or_default();
        if let Some(d) = Denial::parse(t) {
            if let Some(n) = &d.name {
                // A cut inside a hex name decodes to a prefix of the name.
                prop_assert!(name.starts_with(n.as_str()), "{n:?} vs {name:?}");
            }
            let _ = operation_of(&d);
            let _ = resolve(&f.registry, &d);
        }
    }
}
