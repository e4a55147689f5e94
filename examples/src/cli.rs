//! What the agent binaries share on their command line: the enforcement flags, the output,
//! the signals that stop them.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use armor_runtime::agent::AgentOptions;
use armor_runtime::{EnforcementOptions, EnforcerChoice};
use clap::builder::TypedValueParser as _;

/// `--enforcer`: one of the runtime's choices, anything else a usage error naming them.
pub fn enforcer_choice() -> impl clap::builder::TypedValueParser<Value = EnforcerChoice> {
    clap::builder::PossibleValuesParser::new(EnforcementOptions::default().choices())
        .try_map(|s| s.parse::<EnforcerChoice>())
}

/// `--output` (each `stdout`, or a file the JSON lines are appended to, rotated at
/// `max_mib` MiB keeping `keep` old files; `max_mib` 0: never rotated), all written alike.
pub fn open_output(outputs: &[String], max_mib: u64, keep: u32) -> Result<Box<dyn Write>> {
    let mut all: Vec<Box<dyn Write + Send>> = Vec::new();
    for output in outputs {
        all.push(if output == "stdout" {
            Box::new(std::io::BufWriter::new(std::io::stdout()))
        } else if max_mib == 0 {
            Box::new(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(output)
                    .with_context(|| format!("opening {output}"))?,
            ))
        } else {
            Box::new(
                armor_runtime::output::RotatingFile::open(
                    output,
                    max_mib.saturating_mul(1 << 20),
                    keep,
                )
                .with_context(|| format!("opening {output}"))?,
            )
        });
    }
    Ok(match all.len() {
        1 => all.remove(0),
        _ => Box::new(armor_runtime::output::Tee::new(all)),
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
    /// The socket is mode 0600 in a directory only root (or the agent's user) may write; a
    /// connection from another user is refused before its request is read.
    #[arg(long, value_name = "PATH", requires = "containerd_socket")]
    pub hook_socket: Option<std::path::PathBuf>,
    /// Also let this group's members ask on the hook socket (mode 0660): for hooks that run
    /// as a user (rootless runtimes). A name in /etc/group, or a number.
    #[arg(long, value_name = "GROUP", value_parser = group_id, requires = "hook_socket")]
    pub hook_group: Option<u32>,
    /// Which enforcer to use (see below).
    #[arg(long, default_value = "auto", value_parser = enforcer_choice())]
    pub enforcer: EnforcerChoice,
    /// Where the AppArmor enforcer writes its profiles.
    #[arg(long, default_value = "/var/lib/armor/apparmor")]
    pub apparmor_dir: std::path::PathBuf,
    /// Where BPF-LSM's programs and maps are pinned (a directory in a BPF file system): they
    /// stay attached, and every rule in force, when the agent exits, and the next agent adopts
    /// them (see below).
    #[arg(long, value_name = "DIR", default_value = armor_enforce_bpflsm::DEFAULT_PIN_ROOT)]
    pub bpf_pin_dir: std::path::PathBuf,
    /// Do not pin BPF-LSM's programs: enforcement ends with the agent.
    #[arg(long, conflicts_with = "bpf_pin_dir")]
    pub no_pin: bool,
    /// Do not run an agent: remove what agents left enforcing on this machine (BPF-LSM programs
    /// pinned in --bpf-pin-dir, armor's AppArmor profiles in --apparmor-dir) and exit. Programs
    /// an agent still running holds are detached when it exits.
    #[arg(long, conflicts_with = "probe")]
    pub uninstall: bool,
    /// Fail closed: refuse to start, admit a container or take a policy change when a rule would
    /// only be reported, not enforced by the kernel (see below).
    #[arg(long)]
    pub require_enforcement: bool,
    /// `stdout` or a file to append JSON lines to; repeat it to write to several.
    #[arg(long, default_value = "stdout")]
    pub output: Vec<String>,
    /// Rotate an --output file once it holds this many MiB (FILE -> FILE.1 -> …); 0: never.
    #[arg(long, value_name = "MIB", default_value_t = 100)]
    pub output_max_mib: u64,
    /// How many rotated files to keep (FILE.1 … FILE.N).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub output_keep: u32,
    /// The event ring buffer's size in MiB (a power of two, 1 to 1024): resident memory twice
    /// this; a burst it cannot hold is logged as events lost.
    #[arg(long, value_name = "MIB", default_value_t = 8, value_parser = ring_mib)]
    pub event_ring_mib: u32,
    /// Also serve the records on KubeArmor's gRPC feed (feeder.LogService, what `karmor logs
    /// --gRPC` reads): `:32767` (127.0.0.1), `IP:PORT` or `unix:/PATH` (mode 0660); repeat it to
    /// serve the same feed on several addresses.
    #[arg(long, value_name = "ADDR", value_parser = grpc_address)]
    pub grpc: Vec<armor_runtime::feeder::Listen>,
    /// Let --grpc listen on an address that is not loopback: anyone who reaches it reads every
    /// alert and log of this machine.
    #[arg(long, requires = "grpc")]
    pub grpc_remote: bool,
    /// Each gRPC client's queue, in records: a client this far behind loses records (counted
    /// and logged).
    #[arg(long, value_name = "RECORDS", default_value_t = 4096)]
    pub grpc_queue: usize,
    /// The group of a --grpc unix socket (a name in /etc/group, or a number): its members may
    /// connect (mode 0660). Default: the agent's group.
    #[arg(long, value_name = "GROUP", value_parser = group_id)]
    pub grpc_group: Option<u32>,
    /// Serve Prometheus metrics (`/metrics`), liveness (`/healthz`) and readiness (`/readyz`)
    /// over HTTP on this address (`127.0.0.1:9090`).
    #[arg(long, value_name = "IP:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Let --metrics listen on an address that is not loopback (the metrics name policies and
    /// enforcers).
    #[arg(long, requires = "metrics")]
    pub metrics_remote: bool,
    /// Do not run an agent: ask the agent that serves --metrics at that address for PATH
    /// (`/healthz` or `/readyz`) and exit 0 when it answers 200, else 1 with its answer (within
    /// 5 s). A Kubernetes exec probe runs it in the agent's pod, whose metrics listen on the
    /// pod's loopback only.
    #[arg(long, value_name = "PATH", requires = "metrics")]
    pub probe: Option<String>,
}

/// `--uninstall`: removes every BPF-LSM program set pinned in `flags.bpf_pin_dir` and armor's
/// AppArmor profiles in `flags.apparmor_dir` (unloaded from the kernel where AppArmor runs),
/// saying what in `log`.
pub fn uninstall(flags: &AgentFlags, log: &mut dyn FnMut(&str)) -> Result<()> {
    let sets = armor_enforce_bpflsm::uninstall(&flags.bpf_pin_dir)
        .with_context(|| format!("removing the pins in {}", flags.bpf_pin_dir.display()))?;
    for dir in &sets {
        log(&format!(
            "removed the BPF-LSM programs pinned in {} (detached once no agent holds them)",
            dir.display()
        ));
    }
    let profiles = armor_enforce_apparmor::AppArmor::new(&flags.apparmor_dir)
        .sweep_profiles(&[])
        .with_context(|| {
            format!(
                "removing the AppArmor profiles in {}",
                flags.apparmor_dir.display()
            )
        })?;
    for name in &profiles {
        log(&format!("removed the AppArmor profile {name}"));
    }
    log(&format!(
        "uninstalled: {} BPF-LSM program sets, {} AppArmor profiles",
        sets.len(),
        profiles.len()
    ));
    Ok(())
}

/// `--probe PATH`: asks the agent's metrics endpoint at `addr` for `path` (HTTP/1.1 GET, 5 s
/// at most); `Ok` when it answers 200, else the answer or why there was none.
pub fn probe(addr: std::net::SocketAddr, path: &str) -> Result<()> {
    use std::io::Read as _;
    let limit = std::time::Duration::from_secs(5);
    let ask = || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, limit)?;
        s.set_read_timeout(Some(limit))?;
        s.set_write_timeout(Some(limit))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = String::new();
        s.take(64 * 1024).read_to_string(&mut answer)?;
        Ok(answer)
    };
    let answer = ask().with_context(|| format!("--probe: asking http://{addr}{path}"))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        bail!("http://{addr}{path}: {status}: {}", body.trim())
    }
}

/// `--grpc-group`: a group id, or a group's name looked up in /etc/group.
fn group_id(text: &str) -> Result<u32, String> {
    if let Ok(gid) = text.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group")
        .map_err(|e| format!("reading /etc/group for group `{text}`: {e}"))?;
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let gid = f.nth(1)?.parse().ok()?;
            (name == text).then_some(gid)
        })
        .next()
        .ok_or_else(|| format!("no group `{text}` in /etc/group"))
}

/// `--grpc`: an address [`armor_runtime::feeder::Listen`] takes.
fn grpc_address(text: &str) -> Result<armor_runtime::feeder::Listen, String> {
    text.parse()
        .map_err(|e: armor_runtime::feeder::FeedError| e.to_string())
}

/// `--event-ring-mib`: a power of two from 1 to 1024.
fn ring_mib(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && n <= 1024 => Ok(n),
        _ => Err(format!(
            "`{text}` is not a power of two from 1 to 1024 (the kernel's ring buffers are)"
        )),
    }
}

impl AgentFlags {
    /// `options` with these flags.
    pub fn apply(&self, options: AgentOptions) -> AgentOptions {
        let mut options = options
            .enforcer(self.enforcer.clone())
            .enforcement(
                EnforcementOptions::default()
                    .apparmor_dir(&self.apparmor_dir)
                    .bpflsm_pin_root((!self.no_pin).then(|| self.bpf_pin_dir.clone())),
            )
            .require_enforcement(self.require_enforcement)
            .event_ring_bytes(self.event_ring_mib << 20);
        if let Some(sock) = &self.containerd_socket {
            options = options.containerd_socket(sock);
        }
        if let Some(sock) = &self.hook_socket {
            let mut hook = armor_runtime::hook::HookOptions::default();
            hook.group = self.hook_group;
            options = options.hook_socket(sock).hook_options(hook);
        }
        options
    }

    /// Starts the gRPC feed (`--grpc`) and the metrics endpoint (`--metrics`) the flags ask
    /// for, and says where in `log`; `options` then publish and count to them.
    pub fn serve_endpoints(
        &self,
        mut options: AgentOptions,
        log: &mut dyn FnMut(&str),
    ) -> anyhow::Result<AgentOptions> {
        if let Some(addr) = self.metrics {
            if !addr.ip().is_loopback() && !self.metrics_remote {
                anyhow::bail!(
                    "--metrics {addr} is not a loopback address: anyone who reaches it reads the \
                     agent's policies and enforcers (add --metrics-remote, and firewall it)"
                );
            }
            let metrics = armor_runtime::metrics::Metrics::new();
            let bound = armor_runtime::metrics::serve(addr, metrics.clone())
                .map_err(|e| anyhow::Error::new(e).context(format!("--metrics {addr}")))?;
            log(&format!(
                "serving metrics on http://{bound}/metrics (/healthz, /readyz)"
            ));
            options = options.metrics(metrics);
        }
        if self.grpc.is_empty() {
            return Ok(options);
        }
        let feed = armor_runtime::feeder::Feed::new(self.grpc_queue);
        let mut serve = armor_runtime::feeder::ServeOptions::default();
        serve.allow_remote = self.grpc_remote;
        serve.group = self.grpc_group;
        for listen in &self.grpc {
            let server = armor_runtime::feeder::serve_with(listen, feed.clone(), serve)
                .map_err(|e| anyhow::Error::new(e).context("--grpc"))?;
            log(&format!(
                "serving KubeArmor's gRPC log feed (feeder.LogService) on {}",
                server.address()
            ));
        }
        Ok(options.feed(feed))
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn a_grpc_group_is_a_number_or_a_name_in_etc_group() {
        assert_eq!(group_id("0"), Ok(0));
        assert_eq!(group_id("root"), Ok(0));
        let e = group_id("no-such-group-armor").unwrap_err();
        assert_eq!(e, "no group `no-such-group-armor` in /etc/group");
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: AgentFlags,
    }

    #[test]
    fn the_event_ring_is_a_power_of_two_of_mib_and_defaults_to_8() {
        let ring = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("agent").chain(args.iter().copied()))
                .map(|c| c.flags.event_ring_mib)
                .map_err(|e| e.to_string())
        };
        assert_eq!(ring(&[]), Ok(8));
        assert_eq!(ring(&["--event-ring-mib", "2"]), Ok(2));
        for bad in ["3", "0", "2048", "two"] {
            let err = ring(&["--event-ring-mib", bad]).unwrap_err();
            assert!(
                err.contains("--event-ring-mib") && err.contains("power of two"),
                "{err}"
            );
        }
    }
}
