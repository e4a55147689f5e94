//! Normalised rules: what every enforcer compiles.
//!
//! [`normalize`] turns one [`Policy`] into a flat list of [`Rule`]s: severity, tags, message
//! and action inherited rule > section > policy, a missing action made `Block`, syscall rules
//! made `Audit`, comma lists of protocols and capabilities expanded, names case-normalised.
//! Rules are numbered in a canonical order (process, file, network, capabilities, syscalls, presets; in a
//! section `matchPaths`, `matchDirectories`, `matchPatterns`; each list as written), which is
//! the "rule order" of the tie-break in the [semantics](crate::manual::semantics).

use std::fmt;
use std::sync::Arc;

use crate::diag::Location;
use crate::event::{Category, caps, net};
use crate::glob::Glob;
use crate::model::*;

/// The policy a rule came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PolicyInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (KSP only).
    pub namespace: Option<String>,
    /// The kind.
    pub kind: PolicyKind,
    /// Where the policy document starts.
    pub location: Location,
}

impl PolicyInfo {
    /// The identity of `policy` (the namespace is kept for KubeArmorPolicy only).
    pub fn of(policy: &Policy) -> Self {
        Self {
            name: policy.name.clone(),
            namespace: if policy.kind == PolicyKind::KubeArmorPolicy {
                policy.namespace.clone()
            } else {
                None
            },
            kind: policy.kind,
            location: policy.location.clone(),
        }
    }

    /// `namespace/name` for KSP, `name` otherwise.
    pub fn display_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// What a network rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolMatch {
    /// A protocol (`IPPROTO_*`): tcp, udp, icmp, icmpv6, sctp.
    Protocol(u16),
    /// A socket type (`SOCK_*`): raw, stream, dgram, rdm, seqpacket, dccp, packet.
    Type(u16),
    /// Every socket.
    All,
}

impl ProtocolMatch {
    /// Parses a lowercase CRD protocol name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "tcp" => Self::Protocol(net::IPPROTO_TCP),
            "udp" => Self::Protocol(net::IPPROTO_UDP),
            "icmp" => Self::Protocol(net::IPPROTO_ICMP),
            "icmpv6" => Self::Protocol(net::IPPROTO_ICMPV6),
            "sctp" => Self::Protocol(net::IPPROTO_SCTP),
            "raw" => Self::Type(net::SOCK_RAW),
            "stream" => Self::Type(net::SOCK_STREAM),
            "dgram" => Self::Type(net::SOCK_DGRAM),
            "rdm" => Self::Type(net::SOCK_RDM),
            "seqpacket" => Self::Type(net::SOCK_SEQPACKET),
            "dccp" => Self::Type(net::SOCK_DCCP),
            "packet" => Self::Type(net::SOCK_PACKET),
            "all" => Self::All,
            _ => return None,
        })
    }

    /// The CRD name of this match.
    pub fn name(self) -> &'static str {
        match self {
            Self::Protocol(net::IPPROTO_TCP) => "tcp",
            Self::Protocol(net::IPPROTO_UDP) => "udp",
            Self::Protocol(net::IPPROTO_ICMP) => "icmp",
            Self::Protocol(net::IPPROTO_ICMPV6) => "icmpv6",
            Self::Protocol(net::IPPROTO_SCTP) => "sctp",
            Self::Protocol(_) => "protocol",
            Self::Type(net::SOCK_RAW) => "raw",
            Self::Type(net::SOCK_STREAM) => "stream",
            Self::Type(net::SOCK_DGRAM) => "dgram",
            Self::Type(net::SOCK_RDM) => "rdm",
            Self::Type(net::SOCK_SEQPACKET) => "seqpacket",
            Self::Type(net::SOCK_DCCP) => "dccp",
            Self::Type(net::SOCK_PACKET) => "packet",
            Self::Type(_) => "type",
            Self::All => "all",
        }
    }
}

/// The path part of a syscall rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SyscallPath {
    /// An exact file.
    File(String),
    /// A directory (with trailing `/`), its children or all descendants.
    Dir {
        /// The directory, ending with `/`.
        dir: String,
        /// All descendants.
        recursive: bool,
    },
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// An exact resolved path (process or file).
    Path(String),
    /// The basename of the executed file (process).
    ExecName(String),
    /// A directory (ending with `/`): itself and its direct children, or all descendants.
    Directory {
        /// The directory, ending with `/`.
        dir: String,
        /// All descendants.
        recursive: bool,
    },
    /// An AppArmor glob.
    Pattern(Glob),
    /// A socket protocol or type.
    Protocol(ProtocolMatch),
    /// A capability number.
    Capability(u8),
    /// Syscalls, optionally limited to a path.
    Syscall {
        /// Lowercase syscall names.
        names: Vec<String>,
        /// The path condition.
        path: Option<SyscallPath>,
    },
    /// A DNS domain (not decided by the reference engine).
    Dns(String),
    /// A preset (`presets[]`): a condition on the operation's [`crate::event::Facts`] or kind.
    Preset(PresetKind),
}

/// The presets (`presets[].name`), each a fixed condition (the manual's presets section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PresetKind {
    /// `filelessExec`: executing a file that has no name (memfd, unlinked, `O_TMPFILE`), or one
    /// below `/dev/shm` or `/run/shm`.
    FilelessExec,
    /// `anonymousMapExec`: making anonymous memory, or a file with no name, executable
    /// ([`crate::event::Operation::ExecMemory`]).
    AnonymousMapExec,
    /// `protectEnv`: opening `environ` of another process in procfs.
    ProtectEnv,
    /// `exec`: executing anything from a process with a controlling terminal.
    Exec,
    /// `protectProc`: opening any per-process procfs entry of another process.
    ProtectProc,
}

/// An exec with more arguments (after the program name) than this is outside every
/// `allowedArgs` permitted set.
pub const MAX_CHECKED_ARGS: usize = 64;

/// An argument longer than this (bytes) is outside every `allowedArgs` permitted set.
pub const MAX_ARG_LEN: usize = 255;

/// The shared-memory directories whose files `filelessExec` treats as fileless (KubeArmor's).
pub const SHM_DIRS: [&str; 2] = ["/dev/shm/", "/run/shm/"];

impl PresetKind {
    /// Every preset, in a fixed order (its position is [`PresetKind::number`]).
    pub const ALL: [PresetKind; 5] = [
        Self::FilelessExec,
        Self::AnonymousMapExec,
        Self::ProtectEnv,
        Self::Exec,
        Self::ProtectProc,
    ];

    /// The name as written in a policy.
    pub fn name(self) -> &'static str {
        match self {
            Self::FilelessExec => "filelessExec",
            Self::AnonymousMapExec => "anonymousMapExec",
            Self::ProtectEnv => "protectEnv",
            Self::Exec => "exec",
            Self::ProtectProc => "protectProc",
        }
    }

    /// The preset named `name` (exact spelling).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Its position in [`PresetKind::ALL`] (enforcers number presets by it).
    pub fn number(self) -> u8 {
        match self {
            Self::FilelessExec => 0,
            Self::AnonymousMapExec => 1,
            Self::ProtectEnv => 2,
            Self::Exec => 3,
            Self::ProtectProc => 4,
        }
    }

    /// The category of the operations it decides (KubeArmor's `Operation` of its alerts).
    pub fn category(self) -> Category {
        match self {
            Self::FilelessExec | Self::Exec => Category::Process,
            Self::AnonymousMapExec | Self::ProtectEnv | Self::ProtectProc => Category::File,
        }
    }

    /// Whether the preset's condition holds for `event`.
    pub fn matches(self, event: &crate::event::Event) -> bool {
        use crate::event::Operation;
        let facts = &event.facts;
        match (self, &event.operation) {
            (Self::FilelessExec, Operation::Process { path, .. }) => {
                facts.fileless || SHM_DIRS.iter().any(|d| dir_matches(d, true, path))
            }
            (Self::Exec, Operation::Process { .. }) => facts.tty,
            (Self::AnonymousMapExec, Operation::ExecMemory { .. }) => true,
            (Self::ProtectProc, Operation::File { .. }) => facts.other_process,
            (Self::ProtectEnv, Operation::File { path, .. }) => {
                facts.other_process && trim_slash(path).rsplit('/').next() == Some("environ")
            }
            _ => false,
        }
    }
}

impl fmt::Display for PresetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => write!(f, "path {p}"),
            Self::ExecName(n) => write!(f, "execname {n}"),
            Self::Directory { dir, recursive } => {
                write!(
                    f,
                    "dir {dir}{}",
                    if *recursive { " (recursive)" } else { "" }
                )
            }
            Self::Pattern(g) => write!(f, "pattern {g}"),
            Self::Protocol(p) => write!(f, "protocol {}", p.name()),
            Self::Capability(c) => write!(
                f,
                "capability {}",
                caps::name(*c).unwrap_or_else(|| c.to_string())
            ),
            Self::Syscall { names, path } => {
                write!(f, "syscall {}", names.join(","))?;
                match path {
                    Some(SyscallPath::File(p)) => write!(f, " on {p}"),
                    Some(SyscallPath::Dir { dir, recursive }) => write!(
                        f,
                        " under {dir}{}",
                        if *recursive { " (recursive)" } else { "" }
                    ),
                    None => Ok(()),
                }
            }
            Self::Dns(d) => write!(f, "dns {d}"),
            Self::Preset(p) => write!(f, "preset {p}"),
        }
    }
}

/// One `fromSource` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceMatch {
    /// The acting executable is exactly this path.
    Path(String),
    /// The acting executable is in this directory (syscall rules only).
    Dir {
        /// The directory, ending with `/`.
        dir: String,
        /// All descendants.
        recursive: bool,
    },
}

impl SourceMatch {
    /// Whether executable `exe` matches.
    pub fn matches(&self, exe: &str) -> bool {
        match self {
            Self::Path(p) => p == exe,
            Self::Dir { dir, recursive } => dir_matches(dir, *recursive, exe),
        }
    }
}

/// Whether `path` is `dir` itself, a direct child, or (recursive) any descendant.
/// `dir` ends with `/`; a trailing `/` on `path` is ignored.
pub fn dir_matches(dir: &str, recursive: bool, path: &str) -> bool {
    let path = trim_slash(path);
    let base = trim_slash(dir);
    if path == base {
        return true;
    }
    let Some(rest) = path.strip_prefix(dir) else {
        return false;
    };
    !rest.is_empty() && (recursive || !rest.contains('/'))
}

/// Whether a rule path can equal a resolved path: no `//` (a second trailing slash included),
/// no `.` or `..` component. A rule whose target path is not canonical never matches (the
/// validator warns); enforcers leave such rules out of their artefacts, which is exact.
pub fn is_canonical(path: &str) -> bool {
    !(path.contains("//")
        || path.contains("/./")
        || path.contains("/../")
        || path.ends_with("/.")
        || path.ends_with("/.."))
}

/// The one path normalisation every decision maker applies to rule and event paths: one
/// trailing `/` is removed (`"/a/b/"` → `"/a/b"`), `"/"` stays `"/"`, and nothing else changes
/// (`"/a//"` → `"/a/"`, which no resolved path equals: a non-canonical rule never matches; see
/// the manual's path section).
pub fn trim_slash(p: &str) -> &str {
    if p.len() > 1 {
        p.strip_suffix('/').unwrap_or(p)
    } else {
        p
    }
}

/// A normalised rule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rule {
    /// The policy it belongs to.
    pub policy: Arc<PolicyInfo>,
    /// Its number inside the policy (canonical order).
    pub index: u32,
    /// Its category.
    pub category: Category,
    /// What it matches.
    pub target: Target,
    /// `fromSource` (empty: any source).
    pub from_source: Vec<SourceMatch>,
    /// `readOnly` (file rules).
    pub read_only: bool,
    /// `ownerOnly`.
    pub owner_only: bool,
    /// The effective action.
    pub action: Action,
    /// The effective severity.
    pub severity: Option<u8>,
    /// The effective tags.
    pub tags: Vec<String>,
    /// The effective message.
    pub message: Option<String>,
    /// `pts` (not decided by the engine).
    pub pts: Option<bool>,
    /// `allowedArgs` (process `matchPaths`): the arguments an exec may pass; a qualifier like
    /// readOnly (see the manual).
    pub allowed_args: Vec<String>,
    /// Where the rule was written.
    pub origin: Origin,
}

impl Rule {
    /// Whether the rule can match anything by its target: `false` for a path or directory
    /// target that is not canonical ([`is_canonical`]), which never matches.
    pub fn target_can_match(&self) -> bool {
        match &self.target {
            Target::Path(p) => is_canonical(p),
            Target::Directory { dir, .. } => is_canonical(dir),
            _ => true,
        }
    }

    /// Whether the reference engine decides this rule (DNS rules are left to enforcers).
    pub fn engine_evaluated(&self) -> bool {
        !matches!(self.target, Target::Dns(_))
    }

    /// Whether the user-space monitor can decide the rule on the events it sees: not DNS rules
    /// (it sees no queries) nor presets (its events carry no [`crate::event::Facts`]). Only an
    /// enforcer that carries such a rule alerts it, so an enforcer that does not carry it
    /// reports it as a gap even when its action is Audit ([`crate::enforcer::RuleGap::list`]).
    pub fn monitor_decides(&self) -> bool {
        !matches!(self.target, Target::Dns(_) | Target::Preset(_))
    }

    /// Whether the rule has readOnly, ownerOnly or allowedArgs.
    pub fn has_qualifiers(&self) -> bool {
        self.read_only || self.owner_only || !self.allowed_args.is_empty()
    }

    /// Whether `args` (an exec's `argv[1..]`, `None` when unknown) are all within the rule's
    /// `allowedArgs`; `true` for a rule without `allowedArgs`. More than [`MAX_CHECKED_ARGS`]
    /// arguments, or one longer than [`MAX_ARG_LEN`] bytes, are never within them (the limits
    /// of the kernel's check, which the engine shares).
    pub fn args_permitted(&self, args: Option<&[String]>) -> bool {
        if self.allowed_args.is_empty() {
            return true;
        }
        args.is_some_and(|a| {
            a.len() <= MAX_CHECKED_ARGS
                && a.iter()
                    .all(|x| x.len() <= MAX_ARG_LEN && self.allowed_args.contains(x))
        })
    }
}

fn effective(
    rule: &Meta,
    section: &Meta,
    spec: &Meta,
) -> (Option<u8>, Vec<String>, Option<String>, Action) {
    let severity = rule.severity.or(section.severity).or(spec.severity);
    let tags = [&rule.tags, &section.tags, &spec.tags]
        .into_iter()
        .find(|t| !t.is_empty())
        .cloned()
        .unwrap_or_default();
    let message = [&rule.message, &section.message, &spec.message]
        .into_iter()
        .find_map(|m| m.as_ref().filter(|m| !m.is_empty()).cloned());
    let action = rule
        .action
        .or(section.action)
        .or(spec.action)
        .unwrap_or(Action::Block);
    (severity, tags, message, action)
}

fn sources(from: &[SourcePath]) -> Vec<SourceMatch> {
    from.iter()
        .map(|s| SourceMatch::Path(s.path.clone()))
        .collect()
}

fn syscall_sources(from: &[SyscallSource]) -> Vec<SourceMatch> {
    from.iter()
        .filter_map(|s| {
            if let Some(p) = &s.path {
                Some(SourceMatch::Path(p.clone()))
            } else {
                s.dir.as_ref().map(|d| SourceMatch::Dir {
                    dir: if d.ends_with('/') {
                        d.clone()
                    } else {
                        format!("{d}/")
                    },
                    recursive: s.recursive,
                })
            }
        })
        .collect()
}

struct Out<'p> {
    info: Arc<PolicyInfo>,
    spec: &'p PolicySpec,
    rules: Vec<Rule>,
}

struct Draft<'m> {
    category: Category,
    target: Target,
    from_source: Vec<SourceMatch>,
    read_only: bool,
    owner_only: bool,
    pts: Option<bool>,
    allowed_args: Vec<String>,
    meta: &'m Meta,
    origin: &'m Origin,
}

impl Out<'_> {
    fn push(&mut self, section: &Meta, d: Draft<'_>) {
        let (severity, tags, message, mut action) = effective(d.meta, section, &self.spec.meta);
        if d.category == Category::Syscall {
            action = Action::Audit;
        }
        let index = u32::try_from(self.rules.len()).unwrap_or(u32::MAX);
        self.rules.push(Rule {
            policy: self.info.clone(),
            index,
            category: d.category,
            target: d.target,
            from_source: d.from_source,
            read_only: d.read_only,
            owner_only: d.owner_only,
            action,
            severity,
            tags,
            message,
            pts: d.pts,
            allowed_args: d.allowed_args,
            origin: d.origin.clone(),
        });
    }
}

impl Out<'_> {
    /// `matchDirectories` of a process or file section (process rules never have readOnly).
    fn directories(&mut self, category: Category, section: &Meta, rules: &[DirectoryRule]) {
        for r in rules {
            self.push(
                section,
                Draft {
                    category,
                    target: Target::Directory {
                        dir: r.dir.clone(),
                        recursive: r.recursive,
                    },
                    from_source: sources(&r.from_source),
                    read_only: r.read_only,
                    owner_only: r.owner_only,
                    pts: r.pts,
                    allowed_args: Vec::new(),
                    meta: &r.meta,
                    origin: &r.origin,
                },
            );
        }
    }

    /// `matchPatterns` of a process or file section; a glob that does not parse (already an
    /// error of the load) gives no rule.
    fn patterns(&mut self, category: Category, section: &Meta, rules: &[PatternRule]) {
        for r in rules {
            let Ok(g) = Glob::new(&r.pattern) else {
                continue;
            };
            self.push(
                section,
                Draft {
                    category,
                    target: Target::Pattern(g),
                    from_source: Vec::new(),
                    read_only: r.read_only,
                    owner_only: r.owner_only,
                    pts: None,
                    allowed_args: Vec::new(),
                    meta: &r.meta,
                    origin: &r.origin,
                },
            );
        }
    }
}

/// Comma list items, trimmed, lowercase, empty items dropped.
fn comma_items(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(',')
        .map(|i| i.trim().to_ascii_lowercase())
        .filter(|i| !i.is_empty())
}

/// The normalised rules of `policy`. Entries the parser already reported as errors (unknown
/// protocols, invalid globs) produce no rule.
pub fn normalize(policy: &Policy) -> Vec<Rule> {
    let spec = &policy.spec;
    let mut out = Out {
        info: Arc::new(PolicyInfo::of(policy)),
        spec,
        rules: Vec::new(),
    };
    out.process(&spec.process);
    out.file(&spec.file);
    out.network(&spec.network);
    out.capabilities(&spec.capabilities);
    out.syscalls(&spec.syscalls);
    out.presets(&spec.presets);
    out.rules
}

/// A rule of `category` on `target` with no source or qualifier yet.
fn draft<'m>(category: Category, target: Target, meta: &'m Meta, origin: &'m Origin) -> Draft<'m> {
    Draft {
        category,
        target,
        from_source: Vec::new(),
        read_only: false,
        owner_only: false,
        pts: None,
        allowed_args: Vec::new(),
        meta,
        origin,
    }
}

impl Out<'_> {
    /// `process`: paths (or executable names), directories, patterns.
    fn process(&mut self, p: &ProcessSection) {
        for r in &p.match_paths {
            let target = match (&r.path, &r.execname) {
                // Both given: an exec must match both, so a differing basename never matches
                // (the validator warns about it).
                (Some(path), Some(name)) if path.rsplit('/').next() != Some(name.as_str()) => {
                    continue;
                }
                (Some(path), _) => Target::Path(path.clone()),
                (None, Some(name)) => Target::ExecName(name.clone()),
                (None, None) => continue,
            };
            self.push(
                &p.meta,
                Draft {
                    from_source: sources(&r.from_source),
                    owner_only: r.owner_only,
                    pts: r.pts,
                    allowed_args: r.allowed_args.clone(),
                    ..draft(Category::Process, target, &r.meta, &r.origin)
                },
            );
        }
        self.directories(Category::Process, &p.meta, &p.match_directories);
        self.patterns(Category::Process, &p.meta, &p.match_patterns);
    }

    /// `file`: paths, directories, patterns.
    fn file(&mut self, f: &FileSection) {
        for r in &f.match_paths {
            self.push(
                &f.meta,
                Draft {
                    from_source: sources(&r.from_source),
                    owner_only: r.owner_only,
                    read_only: r.read_only,
                    pts: r.pts,
                    ..draft(
                        Category::File,
                        Target::Path(r.path.clone()),
                        &r.meta,
                        &r.origin,
                    )
                },
            );
        }
        self.directories(Category::File, &f.meta, &f.match_directories);
        self.patterns(Category::File, &f.meta, &f.match_patterns);
    }

    /// `network`: one rule per protocol or type of a comma list, and DNS queries.
    fn network(&mut self, n: &NetworkSection) {
        for r in &n.match_protocols {
            for item in comma_items(&r.protocol) {
                let Some(m) = ProtocolMatch::from_name(&item) else {
                    continue;
                };
                self.push(
                    &n.meta,
                    Draft {
                        from_source: sources(&r.from_source),
                        pts: r.pts,
                        ..draft(Category::Network, Target::Protocol(m), &r.meta, &r.origin)
                    },
                );
            }
        }
        for r in &n.match_dns_queries {
            self.push(
                &n.meta,
                Draft {
                    from_source: sources(&r.from_source),
                    ..draft(
                        Category::Network,
                        Target::Dns(r.domain.trim_matches('.').to_ascii_lowercase()),
                        &r.meta,
                        &r.origin,
                    )
                },
            );
        }
    }

    /// `capabilities`: one rule per capability of a comma list.
    fn capabilities(&mut self, c: &CapabilitiesSection) {
        for r in &c.match_capabilities {
            for item in comma_items(&r.capability) {
                let Some(num) = caps::number(&item) else {
                    continue;
                };
                self.push(
                    &c.meta,
                    Draft {
                        from_source: sources(&r.from_source),
                        ..draft(
                            Category::Capabilities,
                            Target::Capability(num),
                            &r.meta,
                            &r.origin,
                        )
                    },
                );
            }
        }
    }

    /// `presets`: one rule each, numbered after every other rule (the policy's severity, tags
    /// and message; the preset's action, Block when absent; `Allow`, which KubeArmor also
    /// enforces as Block, is Block: the validator warns).
    fn presets(&mut self, presets: &[Preset]) {
        for p in presets {
            let Some(kind) = PresetKind::from_name(&p.name) else {
                continue;
            };
            let meta = Meta {
                action: Some(match p.action {
                    Some(Action::Audit) => Action::Audit,
                    _ => Action::Block,
                }),
                ..Meta::default()
            };
            self.push(
                &Meta::default(),
                draft(kind.category(), Target::Preset(kind), &meta, &p.origin),
            );
        }
    }

    /// `syscalls`: `matchSyscalls` and `matchPaths` (a path ending in `/` is a directory).
    fn syscalls(&mut self, s: &SyscallsSection) {
        for r in &s.match_syscalls {
            self.syscall(s, &r.syscalls, None, &r.from_source, &r.meta, &r.origin);
        }
        for r in &s.match_paths {
            let path = if r.path.ends_with('/') {
                SyscallPath::Dir {
                    dir: r.path.clone(),
                    recursive: r.recursive,
                }
            } else {
                SyscallPath::File(r.path.clone())
            };
            self.syscall(
                s,
                &r.syscalls,
                Some(path),
                &r.from_source,
                &r.meta,
                &r.origin,
            );
        }
    }

    /// One syscall rule of section `s` (none without syscall names).
    fn syscall(
        &mut self,
        s: &SyscallsSection,
        names: &[String],
        path: Option<SyscallPath>,
        from_source: &[SyscallSource],
        meta: &Meta,
        origin: &Origin,
    ) {
        if names.is_empty() {
            return;
        }
        self.push(
            &s.meta,
            Draft {
                from_source: syscall_sources(from_source),
                ..draft(
                    Category::Syscall,
                    Target::Syscall {
                        names: names.to_vec(),
                        path,
                    },
                    meta,
                    origin,
                )
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_matching() {
        assert!(dir_matches("/etc/", false, "/etc"));
        assert!(dir_matches("/etc/", false, "/etc/passwd"));
        assert!(!dir_matches("/etc/", false, "/etc/ssl/certs"));
        assert!(dir_matches("/etc/", true, "/etc/ssl/certs"));
        assert!(!dir_matches("/etc/", true, "/etcx/a"));
        assert!(dir_matches("/", true, "/anything/deep"));
        assert!(dir_matches("/", false, "/top"));
        assert!(!dir_matches("/", false, "/top/x"));
        assert!(dir_matches("/", false, "/"));
    }
}
