//! Deterministic generators: the benchmark rule mix and its events.
//!
//! "N rules" means: 40 % exact paths, 30 % directories (half of them recursive), 10 % globs and
//! 20 % fromSource-qualified exact paths (over 8 sources), all file rules with action Block, in
//! one `KubeArmorPolicy` selecting `app=bench` in namespace `bench`. Events are half hits (each
//! built from a random rule so that it matches it) and half misses.

use std::fmt::Write as _;

use armor_core::event::{Access, Event};

/// A small deterministic PRNG (xorshift64*), so generators need no dependency and give the same
/// output everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (a zero seed is replaced).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The kind of rule `i` of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Dir { recursive: bool },
    Glob,
    FromSource,
}

fn kind(i: usize) -> Kind {
    match i % 10 {
        0..=3 => Kind::Exact,
        4..=6 => Kind::Dir {
            recursive: i.is_multiple_of(2),
        },
        7 => Kind::Glob,
        _ => Kind::FromSource,
    }
}

fn group(i: usize) -> usize {
    i % 50
}

/// The YAML text of the `n`-rule mix.
pub fn rule_mix_yaml(n: usize) -> String {
    let mut paths = String::new();
    let mut dirs = String::new();
    let mut pats = String::new();
    for i in 0..n {
        let g = group(i);
        match kind(i) {
            Kind::Exact => {
                let _ = writeln!(paths, "    - path: /data/d{g}/f{i}.txt");
            }
            Kind::FromSource => {
                let _ = writeln!(
                    paths,
                    "    - path: /data/d{g}/s{i}.key\n      fromSource:\n      - path: /usr/bin/src{}",
                    i % 8
                );
            }
            Kind::Dir { recursive } => {
                let _ = writeln!(
                    dirs,
                    "    - dir: /data/d{g}/sub{i}/\n      recursive: {recursive}"
                );
            }
            Kind::Glob => {
                let _ = writeln!(pats, "    - pattern: /data/d{g}/g{i}/*.log");
            }
        }
    }
    let mut y = String::from(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: bench\n  namespace: bench\nspec:\n  severity: 5\n  selector:\n    matchLabels:\n      app: bench\n  action: Block\n  file:\n",
    );
    if !paths.is_empty() {
        y.push_str("    matchPaths:\n");
        y.push_str(&paths);
    }
    if !dirs.is_empty() {
        y.push_str("    matchDirectories:\n");
        y.push_str(&dirs);
    }
    if !pats.is_empty() {
        y.push_str("    matchPatterns:\n");
        y.push_str(&pats);
    }
    y
}

/// `count` events for the `n`-rule mix: even indices hit a random rule, odd ones miss.
pub fn mix_events(n: usize, count: usize, seed: u64) -> Vec<Event> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(count);
    for e in 0..count {
        let src = format!("/usr/bin/src{}", rng.below(8));
        if e.is_multiple_of(2) && n > 0 {
            let i = usize::try_from(rng.below(n as u64)).unwrap_or(0);
            let g = group(i);
            let (path, source) = match kind(i) {
                Kind::Exact => (format!("/data/d{g}/f{i}.txt"), src),
                Kind::FromSource => (
                    format!("/data/d{g}/s{i}.key"),
                    format!("/usr/bin/src{}", i % 8),
                ),
                Kind::Dir { recursive: true } => (format!("/data/d{g}/sub{i}/x/y/z.bin"), src),
                Kind::Dir { recursive: false } => (format!("/data/d{g}/sub{i}/z.bin"), src),
                Kind::Glob => (format!("/data/d{g}/g{i}/app.log"), src),
            };
            out.push(Event::open(path, Access::READ, Some(&source)));
        } else {
            let g = rng.below(60);
            let path = match rng.below(3) {
                0 => format!("/data/d{g}/miss{}.txt", rng.below(100_000)),
                1 => format!("/usr/lib/x86_64-linux-gnu/lib{}.so.6", rng.below(1000)),
                _ => format!("/data/d{g}/sub{}/deep/er/file", rng.below(100_000)),
            };
            out.push(Event::open(path, Access::READ, Some(&src)));
        }
    }
    out
}
