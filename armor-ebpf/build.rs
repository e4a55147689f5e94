//! Compiles the eBPF programs (`bpf/*.bpf.c`, with clang against the vendored CO-RE `vmlinux.h`)
//! into `OUT_DIR`.

use std::env;
use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    armor_bpf_build::compile_programs(&manifest_dir.join("bpf"), &out_dir)?;
    Ok(())
}
