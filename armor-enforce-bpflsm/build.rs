//! Compiles the kernel programs (`bpf/*.bpf.c`) with clang against the vendored CO-RE
//! `vmlinux.h`, and a host C program that prints the layout of `bpf/armor_abi.h` for the ABI
//! test.

use std::env;
use std::error::Error;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use armor_bpf_build::{CC_PACKAGES, compile_programs, run};

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let bpf_dir = manifest_dir.join("bpf");
    compile_programs(&bpf_dir, &out_dir)?;

    // The ABI layout as the C compiler sees it.
    println!("cargo:rerun-if-env-changed=CC");
    let layout_c = out_dir.join("abi_layout.c");
    fs::write(&layout_c, LAYOUT_C)?;
    let layout_bin = out_dir.join("abi_layout");
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let mut cmd = Command::new(&cc);
    cmd.arg("-I")
        .arg(&bpf_dir)
        .arg("-o")
        .arg(&layout_bin)
        .arg(&layout_c);
    run(&mut cmd, CC_PACKAGES)?;
    let out = Command::new(&layout_bin).output()?;
    if !out.status.success() {
        return Err(format!("{} failed with {}", layout_bin.display(), out.status).into());
    }
    fs::write(out_dir.join("abi_layout.txt"), out.stdout)?;
    Ok(())
}

const LAYOUT_C: &str = r#"
#include <linux/types.h>
#include <stddef.h>
#include <stdio.h>
#include "armor_abi.h"
#define S(t) printf("%s %zu\n", #t, sizeof(struct t))
#define O(t, f) printf("%s.%s %zu\n", #t, #f, offsetof(struct t, f))
int main(void) {
	S(armor_rule_key); O(armor_rule_key, kind); O(armor_rule_key, seq);
	O(armor_rule_key, target); O(armor_rule_key, source);
	S(armor_rule_val); O(armor_rule_val, rule); O(armor_rule_val, action);
	O(armor_rule_val, flags); O(armor_rule_val, count);
	S(armor_ruleset); O(armor_ruleset, allow_list); O(armor_ruleset, posture);
	O(armor_ruleset, flags);
	S(armor_slot); O(armor_slot, val);
	S(armor_workload); O(armor_workload, alerts_per_sec); O(armor_workload, flags);
	O(armor_workload, rs);
	S(armor_config); O(armor_config, max_cgroup_level);
	S(armor_rate);
	S(armor_dfa_key); O(armor_dfa_key, category);
	S(armor_dfa); O(armor_dfa, nclasses); O(armor_dfa, classes); O(armor_dfa, accept);
	O(armor_dfa, matches); O(armor_dfa, next);
	S(armor_alert); O(armor_alert, rule); O(armor_alert, detail); O(armor_alert, category);
	O(armor_alert, flags); O(armor_alert, path_len); O(armor_alert, source_len);
	O(armor_alert, path); O(armor_alert, source);
	printf("ARMOR_W_UNTIL_EXEC %u\n", ARMOR_W_UNTIL_EXEC);
	return 0;
}
"#;
