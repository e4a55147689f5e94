//! `armor-oci-hook`: an OCI `createRuntime` hook that holds a container's creation until the
//! armor agent (`armor-agent --hook-socket PATH`) has put the container's rules in force.
//!
//! ```text
//! armor-oci-hook [--socket PATH] [--timeout SECS] [--fail-open]
//! ```
//!
//! runc gives it the container's OCI state on stdin; it exits 0 when the agent admits the
//! container and 1 (runc then fails the creation, showing the reason printed on stderr) when
//! the agent refuses it or — without `--fail-open` — cannot be reached or does not answer in
//! time. Everything is [`armor_runtime::hook::hook_main`].
#![forbid(unsafe_code)]

fn main() {
    armor_examples::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = armor_runtime::hook::hook_main(&args, &mut std::io::stdin(), &mut std::io::stderr());
    std::process::exit(code);
}
