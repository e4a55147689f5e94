//! `armor-oci-hook` (examples) as this crate's tests run it: the same
//! [`armor_runtime::hook::hook_main`], built here so that the guest tests can name its path
//! (`CARGO_BIN_EXE_armor-test-oci-hook`) in a container's OCI spec.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = armor_runtime::hook::hook_main(&args, &mut std::io::stdin(), &mut std::io::stderr());
    std::process::exit(code);
}
