#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
//! Random policies (YAML from a small vocabulary, so targets, sources and events collide):
//! every compiled profile reads back to itself and is accepted by the real
//! `apparmor_parser -Q -K -S`, and the model of the profile agrees with the engine on random
//! events (verdict and rule), except in categories holding a rule `compile` lists as not
//! enforced.

use std::fmt::Write as _;

use armor_core::enforcer::Artifact;
use armor_core::engine::Reason;
use armor_core::event::{Access, Event, Operation, Socket, net};
use armor_core::posture::{Posture, PostureAction};
use armor_core::workload::{Container, WorkloadKey};
use armor_core::{Category, CompiledPolicy, PolicySet, Verdict};
use armor_enforce_apparmor::{AaOp, AppArmor, Model, compile, parse};
use proptest::prelude::*;

const FILES: &[&str] = &[
    "/etc/shadow",
    "/etc/ssl/a.pem",
    "/bin/cat",
    "/bin/sh",
    "/tmp/q/r",
    "/opt/x y",
];
const DIRS: &[&str] = &["/etc/", "/etc/ssl/", "/bin/", "/tmp/", "/"];
const PATTERNS: &[&str] = &[
    "/etc/*",
    "/tmp/**",
    "/bin/?a*",
    "/etc/ssl/*.pem",
    "/opt/{a,x}*",
];
const SOURCES: &[&str] = &["/bin/cat", "/bin/sh", "/usr/bin/env"];
const PROTOCOLS: &[&str] = &["tcp", "udp", "icmp", "raw", "stream", "dgram", "all"];
const CAPS: &[&str] = &["net_raw", "chown", "sys_admin", "dac_override"];
const ACTIONS: &[&str] = &["Allow", "Audit", "Block"];

#[derive(Debug, Clone)]
struct Spec {
    section: u8,
    kind: u8,
    item: usize,
    recursive: bool,
    read_only: bool,
    owner_only: bool,
    source: Option<usize>,
    action: usize,
    severity: Option<u8>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (0u8..4, 0u8..4, 0usize..64),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        (
            proptest::option::of(0usize..3),
            0usize..3,
            proptest::option::of(1u8..10),
        ),
    )
        .prop_map(
            |(
                (section, kind, item),
                (recursive, read_only, owner_only),
                (source, action, severity),
            )| Spec {
                section,
                kind,
                item,
                recursive,
                read_only,
                owner_only,
                source,
                action,
                severity,
            },
        )
}

fn at(v: &[&'static str], i: usize) -> &'static str {
    v[i % v.len()]
}

/// One policy with one rule block per spec (each in its own list entry).
fn yaml(name: &str, specs: &[Spec]) -> String {
    let mut sections: [Vec<(String, String)>; 4] = Default::default();
    for s in specs {
        let mut extra = format!("      action: {}\n", ACTIONS[s.action]);
        if let Some(v) = s.severity {
            let _ = writeln!(extra, "      severity: {v}");
        }
        let from = s
            .source
            .map(|i| format!("      fromSource:\n      - path: {}\n", SOURCES[i]))
            .unwrap_or_default();
        let owner = format!("      ownerOnly: {}\n", s.owner_only);
        let ro = if s.section == 1 {
            format!("      readOnly: {}\n", s.read_only)
        } else {
            String::new()
        };
        let entry = match s.section {
            0 | 1 => match s.kind {
                0 => (
                    "matchPaths",
                    format!(
                        "    - path: \"{}\"\n{ro}{owner}{from}{extra}",
                        at(FILES, s.item)
                    ),
                ),
                1 => (
                    "matchDirectories",
                    format!(
                        "    - dir: {}\n      recursive: {}\n{ro}{owner}{from}{extra}",
                        at(DIRS, s.item),
                        s.recursive
                    ),
                ),
                2 => (
                    "matchPatterns",
                    format!(
                        "    - pattern: \"{}\"\n{ro}{owner}{extra}",
                        at(PATTERNS, s.item)
                    ),
                ),
                _ if s.section == 0 => (
                    "matchPaths",
                    format!(
                        "    - execname: {}\n{owner}{from}{extra}",
                        at(FILES, s.item).rsplit('/').next().unwrap()
                    ),
                ),
                _ => (
                    "matchPaths",
                    format!(
                        "    - path: \"{}\"\n{ro}{owner}{from}{extra}",
                        at(FILES, s.item)
                    ),
                ),
            },
            2 => (
                "matchProtocols",
                format!("    - protocol: {}\n{from}{extra}", at(PROTOCOLS, s.item)),
            ),
            _ => (
                "matchCapabilities",
                format!("    - capability: {}\n{from}{extra}", at(CAPS, s.item)),
            ),
        };
        sections[usize::from(s.section)].push((entry.0.to_owned(), entry.1));
    }
    let mut y = format!(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n  selector:\n    matchLabels:\n      app: web\n"
    );
    for (i, sec) in ["process", "file", "network", "capabilities"]
        .iter()
        .enumerate()
    {
        if sections[i].is_empty() {
            continue;
        }
        let _ = writeln!(y, "  {sec}:");
        let mut keys: Vec<&str> = sections[i].iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        for k in keys {
            let _ = writeln!(y, "    {k}:");
            for (kk, body) in &sections[i] {
                if kk == k {
                    y.push_str(body);
                }
            }
        }
    }
    y
}

#[derive(Debug, Clone)]
enum Ev {
    Exec(usize),
    Open(usize, u8),
    Sock(u16, u16),
    Cap(u8),
}

fn event() -> impl Strategy<Value = (Ev, Option<usize>, u32, bool)> {
    (
        prop_oneof![
            (0usize..64).prop_map(Ev::Exec),
            (0usize..64, 0u8..3).prop_map(|(p, a)| Ev::Open(p, a)),
            (
                proptest::sample::select(&[net::SOCK_STREAM, net::SOCK_DGRAM, net::SOCK_RAW][..]),
                proptest::sample::select(&[1u16, 6, 17][..])
            )
                .prop_map(|(t, p)| Ev::Sock(t, p)),
            proptest::sample::select(&[13u8, 0, 21, 1][..]).prop_map(Ev::Cap),
        ],
        proptest::option::of(0usize..3),
        0u32..2,
        any::<bool>(),
    )
}

fn to_event(ev: &Ev, src: Option<usize>, uid: u32, owned: bool) -> Event {
    let src = src.map(|i| SOURCES[i]);
    let e = match ev {
        Ev::Exec(p) => Event::exec(at(FILES, *p), src),
        Ev::Open(p, a) => Event::open(
            at(FILES, *p),
            [Access::READ, Access::WRITE, Access::READ_WRITE][usize::from(*a)],
            src,
        ),
        Ev::Sock(t, p) => Event::socket(Socket::new(net::AF_INET, *t, *p), src),
        Ev::Cap(c) => Event::capability(*c, src),
    }
    .with_uid(uid);
    if owned {
        e.with_owner(uid)
    } else {
        e.with_owner(uid + 1)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_policies_compile_and_agree(
        p1 in proptest::collection::vec(spec(), 1..7),
        p2 in proptest::collection::vec(spec(), 0..4),
        posture in (any::<bool>(), any::<bool>(), any::<bool>()),
        events in proptest::collection::vec(event(), 1..12),
    ) {
        let mut text = yaml("alpha", &p1);
        if !p2.is_empty() {
            text.push_str("---\n");
            text.push_str(&yaml("beta", &p2));
        }
        let set = PolicySet::parse(&text, "gen.yaml").unwrap_or_else(|e| panic!("{text}\n{e}"));
        let policy = CompiledPolicy::build(&set).unwrap();
        let act = |b: bool| if b { PostureAction::Block } else { PostureAction::Audit };
        let mut p = Posture::default();
        p.file = act(posture.0);
        p.network = act(posture.1);
        p.capabilities = act(posture.2);
        let w: armor_core::Workload = Container::new("shop", "web").label("app", "web").into();
        let rules = policy.rule_set(&w, p);
        let a = compile(&WorkloadKey::new("shop/web"), &rules);
        prop_assert_eq!(&parse(&a.text).unwrap(), &a.profile.without_rules());
        if let Err(e) = AppArmor::new("/nonexistent").check(&a.text) {
            panic!("apparmor_parser rejected:\n{e}\npolicies:\n{text}\nprofile:\n{}", a.text);
        }
        let model = Model::new(&a.profile);
        for (ev, src, uid, owned) in &events {
            let e = to_event(ev, *src, *uid, *owned);
            let cat = e.operation.category();
            if a.unenforceable().iter().any(|u| policy.rules()[u.rule as usize].category == cat) {
                continue;
            }
            // compile's named deviation: under a file allow-list, a full fromSource child may
            // read its own binary (the kernel maps it there). It is warned on the rules that made
            // the child, which may be of another category than this file event.
            let own_binary = matches!(&e.operation, Operation::File { path, .. }
                if Some(path.as_str()) == e.source.as_deref());
            if own_binary
                && a.unenforceable().iter().any(|u| u.reason.contains("may read its own binary"))
            {
                continue;
            }
            let Some(op) = AaOp::from_event(&e) else { continue };
            let engine = rules.decide(&e);
            let d = model.decide(&*rules, e.source.as_deref(), &op);
            prop_assert_eq!(d.verdict, engine.verdict, "{:?}\n{}\n{}", e, text, a.text);
            if engine.verdict != Verdict::Allow {
                let want = match engine.reason {
                    Reason::Rule(r) => Some((r.policy.name.clone(), r.index)),
                    _ => None,
                };
                let got = d.rule.map(|id| {
                    let r = &policy.rules()[id as usize];
                    (r.policy.name.clone(), r.index)
                });
                prop_assert_eq!(got, want, "{:?}\n{}\n{}", e, text, a.text);
            }
            prop_assert!(cat != Category::Syscall);
        }
    }
}
