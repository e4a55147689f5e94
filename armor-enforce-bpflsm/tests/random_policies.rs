#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Random process and file policies where globs meet exact paths, directories, fromSource,
//! readOnly, ownerOnly, every action and both postures: the model of the kernel (walking the
//! encoded glob automaton and probing the encoded rule map) decides every random event exactly
//! as the engine does, verdict and reported rule.

use std::fmt::Write as _;

use armor_core::event::{Access, Event};
use armor_core::posture::{Posture, PostureAction};
use armor_core::{Container, PolicySet, Workload};
use armor_enforce_bpflsm::{KernelOp, Model, compile};
use proptest::prelude::*;

/// Paths the rules and the events share, so they collide often.
const PATHS: &[&str] = &[
    "/etc/shadow",
    "/etc/ssl/a.pem",
    "/etc/ssl/b.key",
    "/bin/cat",
    "/bin/sh",
    "/tmp/q/r",
    "/opt/x y",
    "/opt/é/z",
];
const DIRS: &[&str] = &["/etc/", "/etc/ssl/", "/bin/", "/tmp/", "/"];
const GLOBS: &[&str] = &[
    "/etc/*",
    "/etc/**",
    "/tmp/**",
    "/bin/?a*",
    "/etc/ssl/*.{pem,key}",
    "/opt/{a,x}*",
    "/opt/?/*",
    "/**/r",
    "/etc/ssl/[a-b].*",
    "/bin/[^c]*",
];
const SOURCES: &[&str] = &["/bin/cat", "/bin/sh"];
const ACTIONS: &[&str] = &["Allow", "Audit", "Block"];
const KEY: u64 = 0x0123_4567_89ab_cdef;

#[derive(Debug, Clone)]
struct Spec {
    file: bool,
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
        (any::<bool>(), 0u8..4, 0usize..64),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        (
            proptest::option::of(0usize..2),
            0usize..3,
            proptest::option::of(1u8..10),
        ),
    )
        .prop_map(
            |(
                (file, kind, item),
                (recursive, read_only, owner_only),
                (source, action, severity),
            )| {
                Spec {
                    file,
                    kind,
                    item,
                    recursive,
                    read_only,
                    owner_only,
                    source,
                    action,
                    severity,
                }
            },
        )
}

fn pick(v: &[&'static str], i: usize) -> &'static str {
    v[i % v.len()]
}

/// One policy; every spec is its own list entry. Globs carry no fromSource (KubeArmor's
/// `matchPatterns` have none); `kind` 2 and 3 are both globs so they are frequent.
fn yaml(name: &str, specs: &[Spec]) -> String {
    let mut sections: [Vec<(&str, String)>; 2] = Default::default();
    for s in specs {
        let mut tail = format!("      ownerOnly: {}\n", s.owner_only);
        if s.file {
            let _ = writeln!(tail, "      readOnly: {}", s.read_only);
        }
        let _ = writeln!(tail, "      action: {}", ACTIONS[s.action]);
        if let Some(v) = s.severity {
            let _ = writeln!(tail, "      severity: {v}");
        }
        let from = s
            .source
            .map(|i| format!("      fromSource:\n      - path: {}\n", SOURCES[i]))
            .unwrap_or_default();
        let entry = match s.kind {
            0 => (
                "matchPaths",
                format!("    - path: \"{}\"\n{from}{tail}", pick(PATHS, s.item)),
            ),
            1 => (
                "matchDirectories",
                format!(
                    "    - dir: {}\n      recursive: {}\n{from}{tail}",
                    pick(DIRS, s.item),
                    s.recursive
                ),
            ),
            _ => (
                "matchPatterns",
                format!("    - pattern: \"{}\"\n{tail}", pick(GLOBS, s.item)),
            ),
        };
        sections[usize::from(s.file)].push(entry);
    }
    let mut y = format!(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n"
    );
    for (i, sec) in ["process", "file"].iter().enumerate() {
        if sections[i].is_empty() {
            continue;
        }
        let _ = writeln!(y, "  {sec}:");
        for k in ["matchDirectories", "matchPaths", "matchPatterns"] {
            if sections[i].iter().any(|(kk, _)| *kk == k) {
                let _ = writeln!(y, "    {k}:");
                for (_, body) in sections[i].iter().filter(|(kk, _)| *kk == k) {
                    y.push_str(body);
                }
            }
        }
    }
    y
}

/// (exec?, path, write, source, uid, owned by the uid)
type Ev = (bool, usize, bool, Option<usize>, u32, bool);

fn event() -> impl Strategy<Value = Ev> {
    (
        any::<bool>(),
        0usize..64,
        any::<bool>(),
        proptest::option::of(0usize..2),
        0u32..2,
        any::<bool>(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn kernel_model_with_globs_agrees_with_the_engine(
        a in prop::collection::vec(spec(), 1..6),
        b in prop::collection::vec(spec(), 0..4),
        posture_block in any::<bool>(),
        events in prop::collection::vec(event(), 1..12),
    ) {
        let text = format!("{}---\n{}", yaml("pa", &a), if b.is_empty() { String::new() } else { yaml("pb", &b) });
        let set = PolicySet::parse(&text, "random.yaml").unwrap();
        let policy = armor_core::CompiledPolicy::build(&set).unwrap();
        let web = Workload::Container(Container::new("shop", "web").label("app", "web"));
        let mut posture = Posture::default();
        posture.file = if posture_block { PostureAction::Block } else { PostureAction::Audit };
        let rules = policy.rule_set(&web, posture);
        let artifact = compile("shop/web", &rules);
        prop_assert!(artifact.unenforceable_rules().is_empty(), "{:?}", artifact.unenforceable_rules());
        let encoded = artifact.encode(3, KEY);
        let model = Model::new(&encoded, 3, KEY);
        for &(exec, p, write, src, uid, owned) in &events {
            let path = pick(PATHS, p);
            let source = src.map(|i| SOURCES[i]);
            let e = if exec {
                Event::exec(path, source)
            } else {
                Event::open(path, if write { Access::WRITE } else { Access::READ }, source)
            }
            .with_uid(uid)
            .with_owner(if owned { uid } else { uid + 1 });
            let want = rules.decide(&e);
            let op = KernelOp::from_event(&e).unwrap();
            let got = model.decide(&op, source, uid);
            prop_assert_eq!(got.verdict, want.verdict, "event {:?}\n{}", e, text);
            if want.verdict != armor_core::Verdict::Allow {
                let want_rule = match want.reason {
                    armor_core::engine::Reason::Rule(r) => Some(r),
                    _ => None,
                };
                let got_rule = got.rule.and_then(|id| policy.rules().get(id as usize));
                prop_assert_eq!(got_rule, want_rule, "event {:?}\n{}", e, text);
            }
        }
    }
}
