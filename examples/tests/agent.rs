//! armor-agent's enforcer flag: the choices, what `--help` says each covers, and that an explicit
//! enforcer the kernel refuses stops the agent with the runtime's reason (never a silent
//! audit-only run), while `auto` says it falls back and keeps monitoring.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use armor_runtime::{Enforcement, EnforcementOptions, EnforcerChoice};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_armor-agent"))
        .args(args)
        .current_dir(root())
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("armor-agent runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_names_every_enforcer_and_what_it_covers() {
    let o = agent(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for choice in EnforcerChoice::NAMES {
        assert!(help.contains(&format!("\n  {choice} ")), "{choice}: {help}");
    }
    for needle in [
        "task create, before",
        "process.apparmorProfile",
        "localhostProfile",
        "`Audit (Block)`",
        "--apparmor-dir",
    ] {
        assert!(help.contains(needle), "`{needle}` missing: {help}");
    }
}

#[test]
fn unknown_enforcer_is_a_usage_error() {
    let o = agent(&["--policies", "examples/policies", "--enforcer", "selinux"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot parse enforcer (auto, bpflsm, apparmor or none): `selinux`"),
        "{}",
        stderr(&o)
    );
}

/// Where BPF-LSM or AppArmor is refused (our machines refuse both), asking for it explicitly
/// stops the agent with the same reason the runtime gives.
#[test]
fn an_explicit_enforcer_the_kernel_refuses_stops_the_agent() {
    let opts = EnforcementOptions::default()
        .apparmor_dir(std::env::temp_dir().join(format!("armor-agent-aa-{}", std::process::id())));
    let mut checked = 0;
    for (flag, choice) in [
        ("bpflsm", EnforcerChoice::BpfLsm),
        ("apparmor", EnforcerChoice::AppArmor),
    ] {
        let Err(e) = Enforcement::select(choice, &opts) else {
            continue;
        };
        let o = agent(&["--policies", "examples/policies", "--enforcer", flag]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(&format!("--enforcer {flag}")), "{err}");
        assert!(err.contains(&e.to_string()), "`{e}` missing: {err}");
        checked += 1;
    }
    println!("{checked} refused enforcers checked");
}

/// `auto` on a machine that refuses both (as root, for the event source): the agent says why,
/// falls back to audit-only monitoring and runs until SIGTERM.
#[test]
fn auto_falls_back_to_audit_only_and_keeps_monitoring() {
    let opts = EnforcementOptions::default().apparmor_dir(
        std::env::temp_dir().join(format!("armor-agent-auto-{}", std::process::id())),
    );
    let auto = Enforcement::select(EnforcerChoice::Auto, &opts).unwrap();
    if auto.name().is_some() || !nix_root() {
        println!(
            "skipped: needs root on a kernel refusing both enforcers ({})",
            auto.summary()
        );
        return;
    }
    drop(auto);
    let out = std::env::temp_dir().join(format!("armor-agent-out-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_armor-agent"))
        .args(["--policies", "examples/policies", "--output"])
        .arg(&out)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    // Wait for the ready line (the event source loads first), then ask it to stop.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut err = String::new();
    while !err.contains("armor-agent: ready") {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(n > 0, "the agent exited before it was ready: {err}");
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not ready: {err}"
        );
        err.push_str(&line);
    }
    assert!(child.try_wait().unwrap().is_none(), "the agent exited");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
    let status = child.wait().unwrap();
    let _ = std::fs::remove_file(&out);
    assert!(status.success(), "{err}");
    assert!(
        err.contains("no kernel enforcer available (BPFLSM: ")
            && err.contains("; AppArmor: ")
            && err.contains("falling back to audit-only monitoring"),
        "{err}"
    );
    assert!(
        err.contains("armor-agent: ready: audit-only (0 containers)"),
        "{err}"
    );
    assert!(err.contains("armor-agent: stopped"), "{err}");
    println!("ran {:?}: {err}", start.elapsed());
}

fn nix_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}
