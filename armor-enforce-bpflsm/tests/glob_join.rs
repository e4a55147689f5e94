#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]
//! Glob rules join the decision exactly like exact and directory rules: named cases of the
//! precedence steps (fromSource, Block over Allow, tie-break, qualifiers, allow-list posture),
//! each decided by the kernel model and by the engine, with the rule each reports.

use armor_core::engine::Reason;
use armor_core::event::{Access, Event};
use armor_core::posture::{Posture, PostureAction};
use armor_core::{CompiledPolicy, Container, PolicySet, Verdict, Workload};
use armor_enforce_bpflsm::{KernelOp, Model, compile};

const KEY: u64 = 0x0bad_5eed_0bad_5eed;

/// Decides `event` under `yaml` with the model and the engine; returns the verdict and the
/// reported rule's origin field (`None`: DefaultPosture or a silent allow), after checking
/// that both agree.
fn decide(yaml: &str, event: &Event) -> (Verdict, Option<String>) {
    let set = PolicySet::parse(yaml, "join.yaml").unwrap();
    let policy = CompiledPolicy::build(&set).unwrap();
    let web = Workload::Container(Container::new("shop", "web").label("app", "web"));
    let mut posture = Posture::default();
    posture.file = PostureAction::Block;
    let rules = policy.rule_set(&web, posture);
    let artifact = compile("shop/web", &rules);
    assert!(artifact.unenforceable_rules().is_empty());
    let model = Model::new(&artifact.encode(9, KEY), 9, KEY);
    let op = KernelOp::from_event(event).unwrap();
    let got = model.decide(&op, event.source.as_deref(), event.uid);
    let want = rules.decide(event);
    let want_rule = match want.reason {
        Reason::Rule(r) if want.verdict != Verdict::Allow => Some(r),
        _ => None,
    };
    let got_rule = got
        .rule
        .and_then(|id| policy.rules().get(id as usize))
        .filter(|_| got.verdict != Verdict::Allow);
    assert_eq!(got.verdict, want.verdict, "{event:?}");
    assert_eq!(got_rule, want_rule, "{event:?}");
    let field = got_rule.map(|r| format!("{}:{}", r.policy.name, r.origin.field));
    (got.verdict, field)
}

fn policy(name: &str, body: &str) -> String {
    format!(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n{body}"
    )
}

#[test]
fn block_glob_beats_allow_path_without_source() {
    let y = format!(
        "{}---\n{}",
        policy(
            "allow-conf",
            "  file:\n    matchPaths:\n    - path: /etc/app.conf\n  action: Allow\n"
        ),
        policy(
            "block-glob",
            "  file:\n    matchPatterns:\n    - pattern: /etc/*.conf\n  action: Block\n"
        )
    );
    let (v, r) = decide(&y, &Event::open("/etc/app.conf", Access::READ, None));
    assert_eq!(v, Verdict::Block);
    assert_eq!(
        r.as_deref(),
        Some("block-glob:file.matchPatterns[0]"),
        "{r:?}"
    );
    // Outside the glob, the Allow path puts the category in allow-list mode: posture blocks.
    let (v, r) = decide(&y, &Event::open("/etc/other", Access::READ, None));
    assert_eq!((v, r), (Verdict::Block, None));
}

#[test]
fn from_source_allow_beats_block_glob() {
    let y = format!(
        "{}---\n{}",
        policy(
            "allow-cat",
            "  file:\n    matchDirectories:\n    - dir: /etc/\n      fromSource:\n      - path: /bin/cat\n  action: Allow\n"
        ),
        policy(
            "block-glob",
            "  file:\n    matchPatterns:\n    - pattern: /etc/*.conf\n  action: Block\n"
        )
    );
    let (v, _) = decide(
        &y,
        &Event::open("/etc/a.conf", Access::READ, Some("/bin/cat")),
    );
    assert_eq!(v, Verdict::Allow);
    let (v, r) = decide(
        &y,
        &Event::open("/etc/a.conf", Access::READ, Some("/bin/sh")),
    );
    assert_eq!(v, Verdict::Block);
    assert_eq!(r.as_deref(), Some("block-glob:file.matchPatterns[0]"));
}

#[test]
fn read_only_allow_glob_and_severity_tie_break() {
    let y = format!(
        "{}---\n{}",
        policy(
            "ro-logs",
            "  file:\n    matchPatterns:\n    - pattern: /var/log/**\n      readOnly: true\n  action: Allow\n"
        ),
        policy(
            "audit-both",
            "  severity: 3\n  file:\n    matchPatterns:\n    - pattern: /var/log/*.log\n    - pattern: /var/**\n      severity: 7\n  action: Audit\n"
        )
    );
    // Read: allowed by the readOnly glob, audited by the better-ranked Audit glob (severity 7).
    let (v, r) = decide(&y, &Event::open("/var/log/a.log", Access::READ, None));
    assert_eq!(v, Verdict::Audit);
    assert_eq!(r.as_deref(), Some("audit-both:file.matchPatterns[1]"));
    // Write: outside the permitted set, nothing allows it: the block posture.
    let (v, r) = decide(&y, &Event::open("/var/log/a.log", Access::WRITE, None));
    assert_eq!((v, r), (Verdict::Block, None));
}

#[test]
fn process_globs_decide_exec_by_resolved_path() {
    let y = policy(
        "no-shells",
        "  process:\n    matchPatterns:\n    - pattern: /{usr/,}bin/{ba,da,z}sh\n  action: Block\n",
    );
    for p in ["/bin/bash", "/usr/bin/dash", "/bin/zsh"] {
        let (v, _) = decide(&y, &Event::exec(p, None));
        assert_eq!(v, Verdict::Block, "{p}");
    }
    for p in ["/bin/sh", "/usr/local/bin/bash", "/bin/bash2"] {
        let (v, _) = decide(&y, &Event::exec(p, None));
        assert_eq!(v, Verdict::Allow, "{p}");
    }
}
