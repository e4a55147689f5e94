//! Compiles the in-kernel bench program (`bpf/armor_bench.bpf.c`: the BPF-LSM matching code
//! of `armor-enforce-bpflsm/bpf/armor_match.h` in an XDP program) with clang against the CO-RE
//! `vmlinux.h`.

use std::env;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let lsm = manifest.join("../armor-enforce-bpflsm/bpf");
    armor_bpf_build::compile_programs_with(&manifest.join("bpf"), &[&lsm], &out)?;
    Ok(())
}
