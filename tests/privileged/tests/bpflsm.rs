//! armor-enforce-bpflsm live in the test kernel: the shared corpus performed for real inside a
//! workload cgroup and a container-like root (private mount namespace, `pivot_root`), with a
//! distinct static executable at every path the case names, compared with the reference engine.
//!
//! Run with `scripts/vm-test -- bpflsm`; on a kernel without BPF-LSM the tests print why they
//! skip.
#![cfg(test)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use armor_core::enforcer::{
    AlertSink, Applied, ApplyError, Destination, Enforcer, EnforcerAlert, Start, Support,
};
use armor_core::event::Category;
use armor_core::{Action, CompiledPolicy, PolicySet, Posture, Verdict, WorkloadKey};
use armor_enforce_bpflsm::{BpfArtifact, BpfLsm, Config, compile};
use armor_privileged_tests::cgroup::{Cgroup, cgroup2_root};
use armor_privileged_tests::guest;
use armor_privileged_tests::live::{Plan, build_root, plan};
use armor_privileged_tests::op::helper_path;
use armor_testing::corpus::{self, Case};

/// Applies `a` (compiled without a root: no (device, inode) entries) to `key`, in force at once.
fn put(lsm: &BpfLsm, key: &WorkloadKey, a: &BpfArtifact) -> Result<Applied, ApplyError> {
    lsm.apply(&Destination::new(key.clone()), a)
}

/// Compiles `rules` through the enforcer for `key` with its files below `root` (so exact paths
/// and directories also get (device, inode) entries), in force from the first exec when
/// `first_exec`, and applies them.
fn install(
    lsm: &BpfLsm,
    key: &WorkloadKey,
    rules: &armor_core::RuleSet,
    root: &std::path::Path,
    first_exec: bool,
) {
    let mut dest = Destination::new(key.clone()).with_root(root);
    if first_exec {
        dest = dest.starting(Start::FirstExec);
    }
    let a = lsm.compile(&dest, rules).unwrap();
    lsm.apply(&dest, a.as_ref()).unwrap();
}

#[derive(Default)]
struct Sink(Mutex<Vec<EnforcerAlert>>);

impl AlertSink for Sink {
    fn alert(&self, alert: EnforcerAlert) {
        self.0.lock().unwrap().push(alert);
    }
}

impl Sink {
    fn take(&self) -> Vec<EnforcerAlert> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The enforcer every test of this binary uses: probed and loaded once per test process, as the
/// agent loads it once per boot. Verifying the 16 programs costs about a minute of 6.1 under
/// TCG, and the kernel does not change between the tests; each test applies and removes its own
/// workloads (and may change the alert rate), so what one test installs never reaches the next.
/// `Err` holds the probe's reason when the kernel refuses BPF-LSM.
fn shared() -> &'static Result<BpfLsm, String> {
    static SHARED: std::sync::OnceLock<Result<BpfLsm, String>> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let mut config = Config::default();
        config.alerts_per_sec = 0;
        let lsm = BpfLsm::new(config);
        let t = Instant::now();
        match lsm.probe() {
            Support::Supported => {}
            Support::Unsupported { reason } => return Err(reason),
            other => panic!("unexpected probe result {other:?}"),
        }
        let probe = t.elapsed();
        let t = Instant::now();
        lsm.load().unwrap();
        // The load after a successful probe only attaches what the probe verified.
        println!(
            "enforcer probed (every program verified) in {probe:.1?}, then loaded (attached) in {:.1?}",
            t.elapsed()
        );
        let times: Vec<String> = lsm
            .load_times()
            .iter()
            .map(|(hook, d)| format!("{hook} {:.1}", d.as_secs_f64()))
            .collect();
        println!("each program's load (verification), seconds: {}", times.join(", "));
        Ok(lsm)
    })
}

/// The shared enforcer, held by one test at a time: the tests of this binary may run on several
/// threads (`cargo test` on a machine with BPF-LSM), and each expects only its own workloads.
struct Lsm {
    _turn: std::sync::MutexGuard<'static, ()>,
    lsm: &'static BpfLsm,
}

impl std::ops::Deref for Lsm {
    type Target = BpfLsm;

    fn deref(&self) -> &BpfLsm {
        self.lsm
    }
}

/// The shared enforcer with nothing installed and no alert limit, or `None` (after saying why)
/// outside the test kernel when the kernel refuses BPF-LSM; inside it, the refusal fails the
/// test.
fn enforcer() -> Option<Lsm> {
    static TURN: Mutex<()> = Mutex::new(());
    let turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let lsm = match shared() {
        Ok(lsm) => lsm,
        Err(reason) => {
            assert!(
                guest::current().is_none(),
                "BPF-LSM unsupported in the guest: {reason}"
            );
            eprintln!("skipped: {reason}");
            return None;
        }
    };
    // A test that failed half-way leaves its workloads behind: they go before the next test.
    for key in lsm.installed() {
        eprintln!("removing `{key}`, left installed by an earlier test");
        lsm.remove(&key).unwrap();
    }
    lsm.set_alerts_per_sec(0);
    Some(Lsm { _turn: turn, lsm })
}

/// The harness runs in its own managed cgroup without rules, so host rules never touch it.
struct Harness {
    cgroup: Cgroup,
    key: WorkloadKey,
}

impl Harness {
    fn enter(lsm: &BpfLsm) -> Self {
        let cgroup = Cgroup::create("harness").unwrap();
        fs::write(
            cgroup.path().join("cgroup.procs"),
            std::process::id().to_string(),
        )
        .unwrap();
        let key = WorkloadKey::new("harness").with_cgroup(cgroup.id());
        let empty = PolicySet::new();
        let policy = CompiledPolicy::build(&empty).unwrap();
        let w = armor_core::Workload::Container(armor_core::Container::new("armor", "harness"));
        let a = compile("harness", &policy.rule_set(&w, Posture::default()));
        put(lsm, &key, &a).unwrap();
        Self { cgroup, key }
    }

    fn leave(self, lsm: &BpfLsm) {
        lsm.remove(&self.key).unwrap();
        fs::write(
            cgroup2_root().unwrap().join("cgroup.procs"),
            std::process::id().to_string(),
        )
        .unwrap();
        drop(self.cgroup);
    }
}

/// The engine's decision of a case and the policy name it reports.
fn engine(
    case: &Case,
) -> (
    CompiledPolicy,
    armor_core::Workload,
    Posture,
    Verdict,
    Option<String>,
) {
    let p = case.prepare().unwrap();
    let d = p.decide();
    let (verdict, name) = (d.verdict, d.alert().map(|a| a.policy_name.to_owned()));
    (
        p.policy.clone(),
        p.workload.clone(),
        p.posture,
        verdict,
        name,
    )
}

fn category_of(kind: &str) -> Option<Category> {
    match kind {
        "process" => Some(Category::Process),
        "file" => Some(Category::File),
        "network" => Some(Category::Network),
        "capabilities" => Some(Category::Capabilities),
        // Anonymous memory made executable: a File operation (anonymousMapExec).
        "memory" => Some(Category::File),
        _ => None,
    }
}

struct LiveResult {
    name: String,
    diffs: Vec<String>,
}

fn run_case(lsm: &BpfLsm, sink: &Sink, case: &Case, plan: &Plan, idx: usize) -> LiveResult {
    let (policy, w, posture, verdict, policy_name) = engine(case);
    let rs = policy.rule_set(&w, posture);
    let artifact = compile(&case.name, &rs);
    let cg = Cgroup::create("case").unwrap();
    let key = if w.is_host() {
        WorkloadKey::new("host")
    } else {
        WorkloadKey::new(case.name.clone()).with_cgroup(cg.id())
    };
    let root = PathBuf::from(format!("/tmp/armor-live/{idx}"));
    build_root(&root, plan).unwrap();
    put(lsm, &key, &artifact).unwrap();
    sink.take();
    // A case with presets runs in a session of its own: no controlling terminal unless the
    // case asks for one (the `exec` preset), whatever the test runner has.
    let presets = policy
        .rules()
        .iter()
        .any(|r| matches!(r.target, armor_core::Target::Preset(_)));
    let mut cmd = if presets {
        let mut c = Command::new("setsid");
        c.arg("--wait").arg(helper_path());
        c
    } else {
        Command::new(helper_path())
    };
    cmd.arg("--cgroup-procs")
        .arg(cg.path().join("cgroup.procs"))
        .arg("--root")
        .arg(&root);
    if plan.uid != 0 {
        cmd.arg("--uid").arg(plan.uid.to_string());
    }
    cmd.arg("--exe").arg(&plan.source).args(&plan.args);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut diffs = Vec::new();
    let last = stdout.lines().last().unwrap_or("").to_owned();
    if out.status.code() == Some(254) {
        diffs.push(format!("setup failed: {stderr}"));
    }
    let blocked = last.starts_with("armor-op: errno 1 ");
    let want_block = verdict == Verdict::Block;
    if blocked != want_block {
        diffs.push(format!(
            "verdict: engine {verdict}, live `{last}` (stderr `{}`)",
            stderr.trim()
        ));
    }
    // The alert for this operation, if any.
    let cat = category_of(&case.operation.kind).unwrap();
    let cg_id = if w.is_host() { None } else { Some(cg.id()) };
    let resource = case.operation.path.clone().unwrap_or_default();
    // The preset cases name a process, a memfd or memory the live run makes its own way: their
    // alerts are matched by workload and category.
    let o = &case.operation;
    let own_resource =
        o.fileless || o.other_process || o.kind == "memory" || resource.starts_with("/proc/");
    let matches = |a: &EnforcerAlert| {
        a.operation == cat
            && a.workload.as_ref().and_then(|k| k.cgroup_id) == cg_id
            && (!matches!(cat, Category::Process | Category::File)
                || own_resource
                || a.resource == resource.trim_end_matches('/'))
    };
    let deadline = Instant::now()
        + if verdict == Verdict::Allow {
            Duration::from_millis(30)
        } else {
            Duration::from_millis(500)
        };
    let mut found: Option<EnforcerAlert> = None;
    let mut seen = Vec::new();
    while Instant::now() < deadline && found.is_none() {
        for a in sink.take() {
            if found.is_none() && matches(&a) {
                found = Some(a.clone());
            }
            seen.push(a);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    match (&policy_name, &found) {
        (None, None) => {}
        (Some(want), Some(a)) => {
            let have = a
                .rule
                .and_then(|r| policy.rules().get(r as usize))
                .map_or(armor_core::DEFAULT_POSTURE.to_owned(), |r| {
                    r.policy.name.clone()
                });
            if &have != want {
                diffs.push(format!("alert policy: engine {want}, live {have}"));
            }
            let action = if verdict == Verdict::Block {
                Action::Block
            } else {
                Action::Audit
            };
            if a.action != action {
                diffs.push(format!("alert action: engine {action}, live {}", a.action));
            }
        }
        (Some(want), None) => diffs.push(format!(
            "alert: engine reports {want}, no live alert (saw {} others: {:?})",
            seen.len(),
            seen.iter()
                .map(|a| (&a.operation, &a.resource))
                .collect::<Vec<_>>()
        )),
        (None, Some(a)) => diffs.push(format!(
            "alert: engine reports none, live {} {} rule {:?}",
            a.action, a.resource, a.rule
        )),
    }
    lsm.remove(&key).unwrap();
    drop(cg);
    let _ = fs::remove_dir_all(&root);
    LiveResult {
        name: case.name.clone(),
        diffs,
    }
}

/// Which cases run live and why the others do not (offline: planning and compiling only).
fn live_plan() -> (usize, usize, BTreeMap<String, String>) {
    let cases = corpus::load_dir(&corpus::corpus_dir()).unwrap();
    let mut not_live = BTreeMap::new();
    let mut live = 0;
    for case in &cases {
        match plan(case) {
            Err(why) => {
                not_live.insert(case.name.clone(), why);
            }
            Ok(_) => {
                let (policy, w, posture, _, _) = engine(case);
                let a = compile(&case.name, &policy.rule_set(&w, posture));
                let cat = category_of(&case.operation.kind);
                let blocked = a
                    .unenforceable_rules()
                    .iter()
                    .find(|u| policy.rules().get(u.rule as usize).map(|r| r.category) == cat);
                if let Some(u) = blocked {
                    not_live.insert(case.name.clone(), u.reason.clone());
                } else if let Some(why) = overlapping(case, &policy) {
                    not_live.insert(case.name.clone(), why);
                } else {
                    live += 1;
                }
            }
        }
    }
    (cases.len(), live, not_live)
}

/// The floor: at least 90 % of the corpus runs live (the glob cases included: their
/// automata are in the kernel maps). Cases of files outside the workload's tree are performed by
/// the bypass suite's routes instead, and are not counted.
#[test]
fn at_least_90_percent_of_the_corpus_runs_live() {
    let (total, live, not_live) = live_plan();
    let by_routes = not_live
        .values()
        .filter(|why| why.contains("performed by the bypass suite's routes"))
        .count();
    assert!(
        live * 10 >= (total - by_routes) * 9,
        "{live} of {total} run live ({by_routes} by the bypass suite's routes); not live: \
         {not_live:#?}"
    );
}

/// One real action that is two operations, where the case's rules decide the other one: a raw
/// socket is a Network operation and a CAP_NET_RAW use.
fn overlapping(case: &Case, policy: &CompiledPolicy) -> Option<String> {
    let o = &case.operation;
    let has = |c: Category| policy.rules().iter().any(|r| r.category == c);
    let raw = o.sock_type.as_deref() == Some("SOCK_RAW");
    let cap_raw = o
        .capability
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("CAP_NET_RAW"));
    if o.kind == "network" && raw && has(Category::Capabilities) {
        return Some(
            "a raw socket is also a CAP_NET_RAW use, which the case's capability rules decide"
                .into(),
        );
    }
    if o.kind == "capabilities" && cap_raw && has(Category::Network) {
        return Some(
            "using CAP_NET_RAW live means creating a raw socket, which the case's network \
             rules decide"
                .into(),
        );
    }
    None
}

#[test]
fn bpflsm_corpus_live_matches_the_engine() {
    let Some(lsm) = enforcer() else { return };
    let sink = Arc::new(Sink::default());
    lsm.set_alert_sink(sink.clone());
    let harness = Harness::enter(&lsm);
    let cases = corpus::load_dir(&corpus::corpus_dir()).unwrap();
    let mut not_live: BTreeMap<String, String> = BTreeMap::new();
    let mut results = Vec::new();
    for (idx, case) in cases.iter().enumerate() {
        let plan = match plan(case) {
            Ok(p) => p,
            Err(why) => {
                not_live.insert(case.name.clone(), why);
                continue;
            }
        };
        // Rules the kernel does not enforce in the op's category cannot be judged live.
        let (policy, w, posture, _, _) = engine(case);
        if let Some(why) = overlapping(case, &policy) {
            not_live.insert(case.name.clone(), why);
            continue;
        }
        let a = compile(&case.name, &policy.rule_set(&w, posture));
        let cat = category_of(&case.operation.kind);
        let skipped: Vec<String> = a
            .unenforceable_rules()
            .iter()
            .filter(|u| policy.rules().get(u.rule as usize).map(|r| r.category) == cat)
            .map(|u| u.reason.clone())
            .collect();
        if let Some(why) = skipped.first() {
            not_live.insert(case.name.clone(), format!("not enforced in kernel: {why}"));
            continue;
        }
        results.push(run_case(&lsm, &sink, case, &plan, idx));
    }
    harness.leave(&lsm);
    let failed: Vec<&LiveResult> = results.iter().filter(|r| !r.diffs.is_empty()).collect();
    let live = results.len();
    println!(
        "live corpus: {live} of {} cases run live, {} agree with the engine, {} differ, {} not live",
        cases.len(),
        live - failed.len(),
        failed.len(),
        not_live.len()
    );
    for (name, why) in &not_live {
        println!("  not live {name}: {why}");
    }
    for r in &failed {
        println!("  DIFF {}: {}", r.name, r.diffs.join("; "));
    }
    let counters = lsm.counters().unwrap();
    println!("counters: {counters:?}");
    assert!(
        failed.is_empty(),
        "{} live cases differ from the engine",
        failed.len()
    );
}

/// Runs armor-op as `exe` inside `root` and the cgroup `cg`; returns the report line.
fn run_in(root: &Path, cg: &Cgroup, exe: &str, args: &[&str]) -> String {
    run_in_cgroup(root, cg.path(), exe, args)
}

/// [`run_in`] joining the cgroup at directory `cgroup`.
fn run_in_cgroup(root: &Path, cgroup: &Path, exe: &str, args: &[&str]) -> String {
    let out = Command::new(helper_path())
        .arg("--cgroup-procs")
        .arg(cgroup.join("cgroup.procs"))
        .arg("--root")
        .arg(root)
        .arg("--exe")
        .arg(exe)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(
        out.status.code(),
        Some(254),
        "armor-op setup failed: {stderr}"
    );
    stdout.lines().last().unwrap_or("").to_owned()
}

/// The actor in `root` receives an fd of `file` (opened by this process, outside the workload
/// and its mount namespace) over a unix socket and reads from it.
fn scm_read(root: &Path, cg: &Cgroup, exe: &str, file: &Path) -> String {
    use std::os::fd::AsRawFd as _;
    let sock = root.join("tmp/armor-scm.sock");
    let _ = fs::remove_file(&sock);
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let file = fs::File::open(file).unwrap();
    listener.set_nonblocking(true).unwrap();
    let sender = std::thread::spawn(move || {
        // The actor may fail before it connects: give up after a while instead of hanging.
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => {
                    eprintln!("scm_read: nobody connected: {e}");
                    return;
                }
            }
        };
        stream.set_nonblocking(false).unwrap();
        let fds = [file.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        let iov = [std::io::IoSlice::new(b"f")];
        nix::sys::socket::sendmsg::<()>(
            stream.as_raw_fd(),
            &iov,
            &cmsg,
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .unwrap();
    });
    let line = run_in(root, cg, exe, &["scm-read", "/tmp/armor-scm.sock"]);
    sender.join().unwrap();
    let _ = fs::remove_file(&sock);
    line
}

/// The rules of container `shop/web` (label `app: web`) under the policies `yaml` and
/// `posture`.
fn web_rules(yaml: &str, posture: Posture) -> std::sync::Arc<armor_core::RuleSet> {
    let set = PolicySet::parse(yaml, "policy.yaml").unwrap();
    let policy = CompiledPolicy::build(&set).unwrap();
    let w = armor_core::Workload::Container(
        armor_core::Container::new("shop", "web").label("app", "web"),
    );
    policy.rule_set(&w, posture)
}

/// Workload `shop/web` applied in a fresh bypass root (without its bind mounts) and a cgroup of
/// its own.
struct RootedWorkload {
    root: PathBuf,
    cg: Cgroup,
    key: WorkloadKey,
}

impl RootedWorkload {
    /// The rules of `yaml` under `posture`, in root `/tmp/armor-<tag>` and cgroup `tag`.
    fn apply(lsm: &BpfLsm, yaml: &str, posture: Posture, tag: &str) -> Self {
        let root = PathBuf::from(format!("/tmp/armor-{tag}"));
        bypass_root(&root);
        for m in ["tmp/bshadow", "tmp/bsecret"] {
            let _ = Command::new("umount").arg(root.join(m)).status();
        }
        let cg = Cgroup::create(tag).unwrap();
        let key = WorkloadKey::new("shop/web").with_cgroup(cg.id());
        install(lsm, &key, &web_rules(yaml, posture), &root, false);
        Self { root, cg, key }
    }

    /// Removes the workload's rules, its cgroup and its root.
    fn remove(self, lsm: &BpfLsm) {
        lsm.remove(&self.key).unwrap();
        drop(self.cg);
        let _ = fs::remove_dir_all(&self.root);
    }
}

const BYPASS_POLICY: &str = "
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: bypass, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  process:
    matchPaths:
    - path: /usr/bin/blocked
  file:
    matchPaths:
    - path: /etc/shadow
    - path: /long/twelve-bytes/a-twenty-byte-name-x/forty-byte-component-name-for-the-hash-x/lllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.conf
    matchDirectories:
    - dir: /deep/
      recursive: true
    - dir: /secret/
      recursive: true
  action: Block
";

/// The directory of the bypass policy's file with long names: components of 12, 20 and 40 bytes
/// (the kernel hashes a name of up to 24 bytes without a loop and a longer one through a loop).
const LONG_DIR: &str =
    "/long/twelve-bytes/a-twenty-byte-name-x/forty-byte-component-name-for-the-hash-x";

/// That file's own name: 100 bytes.
fn long_name() -> String {
    format!("{}.conf", "l".repeat(95))
}

/// A container-like root for the bypass suite: the protected files, a long path, symlinks.
fn bypass_root(root: &Path) -> String {
    let _ = fs::remove_dir_all(root);
    for d in ["usr/bin", "etc", "tmp", "secret", "proc", "ok"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for exe in ["usr/bin/blocked", "usr/bin/ok", "usr/bin/actor"] {
        fs::copy(helper_path(), root.join(exe)).unwrap();
        fs::set_permissions(root.join(exe), fs::Permissions::from_mode(0o755)).unwrap();
    }
    for f in ["etc/shadow", "etc/hostname", "secret/data"] {
        fs::write(root.join(f), b"x\n").unwrap();
    }
    std::os::unix::fs::symlink("/usr/bin/blocked", root.join("lnk-blocked")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", root.join("lnk-shadow")).unwrap();
    fs::hard_link(root.join("etc/shadow"), root.join("hl-shadow")).unwrap();
    // Bind mounts of a protected file and of a protected directory, inside the root.
    fs::write(root.join("tmp/bshadow"), b"").unwrap();
    fs::create_dir_all(root.join("tmp/bsecret")).unwrap();
    for (src, dst) in [("etc/shadow", "tmp/bshadow"), ("secret", "tmp/bsecret")] {
        let st = Command::new("mount")
            .arg("--bind")
            .arg(root.join(src))
            .arg(root.join(dst))
            .status()
            .unwrap();
        assert!(st.success(), "mount --bind {src}");
    }
    // 45 components of 50 bytes: deeper than 40 components and longer than 2,000 bytes.
    let mut deep = String::from("/deep");
    let mut okdeep = String::from("/ok");
    for i in 0..45 {
        let c = format!("/{i:02}{}", "d".repeat(48));
        deep.push_str(&c);
        okdeep.push_str(&c);
    }
    fs::create_dir_all(root.join(deep.trim_start_matches('/'))).unwrap();
    fs::create_dir_all(root.join(okdeep.trim_start_matches('/'))).unwrap();
    fs::write(root.join(deep.trim_start_matches('/')).join("f"), b"x\n").unwrap();
    fs::write(root.join(okdeep.trim_start_matches('/')).join("f"), b"x\n").unwrap();
    assert!(deep.len() > 2000 && deep.matches('/').count() > 40);
    deep
}

#[test]
fn bpflsm_bypass_suite() {
    let Some(lsm) = enforcer() else { return };
    let harness = Harness::enter(&lsm);
    let rules = web_rules(BYPASS_POLICY, Posture::default());
    let mut results = Vec::new();
    let mut not_applicable = Vec::new();
    let mut check = |what: &str, line: String, want_block: bool| {
        let blocked = line.starts_with("armor-op: errno 1 ");
        let ok = blocked == want_block
            && (blocked || line == "armor-op: ok" || line.starts_with("armor-op: errno "));
        results.push(format!(
            "{} {what}: `{line}` (want {})",
            if ok { "ok  " } else { "FAIL" },
            if want_block { "EPERM" } else { "not EPERM" }
        ));
        ok
    };
    // The same suite on the guest's overlayfs and on a fresh tmpfs.
    let tmpfs_dir = PathBuf::from("/tmp/armor-bypass-tmpfs");
    fs::create_dir_all(&tmpfs_dir).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&tmpfs_dir)
        .status()
        .unwrap();
    assert!(st.success());
    let before = lsm.counters().unwrap();
    for (fsname, root) in [
        ("overlayfs", PathBuf::from("/tmp/armor-bypass")),
        ("tmpfs", tmpfs_dir.join("root")),
    ] {
        let deep = bypass_root(&root);
        let okdeep = deep.replacen("/deep", "/ok", 1);
        let cg = Cgroup::create("bypass").unwrap();
        let key = WorkloadKey::new("shop/web").with_cgroup(cg.id());
        install(&lsm, &key, &rules, &root, false);
        let actor = "/usr/bin/actor";
        let mut run = |what: &str, args: &[&str], want: bool| {
            let line = run_in(&root, &cg, actor, args);
            check(&format!("[{fsname}] {what}"), line, want);
        };
        run(
            "exec of the blocked binary",
            &["exec", "/usr/bin/blocked", "ok"],
            true,
        );
        run(
            "exec of another binary",
            &["exec", "/usr/bin/ok", "ok"],
            false,
        );
        run(
            "exec through a symlink",
            &["exec", "/lnk-blocked", "ok"],
            true,
        );
        run(
            "open through a symlink",
            &["open", "/lnk-shadow", "rdonly"],
            true,
        );
        run(
            "relative path with ..",
            &["open", "tmp/../etc/shadow", "rdonly"],
            true,
        );
        run(
            "open of another file",
            &["open", "/etc/hostname", "rdonly"],
            false,
        );
        run(
            "chroot /etc then /shadow",
            &["chroot-open", "/etc", "/shadow", "rdonly"],
            true,
        );
        run(
            "deep path (45 components, >2000 bytes)",
            &["open", &deep, "rdonly"],
            true,
        );
        let deep_f = format!("{deep}/f");
        run(
            "file below the deep path",
            &["open", &deep_f, "rdonly"],
            true,
        );
        let okdeep_f = format!("{okdeep}/f");
        run(
            "unprotected deep path",
            &["open", &okdeep_f, "rdonly"],
            false,
        );
        // Created after `apply`: no (device, inode) entry names these files, only the path
        // hash can match. The neighbours differ from the protected name in its first byte and
        // in its last (the masked tail word).
        let long_dir = root.join(LONG_DIR.trim_start_matches('/'));
        fs::create_dir_all(&long_dir).unwrap();
        let name = long_name();
        let first = format!("m{}", &name[1..]);
        let last = format!("{}g", &name[..name.len() - 1]);
        for n in [&name, &first, &last] {
            fs::write(long_dir.join(n), b"x\n").unwrap();
        }
        run(
            "exact path with names of 12, 20, 40 and 100 bytes",
            &["open", &format!("{LONG_DIR}/{name}"), "rdonly"],
            true,
        );
        run(
            "its neighbour differing in the first byte",
            &["open", &format!("{LONG_DIR}/{first}"), "rdonly"],
            false,
        );
        run(
            "its neighbour differing in the last byte",
            &["open", &format!("{LONG_DIR}/{last}"), "rdonly"],
            false,
        );
        run(
            "fexecve/execveat of an fd",
            &["fexec", "/usr/bin/blocked", "ok"],
            true,
        );
        run(
            "open through /proc/self/fd",
            &["procfd-open", "/etc/shadow", "rdonly"],
            true,
        );
        run(
            "rename of the protected file",
            &["rename", "/etc/shadow", "/tmp/s"],
            true,
        );
        run(
            "unlink of the protected file",
            &["unlink", "/etc/shadow"],
            true,
        );
        run(
            "truncate of the protected file",
            &["truncate", "/etc/shadow"],
            true,
        );
        run(
            "chmod of the protected file",
            &["chmod", "/etc/shadow"],
            true,
        );
        run(
            "write into a protected directory",
            &["open", "/secret/new", "wronly,creat"],
            true,
        );
        run(
            "hardlink to the protected file",
            &["open", "/hl-shadow", "rdonly"],
            true,
        );
        run(
            "bind mount of the protected file",
            &["open", "/tmp/bshadow", "rdonly"],
            true,
        );
        let bound = "/tmp/bsecret/data";
        run(
            "bind mount of a protected directory",
            &["open", bound, "rdonly"],
            true,
        );
        run(
            "unlink of a hardlink to it",
            &["unlink", "/hl-shadow"],
            true,
        );
        // Issue 16, finding 9: a loader maps the blocked binary's code instead of executing
        // it (`ld.so /usr/bin/blocked`).
        run(
            "mmap PROT_EXEC of the blocked binary (ld.so's route)",
            &["map-exec", "/usr/bin/blocked"],
            true,
        );
        run(
            "mprotect PROT_EXEC of a mapping of it",
            &["mprotect-exec", "/usr/bin/blocked"],
            true,
        );
        run(
            "mmap PROT_EXEC of another binary",
            &["map-exec", "/usr/bin/ok"],
            false,
        );
        run(
            "mprotect PROT_EXEC of another binary",
            &["mprotect-exec", "/usr/bin/ok"],
            false,
        );
        // Issue 16, finding 2: files outside the caller's mount-namespace tree are decided by
        // their (device, inode); the kernel's own objects are not files.
        run(
            "detached tree (open_tree clone in a user namespace)",
            &["tree-open", "/etc", "shadow"],
            true,
        );
        run(
            "detached tree of a protected directory",
            &["tree-open", "/secret", "data"],
            true,
        );
        run(
            "detached tree, an unprotected file",
            &["tree-open", "/etc", "hostname"],
            false,
        );
        run(
            "another mount namespace's file through /proc/PID/root",
            &["procroot-open", "/etc/shadow"],
            true,
        );
        run(
            "another mount namespace's unprotected file",
            &["procroot-open", "/etc/hostname"],
            false,
        );
        run("a pipe (the kernel's own object)", &["pipe"], false);
        run(
            "fileless exec (memfd) outside allow-list mode",
            &["memfd-exec", "/usr/bin/ok", "ok"],
            false,
        );
        // Routes a workload takes on its own after its rules are in force (issue 20).
        run(
            "the workload hardlinks the protected file",
            &["link", "/etc/shadow", "/tmp/hl-new"],
            true,
        );
        run(
            "the workload bind-mounts the protected file elsewhere, then opens that",
            &["bind-open", "/etc/shadow", "/etc/hostname", "rdonly"],
            true,
        );
        run(
            "a new mount namespace (unshare -m), then the protected file",
            &["unshare-open", "/etc/shadow", "rdonly"],
            true,
        );
        run(
            "a parent directory of the protected file renamed, then the file",
            &[
                "rename-open",
                "/etc",
                "/etc-moved",
                "/etc-moved/shadow",
                "rdonly",
            ],
            true,
        );
        run(
            "a protected directory renamed (or its rename refused), then a file in it",
            &["rename-open", "/secret", "/moved", "/moved/data", "rdonly"],
            true,
        );
        // Documented, not a bypass of the rule: a copy is another file (a new inode at a new
        // path); a process allow-list (posture block) stops it, as it stops any binary not
        // listed.
        run(
            "a copy of the blocked binary, executed (documented: not covered by a path rule)",
            &["copy-exec", "/usr/bin/blocked", "/tmp/blocked-copy", "ok"],
            false,
        );
        let control = run_in(&root, &cg, actor, &["by-handle", "/etc/hostname"]);
        let line = run_in(&root, &cg, actor, &["by-handle", "/etc/shadow"]);
        if line.contains("EOPNOTSUPP") {
            not_applicable.push(format!(
                "n/a  [{fsname}] disconnected dentry (open_by_handle_at): `{line}`: {fsname} \
                 has no file handles here"
            ));
        } else {
            check(
                &format!("[{fsname}] disconnected dentry (open_by_handle_at)"),
                line,
                true,
            );
            check(
                &format!("[{fsname}] disconnected dentry of an unprotected file"),
                control,
                false,
            );
        }
        let line = scm_read(&root, &cg, actor, &root.join("etc/shadow"));
        check(
            &format!("[{fsname}] fd of the protected file received over SCM_RIGHTS, read"),
            line,
            true,
        );
        let line = scm_read(&root, &cg, actor, &root.join("etc/hostname"));
        check(
            &format!("[{fsname}] fd of another file received over SCM_RIGHTS, read"),
            line,
            false,
        );
        for m in ["tmp/bshadow", "tmp/bsecret"] {
            let _ = Command::new("umount").arg(root.join(m)).status();
        }
        assert!(
            root.join("etc/shadow").exists(),
            "the protected file survived"
        );
        lsm.remove(&key).unwrap();
        drop(cg);
        let _ = fs::remove_dir_all(&root);
    }
    let after = lsm.counters().unwrap();
    let _ = Command::new("umount").arg(&tmpfs_dir).status();
    harness.leave(&lsm);
    for r in results.iter().chain(&not_applicable) {
        println!("{r}");
    }
    println!("counters before {before:?}\ncounters after {after:?}");
    assert_eq!(
        after.incomplete, before.incomplete,
        "a path was not resolved completely"
    );
    let failed: Vec<&String> = results.iter().filter(|r| r.starts_with("FAIL")).collect();
    assert!(failed.is_empty(), "bypasses: {failed:#?}");
}

const OUTSIDE_ALLOW_POLICY: &str = "
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: tree-only, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  file:
    matchDirectories:
    - dir: /
      recursive: true
  action: Allow
";

/// Issue 16, finding 2: in allow-list mode (file posture block), a file outside the caller's
/// mount-namespace tree has no path an Allow rule could cover: it is denied, while every file
/// of the tree is allowed and the kernel's own objects (a pipe) are not files at all. Before,
/// such a file was always allowed.
#[test]
fn bpflsm_outside_the_tree_falls_to_the_allow_list_posture() {
    let Some(lsm) = enforcer() else { return };
    let harness = Harness::enter(&lsm);
    let posture = Posture::all(armor_core::PostureAction::Block);
    let wl = RootedWorkload::apply(&lsm, OUTSIDE_ALLOW_POLICY, posture, "outside-allow");
    let (root, cg) = (wl.root.as_path(), &wl.cg);
    // A descriptor the workload is handed (over SCM_RIGHTS, or inherited from its runtime:
    // stdio, runc's exec fifo) is used under its (device, inode) entries alone: the posture
    // applied when it was opened.
    let cases: [(&str, &[&str], bool); 5] = [
        (
            "a file of the tree",
            &["open", "/etc/hostname", "rdonly"],
            false,
        ),
        ("a pipe", &["pipe"], false),
        ("detached tree", &["tree-open", "/etc", "hostname"], true),
        (
            "/proc/PID/root of another mount namespace",
            &["procroot-open", "/etc/hostname"],
            true,
        ),
        ("a received descriptor (SCM_RIGHTS), read", &[], false),
    ];
    let mut failed = Vec::new();
    for (what, args, want_block) in cases {
        let line = if args.is_empty() {
            scm_read(root, cg, "/usr/bin/actor", &root.join("etc/hostname"))
        } else {
            run_in(root, cg, "/usr/bin/actor", args)
        };
        let blocked = line.starts_with("armor-op: errno 1 ");
        let ok = blocked == want_block && (blocked || line == "armor-op: ok");
        println!("{} {what}: `{line}`", if ok { "ok  " } else { "FAIL" });
        if !ok {
            failed.push(what);
        }
    }
    wl.remove(&lsm);
    harness.leave(&lsm);
    assert!(failed.is_empty(), "wrong outcomes: {failed:?}");
}

/// Issue 16, finding 5 (kernel): a process 80 cgroup levels below its workload's cgroup (a
/// container's own sub-cgroups, nested) keeps the workload's rules. Before, the search for the
/// workload stopped after 64 levels and the host's rules (here: none) applied.
#[test]
fn bpflsm_a_workloads_deep_sub_cgroups_keep_its_rules() {
    let Some(lsm) = enforcer() else { return };
    let harness = Harness::enter(&lsm);
    let used = |lsm: &BpfLsm, what: &str| -> u64 {
        let cap = lsm.capacity();
        let c = cap.iter().find(|c| c.resource == what).unwrap();
        assert!(c.used <= c.limit, "{cap:?}");
        c.used
    };
    let before = used(&lsm, "workloads");
    let wl = RootedWorkload::apply(&lsm, BYPASS_POLICY, Posture::default(), "deep-cgroup");
    // The capacity the metrics show follows the workloads and their entries; the enforcer is
    // healthy (its alert reader runs).
    assert_eq!(used(&lsm, "workloads"), before + 1);
    assert_eq!(
        used(&lsm, "rule_table_slots") + used(&lsm, "rule_map_entries"),
        lsm.used_entries() as u64
    );
    assert!(lsm.used_entries() > 0);
    assert_eq!(lsm.health(), Ok(()));
    let mut levels = vec![wl.cg.path().to_path_buf()];
    for i in 0..80 {
        let next = levels[levels.len() - 1].join(format!("l{i}"));
        fs::create_dir(&next).unwrap();
        levels.push(next);
    }
    let deepest = &levels[levels.len() - 1];
    let run = |args: &[&str]| run_in_cgroup(&wl.root, deepest, "/usr/bin/actor", args);
    let protected = run(&["open", "/etc/shadow", "rdonly"]);
    let other = run(&["open", "/etc/hostname", "rdonly"]);
    for dir in levels.iter().skip(1).rev() {
        let _ = fs::remove_dir(dir);
    }
    wl.remove(&lsm);
    assert_eq!(used(&lsm, "workloads"), before);
    harness.leave(&lsm);
    println!("80 levels down: protected `{protected}`, other `{other}`");
    assert!(protected.starts_with("armor-op: errno 1 "), "{protected}");
    assert_eq!(other, "armor-op: ok");
}

const PROCESS_ALLOW_POLICY: &str = "
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: only-ok, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  process:
    matchPaths:
    - path: /usr/bin/ok
  action: Allow
";

/// Fileless execution (a memfd) has no path an Allow rule could cover: in process allow-list
/// mode it is denied by the posture, while the allowed binary runs and, outside allow-list mode
/// (the bypass suite), a memfd still executes. Before, a memfd was never decided.
#[test]
fn bpflsm_fileless_exec_falls_to_the_process_allow_list_posture() {
    let Some(lsm) = enforcer() else { return };
    let harness = Harness::enter(&lsm);
    let posture = Posture::all(armor_core::PostureAction::Block);
    let wl = RootedWorkload::apply(&lsm, PROCESS_ALLOW_POLICY, posture, "fileless");
    let (root, cg) = (wl.root.as_path(), &wl.cg);
    let allowed = run_in(root, cg, "/usr/bin/actor", &["exec", "/usr/bin/ok", "ok"]);
    let fileless = run_in(
        root,
        cg,
        "/usr/bin/actor",
        &["memfd-exec", "/usr/bin/ok", "ok"],
    );
    let mapped = run_in(
        root,
        cg,
        "/usr/bin/actor",
        &["map-exec", "/usr/bin/blocked"],
    );
    // A copy of an allowed binary is another file: the allow-list stops it (here its write
    // already, the file posture blocking too).
    let copied = run_in(
        root,
        cg,
        "/usr/bin/actor",
        &["copy-exec", "/usr/bin/ok", "/tmp/ok-copy", "ok"],
    );
    wl.remove(&lsm);
    harness.leave(&lsm);
    println!(
        "allowed exec: `{allowed}`; memfd exec: `{fileless}`; mapping: `{mapped}`; copy: `{copied}`"
    );
    assert!(copied.starts_with("armor-op: errno 1 "), "{copied}");
    assert_eq!(allowed, "armor-op: ok");
    assert!(fileless.starts_with("armor-op: errno 1 "), "{fileless}");
    // Mappings are not subject to the allow-list posture (shared libraries).
    assert_eq!(mapped, "armor-op: ok");
}

const TORN_A: &str = "
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: torn-a, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  file:
    matchPaths:
    - path: /tmp/armor-torn/f
  action: Block
";

const TORN_B: &str = "
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: torn-b, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  file:
    matchDirectories:
    - dir: /tmp/armor-torn/
      recursive: true
  action: Block
";

/// Issue 16, finding 4: workloads' rule sets flip between two that both deny
/// `/tmp/armor-torn/f` (by an exact entry, and by a directory entry that only a record whose
/// directory depths belong to the same rule set finds) while their processes open it and an
/// allowed file in a tight loop: no open of the first may pass, none of the second may fail.
/// Two races let it through before: a record read half old, half new (the record map was
/// preallocated and overwritten in place), and a decision still using the previous record
/// while the update deleted the entries it points at (now deleted only after an RCU grace
/// period, `membarrier`).
#[test]
fn bpflsm_workload_records_are_read_whole_while_they_change() {
    let Some(lsm) = enforcer() else { return };
    let harness = Harness::enter(&lsm);
    fs::create_dir_all("/tmp/armor-torn").unwrap();
    fs::create_dir_all("/tmp/armor-torn-ok").unwrap();
    fs::write("/tmp/armor-torn/f", b"x").unwrap();
    fs::write("/tmp/armor-torn-ok/g", b"x").unwrap();
    let artifact = |yaml: &str| compile("shop/web", &web_rules(yaml, Posture::default()));
    let (a, b) = (artifact(TORN_A), artifact(TORN_B));
    let groups: Vec<(Cgroup, WorkloadKey)> = (0..6)
        .map(|i| {
            let cg = Cgroup::create(&format!("torn-{i}")).unwrap();
            let key = WorkloadKey::new(format!("shop/torn-{i}")).with_cgroup(cg.id());
            put(&lsm, &key, &a).unwrap();
            (cg, key)
        })
        .collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (flips, lines) = std::thread::scope(|scope| {
        let flipper = scope.spawn(|| {
            let mut flips = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (_, key) in &groups {
                    let next = if flips.is_multiple_of(2) { &b } else { &a };
                    put(&lsm, key, next).unwrap();
                }
                flips += 1;
            }
            flips
        });
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let children: Vec<_> = groups
                .iter()
                .flat_map(|(cg, _)| {
                    ["/tmp/armor-torn/f", "/tmp/armor-torn-ok/g"].map(|file| {
                        let child = Command::new(helper_path())
                            .arg("--cgroup")
                            .arg(cg.path())
                            .args(["open-count", file, "3000"])
                            .stdout(std::process::Stdio::piped())
                            .spawn()
                            .unwrap();
                        (file, child)
                    })
                })
                .collect();
            for (file, child) in children {
                let out = child.wait_with_output().unwrap();
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                lines.push((file, text.lines().last().unwrap_or("").to_owned()));
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (flipper.join().unwrap(), lines)
    });
    for (_, key) in &groups {
        lsm.remove(key).unwrap();
    }
    drop(groups);
    harness.leave(&lsm);
    let wrong: Vec<&(&str, String)> = lines
        .iter()
        .filter(|(file, line)| {
            let want = if file.ends_with("/f") {
                "armor-op: opened 0 of 3000"
            } else {
                "armor-op: opened 3000 of 3000"
            };
            line != want
        })
        .collect();
    println!(
        "{} rule-set flips over 6 workloads; {} runs of 3000 opens, wrong: {wrong:?}",
        flips,
        lines.len()
    );
    assert!(flips > 10, "too few flips to mean anything: {flips}");
    assert!(wrong.is_empty(), "wrong decisions: {wrong:?}");
}

const GLOB_BYPASS_POLICY: &str = "
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: glob-bypass, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  process:
    matchPatterns:
    - pattern: /usr/bin/blk*
  file:
    matchPatterns:
    - pattern: /etc/*.key
    - pattern: /vault/**
    - pattern: /gdeep/**/f
  action: Block
";

/// Globs in the kernel cannot be dodged by the spelling of the path: symlinks, `..`, chroot,
/// `/proc/self/fd`, a path longer than the alert's 256 bytes, a multi-byte name.
#[test]
fn bpflsm_glob_bypass_suite() {
    let Some(lsm) = enforcer() else { return };
    let harness = Harness::enter(&lsm);
    let a = compile(
        "shop/web",
        &web_rules(GLOB_BYPASS_POLICY, Posture::default()),
    );
    assert!(
        a.unenforceable_rules().is_empty(),
        "{:?}",
        a.unenforceable_rules()
    );
    let root = PathBuf::from("/tmp/armor-glob-bypass");
    let _ = fs::remove_dir_all(&root);
    for d in ["usr/bin", "etc", "tmp", "vault/a/b", "proc"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for exe in ["usr/bin/blkx", "usr/bin/ok", "usr/bin/actor"] {
        fs::copy(helper_path(), root.join(exe)).unwrap();
        fs::set_permissions(root.join(exe), fs::Permissions::from_mode(0o755)).unwrap();
    }
    for f in ["etc/tls.key", "etc/hostname", "etc/é.key", "vault/a/b/c"] {
        fs::write(root.join(f), b"x\n").unwrap();
    }
    std::os::unix::fs::symlink("/usr/bin/blkx", root.join("lnk-blk")).unwrap();
    std::os::unix::fs::symlink("/etc/tls.key", root.join("lnk-key")).unwrap();
    let mut deep = String::from("/gdeep");
    for i in 0..45 {
        deep.push_str(&format!("/{i:02}{}", "g".repeat(48)));
    }
    fs::create_dir_all(root.join(deep.trim_start_matches('/'))).unwrap();
    for f in ["f", "g"] {
        fs::write(root.join(deep.trim_start_matches('/')).join(f), b"x\n").unwrap();
    }
    let cg = Cgroup::create("glob-bypass").unwrap();
    let key = WorkloadKey::new("shop/web").with_cgroup(cg.id());
    put(&lsm, &key, &a).unwrap();
    let deep_f = format!("{deep}/f");
    let deep_g = format!("{deep}/g");
    let cases: Vec<(&str, Vec<&str>, bool)> = vec![
        (
            "exec matching the glob",
            vec!["exec", "/usr/bin/blkx", "ok"],
            true,
        ),
        (
            "exec of another binary",
            vec!["exec", "/usr/bin/ok", "ok"],
            false,
        ),
        (
            "exec through a symlink",
            vec!["exec", "/lnk-blk", "ok"],
            true,
        ),
        (
            "fexecve of an fd",
            vec!["fexec", "/usr/bin/blkx", "ok"],
            true,
        ),
        (
            "open matching the glob",
            vec!["open", "/etc/tls.key", "rdonly"],
            true,
        ),
        (
            "open of another file",
            vec!["open", "/etc/hostname", "rdonly"],
            false,
        ),
        (
            "open through a symlink",
            vec!["open", "/lnk-key", "rdonly"],
            true,
        ),
        (
            "relative path with ..",
            vec!["open", "tmp/../etc/tls.key", "rdonly"],
            true,
        ),
        (
            "chroot /etc then /tls.key",
            vec!["chroot-open", "/etc", "/tls.key", "rdonly"],
            true,
        ),
        (
            "open through /proc/self/fd",
            vec!["procfd-open", "/etc/tls.key", "rdonly"],
            true,
        ),
        (
            "multi-byte file name",
            vec!["open", "/etc/é.key", "rdonly"],
            true,
        ),
        (
            "** below a directory",
            vec!["open", "/vault/a/b/c", "rdonly"],
            true,
        ),
        (
            "rename out of the glob",
            vec!["rename", "/etc/tls.key", "/tmp/k"],
            true,
        ),
        (
            "deep path (>2000 bytes) matching **/f",
            vec!["open", &deep_f, "rdonly"],
            true,
        ),
        (
            "deep path not matching",
            vec!["open", &deep_g, "rdonly"],
            false,
        ),
    ];
    let mut failed = Vec::new();
    for (what, args, want_block) in &cases {
        let line = run_in(&root, &cg, "/usr/bin/actor", args);
        let blocked = line.starts_with("armor-op: errno 1 ");
        let ok = blocked == *want_block && (blocked || line == "armor-op: ok");
        println!(
            "{} {what}: `{line}` (want {})",
            if ok { "ok  " } else { "FAIL" },
            if *want_block { "EPERM" } else { "ok" }
        );
        if !ok {
            failed.push(*what);
        }
    }
    lsm.remove(&key).unwrap();
    drop(cg);
    harness.leave(&lsm);
    let _ = fs::remove_dir_all(&root);
    assert!(failed.is_empty(), "glob bypasses: {failed:?}");
}

fn block_policy(name: &str, paths: &[String]) -> std::sync::Arc<armor_core::RuleSet> {
    let mut y = format!(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  file:\n    matchPaths:\n"
    );
    for p in paths {
        y.push_str(&format!("    - path: {p}\n"));
    }
    y.push_str("  action: Block\n");
    web_rules(&y, Posture::default())
}

/// Opens `path` from inside `cg` until `stop`; returns how many opens succeeded and ran.
fn hammer(cg: &Cgroup, path: &Path, stop: &std::sync::atomic::AtomicBool) -> (usize, usize) {
    let (mut passed, mut runs) = (0, 0);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let out = Command::new(helper_path())
            .arg("--cgroup")
            .arg(cg.path())
            .args(["open-n"])
            .arg(path)
            .args(["rdonly", "50"])
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        runs += 1;
        if !line.contains("errno 1 ") {
            passed += 1;
        }
    }
    (passed, runs)
}

/// Updates flip a workload between two rulesets that both block the file: an atomic update
/// never lets an open through; the deliberately non-atomic update (old entries removed, then
/// new ones written, one by one) does, which proves the detector works.
#[test]
fn bpflsm_updates_are_atomic_and_the_detector_catches_a_non_atomic_one() {
    let Some(lsm) = enforcer() else { return };
    let harness = Harness::enter(&lsm);
    let dir = PathBuf::from("/tmp/armor-atomic");
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("f");
    fs::write(&file, b"x\n").unwrap();
    let target = file.to_string_lossy().into_owned();
    // Ruleset A: the file and 200 others; ruleset B: the file and 200 other others.
    let mut pa = vec![target.clone()];
    let mut pb = vec![target.clone()];
    for i in 0..200 {
        pa.push(format!("/tmp/armor-atomic/a{i}"));
        pb.push(format!("/tmp/armor-atomic/b{i}"));
    }
    let a = compile("shop/web", &block_policy("rules-a", &pa));
    let b = compile("shop/web", &block_policy("rules-b", &pb));
    let cg = Cgroup::create("atomic").unwrap();
    let key = WorkloadKey::new("shop/web").with_cgroup(cg.id());
    let t = Instant::now();
    put(&lsm, &key, &a).unwrap();
    println!("apply of {} entries: {:?}", a.entries.len(), t.elapsed());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (atomic, runs) = std::thread::scope(|s| {
        let h = s.spawn(|| hammer(&cg, &file, &stop));
        let mut times = Vec::new();
        for i in 0..200 {
            let next = if i % 2 == 0 { &b } else { &a };
            let t = Instant::now();
            put(&lsm, &key, next).unwrap();
            times.push(t.elapsed());
        }
        times.sort();
        println!("atomic update (flip) median {:?}", times[times.len() / 2]);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        h.join().unwrap()
    });
    println!("atomic updates: {atomic} of {runs} open floods got through");
    stop.store(false, std::sync::atomic::Ordering::SeqCst);
    let (torn, runs2) = std::thread::scope(|s| {
        let h = s.spawn(|| hammer(&cg, &file, &stop));
        for i in 0..6 {
            let next = if i % 2 == 0 { &b } else { &a };
            lsm.apply_non_atomic_for_test(&key, next, Duration::from_millis(1))
                .unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        h.join().unwrap()
    });
    println!("non-atomic updates: {torn} of {runs2} open floods got through");
    lsm.remove(&key).unwrap();
    drop(cg);
    harness.leave(&lsm);
    let _ = fs::remove_dir_all(&dir);
    assert!(runs > 0 && runs2 > 0);
    assert_eq!(atomic, 0, "an atomic update let an open through");
    assert!(
        torn > 0,
        "the detector missed a deliberately non-atomic update"
    );
}

/// A flood of denials: the per-workload rate limit drops alerts in the kernel and counts them.
#[test]
fn bpflsm_alert_flood_is_rate_limited_and_counted() {
    let Some(lsm) = enforcer() else { return };
    lsm.set_alerts_per_sec(20);
    let sink = Arc::new(Sink::default());
    lsm.set_alert_sink(sink.clone());
    let harness = Harness::enter(&lsm);
    let dir = PathBuf::from("/tmp/armor-flood");
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("f");
    fs::write(&file, b"x\n").unwrap();
    let a = compile(
        "shop/web",
        &block_policy("flood", &[file.to_string_lossy().into_owned()]),
    );
    let cg = Cgroup::create("flood").unwrap();
    let key = WorkloadKey::new("shop/web").with_cgroup(cg.id());
    put(&lsm, &key, &a).unwrap();
    let before = lsm.counters().unwrap();
    let out = Command::new(helper_path())
        .arg("--cgroup")
        .arg(cg.path())
        .arg("open-n")
        .arg(&file)
        .args(["rdonly", "5000"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("errno 1 EPERM"));
    std::thread::sleep(Duration::from_millis(300));
    let after = lsm.counters().unwrap();
    // Only this workload's alerts: the enforcer (and its ring buffer) outlives earlier tests.
    let received = sink
        .take()
        .iter()
        .filter(|a| a.workload.as_ref().and_then(|k| k.cgroup_id) == Some(cg.id()))
        .count();
    println!("flood: before {before:?}\nafter {after:?}\nalerts delivered {received}");
    lsm.remove(&key).unwrap();
    drop(cg);
    harness.leave(&lsm);
    lsm.set_alerts_per_sec(0);
    let _ = fs::remove_dir_all(&dir);
    let blocked = after.blocked - before.blocked;
    let sent = after.alerts - before.alerts;
    let limited = after.rate_limited - before.rate_limited;
    assert_eq!(blocked, 5000, "every open was denied");
    assert_eq!(
        sent + limited + (after.reserve_failed - before.reserve_failed),
        5000
    );
    assert!(sent <= 20 * 3, "the limit let {sent} alerts through");
    assert!(limited >= 5000 - 60, "{limited} rate-limited");
    assert_eq!(received as u64, sent, "every alert written was read");
}

/// The enforcer with an alert sink and the test in its harness cgroup, when runc is there too;
/// `None` (after saying why) outside the guest.
fn runc_enforcer() -> Option<(Lsm, Arc<Sink>, Harness)> {
    let lsm = enforcer()?;
    if Command::new("runc").arg("--version").output().is_err() {
        assert!(guest::current().is_none(), "runc missing in the guest");
        eprintln!("skipped: runc not installed");
        return None;
    }
    let sink = Arc::new(Sink::default());
    lsm.set_alert_sink(sink.clone());
    let harness = Harness::enter(&lsm);
    Some((lsm, sink, harness))
}

/// A fresh runc bundle at `bundle` (`runc spec`'s config): a root file system with the helper as
/// `/bin/blocked` and the directories runc mounts on. Returns the root file system's path.
fn runc_bundle(bundle: &Path) -> PathBuf {
    let _ = fs::remove_dir_all(bundle);
    let rootfs = bundle.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    for d in ["proc", "dev", "sys", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy(helper_path(), rootfs.join("bin/blocked")).unwrap();
    let st = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(bundle)
        .status()
        .unwrap();
    assert!(st.success(), "runc spec");
    rootfs
}

/// Enforcement begins when `apply` returns. For a container that point is between `runc create`
/// (the cgroup exists, `runc init` waits) and `runc start` (it execs the entrypoint): a
/// container whose first command is blocked never runs it.
#[test]
fn bpflsm_container_first_command_is_blocked() {
    let Some((lsm, sink, harness)) = runc_enforcer() else {
        return;
    };
    let bundle = PathBuf::from("/tmp/armor-ctr");
    runc_bundle(&bundle);
    let spec = fs::read_to_string(bundle.join("config.json")).unwrap();
    let cgroup_rel = format!("armor-ctr-{}", std::process::id());
    let spec = spec
        .replace("\"terminal\": true", "\"terminal\": false")
        .replace("\"sh\"", "\"/bin/blocked\", \"ok\"")
        .replace(
            "\"linux\": {",
            &format!("\"linux\": {{\n\t\t\"cgroupsPath\": \"/{cgroup_rel}\","),
        );
    fs::write(bundle.join("config.json"), spec).unwrap();
    let id = format!("armor-first-{}", std::process::id());
    // The container's stdio must not be our pipes (runc init keeps them open): a log file.
    let log = fs::File::create(bundle.join("ctr.log")).unwrap();
    let st = Command::new("timeout")
        .args(["30", "runc", "create", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log.try_clone().unwrap())
        .status()
        .unwrap();
    assert!(
        st.success(),
        "runc create: {}",
        fs::read_to_string(bundle.join("ctr.log")).unwrap_or_default()
    );
    let cg_path = cgroup2_root().unwrap().join(&cgroup_rel);
    let cg_id = {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(&cg_path).unwrap().ino()
    };
    let set = PolicySet::parse(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: no-entry, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  process:\n    matchPaths:\n    - path: /bin/blocked\n  action: Block\n",
        "no-entry.yaml",
    )
    .unwrap();
    let policy = CompiledPolicy::build(&set).unwrap();
    let w = armor_core::Workload::Container(
        armor_core::Container::new("shop", "web").label("app", "web"),
    );
    let key = WorkloadKey::new("shop/web").with_cgroup(cg_id);
    put(
        &lsm,
        &key,
        &compile("shop/web", &policy.rule_set(&w, Posture::default())),
    )
    .unwrap();
    sink.take();
    let start = Command::new("timeout")
        .args(["30", "runc", "start", &id])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut state = String::new();
    while Instant::now() < deadline {
        let out = Command::new("timeout")
            .args(["10", "runc", "state", &id])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        state = String::from_utf8_lossy(&out.stdout).into_owned();
        if !state.contains("\"running\"") && !state.contains("\"created\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let alerts = sink.take();
    let _ = Command::new("timeout")
        .args(["30", "runc", "delete", "--force", &id])
        .stdin(std::process::Stdio::null())
        .status();
    let ctr_log = fs::read_to_string(bundle.join("ctr.log")).unwrap_or_default();
    lsm.remove(&key).unwrap();
    harness.leave(&lsm);
    let _ = fs::remove_dir(&cg_path);
    let _ = fs::remove_dir_all(&bundle);
    println!(
        "runc start: {start}; container log `{}`; state {state}; alerts {alerts:?}",
        ctr_log.trim()
    );
    let entry = alerts.iter().find(|a| {
        a.operation == Category::Process
            && a.resource == "/bin/blocked"
            && a.action == Action::Block
    });
    assert!(
        entry.is_some(),
        "no Block alert for the entrypoint: {alerts:?}"
    );
    assert!(
        entry.is_some_and(|a| a.workload.as_ref().and_then(|k| k.cgroup_id) == Some(cg_id)),
        "alert not attributed to the container's cgroup"
    );
    assert!(
        state.contains("\"stopped\"") || state.is_empty(),
        "state: {state}"
    );
}

/// Runs `runc` with `args` under a 60 s timeout, output to `log`.
fn runc_logged(args: &[&str], log: &fs::File) -> std::process::ExitStatus {
    Command::new("timeout")
        .arg("60")
        .arg("runc")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log.try_clone().unwrap())
        .status()
        .unwrap()
}

/// A container's rules applied from an OCI `createRuntime` hook, while `runc create` waits on
/// it (the init process is in the container's cgroup, the entrypoint not executed). The policy
/// blocks the entrypoint and `CAP_SYS_ADMIN`, which runc's own setup after the hook needs
/// (`pivot_root`, the read-only and masked paths' mounts):
/// * with `Start::FirstExec` the setup is not subject to the rules — the container is created —
///   and the entrypoint's exec, the first operation decided, is refused;
/// * applied in force at once, the same rules make runc's setup fail: the test can tell the
///   two apart.
#[test]
fn bpflsm_rules_applied_from_the_create_hook_spare_runcs_setup_and_block_the_entrypoint() {
    let Some((lsm, sink, harness)) = runc_enforcer() else {
        return;
    };
    let set = PolicySet::parse(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: no-entry, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  process:\n    matchPaths:\n    - path: /bin/blocked\n  capabilities:\n    matchCapabilities:\n    - capability: sys_admin\n  action: Block\n",
        "no-entry.yaml",
    )
    .unwrap();
    let policy = CompiledPolicy::build(&set).unwrap();
    let w = armor_core::Workload::Container(
        armor_core::Container::new("shop", "web").label("app", "web"),
    );
    let rules = policy.rule_set(&w, Posture::default());
    let mut outcomes = Vec::new();
    for first_exec in [true, false] {
        let mode = if first_exec { "first-exec" } else { "at-once" };
        let bundle = PathBuf::from(format!("/tmp/armor-hook-{mode}"));
        let rootfs = runc_bundle(&bundle);
        // The hook hands runc's state to the test and waits until the test says go.
        let b = bundle.display();
        let hook = format!("cat > {b}/state.json && while [ ! -e {b}/go ]; do sleep 0.05; done");
        let cgroup_rel = format!("armor-hook-{mode}-{}", std::process::id());
        let mut spec: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(bundle.join("config.json")).unwrap()).unwrap();
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["/bin/blocked", "ok"]);
        spec["linux"]["cgroupsPath"] = format!("/{cgroup_rel}").into();
        spec["hooks"] = serde_json::json!({
            "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", hook], "timeout": 120}]
        });
        fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
        let id = format!("armor-hook-{mode}-{}", std::process::id());
        let log = fs::File::create(bundle.join("ctr.log")).unwrap();
        let mut create = Command::new("timeout")
            .args(["120", "runc", "create", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log.try_clone().unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        // Read until complete (the hook writes it in place).
        let state: serde_json::Value = loop {
            if let Some(v) = fs::read_to_string(bundle.join("state.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
            {
                break v;
            }
            assert!(
                Instant::now() < deadline,
                "the hook never ran: {}",
                fs::read_to_string(bundle.join("ctr.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        eprintln!("{mode}: the hook runs: {state}");
        let pid = state["pid"].as_u64().unwrap();
        assert_eq!(state["status"], "creating", "{state}");
        let cg_path = cgroup2_root().unwrap().join(&cgroup_rel);
        let cg_id = {
            use std::os::unix::fs::MetadataExt as _;
            fs::metadata(&cg_path).unwrap().ino()
        };
        let procs = fs::read_to_string(cg_path.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "init {pid} not yet in its cgroup at the hook: {procs:?}"
        );
        let key = WorkloadKey::new("shop/web").with_cgroup(cg_id);
        install(&lsm, &key, &rules, &rootfs, first_exec);
        if first_exec {
            // A policy reload before the entrypoint runs re-applies the same rules, compiled
            // for the running container (its root seen through /proc, in force at once): that
            // changes nothing, and the rules still wait for the first exec.
            let dest = Destination::new(key.clone()).with_root(format!("/proc/{pid}/root"));
            let again = lsm.compile(&dest, &rules).unwrap();
            assert_eq!(
                lsm.apply(&dest, again.as_ref()).unwrap(),
                Applied::Unchanged
            );
        }
        sink.take();
        fs::write(bundle.join("go"), "").unwrap();
        eprintln!("{mode}: rules applied, the hook lets runc go on");
        let created = create.wait().unwrap();
        eprintln!("{mode}: runc create {created}");
        let ctr_log = || fs::read_to_string(bundle.join("ctr.log")).unwrap_or_default();
        let setup_alerts = sink.take();
        let mut run_alerts = Vec::new();
        if created.success() {
            let started = runc_logged(&["start", &id], &log);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                let out = Command::new("timeout")
                    .args(["10", "runc", "state", &id])
                    .output()
                    .unwrap();
                let st = String::from_utf8_lossy(&out.stdout).into_owned();
                if !st.contains("\"running\"") && !st.contains("\"created\"") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(200));
            run_alerts = sink.take();
            println!("{mode}: runc start {started}");
        }
        let _ = runc_logged(&["delete", "--force", &id], &log);
        lsm.remove(&key).unwrap();
        let _ = fs::remove_dir(&cg_path);
        let text = ctr_log();
        let _ = fs::remove_dir_all(&bundle);
        println!(
            "{mode}: runc create {created}; log `{}`; alerts during setup {setup_alerts:?}, \
             after start {run_alerts:?}",
            text.trim()
        );
        outcomes.push((created.success(), setup_alerts, run_alerts, text));
    }
    harness.leave(&lsm);
    let [
        (created, setup, run, log),
        (at_once_created, at_once_setup, _, at_once_log),
    ] = &outcomes[..]
    else {
        panic!("two runs expected");
    };
    assert!(*created, "runc's setup was refused: {log}");
    assert!(
        setup.is_empty(),
        "alerts before the entrypoint's exec: {setup:?}"
    );
    assert!(
        run.iter().any(|a| a.operation == Category::Process
            && a.resource == "/bin/blocked"
            && a.action == Action::Block),
        "the entrypoint was not refused: {run:?}"
    );
    // The exec is runc init's, which runs from a copy of runc outside the container's tree (a
    // private bind mount of its binary, or a memfd): the alert names that file (`runc`), not
    // the container's root.
    assert!(
        run.iter()
            .filter(|a| a.resource == "/bin/blocked")
            .all(|a| a.source.as_deref().is_some_and(|s| s.contains("runc"))),
        "the entrypoint's alert does not name runc's binary as its source: {run:?}"
    );
    assert!(!log.contains("armor-op: ok"), "the entrypoint ran: {log}");
    assert!(
        !at_once_created,
        "rules in force at once did not touch runc's setup: {at_once_log}"
    );
    assert!(
        at_once_setup
            .iter()
            .any(|a| a.operation == Category::Capabilities && a.action == Action::Block),
        "no capability denial in runc's setup: {at_once_setup:?}"
    );
}

/// One preset's live check: the operation that meets its condition and one that does not.
struct PresetCase {
    preset: &'static str,
    /// The armor-op arguments that meet the condition, and the event the engine decides for
    /// them.
    hit: (&'static [&'static str], armor_core::Event),
    /// An operation next to it that must pass, and its event.
    miss: (&'static [&'static str], armor_core::Event),
    /// The alert's category.
    category: Category,
}

fn preset_cases() -> Vec<PresetCase> {
    use armor_core::event::{Access, Event, Facts};
    let facts = |f: fn(&mut Facts)| {
        let mut x = Facts::default();
        f(&mut x);
        x
    };
    let actor = Some("/usr/bin/actor");
    vec![
        PresetCase {
            preset: "filelessExec",
            hit: (
                &["memfd-exec", "/usr/bin/ok", "ok"],
                Event::exec("/memfd:armor-memfd (deleted)", actor)
                    .with_facts(facts(|f| f.fileless = true)),
            ),
            miss: (
                &["exec", "/usr/bin/ok", "ok"],
                Event::exec("/usr/bin/ok", actor),
            ),
            category: Category::Process,
        },
        PresetCase {
            preset: "filelessExec",
            hit: (
                &["exec", "/dev/shm/ok", "ok"],
                Event::exec("/dev/shm/ok", actor),
            ),
            miss: (
                &["exec", "/usr/bin/ok", "ok"],
                Event::exec("/usr/bin/ok", actor),
            ),
            category: Category::Process,
        },
        PresetCase {
            preset: "filelessExec",
            hit: (
                &["unlinked-exec", "/tmp/ok", "ok"],
                Event::exec("/tmp/ok.unlinked (deleted)", actor)
                    .with_facts(facts(|f| f.fileless = true)),
            ),
            miss: (&["exec", "/tmp/ok", "ok"], Event::exec("/tmp/ok", actor)),
            category: Category::Process,
        },
        PresetCase {
            preset: "exec",
            hit: (
                &["tty-exec", "/usr/bin/ok", "ok"],
                Event::exec("/usr/bin/ok", actor).with_facts(facts(|f| f.tty = true)),
            ),
            miss: (
                &["exec", "/usr/bin/ok", "ok"],
                Event::exec("/usr/bin/ok", actor),
            ),
            category: Category::Process,
        },
        PresetCase {
            preset: "protectEnv",
            hit: (
                &["open", "/proc/1/environ", "rdonly"],
                Event::open("/proc/1/environ", Access::READ, actor)
                    .with_facts(facts(|f| f.other_process = true)),
            ),
            miss: (
                &["open", "/proc/self/environ", "rdonly"],
                Event::open("/proc/7/environ", Access::READ, actor),
            ),
            category: Category::File,
        },
        PresetCase {
            preset: "protectEnv",
            hit: (
                &["open", "/proc/1/task/1/environ", "rdonly"],
                Event::open("/proc/1/task/1/environ", Access::READ, actor)
                    .with_facts(facts(|f| f.other_process = true)),
            ),
            miss: (
                &["open", "/proc/1/status", "rdonly"],
                Event::open("/proc/1/status", Access::READ, actor)
                    .with_facts(facts(|f| f.other_process = true)),
            ),
            category: Category::File,
        },
        PresetCase {
            preset: "protectProc",
            hit: (
                &["open", "/proc/1/status", "rdonly"],
                Event::open("/proc/1/status", Access::READ, actor)
                    .with_facts(facts(|f| f.other_process = true)),
            ),
            miss: (
                &["open", "/proc/self/status", "rdonly"],
                Event::open("/proc/7/status", Access::READ, actor),
            ),
            category: Category::File,
        },
        PresetCase {
            preset: "protectProc",
            hit: (
                &["open", "/proc/1/environ", "rdonly"],
                Event::open("/proc/1/environ", Access::READ, actor)
                    .with_facts(facts(|f| f.other_process = true)),
            ),
            miss: (
                &["open", "/proc/meminfo", "rdonly"],
                Event::open("/proc/meminfo", Access::READ, actor),
            ),
            category: Category::File,
        },
        PresetCase {
            preset: "anonymousMapExec",
            hit: (&["anon-exec", "mmap"], Event::exec_memory(false, actor)),
            miss: (
                &["map-exec", "/usr/bin/ok"],
                Event::exec("/usr/bin/ok", actor),
            ),
            category: Category::File,
        },
        PresetCase {
            preset: "anonymousMapExec",
            hit: (&["anon-exec", "mprotect"], Event::exec_memory(true, actor)),
            miss: (
                &["mprotect-exec", "/usr/bin/ok"],
                Event::exec("/usr/bin/ok", actor),
            ),
            category: Category::File,
        },
        PresetCase {
            preset: "anonymousMapExec",
            hit: (&["anon-exec", "memfd"], Event::exec_memory(false, actor)),
            miss: (&["pipe"], Event::exec("/usr/bin/ok", actor)),
            category: Category::File,
        },
    ]
}

/// Runs armor-op like [`run_in`], in a session of its own (no controlling terminal, whatever
/// the test runner has).
fn run_detached(root: &Path, cg: &Cgroup, args: &[&str]) -> String {
    // util-linux `setsid --wait`: a new session, the exit status passed on.
    let mut cmd = Command::new("setsid");
    cmd.arg("--wait")
        .arg(helper_path())
        .arg("--cgroup-procs")
        .arg(cg.path().join("cgroup.procs"))
        .arg("--root")
        .arg(root)
        .arg("--exe")
        .arg("/usr/bin/actor")
        .args(args);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(
        out.status.code(),
        Some(254),
        "armor-op setup failed: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_owned()
}

/// Issue 21: every preset with Block and with Audit, live: the operation that meets its
/// condition is denied (Block) or passes (Audit) with an alert of the preset's rule, the
/// operation next to it passes without one, and the engine decides both the same way.
#[test]
fn bpflsm_presets_block_and_audit_live() {
    let Some(lsm) = enforcer() else { return };
    let harness = Harness::enter(&lsm);
    let sink = Arc::new(Sink::default());
    lsm.set_alert_sink(sink.clone());
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for (i, case) in preset_cases().iter().enumerate() {
        for action in ["Block", "Audit"] {
            let yaml = format!(
                "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {{name: preset, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  presets:\n  - name: {}\n    action: {action}\n",
                case.preset
            );
            let tag = format!("preset{i}{}", &action[..2]);
            let wl = RootedWorkload::apply(&lsm, &yaml, Posture::default(), &tag);
            let root = wl.root.clone();
            for d in ["dev/shm", "dev/pts"] {
                fs::create_dir_all(root.join(d)).unwrap();
            }
            for exe in ["dev/shm/ok", "tmp/ok"] {
                fs::copy(helper_path(), root.join(exe)).unwrap();
                fs::set_permissions(root.join(exe), fs::Permissions::from_mode(0o755)).unwrap();
            }
            let st = Command::new("mount")
                .args(["-t", "devpts", "-o", "newinstance,ptmxmode=0666", "devpts"])
                .arg(root.join("dev/pts"))
                .status()
                .unwrap();
            assert!(st.success(), "mount devpts");
            std::os::unix::fs::symlink("pts/ptmx", root.join("dev/ptmx")).unwrap();
            sink.take();
            let rules = web_rules(&yaml, Posture::default());
            let hit = run_detached(&root, &wl.cg, case.hit.0);
            let miss = run_detached(&root, &wl.cg, case.miss.0);
            // The reader thread polls the ring buffer: give the alerts a moment.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut alerts = Vec::new();
            while Instant::now() < deadline {
                alerts.extend(
                    sink.take().into_iter().filter(|a| {
                        a.workload.as_ref().and_then(|w| w.cgroup_id) == Some(wl.cg.id())
                    }),
                );
                if !alerts.is_empty() {
                    std::thread::sleep(Duration::from_millis(200));
                    alerts.extend(sink.take().into_iter().filter(|a| {
                        a.workload.as_ref().and_then(|w| w.cgroup_id) == Some(wl.cg.id())
                    }));
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = Command::new("umount").arg(root.join("dev/pts")).status();
            wl.remove(&lsm);
            let engine_hit = rules.decide(&case.hit.1).verdict;
            let engine_miss = rules.decide(&case.miss.1).verdict;
            let block = action == "Block";
            let line = format!(
                "{} {action} {:?}: `{hit}` (engine {engine_hit:?}); {:?}: `{miss}` (engine {engine_miss:?}); alerts {:?}",
                case.preset,
                case.hit.0,
                case.miss.0,
                alerts
                    .iter()
                    .map(|a| format!(
                        "{:?} {} rule {:?} `{}`",
                        a.action, a.operation, a.rule, a.resource
                    ))
                    .collect::<Vec<_>>()
            );
            let want_hit = if block {
                Verdict::Block
            } else {
                Verdict::Audit
            };
            let mut bad = Vec::new();
            if block != hit.starts_with("armor-op: errno 1 ") || (!block && hit != "armor-op: ok") {
                bad.push("the operation meeting the condition");
            }
            if miss != "armor-op: ok" {
                bad.push("the operation next to it");
            }
            if engine_hit != want_hit || engine_miss != Verdict::Allow {
                bad.push("the engine");
            }
            let want_action = if block { Action::Block } else { Action::Audit };
            if alerts.len() != 1
                || alerts[0].rule != Some(0)
                || alerts[0].action != want_action
                || alerts[0].operation != case.category
            {
                bad.push("the alerts");
            }
            if !bad.is_empty() {
                failures.push(format!("{line}: wrong: {}", bad.join(", ")));
            }
            lines.push(line);
        }
    }
    harness.leave(&lsm);
    for l in &lines {
        println!("{l}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const ARGS_POLICY: &str = "
apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: ok-args, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  process:
    matchPaths:
    - path: /usr/bin/ok
      allowedArgs: [ok, -l]
  action: ACTION
";

/// Issue 21: `allowedArgs` in the kernel, live, with Block, Audit and Allow (process allow-list
/// with a blocking posture): listed arguments, an unlisted one, none, one longer than the
/// checked length, through execve and execveat; each outcome and alert as the engine decides.
#[test]
fn bpflsm_allowed_args_live() {
    use armor_core::event::Event;
    let Some(lsm) = enforcer() else { return };
    let harness = Harness::enter(&lsm);
    let sink = Arc::new(Sink::default());
    lsm.set_alert_sink(sink.clone());
    let long = "x".repeat(300);
    let runs: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["exec", "/usr/bin/ok", "ok"], vec!["ok"]),
        (vec!["exec", "/usr/bin/ok", "ok", "-l"], vec!["ok", "-l"]),
        (vec!["exec", "/usr/bin/ok", "ok", "-R"], vec!["ok", "-R"]),
        (vec!["exec", "/usr/bin/ok", "ok", &long], vec!["ok", &long]),
        (vec!["fexec", "/usr/bin/ok", "ok"], vec!["ok"]),
        (vec!["fexec", "/usr/bin/ok", "ok", "x"], vec!["ok", "x"]),
    ];
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for action in ["Block", "Audit", "Allow"] {
        let yaml = ARGS_POLICY.replace("ACTION", action);
        let posture = if action == "Allow" {
            Posture::all(armor_core::PostureAction::Block)
        } else {
            Posture::default()
        };
        let tag = format!("args{}", &action[..2]);
        let wl = RootedWorkload::apply(&lsm, &yaml, posture, &tag);
        let rules = web_rules(&yaml, posture);
        for (args, argv) in &runs {
            sink.take();
            let got = run_in(&wl.root, &wl.cg, "/usr/bin/actor", args);
            std::thread::sleep(Duration::from_millis(100));
            let alerts: Vec<EnforcerAlert> = sink
                .take()
                .into_iter()
                .filter(|a| a.workload.as_ref().and_then(|w| w.cgroup_id) == Some(wl.cg.id()))
                .collect();
            let event =
                Event::exec("/usr/bin/ok", Some("/usr/bin/actor")).with_args(argv.iter().copied());
            let d = rules.decide(&event);
            let live_blocked = got.starts_with("armor-op: errno 1 ");
            let mut bad = Vec::new();
            if live_blocked != (d.verdict == Verdict::Block)
                || (!live_blocked && got != "armor-op: ok")
            {
                bad.push("outcome");
            }
            let want_alert = match d.verdict {
                Verdict::Block => Some(Action::Block),
                Verdict::Audit => Some(Action::Audit),
                _ => None,
            };
            let got_alert = alerts.first().map(|a| a.action);
            if alerts.len() > 1 || got_alert != want_alert {
                bad.push("alert");
            }
            let line = format!(
                "{action} {:?}: `{got}`, engine {:?}, alerts {:?}",
                args.iter()
                    .map(|a| if a.len() > 20 { "<300 bytes>" } else { a })
                    .collect::<Vec<_>>(),
                d.verdict,
                alerts
                    .iter()
                    .map(|a| (a.action, a.rule))
                    .collect::<Vec<_>>()
            );
            if !bad.is_empty() {
                failures.push(format!("{line}: wrong {}", bad.join(", ")));
            }
            lines.push(line);
        }
        if action == "Audit" {
            // An Audit rule never kills nor denies, whatever the race does to the arguments.
            let race = run_in(
                &wl.root,
                &wl.cg,
                "/usr/bin/actor",
                &["race-exec", "/usr/bin/ok", "100"],
            );
            let line = format!("race under an Audit rule: `{race}`");
            if !race.contains(" denied=0 killed=0 other=0") {
                failures.push(format!("{line}: wrong"));
            }
            lines.push(line);
        }
        if action == "Block" {
            // The race: a second thread rewrites the argument between `ok` (listed) and `xx`
            // while the first executes. The program never runs with `xx`: the exec is denied
            // (read as `xx`) or the task killed before it runs (read as `ok`, copied as `xx`).
            // From the main thread, and from a second thread (which takes the leader's pid
            // during the exec).
            for mode in ["main", "thread"] {
                let before = lsm.counters().unwrap().args_killed;
                sink.take();
                let mut args = vec!["race-exec", "/usr/bin/ok", "300"];
                if mode == "thread" {
                    args.push("thread");
                }
                let race = run_in(&wl.root, &wl.cg, "/usr/bin/actor", &args);
                let killed = lsm.counters().unwrap().args_killed - before;
                std::thread::sleep(Duration::from_millis(200));
                let changed = sink
                    .take()
                    .into_iter()
                    .filter(|a| a.resource.starts_with("arguments changed"))
                    .count();
                let count = |k: &str| -> u32 {
                    race.split_whitespace()
                        .find_map(|w| w.strip_prefix(&format!("{k}=")))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| panic!("no {k} in `{race}`"))
                };
                let who = if mode == "thread" {
                    "a second thread execs"
                } else {
                    "the main thread execs"
                };
                let line = format!(
                    "race ({who}): `{race}`; kernel kills {killed}; `arguments changed` alerts \
                     {changed}"
                );
                if count("unlisted") != 0 || count("other") != 0 || count("listed") == 0 {
                    failures.push(format!("{line}: wrong"));
                }
                if u64::from(count("killed")) != killed || changed as u64 != killed {
                    failures.push(format!("{line}: kills, counter and alerts differ"));
                }
                lines.push(line);
            }
        }
        wl.remove(&lsm);
    }
    harness.leave(&lsm);
    for l in &lines {
        println!("{l}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
