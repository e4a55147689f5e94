//! `armor-agent`: the host agent. Loads KubeArmor policies, watches containerd containers and
//! the host, enforces with the kernel enforcer it finds, and streams KubeArmor logs and alerts
//! as JSON lines.
//!
//! ```text
//! armor-agent --policies DIR [--containerd-socket PATH] [--enforcer auto|bpflsm|apparmor|none]
//!             [--apparmor-dir DIR] [--output stdout|FILE]
//! ```
//!
//! Everything but flag parsing and the output loop is `armor_runtime`: the enforcer choice is
//! [`armor_runtime::Enforcement::select`], containers follow
//! [`armor_runtime::Runtime::container_event`]. The policy directory is re-read when a file in
//! it changes (a bad file keeps the old policies and is reported on stderr). SIGTERM and SIGINT
//! stop it cleanly.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use armor_ebpf::{EventSource, Options};
use armor_runtime::containerd::{ContainerEvent, Containerd};
use armor_runtime::{
    ContainerChange, Enforcement, EnforcementOptions, EnforcerChoice, Runtime, RuntimeConfig,
    load_policies,
};
use clap::Parser;

const AFTER_HELP: &str = "\
Enforcers (--enforcer):
  auto      BPF-LSM if its programs load here, else AppArmor if the kernel has it and
            apparmor_parser compiles a profile, else audit-only monitoring (the agent says
            which and why on stderr)
  bpflsm    BPF-LSM or exit with the reason: enforces on the host and on every container it
            follows, by cgroup; containerd containers get their rules on task create, before
            their entrypoint runs (enforced from the first instruction when the agent handles
            the create event before the task is started)
  apparmor  AppArmor or exit with the reason: loads one profile per workload into
            --apparmor-dir, a container's as soon as containerd defines it (before its task,
            whose creation applies the profile); a container is enforced only when its OCI
            spec names its profile (process.apparmorProfile; Kubernetes:
            securityContext.appArmorProfile {type: Localhost, localhostProfile:
            armor.<ns>_<pod>_<container>_<hash>}, named on stderr), the host only for
            processes started under its profile (aa-exec -p)
  none      audit-only monitoring

Workloads an enforcer does not cover are monitored: their Block rules are reported as
`Audit (Block)` alerts, not enforced. Kernel denials come out as Alerts with Enforcer
\"BPFLSM\" or \"AppArmor\", Action Block, and the container's ContainerID/ContainerName/
NamespaceName/PodName/Labels.";

#[derive(Parser)]
#[command(
    name = "armor-agent",
    version,
    about = "armor host agent: KubeArmor policies enforced and monitored, KubeArmor logs and alerts",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Directory of KubeArmorPolicy / KubeArmorClusterPolicy / KubeArmorHostPolicy files.
    #[arg(long)]
    policies: PathBuf,
    /// containerd socket to follow containers on.
    #[arg(long)]
    containerd_socket: Option<PathBuf>,
    /// Which enforcer to use: auto, bpflsm, apparmor or none (see below).
    #[arg(long, default_value = "auto")]
    enforcer: EnforcerChoice,
    /// Where the AppArmor enforcer writes its profiles.
    #[arg(long, default_value = "/var/lib/armor/apparmor")]
    apparmor_dir: PathBuf,
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
    let options = EnforcementOptions::default().apparmor_dir(&cli.apparmor_dir);
    let enforcement = Enforcement::select(cli.enforcer, &options)
        .with_context(|| format!("--enforcer {}", cli.enforcer))?;
    eprintln!("armor-agent: {}", enforcement.summary());
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
    let mut rt = Runtime::with_enforcement(
        RuntimeConfig::default(),
        policy,
        enforcement,
        Some(controls.clone()),
    );
    controls.set_default_visibility(&rt.host_visibility())?;
    let apparmor =
        rt.enforcement().and_then(Enforcement::name) == Some(armor_runtime::enforcement::APPARMOR);
    let report = |id: &str, change| report(apparmor, id, change);

    let containerd = match &cli.containerd_socket {
        Some(sock) => {
            let c = Containerd::connect(sock)?;
            // Subscribe first: a container created while we enumerate is not missed.
            let rx = c.watch()?;
            // Running (or created) tasks are tracked; containers without a task yet get what
            // must be loaded ahead of it (AppArmor profiles).
            for info in c.list_all()? {
                let id = info.id.clone();
                let ev = if info.pid.is_some() {
                    ContainerEvent::Created(info)
                } else {
                    ContainerEvent::Defined(info)
                };
                report(&id, rt.container_event(&ev));
            }
            for name in rt.sweep_stale_profiles() {
                eprintln!("armor-agent: removed stale AppArmor profile {name}");
            }
            Some((c, rx))
        }
        None => None,
    };
    for p in rt.take_problems() {
        eprintln!("armor-agent: {p}");
    }
    // From here the host's and the existing containers' rules are in force.
    eprintln!(
        "armor-agent: ready: {} ({} containers)",
        rt.enforcement().and_then(Enforcement::name).map_or_else(
            || "audit-only".to_string(),
            |n| format!("enforcing with {n}")
        ),
        rt.containers().len()
    );
    // Following containerd, poll briefly so a created task gets its rules before its start.
    let poll = Duration::from_millis(if containerd.is_some() { 10 } else { 200 });
    let mut seen = snapshot(&cli.policies);
    let mut last_check = Instant::now();
    let mut last_lost = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        source.poll(poll, &mut |e| batch.push(e.clone()))?;
        // Lifecycle first: a created container gets its rules before anything else waits.
        if let Some((_, rx)) = &containerd {
            while let Ok(ev) = rx.try_recv() {
                match &ev {
                    ContainerEvent::Defined(info)
                    | ContainerEvent::Created(info)
                    | ContainerEvent::Started(info) => {
                        report(&info.id, rt.container_event(&ev));
                    }
                    ContainerEvent::StreamEnded(reason) => {
                        eprintln!("armor-agent: containerd events ended: {reason}")
                    }
                    _ => report("", rt.container_event(&ev)),
                }
            }
        }
        let mut records = rt.enforcer_records(source.process_tree());
        for e in &batch {
            records.extend(rt.handle(e, source.process_tree()));
        }
        for record in &records {
            serde_json::to_writer(&mut out, record)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
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

/// Says on stderr what a lifecycle event did to the tracked containers.
fn report(apparmor: bool, id: &str, change: armor_runtime::Result<ContainerChange>) {
    match change {
        Ok(ContainerChange::Tracked(key)) if apparmor => {
            let profile = armor_runtime::enforcement::apparmor_profile_name(&key.name);
            eprintln!("armor-agent: container {key} (AppArmor profile {profile})");
        }
        Ok(ContainerChange::Tracked(key)) => eprintln!("armor-agent: container {key}"),
        Ok(ContainerChange::Prepared(key)) => {
            let profile = armor_runtime::enforcement::apparmor_profile_name(&key.name);
            eprintln!("armor-agent: container {key} defined: AppArmor profile {profile} loaded");
        }
        Ok(ContainerChange::Untracked(id)) => eprintln!("armor-agent: container {id} gone"),
        Ok(_) => {}
        Err(e) => eprintln!("armor-agent: container {id}: {e}: {}", source_text(&e)),
    }
}

fn source_text(e: &dyn std::error::Error) -> String {
    e.source().map(ToString::to_string).unwrap_or_default()
}
