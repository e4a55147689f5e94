//! The shared decision corpus (`armor-testing/corpus/*.toml`) and its runner.
//!
//! The format is described in `corpus/README.md`. [`load_dir`] reads every case;
//! [`run`] decides each case with a [`DecisionMaker`] and compares the outcome with the
//! hand-written expectation, listing every mismatch and every skipped case with its reason.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use armor_core::event::{Access, Event, Facts, Operation, Socket, caps, net};
use armor_core::posture::{Posture, PostureAction, PostureConfig};
use armor_core::workload::{Container, Host, Workload};
use armor_core::{Decision, Verdict};
use serde::Deserialize;

/// Why the corpus could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CorpusError {
    /// A file could not be read.
    #[error("cannot read `{}`", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid corpus TOML.
    #[error("`{}` is not a valid corpus file: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A case cannot be turned into an event.
    #[error("case `{case}`: {message}")]
    Case {
        /// The case.
        case: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    case: Vec<Case>,
}

/// The workload of a case.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CaseWorkload {
    /// Container namespace.
    pub namespace: Option<String>,
    /// Container name.
    pub container: Option<String>,
    /// Host node name.
    pub node: Option<String>,
    /// Labels (pod or node).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The operation of a case.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CaseOperation {
    /// `process`, `file`, `network`, `capabilities`, `syscall` or `memory` (anonymous memory
    /// made executable).
    pub kind: String,
    /// The executed or opened file, or the syscall's path.
    pub path: Option<String>,
    /// open(2) flags (`O_WRONLY|O_CREAT`), default `O_RDONLY`.
    pub flags: Option<String>,
    /// File operation: open (default), unlink, rename, link, truncate, chmod, chown.
    pub op: Option<String>,
    /// The acting executable.
    pub source: Option<String>,
    /// The acting uid.
    #[serde(default)]
    pub uid: u32,
    /// The owner uid of the file or executable.
    pub owner: Option<u32>,
    /// Socket family.
    pub family: Option<String>,
    /// Socket type.
    #[serde(rename = "type")]
    pub sock_type: Option<String>,
    /// Socket protocol (absent = 0).
    pub protocol: Option<String>,
    /// Capability (`CAP_NET_RAW`).
    pub capability: Option<String>,
    /// Syscall name.
    pub syscall: Option<String>,
    /// Memory operations: `mprotect` (else `mmap`).
    #[serde(default)]
    pub mprotect: bool,
    /// Process: the executed file has no name (memfd, unlinked).
    #[serde(default)]
    pub fileless: bool,
    /// The actor has a controlling terminal.
    #[serde(default)]
    pub tty: bool,
    /// File: a procfs entry of another process.
    #[serde(default)]
    pub other_process: bool,
    /// Process: the arguments after the program name (`argv[1..]`); absent = unknown.
    pub args: Option<Vec<String>>,
}

/// The expected outcome of a case.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Expect {
    /// `allow`, `audit` or `block`.
    pub verdict: String,
    /// Reported PolicyName.
    pub policy: Option<String>,
    /// Reported severity.
    pub severity: Option<u8>,
    /// Reported tags.
    pub tags: Option<Vec<String>>,
    /// Reported message.
    pub message: Option<String>,
    /// Alert Action.
    pub action: Option<String>,
    /// Alert Type.
    #[serde(rename = "type")]
    pub alert_type: Option<String>,
}

/// One corpus case.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Case {
    /// Unique name.
    pub name: String,
    /// What the case proves.
    pub about: String,
    /// The policies (YAML, possibly several documents).
    pub policies: String,
    /// The workload.
    pub workload: CaseWorkload,
    /// Default posture (global for containers, host posture for hosts).
    #[serde(default)]
    pub posture: BTreeMap<String, String>,
    /// Namespace annotations (containers).
    #[serde(default)]
    pub namespace_annotations: BTreeMap<String, String>,
    /// The operation.
    pub operation: CaseOperation,
    /// The expected outcome.
    pub expect: Expect,
    /// The file the case came from.
    #[serde(skip)]
    pub file: PathBuf,
}

/// A case made ready to decide: its policies compiled, its workload with the posture that
/// applies to it, its operation, and the workload's rules. What every decision maker (the
/// engine, an enforcer's simulation, a live kernel) starts from: [`Case::prepare`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Prepared {
    /// The compiled policies.
    pub policy: armor_core::CompiledPolicy,
    /// The workload.
    pub workload: Workload,
    /// Its default posture.
    pub posture: Posture,
    /// The operation.
    pub event: Event,
    /// The workload's rules.
    pub rules: std::sync::Arc<armor_core::RuleSet>,
}

impl Prepared {
    /// The engine's decision (the reference every other decision maker is held to).
    pub fn decide(&self) -> Decision<'_> {
        self.rules.decide(&self.event)
    }
}

impl Case {
    /// Compiles the case's policies and selects the workload's rules; `Err` says which part of
    /// the case is unusable (its policies are rejected, its workload or operation is malformed).
    pub fn prepare(&self) -> Result<Prepared, String> {
        let set = armor_core::PolicySet::parse(&self.policies, &self.name)
            .map_err(|e| format!("policies rejected: {e}"))?;
        let policy = armor_core::CompiledPolicy::build(&set).map_err(|e| e.to_string())?;
        let workload = self.workload().map_err(|e| e.to_string())?;
        let (posture, _) = self
            .posture_config()
            .map_err(|e| e.to_string())?
            .posture_for(&workload);
        let event = self.event().map_err(|e| e.to_string())?;
        let rules = policy.rule_set(&workload, posture);
        Ok(Prepared {
            policy,
            workload,
            posture,
            event,
            rules,
        })
    }

    fn err(&self, message: impl Into<String>) -> CorpusError {
        CorpusError::Case {
            case: self.name.clone(),
            message: message.into(),
        }
    }

    /// The workload.
    pub fn workload(&self) -> Result<Workload, CorpusError> {
        let w = &self.workload;
        match (&w.node, &w.namespace) {
            (Some(node), None) => {
                let mut h = Host::new(node.clone());
                h.labels = w.labels.clone();
                Ok(Workload::Host(h))
            }
            (None, Some(ns)) => {
                let mut c = Container::new(ns.clone(), w.container.clone().unwrap_or_default());
                c.labels = w.labels.clone();
                Ok(Workload::Container(c))
            }
            _ => Err(self.err("workload needs either `node` or `namespace`")),
        }
    }

    /// The posture configuration (defaults, then the case's posture and annotations).
    pub fn posture_config(&self) -> Result<PostureConfig, CorpusError> {
        let mut p = Posture::default();
        for (k, v) in &self.posture {
            let a: PostureAction = v.parse().map_err(|e| self.err(format!("posture: {e}")))?;
            match k.as_str() {
                "file" => p.file = a,
                "network" => p.network = a,
                "capabilities" => p.capabilities = a,
                _ => return Err(self.err(format!("unknown posture key `{k}`"))),
            }
        }
        let mut cfg = PostureConfig::new();
        cfg.container_default = p;
        cfg.host_default = p;
        if let Some(ns) = &self.workload.namespace {
            for (k, v) in &self.namespace_annotations {
                cfg.annotate_namespace(ns.clone(), k.clone(), v.clone());
            }
        }
        Ok(cfg)
    }

    /// The event.
    pub fn event(&self) -> Result<Event, CorpusError> {
        let o = &self.operation;
        let path = || {
            o.path
                .clone()
                .ok_or_else(|| self.err("operation needs `path`"))
        };
        let operation = match o.kind.as_str() {
            "process" => Operation::Process {
                path: path()?,
                owner: o.owner,
            },
            "file" => {
                let access = match o.op.as_deref().unwrap_or("open") {
                    "open" => Access::from_open_flags(o.flags.as_deref().unwrap_or("O_RDONLY")),
                    "unlink" | "rename" | "link" | "truncate" | "chmod" | "chown" => Access::WRITE,
                    other => return Err(self.err(format!("unknown file op `{other}`"))),
                };
                Operation::File {
                    path: path()?,
                    access,
                    owner: o.owner,
                }
            }
            "network" => {
                let num = |v: &Option<String>, what: &str| -> Result<u16, CorpusError> {
                    match v {
                        None => Ok(0),
                        Some(s) => net::parse_constant(s)
                            .ok_or_else(|| self.err(format!("unknown {what} `{s}`"))),
                    }
                };
                Operation::Network(Socket::new(
                    num(&o.family, "family")?,
                    num(&o.sock_type, "type")?,
                    num(&o.protocol, "protocol")?,
                ))
            }
            "capabilities" => {
                let c = o
                    .capability
                    .as_deref()
                    .ok_or_else(|| self.err("operation needs `capability`"))?;
                Operation::Capability(
                    caps::number(c).ok_or_else(|| self.err(format!("unknown capability `{c}`")))?,
                )
            }
            "syscall" => Operation::Syscall {
                name: o
                    .syscall
                    .as_deref()
                    .ok_or_else(|| self.err("operation needs `syscall`"))?
                    .to_ascii_lowercase()
                    .trim_start_matches("sys_")
                    .to_string(),
                path: o.path.clone(),
            },
            "memory" => Operation::ExecMemory {
                mprotect: o.mprotect,
            },
            other => return Err(self.err(format!("unknown operation kind `{other}`"))),
        };
        let mut e = match operation {
            Operation::Process { path, owner } => {
                let e = Event::exec(path, o.source.as_deref());
                match owner {
                    Some(u) => e.with_owner(u),
                    None => e,
                }
            }
            Operation::File {
                path,
                access,
                owner,
            } => {
                let e = Event::open(path, access, o.source.as_deref());
                match owner {
                    Some(u) => e.with_owner(u),
                    None => e,
                }
            }
            Operation::Network(s) => Event::socket(s, o.source.as_deref()),
            Operation::Capability(c) => Event::capability(c, o.source.as_deref()),
            Operation::Syscall { name, path } => {
                Event::syscall(name, path.as_deref(), o.source.as_deref())
            }
            Operation::ExecMemory { mprotect } => Event::exec_memory(mprotect, o.source.as_deref()),
            _ => return Err(self.err("unsupported operation")),
        };
        let mut facts = Facts::default();
        facts.fileless = o.fileless;
        facts.tty = o.tty;
        facts.other_process = o.other_process;
        e = e.with_uid(o.uid).with_facts(facts);
        if let Some(args) = &o.args {
            e = e.with_args(args.iter().cloned());
        }
        Ok(e)
    }
}

/// Reads every `*.toml` of `dir` (sorted). Case names must be unique.
pub fn load_dir(dir: &Path) -> Result<Vec<Case>, CorpusError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CorpusError::Io { path, source }
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut cases: Vec<Case> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(io(&f))?;
        let parsed: File = toml::from_str(&text).map_err(|e| CorpusError::Format {
            path: f.clone(),
            message: e.to_string(),
        })?;
        for mut c in parsed.case {
            if cases.iter().any(|o| o.name == c.name) {
                return Err(CorpusError::Format {
                    path: f.clone(),
                    message: format!("duplicate case name `{}`", c.name),
                });
            }
            c.file = f.clone();
            cases.push(c);
        }
    }
    Ok(cases)
}

/// The path of the corpus this crate ships (`armor-testing/corpus`).
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// What a decision maker reports for one case.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Outcome {
    /// `allow`, `audit` or `block`.
    pub verdict: String,
    /// Reported PolicyName.
    pub policy: Option<String>,
    /// Reported severity.
    pub severity: Option<u8>,
    /// Reported tags.
    pub tags: Vec<String>,
    /// Reported message.
    pub message: Option<String>,
    /// Alert Action.
    pub action: Option<String>,
    /// Alert Type.
    pub alert_type: Option<String>,
}

impl Outcome {
    /// The outcome of `verdict` reported with `rule` (`None`: DefaultPosture) for a host or a
    /// container workload: what an enforcer model reports, in the corpus' terms.
    pub fn reported(verdict: Verdict, rule: Option<&armor_core::Rule>, host: bool) -> Self {
        let mut o = Self {
            verdict: verdict.as_str().to_owned(),
            ..Self::default()
        };
        if verdict == Verdict::Allow {
            return o;
        }
        let action = if verdict == Verdict::Block {
            "Block"
        } else {
            "Audit"
        };
        o.action = Some(action.to_owned());
        let kind = if host {
            "MatchedHostPolicy"
        } else {
            "MatchedPolicy"
        };
        o.alert_type = Some(kind.to_owned());
        match rule {
            None => o.policy = Some(armor_core::DEFAULT_POSTURE.to_owned()),
            Some(r) => {
                o.policy = Some(r.policy.name.clone());
                o.severity = r.severity;
                o.tags = r.tags.clone();
                o.message = r.message.clone();
            }
        }
        o
    }

    /// The outcome of an engine decision.
    pub fn from_decision(d: &Decision<'_>) -> Self {
        let verdict = match d.verdict {
            Verdict::Allow => "allow",
            Verdict::Audit => "audit",
            Verdict::Block => "block",
        }
        .to_string();
        match d.alert() {
            None => Self {
                verdict,
                ..Self::default()
            },
            Some(a) => Self {
                verdict,
                policy: Some(a.policy_name.to_string()),
                severity: a.severity,
                tags: a.tags.to_vec(),
                message: a.message.map(str::to_string),
                action: Some(a.action.to_string()),
                alert_type: Some(a.alert_type.to_string()),
            },
        }
    }

    /// Every difference from `expect`, empty when they agree.
    pub fn diff(&self, expect: &Expect) -> Vec<String> {
        let mut d = Vec::new();
        let mut cmp = |what: &str, want: String, have: String| {
            if want != have {
                d.push(format!("{what}: expected {want}, got {have}"));
            }
        };
        cmp("verdict", expect.verdict.clone(), self.verdict.clone());
        cmp(
            "policy",
            format!("{:?}", expect.policy),
            format!("{:?}", self.policy),
        );
        cmp(
            "severity",
            format!("{:?}", expect.severity),
            format!("{:?}", self.severity),
        );
        cmp(
            "tags",
            format!("{:?}", expect.tags.clone().unwrap_or_default()),
            format!("{:?}", self.tags),
        );
        cmp(
            "message",
            format!("{:?}", expect.message),
            format!("{:?}", self.message),
        );
        cmp(
            "action",
            format!("{:?}", expect.action),
            format!("{:?}", self.action),
        );
        cmp(
            "type",
            format!("{:?}", expect.alert_type),
            format!("{:?}", self.alert_type),
        );
        d
    }
}

/// Anything that can decide a corpus case: the engine, the naive matcher, an enforcer's offline
/// model.
pub trait DecisionMaker {
    /// A short name for reports.
    fn name(&self) -> &str;

    /// Decides the case, or says why it cannot (`Err(reason)` = skipped, listed with the reason).
    fn decide(&self, case: &Case) -> Result<Outcome, String>;
}

/// The reference engine as a [`DecisionMaker`].
#[derive(Debug, Default, Clone, Copy)]
#[expect(
    clippy::exhaustive_structs,
    reason = "a unit marker, deliberately closed"
)]
pub struct Engine;

impl DecisionMaker for Engine {
    fn name(&self) -> &str {
        "engine"
    }

    fn decide(&self, case: &Case) -> Result<Outcome, String> {
        Ok(Outcome::from_decision(&case.prepare()?.decide()))
    }
}

/// The result of running the corpus.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Report {
    /// Decision maker name.
    pub maker: String,
    /// Cases that agreed.
    pub passed: usize,
    /// Cases that disagreed: name, file, differences.
    pub failed: Vec<(String, PathBuf, Vec<String>)>,
    /// Cases the maker could not decide: name and reason.
    pub skipped: Vec<(String, String)>,
}

impl Report {
    /// Whether every decided case agreed.
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} passed, {} failed, {} skipped",
            self.maker,
            self.passed,
            self.failed.len(),
            self.skipped.len()
        )?;
        for (name, file, diffs) in &self.failed {
            writeln!(f, "  FAIL {name} ({}):", file.display())?;
            for d in diffs {
                writeln!(f, "    {d}")?;
            }
        }
        for (name, why) in &self.skipped {
            writeln!(f, "  skipped {name}: {why}")?;
        }
        Ok(())
    }
}

/// Runs every case through `maker`.
pub fn run(cases: &[Case], maker: &dyn DecisionMaker) -> Report {
    let mut r = Report {
        maker: maker.name().to_string(),
        ..Report::default()
    };
    for c in cases {
        match maker.decide(c) {
            Err(why) => r.skipped.push((c.name.clone(), why)),
            Ok(o) => {
                let d = o.diff(&c.expect);
                if d.is_empty() {
                    r.passed += 1;
                } else {
                    r.failed.push((c.name.clone(), c.file.clone(), d));
                }
            }
        }
    }
    r
}
