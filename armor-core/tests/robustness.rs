//! Robustness properties (a stable-Rust stand-in for fuzzing): the loader never panics on any
//! input, and `decide` never panics on any event.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]

use armor_core::event::{Access, Event, Socket};
use armor_core::{CompiledPolicy, Container, PolicySet, Posture, PostureAction};
use proptest::prelude::*;

const POLICY: &str = r#"
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: p, namespace: n}
spec:
  selector: {matchLabels: {a: b}}
  process:
    matchDirectories: [{dir: /bin/, recursive: true, action: Allow}]
    matchPatterns: [{pattern: "/usr/**/s?[a-z]*", action: Block}]
  file:
    matchPaths: [{path: /etc/shadow, ownerOnly: true}]
    matchDirectories: [{dir: /, action: Allow}, {dir: /etc/, recursive: true, readOnly: true, fromSource: [{path: /bin/cat}]}]
    matchPatterns: [{pattern: "/{home,root}/**/.ssh/*", action: Audit}]
  network: {matchProtocols: [{protocol: all, action: Audit}]}
  capabilities: {matchCapabilities: [{capability: net_raw}]}
  syscalls: {matchPaths: [{path: /tmp/, recursive: true, syscall: [unlink]}]}
"#;

// Fragments that make random text look like a policy often enough to reach deep code paths.
const PIECES: &[&str] = &[
    "apiVersion: security.kubearmor.com/v1\n",
    "kind: KubeArmorPolicy\n",
    "kind: KubeArmorHostPolicy\n",
    "metadata: {name: x, namespace: y}\n",
    "spec:\n",
    "  selector: {matchLabels: {a: b}}\n",
    "  file:\n",
    "    matchPaths:\n",
    "    - path: /etc/x\n",
    "      readOnly: true\n",
    "  action: Block\n",
    "---\n",
    "&a [1, *a]\n",
    "*a\n",
    "{",
    "}",
    "[",
    "]",
    ":",
    "- ",
    "  ",
    "\t",
    "\"",
    "'",
    "%YAML 1.2\n",
    "!!binary x\n",
    "? complex\n",
    "severity: 99\n",
    "\u{feff}",
    "\0",
    "é",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn loader_never_panics(parts in proptest::collection::vec(proptest::sample::select(PIECES), 0..40), noise in ".{0,20}") {
        let mut text: String = parts.concat();
        text.push_str(&noise);
        let _ = PolicySet::parse(&text, "fuzz.yaml");
    }

    #[test]
    fn decide_never_panics(path in "(/|[a-z./]|\\PC){0,300}", src in proptest::option::of("\\PC{0,40}"), uid in any::<u32>(), owner in any::<Option<u32>>(), flags in any::<u32>(), cap in any::<u8>(), sock in any::<(u16, u16, u16)>(), block in any::<bool>()) {
        let set = PolicySet::parse(POLICY, "p.yaml").unwrap();
        let compiled = CompiledPolicy::build(&set).unwrap();
        let rules = compiled.rule_set(&Container::new("n", "c").label("a", "b").into(), Posture::all(if block { PostureAction::Block } else { PostureAction::Audit }));
        let s = src.as_deref();
        let mk_owner = |e: Event| match owner { Some(o) => e.with_owner(o), None => e };
        for e in [
            mk_owner(Event::exec(path.clone(), s)).with_uid(uid),
            mk_owner(Event::open(path.clone(), Access::from_open_bits(flags), s)).with_uid(uid),
            Event::socket(Socket::new(sock.0, sock.1, sock.2), s),
            Event::capability(cap, s),
            Event::syscall("unlink", Some(&path), s),
        ] {
            let d = rules.decide(&e);
            let _ = d.alert();
            let x = rules.explain(&e);
            prop_assert_eq!(x.decision, d);
        }
    }
}
