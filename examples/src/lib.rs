//! What the example binaries share: how they show the libraries' diagnostics.

#![forbid(unsafe_code)]

pub mod cli;
pub mod k8s;

/// The environment variable that sets what the binaries log to stderr through `tracing`
/// (`warn` when unset): a level (`debug`) or per-crate directives (`armor_core=debug,warn`).
pub const LOG_ENV: &str = "ARMOR_LOG";

/// Shows the `tracing` events of armor's libraries (a glob that cannot be compiled, a glob set
/// split because it is too large) on stderr, filtered by [`LOG_ENV`]. An unparsable filter is
/// reported once and `warn` is used. Without this, those events would go nowhere.
pub fn init_logging() {
    let filter = match std::env::var(LOG_ENV) {
        Ok(v) => match tracing_subscriber::EnvFilter::try_new(&v) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{LOG_ENV}=`{v}` is not a log filter ({e}); using `warn`");
                tracing_subscriber::EnvFilter::new("warn")
            }
        },
        Err(_) => tracing_subscriber::EnvFilter::new("warn"),
    };
    let _already = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
