//! `armor-agent`: the host agent. Loads KubeArmor policies, watches containerd containers and
//! the host, and streams KubeArmor logs and alerts as JSON lines.
//!
//! ```text
//! armor-agent --policies DIR [--containerd-socket PATH] [--enforcer auto|bpflsm|none]
//!             [--output stdout|FILE]
//! ```
//!
//! The policy directory is re-read when a file in it changes (a bad file keeps the old
//! policies and is reported on stderr). SIGTERM and SIGINT stop it cleanly.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use armor_ebpf::{EventSource, Options};
use armor_runtime::containerd::{ContainerEvent, Containerd};
use armor_runtime::{Runtime, RuntimeConfig, load_policies};
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EnforcerChoice {
    Auto,
    Bpflsm,
    None,
}

#[derive(Parser)]
#[command(
    name = "armor-agent",
    version,
    about = "armor host agent: KubeArmor logs and alerts"
)]
struct Cli {
    /// Directory of KubeArmorPolicy / KubeArmorClusterPolicy / KubeArmorHostPolicy files.
    #[arg(long)]
    policies: PathBuf,
    /// containerd socket to follow containers on.
    #[arg(long)]
    containerd_socket: Option<PathBuf>,
    /// Which enforcer to use.
    #[arg(long, value_enum, default_value = "auto")]
    enforcer: EnforcerChoice,
    /// `stdout` or a file to append JSON lines to.
    #[arg(long, default_value = "stdout")]
    output: String,
}

/// File names, sizes and modification times: what "the directory changed" compares.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, Option<SystemTime>)> {
    let mut out = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if let Ok(m) = e.metadata() {
                out.insert(e.path(), (m.len(), m.modified().ok()));
            }
        }
    }
    out
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing signal handler")?;
    }
    let policy =
        load_policies(&[&cli.policies]).map_err(|e| anyhow::anyhow!("{e}: {}", source_text(&e)))?;
    eprintln!(
        "armor-agent: {} rules from {}",
        policy.rules().len(),
        cli.policies.display()
    );
    match cli.enforcer {
        EnforcerChoice::Bpflsm => bail!(
            "--enforcer bpflsm: the BPF-LSM enforcer is not built into this agent yet; use auto or none"
        ),
        EnforcerChoice::Auto => eprintln!(
            "armor-agent: no kernel enforcer available (BPF-LSM is not built into this agent): \
             falling back to audit-only monitoring; Block rules are reported as `Audit (Block)`, not enforced"
        ),
        EnforcerChoice::None => eprintln!("armor-agent: enforcer none: audit-only monitoring"),
    }
    let mut out: Box<dyn Write> = if cli.output == "stdout" {
        Box::new(std::io::BufWriter::new(std::io::stdout()))
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&cli.output)
                .with_context(|| format!("opening {}", cli.output))?,
        ))
    };
    let mut source =
        EventSource::load(Options::default()).context("loading the eBPF event source")?;
    let controls = source.controls();
    let mut rt = Runtime::new(
        RuntimeConfig::default(),
        policy,
        vec![],
        Some(controls.clone()),
    );
    controls.set_default_visibility(&rt.host_visibility())?;

    let containerd = match &cli.containerd_socket {
        Some(sock) => {
            let c = Containerd::connect(sock)?;
            for info in c.list_all()? {
                if info.pid.is_some() && !info.is_sandbox() {
                    match rt.add_container(&info) {
                        Ok(key) => eprintln!("armor-agent: container {key}"),
                        Err(e) => eprintln!("armor-agent: container {}: {e}", info.id),
                    }
                }
            }
            let rx = c.watch()?;
            Some((c, rx))
        }
        None => None,
    };
    let mut seen = snapshot(&cli.policies);
    let mut last_check = Instant::now();
    let mut last_lost = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        source.poll(Duration::from_millis(200), &mut |e| batch.push(e.clone()))?;
        for e in &batch {
            for record in rt.handle(e, source.process_tree()) {
                serde_json::to_writer(&mut out, &record)?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()?;
        if let Some((_, rx)) = &containerd {
            while let Ok(ev) = rx.try_recv() {
                match ev {
                    ContainerEvent::Started(info) if !info.is_sandbox() => {
                        match rt.add_container(&info) {
                            Ok(key) => eprintln!("armor-agent: container started {key}"),
                            Err(e) => eprintln!("armor-agent: container {}: {e}", info.id),
                        }
                    }
                    ContainerEvent::Stopped { id, .. } => rt.remove_container(&id),
                    ContainerEvent::StreamEnded(reason) => {
                        eprintln!("armor-agent: containerd events ended: {reason}")
                    }
                    _ => {}
                }
            }
        }
        for p in rt.take_problems() {
            eprintln!("armor-agent: {p}");
        }
        if last_check.elapsed() >= Duration::from_secs(1) {
            last_check = Instant::now();
            let now = snapshot(&cli.policies);
            if now != seen {
                seen = now;
                match rt.reload(&[&cli.policies]) {
                    Ok(n) => {
                        controls.set_default_visibility(&rt.host_visibility())?;
                        eprintln!("armor-agent: policies reloaded: {n} rules");
                    }
                    Err(e) => eprintln!(
                        "armor-agent: reload failed, keeping the previous policies: {e}: {}",
                        source_text(&e)
                    ),
                }
            }
            let lost = controls.stats()?.lost;
            if lost != last_lost {
                eprintln!(
                    "armor-agent: {} events lost in the kernel (total {lost})",
                    lost - last_lost
                );
                last_lost = lost;
            }
        }
    }
    out.flush()?;
    eprintln!("armor-agent: stopped");
    Ok(())
}

fn source_text(e: &dyn std::error::Error) -> String {
    e.source().map(ToString::to_string).unwrap_or_default()
}
