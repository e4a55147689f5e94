//! What the agent binaries share on their command line: the enforcer flag, the output, the
//! signals that stop them.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use armor_runtime::{EnforcementOptions, EnforcerChoice};
use clap::builder::TypedValueParser as _;

/// `--enforcer`: one of the runtime's choices, anything else a usage error naming them.
pub fn enforcer_choice() -> impl clap::builder::TypedValueParser<Value = EnforcerChoice> {
    clap::builder::PossibleValuesParser::new(EnforcementOptions::default().choices())
        .try_map(|s| s.parse::<EnforcerChoice>())
}

/// `--output`: `stdout`, or a file the JSON lines are appended to.
pub fn open_output(output: &str) -> Result<Box<dyn Write>> {
    Ok(if output == "stdout" {
        Box::new(std::io::BufWriter::new(std::io::stdout()))
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(output)
                .with_context(|| format!("opening {output}"))?,
        ))
    })
}

/// A flag SIGTERM and SIGINT set: the agent's loop stops cleanly when it is.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handler")?;
    }
    Ok(stop)
}
