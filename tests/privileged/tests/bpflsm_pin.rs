//! Enforcement that outlives the enforcer (issue 20): BPF-LSM's programs and maps pinned in a
//! BPF file system stay attached when the enforcer (its process) ends, the next enforcer of the
//! same ABI adopts them without loading anything, one of another ABI detaches them only after
//! its own are attached and filled, and `uninstall` removes them. While an enforcer ends, is
//! replaced or upgraded, a process of the workload opens the protected file in a loop: not one
//! open passes. An enforcer killed with SIGKILL in the middle of applying leaves maps that the
//! next one adopts and cleans to exactly what it installed.
//!
//! Run with `scripts/vm-test --binary bpflsm_pin`; on a kernel without BPF-LSM the tests print
//! why they skip.
#![cfg(test)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use armor_core::enforcer::{Destination, Enforcer as _};
use armor_core::{CompiledPolicy, PolicySet, Posture, WorkloadKey};
use armor_enforce_bpflsm::{BpfLsm, Config, Pinning, uninstall};
use armor_privileged_tests::cgroup::Cgroup;
use armor_privileged_tests::guest;
use armor_privileged_tests::op::helper_path;

/// The files the policies protect (on the host's root: the workloads run there).
const DIR: &str = "/tmp/armor-pin-files";

fn rules(paths: &[&str]) -> Arc<armor_core::RuleSet> {
    let mut y = String::from(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: pin, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  file:\n    matchPaths:\n",
    );
    for p in paths {
        y.push_str(&format!("    - path: {DIR}/{p}\n"));
    }
    y.push_str("  action: Block\n");
    let set = PolicySet::parse(&y, "pin.yaml").unwrap();
    let policy = CompiledPolicy::build(&set).unwrap();
    let w = armor_core::Workload::Container(
        armor_core::Container::new("shop", "web").label("app", "web"),
    );
    policy.rule_set(&w, Posture::default())
}

fn apply(lsm: &BpfLsm, key: &WorkloadKey, paths: &[&str]) {
    let dest = Destination::new(key.clone()).with_root("/");
    let a = lsm.compile(&dest, &rules(paths)).unwrap();
    lsm.apply(&dest, a.as_ref()).unwrap();
}

/// Opens `DIR/name` read-only from inside `cg` (`None`: as a host process, outside every
/// workload's cgroup): the helper's last line.
fn open_as(cg: Option<&Cgroup>, name: &str) -> String {
    let mut cmd = Command::new(helper_path());
    if let Some(cg) = cg {
        cmd.arg("--cgroup").arg(cg.path());
    }
    let out = cmd
        .arg("open")
        .arg(format!("{DIR}/{name}"))
        .arg("rdonly")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_owned()
}

/// Opens `DIR/name` read-only from inside `cg`.
fn open_in(cg: &Cgroup, name: &str) -> String {
    open_as(Some(cg), name)
}

fn denied(line: &str) -> bool {
    line.starts_with("armor-op: errno 1 ")
}

/// Opens `DIR/name` from inside `cg`, 20 times per process, a process every 10 ms or so, until
/// stopped: counts the opens that passed and those tried.
struct Hammer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, usize)>,
}

impl Hammer {
    fn start(cg: &Cgroup, name: &str) -> Self {
        Self::start_in(Some(cg.path().to_path_buf()), name)
    }

    /// The same as a host process (outside every workload's cgroup).
    fn start_host(name: &str) -> Self {
        Self::start_in(None, name)
    }

    fn start_in(cg: Option<PathBuf>, name: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let file = format!("{DIR}/{name}");
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut passed, mut tried) = (0, 0);
            while !flag.load(Ordering::SeqCst) {
                let mut cmd = Command::new(helper_path());
                if let Some(cg) = &cg {
                    cmd.arg("--cgroup").arg(cg);
                }
                let out = cmd.args(["open-count", &file, "20"]).output().unwrap();
                let line = String::from_utf8_lossy(&out.stdout).into_owned();
                let opened: usize = line
                    .trim()
                    .strip_prefix("armor-op: opened ")
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("open-count said `{line}`"));
                passed += opened;
                tried += 20;
                // Paced: a hammer that never pauses starves the emulated guest's other vCPU
                // while the kernel patches its text for programs being attached, and the
                // guest reports a soft lockup (seen under TCG). 10 ms between bursts still
                // covers every gap of interest many times over.
                std::thread::sleep(Duration::from_millis(10));
            }
            (passed, tried)
        });
        Self { stop, thread }
    }

    fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// A pin root of this test's own in the guest's BPF file system, empty.
fn pin_root(tag: &str) -> PathBuf {
    let root = PathBuf::from(format!(
        "/sys/fs/bpf/armor-test-{tag}-{}",
        std::process::id()
    ));
    let _ = uninstall(&root);
    root
}

/// Loads `lsm`, or says why BPF-LSM is not here (outside the test kernel: skip; inside: fail).
fn load_or_skip(lsm: &BpfLsm) -> bool {
    match lsm.load() {
        Ok(()) => true,
        Err(e) => {
            let why = armor_core::diag::error_chain(&e);
            assert!(
                guest::current().is_none(),
                "BPF-LSM unsupported in the guest: {why}"
            );
            eprintln!("skipped: {why}");
            false
        }
    }
}

fn files() {
    fs::create_dir_all(DIR).unwrap();
    for f in ["secret", "other", "free"] {
        fs::write(Path::new(DIR).join(f), b"x\n").unwrap();
    }
}

/// The rule entries the enforcer counts and those the kernel maps hold agree, and the counts
/// of records and entries are what `records` installed workloads need.
fn consistent(lsm: &BpfLsm, records: usize) {
    let (k_records, k_slots, k_rules, k_dfas) = lsm.kernel_entries().unwrap();
    let cap = lsm.capacity();
    let used = |r: &str| cap.iter().find(|c| c.resource == r).unwrap().used as usize;
    assert_eq!(k_records, records, "kernel records");
    assert_eq!(used("workloads"), records, "{cap:?}");
    assert_eq!(k_slots, used("rule_table_slots"), "{cap:?}");
    assert_eq!(k_rules, used("rule_map_entries"), "{cap:?}");
    assert_eq!(k_dfas, used("glob_automata"), "{cap:?}");
    assert_eq!(k_slots + k_rules, lsm.used_entries());
}

#[test]
fn bpflsm_pinned_enforcement_outlives_the_enforcer_is_adopted_upgraded_and_uninstalled() {
    files();
    let root = pin_root("life");
    let config = Config::default();
    let first = BpfLsm::pinned(config, &root);
    let t = Instant::now();
    if !load_or_skip(&first) {
        return;
    }
    let verified = t.elapsed();
    let Pinning::Pinned {
        dir: first_dir,
        not_adopted: None,
    } = first.pinning()
    else {
        panic!("{:?}", first.pinning());
    };
    assert!(first_dir.join("complete").exists());
    assert!(first_dir.join("link_file_open").exists());
    let cg = Cgroup::create("pin-web").unwrap();
    let key = WorkloadKey::new("shop/web").with_cgroup(cg.id());
    apply(&first, &key, &["secret"]);
    assert!(denied(&open_in(&cg, "secret")));
    assert_eq!(open_in(&cg, "free"), "armor-op: ok");
    consistent(&first, 1);

    // The enforcer ends (its process would close every descriptor alike): the rules stay.
    let hammer = Hammer::start(&cg, "secret");
    std::thread::sleep(Duration::from_millis(300));
    drop(first);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        denied(&open_in(&cg, "secret")),
        "enforcement ended with the enforcer"
    );

    // The next enforcer of the same ABI adopts the set: nothing loaded, nothing verified.
    let second = BpfLsm::pinned(config, &root);
    let t = Instant::now();
    second.load().unwrap();
    let adopted = t.elapsed();
    println!("loaded and verified in {verified:.1?}; adopted in {adopted:.1?}");
    assert_eq!(
        second.pinning(),
        Pinning::Adopted {
            dir: first_dir.clone(),
            records: 1
        }
    );
    assert!(second.load_times().is_empty(), "adopting verified programs");
    // Until the workload is applied again, the earlier entries count and stay in force.
    consistent(&second, 1);
    assert!(denied(&open_in(&cg, "secret")));
    // Applied again with one more file: the earlier entries go, the new ones are all there.
    apply(&second, &key, &["secret", "other"]);
    assert!(denied(&open_in(&cg, "secret")));
    assert!(denied(&open_in(&cg, "other")));
    assert_eq!(open_in(&cg, "free"), "armor-op: ok");
    consistent(&second, 1);
    assert_eq!(
        second.sweep(std::slice::from_ref(&key)).unwrap(),
        Vec::<String>::new()
    );

    // An upgrade: another ABI (here a different capacity) loads its own programs while the
    // earlier set, whose enforcer is gone, stays attached; the sweep detaches it.
    drop(second);
    let mut bigger = config;
    bigger.max_workloads += 1;
    let third = BpfLsm::pinned(bigger, &root);
    third.load().unwrap();
    let Pinning::Pinned {
        dir: third_dir,
        not_adopted: None,
    } = third.pinning()
    else {
        panic!("{:?}", third.pinning());
    };
    assert_ne!(third_dir, first_dir);
    assert!(first_dir.exists(), "the earlier set stays until the sweep");
    assert!(
        denied(&open_in(&cg, "other")),
        "the earlier set still enforces"
    );
    apply(&third, &key, &["secret"]);
    let removed = third.sweep(std::slice::from_ref(&key)).unwrap();
    assert_eq!(
        removed,
        [format!(
            "the programs an earlier run pinned in {}",
            first_dir.display()
        )]
    );
    assert!(!first_dir.exists());
    std::thread::sleep(Duration::from_millis(300));
    let (passed, tried) = hammer.stop();
    println!(
        "opens of the protected file while enforcers ended, adopted and upgraded: {passed} of {tried} passed"
    );
    assert!(tried > 0);
    assert_eq!(passed, 0, "an open passed while the enforcers changed");
    // The earlier set is detached: only the third's rule (secret) is in force.
    assert!(denied(&open_in(&cg, "secret")));
    assert_eq!(open_in(&cg, "other"), "armor-op: ok");

    // A workload gone while no enforcer ran: its record is swept, the others stay.
    let gone = Cgroup::create("pin-gone").unwrap();
    let gone_key = WorkloadKey::new("shop/gone").with_cgroup(gone.id());
    apply(&third, &gone_key, &["free"]);
    assert!(denied(&open_in(&gone, "free")));
    drop(third);
    let fourth = BpfLsm::pinned(bigger, &root);
    fourth.load().unwrap();
    assert!(
        matches!(fourth.pinning(), Pinning::Adopted { records: 2, .. }),
        "{:?}",
        fourth.pinning()
    );
    apply(&fourth, &key, &["secret"]);
    consistent(&fourth, 2);
    let removed = fourth.sweep(std::slice::from_ref(&key)).unwrap();
    assert_eq!(
        removed,
        [format!(
            "the rules of cgroup {} of an earlier run",
            gone.id()
        )]
    );
    assert_eq!(open_in(&gone, "free"), "armor-op: ok");
    assert!(denied(&open_in(&cg, "secret")));
    consistent(&fourth, 1);

    // A workload the runtime stopped tracking without a remove (its stop event lost): the
    // next sweep removes its rules.
    let lost_key = WorkloadKey::new("shop/lost").with_cgroup(gone.id());
    apply(&fourth, &lost_key, &["free"]);
    assert!(denied(&open_in(&gone, "free")));
    let removed = fourth.sweep(std::slice::from_ref(&key)).unwrap();
    assert_eq!(
        removed,
        [format!("the rules of {lost_key}, no longer tracked")]
    );
    assert_eq!(open_in(&gone, "free"), "armor-op: ok");
    consistent(&fourth, 1);

    // Uninstalled: the pins go, and the programs with the last holder.
    let removed = uninstall(&root).unwrap();
    assert_eq!(removed, [third_dir]);
    assert!(!root.exists());
    assert!(
        denied(&open_in(&cg, "secret")),
        "held by the running enforcer"
    );
    drop(fourth);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        open_in(&cg, "secret"),
        "armor-op: ok",
        "still attached after uninstall"
    );
}

/// What the killed child applies, round after round: each round rewrites the rules of every
/// workload, so a SIGKILL lands in the middle of applies with entries half-written.
const CHILD_ENV: &str = "ARMOR_PIN_CHILD_ROOT";

/// The file the child writes once every workload has rules.
const KILL_MARKER: &str = "/tmp/armor-pin-kill.applied";

/// Not a test of its own: the child process of
/// [`bpflsm_an_enforcer_killed_while_applying_leaves_maps_the_next_one_cleans`], which runs it
/// with `--ignored` and the pin root in `ARMOR_PIN_CHILD_ROOT`.
#[test]
#[ignore = "run by bpflsm_an_enforcer_killed_while_applying_leaves_maps_the_next_one_cleans"]
fn pin_child_applies_until_killed() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let lsm = BpfLsm::pinned(Config::default(), &root);
    lsm.load().unwrap();
    let cgroups: Vec<u64> = std::env::var("ARMOR_PIN_CHILD_CGROUPS")
        .unwrap()
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect();
    let sets: [&[&str]; 2] = [&["secret", "other"], &["secret"]];
    println!("child ready");
    for round in 0usize.. {
        for (i, cg) in cgroups.iter().enumerate() {
            let key = WorkloadKey::new(format!("shop/web-{i}")).with_cgroup(*cg);
            apply(&lsm, &key, sets[(round + i) % 2]);
        }
        if round == 0 {
            // The parent kills once it sees this file.
            fs::write(KILL_MARKER, b"").unwrap();
        }
    }
}

#[test]
fn bpflsm_an_enforcer_killed_while_applying_leaves_maps_the_next_one_cleans() {
    files();
    let root = pin_root("kill");
    // Whether BPF-LSM works here, by the probe's trial load (nothing attached: attaching and
    // detaching are what the kernel's trampolines pay for under emulation).
    match BpfLsm::new(Config::default()).probe() {
        armor_core::enforcer::Support::Supported => {}
        other => {
            assert!(
                guest::current().is_none(),
                "BPF-LSM unsupported in the guest: {other:?}"
            );
            eprintln!("skipped: {other:?}");
            return;
        }
    }
    let cgs: Vec<Cgroup> = (0..4)
        .map(|i| Cgroup::create(&format!("pin-kill-{i}")).unwrap())
        .collect();
    let ids: Vec<String> = cgs.iter().map(|c| c.id().to_string()).collect();
    let marker = Path::new(KILL_MARKER);
    let _ = fs::remove_file(marker);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pin_child_applies_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, &root)
        .env("ARMOR_PIN_CHILD_CGROUPS", ids.join(","))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the child never applied");
        assert!(child.try_wait().unwrap().is_none(), "the child ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    // In the middle of a round of applies.
    std::thread::sleep(Duration::from_millis(137));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    let _ = fs::remove_file(marker);
    // Every workload keeps a complete ruleset: secret is denied in each.
    for cg in &cgs {
        assert!(denied(&open_in(cg, "secret")));
    }

    let next = BpfLsm::pinned(Config::default(), &root);
    next.load().unwrap();
    assert!(
        matches!(next.pinning(), Pinning::Adopted { records: 4, .. }),
        "{:?}",
        next.pinning()
    );
    let (records, slots, rules, dfas) = next.kernel_entries().unwrap();
    println!(
        "after SIGKILL: {records} records, {slots} table slots, {rules} map entries, {dfas} automata"
    );
    let keys: Vec<WorkloadKey> = cgs
        .iter()
        .enumerate()
        .map(|(i, c)| WorkloadKey::new(format!("shop/web-{i}")).with_cgroup(c.id()))
        .collect();
    for key in &keys {
        apply(&next, key, &["other"]);
    }
    // Half-written entries of the killed apply are gone with the earlier set: the kernel holds
    // exactly what this enforcer installed.
    consistent(&next, 4);
    for cg in &cgs {
        assert_eq!(open_in(cg, "secret"), "armor-op: ok");
        assert!(denied(&open_in(cg, "other")));
    }
    for key in &keys {
        next.remove(key).unwrap();
    }
    consistent(&next, 0);
    drop(next);
    uninstall(&root).unwrap();
}

/// `armor-agent` of this build (cargo builds it with the workspace's tests, beside them).
fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("armor-agent");
    assert!(
        bin.exists(),
        "{} missing: build the workspace's tests (cargo test --workspace --no-run)",
        bin.display()
    );
    bin
}

/// An `armor-agent` process and its log lines.
struct Agent {
    child: std::process::Child,
    lines: armor_testing::lines::Lines,
}

impl Agent {
    /// Starts the agent on `policies`, BPF-LSM pinned under `root`, and waits for `ready:`.
    fn start(policies: &Path, root: &Path) -> Self {
        let mut child = Command::new(agent_binary())
            .arg("--policies")
            .arg(policies)
            .args(["--enforcer", "bpflsm", "--output", "/dev/null"])
            .arg("--bpf-pin-dir")
            .arg(root)
            .arg("--apparmor-dir")
            .arg(policies.join("../apparmor"))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = armor_testing::lines::Lines::new(child.stderr.take().unwrap());
        lines.timeout = Duration::from_secs(300);
        let mut agent = Self { child, lines };
        agent.until("ready:");
        agent
    }

    /// The first log line containing `part`, waiting for it (5 minutes at most) when none
    /// came yet.
    fn until(&mut self, part: &str) -> String {
        match self.lines.seen.lines().find(|l| l.contains(part)) {
            Some(l) => l.to_owned(),
            None => self.lines.until(part),
        }
    }

    /// Whether a line seen so far contains `part`.
    fn said(&self, part: &str) -> bool {
        self.lines.seen.contains(part)
    }

    fn signal(mut self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap()),
            signal,
        )
        .unwrap();
        self.child.wait().unwrap();
    }
}

const HOST_POLICY: &str = "apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata: {name: host-pin}
spec:
  nodeSelector: {matchLabels: {}}
  file:
    matchPaths: [{path: /tmp/armor-pin-files/host-secret}]
  action: Block
";

/// Opens `DIR/host-secret` as a host process (outside every workload's cgroup).
fn host_open() -> String {
    open_as(None, "host-secret")
}

/// The agent, end to end: an earlier version's program set (another ABI) enforces the host's
/// rule when the agent starts; the agent loads its own, applies, and only then detaches the
/// earlier set; SIGKILL ends the agent, not enforcement; the next agent adopts its pins
/// without loading; SIGTERM keeps enforcing; `--uninstall` removes it. A host process opens the
/// protected file in a loop from the first set to the last agent: not one open passes.
#[test]
fn bpflsm_the_agent_survives_sigkill_adopts_its_pins_and_upgrades_without_a_window() {
    files();
    fs::write(Path::new(DIR).join("host-secret"), b"x\n").unwrap();
    let root = pin_root("agent");
    let work = PathBuf::from(format!("/tmp/armor-pin-agent-{}", std::process::id()));
    let policies = work.join("policies");
    fs::create_dir_all(&policies).unwrap();
    fs::write(policies.join("host.yaml"), HOST_POLICY).unwrap();

    // An earlier version's set: another ABI, the same host rule, its enforcer gone.
    let mut earlier = Config::default();
    earlier.max_workloads += 1;
    let old = BpfLsm::pinned(earlier, &root);
    if !load_or_skip(&old) {
        return;
    }
    let Pinning::Pinned { dir: old_dir, .. } = old.pinning() else {
        panic!("{:?}", old.pinning());
    };
    let set = PolicySet::parse(HOST_POLICY, "host.yaml").unwrap();
    let policy = CompiledPolicy::build(&set).unwrap();
    let host = armor_core::Workload::Host(armor_core::Host::new("guest"));
    let dest = Destination::new(WorkloadKey::new("host")).with_root("/");
    let a = old
        .compile(&dest, &policy.rule_set(&host, Posture::default()))
        .unwrap();
    old.apply(&dest, a.as_ref()).unwrap();
    drop(old);
    assert!(denied(&host_open()), "{}", host_open());
    let hammer = Hammer::start_host("host-secret");

    // The new version: its own programs, then the earlier set detached.
    let mut agent = Agent::start(&policies, &root);
    let enforcing = agent.until("enforcing with BPFLSM");
    assert!(enforcing.contains("pinned in"), "{enforcing}");
    assert!(
        agent.said(&format!(
            "removed stale BPFLSM state: the programs an earlier run pinned in {}",
            old_dir.display()
        )),
        "{}",
        agent.lines.seen
    );
    assert!(!old_dir.exists());
    assert!(denied(&host_open()));

    // SIGKILL: the agent ends, enforcement does not; the next agent adopts.
    agent.signal(nix::sys::signal::Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(500));
    assert!(denied(&host_open()), "enforcement ended with the agent");
    let t = Instant::now();
    let mut agent = Agent::start(&policies, &root);
    let restart = t.elapsed();
    let enforcing = agent.until("enforcing with BPFLSM");
    assert!(
        enforcing.contains("adopted the programs pinned in"),
        "{enforcing}"
    );
    println!("the restarted agent was ready in {restart:.1?} (adopted, nothing loaded)");

    // SIGTERM: a clean stop keeps enforcing too.
    agent.signal(nix::sys::signal::Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    let (passed, tried) = hammer.stop();
    println!(
        "host opens of the protected file through upgrade, SIGKILL, restart, SIGTERM: {passed} of {tried} passed"
    );
    assert!(tried > 0);
    assert_eq!(passed, 0);
    assert!(denied(&host_open()));

    // Uninstalled: nothing holds the programs any more.
    let out = Command::new(agent_binary())
        .arg("--uninstall")
        .arg("--bpf-pin-dir")
        .arg(&root)
        .arg("--apparmor-dir")
        .arg(work.join("apparmor"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("uninstalled: 1 BPF-LSM program sets"),
        "{said}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(host_open(), "armor-op: ok");
    let _ = fs::remove_dir_all(&work);
}
