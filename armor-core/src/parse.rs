//! From span-carrying YAML nodes to the [`crate::model`], collecting every problem.
//!
//! Each check of KubeArmor's CRD (`security.kubearmor.com/v1`) is applied here with an anchored
//! regular expression, together with type checks (a string where an integer belongs), unknown
//! fields (warnings) and duplicate keys (errors). Parsing goes on after a problem so that one run
//! reports all of them.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use regex::Regex;

use crate::diag::{Diagnostic, Diagnostics, Level};
use crate::model::*;
use crate::syscalls::is_syscall;
use crate::yaml::{Node, NodeKind, Pos, ScalarType, scalar_type};

/// The API group and version every policy must carry.
pub const API_VERSION: &str = "security.kubearmor.com/v1";

/// CRD `MatchPathType` maximum length.
pub const MAX_PATH_LEN: usize = 200;

/// CRD `ProcessPathType.AllowedArgs` maximum item count.
pub const MAX_ALLOWED_ARGS: usize = 20;

#[expect(
    clippy::expect_used,
    reason = "constant patterns, checked by the unit tests"
)]
fn re(p: &str) -> Regex {
    Regex::new(p).expect("valid constant regex")
}

static PATH_RE: LazyLock<Regex> = LazyLock::new(|| re(r"^/+.*[^/]$"));
static DIR_RE: LazyLock<Regex> = LazyLock::new(|| re(r"^/$|^/.*/$"));
static EXECNAME_RE: LazyLock<Regex> = LazyLock::new(|| re(r"^[^/]+$"));
static NAME_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"));
pub(crate) static NAMESPACE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"));

/// Protocol names of the CRD's `MatchNetworkProtocolStringType`, lowercase.
pub const PROTOCOLS: &[&str] = &[
    "tcp",
    "udp",
    "icmp",
    "icmpv6",
    "sctp",
    "raw",
    "stream",
    "dgram",
    "rdm",
    "seqpacket",
    "dccp",
    "packet",
    "all",
];

/// The last capability number the CRD's `MatchCapabilitiesStringType` names (`mac_admin`);
/// newer ones (`bpf`, `perfmon`, …) are not accepted by KubeArmor's CRD.
pub const LAST_CRD_CAPABILITY: u8 = 33;

fn crd_capability(name: &str) -> bool {
    crate::event::caps::number(name).is_some_and(|n| n <= LAST_CRD_CAPABILITY)
}

/// Preset names.
pub const PRESETS: &[&str] = &[
    "filelessExec",
    "protectEnv",
    "exec",
    "protectProc",
    "anonymousMapExec",
];

pub(crate) struct Ctx<'d> {
    pub(crate) file: Arc<str>,
    pub(crate) policy: Option<String>,
    pub(crate) diags: &'d mut Diagnostics,
}

impl Ctx<'_> {
    pub(crate) fn report(&mut self, level: Level, pos: Pos, field: &str, message: String) {
        self.diags.push(Diagnostic {
            level,
            location: pos.location(&self.file),
            policy: self.policy.clone(),
            field: field.to_string(),
            message,
        });
    }
    pub(crate) fn err(&mut self, pos: Pos, field: &str, message: impl Into<String>) {
        self.report(Level::Error, pos, field, message.into());
    }
    pub(crate) fn warn(&mut self, pos: Pos, field: &str, message: impl Into<String>) {
        self.report(Level::Warning, pos, field, message.into());
    }
}

pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A mapping being read: keys are taken one by one, leftovers become unknown-field warnings.
pub(crate) struct MapReader<'n> {
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
    taken: Vec<bool>,
    field: String,
}

impl<'n> MapReader<'n> {
    pub(crate) fn new(ctx: &mut Ctx<'_>, node: &'n Node, field: &str) -> Option<Self> {
        let NodeKind::Map(entries) = &*node.kind else {
            ctx.err(
                node.pos,
                field,
                format!("expected a mapping, found {}", node.describe()),
            );
            return None;
        };
        let mut out: Vec<(&'n str, &'n Node, &'n Node)> = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let NodeKind::Scalar { value, .. } = &*k.kind else {
                ctx.err(k.pos, field, "mapping keys must be strings");
                continue;
            };
            if out.iter().any(|(seen, _, _)| *seen == value.as_str()) {
                ctx.err(
                    k.pos,
                    &join(field, value),
                    format!("duplicate key `{value}`"),
                );
                continue;
            }
            out.push((value.as_str(), k, v));
        }
        let taken = vec![false; out.len()];
        Some(Self {
            entries: out,
            taken,
            field: field.to_string(),
        })
    }

    /// The value of `key`, if present, and its field path.
    pub(crate) fn take(&mut self, key: &str) -> Option<(&'n Node, String)> {
        let i = self.entries.iter().position(|(k, _, _)| *k == key)?;
        if let Some(t) = self.taken.get_mut(i) {
            *t = true;
        }
        self.entries
            .get(i)
            .map(|(_, _, v)| (*v, join(&self.field, key)))
    }

    /// Reports keys nobody asked for.
    pub(crate) fn finish(self, ctx: &mut Ctx<'_>) {
        for ((k, knode, _), taken) in self.entries.iter().zip(&self.taken) {
            if !taken {
                ctx.warn(
                    knode.pos,
                    &join(&self.field, k),
                    format!("unknown field `{k}` is ignored"),
                );
            }
        }
    }
}

pub(crate) fn is_null(node: &Node) -> bool {
    matches!(&*node.kind, NodeKind::Scalar { value, style } if scalar_type(value, *style) == ScalarType::Null)
}

pub(crate) fn string(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> Option<String> {
    match &*node.kind {
        NodeKind::Scalar { value, style } if scalar_type(value, *style) == ScalarType::Str => {
            Some(value.clone())
        }
        _ => {
            ctx.err(
                node.pos,
                field,
                format!("expected a string, found {}", node.describe()),
            );
            None
        }
    }
}

fn boolean(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> Option<bool> {
    match &*node.kind {
        NodeKind::Scalar { value, style } if scalar_type(value, *style) == ScalarType::Bool => {
            Some(value.eq_ignore_ascii_case("true"))
        }
        _ => {
            ctx.err(
                node.pos,
                field,
                format!("expected a boolean, found {}", node.describe()),
            );
            None
        }
    }
}

fn integer(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> Option<i64> {
    if let NodeKind::Scalar { value, style } = &*node.kind
        && scalar_type(value, *style) == ScalarType::Int
    {
        let parsed = if let Some(h) = value.strip_prefix("0x") {
            i64::from_str_radix(h, 16).ok()
        } else if let Some(o) = value.strip_prefix("0o") {
            i64::from_str_radix(o, 8).ok()
        } else {
            value.parse::<i64>().ok()
        };
        if let Some(v) = parsed {
            return Some(v);
        }
        ctx.err(
            node.pos,
            field,
            format!("integer `{value}` is out of range"),
        );
        return None;
    }
    ctx.err(
        node.pos,
        field,
        format!("expected an integer, found {}", node.describe()),
    );
    None
}

pub(crate) fn list<'n>(ctx: &mut Ctx<'_>, node: &'n Node, field: &str) -> &'n [Node] {
    match &*node.kind {
        NodeKind::Seq(items) => items,
        _ if is_null(node) => &[],
        _ => {
            ctx.err(
                node.pos,
                field,
                format!("expected a list, found {}", node.describe()),
            );
            &[]
        }
    }
}

fn string_list(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> Vec<String> {
    let items = list(ctx, node, field);
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(s) = string(ctx, item, &format!("{field}[{i}]")) {
            out.push(s);
        }
    }
    out
}

pub(crate) fn string_map(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if is_null(node) {
        return out;
    }
    let Some(mut m) = MapReader::new(ctx, node, field) else {
        return out;
    };
    let keys: Vec<&str> = m.entries.iter().map(|(k, _, _)| *k).collect();
    for k in keys {
        if let Some((v, f)) = m.take(k)
            && let Some(s) = string(ctx, v, &f)
        {
            out.insert(k.to_string(), s);
        }
    }
    m.finish(ctx);
    out
}

fn check_path(ctx: &mut Ctx<'_>, pos: Pos, field: &str, value: &str) {
    if !PATH_RE.is_match(value) {
        ctx.err(
            pos,
            field,
            format!(
                "`{value}` must be an absolute file path: start with \"/\" and not end with \"/\""
            ),
        );
    } else if value.chars().count() > MAX_PATH_LEN {
        ctx.err(pos, field, format!("longer than {MAX_PATH_LEN} characters"));
    }
}

fn check_dir(ctx: &mut Ctx<'_>, pos: Pos, field: &str, value: &str) {
    if !value.starts_with('/') {
        ctx.err(pos, field, "must be an absolute path (start with \"/\")");
    } else if !DIR_RE.is_match(value) {
        ctx.err(pos, field, "must end with \"/\"");
    }
}

/// Reads a required string field and checks it with `check`.
fn required_string(
    ctx: &mut Ctx<'_>,
    m: &mut MapReader<'_>,
    key: &str,
    at: Pos,
) -> Option<(String, Pos, String)> {
    match m.take(key) {
        Some((n, f)) => string(ctx, n, &f).map(|s| (s, n.pos, f)),
        None => {
            ctx.err(
                at,
                &join(&m.field, key),
                format!("missing required field `{key}`"),
            );
            None
        }
    }
}

fn optional_string(ctx: &mut Ctx<'_>, m: &mut MapReader<'_>, key: &str) -> Option<String> {
    let (n, f) = m.take(key)?;
    if is_null(n) {
        return None;
    }
    string(ctx, n, &f)
}

fn optional_bool(ctx: &mut Ctx<'_>, m: &mut MapReader<'_>, key: &str) -> Option<bool> {
    let (n, f) = m.take(key)?;
    if is_null(n) {
        return None;
    }
    boolean(ctx, n, &f)
}

/// Where an action string appears: the policy accepts any case, sections and rules do not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ActionLevel {
    Policy,
    Strict,
}

fn parse_action(ctx: &mut Ctx<'_>, node: &Node, field: &str, level: ActionLevel) -> Option<Action> {
    let s = string(ctx, node, field)?;
    let exact = match s.as_str() {
        "Allow" => Some(Action::Allow),
        "Audit" => Some(Action::Audit),
        "Block" => Some(Action::Block),
        _ => None,
    };
    if exact.is_some() {
        return exact;
    }
    let folded = match s.to_ascii_lowercase().as_str() {
        "allow" => Some(Action::Allow),
        "audit" => Some(Action::Audit),
        "block" => Some(Action::Block),
        _ => None,
    };
    match (folded, level) {
        (Some(a), ActionLevel::Policy) => Some(a),
        (Some(a), ActionLevel::Strict) => {
            ctx.err(
                node.pos,
                field,
                format!("`{s}` must be written `{a}` (the CRD's enum is case-sensitive)"),
            );
            None
        }
        (None, _) => {
            ctx.err(
                node.pos,
                field,
                format!("`{s}` is not an action: expected `Allow`, `Audit` or `Block`"),
            );
            None
        }
    }
}

/// Reads `severity`, `tags`, `message` and (unless `allow_action` is false) `action`.
fn meta(ctx: &mut Ctx<'_>, m: &mut MapReader<'_>, level: ActionLevel, allow_action: bool) -> Meta {
    let mut out = Meta::default();
    if let Some((n, f)) = m.take("severity")
        && !is_null(n)
        && let Some(v) = integer(ctx, n, &f)
    {
        if (1..=10).contains(&v) {
            out.severity = u8::try_from(v).ok();
        } else {
            ctx.err(
                n.pos,
                &f,
                format!("{v} is out of range: severity must be 1 to 10"),
            );
        }
    }
    if let Some((n, f)) = m.take("tags") {
        out.tags = string_list(ctx, n, &f);
    }
    out.message = optional_string(ctx, m, "message");
    if let Some((n, f)) = m.take("action")
        && !is_null(n)
    {
        if allow_action {
            out.action = parse_action(ctx, n, &f, level);
        } else {
            // Syscall rules are audit-only; KubeArmor's CRD has no action field here.
            ctx.warn(
                n.pos,
                &f,
                "syscall rules always audit: this `action` is ignored",
            );
        }
    }
    out
}

/// Reads every mapping of the list at `node` with `read`, which gets the item's reader, the item
/// node and its field path (`file.matchPaths[2]`); each item's unknown keys are reported after
/// `read` returns. Items that are not mappings are reported and skipped.
fn each_item<'n, T>(
    ctx: &mut Ctx<'_>,
    node: &'n Node,
    field: &str,
    mut read: impl FnMut(&mut Ctx<'_>, &mut MapReader<'n>, &'n Node, &str) -> Option<T>,
) -> Vec<T> {
    let mut out = Vec::new();
    for (i, item) in list(ctx, node, field).iter().enumerate() {
        let rf = format!("{field}[{i}]");
        let Some(mut r) = MapReader::new(ctx, item, &rf) else {
            continue;
        };
        let value = read(ctx, &mut r, item, &rf);
        r.finish(ctx);
        out.extend(value);
    }
    out
}

fn from_source(ctx: &mut Ctx<'_>, m: &mut MapReader<'_>) -> Vec<SourcePath> {
    let Some((n, f)) = m.take("fromSource") else {
        return Vec::new();
    };
    each_item(ctx, n, &f, |ctx, sm, item, _| {
        let (path, pos, pf) = required_string(ctx, sm, "path", item.pos)?;
        check_path(ctx, pos, &pf, &path);
        Some(SourcePath { path })
    })
}

fn syscall_from_source(ctx: &mut Ctx<'_>, m: &mut MapReader<'_>) -> Vec<SyscallSource> {
    let Some((n, f)) = m.take("fromSource") else {
        return Vec::new();
    };
    each_item(ctx, n, &f, |ctx, sm, item, field| {
        let mut src = SyscallSource::default();
        if let Some((pn, pf)) = sm.take("path")
            && let Some(p) = string(ctx, pn, &pf)
        {
            check_path(ctx, pn.pos, &pf, &p);
            src.path = Some(p);
        }
        if let Some((dn, df)) = sm.take("dir")
            && let Some(d) = string(ctx, dn, &df)
        {
            if !d.starts_with('/') {
                ctx.err(dn.pos, &df, "must be an absolute path (start with \"/\")");
            }
            src.dir = Some(d);
        }
        src.recursive = optional_bool(ctx, sm, "recursive").unwrap_or(false);
        match (&src.path, &src.dir) {
            (None, None) => {
                ctx.err(item.pos, field, "needs `path` or `dir`");
                None
            }
            (Some(_), Some(_)) => {
                ctx.err(
                    item.pos,
                    field,
                    "has both `path` and `dir`: use one entry for each",
                );
                None
            }
            _ => Some(src),
        }
    })
}

fn syscall_names(ctx: &mut Ctx<'_>, m: &mut MapReader<'_>, at: Pos) -> Vec<String> {
    let Some((n, f)) = m.take("syscall") else {
        ctx.err(
            at,
            &join(&m.field, "syscall"),
            "missing required field `syscall`",
        );
        return Vec::new();
    };
    let items = list(ctx, n, &f);
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("{f}[{i}]");
        if let Some(s) = string(ctx, item, &field) {
            let name = s.to_ascii_lowercase();
            let name = name.strip_prefix("sys_").unwrap_or(&name).to_string();
            if is_syscall(&name) {
                out.push(name);
            } else {
                ctx.err(
                    item.pos,
                    &field,
                    format!("`{s}` is not an x86_64 syscall name"),
                );
            }
        }
    }
    if items.is_empty() {
        ctx.err(n.pos, &f, "lists no syscall");
    }
    out
}

fn origin(ctx: &Ctx<'_>, node: &Node, field: &str) -> Origin {
    Origin {
        location: node.pos.location(&ctx.file),
        field: field.to_string(),
    }
}

fn process_section(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> ProcessSection {
    let mut out = ProcessSection::default();
    let Some(mut m) = MapReader::new(ctx, node, field) else {
        return out;
    };
    out.meta = meta(ctx, &mut m, ActionLevel::Strict, true);
    if let Some((n, f)) = m.take("matchPaths") {
        out.match_paths = each_item(ctx, n, &f, |ctx, r, item, rf| {
            let path = match r.take("path") {
                Some((pn, pf)) => string(ctx, pn, &pf).inspect(|p| check_path(ctx, pn.pos, &pf, p)),
                None => None,
            };
            let execname = match r.take("execname") {
                Some((en, ef)) => string(ctx, en, &ef).inspect(|e| {
                    if !EXECNAME_RE.is_match(e) {
                        ctx.err(
                            en.pos,
                            &ef,
                            format!("`{e}` must be a file name without \"/\""),
                        );
                    }
                }),
                None => None,
            };
            if path.is_none() && execname.is_none() && !ctx.diags.has_errors_at(item.pos) {
                ctx.err(item.pos, rf, "needs `path` or `execname`");
            }
            if let (Some(p), Some(e)) = (&path, &execname) {
                let msg = if p.rsplit('/').next() == Some(e.as_str()) {
                    "has both `path` and `execname`: `execname` adds nothing".to_string()
                } else {
                    format!(
                        "never matches: an exec must match both `path` and `execname`, and `{p}` is not named `{e}`"
                    )
                };
                ctx.warn(item.pos, rf, msg);
            }
            let owner_only = optional_bool(ctx, r, "ownerOnly").unwrap_or(false);
            let pts = optional_bool(ctx, r, "pts");
            let allowed_args = match r.take("allowedArgs") {
                Some((an, af)) => {
                    let args = string_list(ctx, an, &af);
                    if args.len() > MAX_ALLOWED_ARGS {
                        ctx.err(
                            an.pos,
                            &af,
                            format!(
                                "{} items, at most {MAX_ALLOWED_ARGS} are allowed",
                                args.len()
                            ),
                        );
                    }
                    args
                }
                None => Vec::new(),
            };
            let from_source = from_source(ctx, r);
            let meta = meta(ctx, r, ActionLevel::Strict, true);
            Some(ProcessPathRule {
                path,
                execname,
                owner_only,
                pts,
                allowed_args,
                from_source,
                meta,
                origin: origin(ctx, item, rf),
            })
        });
    }
    if let Some((n, f)) = m.take("matchDirectories") {
        out.match_directories = directories(ctx, n, &f, false);
    }
    if let Some((n, f)) = m.take("matchPatterns") {
        out.match_patterns = patterns(ctx, n, &f, false);
    }
    m.finish(ctx);
    out
}

fn directories(ctx: &mut Ctx<'_>, node: &Node, f: &str, file: bool) -> Vec<DirectoryRule> {
    each_item(ctx, node, f, |ctx, r, item, rf| {
        let dir = required_string(ctx, r, "dir", item.pos);
        if let Some((d, pos, df)) = &dir {
            check_dir(ctx, *pos, df, d);
        }
        let recursive = optional_bool(ctx, r, "recursive").unwrap_or(false);
        let owner_only = optional_bool(ctx, r, "ownerOnly").unwrap_or(false);
        let read_only = file && optional_bool(ctx, r, "readOnly").unwrap_or(false);
        let pts = optional_bool(ctx, r, "pts");
        let from_source = from_source(ctx, r);
        let meta = meta(ctx, r, ActionLevel::Strict, true);
        Some(DirectoryRule {
            dir: dir?.0,
            recursive,
            owner_only,
            read_only,
            pts,
            from_source,
            meta,
            origin: origin(ctx, item, rf),
        })
    })
}

fn patterns(ctx: &mut Ctx<'_>, node: &Node, f: &str, file: bool) -> Vec<PatternRule> {
    each_item(ctx, node, f, |ctx, r, item, rf| {
        let pattern = required_string(ctx, r, "pattern", item.pos);
        if let Some((p, pos, pf)) = &pattern
            && let Err(e) = crate::glob::Glob::new(p)
        {
            ctx.err(*pos, pf, e.to_string());
        }
        let owner_only = optional_bool(ctx, r, "ownerOnly").unwrap_or(false);
        let read_only = file && optional_bool(ctx, r, "readOnly").unwrap_or(false);
        let meta = meta(ctx, r, ActionLevel::Strict, true);
        Some(PatternRule {
            pattern: pattern?.0,
            owner_only,
            read_only,
            meta,
            origin: origin(ctx, item, rf),
        })
    })
}

fn file_section(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> FileSection {
    let mut out = FileSection::default();
    let Some(mut m) = MapReader::new(ctx, node, field) else {
        return out;
    };
    out.meta = meta(ctx, &mut m, ActionLevel::Strict, true);
    if let Some((n, f)) = m.take("matchPaths") {
        out.match_paths = each_item(ctx, n, &f, |ctx, r, item, rf| {
            let path = required_string(ctx, r, "path", item.pos);
            if let Some((p, pos, pf)) = &path {
                check_path(ctx, *pos, pf, p);
            }
            let read_only = optional_bool(ctx, r, "readOnly").unwrap_or(false);
            let owner_only = optional_bool(ctx, r, "ownerOnly").unwrap_or(false);
            let pts = optional_bool(ctx, r, "pts");
            let from_source = from_source(ctx, r);
            let meta = meta(ctx, r, ActionLevel::Strict, true);
            Some(FilePathRule {
                path: path?.0,
                read_only,
                owner_only,
                pts,
                from_source,
                meta,
                origin: origin(ctx, item, rf),
            })
        });
    }
    if let Some((n, f)) = m.take("matchDirectories") {
        out.match_directories = directories(ctx, n, &f, true);
    }
    if let Some((n, f)) = m.take("matchPatterns") {
        out.match_patterns = patterns(ctx, n, &f, true);
    }
    m.finish(ctx);
    out
}

fn network_section(ctx: &mut Ctx<'_>, node: &Node, field: &str, host: bool) -> NetworkSection {
    let mut out = NetworkSection::default();
    let Some(mut m) = MapReader::new(ctx, node, field) else {
        return out;
    };
    out.meta = meta(ctx, &mut m, ActionLevel::Strict, true);
    if let Some((n, f)) = m.take("matchProtocols") {
        out.match_protocols = each_item(ctx, n, &f, |ctx, r, item, rf| {
            let protocol = required_string(ctx, r, "protocol", item.pos);
            if let Some((p, pos, pf)) = &protocol {
                check_list_items(
                    ctx,
                    *pos,
                    pf,
                    p,
                    |p| PROTOCOLS.contains(&p),
                    "protocol",
                    Case::LowerOrUpper,
                );
            }
            let pts = optional_bool(ctx, r, "pts");
            let from_source = from_source(ctx, r);
            if host && from_source.is_empty() {
                ctx.err(
                    item.pos,
                    rf,
                    "host policies need `fromSource` on network rules",
                );
            }
            let meta = meta(ctx, r, ActionLevel::Strict, true);
            Some(ProtocolRule {
                protocol: protocol?.0,
                pts,
                from_source,
                meta,
                origin: origin(ctx, item, rf),
            })
        });
    }
    if let Some((n, f)) = m.take("matchDNSQueries") {
        out.match_dns_queries = each_item(ctx, n, &f, |ctx, r, item, rf| {
            let domain = required_string(ctx, r, "domain", item.pos);
            if let Some((d, pos, df)) = &domain {
                let trimmed = d.trim_matches('.');
                if trimmed.is_empty()
                    || trimmed.split('.').any(|l| l.is_empty() || l.len() > 63)
                    || !trimmed
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
                {
                    ctx.err(*pos, df, format!("`{d}` is not a domain name"));
                }
            }
            let from_source = from_source(ctx, r);
            let meta = meta(ctx, r, ActionLevel::Strict, true);
            Some(DnsRule {
                domain: domain?.0,
                from_source,
                meta,
                origin: origin(ctx, item, rf),
            })
        });
    }
    m.finish(ctx);
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    LowerOrUpper,
    Lower,
}

/// Checks each item of a comma list against `known` (compared lowercase); warns about spellings
/// the CRD itself would reject but armor normalises.
fn check_list_items(
    ctx: &mut Ctx<'_>,
    pos: Pos,
    field: &str,
    value: &str,
    known: impl Fn(&str) -> bool,
    what: &str,
    case: Case,
) {
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    if items.iter().all(|s| s.is_empty()) {
        ctx.err(pos, field, format!("no {what} given"));
        return;
    }
    for item in items {
        if item.is_empty() {
            ctx.warn(pos, field, "empty item in comma list is ignored");
            continue;
        }
        let lower = item.to_ascii_lowercase();
        let bare = if what == "capability" {
            lower.strip_prefix("cap_").unwrap_or(&lower)
        } else {
            &lower
        };
        if !known(bare) {
            ctx.err(pos, field, format!("`{item}` is not a known {what}"));
            continue;
        }
        let crd_ok = match case {
            Case::LowerOrUpper => item == bare || item == bare.to_ascii_uppercase(),
            Case::Lower => item == bare,
        };
        if !crd_ok {
            ctx.warn(
                pos,
                field,
                format!("`{item}` is read as `{bare}`, but KubeArmor's CRD only accepts `{bare}`"),
            );
        }
    }
}

fn capabilities_section(
    ctx: &mut Ctx<'_>,
    node: &Node,
    field: &str,
    host: bool,
) -> CapabilitiesSection {
    let mut out = CapabilitiesSection::default();
    let Some(mut m) = MapReader::new(ctx, node, field) else {
        return out;
    };
    out.meta = meta(ctx, &mut m, ActionLevel::Strict, true);
    if let Some((n, f)) = m.take("matchCapabilities") {
        out.match_capabilities = each_item(ctx, n, &f, |ctx, r, item, rf| {
            let cap = required_string(ctx, r, "capability", item.pos);
            if let Some((c, pos, cf)) = &cap {
                check_list_items(ctx, *pos, cf, c, crd_capability, "capability", Case::Lower);
            }
            let from_source = from_source(ctx, r);
            if host && from_source.is_empty() {
                ctx.err(
                    item.pos,
                    rf,
                    "host policies need `fromSource` on capability rules",
                );
            }
            let meta = meta(ctx, r, ActionLevel::Strict, true);
            Some(CapabilityRule {
                capability: cap?.0,
                from_source,
                meta,
                origin: origin(ctx, item, rf),
            })
        });
    }
    m.finish(ctx);
    out
}

fn syscalls_section(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> SyscallsSection {
    let mut out = SyscallsSection::default();
    let Some(mut m) = MapReader::new(ctx, node, field) else {
        return out;
    };
    out.meta = meta(ctx, &mut m, ActionLevel::Strict, false);
    if let Some((n, f)) = m.take("matchSyscalls") {
        out.match_syscalls = each_item(ctx, n, &f, |ctx, r, item, rf| {
            let syscalls = syscall_names(ctx, r, item.pos);
            let from_source = syscall_from_source(ctx, r);
            let meta = meta(ctx, r, ActionLevel::Strict, false);
            Some(SyscallRule {
                syscalls,
                from_source,
                meta,
                origin: origin(ctx, item, rf),
            })
        });
    }
    if let Some((n, f)) = m.take("matchPaths") {
        out.match_paths = each_item(ctx, n, &f, |ctx, r, item, rf| {
            let path = required_string(ctx, r, "path", item.pos);
            if let Some((p, pos, pf)) = &path
                && !(PATH_RE.is_match(p) || DIR_RE.is_match(p))
            {
                ctx.err(
                    *pos,
                    pf,
                    format!("`{p}` must be an absolute file or directory path"),
                );
            }
            let recursive = optional_bool(ctx, r, "recursive").unwrap_or(false);
            let syscalls = syscall_names(ctx, r, item.pos);
            let from_source = syscall_from_source(ctx, r);
            let meta = meta(ctx, r, ActionLevel::Strict, false);
            Some(SyscallPathRule {
                path: path?.0,
                recursive,
                syscalls,
                from_source,
                meta,
                origin: origin(ctx, item, rf),
            })
        });
    }
    m.finish(ctx);
    out
}

fn device_section(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> DeviceSection {
    let mut out = DeviceSection::default();
    let Some(mut m) = MapReader::new(ctx, node, field) else {
        return out;
    };
    out.meta = meta(ctx, &mut m, ActionLevel::Strict, true);
    if let Some((n, f)) = m.take("matchDevice") {
        out.match_device = each_item(ctx, n, &f, |ctx, r, item, rf| {
            let class = required_string(ctx, r, "class", item.pos);
            let int = |ctx: &mut Ctx<'_>, r: &mut MapReader<'_>, key: &str, min: i64| {
                let (n, f) = r.take(key)?;
                let v = integer(ctx, n, &f)?;
                if v < min || v > i64::from(i32::MAX) {
                    ctx.err(
                        n.pos,
                        &f,
                        format!("{v} is out of range: must be at least {min}"),
                    );
                    return None;
                }
                i32::try_from(v).ok()
            };
            let sub_class = int(ctx, r, "subClass", 0);
            let protocol = int(ctx, r, "protocol", 0);
            let level = int(ctx, r, "level", 1);
            let meta = meta(ctx, r, ActionLevel::Strict, true);
            Some(DeviceRule {
                class: class?.0,
                sub_class,
                protocol,
                level,
                meta,
                origin: origin(ctx, item, rf),
            })
        });
    }
    m.finish(ctx);
    out
}

fn selector(ctx: &mut Ctx<'_>, node: &Node, field: &str, kind: PolicyKind) -> Selector {
    let mut out = Selector::default();
    let Some(mut m) = MapReader::new(ctx, node, field) else {
        return out;
    };
    if let Some((n, f)) = m.take("matchLabels") {
        if kind == PolicyKind::KubeArmorClusterPolicy {
            ctx.err(
                n.pos,
                &f,
                "cluster policies select with `matchExpressions` only",
            );
        }
        out.match_labels = string_map(ctx, n, &f);
        if let Some(v) = out.match_labels.get(crate::selector::CONTAINER_NAME_LABEL) {
            let t = v.trim();
            if !t.is_empty() && (!t.starts_with('[') || !t.ends_with(']')) {
                ctx.warn(
                    n.pos,
                    &format!("{f}.{}", crate::selector::CONTAINER_NAME_LABEL),
                    format!("`{v}` should be a bracketed list like \"[app, sidecar]\""),
                );
            }
        }
    }
    if let Some((n, f)) = m.take("matchExpressions") {
        out.match_expressions = each_item(ctx, n, &f, |ctx, e, item, _| {
            let key = required_string(ctx, e, "key", item.pos).and_then(|(k, pos, kf)| {
                match (k.as_str(), kind) {
                    ("label", _) => Some(ExpressionKey::Label),
                    ("namespace", PolicyKind::KubeArmorClusterPolicy) => {
                        Some(ExpressionKey::Namespace)
                    }
                    _ => {
                        let allowed = if kind == PolicyKind::KubeArmorClusterPolicy {
                            "`namespace` or `label`"
                        } else {
                            "`label`"
                        };
                        ctx.err(
                            pos,
                            &kf,
                            format!("`{k}` is not a selector key: expected {allowed}"),
                        );
                        None
                    }
                }
            });
            let operator =
                required_string(ctx, e, "operator", item.pos).and_then(|(o, pos, of)| {
                    match o.as_str() {
                        "In" => Some(Operator::In),
                        "NotIn" => Some(Operator::NotIn),
                        _ => {
                            ctx.err(
                                pos,
                                &of,
                                format!("`{o}` is not an operator: expected `In` or `NotIn`"),
                            );
                            None
                        }
                    }
                });
            let values = match e.take("values") {
                Some((vn, vf)) => {
                    let vals = string_list(ctx, vn, &vf);
                    if key == Some(ExpressionKey::Label) {
                        for (j, v) in vals.iter().enumerate() {
                            if !v.contains('=') {
                                ctx.err(
                                    vn.pos,
                                    &format!("{vf}[{j}]"),
                                    format!("`{v}` must be a `key=value` label"),
                                );
                            }
                        }
                    }
                    vals
                }
                None => Vec::new(),
            };
            Some(Expression {
                key: key?,
                operator: operator?,
                values,
            })
        });
    }
    m.finish(ctx);
    out
}

/// Converts one YAML document into a policy, reporting every problem into `diags`.
/// Returns `None` only when the document is not a policy at all (no usable kind or name).
pub(crate) fn policy(file: &Arc<str>, doc: &Node, diags: &mut Diagnostics) -> Option<Policy> {
    let mut ctx = Ctx {
        file: file.clone(),
        policy: None,
        diags,
    };
    let mut top = MapReader::new(&mut ctx, doc, "")?;

    // Name first, so every later diagnostic can say which policy it is about.
    let mut name = None;
    let mut namespace = None;
    let mut labels = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    let mut name_problem: Option<(Pos, String, String)> = None;
    let metadata = top.take("metadata");
    if let Some((mn, mf)) = &metadata {
        if let Some(mut m) = MapReader::new(&mut ctx, mn, mf) {
            if let Some((n, f)) = m.take("name") {
                if let Some(s) = string(&mut ctx, n, &f) {
                    if !(NAME_RE.is_match(&s) && s.len() <= 253) {
                        name_problem = Some((
                            n.pos,
                            f,
                            format!(
                                "`{s}` is not a valid name (lowercase letters, digits, `-` and `.`)"
                            ),
                        ));
                    }
                    name = Some(s);
                }
            } else {
                ctx.err(mn.pos, "metadata.name", "missing required field `name`");
            }
            if let Some((n, f)) = m.take("namespace")
                && let Some(s) = string(&mut ctx, n, &f)
            {
                if !(NAMESPACE_RE.is_match(&s) && s.len() <= 63) {
                    ctx.err(n.pos, &f, format!("`{s}` is not a valid namespace name"));
                }
                namespace = Some((s, n.pos, f));
            }
            if let Some((n, f)) = m.take("labels") {
                labels = string_map(&mut ctx, n, &f);
            }
            if let Some((n, f)) = m.take("annotations") {
                annotations = string_map(&mut ctx, n, &f);
            }
            // Server-populated metadata is legal in exported objects.
            for k in [
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "managedFields",
                "selfLink",
                "finalizers",
                "ownerReferences",
                "generateName",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                let _ = m.take(k);
            }
            m.finish(&mut ctx);
        }
    } else {
        ctx.err(doc.pos, "metadata", "missing required field `metadata`");
    }

    let kind = match top.take("kind") {
        Some((n, f)) => match string(&mut ctx, n, &f).as_deref() {
            Some("KubeArmorPolicy") => Some(PolicyKind::KubeArmorPolicy),
            Some("KubeArmorClusterPolicy") => Some(PolicyKind::KubeArmorClusterPolicy),
            Some("KubeArmorHostPolicy") => Some(PolicyKind::KubeArmorHostPolicy),
            Some(other) => {
                ctx.err(
                    n.pos,
                    &f,
                    format!("unsupported kind `{other}`: expected KubeArmorPolicy, KubeArmorClusterPolicy or KubeArmorHostPolicy"),
                );
                None
            }
            None => None,
        },
        None => {
            ctx.err(doc.pos, "kind", "missing required field `kind`");
            None
        }
    };

    let ns = match (&kind, namespace) {
        (Some(PolicyKind::KubeArmorPolicy), Some((s, _, _))) => Some(s),
        (Some(PolicyKind::KubeArmorPolicy), None) => Some("default".to_string()),
        (Some(_), Some((s, pos, f))) => {
            ctx.warn(
                pos,
                &f,
                "cluster-scoped policies have no namespace: it is ignored",
            );
            let _ = s;
            None
        }
        (Some(_), None) => None,
        (None, ns) => ns.map(|(s, _, _)| s),
    };
    ctx.policy = name.as_ref().map(|n| match (&kind, &ns) {
        (Some(PolicyKind::KubeArmorPolicy), Some(ns)) => format!("{ns}/{n}"),
        _ => n.clone(),
    });
    if let Some((pos, f, msg)) = name_problem {
        ctx.err(pos, &f, msg);
    }

    match top.take("apiVersion") {
        Some((n, f)) => {
            if let Some(v) = string(&mut ctx, n, &f)
                && v != API_VERSION
            {
                ctx.err(
                    n.pos,
                    &f,
                    format!("`{v}` is not supported: expected `{API_VERSION}`"),
                );
            }
        }
        None => ctx.err(doc.pos, "apiVersion", "missing required field `apiVersion`"),
    }
    let _ = top.take("status");

    let mut spec = PolicySpec::default();
    let Some(kind) = kind else {
        top.finish(&mut ctx);
        return None;
    };
    let host = kind.is_host();
    match top.take("spec") {
        Some((sn, _)) => {
            if let Some(mut s) = MapReader::new(&mut ctx, sn, "") {
                if let Some((n, f)) = s.take("selector") {
                    if host {
                        ctx.err(n.pos, &f, "host policies select nodes with `nodeSelector`");
                    } else {
                        spec.selector = selector(&mut ctx, n, &f, kind);
                    }
                } else if !host {
                    ctx.err(sn.pos, "selector", "missing required field `selector`");
                }
                if let Some((n, f)) = s.take("nodeSelector") {
                    if host {
                        if let Some(mut m) = MapReader::new(&mut ctx, n, &f) {
                            if let Some((ln, lf)) = m.take("matchLabels") {
                                spec.node_selector.match_labels = string_map(&mut ctx, ln, &lf);
                            }
                            m.finish(&mut ctx);
                        }
                    } else {
                        ctx.err(n.pos, &f, "only host policies have `nodeSelector`");
                    }
                } else if host {
                    ctx.err(
                        sn.pos,
                        "nodeSelector",
                        "missing required field `nodeSelector`",
                    );
                }
                spec.meta = meta(&mut ctx, &mut s, ActionLevel::Policy, true);
                if let Some((n, f)) = s.take("process") {
                    spec.process = process_section(&mut ctx, n, &f);
                }
                if let Some((n, f)) = s.take("file") {
                    spec.file = file_section(&mut ctx, n, &f);
                }
                if let Some((n, f)) = s.take("network") {
                    spec.network = network_section(&mut ctx, n, &f, host);
                }
                if let Some((n, f)) = s.take("capabilities") {
                    spec.capabilities = capabilities_section(&mut ctx, n, &f, host);
                }
                if let Some((n, f)) = s.take("syscalls") {
                    spec.syscalls = syscalls_section(&mut ctx, n, &f);
                }
                if let Some((n, f)) = s.take("presets") {
                    if host {
                        ctx.err(n.pos, &f, "host policies have no presets");
                    } else {
                        spec.presets = each_item(&mut ctx, n, &f, |ctx, p, item, pf| {
                            let action = match p.take("action") {
                                Some((an, af)) => parse_action(ctx, an, &af, ActionLevel::Strict),
                                None => None,
                            };
                            let (pname, pos, nf) = required_string(ctx, p, "name", item.pos)?;
                            if !PRESETS.contains(&pname.as_str()) {
                                ctx.err(
                                    pos,
                                    &nf,
                                    format!(
                                        "`{pname}` is not a preset: expected one of {}",
                                        PRESETS.join(", ")
                                    ),
                                );
                                return None;
                            }
                            Some(Preset {
                                name: pname,
                                action,
                                origin: origin(ctx, item, pf),
                            })
                        });
                    }
                }
                if let Some((n, f)) = s.take("apparmor") {
                    spec.apparmor = string(&mut ctx, n, &f);
                }
                if let Some((n, f)) = s.take("device") {
                    if host {
                        spec.device = device_section(&mut ctx, n, &f);
                    } else {
                        ctx.err(n.pos, &f, "only host policies have `device` rules");
                    }
                }
                s.finish(&mut ctx);
            }
        }
        None => ctx.err(doc.pos, "spec", "missing required field `spec`"),
    }
    top.finish(&mut ctx);

    Some(Policy {
        kind,
        name: name?,
        namespace: ns,
        labels,
        annotations,
        spec,
        location: doc.pos.location(file),
    })
}

impl Diagnostics {
    /// Whether an error was already reported at exactly this position.
    pub(crate) fn has_errors_at(&self, pos: Pos) -> bool {
        self.items.iter().any(|d| {
            d.level == Level::Error
                && d.location.line == pos.line
                && d.location.column == pos.column
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_regexes_compile() {
        assert!(PATH_RE.is_match("/etc/passwd"));
        assert!(!PATH_RE.is_match("/etc/"));
        assert!(!PATH_RE.is_match("etc/passwd"));
        assert!(DIR_RE.is_match("/"));
        assert!(DIR_RE.is_match("/etc/"));
        assert!(!DIR_RE.is_match("/etc"));
        assert!(EXECNAME_RE.is_match("sleep"));
        assert!(!EXECNAME_RE.is_match("bin/sleep"));
        assert!(NAME_RE.is_match("block-shadow.v1"));
        assert!(!NAME_RE.is_match("Block"));
        assert!(NAMESPACE_RE.is_match("kube-system"));
    }
}
