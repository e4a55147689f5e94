//! Build-script support for armor's kernel programs.
//!
//! Every crate with eBPF programs keeps them as `bpf/*.bpf.c` (GPL-2.0, CO-RE) and compiles
//! them from its `build.rs` with [`compile_programs`]: clang for the `bpf` target against the
//! `vmlinux.h` vendored in this crate (`include/`, from `bpftool btf dump file
//! /sys/kernel/btf/vmlinux format c`), one object per source in `OUT_DIR`, which the crate
//! embeds with `aya::include_bytes_aligned!`. [`run`] runs any other build tool with the same
//! error reporting: a missing tool names the Debian packages to install.
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), armor_bpf_build::BuildError> {
//!     let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
//!     let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
//!     let objects = armor_bpf_build::compile_programs(&dir.join("bpf"), &out)?;
//!     assert!(objects.iter().all(|o| o.extension().is_some_and(|e| e == "o")));
//!     Ok(())
//! }
//! ```
#![forbid(unsafe_code)]

use std::env;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the packages that provide clang, llvm and the libbpf headers are called on Debian.
pub const CLANG_PACKAGES: &str = "apt-get install clang llvm libbpf-dev";
/// What the packages that provide a C compiler for the host are called on Debian.
pub const CC_PACKAGES: &str = "apt-get install gcc libc6-dev";

/// Why a build step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The tool is not installed.
    #[error("{tool} not found: {hint}")]
    Missing {
        /// The program that was run.
        tool: String,
        /// The packages to install.
        hint: String,
    },
    /// The tool ran and failed (its own messages went to the build output).
    #[error("{command} failed with {status} (missing packages? {hint})")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The packages that may be missing.
        hint: String,
    },
    /// The tool could not be started, or a directory could not be read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A source file name that is not UTF-8.
    #[error("non-UTF-8 file name {}", .0.display())]
    FileName(PathBuf),
}

/// The directory holding the vendored `vmlinux.h`.
pub fn vmlinux_include() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

/// Compiles every `*.bpf.c` in `bpf_dir` (in name order) into `out_dir/<stem>.bpf.o` with
/// `$CLANG` (default `clang`): `-O2 -g -target bpf -D__TARGET_ARCH_x86 -Wall -Werror`, with
/// `vmlinux.h` and `bpf_dir` on the include path. Tells cargo to build again when the directory,
/// a file in it, `vmlinux.h` or `CLANG` change. Returns the objects written.
pub fn compile_programs(bpf_dir: &Path, out_dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
    compile_programs_with(bpf_dir, &[], out_dir)
}

/// [`compile_programs`] with `includes` on the include path too (after `bpf_dir`), each watched
/// for changes like `bpf_dir`: for programs that share another crate's headers.
pub fn compile_programs_with(
    bpf_dir: &Path,
    includes: &[&Path],
    out_dir: &Path,
) -> Result<Vec<PathBuf>, BuildError> {
    let include = vmlinux_include();
    for dir in includes {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        include.join("vmlinux.h").display()
    );
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    let io = |what: String| move |source| BuildError::Io { what, source };
    let mut files: Vec<PathBuf> = std::fs::read_dir(bpf_dir)
        .map_err(io(format!("cannot read {}", bpf_dir.display())))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io(format!("cannot read {}", bpf_dir.display())))?;
    files.sort();
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let mut objects = Vec::new();
    for f in &files {
        // Headers too: a change to one rebuilds every program.
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| BuildError::FileName(f.clone()))?;
        let Some(stem) = name.strip_suffix(".bpf.c") else {
            continue;
        };
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
        .arg(bpf_dir);
        for dir in includes {
            cmd.arg("-I").arg(dir);
        }
        cmd.arg("-c").arg(f).arg("-o").arg(&obj);
        // clang's own error names a missing header (bpf/bpf_helpers.h comes from libbpf-dev).
        run(&mut cmd, CLANG_PACKAGES)?;
        objects.push(obj);
    }
    Ok(objects)
}

/// Runs `cmd`; a missing program or a failure names `packages` (what to install).
pub fn run(cmd: &mut Command, packages: &str) -> Result<(), BuildError> {
    match cmd.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(BuildError::Failed {
            command: format!("{cmd:?}"),
            status,
            hint: packages.to_owned(),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(BuildError::Missing {
            tool: cmd.get_program().to_string_lossy().into_owned(),
            hint: packages.to_owned(),
        }),
        Err(source) => Err(BuildError::Io {
            what: format!("cannot run {cmd:?}"),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn the_vendored_header_is_where_the_programs_look() {
        assert!(vmlinux_include().join("vmlinux.h").is_file());
    }

    #[test]
    fn a_missing_tool_names_the_packages() {
        let e = run(&mut Command::new("armor-no-such-tool"), CC_PACKAGES).unwrap_err();
        assert_eq!(
            e.to_string(),
            "armor-no-such-tool not found: apt-get install gcc libc6-dev"
        );
        let e = run(&mut Command::new("false"), CLANG_PACKAGES).unwrap_err();
        assert!(
            e.to_string().ends_with(
                "failed with exit status: 1 (missing packages? apt-get install clang llvm libbpf-dev)"
            ),
            "{e}"
        );
    }

    #[test]
    fn programs_compile_into_one_object_each_and_headers_are_skipped() {
        let dir = std::env::temp_dir().join(format!("armor-bpf-build-{}", std::process::id()));
        let src = dir.join("bpf");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("shared.h"), "#define ANSWER 42\n").unwrap();
        std::fs::write(
            src.join("tiny.bpf.c"),
            "#include \"vmlinux.h\"\n#include \"shared.h\"\n\
             __attribute__((section(\"xdp\"), used)) int tiny(struct xdp_md *ctx) { return ANSWER & 2; }\n\
             char LICENSE[] __attribute__((section(\"license\"), used)) = \"GPL\";\n",
        )
        .unwrap();
        let objects = compile_programs(&src, &dir).unwrap();
        assert_eq!(objects, vec![dir.join("tiny.bpf.o")]);
        assert!(std::fs::metadata(&objects[0]).unwrap().len() > 0);
        std::fs::write(src.join("bad.bpf.c"), "int broken(void) { return }\n").unwrap();
        let e = compile_programs(&src, &dir).unwrap_err();
        assert!(matches!(e, BuildError::Failed { .. }), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
