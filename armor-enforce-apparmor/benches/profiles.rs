#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "bench code: a failure is a failed run"
)]
//! Profile generation and `apparmor_parser -Q -K -S` time and size for 10 … 10k rules on
//! KubeArmor's mix: 40 % exact paths, 30 % directories, 10 % patterns, 20 % fromSource over
//! 8 sources, all Block. `cargo bench -p armor-enforce-apparmor --bench profiles` (criterion; `ARMOR_BENCH_MAX` bounds
//! the rule count).
//!
//! The same run also writes and parses a baseline shaped like KubeArmor's AppArmor template
//! (facts from its `appArmorTemplate.go`: `#include <abstractions/base>` and `file,`/`network,`/
//! `capability,` headers, one `deny PATH{suffix} klmrw,` line per rule, a post-section of
//! hardening lines, and every global rule copied into each fromSource profile), so that the
//! size and parse-time ratios are measured under the same machine load.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::fmt::Write as _;

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

const KA_POST: &str = "  /lib/x86_64-linux-gnu/{*,**} rm,
  deny @{PROC}/{*,**^[0-9*],sys/kernel/shm*} wkx,
  deny @{PROC}/sysrq-trigger rwklx,
  deny @{PROC}/mem rwklx,
  deny @{PROC}/kmem rwklx,
  deny @{PROC}/kcore rwklx,
  deny mount,
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/efi/efivars/** rwklx,
  deny /sys/kernel/security/** rwklx,
";

/// The baseline profile for the same mix as [`policy`].
fn kubearmor_style(n: usize) -> String {
    let mut global = String::new();
    let mut by_source: std::collections::BTreeMap<String, String> = Default::default();
    for i in 0..n {
        let line = match i % 10 {
            0..=3 => format!("  deny /srv/app{}/conf/file{i}.cfg klmrw,\n", i % 97),
            4..=6 => format!(
                "  deny /var/lib/svc{}/d{i}/{} klmrw,\n",
                i % 89,
                if i % 2 == 0 { "{,**}" } else { "{,*}" }
            ),
            7 => format!("  deny /data/p{i}/*.log klmrw,\n"),
            _ => {
                let l = format!("  deny /secret/s{}/key{i} klmrw,\n", i % 13);
                by_source
                    .entry(format!("/usr/bin/tool{}", i % 8))
                    .or_default()
                    .push_str(&l);
                continue;
            }
        };
        global.push_str(&line);
    }
    let pre = "  #include <abstractions/base>\n  file,\n  network,\n  capability,\n";
    let name = "kubearmor-shop-web";
    let mut t = format!(
        "## == Managed by KubeArmor == ##\n#include <tunables/global>\n\n\
         profile {name} flags=(attach_disconnected,mediate_deleted) {{\n{pre}{global}"
    );
    for src in by_source.keys() {
        let _ = writeln!(t, "  {src} px -> {name}-{src},");
    }
    t.push_str(KA_POST);
    t.push_str("}\n");
    for (src, own) in &by_source {
        let _ = write!(
            t,
            "profile {name}-{src} {{\n  {src} rix,\n{pre}{global}{own}{KA_POST}}}\n"
        );
    }
    t
}

/// Wall time of `apparmor_parser -Q -K -S FILE` (the profile must compile).
/// Compiles `file` with `apparmor_parser -Q -K -S` (no kernel needed); panics with the
/// parser's message when it refuses it.
fn parse(file: &std::path::Path) {
    let out = std::process::Command::new("apparmor_parser")
        .args(["-Q", "-K", "-S"])
        .arg(file)
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sizes `n` rules give (not timed): rule lines, profiles, bytes, next to KubeArmor's.
fn sizes(n: usize, a: &armor_enforce_apparmor::AppArmorArtifact, ka: &str) {
    let lines: usize = a.profile.sections.iter().map(|s| s.lines.len()).sum();
    #[expect(clippy::cast_precision_loss, reason = "byte counts of a few MiB")]
    let ratio = 100.0 * a.text.len() as f64 / ka.len() as f64;
    println!(
        "{n:>5} rules: {lines} rule lines in {} profiles, {} bytes; KubeArmor-style {} bytes \
         ({ratio:.1} %)",
        a.profile.sections.len(),
        a.text.len(),
        ka.len(),
    );
}

/// `generate/N`: the profile of N rules; `parse/N` and `parse_kubearmor_style/N`:
/// `apparmor_parser -Q -K -S` on it and on a KubeArmor-shaped profile of the same rules, in the
/// same run (so the ratio is measured under the same load). `ARMOR_BENCH_MAX` bounds N
/// (default 10000).
fn profiles(c: &mut Criterion) {
    let max: usize = std::env::var("ARMOR_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = std::env::temp_dir().join(format!("armor-aa-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut g = c.benchmark_group("apparmor");
    g.sample_size(10);
    for n in [10, 100, 1_000, 10_000].into_iter().filter(|n| *n <= max) {
        let set = PolicySet::parse(&policy(n), "bench.yaml").unwrap();
        let compiled = CompiledPolicy::build(&set).unwrap();
        assert_eq!(compiled.rules().len(), n);
        let w: armor_core::Workload = Container::new("shop", "web").label("app", "web").into();
        let rules = compiled.rule_set(&w, Posture::default());
        let key = WorkloadKey::new("shop/web");
        let a = compile(&key, &rules);
        let ka = kubearmor_style(n);
        sizes(n, &a, &ka);
        let ours = dir.join(format!("armor-{n}"));
        std::fs::write(&ours, &a.text).unwrap();
        let theirs = dir.join(format!("kubearmor-{n}"));
        std::fs::write(&theirs, &ka).unwrap();
        g.bench_with_input(BenchmarkId::new("generate", n), &n, |b, _| {
            b.iter(|| compile(&key, &rules));
        });
        g.bench_with_input(BenchmarkId::new("parse", n), &n, |b, _| {
            b.iter(|| parse(&ours));
        });
        g.bench_with_input(BenchmarkId::new("parse_kubearmor_style", n), &n, |b, _| {
            b.iter(|| parse(&theirs));
        });
    }
    g.finish();
    if std::env::var_os("ARMOR_BENCH_KEEP").is_some() {
        println!("profiles kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

criterion_group!(benches, profiles);
criterion_main!(benches);
