//! armorctl end to end: exit codes, diagnostics, explain and replay on the example files.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn armorctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_armorctl"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("armorctl runs")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn validate_examples_ok() {
    let o = armorctl(&["validate", "examples/policies"]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).starts_with("ok: 5 policies"), "{}", stdout(&o));
}

/// The libraries' `tracing` events reach stderr, filtered by `ARMOR_LOG` (default `warn`): the
/// engine's debug line for a compiled policy shows only when asked for; a bad filter is said.
#[test]
fn library_diagnostics_are_shown_as_armor_log_asks() {
    let run = |log: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_armorctl"));
        cmd.args(["validate", "--enforcer", "bpflsm", "examples/policies"])
            .current_dir(root())
            .env_remove("ARMOR_LOG");
        if let Some(l) = log {
            cmd.env("ARMOR_LOG", l);
        }
        let o = cmd.output().expect("armorctl runs");
        assert!(o.status.success(), "{}", stdout(&o));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let quiet = run(None);
    assert!(!quiet.contains("policy compiled"), "{quiet}");
    let debug = run(Some("armor_core=debug"));
    assert!(
        debug.contains("DEBUG") && debug.contains("policy compiled") && debug.contains("rules="),
        "{debug}"
    );
    let bad = run(Some("armor_core=loud"));
    assert!(
        bad.contains("ARMOR_LOG=`armor_core=loud` is not a log filter"),
        "{bad}"
    );
}

/// Issue 16: the rules an enforcer's artefact leaves out are listed offline, one line each with
/// the policy, field and position; `--strict` turns any into exit status 1.
#[test]
fn validate_lists_the_rules_an_enforcer_does_not_carry() {
    let file = "testdata/gaps/beyond-bpflsm.yaml";
    let o = armorctl(&["validate", "--enforcer", "bpflsm", file]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    let gaps: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("BPFLSM does not enforce "))
        .collect();
    assert_eq!(gaps.len(), 13, "{out}");
    for i in 0..12 {
        let line = gaps
            .iter()
            .find(|l| l.contains(&format!("file.matchPatterns[{i}] (Block)")))
            .unwrap_or_else(|| panic!("matchPatterns[{i}] not listed: {out}"));
        assert!(line.contains("KubeArmorPolicy shop/many-globs"), "{line}");
        assert!(line.contains(&format!("at {file}:{}:9:", 11 + i)), "{line}");
        assert!(line.contains("more than 1024 states"), "{line}");
    }
    assert!(
        gaps.iter()
            .any(|l| l.contains("network.matchDNSQueries[0] (Block)") && l.contains("shop/no-dns")),
        "{out}"
    );
    assert!(
        !gaps.iter().any(|l| l.contains("matchPaths")),
        "the exact path is enforced: {out}"
    );
    // What the enforcer does with each rule, one line each: enforces, audits or refuses.
    let table: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("BPFLSM container rule "))
        .collect();
    assert_eq!(table.len(), 14, "{out}");
    assert!(
        table
            .iter()
            .any(|l| l.contains("file.matchPaths[0] (Block)")
                && l.ends_with("enforces: denied in the kernel")),
        "{out}"
    );
    assert!(
        table
            .iter()
            .any(|l| l.contains("network.matchDNSQueries[0] (Block)")
                && l.contains("refuses (neither enforced nor alerted)")),
        "{out}"
    );
    assert_eq!(
        table.iter().filter(|l| l.contains(": refuses ")).count(),
        13,
        "{out}"
    );
    assert!(out.contains("BPFLSM: 13 rule(s) not enforced"), "{out}");

    let strict = armorctl(&["validate", "--enforcer", "bpflsm", "--strict", file]);
    assert_eq!(strict.status.code(), Some(1), "{}", stdout(&strict));
    // A larger cap is bounded by what the kernel's automaton value holds (4096 states).
    let larger = armorctl(&[
        "validate",
        "--enforcer",
        "bpflsm",
        "--max-glob-states",
        "100000",
        file,
    ]);
    let out = stdout(&larger);
    assert!(
        out.contains("more than 4096 states (`max_glob_states` is 100000)"),
        "{out}"
    );
    // AppArmor carries the globs; DNS is not mediated.
    let aa = armorctl(&["validate", "--enforcer", "apparmor", "--strict", file]);
    let out = stdout(&aa);
    assert_eq!(aa.status.code(), Some(1), "{out}");
    assert!(out.contains("AppArmor: 1 rule(s) not enforced"), "{out}");
    // Policies every rule of which is carried: exit 0 even with --strict.
    let ok = armorctl(&[
        "validate",
        "--enforcer",
        "bpflsm",
        "--strict",
        "examples/policies",
    ]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("BPFLSM: every Block and Allow rule is enforced"));
}

#[test]
fn validate_errors_exit_1_with_positions() {
    let o = armorctl(&["validate", "testdata/invalid/mixed-errors.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("testdata/invalid/mixed-errors.yaml:13:12: in policy ns/block-shadow: file.matchDirectories[0].dir: must end with \"/\""),
        "{out}"
    );
    assert!(out.contains("5 error(s), 1 warning(s)"), "{out}");
}

#[test]
fn validate_warnings_only_exit_0() {
    let dir = std::env::temp_dir().join(format!("armorctl-warn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("w.yaml");
    std::fs::write(
        &f,
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: w, namespace: n}\nspec:\n  selector: {matchLabels: {a: b}}\n  file:\n    matchPaths:\n    - path: /etc/x\n      readonly: true\n",
    )
    .unwrap();
    let o = armorctl(&["validate", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("warning: in policy n/w: file.matchPaths[0].readonly: unknown field"),
        "{}",
        stdout(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn explain_says_which_rule_and_step() {
    let event = r#"{"Type":"ContainerLog","NamespaceName":"shop","Labels":"app=web","ContainerName":"web","Operation":"File","Source":"/usr/bin/curl","Resource":"/var/run/secrets/kubernetes.io/serviceaccount/token","Data":"flags=O_RDONLY","UID":0}"#;
    let o = armorctl(&["explain", "--policy", "examples/policies", "--event", event]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("decision:  BLOCK (Permission denied)"),
        "{out}"
    );
    assert!(
        out.contains("[covers] shop/block-secrets file.matchDirectories[0]"),
        "{out}"
    );
    assert!(
        out.contains("[skip  ] shop/block-secrets file.matchDirectories[1]"),
        "{out}"
    );
    assert!(
        out.contains("fromSource does not list the acting executable"),
        "{out}"
    );

    let event = event.replace("/usr/bin/curl", "/app/server");
    let o = armorctl(&[
        "explain",
        "--policy",
        "examples/policies",
        "--event",
        &event,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["alert"], serde_json::Value::Null);
    assert!(v["step"].as_str().unwrap().contains("matching fromSource"));
}

#[test]
fn replay_recorded_telemetry() {
    let o = armorctl(&[
        "replay",
        "--policy",
        "examples/policies",
        "--namespace-annotation",
        "payments:kubearmor-file-posture=block",
        "--node-labels",
        "kubernetes.io/hostname=edge-1",
        "--input",
        "examples/telemetry/recorded.jsonl",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    let want = [
        (
            "block-secrets",
            "Block",
            "Permission denied",
            "MatchedPolicy",
        ),
        ("", "", "Passed", "ContainerLog"),
        (
            "no-package-managers",
            "Block",
            "Permission denied",
            "MatchedPolicy",
        ),
        ("audit-etc-writes", "Audit", "Passed", "MatchedPolicy"),
        (
            "DefaultPosture",
            "Block",
            "Permission denied",
            "MatchedPolicy",
        ),
        ("DefaultPosture", "Audit", "Passed", "MatchedPolicy"),
        (
            "host-hardening",
            "Block",
            "Permission denied",
            "MatchedHostPolicy",
        ),
        ("", "", "Passed", "HostLog"),
    ];
    for (i, (l, (policy, action, result, ty))) in lines.iter().zip(want).enumerate() {
        assert_eq!(
            l["PolicyName"].as_str().unwrap_or(""),
            policy,
            "line {}",
            i + 1
        );
        assert_eq!(l["Action"].as_str().unwrap_or(""), action, "line {}", i + 1);
        assert_eq!(l["Result"], result, "line {}", i + 1);
        assert_eq!(l["Type"], ty, "line {}", i + 1);
    }
    assert_eq!(lines[0]["Severity"], "8");
    assert_eq!(lines[0]["Tags"], "MITRE,T1552");
    assert_eq!(lines[0]["ContainerName"], "web");
}

#[test]
fn replay_reports_bad_lines() {
    let dir = std::env::temp_dir().join(format!("armorctl-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.jsonl");
    std::fs::write(
        &f,
        "{not json}\n{\"Type\":\"HostLog\",\"Operation\":\"Teleport\"}\n",
    )
    .unwrap();
    let o = armorctl(&[
        "replay",
        "--policy",
        "examples/policies",
        "--input",
        f.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.jsonl:1: not a KubeArmor record"), "{err}");
    assert!(
        err.contains("bad.jsonl:2: operation `Teleport` is not replayable"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 21: presets, allowedArgs and syscall rules, per rule and per enforcer: BPF-LSM enforces
/// the presets and the allowedArgs rule in the kernel; AppArmor refuses each preset with its
/// reason (and the Allow with allowedArgs, left to the posture); both leave the syscall rule to
/// the monitor.
#[test]
fn validate_says_what_each_enforcer_does_with_presets_args_and_syscalls() {
    let file = "testdata/gaps/presets-args.yaml";
    let bpf = stdout(&armorctl(&[
        "validate",
        "--enforcer",
        "bpflsm",
        "--strict",
        file,
    ]));
    let line = |out: &str, field: &str, prefix: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(prefix) && l.contains(&format!(" {field} (")))
            .unwrap_or_else(|| panic!("{field} not listed: {out}"))
            .to_owned()
    };
    for (field, want) in [
        ("presets[0]", "enforces: denied in the kernel"),
        ("presets[1]", "audits: alerted, never denied"),
        ("presets[2]", "enforces: denied in the kernel"),
        ("presets[3]", "audits: alerted, never denied"),
        ("presets[4]", "enforces: denied in the kernel"),
        (
            "process.matchPaths[0]",
            "enforces: allowed in the kernel (allow-list)",
        ),
        (
            "syscalls.matchSyscalls[0]",
            "audits through the monitor only",
        ),
    ] {
        let l = line(&bpf, field, "BPFLSM container rule ");
        assert!(l.contains(want), "{l}");
    }
    assert!(
        bpf.contains("BPFLSM: every Block and Allow rule is enforced"),
        "{bpf}"
    );

    let aa = armorctl(&["validate", "--enforcer", "apparmor", "--strict", file]);
    let out = stdout(&aa);
    assert_eq!(aa.status.code(), Some(1), "{out}");
    for (field, why) in [
        ("presets[0]", "no rule for a file with no name"),
        ("presets[1]", "does not mediate anonymous memory"),
        (
            "presets[2]",
            "cannot compare the process a /proc entry belongs to",
        ),
        ("presets[3]", "no condition on the controlling terminal"),
        (
            "presets[4]",
            "cannot compare the process a /proc entry belongs to",
        ),
    ] {
        let l = line(&out, field, "AppArmor container rule ");
        assert!(
            l.contains("refuses (neither enforced nor alerted)") && l.contains(why),
            "{l}"
        );
        // Audit presets too are gaps: only an enforcer carrying them alerts them.
        let gap = line(&out, field, "AppArmor does not enforce");
        assert!(gap.contains(why), "{gap}");
    }
    let args = line(&out, "process.matchPaths[0]", "AppArmor container rule ");
    assert!(
        args.contains("no condition on an exec's arguments"),
        "{args}"
    );
    assert!(out.contains("AppArmor: 7 rule(s) not enforced"), "{out}");
}
