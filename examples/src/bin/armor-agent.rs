//! `armor-agent`: the host agent. Loads KubeArmor policies, watches containerd containers, the
//! systemd services of a service inventory and the host, enforces with the kernel enforcer it finds, and streams KubeArmor logs and alerts
//! as JSON lines.
//!
//! ```text
//! armor-agent --policies DIR [--containerd-socket PATH [--hook-socket PATH]] [--inventory FILE]
//!             [--enforcer auto|bpflsm|apparmor|none] [--require-enforcement]
//!             [--apparmor-dir DIR] [--output stdout|FILE] [--event-ring-mib MIB]
//! ```
//!
//! The binary parses flags, opens the output and installs the signal handlers; everything else
//! is [`armor_runtime::agent::run`] (enforcer choice, containerd, the event loop). The policy
//! directory is re-read when a file in it changes (a bad file keeps the old policies and is
//! reported on stderr), and so is the inventory. A policy directory or inventory that does not
//! load at start stops the agent before anything is applied, naming every problem's
//! `file:line:col`. SIGTERM and SIGINT stop it cleanly.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::{Result, bail};
use armor_runtime::agent::{self, AgentOptions};
use clap::Parser;

const AFTER_HELP: &str = "\
Enforcers (--enforcer):
  auto      BPF-LSM if its programs load here, else AppArmor if the kernel has it and
            apparmor_parser compiles a profile, else audit-only monitoring (the agent says
            which and why on stderr)
  bpflsm    BPF-LSM or exit with the reason: enforces on the host and on every container it
            follows, by cgroup. With --hook-socket, a container's creation waits until its
            rules are in force (the OCI hook below); they apply from the entrypoint's exec,
            which is the first operation decided. Without it, containerd containers get their
            rules from the task-create event, which a client that starts the task at once
            (kubelet) can outrun
  apparmor  AppArmor or exit with the reason: loads one profile per workload into
            --apparmor-dir, a container's as soon as containerd defines it (before its task,
            whose creation applies the profile); a container is enforced only when its OCI
            spec names its profile (process.apparmorProfile; Kubernetes:
            securityContext.appArmorProfile {type: Localhost, localhostProfile:
            armor.<ns>_<pod>_<container>_<hash>}, named on stderr), the host only for
            processes started under its profile (aa-exec -p)
  none      audit-only monitoring

Workloads an enforcer does not cover are monitored: their Block rules are reported as
`Audit (Block)` alerts, not enforced. So are single rules the enforcer's artefact cannot carry
(BPF-LSM: globs whose automaton does not fit, matchDNSQueries; `armorctl validate --enforcer
bpflsm|apparmor` lists them offline): each is logged when it is applied, with its policy, field,
position and reason. The `ready:` line and every later `readiness:` line count the workloads
enforced, partly enforced, monitored only and without rules, and the failed applies.

--require-enforcement fails closed instead: the agent does not start without a kernel
enforcer or when a workload's rules are not all enforced at start, the OCI hook refuses a
container whose rules are not all in the kernel, and a policy change that would leave one so is
rejected (the previous policies stay). Kernel denials come out as Alerts with Enforcer
\"BPFLSM\" or \"AppArmor\", Action Block, and the container's ContainerID/ContainerName/
NamespaceName/PodName/Labels.

Exit and upgrade (BPF-LSM): the programs and their maps are pinned in --bpf-pin-dir
(/sys/fs/bpf/armor; --no-pin: not pinned), so SIGTERM, SIGINT, SIGKILL or a crash end the
agent but not enforcement: every rule in force stays in force. The next agent of the same
version and settings adopts what is pinned (nothing reloaded; the log's enforcing line says
`adopted`), applies its workloads again over it and removes the records of workloads gone
meanwhile. An agent of another version loads its own programs, fills them, and only then
detaches the earlier ones: there is never an instant with neither attached. `armor-agent
--uninstall` removes it all (BPF-LSM pins, armor's AppArmor profiles); containers created while
no agent runs get no rules of their own (with the OCI hook their creation fails instead).

The OCI hook (--hook-socket PATH, with --containerd-socket): name armor-oci-hook as a
createRuntime hook in the runtime spec every container starts from (containerd CRI:
base_runtime_spec), e.g.
  \"hooks\": {\"createRuntime\": [{\"path\": \"/usr/local/bin/armor-oci-hook\",
    \"args\": [\"armor-oci-hook\", \"--socket\", \"/run/armor/hook.sock\"], \"timeout\": 30}]}
runc runs it while it creates the container; the agent resolves the container through
containerd, applies its rules and answers. A container whose rules cannot be applied is
refused (its creation fails, the agent says why); when the agent is down the hook fails too,
unless it runs with --fail-open.

Services (--inventory FILE): a YAML list of systemd units with the namespace, name and labels
policies select them by (format: armor_core::inventory), e.g.
  services:
    - unit: nginx.service
      namespace: web
      labels: {app: nginx}
A listed unit's cgroup (the directory named like the unit under the cgroup2 mount, e.g.
system.slice/nginx.service, with the cgroups below it) is a workload like a container: KubeArmorPolicy and
KubeArmorClusterPolicy select it, host policies no longer apply to its processes, BPF-LSM
enforces on it by cgroup, and its records carry NamespaceName, ContainerName (the name),
Labels and ContainerID (the unit), with an empty ContainerImage. Services are looked for every
2 s: one that starts or restarts is the host's until then. Unlisted services stay the host's.
The file is re-read when it changes; a bad file at start stops the agent (file:line:col), a
bad change keeps the previous inventory.";

#[derive(Parser)]
#[command(
    name = "armor-agent",
    version,
    about = "armor host agent: KubeArmor policies enforced and monitored, KubeArmor logs and alerts",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(flatten)]
    flags: armor_examples::cli::AgentFlags,
    /// Directory of KubeArmorPolicy / KubeArmorClusterPolicy / KubeArmorHostPolicy files.
    #[arg(long, required_unless_present_any = ["probe", "uninstall"])]
    policies: Option<PathBuf>,
    /// Service inventory: systemd units that are workloads with a namespace, name and labels.
    #[arg(long, value_name = "FILE")]
    inventory: Option<PathBuf>,
}

fn main() -> Result<()> {
    armor_examples::init_logging();
    let cli = Cli::parse();
    if let (Some(path), Some(addr)) = (&cli.flags.probe, cli.flags.metrics) {
        return armor_examples::cli::probe(addr, path);
    }
    if cli.flags.uninstall {
        return armor_examples::cli::uninstall(&cli.flags, &mut |l| eprintln!("armor-agent: {l}"));
    }
    let Some(policies) = &cli.policies else {
        bail!("--policies DIR is needed");
    };
    let stop = armor_examples::cli::stop_on_signals()?;
    let mut out = armor_examples::cli::open_output(
        &cli.flags.output,
        cli.flags.output_max_mib,
        cli.flags.output_keep,
    )?;
    let mut log = |line: &str| eprintln!("armor-agent: {line}");
    let mut options = cli
        .flags
        .serve_endpoints(cli.flags.apply(AgentOptions::new(policies)), &mut log)?;
    if let Some(file) = &cli.inventory {
        options = options.inventory(file);
    }
    agent::run(&options, &mut out, &mut log, &stop).map_err(|e| cli.flags.explain(e))
}
