#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark code: a failure is a failed run"
)]
//! Event pipeline throughput: kernel → typed event → identity → decision → JSON, on one
//! thread, under an openat flood at rising offered load. Needs root; prints one line per load.
//!
//! `cargo bench -p armor-runtime --bench pipeline` (the flood runs in a child process moved
//! into a cgroup of its own; only that cgroup is visible).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::process::Command;
use std::time::{Duration, Instant};

use armor_core::{CompiledPolicy, PolicySet, Visibility};
use armor_ebpf::{EventSource, Options};
use armor_runtime::{Runtime, RuntimeConfig};

fn flood(cgroup: &str, rate: u64, secs: u64) {
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
            let _ = fs::File::open("/etc/hostname");
            n += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("flood") {
        flood(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap());
        return;
    }
    if !nix::unistd::Uid::effective().is_root() {
        println!("skipping: the pipeline benchmark needs root");
        return;
    }
    let root = armor_runtime::identity::cgroup2_root().unwrap();
    let cg = root.join(format!("armor-bench-{}", std::process::id()));
    fs::create_dir_all(&cg).unwrap();
    let id = fs::metadata(&cg).unwrap().ino();
    let mut source = EventSource::load(Options::default().seed_process_tree(true)).unwrap();
    let controls = source.controls();
    controls
        .set_visibility(id, &Visibility::standard())
        .unwrap();
    let policy = CompiledPolicy::build(&PolicySet::new()).unwrap();
    let mut rt = Runtime::new(RuntimeConfig::default(), policy, vec![], None);
    let mut sink = std::io::sink();
    println!("offered/s  handled/s  lost");
    for rate in [25_000u64, 50_000, 100_000, 200_000, 400_000] {
        let secs = 3;
        let before = controls.stats().unwrap().lost;
        let mut child = Command::new(&args[0])
            .args([
                "flood",
                &cg.display().to_string(),
                &rate.to_string(),
                &secs.to_string(),
            ])
            .spawn()
            .unwrap();
        let start = Instant::now();
        let mut handled = 0u64;
        loop {
            let mut batch = Vec::new();
            source
                .poll(Duration::from_millis(20), &mut |e| batch.push(e.clone()))
                .unwrap();
            for e in &batch {
                for r in rt.handle(e, source.process_tree()) {
                    serde_json::to_writer(&mut sink, &r).unwrap();
                    sink.write_all(b"\n").unwrap();
                }
            }
            handled += batch.len() as u64;
            if child.try_wait().unwrap().is_some() && batch.is_empty() {
                break;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let lost = controls.stats().unwrap().lost - before;
        println!("{rate:>9}  {:>9.0}  {lost}", handled as f64 / elapsed);
    }
    let _ = fs::remove_dir(&cg);
}
