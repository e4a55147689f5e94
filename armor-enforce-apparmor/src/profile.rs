//! The structured form of a generated profile, its text rendering and the read-back parser.
//!
//! `compile` builds a [`Profile`]; [`Profile::render`] turns it into AppArmor text; [`parse`]
//! reads that text back into the same structure (without the rule numbers, see
//! [`Profile::without_rules`]), so a test can prove the text says exactly what the structure,
//! and therefore the rule mapping used for alerts, says.

use std::fmt::Write as _;

/// The first line of every profile file armor writes: how stale profiles are recognised.
pub const MARKER: &str = "# armor-managed AppArmor profile; do not edit";

/// Owner qualifier of a file or exec line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Owner {
    /// Any task.
    Any,
    /// `owner`: the task's fsuid equals the file's owner.
    Owner,
    /// `other`: the task's fsuid differs from the file's owner.
    Other,
}

impl Owner {
    /// Whether a task that does (`is_owner`) or does not own the file satisfies the qualifier.
    pub fn admits(self, is_owner: bool) -> bool {
        match self {
            Self::Any => true,
            Self::Owner => is_owner,
            Self::Other => !is_owner,
        }
    }

    fn keyword(self) -> &'static str {
        match self {
            Self::Any => "",
            Self::Owner => "owner ",
            Self::Other => "other ",
        }
    }
}

/// File permission bits, in AppArmor's letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct Perms {
    /// `r`.
    pub read: bool,
    /// `w` (includes append, create, delete, chmod, chown, truncate, rename).
    pub write: bool,
    /// `l`: hard links.
    pub link: bool,
    /// `k`: locks.
    pub lock: bool,
    /// `m`: executable mappings.
    pub mmap: bool,
}

impl Perms {
    /// Every file permission (`rwlkm`).
    pub const ALL: Self = Self {
        read: true,
        write: true,
        link: true,
        lock: true,
        mmap: true,
    };
    /// What reading needs (`rkm`): open for read, lock, map the library.
    pub const READ: Self = Self {
        read: true,
        write: false,
        link: false,
        lock: true,
        mmap: true,
    };
    /// Reading and mapping (`rm`): what executing a binary needs from the profile it enters.
    pub const READ_MAP: Self = Self {
        read: true,
        write: false,
        link: false,
        lock: false,
        mmap: true,
    };
    /// Executable mappings only (`m`).
    pub const MAP: Self = Self {
        read: false,
        write: false,
        link: false,
        lock: false,
        mmap: true,
    };
    /// What every write-like operation needs (`wl`).
    pub const WRITE: Self = Self {
        read: false,
        write: true,
        link: true,
        lock: false,
        mmap: false,
    };

    fn letters(self) -> String {
        let mut s = String::new();
        for (on, c) in [
            (self.read, 'r'),
            (self.write, 'w'),
            (self.link, 'l'),
            (self.lock, 'k'),
            (self.mmap, 'm'),
        ] {
            if on {
                s.push(c);
            }
        }
        s
    }

    fn parse(s: &str) -> Option<Self> {
        let mut p = Self::default();
        for c in s.chars() {
            match c {
                'r' => p.read = true,
                'w' => p.write = true,
                'l' => p.link = true,
                'k' => p.lock = true,
                'm' => p.mmap = true,
                _ => return None,
            }
        }
        Some(p)
    }
}

/// How an allowed exec changes confinement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExecMode {
    /// `ix`: stay in the current profile.
    Inherit,
    /// `px -> NAME`: change to the named profile.
    Profile(String),
    /// Keep the workload's main profile and stack the named child on it. Written as
    /// `px -> MAIN//&MAIN//CHILD`, an explicit stack label the kernel parses as both profiles.
    /// (`px -> &NAME` would not do: the kernel then first looks for a profile *attached* to the
    /// executable, finds none, and refuses the exec with "profile transition not found".)
    Stack(String),
}

/// What one line grants, denies or audits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Body {
    /// A file rule.
    File {
        /// Owner qualifier.
        owner: Owner,
        /// The path glob, as written in the profile (quoted when needed).
        glob: String,
        /// The permissions.
        perms: Perms,
    },
    /// An exec rule: `x` for a deny, a transition mode for an allow.
    Exec {
        /// Owner qualifier.
        owner: Owner,
        /// The path glob.
        glob: String,
        /// The transition (`None` on deny lines: plain `x`).
        mode: Option<ExecMode>,
    },
    /// `network [WHAT],`.
    Network {
        /// Empty (every socket), a socket type (`raw`) or a protocol (`tcp`).
        what: String,
    },
    /// `capability [NAME],`.
    Capability {
        /// Empty for every capability.
        name: String,
    },
    /// A permission outside the categories armor decides (`signal,`), granted so the profile
    /// restricts nothing the engine does not decide.
    Other(String),
    /// A raw `apparmor:` line of a policy.
    Raw(String),
}

/// One rule line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Line {
    /// `audit`: log even when allowed (or, with `deny`, every denial).
    pub audit: bool,
    /// `deny`.
    pub deny: bool,
    /// What it covers.
    pub body: Body,
    /// The rule it came from (index into the compiled policy), `None` for base lines. Kept in
    /// the structure only: the text does not carry it, so [`parse`] returns `None`.
    pub rule: Option<u32>,
}

impl Line {
    /// A base (not rule-derived) grant.
    pub fn base(body: Body) -> Self {
        Self {
            audit: false,
            deny: false,
            body,
            rule: None,
        }
    }

    fn render(&self, out: &mut String, indent: &str) {
        out.push_str(indent);
        if let Body::Raw(text) = &self.body {
            out.push_str(text);
            out.push_str(NATIVE_SUFFIX);
            out.push('\n');
            return;
        }
        if self.audit {
            out.push_str("audit ");
        }
        if self.deny {
            out.push_str("deny ");
        }
        match &self.body {
            Body::File { owner, glob, perms } => {
                let _ = write!(out, "{}{glob} {},", owner.keyword(), perms.letters());
            }
            Body::Exec { owner, glob, mode } => {
                let m = match mode {
                    None => "x".to_owned(),
                    Some(ExecMode::Inherit) => "ix".to_owned(),
                    Some(ExecMode::Profile(p)) => format!("px -> {p}"),
                    Some(ExecMode::Stack(p)) => {
                        let main = p.split("//").next().unwrap_or(p);
                        format!("px -> {main}//&{p}")
                    }
                };
                let _ = write!(out, "{}{glob} {m},", owner.keyword());
            }
            Body::Network { what } if what.is_empty() => out.push_str("network,"),
            Body::Network { what } => {
                let _ = write!(out, "network {what},");
            }
            Body::Capability { name } if name.is_empty() => out.push_str("capability,"),
            Body::Capability { name } => {
                let _ = write!(out, "capability {name},");
            }
            Body::Other(kw) => {
                let _ = write!(out, "{kw},");
            }
            Body::Raw(_) => {}
        }
        out.push('\n');
    }

    /// How this line merges with its neighbours into one alternation line: everything but the
    /// path stem (`None` when it does not merge).
    fn merge_key(&self) -> Option<(MergeKey, &str)> {
        let Body::File { owner, glob, perms } = &self.body else {
            return None;
        };
        let (stem, suffix) = split_mergeable(glob)?;
        Some((
            MergeKey {
                audit: self.audit,
                deny: self.deny,
                owner: *owner,
                perms: *perms,
                suffix,
            },
            stem,
        ))
    }
}

/// The qualifiers, permissions and suffix shared by the lines one alternation line stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MergeKey {
    audit: bool,
    deny: bool,
    owner: Owner,
    perms: Perms,
    suffix: &'static str,
}

/// The suffixes `compile` gives exact paths and directories (see `compile::target_glob`).
const MERGE_SUFFIXES: [&str; 3] = ["{,/,/**}", "{,/,/*,/*/}", "{,/}"];

/// At most this many paths share one alternation line (keeps lines short for every tool that
/// reads profiles).
pub const MERGE_MAX: usize = 64;

/// Splits a file glob `/STEM SUFFIX` whose stem is plain text (no glob, quote, escape or
/// alternation character), so that several stems can share one `/{a,b}SUFFIX` alternation
/// meaning exactly the union of the single lines.
fn split_mergeable(glob: &str) -> Option<(&str, &'static str)> {
    let rest = glob.strip_prefix('/')?;
    let suffix = MERGE_SUFFIXES.into_iter().find(|s| rest.ends_with(s))?;
    let stem = rest.strip_suffix(suffix)?;
    let plain = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(c, '/' | '.' | '_' | '-' | '+' | '=' | ':' | '~' | '%')
    };
    (!stem.is_empty() && !stem.starts_with('/') && stem.chars().all(plain))
        .then_some((stem, suffix))
}

/// Renders a section's lines, merging runs of consecutive file lines that differ only in their
/// path stem into one alternation line that ends with `# N rules` (so [`parse`] can split it
/// back into the same N lines).
fn render_lines(lines: &[Line], out: &mut String, indent: &str) {
    let mut i = 0;
    while let Some(first) = lines.get(i) {
        let Some((key, _)) = first.merge_key() else {
            first.render(out, indent);
            i += 1;
            continue;
        };
        let mut stems = Vec::new();
        for l in lines.iter().skip(i).take(MERGE_MAX) {
            match l.merge_key() {
                Some((k, stem)) if k == key => stems.push(stem),
                _ => break,
            }
        }
        if stems.len() < 2 {
            first.render(out, indent);
            i += 1;
            continue;
        }
        out.push_str(indent);
        if key.audit {
            out.push_str("audit ");
        }
        if key.deny {
            out.push_str("deny ");
        }
        let _ = writeln!(
            out,
            "{}/{{{}}}{} {},{MERGED_INFIX}{}{MERGED_SUFFIX}",
            key.owner.keyword(),
            stems.join(","),
            key.suffix,
            key.perms.letters(),
            stems.len()
        );
        i += stems.len();
    }
}

/// Reorders `lines` so that the lines one alternation line can stand for are adjacent, each
/// group where its first member was (AppArmor's file rules do not depend on their order, so the
/// profile means the same).
pub(crate) fn group_mergeable(lines: Vec<Line>) -> Vec<Line> {
    let mut buckets: Vec<Vec<Line>> = Vec::with_capacity(lines.len());
    let mut open: Vec<(MergeKey, usize)> = Vec::new();
    for l in lines {
        let key = l.merge_key().map(|(k, _)| k);
        let slot = key.and_then(|k| open.iter().find(|(o, _)| *o == k).map(|(_, i)| *i));
        match (slot.and_then(|i| buckets.get_mut(i)), key) {
            (Some(bucket), _) => bucket.push(l),
            (None, key) => {
                if let Some(k) = key {
                    open.push((k, buckets.len()));
                }
                buckets.push(vec![l]);
            }
        }
    }
    buckets.into_iter().flatten().collect()
}

/// Between a merged line's comma and its count: `audit deny /{a,b}{,/} wl,  # 2 rules`.
const MERGED_INFIX: &str = "  # ";
/// After a merged line's count.
const MERGED_SUFFIX: &str = " rules";

/// One profile: the workload's main profile or a child for one `fromSource` executable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Section {
    /// The full profile name (`armor.web_1a2b3c4d`, `armor.web_1a2b3c4d//src_cat_0badf00d`).
    pub name: String,
    /// The executable a child belongs to (`None` for the main profile).
    pub source: Option<String>,
    /// Whether the child is stacked on the main profile (`true`) or replaces it (`false`).
    pub stacked: bool,
    /// The lines, in output order.
    pub lines: Vec<Line>,
}

impl Section {
    /// The name inside the parent (`src_cat_0badf00d`), or the full name for the main profile.
    pub fn local_name(&self) -> &str {
        self.name.rsplit("//").next().unwrap_or(&self.name)
    }
}

/// A workload's complete profile.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Profile {
    /// The workload's name (`WorkloadKey::name`).
    pub workload: String,
    /// The main profile, then the children ordered by source.
    pub sections: Vec<Section>,
}

/// The profile flags armor uses.
pub const FLAGS: &str = "flags=(attach_disconnected,mediate_deleted)";

impl Profile {
    /// The main profile.
    pub fn main(&self) -> Option<&Section> {
        self.sections.first()
    }

    /// The section named `name` (full name).
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The profile as [`parse`] reads its text back: the same sections and lines, without the
    /// rule numbers (they live in the structure the enforcer keeps, not in the text).
    pub fn without_rules(&self) -> Self {
        let mut p = self.clone();
        for s in &mut p.sections {
            for l in &mut s.lines {
                l.rule = None;
            }
        }
        p
    }

    /// The AppArmor text. Consecutive file lines that differ only in a plain path stem share
    /// one alternation line (`audit deny /{etc/shadow,etc/gshadow}{,/} rwlkm,  # 2 rules`, at
    /// most [`MERGE_MAX`] paths each), which keeps the text small.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(MARKER);
        out.push('\n');
        let _ = writeln!(out, "# workload: {}", escape_comment(&self.workload));
        let Some((main, children)) = self.sections.split_first() else {
            return out;
        };
        let _ = writeln!(out, "profile {} {FLAGS} {{", main.name);
        render_lines(&main.lines, &mut out, "  ");
        for c in children {
            out.push('\n');
            let _ = writeln!(
                out,
                "  # source: {} ({})",
                escape_comment(c.source.as_deref().unwrap_or("")),
                if c.stacked { "stacked" } else { "full" }
            );
            let _ = writeln!(out, "  profile {} {FLAGS} {{", c.local_name());
            render_lines(&c.lines, &mut out, "    ");
            out.push_str("  }\n");
        }
        out.push_str("}\n");
        out
    }
}

fn escape_comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Why profile text could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
#[non_exhaustive]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Reads text made by [`Profile::render`] back into a [`Profile`]. It understands exactly the
/// subset armor writes (raw policy lines come back as [`Body::Raw`] only when they are not one
/// of armor's line forms).
pub fn parse(text: &str) -> Result<Profile, ParseError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let err = |line: usize, message: &str| ParseError {
        line,
        message: message.to_owned(),
    };
    match lines.next() {
        Some((_, l)) if l == MARKER => {}
        _ => return Err(err(1, "missing armor marker")),
    }
    let workload = match lines.next() {
        Some((_, l)) => l
            .strip_prefix("# workload: ")
            .ok_or_else(|| err(2, "missing workload comment"))?
            .to_owned(),
        None => return Err(err(2, "missing workload comment")),
    };
    let mut sections: Vec<Section> = Vec::new();
    let mut pending: Option<(String, bool)> = None;
    let mut depth = 0usize;
    let mut main_name = String::new();
    for (n, raw) in lines {
        let l = raw.trim();
        if l.is_empty() {
            continue;
        }
        if let Some(rest) = l.strip_prefix("# source: ") {
            let (src, kind) = rest
                .rsplit_once(" (")
                .ok_or_else(|| err(n, "bad source comment"))?;
            pending = Some((src.to_owned(), kind == "stacked)"));
            continue;
        }
        if let Some(rest) = l.strip_prefix("profile ") {
            let name = rest
                .strip_suffix(&format!(" {FLAGS} {{"))
                .ok_or_else(|| err(n, "bad profile header"))?;
            let (full, source, stacked) = if depth == 0 {
                main_name = name.to_owned();
                (name.to_owned(), None, false)
            } else {
                let (src, stacked) = pending
                    .take()
                    .ok_or_else(|| err(n, "child without source"))?;
                (format!("{main_name}//{name}"), Some(src), stacked)
            };
            sections.push(Section {
                name: full,
                source,
                stacked,
                lines: Vec::new(),
            });
            depth += 1;
            continue;
        }
        if l == "}" {
            depth = depth
                .checked_sub(1)
                .ok_or_else(|| err(n, "unbalanced `}`"))?;
            continue;
        }
        // Child lines go to the last section; main lines after children cannot occur.
        let target = sections
            .last_mut()
            .ok_or_else(|| err(n, "line outside a profile"))?;
        target
            .lines
            .extend(parse_merged(l).map_err(|m| err(n, &m))?);
    }
    if depth != 0 {
        return Err(err(0, "unterminated profile"));
    }
    Ok(Profile { workload, sections })
}

/// Appended to every raw policy line (`spec.apparmor`) so that reading a profile back tells the
/// policy's own lines from armor's line forms (AppArmor reads it as a comment).
const NATIVE_SUFFIX: &str = "  # native";

/// One text line: a merged alternation line becomes the lines it stands for.
fn parse_merged(l: &str) -> Result<Vec<Line>, String> {
    let merged = l
        .strip_suffix(MERGED_SUFFIX)
        .and_then(|r| r.rsplit_once(MERGED_INFIX))
        .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let Some((single, count)) = merged else {
        return Ok(vec![parse_line(l)?]);
    };
    let count: usize = count.parse().map_err(|e| format!("merged count: {e}"))?;
    let line = parse_line(single)?;
    let Body::File { owner, glob, perms } = &line.body else {
        return Err(format!("merged line `{l}` is not a file line"));
    };
    let (alternation, suffix) = glob
        .strip_prefix("/{")
        .and_then(|r| {
            MERGE_SUFFIXES
                .into_iter()
                .find_map(|s| Some((r.strip_suffix(s)?.strip_suffix('}')?, s)))
        })
        .ok_or_else(|| format!("merged line `{l}` has no `/{{…}}SUFFIX` alternation"))?;
    let mut out = Vec::with_capacity(count);
    for stem in alternation.split(',') {
        let glob = format!("/{stem}{suffix}");
        if split_mergeable(&glob).is_none() {
            return Err(format!("merged line `{l}`: `{stem}` is not a plain path"));
        }
        out.push(Line {
            audit: line.audit,
            deny: line.deny,
            body: Body::File {
                owner: *owner,
                glob,
                perms: *perms,
            },
            rule: None,
        });
    }
    if out.len() != count || count < 2 {
        return Err(format!(
            "merged line `{l}` names {} paths, its comment says {count}",
            out.len()
        ));
    }
    Ok(out)
}

fn parse_line(l: &str) -> Result<Line, String> {
    if let Some(text) = l.strip_suffix(NATIVE_SUFFIX) {
        return Ok(Line::base(Body::Raw(text.to_owned())));
    }
    let rule = None;
    let Some(body_text) = l.strip_suffix(',') else {
        return Ok(Line::base(Body::Raw(l.to_owned())));
    };
    let mut rest = body_text;
    let audit = take_word(&mut rest, "audit");
    let deny = take_word(&mut rest, "deny");
    let owner = if take_word(&mut rest, "owner") {
        Owner::Owner
    } else if take_word(&mut rest, "other") {
        Owner::Other
    } else {
        Owner::Any
    };
    let body = if rest == "network" {
        Body::Network {
            what: String::new(),
        }
    } else if let Some(w) = rest.strip_prefix("network ") {
        Body::Network { what: w.to_owned() }
    } else if rest == "capability" {
        Body::Capability {
            name: String::new(),
        }
    } else if let Some(c) = rest.strip_prefix("capability ") {
        Body::Capability { name: c.to_owned() }
    } else if rest.starts_with('/') || rest.starts_with('"') {
        let (glob, mode) = split_glob(rest)?;
        if mode == "x" {
            Body::Exec {
                owner,
                glob,
                mode: None,
            }
        } else if mode == "ix" {
            Body::Exec {
                owner,
                glob,
                mode: Some(ExecMode::Inherit),
            }
        } else if let Some(t) = mode.strip_prefix("px -> ") {
            let m = match t.split_once("//&") {
                Some((main, child)) => {
                    if !child.starts_with(&format!("{main}//")) {
                        return Err(format!("stack `{t}` is not a main profile and its child"));
                    }
                    ExecMode::Stack(child.to_owned())
                }
                None => ExecMode::Profile(t.to_owned()),
            };
            Body::Exec {
                owner,
                glob,
                mode: Some(m),
            }
        } else {
            let perms = Perms::parse(mode).ok_or_else(|| format!("bad permissions `{mode}`"))?;
            Body::File { owner, glob, perms }
        }
    } else if !audit && !deny && owner == Owner::Any && !rest.contains(' ') {
        Body::Other(rest.to_owned())
    } else {
        return Err(format!("unknown line `{l}`"));
    };
    Ok(Line {
        audit,
        deny,
        body,
        rule,
    })
}

fn take_word(s: &mut &str, w: &str) -> bool {
    match s.strip_prefix(w).and_then(|r| r.strip_prefix(' ')) {
        Some(r) => {
            *s = r;
            true
        }
        None => false,
    }
}

/// Splits `GLOB MODE` where GLOB may be quoted (with `\` escapes inside).
fn split_glob(s: &str) -> Result<(String, &str), String> {
    if s.starts_with('"') {
        let mut escaped = false;
        for (i, c) in s.char_indices().skip(1) {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                let end = i + 1;
                let glob = s.get(..end).ok_or("bad quote")?;
                let mode = s
                    .get(end..)
                    .and_then(|m| m.strip_prefix(' '))
                    .ok_or("missing mode")?;
                return Ok((glob.to_owned(), mode));
            }
        }
        return Err("unterminated quote".to_owned());
    }
    // Unquoted globs contain no space (quoting is used for those).
    let (glob, mode) = s.split_once(' ').ok_or("missing mode")?;
    Ok((glob.to_owned(), mode))
}

/// Escapes a literal path for a profile: glob characters get a `\`, and the whole path is
/// quoted when it contains characters that end an unquoted token. `None` for paths AppArmor
/// cannot name (control characters).
pub fn literal(path: &str) -> Option<String> {
    if path.chars().any(char::is_control) {
        return None;
    }
    let mut s = String::with_capacity(path.len() + 2);
    for c in path.chars() {
        if matches!(
            c,
            '*' | '?' | '[' | ']' | '{' | '}' | '^' | '\\' | '"' | '@' | ','
        ) {
            s.push('\\');
        }
        s.push(c);
    }
    Some(s)
}

/// Quotes a glob when it contains characters that would end an unquoted token.
pub fn quote_if_needed(glob: &str) -> String {
    if glob
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '#' | '"'))
        || glob.contains("->")
    {
        format!("\"{glob}\"")
    } else {
        glob.to_owned()
    }
}

/// The glob inside optional quotes.
pub fn unquote(glob: &str) -> &str {
    glob.strip_prefix('"')
        .and_then(|g| g.strip_suffix('"'))
        .unwrap_or(glob)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
mod tests {
    use super::*;

    fn deny(glob: &str, perms: Perms, rule: u32) -> Line {
        Line {
            audit: true,
            deny: true,
            body: Body::File {
                owner: Owner::Any,
                glob: glob.to_owned(),
                perms,
            },
            rule: Some(rule),
        }
    }

    fn profile(lines: Vec<Line>) -> Profile {
        Profile {
            workload: "t/w".to_owned(),
            sections: vec![Section {
                name: "armor.t_w_00000000".to_owned(),
                source: None,
                stacked: false,
                lines: group_mergeable(lines),
            }],
        }
    }

    #[test]
    fn plain_paths_with_one_key_share_a_line_and_read_back_apart() {
        let p = profile(vec![
            deny("/etc/shadow{,/}", Perms::ALL, 0),
            deny("/etc{,/,/**}", Perms::ALL, 1),
            deny("/etc/gshadow{,/}", Perms::ALL, 2),
            deny("/etc/passwd{,/}", Perms::WRITE, 3),
            deny("/data/*.log{,/}", Perms::ALL, 4),
            deny("/srv/a\\,b{,/}", Perms::ALL, 5),
            deny("/srv/x{,/}", Perms::ALL, 6),
        ]);
        let text = p.render();
        assert!(
            text.contains("  audit deny /{etc/shadow,etc/gshadow,srv/x}{,/} rwlkm,  # 3 rules\n"),
            "{text}"
        );
        // Other suffixes, permissions and non-plain stems stay on their own lines.
        assert!(
            text.contains("  audit deny /etc{,/,/**} rwlkm,\n"),
            "{text}"
        );
        assert!(
            text.contains("  audit deny /etc/passwd{,/} wl,\n"),
            "{text}"
        );
        assert!(
            text.contains("  audit deny /data/*.log{,/} rwlkm,\n"),
            "{text}"
        );
        assert!(
            text.contains("  audit deny /srv/a\\,b{,/} rwlkm,\n"),
            "{text}"
        );
        assert_eq!(parse(&text).unwrap(), p.without_rules());
    }

    #[test]
    fn long_runs_are_split_at_merge_max() {
        let n = MERGE_MAX * 2 + 1;
        let p = profile(
            (0..n)
                .map(|i| deny(&format!("/srv/f{i}{{,/}}"), Perms::ALL, i as u32))
                .collect(),
        );
        let text = p.render();
        let merged: Vec<&str> = text.lines().filter(|l| l.contains(" rules")).collect();
        assert_eq!(merged.len(), 2, "{text}");
        assert!(
            merged
                .iter()
                .all(|l| l.ends_with(&format!("# {MERGE_MAX} rules")))
        );
        assert!(text.contains(&format!("  audit deny /srv/f{}{{,/}} rwlkm,\n", n - 1)));
        assert_eq!(parse(&text).unwrap(), p.without_rules());
    }

    #[test]
    fn a_merged_line_whose_count_disagrees_is_rejected() {
        let p = profile(vec![
            deny("/a{,/}", Perms::ALL, 0),
            deny("/b{,/}", Perms::ALL, 1),
        ]);
        let text = p.render();
        assert!(parse(&text).is_ok());
        let wrong = text.replace("# 2 rules", "# 3 rules");
        let e = parse(&wrong).unwrap_err();
        assert!(e.message.contains("names 2 paths"), "{e}");
        let not_plain = text.replace("/{a,b}", "/{a,b*}");
        assert!(
            parse(&not_plain)
                .unwrap_err()
                .message
                .contains("not a plain path")
        );
    }
}
