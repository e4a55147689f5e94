#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench code: a failure is a failed run"
)]
//! Profile generation and `apparmor_parser -Q -K -S` time and size for 10 … 10k rules on
//! KubeArmor's mix: 40 % exact paths, 30 % directories, 10 % patterns, 20 % fromSource over
//! 8 sources, all Block. `cargo bench -p armor-enforce-apparmor --bench profiles [-- MAX]`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use armor_core::posture::Posture;
use armor_core::workload::{Container, WorkloadKey};
use armor_core::{CompiledPolicy, PolicySet};
use armor_enforce_apparmor::compile;

fn policy(n: usize) -> String {
    let mut paths = String::new();
    let mut dirs = String::new();
    let mut pats = String::new();
    for i in 0..n {
        match i % 10 {
            0..=3 => {
                let _ = writeln!(paths, "    - path: /srv/app{}/conf/file{i}.cfg", i % 97);
            }
            4..=6 => {
                let _ = writeln!(
                    dirs,
                    "    - dir: /var/lib/svc{}/d{i}/\n      recursive: {}",
                    i % 89,
                    i % 2 == 0
                );
            }
            7 => {
                let _ = writeln!(pats, "    - pattern: /data/p{i}/*.log");
            }
            _ => {
                let _ = writeln!(
                    paths,
                    "    - path: /secret/s{}/key{i}\n      fromSource:\n      - path: /usr/bin/tool{}",
                    i % 13,
                    i % 8
                );
            }
        }
    }
    let mut y = String::from(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: bench\n  namespace: shop\nspec:\n  selector:\n    matchLabels:\n      app: web\n  action: Block\n  file:\n",
    );
    for (k, body) in [
        ("matchPaths", paths),
        ("matchDirectories", dirs),
        ("matchPatterns", pats),
    ] {
        if !body.is_empty() {
            let _ = writeln!(y, "    {k}:");
            y.push_str(&body);
        }
    }
    y
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let max: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = std::env::temp_dir().join(format!("armor-aa-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!("rules  rule_lines  profiles  bytes      generate     apparmor_parser -Q -K -S");
    for n in [10, 100, 1_000, 10_000].into_iter().filter(|n| *n <= max) {
        let set = PolicySet::parse(&policy(n), "bench.yaml").unwrap();
        let compiled = CompiledPolicy::build(&set).unwrap();
        assert_eq!(compiled.rules().len(), n);
        let w: armor_core::Workload = Container::new("shop", "web").label("app", "web").into();
        let rules = compiled.rule_set(&w, Posture::default());
        let key = WorkloadKey::new("shop/web");
        let runs = if n >= 10_000 { 3 } else { 7 };
        let mut times = Vec::new();
        let mut art = None;
        for _ in 0..runs {
            let t = Instant::now();
            let a = compile(&key, &rules);
            times.push(t.elapsed());
            art = Some(a);
        }
        let a = art.unwrap();
        assert!(a.not_enforced.is_empty(), "{:?}", a.not_enforced.first());
        let lines: usize = a.profile.sections.iter().map(|s| s.lines.len()).sum();
        let file = dir.join(format!("p{n}"));
        std::fs::write(&file, &a.text).unwrap();
        let t = Instant::now();
        let out = std::process::Command::new("apparmor_parser")
            .args(["-Q", "-K", "-S"])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .output()
            .unwrap();
        let parse = t.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "{n:>5}  {lines:>10}  {:>8}  {:>9}  {:>9.2?}  {:>9.2?}",
            a.profile.sections.len(),
            a.text.len(),
            median(times),
            parse
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
