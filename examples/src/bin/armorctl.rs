//! `armorctl`: validate policies, explain a decision, replay recorded KubeArmor telemetry.
//!
//! ```text
//! armorctl validate [--enforcer bpflsm|apparmor [--strict] [--max-glob-states N]] FILE|DIR...
//! armorctl explain --policy FILE|DIR... --event JSON [--json] [posture options]
//! armorctl replay  --policy FILE|DIR... [--input FILE] [posture options]
//! ```
//!
//! Posture options: `--default-posture file=block,network=audit,capabilities=block` (containers),
//! `--host-posture ...` (hosts), `--namespace-annotation NS:key=value` (repeatable),
//! `--node-name N`, `--node-labels k=v,...`.
//!
//! `validate --enforcer` also compiles the policies for that enforcer, offline, and prints what
//! it does with each rule (`enforces`, `audits`, or `refuses` with the reason), then one line per
//! rule its artefact does not carry that changes what is denied or alerted (the same lines the
//! agent logs when it applies them): for a container selected by every container policy and for
//! a host selected by every host policy. A real workload is selected by some of them, and its
//! artefact leaves out at most these rules. `--strict` exits 1 when there is any.
//!
//! Events (`--event`) and replay input are KubeArmor Log records (PascalCase JSON, one per line);
//! see `armor_core::telemetry`.
#![forbid(unsafe_code)]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use armor_core::enforcer::{Destination, Enforcer, RuleGap};
use armor_core::telemetry::{ReplayContext, Telemetry, parse_labels};
use armor_core::{
    Action, CompiledPolicy, Config, Explanation, Operation, PolicySet, Posture, PostureConfig,
    Reason, Step, Workload, WorkloadKey,
};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "armorctl",
    version,
    about = "Validate, explain and replay armor (KubeArmor-compatible) policies; print their CRDs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check policy files; print every error and warning with file:line:column.
    /// Exit status 1 on any error, 0 with warnings only.
    Validate {
        /// Policy files or directories (every *.yaml / *.yml below).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also list every Block or Allow rule this enforcer's artefact would not carry (its
        /// Block decisions would only be reported, as `Audit (Block)`): bpflsm or apparmor.
        #[arg(long, value_parser = ["bpflsm", "apparmor"])]
        enforcer: Option<String>,
        /// With --enforcer: exit status 1 when any rule would not be enforced.
        #[arg(long, requires = "enforcer")]
        strict: bool,
        /// With --enforcer bpflsm: the glob automaton cap the agent runs with.
        #[arg(long, requires = "enforcer", value_name = "N")]
        max_glob_states: Option<u32>,
    },
    /// Decide one event and say why: which rules matched and which precedence step settled it.
    Explain {
        #[command(flatten)]
        ctx: PolicyArgs,
        /// The event: a KubeArmor Log record as JSON (or @FILE to read it from a file).
        #[arg(long)]
        event: String,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read KubeArmor Log records (JSON lines) and write, for each, the Alert the policies raise
    /// or the Log with its Result.
    Replay {
        #[command(flatten)]
        ctx: PolicyArgs,
        /// Input file (default: standard input).
        #[arg(long)]
        input: Option<PathBuf>,
    },
    /// Print the CustomResourceDefinitions of KubeArmorPolicy, KubeArmorClusterPolicy and
    /// KubeArmorHostPolicy as armor generates them (what deploy/crds.yaml holds).
    Crd,
}

#[derive(Args)]
struct PolicyArgs {
    /// Policy files or directories.
    #[arg(long = "policy", required = true)]
    policies: Vec<PathBuf>,
    /// Global default posture of containers, e.g. `file=block,network=audit,capabilities=block`.
    #[arg(long, default_value = "")]
    default_posture: String,
    /// Default posture of hosts.
    #[arg(long, default_value = "")]
    host_posture: String,
    /// A namespace annotation, `NS:key=value` (e.g. `shop:kubearmor-file-posture=block`).
    #[arg(long = "namespace-annotation")]
    namespace_annotations: Vec<String>,
    /// Node name for host records (default: the record's HostName).
    #[arg(long)]
    node_name: Option<String>,
    /// Node labels for host policies, `k=v,k=v`.
    #[arg(long, default_value = "")]
    node_labels: String,
}

struct Loaded {
    policy: CompiledPolicy,
    postures: PostureConfig,
    replay: ReplayContext,
}

impl PolicyArgs {
    fn load(&self) -> Result<Loaded> {
        let set = match PolicySet::load_paths(&self.policies, &Config::default()) {
            Ok(set) => set,
            Err(e) => {
                eprint!("{}", e.diagnostics);
                bail!(
                    "policies rejected: {} error(s)",
                    e.diagnostics.errors().count()
                );
            }
        };
        for w in set.diagnostics().warnings() {
            eprintln!("{w}");
        }
        let policy = CompiledPolicy::build(&set)?;
        let mut postures = PostureConfig::new();
        postures.container_default = Posture::default()
            .with_overrides(&self.default_posture)
            .context("--default-posture")?;
        postures.host_default = Posture::default()
            .with_overrides(&self.host_posture)
            .context("--host-posture")?;
        for a in &self.namespace_annotations {
            let (ns, kv) = a
                .split_once(':')
                .with_context(|| format!("--namespace-annotation `{a}`: expected NS:key=value"))?;
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--namespace-annotation `{a}`: expected NS:key=value"))?;
            postures.annotate_namespace(ns, k, v);
        }
        let replay = ReplayContext::new(self.node_name.clone(), parse_labels(&self.node_labels));
        Ok(Loaded {
            policy,
            postures,
            replay,
        })
    }
}

impl Loaded {
    fn posture(&self, w: &Workload) -> Posture {
        let (p, warnings) = self.postures.posture_for(w);
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
        p
    }
}

fn main() -> ExitCode {
    armor_examples::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate {
            paths,
            enforcer,
            strict,
            max_glob_states,
        } => validate(&paths, enforcer.as_deref(), strict, max_glob_states),
        Command::Explain { ctx, event, json } => explain(&ctx, &event, json),
        Command::Replay { ctx, input } => replay(&ctx, input.as_ref()),
        Command::Crd => armor_k8s::crd::crds_yaml()
            .map(|y| {
                print!("{y}");
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn validate(
    paths: &[PathBuf],
    enforcer: Option<&str>,
    strict: bool,
    max_glob_states: Option<u32>,
) -> Result<ExitCode> {
    match PolicySet::load_paths(paths, &Config::default()) {
        Err(e) => {
            print!("{}", e.diagnostics);
            println!(
                "{} error(s), {} warning(s)",
                e.diagnostics.errors().count(),
                e.diagnostics.warnings().count()
            );
            Ok(ExitCode::from(1))
        }
        Ok(set) => {
            print!("{}", set.diagnostics());
            let compiled = match CompiledPolicy::build(&set) {
                Ok(c) => c,
                Err(e) => {
                    // A located error (a glob too large to compile): the policies are rejected.
                    println!("{e}");
                    println!(
                        "1 error(s), {} warning(s)",
                        set.diagnostics().warnings().count()
                    );
                    return Ok(ExitCode::from(1));
                }
            };
            let counts = armor_core::engine::strategy_counts(compiled.rules());
            let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!(
                "ok: {} policies, {} rules ({}), {} warning(s)",
                set.policies().len(),
                compiled.rules().len(),
                counts.join(", "),
                set.diagnostics().warnings().count()
            );
            let Some(enforcer) = enforcer else {
                return Ok(ExitCode::SUCCESS);
            };
            if enforcer != "bpflsm" && max_glob_states.is_some() {
                bail!("--max-glob-states applies to --enforcer bpflsm only");
            }
            let (gaps, table) = enforcer_gaps(&compiled, enforcer, max_glob_states)?;
            for line in &table {
                println!("{line}");
            }
            for g in &gaps {
                println!("{g}");
            }
            let name = if enforcer == "bpflsm" {
                armor_enforce_bpflsm::NAME
            } else {
                armor_enforce_apparmor::NAME
            };
            if gaps.is_empty() {
                println!("{name}: every Block and Allow rule is enforced in the kernel");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{name}: {} rule(s) not enforced in the kernel: their Block decisions are only \
                 reported (`Audit (Block)`, where the monitor sees the operation), never denied",
                gaps.len()
            );
            Ok(if strict {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// What `enforcer` does with each rule of `rules` (compiled into `artifact`): one line each.
fn rule_table(
    enforcer: &str,
    workload: &str,
    rules: &armor_core::RuleSet,
    artifact: &dyn armor_core::enforcer::Artifact,
) -> Vec<String> {
    rules
        .rule_ids()
        .iter()
        .filter_map(|&id| rules.rule(id).map(|r| (id, r)))
        .map(|(id, r)| {
            let gap = artifact.unenforceable().iter().find(|u| u.rule == id);
            let what = match (gap, r.action) {
                (None, Action::Block) => "enforces: denied in the kernel".to_string(),
                (None, Action::Allow) => "enforces: allowed in the kernel (allow-list)".to_string(),
                (None, _) => "audits: alerted, never denied".to_string(),
                (Some(g), Action::Audit) if r.monitor_decides() => {
                    format!("audits through the monitor only: {}", g.reason)
                }
                (Some(g), _) if !r.monitor_decides() => {
                    format!("refuses (neither enforced nor alerted): {}", g.reason)
                }
                (Some(g), Action::Block) if !r.allowed_args.is_empty() => {
                    format!("denies more than asked: {}", g.reason)
                }
                (Some(g), Action::Allow) => format!(
                    "refuses (what it allows is left to the kernel's posture): {}",
                    g.reason
                ),
                (Some(g), _) => format!(
                    "refuses (its Block decisions only reported as `Audit (Block)`): {}",
                    g.reason
                ),
            };
            format!(
                "{enforcer} {workload} rule {id}: {} {} {} ({}) at {}: {what}",
                r.policy.kind,
                r.policy.display_name(),
                r.origin.field,
                r.action,
                r.origin.location
            )
        })
        .collect()
}

/// The rules `enforcer` would leave out, for a container every container policy selects and a
/// host every host policy selects (their default postures: the gaps do not depend on them), and
/// what it does with every rule ([`rule_table`]).
fn enforcer_gaps(
    compiled: &CompiledPolicy,
    enforcer: &str,
    max_glob_states: Option<u32>,
) -> Result<(Vec<RuleGap>, Vec<String>)> {
    let mut gaps = Vec::new();
    let mut table = Vec::new();
    for host in [false, true] {
        let rules = compiled.rule_set_of_every_policy(host, Posture::default());
        if rules.rule_ids().is_empty() {
            continue;
        }
        let name = if host { "host" } else { "container" };
        // Compiling needs no kernel: the enforcers are built, never loaded.
        let offline: Box<dyn Enforcer> = if enforcer == "bpflsm" {
            let mut config = armor_enforce_bpflsm::Config::default();
            if let Some(cap) = max_glob_states {
                config.max_glob_states = cap;
            }
            Box::new(armor_enforce_bpflsm::BpfLsm::new(config))
        } else {
            Box::new(armor_enforce_apparmor::AppArmor::new(std::env::temp_dir()))
        };
        let dest = Destination::new(WorkloadKey::new(name));
        let a = offline.compile(&dest, &rules)?;
        table.extend(rule_table(offline.name(), name, &rules, a.as_ref()));
        gaps.extend(RuleGap::list(offline.name(), &rules, a.as_ref()));
    }
    Ok((gaps, table))
}

fn read_event(arg: &str) -> Result<Telemetry> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text).context("--event is not a KubeArmor Log JSON object")
}

fn describe_operation(op: &Operation) -> String {
    match op {
        Operation::Process { path, .. } => format!("exec {path}"),
        Operation::File { path, access, .. } => {
            let a = match (access.read, access.write) {
                (true, true) => "read+write",
                (false, true) => "write",
                _ => "read",
            };
            format!("file {a} {path}")
        }
        Operation::Network(s) => format!(
            "socket family={} type={} protocol={} (effective {})",
            s.family,
            s.sock_type,
            s.protocol,
            s.effective_protocol()
        ),
        Operation::Capability(c) => format!(
            "capability {}",
            armor_core::event::caps::name(*c).unwrap_or_else(|| c.to_string())
        ),
        Operation::Syscall { name, path } => match path {
            Some(p) => format!("syscall {name} on {p}"),
            None => format!("syscall {name}"),
        },
        _ => "operation".to_string(),
    }
}

fn describe_step(step: &Step) -> String {
    match step {
        Step::BlockRule { from_source: true } => {
            "a Block rule wins among the rules whose fromSource matched".into()
        }
        Step::BlockRule { from_source: false } => {
            "a Block rule wins (no covering rule has a matching fromSource)".into()
        }
        Step::AllowRule { from_source: true } => {
            "an Allow rule with a matching fromSource covers it (beats source-less Block rules)"
                .into()
        }
        Step::AllowRule { from_source: false } => {
            "an Allow rule covers it and no Block rule does".into()
        }
        Step::Posture(p) => format!(
            "allow-list mode: no Allow or Block rule covers it, so the default posture `{p}` decides"
        ),
        Step::NotCovered => "no Allow or Block rule covers it (not in allow-list mode)".into(),
        _ => "unknown".into(),
    }
}

fn explanation_json(workload: &Workload, x: &Explanation<'_>, op: &str) -> serde_json::Value {
    let d = &x.decision;
    let alert = d.alert().map(|a| {
        json!({
            "PolicyName": a.policy_name,
            "Severity": a.severity.map(|s| s.to_string()).unwrap_or_default(),
            "Tags": a.tags.join(","),
            "Message": a.message.unwrap_or(""),
            "Action": a.action,
            "Result": a.result,
            "Type": a.alert_type,
            "Operation": a.operation,
        })
    });
    let considered: Vec<_> = x
        .considered
        .iter()
        .map(|c| {
            json!({
                "policy": c.rule.policy.display_name(),
                "field": c.rule.origin.field,
                "location": c.rule.origin.location.to_string(),
                "action": c.rule.action.as_str(),
                "target": c.rule.target.to_string(),
                "covers": c.covers,
                "why": c.why,
            })
        })
        .collect();
    json!({
        "workload": workload.to_string(),
        "operation": op,
        "verdict": d.verdict.as_str(),
        "result": d.result(),
        "step": describe_step(&x.step),
        "allowList": x.allow_list,
        "posture": {
            "file": x.posture.file.as_str(),
            "network": x.posture.network.as_str(),
            "capabilities": x.posture.capabilities.as_str(),
        },
        "considered": considered,
        "notEvaluated": x.not_evaluated,
        "alert": alert,
    })
}

fn explain(args: &PolicyArgs, event: &str, as_json: bool) -> Result<ExitCode> {
    let loaded = args.load()?;
    let record = read_event(event)?;
    let (workload, ev) = record.to_event(&loaded.replay)?;
    let rules = loaded.policy.rule_set(&workload, loaded.posture(&workload));
    let x = rules.explain(&ev);
    let op = describe_operation(&ev.operation);
    let mut out = std::io::stdout().lock();
    if as_json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&explanation_json(&workload, &x, &op))?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "workload:  {workload}")?;
    writeln!(
        out,
        "operation: {op} by {} (uid {})",
        ev.source.as_deref().unwrap_or("<unknown source>"),
        ev.uid
    )?;
    writeln!(
        out,
        "posture:   file={} network={} capabilities={}; {} category {} in allow-list mode",
        x.posture.file,
        x.posture.network,
        x.posture.capabilities,
        ev.operation.category(),
        if x.allow_list { "is" } else { "is not" }
    )?;
    if x.considered.is_empty() {
        writeln!(out, "rules:     no rule targets this operation")?;
    } else {
        writeln!(out, "rules whose target matches:")?;
        for c in &x.considered {
            writeln!(
                out,
                "  [{}] {} {} ({}) {} {}: {}",
                if c.covers { "covers" } else { "skip  " },
                c.rule.policy.display_name(),
                c.rule.origin.field,
                c.rule.origin.location,
                c.rule.action,
                c.rule.target,
                c.why
            )?;
        }
    }
    for n in &x.not_evaluated {
        writeln!(out, "note:      {n}")?;
    }
    writeln!(out, "step:      {}", describe_step(&x.step))?;
    let d = &x.decision;
    writeln!(
        out,
        "decision:  {} ({})",
        d.verdict.as_str().to_uppercase(),
        d.result()
    )?;
    match (d.alert(), d.reason) {
        (Some(a), _) => writeln!(
            out,
            "alert:     PolicyName={} Severity={} Tags={} Message={:?} Action={} Type={}",
            a.policy_name,
            a.severity.map(|s| s.to_string()).unwrap_or_default(),
            a.tags.join(","),
            a.message.unwrap_or(""),
            a.action,
            a.alert_type
        )?,
        (None, Reason::Rule(r)) => writeln!(
            out,
            "alert:     none (allowed by {} {})",
            r.policy.display_name(),
            r.origin.field
        )?,
        (None, _) => writeln!(out, "alert:     none")?,
    }
    Ok(ExitCode::SUCCESS)
}

fn replay(args: &PolicyArgs, input: Option<&PathBuf>) -> Result<ExitCode> {
    let loaded = args.load()?;
    let reader: Box<dyn BufRead> = match input {
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let name = input
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<stdin>".into());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut bad = 0usize;
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {name}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Telemetry = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{name}:{}: not a KubeArmor record: {e}", i + 1);
                bad += 1;
                continue;
            }
        };
        let (workload, ev) = match record.to_event(&loaded.replay) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("{name}:{}: {e}", i + 1);
                bad += 1;
                continue;
            }
        };
        let rules = loaded.policy.rule_set(&workload, loaded.posture(&workload));
        let decided = record.with_decision(&rules.decide(&ev), "armor replay");
        writeln!(out, "{}", serde_json::to_string(&decided)?)?;
    }
    out.flush()?;
    if bad > 0 {
        eprintln!("{bad} record(s) could not be replayed");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
