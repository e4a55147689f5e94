//! The syscall filter's cost on the host: a tight loop of `getppid` (a syscall none of
//! armor's programs traces), timed per call with
//!
//! * nothing attached (the baseline),
//! * the bare raw syscall tracepoints (`bare_sys_enter`/`bare_sys_exit` of
//!   `benches/bpf/armor_bench.bpf.c`: attached programs that return at once),
//! * armor's event source with a filter that names another syscall (`ptrace`): the cost of a
//!   syscall no rule names, the goal being at most 20 ns over the bare tracepoints,
//! * the same with `getppid` named by another workload's filter: the caller's workload is
//!   looked up and its filter read, and nothing is sent.
//!
//! Usage: `cargo bench -p armor-benches --bench syscall_filter -- [BATCHES] [CALLS]` as root
//! (default 9 batches of 1,000,000 calls). Prints each case's median ns per call over the
//! batches and the filter's cost over the bare tracepoints. Not a criterion bench: each case
//! needs programs attached around it, and the machine is shared, so every case is measured in
//! the same run and compared with the others.

use std::error::Error;
use std::time::Instant;

use armor_ebpf::{EventSource, Options};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf};

static BENCH_OBJ: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/armor_bench.bpf.o"));

/// ns per `getppid` over `calls` calls.
fn per_call(calls: u32) -> f64 {
    let t = Instant::now();
    let mut sum = 0u64;
    for _ in 0..calls {
        sum = sum.wrapping_add(u64::from(std::os::unix::process::parent_id()));
    }
    std::hint::black_box(sum);
    t.elapsed().as_secs_f64() * 1e9 / f64::from(calls)
}

/// The median of `batches` batches of `calls` calls.
fn median(batches: u32, calls: u32) -> f64 {
    let mut v: Vec<f64> = (0..batches).map(|_| per_call(calls)).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn bare(btf: &Btf) -> Result<Ebpf, Box<dyn Error>> {
    let mut ebpf = Ebpf::load(BENCH_OBJ)?;
    for (name, tp) in [
        ("bare_sys_enter", "sys_enter"),
        ("bare_sys_exit", "sys_exit"),
    ] {
        let p: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or(format!("no program {name}"))?
            .try_into()?;
        p.load(tp, btf)?;
        p.attach()?;
    }
    Ok(ebpf)
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .map(|a| a.parse::<u32>());
    let batches = args.next().transpose()?.unwrap_or(9);
    let calls = args.next().transpose()?.unwrap_or(1_000_000);
    if !std::fs::read_to_string("/proc/self/status")?
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    {
        println!("syscall_filter: skipped: attaching programs needs root");
        return Ok(());
    }
    let btf = Btf::from_sys_fs()?;
    let ptrace = armor_core::syscalls::number("ptrace").ok_or("ptrace")?;
    let getppid = armor_core::syscalls::number("getppid").ok_or("getppid")?;

    let baseline = median(batches, calls);
    let bare_ns = {
        let _attached = bare(&btf)?;
        median(batches, calls)
    };
    let (miss, elsewhere) = {
        let source = EventSource::load(Options::default())?;
        let controls = source.controls();
        // A cgroup id no task is in: another workload.
        controls.set_syscalls(u64::MAX - 1, &[ptrace])?;
        let miss = median(batches, calls);
        controls.set_syscalls(u64::MAX - 1, &[ptrace, getppid])?;
        let elsewhere = median(batches, calls);
        (miss, elsewhere)
    };
    println!("syscall_filter: getppid, median of {batches} batches of {calls} calls, ns per call");
    println!("  nothing attached                              {baseline:8.1}");
    println!("  bare raw tracepoints (enter + exit)           {bare_ns:8.1}");
    println!("  armor, syscall named by no rule               {miss:8.1}");
    println!("  armor, syscall named by another workload only {elsewhere:8.1}");
    println!(
        "  filter cost over the bare tracepoints: {:.1} ns (goal <= 20), {:.1} ns when another \
         workload names the syscall",
        miss - bare_ns,
        elsewhere - bare_ns
    );
    Ok(())
}
