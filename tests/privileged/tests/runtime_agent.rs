//! The whole agent (`armor_runtime::agent::run`, what `armor-agent` runs) against a private
//! containerd in the guest: enforcing on containerd's task-create event, and answering the OCI
//! hook before a container's creation completes. A binary of its own (split from
//! `runtime_enforcement.rs`), so that the two run in two guests side by side: each test here
//! loads the BPF-LSM programs through the agent's own enforcer selection.
//!
//! Run with `scripts/vm-test --binary runtime_agent`; on a kernel without BPF-LSM the tests print
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
use std::path::PathBuf;
use std::time::{Duration, Instant};

use armor_privileged_tests::guest;
use armor_runtime::enforcement::{EnforcementOptions, EnforcerChoice};

/// The private containerd and the gRPC driver of `armor-runtime`'s own containerd test.
#[path = "../../../armor-runtime/tests/support/mod.rs"]
mod support;

/// What this binary shares with `runtime_enforcement.rs`.
mod containerd_guest;
use containerd_guest::{BUSYBOX_POLICY, CTRD_IMAGE, GuestTmp, ctrd_spec, shared_bpflsm};

/// The BPF-LSM settings of both agents: no alert limit, and a rule map of 48 entries, which
/// the containers' rules of both tests fit and the `big` container's of
/// [`runtime_agent_answers_the_oci_hook`] do not. Both agents select the one enforcer built
/// with them ([`shared_bpflsm`]): the first agent's selection loads its programs.
fn agent_bpf() -> armor_enforce_bpflsm::Config {
    let mut bpf = armor_enforce_bpflsm::Config::default();
    bpf.alerts_per_sec = 0;
    bpf.max_rule_entries = 48;
    bpf
}

/// Output shared between the agent's thread and the test.
#[derive(Clone, Default)]
struct SharedOut(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedOut {
    /// The complete lines written so far (the agent writes a record in several pieces: a
    /// line still being written is left for the next call).
    fn lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// `armor_runtime::agent::run` on a thread of the test, its log lines on a channel.
struct Agent {
    /// `None` once joined.
    handle: Option<std::thread::JoinHandle<armor_runtime::Result<()>>>,
    logs: std::sync::mpsc::Receiver<String>,
    out: SharedOut,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: Vec<String>,
}

impl Agent {
    /// Starts the agent and waits for its `ready` line, which must be `ready`; `None` (after
    /// saying why) when the kernel refuses BPF-LSM outside the guest.
    fn start(options: armor_runtime::agent::AgentOptions, ready: &str) -> Option<Self> {
        let out = SharedOut::default();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, logs) = std::sync::mpsc::channel::<String>();
        let t0 = Instant::now();
        let handle = {
            let (mut out, stop) = (out.clone(), stop.clone());
            std::thread::spawn(move || {
                armor_runtime::agent::run(
                    &options,
                    &mut out,
                    &mut |l| {
                        let _ = tx.send(l.to_string());
                    },
                    &stop,
                )
            })
        };
        let mut seen = Vec::new();
        // Outside the guest the kernel refuses BPF-LSM and the agent stops at once, saying why.
        let line = loop {
            match logs.recv_timeout(Duration::from_secs(300)) {
                Ok(line) if line.starts_with("ready: ") => break line,
                Ok(line) => seen.push(line),
                Err(_) => {
                    let result = handle.join().unwrap();
                    let Err(armor_runtime::Error::Enforcer { reason, .. }) = &result else {
                        panic!("agent ended: {result:?}; log {seen:#?}");
                    };
                    assert!(
                        guest::current().is_none(),
                        "BPF-LSM refused in the guest: {reason}"
                    );
                    eprintln!("skipped: {reason}");
                    return None;
                }
            }
        };
        assert_eq!(line, ready, "{seen:#?}");
        println!("agent ready after {:?}", t0.elapsed());
        Some(Self {
            handle: Some(handle),
            logs,
            out,
            stop,
            seen,
        })
    }

    /// The next log line containing `needle` within `limit`.
    fn line(&mut self, needle: &str, limit: Duration) -> String {
        log_line(&self.logs, needle, limit, &mut self.seen)
    }

    /// Waits up to 10 s for a BPFLSM alert of container `web_id` (it crosses the ring buffer,
    /// the reader thread and the loop), stops the agent, then removes the containers and the
    /// private containerd: the agent's result, log lines and JSON lines, and what cleanup left.
    fn finish(
        self,
        web_id: &str,
        (tmp, daemon, mut driver): (GuestTmp, support::Daemon, support::Driver),
    ) -> (
        armor_runtime::Result<()>,
        Vec<String>,
        Vec<serde_json::Value>,
        Vec<String>,
    ) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && kernel_alert(&self.out.lines(), web_id).is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
        let (result, seen, lines) = self.stop();
        let left = driver.cleanup();
        drop(driver);
        drop(daemon);
        drop(tmp);
        (result, seen, lines, left)
    }

    /// Stops the agent: its result, every log line, every JSON line written.
    fn stop(
        mut self,
    ) -> (
        armor_runtime::Result<()>,
        Vec<String>,
        Vec<serde_json::Value>,
    ) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let result = self
            .handle
            .take()
            .expect("the agent is joined once")
            .join()
            .unwrap();
        while let Ok(l) = self.logs.try_recv() {
            self.seen.push(l);
        }
        (result, std::mem::take(&mut self.seen), self.out.lines())
    }
}

/// A test that fails before stopping its agent still stops it, so the agent does not go on
/// using the binary's shared enforcer after the test gave up its turn.
impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = handle.join();
        }
    }
}

/// The first BPF-LSM (kernel) alert among the agent's JSON `lines` for container `id`.
fn kernel_alert<'a>(lines: &'a [serde_json::Value], id: &str) -> Option<&'a serde_json::Value> {
    lines
        .iter()
        .find(|v| v["Enforcer"] == "BPFLSM" && v["ContainerID"] == id)
}

/// The next agent log line containing `needle` within `limit`; every line is kept in `seen`.
fn log_line(
    rx: &std::sync::mpsc::Receiver<String>,
    needle: &str,
    limit: Duration,
    seen: &mut Vec<String>,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no agent line with `{needle}` ({e}): {seen:#?}"));
        seen.push(line.clone());
        if line.contains(needle) {
            return line;
        }
    }
}

/// A private containerd in the guest with the busybox image loaded, and a policy directory
/// holding [`BUSYBOX_POLICY`]; `None` (after saying why) where containerd cannot run.
fn private_containerd(tag: &str) -> Option<(GuestTmp, support::Daemon, support::Driver, PathBuf)> {
    if let Some(why) = support::unavailable() {
        assert!(guest::current().is_none(), "{why}");
        eprintln!("skipped: {why}");
        return None;
    }
    let tmp = GuestTmp::mount();
    let daemon = support::Daemon::start(tag);
    let mut driver = support::Driver::connect(&daemon.socket, &daemon.dir);
    driver.load_busybox(CTRD_IMAGE, &[]);
    let policies = daemon.dir.join("policies");
    fs::create_dir_all(&policies).unwrap();
    fs::write(policies.join("no-busybox.yaml"), BUSYBOX_POLICY).unwrap();
    Some((tmp, daemon, driver, policies))
}

/// The whole agent (`armor_runtime::agent::run`, what `armor-agent --enforcer bpflsm
/// --containerd-socket S` runs) against a private containerd in the guest: it enumerates and
/// watches containerd itself, applies a container's rules on the task-create event, blocks the
/// entrypoint, and writes the kernel's alert as a KubeArmor JSON line with the container's
/// identity. The test starts each task once the agent logged that it tracks it (a kubelet's
/// CreateContainer/StartContainer gap).
#[test]
fn runtime_agent_loop_enforces_on_containerd_task_create() {
    let Some((tmp, daemon, mut driver, policies)) = private_containerd("rt-agent") else {
        return;
    };
    let (_turn, shared) = shared_bpflsm(agent_bpf());
    let options = armor_runtime::agent::AgentOptions::new(&policies)
        .containerd_socket(&daemon.socket)
        .enforcer(EnforcerChoice::Named("bpflsm".into()))
        .enforcement(
            EnforcementOptions::default()
                .bpflsm(agent_bpf())
                .bpflsm_enforcer(shared),
        );
    let Some(mut agent) = Agent::start(
        options,
        "ready: enforcing with BPFLSM: 0 enforced, 0 partly enforced, 0 monitored only, 1 without rules; 0 apply failures (0 containers)",
    ) else {
        return;
    };

    let mut exits = Vec::new();
    for (name, app, uid) in [("web", "web", "6a2e0c2a"), ("api", "api", "87c3d9b4")] {
        let spec = ctrd_spec(name, app, uid);
        let t = Instant::now();
        driver.create(&spec);
        let created = t.elapsed();
        agent.line(
            &format!("container shop/{name}-0/{name} (cgroup"),
            Duration::from_secs(30),
        );
        let tracked = t.elapsed();
        driver.start(&spec);
        let status = driver.wait(&spec.id, Duration::from_secs(60));
        agent.line(
            &format!("container {} gone", spec.id),
            Duration::from_secs(30),
        );
        println!(
            "{name}: Tasks.Create {created:?}; the agent tracked it {:?} later; exit status \
             {status:?}",
            tracked.saturating_sub(created)
        );
        exits.push((spec, status));
    }
    let web_id = exits[0].0.id.clone();
    let (result, seen, lines, left) = agent.finish(&web_id, (tmp, daemon, driver));
    assert!(result.is_ok(), "agent: {result:?}; log {seen:#?}");
    assert_eq!(seen.last().map(String::as_str), Some("stopped"));
    assert!(left.is_empty(), "not removed: {left:?}");
    assert!(
        matches!(exits[0].1, Some(s) if s != 0),
        "web's entrypoint was not refused: {:?}",
        exits[0].1
    );
    assert_eq!(exits[1].1, Some(0), "the control container failed");
    let alert = kernel_alert(&lines, &web_id).unwrap_or_else(|| {
        panic!(
            "no BPFLSM alert for web in {} lines; log {seen:#?}",
            lines.len()
        )
    });
    println!("alert: {alert}");
    assert_eq!(alert["Type"], "MatchedPolicy");
    assert_eq!(alert["Action"], "Block");
    assert_eq!(alert["Result"], "Permission denied");
    assert_eq!(alert["Operation"], "Process");
    assert_eq!(alert["Resource"], "/bin/busybox");
    assert_eq!(alert["PolicyName"], "no-busybox");
    assert_eq!(alert["ContainerName"], "web");
    assert_eq!(alert["NamespaceName"], "shop");
    assert_eq!(alert["PodName"], "web-0");
    assert_eq!(alert["Labels"], "app=web");
    assert_eq!(alert["ContainerImage"], CTRD_IMAGE);
    let api_id = exits[1].0.id.as_str();
    assert!(
        kernel_alert(&lines, api_id).is_none(),
        "a kernel alert for the control container"
    );
}

/// Rules for `app: big` that cannot fit the rule map of [`runtime_agent_answers_the_oci_hook`].
fn big_policy() -> String {
    let mut p = String::from(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: big, \
         namespace: shop}\nspec:\n  selector: {matchLabels: {app: big}}\n  file:\n    \
         matchPaths:\n",
    );
    for i in 0..64 {
        p.push_str(&format!("    - path: /etc/big-{i}\n"));
    }
    p.push_str("  action: Block\n");
    p
}

/// The whole agent answering the OCI hook (`armor-agent --hook-socket`, the hook being
/// `armor-oci-hook` — here the same code built as this crate's `armor-test-oci-hook`) against a
/// private containerd whose containers name the hook in their spec, started the way kubelet
/// starts them: `Tasks.Start` right after `Tasks.Create` returns, with nothing waited for in
/// between. The hook holds the creation until the agent has applied the container's rules:
/// * web (its entrypoint is blocked): refused, with the alert attributed to the container;
/// * api (no rules select it): runs;
/// * big (its rules do not fit the enforcer's rule map): its creation fails with the agent's
///   reason, and no task of it ever runs.
#[test]
fn runtime_agent_answers_the_oci_hook() {
    // The hook binary is read before /tmp is covered by the guest's tmpfs (a checkout under
    // /tmp would vanish under it), and installed next to the daemon.
    let hook_binary = fs::read(env!("CARGO_BIN_EXE_armor-test-oci-hook")).unwrap();
    let Some((tmp, daemon, mut driver, policies)) = private_containerd("rt-hook") else {
        return;
    };
    let hook_path = daemon.dir.join("armor-oci-hook");
    fs::write(&hook_path, &hook_binary).unwrap();
    fs::set_permissions(
        &hook_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    fs::write(policies.join("big.yaml"), big_policy()).unwrap();
    let socket = daemon.dir.join("hook/hook.sock");
    let (_turn, shared) = shared_bpflsm(agent_bpf());
    let options = armor_runtime::agent::AgentOptions::new(&policies)
        .containerd_socket(&daemon.socket)
        .hook_socket(&socket)
        .enforcer(EnforcerChoice::Named("bpflsm".into()))
        .enforcement(
            EnforcementOptions::default()
                .bpflsm(agent_bpf())
                .bpflsm_enforcer(shared),
        );
    let Some(mut agent) = Agent::start(
        options,
        "ready: enforcing with BPFLSM: 0 enforced, 0 partly enforced, 0 monitored only, 1 without rules; 0 apply failures (0 containers)",
    ) else {
        return;
    };
    let hooks = serde_json::json!({"createRuntime": [{
        "path": hook_path.to_str().unwrap(),
        "args": ["armor-oci-hook", "--socket", socket.to_str().unwrap(), "--timeout", "60"],
        "timeout": 120,
    }]});
    let mut runs = Vec::new();
    for (name, app, uid) in [
        ("web", "web", "9a2e0c2a"),
        ("api", "api", "a7c3d9b4"),
        ("big", "big", "b1d4e5f6"),
    ] {
        let mut spec = ctrd_spec(name, app, uid);
        spec.hooks = Some(hooks.clone());
        let t = Instant::now();
        let created = driver.try_create(&spec);
        let create_time = t.elapsed();
        let status = match &created {
            Ok(_) => {
                // What kubelet does: StartContainer right after CreateContainer returned.
                driver.start(&spec);
                let status = driver.wait(&spec.id, Duration::from_secs(60));
                agent.line(
                    &format!("container {} gone", spec.id),
                    Duration::from_secs(30),
                );
                status
            }
            Err(_) => None,
        };
        println!("{name}: Tasks.Create {create_time:?} → {created:?}; exit status {status:?}");
        runs.push((spec, created, status));
    }
    let web_id = runs[0].0.id.clone();
    let (result, seen, lines, left) = agent.finish(&web_id, (tmp, daemon, driver));
    assert!(result.is_ok(), "agent: {result:?}; log {seen:#?}");
    assert!(left.is_empty(), "not removed: {left:?}");
    assert!(!socket.exists(), "the agent left its hook socket behind");
    let [
        (web, web_created, web_status),
        (api, api_created, api_status),
        (big, big_created, _),
    ] = &runs[..]
    else {
        panic!("three containers expected");
    };
    for l in seen
        .iter()
        .filter(|l| l.contains("admitted by the OCI hook"))
    {
        println!("agent: {l}");
    }
    for (spec, created) in [(web, web_created), (api, api_created)] {
        assert!(created.is_ok(), "{}: {created:?}", spec.id);
        let name = &spec.labels[2].1;
        assert!(
            seen.iter().any(
                |l| l.starts_with(&format!("container shop/{name}-0/{name} (cgroup"))
                    && l.contains(") admitted by the OCI hook in ")
            ),
            "{name} not admitted by the hook: {seen:#?}"
        );
    }
    assert!(
        matches!(web_status, Some(s) if *s != 0),
        "web's entrypoint was not refused: exit status {web_status:?}"
    );
    assert_eq!(*api_status, Some(0), "the control container failed");
    let alert = kernel_alert(&lines, &web_id).unwrap_or_else(|| {
        panic!(
            "no BPFLSM alert for web in {} lines; log {seen:#?}",
            lines.len()
        )
    });
    println!("alert: {alert}");
    assert_eq!(alert["Operation"], "Process");
    assert_eq!(alert["Resource"], "/bin/busybox");
    assert_eq!(alert["PolicyName"], "no-busybox");
    assert_eq!(alert["PodName"], "web-0");
    assert_eq!(alert["Labels"], "app=web");
    let api_id = api.id.as_str();
    assert!(
        kernel_alert(&lines, api_id).is_none(),
        "a kernel alert for the control container"
    );
    let Err(why) = big_created else {
        panic!("big was created although its rules do not fit");
    };
    assert!(
        why.contains("refused by the armor agent") && why.contains("max_rule_entries"),
        "big's creation failed for another reason: {why}"
    );
    let refused = format!("container {} refused at creation:", big.id);
    assert!(
        seen.iter().any(|l| l.starts_with(&refused)),
        "no refusal logged: {seen:#?}"
    );
}
