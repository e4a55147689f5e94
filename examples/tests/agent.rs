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
use armor_testing::lines::Lines;

mod common;
#[path = "../../armor-runtime/tests/support/scrape.rs"]
mod scrape;

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
    for choice in EnforcementOptions::default().choices() {
        assert!(help.contains(&format!("\n  {choice} ")), "{choice}: {help}");
    }
    for needle in [
        "rules from the task-create event",
        "--hook-socket",
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
    let err = stderr(&o);
    assert!(
        err.contains("invalid value 'selinux' for '--enforcer <ENFORCER>'")
            && err.contains("[possible values: auto, bpflsm, apparmor, none]"),
        "{err}"
    );
}

/// Where BPF-LSM or AppArmor is refused (our machines refuse both), asking for it explicitly
/// stops the agent with the same reason the runtime gives.
#[test]
fn an_explicit_enforcer_the_kernel_refuses_stops_the_agent() {
    let opts = EnforcementOptions::default()
        .apparmor_dir(std::env::temp_dir().join(format!("armor-agent-aa-{}", std::process::id())));
    let mut checked = 0;
    for flag in ["bpflsm", "apparmor"] {
        let Err(e) = Enforcement::select(&EnforcerChoice::Named(flag.into()), &opts) else {
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
    let auto = Enforcement::select(&EnforcerChoice::Auto, &opts).unwrap();
    if auto.name().is_some() || !armor_testing::is_root() {
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
        err.contains("NOT ENFORCING: no kernel enforcer available (BPFLSM: ")
            && err.contains("; AppArmor: ")
            && err.contains("falling back to audit-only monitoring"),
        "{err}"
    );
    assert!(
        err.contains(
            "armor-agent: ready: audit-only (no kernel enforcer): 0 enforced, 0 partly enforced, \
             0 monitored only, 1 without rules; 0 apply failures (0 containers)"
        ),
        "{err}"
    );
    assert!(err.contains("armor-agent: stopped"), "{err}");
    println!("ran {:?}: {err}", start.elapsed());
}

/// `--require-enforcement` without a kernel enforcer is a startup error, before anything is
/// loaded: before issue 16 the agent started and printed `ready: audit-only`.
#[test]
fn require_enforcement_without_a_kernel_enforcer_does_not_start() {
    let o = agent(&[
        "--policies",
        "examples/policies",
        "--enforcer",
        "none",
        "--require-enforcement",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("enforcement is required and no kernel enforcer runs"),
        "{err}"
    );
    assert!(err.contains("NOTHING IS DENIED"), "{err}");
    assert!(!err.contains("ready"), "{err}");
}

/// A bad service inventory stops the agent before anything is applied (no enforcer chosen, no
/// event source loaded), with every problem's `file:line:col`.
#[test]
fn a_bad_inventory_stops_the_agent_with_its_positions() {
    let dir = std::env::temp_dir().join(format!("armor-agent-inv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("inventory.yaml");
    std::fs::write(
        &file,
        "services:\n  - unit: nginx.service\n    labels: {app: nginx}\n  - unit: cron\n    colour: blue\n",
    )
    .unwrap();
    let o = agent(&[
        "--policies",
        "examples/policies",
        "--enforcer",
        "none",
        "--inventory",
        file.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("service inventory not loaded"), "{err}");
    let f = file.display();
    // Both problems of the second entry, each at its own position.
    assert!(err.contains(&format!("{f}:4:")), "{err}");
    assert!(err.contains(&format!("{f}:5:5:")), "{err}");
    assert!(!err.contains("ready"), "{err}");
    // Nothing was chosen or loaded: the agent stopped right after the policies.
    assert!(!err.contains("enforc"), "{err}");

    // A missing file is an error at its line 1.
    let missing = dir.join("missing.yaml");
    let o = agent(&[
        "--policies",
        "examples/policies",
        "--inventory",
        missing.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}:1:1: cannot read the inventory",
            missing.display()
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_describes_the_inventory() {
    let o = agent(&["--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "--inventory <FILE>",
        "system.slice/nginx.service",
        "ContainerID (the unit)",
        "host policies no longer apply",
    ] {
        assert!(help.contains(needle), "`{needle}` missing: {help}");
    }
}

/// Removes the test's cgroup directories and files, and stops the agent, also when the test fails.
struct Cleanup {
    dirs: Vec<PathBuf>,
    tmp: PathBuf,
    agent: Option<u32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = self.agent {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// As root: a unit's cgroup listed in the inventory is tracked before `ready`; a bad change of
/// the inventory is reported with its position and keeps the service; a good change that drops
/// it untracks it.
#[test]
fn inventory_services_are_tracked_and_the_inventory_reloaded() {
    if !armor_testing::is_root() {
        println!("skipped: needs root (event source, cgroup2)");
        return;
    }
    let pid = std::process::id();
    let cgroup_root = armor_runtime::identity::cgroup2_root().unwrap();
    let slice = cgroup_root.join(format!("armor-agent-test-{pid}.slice"));
    let unit = format!("armor-agent-test-{pid}.service");
    let unit_dir = slice.join(&unit);
    std::fs::create_dir_all(&unit_dir).unwrap();
    let dir = std::env::temp_dir().join(format!("armor-agent-inv-live-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cleanup = Cleanup {
        dirs: vec![unit_dir.clone(), slice.clone()],
        tmp: dir.clone(),
        agent: None,
    };
    let file = dir.join("inventory.yaml");
    std::fs::write(
        &file,
        format!("services:\n  - unit: {unit}\n    labels: {{app: armor-test}}\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_armor-agent"))
        .args(["--policies", "examples/policies", "--enforcer", "none"])
        .arg("--inventory")
        .arg(&file)
        .arg("--output")
        .arg(dir.join("out.jsonl"))
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cleanup.agent = Some(child.id());
    let mut lines = Lines::new(child.stderr.take().unwrap());
    lines.until("1 services in the inventory");
    let tracked = lines.until(&format!("service default/{unit}"));
    let id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&unit_dir).unwrap());
    assert!(tracked.ends_with(&format!("(cgroup {id})")), "{tracked}");
    lines.until("apply failures (0 containers, 1 services)");

    // A bad change: reported with its position, the previous inventory (and service) kept.
    std::fs::write(&file, "services:\n  - unit: not-a-unit\n").unwrap();
    let failed = lines.until("inventory reload failed, keeping the previous one");
    assert!(
        failed.contains(&format!("{}:2:", file.display())),
        "{failed}"
    );
    // A good change without the service: it is untracked.
    std::fs::write(&file, "services: []\n").unwrap();
    lines.until("inventory reloaded: 0 services");
    lines.until(&format!("service {unit} gone"));

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    lines.until("stopped");
    let status = child.wait().unwrap();
    cleanup.agent = None;
    assert!(
        !lines
            .seen
            .contains(&format!("service default/{unit} (cgroup {id})\nservice"))
    );
    drop(cleanup);
    assert!(!slice.exists() && !dir.exists());
    assert!(status.success(), "{}", lines.seen);
}

/// The policy directory's faults, each injected while the agent runs: a symbolic link loop, a
/// link to /dev/zero, a FIFO. Each is refused with its path (the read never follows, floods or
/// blocks), the previous policies stay in force (the marker's exec is still alerted), and the
/// refusal is counted in the metrics; taking the fault away is a change applied again. A file
/// written in two steps is applied only whole: its first half, a valid policy on its own, never
/// is.
#[test]
fn policy_directory_faults_are_refused_and_counted_and_half_written_files_never_applied() {
    if !armor_testing::is_root() {
        println!("skipped: needs root (event source)");
        return;
    }
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("armor-agent-faults-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let marker = dir.join("faults-marker");
    std::fs::copy("/bin/true", &marker).unwrap();
    let host = |name: &str, path: &std::path::Path| {
        format!(
            "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata: \
             {{name: {name}}}\nspec:\n  nodeSelector: {{matchLabels: {{}}}}\n  process:\n    \
             matchPaths: [{{path: {}}}]\n  action: Block\n",
            path.display()
        )
    };
    std::fs::write(policies.join("marker.yaml"), host("faults-marker", &marker)).unwrap();
    let out = dir.join("out.jsonl");
    let port = common::free_port();
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_armor-agent"))
        .arg("--policies")
        .arg(&policies)
        .args(["--enforcer", "none", "--metrics", &metrics.to_string()])
        .arg("--output")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _kill = common::KillOnDrop(child.id());
    let mut lines = Lines::new(child.stderr.take().unwrap());
    lines.until("ready:");

    type Make<'a> = &'a dyn Fn(&std::path::Path);
    let faults: [(&str, Make<'_>); 3] = [
        ("loop.yaml", &|p| {
            std::os::unix::fs::symlink("loop.yaml", p).unwrap()
        }),
        ("zero.yaml", &|p| {
            std::os::unix::fs::symlink("/dev/zero", p).unwrap()
        }),
        ("fifo.yaml", &|p| {
            assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
        }),
    ];
    let mut refused = 0.0;
    for (name, make) in faults {
        let path = policies.join(name);
        make(&path);
        let failed = lines.until("reload failed, keeping the previous policies");
        assert!(failed.contains(&path.display().to_string()), "{failed}");
        refused += 1.0;
        let (_, text) = scrape::http_get(metrics, "/metrics");
        assert_eq!(
            scrape::series(&text, "armor_policy_reloads_total{outcome=\"refused\"}"),
            Some(refused),
            "{text}"
        );
        std::fs::remove_file(&path).unwrap();
        lines.until("policies reloaded: 1 rules");
    }
    // Still in force after every fault: the marker's exec is alerted.
    assert!(Command::new(&marker).status().unwrap().success());
    assert_eq!(common::alerts(&out, "faults-marker", 1).len(), 1);

    // Written in two steps, 300 ms apart (the agent checks once a second and takes only what
    // two checks in a row saw): the first step alone is one valid policy, never applied.
    let second = dir.join("second-marker");
    let two = policies.join("two.yaml");
    let first_half = host("half-a", &marker);
    let whole = format!("{first_half}---\n{}", host("half-b", &second));
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&two).unwrap();
        f.write_all(first_half.as_bytes()).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        f.write_all(&whole.as_bytes()[first_half.len()..]).unwrap();
    }
    lines.until("policies reloaded: 3 rules");
    assert!(
        !lines.seen.contains("policies reloaded: 2 rules"),
        "a half-written file was applied:\n{}",
        lines.seen
    );
    let (_, text) = scrape::http_get(metrics, "/metrics");
    assert_eq!(
        scrape::series(&text, "armor_policy_reloads_total{outcome=\"applied\"}"),
        Some(4.0),
        "{text}"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    lines.until("stopped");
    assert!(child.wait().unwrap().success(), "{}", lines.seen);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 21: a host policy's syscall rule on a syscall the classic event programs do not trace
/// (`unshare`) reaches the agent's output as an Alert, through the in-kernel syscall filter the
/// agent sets from the rules (the host's filter), with nothing else enabled.
#[test]
fn a_host_syscall_rule_on_any_syscall_is_alerted_by_the_agent() {
    if !armor_testing::is_root() {
        println!("skipped: loading the event source needs root");
        return;
    }
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("armor-agent-syscalls-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    std::fs::write(
        dir.join("policies/unshare.yaml"),
        format!(
            "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata: \
             {{name: watch-unshare}}\nspec:\n  nodeSelector:\n    matchLabels: \
             {{kubernetes.io/hostname: {}}}\n  severity: 3\n  syscalls:\n    matchSyscalls:\n    \
             - syscall: [unshare]\n  action: Audit\n",
            host.trim()
        ),
    )
    .unwrap();
    let out = dir.join("out.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_armor-agent"))
        .arg("--policies")
        .arg(dir.join("policies"))
        .args(["--enforcer", "none", "--no-pin", "--output"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::new(child.stderr.take().unwrap());
    lines.until("armor-agent: ready");
    let start = Instant::now();
    let mut alert = None;
    while alert.is_none() && start.elapsed() < Duration::from_secs(20) {
        let st = Command::new("unshare")
            .args(["--uts", "true"])
            .status()
            .unwrap();
        assert!(st.success());
        std::thread::sleep(Duration::from_millis(300));
        alert = std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("\"PolicyName\":\"watch-unshare\""))
            .map(str::to_owned);
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    lines.until("stopped");
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let alert = alert.expect("no alert of the syscall rule");
    for field in [
        "\"Operation\":\"Syscall\"",
        "\"Data\":\"syscall=SYS_UNSHARE\"",
        "\"Type\":\"MatchedHostPolicy\"",
        "\"Action\":\"Audit\"",
        "\"Severity\":\"3\"",
    ] {
        assert!(alert.contains(field), "{field} missing: {alert}");
    }
}
