//! Compiles the eBPF programs (`bpf/*.bpf.c`, with clang against the vendored CO-RE `vmlinux.h`)
//! into `OUT_DIR`.

use std::env;
use std::error::Error;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

const CLANG_HINT: &str = "clang not found: apt-get install clang llvm libbpf-dev";

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let include = manifest_dir.join("../bpf/include");
    println!(
        "cargo:rerun-if-changed={}",
        include.join("vmlinux.h").display()
    );
    println!("cargo:rerun-if-env-changed=CLANG");

    let bpf_dir = manifest_dir.join("bpf");
    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    let mut sources: Vec<PathBuf> = fs::read_dir(&bpf_dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    sources.retain(|p| p.to_string_lossy().ends_with(".bpf.c"));
    println!(
        "cargo:rerun-if-changed={}",
        bpf_dir.join("armor_event.h").display()
    );
    sources.sort();
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    for src in &sources {
        println!("cargo:rerun-if-changed={}", src.display());
        let stem = file_stem(src)?;
        let obj = out_dir.join(format!("{stem}.bpf.o"));
        let mut cmd = Command::new(&clang);
        cmd.args([
            "-O2",
            "-g",
            "-target",
            "bpf",
            "-D__TARGET_ARCH_x86",
            "-Wall",
            "-Werror",
        ])
        .arg("-I")
        .arg(&include)
        .arg("-I")
        .arg(&bpf_dir)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(&obj);
        // clang's own error names a missing header (bpf/bpf_helpers.h comes from libbpf-dev).
        run(
            &mut cmd,
            CLANG_HINT,
            "apt-get install clang llvm libbpf-dev",
        )?;
    }

    Ok(())
}

fn file_stem(src: &Path) -> Result<String, Box<dyn Error>> {
    let name = src
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("non-UTF-8 file name {}", src.display()))?;
    Ok(name.trim_end_matches(".bpf.c").to_owned())
}

fn run(cmd: &mut Command, missing_hint: &str, failure_hint: &str) -> Result<(), Box<dyn Error>> {
    match cmd.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => {
            Err(format!("{cmd:?} failed with {status} (missing packages? {failure_hint})").into())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Err(missing_hint.into()),
        Err(e) => Err(format!("cannot run {cmd:?}: {e}").into()),
    }
}
