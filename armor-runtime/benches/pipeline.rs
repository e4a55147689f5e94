#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark code: a failure is a failed run"
)]
//! Event pipeline throughput and agent memory. Needs root.
//!
//! `cargo bench -p armor-runtime --bench pipeline`
//!
//! 1. Memory: the agent's state with the 1k-rule mix (`armor_testing::mix::rule_mix_yaml`) and
//!    100 registered container workloads selected by it, each with its rule set compiled and
//!    its kernel visibility set, plus the loaded event source. Prints VmRSS and VmHWM.
//! 2. Throughput: kernel → typed event → identity → decision → KubeArmor JSON, on one thread,
//!    under an openat flood at rising offered load from `ARMOR_BENCH_FLOODERS` (default 4)
//!    processes in a cgroup of their own (only that cgroup is visible). Each flooder opens a
//!    missing file (`ARMOR_BENCH_FLOOD_PATH`, default `/etc/armor-bench-missing`), the cheapest
//!    openat that still makes a full record, so the flooders need less CPU than the consumer.
//!    The consumer is pinned to CPU 0 and the flooders to CPU 1 (other load on the machine still
//!    competes). Prints the offered and generated rates, the handled rate (wall clock), the consumer's CPU
//!    time and events per consumer CPU-second, and the kernel's lost count.

use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use armor_core::{CompiledPolicy, PolicySet, Visibility};
use armor_ebpf::{EventSource, Options};
use armor_runtime::containerd::ContainerInfo;
use armor_runtime::{Runtime, RuntimeConfig, load_policies};

/// Pins the calling process to `cpu` (when the machine has it).
fn pin(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

fn flood(cgroup: &str, rate: u64, secs: u64, path: &str) {
    pin(1);
    fs::write(
        format!("{cgroup}/cgroup.procs"),
        std::process::id().to_string(),
    )
    .unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while n < due {
            let _ = fs::File::open(path);
            n += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    println!("{n}");
}

fn status_kb(field: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap())
        .unwrap()
}

/// `Pss:` of `/proc/self/smaps_rollup` in kB: pages mapped twice by this process count once
/// (the ring buffer's data pages are mapped twice, back to back, so RSS counts them twice).
fn pss_kb() -> u64 {
    fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn mem(stage: &str) {
    println!(
        "  {stage}: VmRSS {} kB (anon {}, file {}, shmem {}), Pss {} kB, VmHWM {} kB",
        status_kb("VmRSS:"),
        status_kb("RssAnon:"),
        status_kb("RssFile:"),
        status_kb("RssShmem:"),
        pss_kb(),
        status_kb("VmHWM:")
    );
}

fn cpu_secs() -> f64 {
    let ru = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    tv(ru.user_time()) + tv(ru.system_time())
}

/// The agent's state with the 1k-rule mix and 100 workloads; returns the runtime to keep it
/// alive while memory is read.
fn memory(source: &EventSource) -> Runtime {
    let dir = std::env::temp_dir().join(format!("armor-bench-rules-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("mix.yaml"),
        armor_testing::mix::rule_mix_yaml(1_000),
    )
    .unwrap();
    let policy = load_policies(&[&dir]).unwrap();
    fs::remove_dir_all(&dir).unwrap();
    mem("1k rules compiled");
    let rules = policy.rules().len();
    let mut rt = Runtime::new(
        RuntimeConfig::default(),
        policy,
        vec![],
        Some(source.controls()),
    );
    for i in 0..100u64 {
        let mut info = ContainerInfo::default();
        info.id = format!("{i:064x}");
        info.containerd_namespace = "k8s.io".to_string();
        info.image = "docker.io/library/busybox:latest".to_string();
        for (k, v) in [
            ("io.kubernetes.pod.namespace", "bench".to_string()),
            ("io.kubernetes.pod.name", format!("bench-{i}")),
            ("io.kubernetes.container.name", "bench".to_string()),
            ("app", "bench".to_string()),
        ] {
            info.labels.insert(k.to_string(), v);
        }
        // Cgroup ids no real cgroup has: visibility entries exist, no event matches them.
        rt.add_container_with_cgroup(&info, (1 << 40) + i);
    }
    mem("100 workloads registered");
    assert_eq!(rt.containers().len(), 100);
    let problems = rt.take_problems();
    assert!(problems.is_empty(), "{problems:?}");
    println!(
        "memory: {rules} rules, 100 workloads, event source loaded: VmRSS {} kB, VmHWM {} kB",
        status_kb("VmRSS:"),
        status_kb("VmHWM:")
    );
    rt
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("flood") {
        flood(
            &args[2],
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
            &args[5],
        );
        return;
    }
    if !nix::unistd::Uid::effective().is_root() {
        println!("skipped: the pipeline benchmark needs root (euid is not 0)");
        return;
    }
    let flooders: u64 = std::env::var("ARMOR_BENCH_FLOODERS")
        .ok()
        .map_or(4, |v| v.parse().unwrap());
    let path = std::env::var("ARMOR_BENCH_FLOOD_PATH")
        .unwrap_or_else(|_| "/etc/armor-bench-missing".to_string());
    let root = armor_runtime::identity::cgroup2_root().unwrap();
    let cg = root.join(format!("armor-bench-{}", std::process::id()));
    fs::create_dir_all(&cg).unwrap();
    let id = fs::metadata(&cg).unwrap().ino();
    mem("start");
    let ring_mb: u32 = std::env::var("ARMOR_BENCH_RING_MB")
        .ok()
        .map_or(Options::default().ring_bytes >> 20, |v| v.parse().unwrap());
    println!("ring buffer: {ring_mb} MB");
    let mut source = EventSource::load(
        Options::default()
            .seed_process_tree(true)
            .ring_bytes(ring_mb << 20),
    )
    .unwrap();
    let controls = source.controls();
    mem("event source loaded");

    let mut rt = memory(&source);

    // The flood cgroup is a container of its own: its records carry a container identity.
    let policy = CompiledPolicy::build(&PolicySet::new()).unwrap();
    rt.replace_policy(policy).unwrap();
    let mut info = ContainerInfo::default();
    info.id = "f".repeat(64);
    info.image = "docker.io/library/busybox:latest".to_string();
    info.labels
        .insert("io.kubernetes.pod.namespace".into(), "flood".into());
    info.labels.insert("app".into(), "flood".into());
    rt.add_container_with_cgroup(&info, id);
    controls
        .set_visibility(id, &Visibility::standard())
        .unwrap();
    // The consumer on core 0, the flooders on core 1: "one core" for the pipeline.
    pin(0);
    let mut sink = std::io::sink();
    println!("throughput: {flooders} flooders opening {path}");
    println!("offered/s  generated/s  handled/s  consumer-cpu-s  handled/cpu-s  lost   records");
    for rate in [25_000u64, 50_000, 100_000, 200_000, 300_000, 400_000] {
        let secs = 3u64;
        let before = controls.stats().unwrap().lost;
        let children: Vec<_> = (0..flooders)
            .map(|_| {
                Command::new(&args[0])
                    .args([
                        "flood",
                        &cg.display().to_string(),
                        &(rate / flooders).to_string(),
                        &secs.to_string(),
                        &path,
                    ])
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut children = children;
        let start = Instant::now();
        let cpu0 = cpu_secs();
        let mut handled = 0u64;
        let mut records = 0u64;
        loop {
            let mut batch = Vec::new();
            source
                .poll(Duration::from_millis(20), &mut |e| batch.push(e.clone()))
                .unwrap();
            for e in &batch {
                for r in rt.handle(e, source.process_tree()) {
                    serde_json::to_writer(&mut sink, &r).unwrap();
                    sink.write_all(b"\n").unwrap();
                    records += 1;
                }
            }
            handled += batch.len() as u64;
            let running = children.iter_mut().any(|c| c.try_wait().unwrap().is_none());
            if !running && batch.is_empty() {
                break;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = cpu_secs() - cpu0;
        let mut generated = 0u64;
        for c in &mut children {
            let mut line = String::new();
            BufReader::new(c.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            generated += line.trim().parse::<u64>().unwrap();
        }
        let lost = controls.stats().unwrap().lost - before;
        println!(
            "{rate:>9}  {:>11.0}  {:>9.0}  {cpu:>14.2}  {:>13.0}  {lost:>4}  {records:>8}",
            generated as f64 / secs as f64,
            handled as f64 / elapsed,
            handled as f64 / cpu
        );
    }
    mem("memory after the runs");
    drop(rt);
    let _ = fs::remove_dir(&cg);
}
