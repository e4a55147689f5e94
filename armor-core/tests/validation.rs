//! Loading and validation: every problem, with its exact position.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use armor_core::{Config, Level, PolicySet};

fn testdata(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(p)
}

fn errors_of(text: &str) -> Vec<String> {
    match PolicySet::parse(text, "t.yaml") {
        Ok(s) => panic!(
            "expected errors, got a set with warnings {:?}",
            s.diagnostics()
        ),
        Err(e) => e.diagnostics.errors().map(ToString::to_string).collect(),
    }
}

#[test]
fn mixed_errors_each_with_exact_position() {
    let path = testdata("invalid/mixed-errors.yaml");
    let err = PolicySet::load_paths(&[&path], &Config::default()).unwrap_err();
    let file = path.display().to_string();
    let got: Vec<String> = err
        .diagnostics
        .items
        .iter()
        .map(ToString::to_string)
        .collect();
    let want = [
        format!(
            "{file}:10:13: in policy ns/block-shadow: severity: expected an integer, found a string"
        ),
        format!(
            "{file}:13:12: in policy ns/block-shadow: file.matchDirectories[0].dir: must end with \"/\""
        ),
        format!(
            "{file}:15:7: warning: in policy ns/block-shadow: file.matchDirectories[0].readonly: unknown field `readonly` is ignored"
        ),
        format!(
            "{file}:18:15: in policy ns/block-shadow: file.matchPaths[0].action: `Deny` is not an action: expected `Allow`, `Audit` or `Block`"
        ),
        format!(
            "{file}:21:17: in policy ns/block-shadow: network.matchProtocols[0].protocol: `tcpx` is not a known protocol"
        ),
        format!("{file}:23:3: in policy ns/block-shadow: action: duplicate key `action`"),
    ];
    assert_eq!(got, want, "\n{}", got.join("\n"));
    assert_eq!(err.diagnostics.errors().count(), 5);
}

#[test]
fn fixtures_cover_every_field_and_load_cleanly() {
    let set = PolicySet::load_paths(&[testdata("policies")], &Config::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.policies().len(), 3);
    let unknown: Vec<_> = set
        .diagnostics()
        .items
        .iter()
        .filter(|d| d.message.contains("unknown field"))
        .collect();
    assert!(
        unknown.is_empty(),
        "fixtures use only known fields: {unknown:?}"
    );
    let by_name = |n: &str| set.policies().iter().find(|p| p.name == n).unwrap();
    let ksp = by_name("ksp-all-fields");
    assert_eq!(ksp.spec.presets.len(), 5);
    assert_eq!(
        ksp.spec.process.match_paths[0].allowed_args,
        ["update", "-y"]
    );
    assert_eq!(ksp.spec.process.match_paths[0].pts, Some(true));
    assert_eq!(ksp.spec.network.match_dns_queries[0].domain, "example.com");
    assert!(
        ksp.spec
            .apparmor
            .as_deref()
            .unwrap()
            .contains("deny /etc/hostname")
    );
    let hsp = by_name("hsp-all-fields");
    assert_eq!(hsp.spec.device.match_device[0].sub_class, Some(6));
    assert_eq!(hsp.spec.device.match_device[0].level, Some(1));
}

#[test]
fn type_errors_are_reported_not_coerced() {
    let errs = errors_of(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: p}\nspec:\n  selector: {matchLabels: {app: 1}}\n  file:\n    matchPaths:\n    - path: /etc/x\n      readOnly: \"yes\"\n",
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("selector.matchLabels.app: expected a string, found an integer")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("readOnly: expected a boolean, found a string")),
        "{errs:?}"
    );
}

#[test]
fn crd_rules() {
    let base = |body: &str| {
        format!(
            "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {{name: p, namespace: n}}\nspec:\n  selector: {{matchLabels: {{a: b}}}}\n{body}"
        )
    };
    let cases = [
        ("  severity: 11\n", "severity must be 1 to 10"),
        (
            "  process:\n    matchPaths:\n    - path: bin/sh\n",
            "must be an absolute file path",
        ),
        (
            "  process:\n    matchPaths:\n    - execname: /bin/sh\n",
            "must be a file name",
        ),
        (
            "  process:\n    matchPaths:\n    - ownerOnly: true\n",
            "needs `path` or `execname`",
        ),
        (
            "  capabilities:\n    matchCapabilities:\n    - capability: fly\n",
            "`fly` is not a known capability",
        ),
        (
            "  syscalls:\n    matchSyscalls:\n    - syscall: [frobnicate]\n",
            "not an x86_64 syscall",
        ),
        (
            "  process:\n    action: block\n    matchPaths:\n    - path: /bin/sh\n",
            "must be written `Block`",
        ),
        ("  presets:\n  - name: everything\n", "is not a preset"),
        (
            "  device:\n    matchDevice:\n    - class: USB\n",
            "only host policies have `device`",
        ),
        (
            "  file:\n    matchPatterns:\n    - pattern: /etc/[a\n",
            "unterminated `[`",
        ),
        (
            &format!(
                "  file:\n    matchPaths:\n    - path: /{}\n",
                "a".repeat(250)
            ),
            "longer than 200",
        ),
    ];
    for (body, want) in cases {
        let errs = errors_of(&base(body));
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{body}: want `{want}` in {errs:?}"
        );
    }
    let host_errs = errors_of(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata: {name: h}\nspec:\n  network:\n    matchProtocols:\n    - protocol: tcp\n",
    );
    assert!(
        host_errs
            .iter()
            .any(|e| e.contains("missing required field `nodeSelector`")),
        "{host_errs:?}"
    );
    assert!(
        host_errs
            .iter()
            .any(|e| e.contains("need `fromSource` on network rules")),
        "{host_errs:?}"
    );
}

#[test]
fn semantic_warnings() {
    let set = PolicySet::parse(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: p, namespace: n}\nspec:\n  selector:\n    matchLabels: {a: b}\n    matchExpressions:\n    - {key: label, operator: In, values: [\"x=1\"]}\n    - {key: label, operator: NotIn, values: [\"x=1\"]}\n  file:\n    matchDirectories:\n    - dir: /etc/\n      recursive: true\n      action: Block\n    matchPaths:\n    - path: /etc/hostname\n      action: Allow\n    - path: /etc//passwd\n    - path: /etc//passwd\n",
        "w.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let w: Vec<String> = set
        .diagnostics()
        .warnings()
        .map(ToString::to_string)
        .collect();
    assert!(
        w.iter().any(|m| m.contains("file.matchPaths[0]: shadowed")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|m| m.contains("not a canonical path")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|m| m.contains("duplicate of file.matchPaths[1]")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|m| m.contains("both required (In) and excluded (NotIn)")),
        "{w:?}"
    );
    assert!(
        set.diagnostics()
            .items
            .iter()
            .all(|d| d.level == Level::Warning)
    );
}

#[test]
fn duplicate_policy_is_an_error_across_files() {
    let doc = "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: p, namespace: n}\nspec:\n  selector: {matchLabels: {a: b}}\n  file: {matchPaths: [{path: /x}]}\n";
    let mut set = PolicySet::new();
    set.add_text(doc, "a.yaml", &Config::default());
    set.add_text(doc, "b.yaml", &Config::default());
    let err = set.finish().unwrap_err();
    assert!(err.to_string().contains("b.yaml:1:1: in policy n/p: metadata.name: KubeArmorPolicy `n/p` is already defined at a.yaml:1:1"), "{err}");
}

#[test]
fn alias_bomb_is_rejected_fast() {
    let mut text = String::from(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: p}\nx0: &a0 [y, y, y, y, y, y, y, y, y, y]\n",
    );
    for i in 1..40 {
        let p = i - 1;
        text.push_str(&format!(
            "x{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let start = Instant::now();
    let err = PolicySet::parse(&text, "bomb.yaml").unwrap_err();
    assert!(
        err.to_string()
            .contains("nodes (counting alias expansions)"),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn aliases_within_limits_work() {
    let set = PolicySet::parse(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: p, namespace: n}\nspec:\n  selector: {matchLabels: &l {app: web}}\n  file:\n    matchPaths:\n    - &r {path: /etc/a}\n",
        "alias.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(set.policies()[0].spec.file.match_paths[0].path, "/etc/a");
}

#[test]
fn syntax_error_has_position() {
    let errs = errors_of("apiVersion: security.kubearmor.com/v1\nkind: [KubeArmorPolicy\n");
    assert!(errs[0].starts_with("t.yaml:"), "{errs:?}");
    assert!(errs[0].contains("invalid YAML"), "{errs:?}");
}

fn shadow_warnings(file_rules: &str) -> Vec<String> {
    let text = format!(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {{name: p, namespace: n}}\nspec:\n  selector: {{matchLabels: {{a: b}}}}\n  file:\n{file_rules}"
    );
    let set = PolicySet::parse(&text, "s.yaml").unwrap_or_else(|e| panic!("{e}"));
    set.diagnostics()
        .warnings()
        .filter(|d| d.message.starts_with("shadowed"))
        .map(|d| d.field.clone())
        .collect()
}

#[test]
fn shadowing_follows_precedence_not_path_specificity() {
    // Allow dir inside a recursive Block dir: shadowed.
    assert_eq!(
        shadow_warnings(
            "    matchDirectories:\n    - {dir: /etc/, recursive: true, action: Block}\n    - {dir: /etc/ssl/, action: Allow}\n"
        ),
        ["file.matchDirectories[1]"]
    );
    // ... but not inside a non-recursive one.
    assert!(shadow_warnings("    matchDirectories:\n    - {dir: /etc/, action: Block}\n    - {dir: /etc/ssl/, action: Allow}\n").is_empty());
    // Allow path matched by a Block pattern: shadowed.
    assert_eq!(
        shadow_warnings(
            "    matchPatterns:\n    - {pattern: /etc/*.conf, action: Block}\n    matchPaths:\n    - {path: /etc/a.conf, action: Allow}\n"
        ),
        ["file.matchPaths[0]"]
    );
    // A fromSource Allow beats a source-less Block: not shadowed.
    assert!(shadow_warnings("    matchDirectories:\n    - {dir: /etc/, recursive: true, action: Block}\n    matchPaths:\n    - {path: /etc/a, action: Allow, fromSource: [{path: /bin/cat}]}\n").is_empty());
    // Same source on both: shadowed.
    assert_eq!(
        shadow_warnings(
            "    matchPaths:\n    - {path: /etc/a, action: Block, fromSource: [{path: /bin/cat}, {path: /bin/sh}]}\n    - {path: /etc/a, action: Allow, fromSource: [{path: /bin/cat}]}\n"
        ),
        ["file.matchPaths[1]"]
    );
    // A Block with qualifiers covers only part: not shadowed.
    assert!(shadow_warnings("    matchPaths:\n    - {path: /etc/a, action: Block, readOnly: true}\n    - {path: /etc/a, action: Allow}\n").is_empty());
}
