//! What the agent binaries share on their command line: the enforcement flags, the output,
//! the signals that stop them.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use armor_runtime::agent::AgentOptions;
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

/// The flags both agents take: containerd, the OCI hook, the enforcer, failing closed, the
/// output (`#[command(flatten)]`).
#[derive(Debug, clap::Args)]
#[non_exhaustive]
pub struct AgentFlags {
    /// containerd socket to follow containers on.
    #[arg(long)]
    pub containerd_socket: Option<std::path::PathBuf>,
    /// Answer the OCI hook (armor-oci-hook) on this socket: containers wait for their rules.
    #[arg(long, value_name = "PATH", requires = "containerd_socket")]
    pub hook_socket: Option<std::path::PathBuf>,
    /// Which enforcer to use (see below).
    #[arg(long, default_value = "auto", value_parser = enforcer_choice())]
    pub enforcer: EnforcerChoice,
    /// Where the AppArmor enforcer writes its profiles.
    #[arg(long, default_value = "/var/lib/armor/apparmor")]
    pub apparmor_dir: std::path::PathBuf,
    /// Fail closed: refuse to start, admit a container or take a policy change when a rule would
    /// only be reported, not enforced by the kernel (see below).
    #[arg(long)]
    pub require_enforcement: bool,
    /// `stdout` or a file to append JSON lines to.
    #[arg(long, default_value = "stdout")]
    pub output: String,
}

impl AgentFlags {
    /// `options` with these flags.
    pub fn apply(&self, options: AgentOptions) -> AgentOptions {
        let mut options = options
            .enforcer(self.enforcer.clone())
            .enforcement(EnforcementOptions::default().apparmor_dir(&self.apparmor_dir))
            .require_enforcement(self.require_enforcement);
        if let Some(sock) = &self.containerd_socket {
            options = options.containerd_socket(sock);
        }
        if let Some(sock) = &self.hook_socket {
            options = options.hook_socket(sock);
        }
        options
    }

    /// The agent's error, naming `--enforcer` when the enforcer chosen does not work here.
    pub fn explain(&self, e: armor_runtime::Error) -> anyhow::Error {
        match &e {
            armor_runtime::Error::Enforcer { .. } => {
                anyhow::Error::new(e).context(format!("--enforcer {}", self.enforcer))
            }
            _ => anyhow::Error::new(e),
        }
    }
}
