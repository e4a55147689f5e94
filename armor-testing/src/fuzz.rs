//! A mutation fuzzer that runs on stable Rust inside `cargo test`: for the parsers that take
//! untrusted bytes (policies, the OCI hook's request, kernel alert and event records).
//!
//! It is coverage-blind (no instrumentation: stable Rust has none to offer), so it leans on its
//! corpus: every input of the target's committed corpus directory (`testdata/fuzz/<target>/`)
//! and the seeds the test passes are run as they are first, then mutated — bits flipped,
//! bytes set, inserted, deleted or duplicated, inputs spliced together, tokens of the format
//! inserted — one to four times each, for a time budget. A target must never panic, whatever
//! the input; one that does fails the test with the input saved under
//! `target/fuzz-crashes/`, the seed and the iteration, so the run is reproduced exactly.
//!
//! - `ARMOR_FUZZ_SECS`: the budget per target (default 3 s: the bounded run CI makes on every
//!   change). A long local run: `ARMOR_FUZZ_SECS=600 cargo test fuzz_`.
//! - `ARMOR_FUZZ_SEED`: the seed (default: the day's date, `YYYYMMDD` in UTC, so CI explores
//!   new inputs each day and a failure is reproduced the same day, or anywhere with the seed
//!   it printed).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The largest input the fuzzer makes.
const MAX_INPUT: usize = 64 << 10;

/// How long one input may take before it counts as a hang.
const SLOW: Duration = Duration::from_secs(2);

/// What a fuzzing run did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// The target's name.
    pub name: String,
    /// The seed the run used.
    pub seed: u64,
    /// Inputs run (the corpus included).
    pub runs: u64,
    /// Corpus inputs and seeds.
    pub corpus: usize,
    /// How long it ran.
    pub elapsed: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "fuzz {}: {} inputs in {:.1} s ({:.0}/s) from {} corpus inputs, seed {} (rerun: \
             ARMOR_FUZZ_SEED={} ARMOR_FUZZ_SECS=…), 0 failures",
            self.name,
            self.runs,
            self.elapsed.as_secs_f64(),
            self.runs as f64 / secs,
            self.corpus,
            self.seed,
            self.seed
        )
    }
}

/// A small, fast generator (xorshift64*): the same seed gives the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap_or(u64::MAX)).unwrap_or(0)
    }
}

/// Today's date as `YYYYMMDD` (UTC), from the system clock.
pub fn date_seed() -> u64 {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    u64::try_from(y * 10_000 + m * 100 + d).unwrap_or(0)
}

/// The committed corpus of target `name`: `testdata/fuzz/<name>/` of the workspace.
pub fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/fuzz")
        .join(name)
}

/// Runs `target` on the corpus of `name` ([`corpus_dir`]) and `seeds`, then on mutations of
/// them for the budget; `tokens` are inserted by one of the mutations (the format's
/// punctuation and keywords).
///
/// # Panics
/// With the saved input, the seed and the iteration, when `target` panics or takes longer
/// than 2 s on an input: the test's failure.
#[allow(
    clippy::panic,
    reason = "a test harness: the panic is the test's failure"
)]
pub fn run(name: &str, seeds: &[Vec<u8>], tokens: &[&[u8]], target: impl Fn(&[u8])) -> Report {
    let budget = std::env::var("ARMOR_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(3), Duration::from_secs_f64);
    let seed = std::env::var("ARMOR_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(date_seed);
    let mut corpus: Vec<Vec<u8>> = seeds.to_vec();
    if let Ok(entries) = std::fs::read_dir(corpus_dir(name)) {
        let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        files.sort();
        corpus.extend(files.iter().filter_map(|f| std::fs::read(f).ok()));
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    println!(
        "fuzz {name}: seed {seed}, budget {budget:?}, {} corpus inputs",
        corpus.len()
    );
    let mut rng = Rng(seed.max(1) ^ 0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    let mut runs = 0u64;
    let check = |input: &[u8], runs: u64| {
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| target(input)));
        let took = t.elapsed();
        let why = match outcome {
            Err(p) => Some(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "a panic".to_owned()),
            ),
            Ok(()) if took > SLOW => Some(format!("took {took:?} (more than {SLOW:?})")),
            Ok(()) => None,
        };
        if let Some(why) = why {
            let saved = save_crash(name, input);
            panic!(
                "fuzz {name}: input {runs} failed: {why}\n  seed {seed} (ARMOR_FUZZ_SEED={seed}), \
                 {} bytes saved to {}",
                input.len(),
                saved.display()
            );
        }
    };
    for input in &corpus {
        check(input, runs);
        runs += 1;
    }
    while start.elapsed() < budget {
        for _ in 0..64 {
            let input = mutate(&corpus, tokens, &mut rng);
            check(&input, runs);
            runs += 1;
        }
    }
    let report = Report {
        name: name.to_owned(),
        seed,
        runs,
        corpus: corpus.len(),
        elapsed: start.elapsed(),
    };
    println!("{report}");
    report
}

/// Writes a failing input to `target/fuzz-crashes/<name>-<hash>.bin`; returns the path.
fn save_crash(name: &str, input: &[u8]) -> PathBuf {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-crashes");
    let path = dir.join(format!("{name}-{h:016x}.bin"));
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(&path, input);
    path
}

/// One input: a corpus input with one to four mutations.
fn mutate(corpus: &[Vec<u8>], tokens: &[&[u8]], rng: &mut Rng) -> Vec<u8> {
    let mut v = corpus
        .get(rng.below(corpus.len()))
        .cloned()
        .unwrap_or_default();
    for _ in 0..=rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            // Flip a bit.
            0 if len > 0 => {
                let i = rng.below(len);
                if let Some(b) = v.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
            // Set a byte to an edge value or a random one.
            1 if len > 0 => {
                let i = rng.below(len);
                let edge = [0u8, 0x7f, 0x80, 0xff, b'\n', b'0', b' '];
                let value = if rng.below(2) == 0 {
                    edge.get(rng.below(edge.len())).copied().unwrap_or(0)
                } else {
                    u8::try_from(rng.below(256)).unwrap_or(0)
                };
                if let Some(b) = v.get_mut(i) {
                    *b = value;
                }
            }
            // Insert random bytes.
            2 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n)
                    .map(|_| u8::try_from(rng.below(256)).unwrap_or(0))
                    .collect();
                v.splice(at..at, bytes);
            }
            // Delete a range.
            3 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                v.drain(at..at + n);
            }
            // Duplicate a range.
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(256));
                let part: Vec<u8> = v.get(at..at + n).map(<[u8]>::to_vec).unwrap_or_default();
                let to = rng.below(v.len() + 1);
                v.splice(to..to, part);
            }
            // Splice with another corpus input.
            5 => {
                let other = corpus
                    .get(rng.below(corpus.len()))
                    .cloned()
                    .unwrap_or_default();
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(other.get(from..).unwrap_or_default());
            }
            // Insert a token of the format.
            6 if !tokens.is_empty() => {
                let t = tokens
                    .get(rng.below(tokens.len()))
                    .copied()
                    .unwrap_or_default();
                let at = rng.below(len + 1);
                v.splice(at..at, t.iter().copied());
            }
            // Truncate.
            _ => {
                let keep = rng.below(len + 1);
                v.truncate(keep);
            }
        }
    }
    v.truncate(MAX_INPUT);
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "test code")]
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs_and_a_panic_is_caught_with_its_input() {
        let corpus = vec![b"abc: [1, 2]".to_vec()];
        let mut a = Rng(7);
        let mut b = Rng(7);
        for _ in 0..200 {
            assert_eq!(
                mutate(&corpus, &[b":"], &mut a),
                mutate(&corpus, &[b":"], &mut b)
            );
        }
        let d = date_seed();
        assert!((20_200_101..21_000_101).contains(&d), "{d}");
        let failed = std::panic::catch_unwind(|| {
            run("self-test", &[b"ok".to_vec()], &[], |input| {
                assert!(!input.is_empty(), "the empty input");
            })
        });
        let msg = failed.unwrap_err();
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains("the empty input") && msg.contains("seed"),
            "{msg}"
        );
    }
}
