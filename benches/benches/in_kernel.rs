//! In-kernel decision cost on the host: the matching code of the LSM programs compiled into an
//! XDP program (`benches/bpf/armor_bench.bpf.c`) and timed with `BPF_PROG_TEST_RUN` repeats
//! through the bpf syscall (aya's `TestRun`: the kernel measures the average per run), next to
//! a KubeArmor-style baseline doing one 400-byte string-key lookup per `/` prefix.
//!
//! Usage: `cargo bench -p armor-benches --bench in_kernel -- [BATCHES] [REPEAT]` as root
//! (default 15 batches of 200000). Not a criterion bench: the kernel times each batch itself,
//! and the figures it prints are the medians of those kernel-measured means.
//! Prints, for 10, 1k and 10k rules, the median of the batch means for a 6-component path (and
//! armor's lowest and highest batch mean); then
//! 10k rules plus 50 globs (file glob automaton walked over the path, matching globs probed).
//! Each case times armor's program, the baseline and an empty program, one after the other. The
//! programs read their input from an array map (`bench_input`), not from the test packet.

use std::error::Error;
use std::fmt::Write as _;

use armor_core::{CompiledPolicy, Container, PolicySet, Posture, Workload};
use armor_enforce_bpflsm::abi::{DfaKey, DfaVal, RuleKey, RuleVal, SlotVal, WorkloadVal};
use armor_enforce_bpflsm::compile_with;
use armor_enforce_bpflsm::filter::Filter;
use armor_enforce_bpflsm::table::Table;
use aya::maps::{Array, HashMap, MapData};
use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader, Pod};

static BENCH_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/armor_bench.bpf.o"));

/// The path every run decides (6 components).
const PATH: &str = "/usr/share/app/conf/v1/app.conf";
const HASH_KEY: u64 = 0x2545_f491_4f6c_dd1d;

/// Value of `bench_input` (`struct bench_input`): `size` bytes of input, zero-padded.
#[derive(Clone, Copy)]
#[repr(C)]
struct BenchInput {
    size: u32,
    pad: u32,
    data: [u8; 520],
}

// SAFETY: integers and an array of bytes, no padding; every bit pattern is valid.
#[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
unsafe impl Pod for BenchInput {}

fn bench_input(bytes: &[u8]) -> Result<BenchInput, Box<dyn Error>> {
    if bytes.len() > 255 {
        return Err(format!("bench input of {} bytes: at most 255", bytes.len()).into());
    }
    let mut v = BenchInput {
        size: u32::try_from(bytes.len())?,
        pad: 0,
        data: [0; 520],
    };
    for (d, s) in v.data.iter_mut().zip(bytes) {
        *d = *s;
    }
    Ok(v)
}

/// KubeArmor's key: `{path[200], source[200]}`.
#[derive(Clone, Copy)]
#[repr(C)]
struct KaKey {
    path: [u8; 200],
    source: [u8; 200],
}

// SAFETY: a plain array of bytes; every bit pattern is valid.
#[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
unsafe impl Pod for KaKey {}

fn ka_key(path: &str) -> KaKey {
    let mut k = KaKey {
        path: [0; 200],
        source: [0; 200],
    };
    for (d, s) in k.path.iter_mut().zip(path.as_bytes()) {
        *d = *s;
    }
    k
}

/// A policy of `n` rules: `dirs` recursive directory rules spread over depths 1 to 5, the rest
/// exact paths; one directory rule covers `PATH`. Plus `globs` globs, two of which match `PATH`
/// (so the automaton walks every byte of it).
fn policy(n: usize, dirs: usize, globs: usize) -> String {
    let mut y = String::from(
        "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: bench, namespace: b}\nspec:\n  selector: {matchLabels: {app: b}}\n  file:\n    matchDirectories:\n    - dir: /usr/share/app/\n      recursive: true\n",
    );
    let prefixes = [
        "",
        "/usr",
        "/usr/share",
        "/usr/share/app",
        "/usr/share/app/conf",
    ];
    for i in 1..dirs {
        let p = prefixes.get(i % prefixes.len()).copied().unwrap_or("");
        let _ = writeln!(y, "    - dir: {p}/d{i}/\n      recursive: true");
    }
    if n > dirs {
        y.push_str("    matchPaths:\n");
        for i in 0..n - dirs {
            let _ = writeln!(y, "    - path: /srv/data{}/f{i}.txt", i % 97);
        }
    }
    if globs > 0 {
        y.push_str("    matchPatterns:\n    - pattern: /usr/share/*/conf/**\n    - pattern: /usr/**/*.conf\n");
        for i in 2..globs {
            let _ = writeln!(y, "    - pattern: /srv/g{i}/**/*.log");
        }
    }
    y.push_str("  action: Block\n");
    y
}

/// The path as the prefix pass reads it, root first: `[n, len_1, off_1, .. len_n, off_n,
/// name_1 .. name_n]`, where `off_d` is where name d starts in the input.
fn walk_packet(path: &str) -> Result<Vec<u8>, Box<dyn Error>> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut p = vec![u8::try_from(comps.len())?];
    let mut off = 1 + 2 * comps.len();
    for c in &comps {
        p.push(u8::try_from(c.len())?);
        p.push(u8::try_from(off)?);
        off += c.len();
    }
    for c in &comps {
        p.extend_from_slice(c.as_bytes());
    }
    Ok(p)
}

/// One batch: the kernel-measured average (ns) of `repeat` runs of `prog`, and its return
/// value. The programs read their input from `bench_input`; a test run still needs a packet of
/// at least an Ethernet header.
fn batch(prog: &Xdp, repeat: u32) -> Result<(f64, i64), Box<dyn Error>> {
    let packet = [0u8; 14];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(&packet);
    opts.repeat = repeat;
    let r = prog.test_run(opts)?;
    #[expect(
        clippy::cast_precision_loss,
        reason = "a per-run average in nanoseconds: far below 2^52"
    )]
    let mean = r.duration.as_nanos() as f64;
    Ok((mean, i64::from(r.return_value)))
}

/// What `time` measured for one program: its batch means' median, lowest and highest, and its
/// last return value.
struct Figure {
    median: f64,
    low: f64,
    high: f64,
    ret: i64,
}

/// The batch means of each pinned program (`batches` of them, one program after the other).
/// (Interleaving the programs' batches was tried: it made armor's figure 30–50 ns worse,
/// presumably because the baseline's 400-byte keys and large map evict armor's maps between
/// batches; the cause was not measured.) The lowest and highest batch show the machine's
/// phases: on our host the batches of one loaded program sit near one of two levels, switching
/// every few seconds on either CPU, so the median says which phase dominated the run.
fn time(progs: &[&Xdp], batches: usize, repeat: u32) -> Result<Vec<Figure>, Box<dyn Error>> {
    let mut means = vec![Vec::new(); progs.len()];
    let mut rets = vec![-1; progs.len()];
    for ((prog, m), r) in progs.iter().zip(&mut means).zip(&mut rets) {
        for _ in 0..batches {
            let (mean, ret) = batch(prog, repeat)?;
            m.push(mean);
            *r = ret;
        }
    }
    means
        .into_iter()
        .zip(rets)
        .map(|(mut m, ret)| {
            m.sort_by(f64::total_cmp);
            let median = m.get(m.len() / 2).copied().ok_or("no batches")?;
            let low = m.first().copied().ok_or("no batches")?;
            let high = m.last().copied().ok_or("no batches")?;
            Ok(Figure {
                median,
                low,
                high,
                ret,
            })
        })
        .collect()
}

fn run(
    (n, dirs, globs): (usize, usize, usize),
    batches: usize,
    repeat: u32,
) -> Result<(), Box<dyn Error>> {
    let set = PolicySet::parse(&policy(n, dirs, globs), "bench.yaml")?;
    let compiled = CompiledPolicy::build(&set)?;
    let w = Workload::Container(Container::new("b", "b").label("app", "b"));
    let rules = compiled.rule_set(&w, Posture::default());
    // The largest automaton the kernel value holds, so the glob case is compiled whole.
    let artifact = compile_with("bench", &rules, 4096);
    if !artifact.unenforceable_rules().is_empty() {
        return Err(format!(
            "{} rules not enforced in kernel: {:?}",
            artifact.unenforceable_rules().len(),
            artifact.unenforceable_rules().first()
        )
        .into());
    }
    let states: usize = artifact.globs.iter().map(|g| g.dfa.states()).sum();
    let enc = artifact.encode(1, HASH_KEY);
    let entries = u32::try_from(enc.rules.len() + 16)?;
    // The rule table sized as the enforcer sizes one for these entries alone.
    let mut table = Table::for_entries(enc.rules.len());
    let placed = table.place_all(&enc.rules);
    let mask = table.mask();
    // The filter sized as the enforcer's default one (2^21 bits), with these entries alone.
    let mut filter = Filter::new(armor_enforce_bpflsm::Config::default().filter_bits);
    let words = filter.add(enc.rules.iter().map(|(k, _)| k));
    let filter_mask = filter.mask();
    let mut ebpf: Ebpf = EbpfLoader::new()
        .override_global("armor_table_mask", &mask, true)
        .map_max_entries("armor_table", table.slots())
        .override_global("armor_filter_mask", &filter_mask, true)
        .map_max_entries("armor_filter", filter.words())
        .map_max_entries("armor_rules", entries)
        .map_max_entries("armor_dfas", 4)
        .map_max_entries("ka_rules", u32::try_from(n + 16)?)
        .load(BENCH_OBJ)?;
    {
        let mut m: HashMap<&mut MapData, RuleKey, RuleVal> =
            HashMap::try_from(ebpf.map_mut("armor_rules").ok_or("armor_rules")?)?;
        for (k, v) in &placed.map {
            m.insert(k, v, 0)?;
        }
    }
    {
        let mut m: Array<&mut MapData, SlotVal> =
            Array::try_from(ebpf.map_mut("armor_table").ok_or("armor_table")?)?;
        for (i, v) in &placed.slots {
            m.set(*i, *v, 0)?;
        }
    }
    {
        let mut m: Array<&mut MapData, u64> =
            Array::try_from(ebpf.map_mut("armor_filter").ok_or("armor_filter")?)?;
        for (i, w) in &words {
            m.set(*i, *w, 0)?;
        }
    }
    {
        let mut m: Array<&mut MapData, WorkloadVal> =
            Array::try_from(ebpf.map_mut("bench_workload").ok_or("bench_workload")?)?;
        let mut w = WorkloadVal::default();
        w.ruleset = 1;
        w.meta = enc.meta;
        m.set(0, w, 0)?;
    }
    {
        let mut m: HashMap<&mut MapData, DfaKey, DfaVal> =
            HashMap::try_from(ebpf.map_mut("armor_dfas").ok_or("armor_dfas")?)?;
        for (k, v) in &enc.dfas {
            m.insert(k, v.as_ref(), 0)?;
        }
    }
    {
        let mut m: Array<&mut MapData, u64> =
            Array::try_from(ebpf.map_mut("bench_config").ok_or("bench_config")?)?;
        m.set(0, HASH_KEY, 0)?;
    }
    {
        let mut m: Array<&mut MapData, BenchInput> =
            Array::try_from(ebpf.map_mut("bench_input").ok_or("bench_input")?)?;
        m.set(0, bench_input(&walk_packet(PATH)?)?, 0)?;
        m.set(1, bench_input(PATH.as_bytes())?, 0)?;
    }
    {
        let mut m: HashMap<&mut MapData, KaKey, u32> =
            HashMap::try_from(ebpf.map_mut("ka_rules").ok_or("ka_rules")?)?;
        for r in rules.rules() {
            let p = match &r.target {
                armor_core::Target::Path(p) => p.clone(),
                armor_core::Target::Directory { dir, .. } => dir.clone(),
                _ => continue,
            };
            m.insert(ka_key(&p), 1, 0)?;
        }
    }
    let names = ["armor_bench", "kubearmor_baseline", "bench_null"];
    for name in names {
        let prog: &mut Xdp = ebpf.program_mut(name).ok_or(name)?.try_into()?;
        prog.load()?;
    }
    let mut progs = Vec::new();
    for name in names {
        let prog: &Xdp = ebpf.program(name).ok_or(name)?.try_into()?;
        progs.push(prog);
    }
    let figures = time(&progs, batches, repeat);
    if let [arm, ka, null] = figures?.as_slice() {
        let (a, k, z) = (arm.median, ka.median, null.median);
        println!(
            "{n:>6} rules ({dirs:>4} dirs, {globs:>3} globs: {states} automaton states, {} entries, {} in the table): armor {a:>6.1} ns (batches {:.0}–{:.0}, xdp {}), kubearmor-style {k:>7.1} ns (xdp {}), speed-up {:.1}x; empty program {z:.1} ns, so net armor {:.1} ns vs {:.1} ns ({:.1}x)",
            enc.rules.len(),
            placed.in_table(),
            arm.low,
            arm.high,
            xdp(arm.ret),
            xdp(ka.ret),
            k / a,
            a - z,
            k - z,
            (k - z) / (a - z).max(1.0)
        );
    }
    Ok(())
}

fn xdp(ret: i64) -> &'static str {
    match ret {
        1 => "DROP=block",
        2 => "PASS=allow",
        _ => "other",
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    // `cargo bench` passes `--bench`; the numbers are ours.
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let batches: usize = args.next().map_or(Ok(15), |a| a.parse())?;
    let repeat: u32 = args.next().map_or(Ok(200_000), |a| a.parse())?;
    println!(
        "path `{PATH}` (6 components); median of {batches} batch means of {repeat} BPF_PROG_TEST_RUN repeats (XDP, host kernel)"
    );
    [
        (10, 1, 0),
        (1_000, 1_000, 0),
        (10_000, 1_000, 0),
        (10_000, 1_000, 50),
    ]
    .into_iter()
    .try_for_each(|case| run(case, batches, repeat))
}
