//! Property test: on random policies and events, the engine and the naive matcher agree.
//!
//! Policies are generated as YAML text from a small vocabulary (so that targets, sources and
//! events collide often), parsed by the real loader, then decided by both implementations.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]

use armor_core::event::{Access, Event, Socket, net};
use armor_core::posture::{Posture, PostureAction, PostureConfig};
use armor_core::workload::{Container, Host, Workload};
use armor_core::{CompiledPolicy, PolicySet};
use armor_testing::corpus::Outcome;
use armor_testing::naive::NaiveMatcher;
use proptest::prelude::*;

const PATHS: &[&str] = &[
    "/etc/shadow",
    "/etc/passwd",
    "/etc/ssl/certs/ca.pem",
    "/bin/cat",
    "/bin/sh",
    "/usr/bin/curl",
    "/tmp/x/y",
    "/tmp/a",
];
const DIRS: &[&str] = &[
    "/",
    "/etc/",
    "/etc/ssl/",
    "/bin/",
    "/tmp/",
    "/tmp/x/",
    "/usr/",
];
const GLOBS: &[&str] = &[
    "/etc/*",
    "/etc/**",
    "/tmp/?",
    "/bin/{ca,s}*",
    "/usr/**/curl",
    "/etc/ssl/[a-c]*/*.pem",
    "/tmp/*/y",
];
const SOURCES: &[&str] = &["/bin/cat", "/bin/sh", "/usr/bin/curl"];
const ACTIONS: &[&str] = &["Allow", "Audit", "Block"];
const PROTOS: &[&str] = &[
    "tcp", "udp", "icmp", "raw", "stream", "dgram", "all", "tcp,udp",
];
const CAPS: &[&str] = &["net_raw", "sys_admin", "chown", "net_raw,chown"];

fn pick(v: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(v)
}

#[derive(Debug, Clone)]
struct RuleSpec {
    section: u8,
    target: u8,
    value: &'static str,
    dir: &'static str,
    glob: &'static str,
    recursive: bool,
    read_only: bool,
    owner_only: bool,
    source: Option<&'static str>,
    action: Option<&'static str>,
    severity: Option<u8>,
    proto: &'static str,
    cap: &'static str,
}

fn rule() -> impl Strategy<Value = RuleSpec> {
    (
        (0u8..4, 0u8..4, pick(PATHS), pick(DIRS), pick(GLOBS)),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        (
            proptest::option::of(pick(SOURCES)),
            proptest::option::of(pick(ACTIONS)),
            proptest::option::of(1u8..11),
        ),
        (pick(PROTOS), pick(CAPS)),
    )
        .prop_map(
            |(
                (section, target, value, dir, glob),
                (recursive, read_only, owner_only),
                (source, action, severity),
                (proto, cap),
            )| RuleSpec {
                section,
                target,
                value,
                dir,
                glob,
                recursive,
                read_only,
                owner_only,
                source,
                action,
                severity,
                proto,
                cap,
            },
        )
}

fn policy_yaml(name: &str, host: bool, action: Option<&str>, rules: &[RuleSpec]) -> String {
    let mut process = String::new();
    let mut file = String::new();
    let mut network = String::new();
    let mut caps = String::new();
    for r in rules {
        let mut extra = String::new();
        if let Some(a) = r.action {
            extra.push_str(&format!("      action: {a}\n"));
        }
        if let Some(s) = r.severity {
            extra.push_str(&format!("      severity: {s}\n"));
        }
        let src = |host: bool| match (r.source, host) {
            (Some(s), _) => format!("      fromSource:\n      - path: {s}\n"),
            (None, true) => "      fromSource:\n      - path: /bin/sh\n".to_string(),
            (None, false) => String::new(),
        };
        match r.section {
            0 | 1 => {
                let file_rule = r.section == 1;
                let out = if file_rule { &mut file } else { &mut process };
                let ro = if file_rule {
                    format!("      readOnly: {}\n", r.read_only)
                } else {
                    String::new()
                };
                let oo = format!("      ownerOnly: {}\n", r.owner_only);
                match r.target {
                    0 => out.push_str(&format!("    matchPaths:\n    - path: {}\n{ro}{oo}{}{extra}", r.value, src(false))),
                    1 => out.push_str(&format!("    matchDirectories:\n    - dir: {}\n      recursive: {}\n{ro}{oo}{}{extra}", r.dir, r.recursive, src(false))),
                    2 => out.push_str(&format!("    matchPatterns:\n    - pattern: \"{}\"\n{ro}{oo}{extra}", r.glob)),
                    _ if !file_rule => {
                        let name = r.value.rsplit('/').next().unwrap_or("cat");
                        out.push_str(&format!("    matchPaths:\n    - execname: {name}\n{oo}{}{extra}", src(false)))
                    }
                    _ => out.push_str(&format!("    matchPaths:\n    - path: {}\n{ro}{oo}{}{extra}", r.value, src(false))),
                }
            }
            2 => network.push_str(&format!(
                "    matchProtocols:\n    - protocol: \"{}\"\n{}{extra}",
                r.proto,
                src(host)
            )),
            _ => caps.push_str(&format!(
                "    matchCapabilities:\n    - capability: \"{}\"\n{}{extra}",
                r.cap,
                src(host)
            )),
        }
    }
    // Several `matchPaths:` keys in one section would be duplicate keys: merge list items.
    let merge = |body: &str| {
        let mut by_key: std::collections::BTreeMap<&str, String> = Default::default();
        let mut key = "";
        for line in body.lines() {
            if let Some(k) = line
                .strip_prefix("    ")
                .filter(|l| l.ends_with(':') && !l.starts_with(' '))
            {
                key = k;
                continue;
            }
            by_key
                .entry(key)
                .or_default()
                .push_str(&format!("{line}\n"));
        }
        by_key
            .into_iter()
            .map(|(k, v)| format!("    {k}\n{v}"))
            .collect::<String>()
    };
    let mut y = format!(
        "apiVersion: security.kubearmor.com/v1\nkind: {}\nmetadata:\n  name: {name}\n",
        if host {
            "KubeArmorHostPolicy"
        } else {
            "KubeArmorPolicy"
        }
    );
    if host {
        y.push_str("spec:\n  nodeSelector:\n    matchLabels:\n      role: edge\n");
    } else {
        y.push_str("  namespace: shop\nspec:\n  selector:\n    matchLabels:\n      app: web\n");
    }
    if let Some(a) = action {
        y.push_str(&format!("  action: {a}\n"));
    }
    for (sec, body) in [
        ("process", process),
        ("file", file),
        ("network", network),
        ("capabilities", caps),
    ] {
        if !body.is_empty() {
            y.push_str(&format!("  {sec}:\n{}", merge(&body)));
        }
    }
    y
}

#[derive(Debug, Clone)]
enum Ev {
    Exec(&'static str),
    Open(&'static str, u8),
    Sock(u16, u16, u16),
    Cap(u8),
}

fn event() -> impl Strategy<Value = (Ev, Option<&'static str>, u32, Option<u32>)> {
    let ev = prop_oneof![
        pick(PATHS).prop_map(Ev::Exec),
        (pick(PATHS), 0u8..3).prop_map(|(p, a)| Ev::Open(p, a)),
        pick(&["/etc", "/etc/ssl", "/tmp/x", "/", "/usr/bin"]).prop_map(|p| Ev::Open(p, 0)),
        (
            proptest::sample::select(&[net::AF_INET, net::AF_INET6, net::AF_UNIX][..]),
            proptest::sample::select(&[net::SOCK_STREAM, net::SOCK_DGRAM, net::SOCK_RAW][..]),
            proptest::sample::select(&[0u16, 1, 6, 17, 58][..])
        )
            .prop_map(|(f, t, p)| Ev::Sock(f, t, p)),
        proptest::sample::select(&[13u8, 21, 0, 7][..]).prop_map(Ev::Cap),
    ];
    (
        ev,
        proptest::option::of(pick(SOURCES)),
        0u32..2,
        proptest::option::of(0u32..2),
    )
}

fn to_event(ev: &Ev, src: Option<&str>, uid: u32, owner: Option<u32>) -> Event {
    let e = match ev {
        Ev::Exec(p) => Event::exec(*p, src),
        Ev::Open(p, a) => Event::open(
            *p,
            [Access::READ, Access::WRITE, Access::READ_WRITE][usize::from(*a)],
            src,
        ),
        Ev::Sock(f, t, p) => Event::socket(Socket::new(*f, *t, *p), src),
        Ev::Cap(c) => Event::capability(*c, src),
    };
    let e = e.with_uid(uid);
    match owner {
        Some(o) => e.with_owner(o),
        None => e,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_naive_matcher(
        host in any::<bool>(),
        p1 in proptest::collection::vec(rule(), 1..6),
        p2 in proptest::collection::vec(rule(), 0..4),
        a1 in proptest::option::of(pick(&["Allow", "Audit", "Block", "block"])),
        posture in (any::<bool>(), any::<bool>(), any::<bool>()),
        events in proptest::collection::vec(event(), 1..8),
    ) {
        let mut text = policy_yaml("alpha", host, a1, &p1);
        if !p2.is_empty() {
            text.push_str("---\n");
            text.push_str(&policy_yaml("beta", host, None, &p2));
        }
        let set = match PolicySet::parse(&text, "gen.yaml") {
            Ok(s) => s,
            Err(e) => panic!("generated policy rejected:\n{text}\n{e}"),
        };
        let compiled = CompiledPolicy::build(&set).unwrap();
        let act = |b: bool| if b { PostureAction::Block } else { PostureAction::Audit };
        let mut p = Posture::default();
        p.file = act(posture.0);
        p.network = act(posture.1);
        p.capabilities = act(posture.2);
        let mut cfg = PostureConfig::new();
        cfg.container_default = p;
        cfg.host_default = p;
        let workload: Workload = if host {
            Host::new("n1").label("role", "edge").into()
        } else {
            Container::new("shop", "web").label("app", "web").into()
        };
        let rules = compiled.rule_set(&workload, p);
        let naive = NaiveMatcher::new(set.policies().to_vec());
        for (ev, src, uid, owner) in &events {
            let e = to_event(ev, *src, *uid, *owner);
            let engine = Outcome::from_decision(&rules.decide(&e));
            let reference = naive.decide(&cfg, &workload, &e);
            prop_assert_eq!(&engine, &reference, "event {:?}\npolicies:\n{}", e, text);
        }
    }
}
