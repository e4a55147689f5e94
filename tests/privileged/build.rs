//! Compiles the eBPF programs (`bpf/*.bpf.c`, with clang against the vendored CO-RE `vmlinux.h`)
//! and the static helper binary (`helper/armor-op.c`, with `cc -static`) into `OUT_DIR`.

use std::env;
use std::error::Error;
use std::path::PathBuf;
use std::process::Command;

use armor_bpf_build::{CC_PACKAGES, compile_programs, run};

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    compile_programs(&manifest_dir.join("bpf"), &out_dir)?;

    println!("cargo:rerun-if-env-changed=CC");
    let helper = manifest_dir.join("helper/armor-op.c");
    println!("cargo:rerun-if-changed={}", helper.display());
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let mut cmd = Command::new(&cc);
    cmd.args(["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(out_dir.join("armor-op"))
        .arg(&helper);
    run(&mut cmd, CC_PACKAGES)?;
    Ok(())
}
