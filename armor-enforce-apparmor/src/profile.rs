//! The structured form of a generated profile, its text rendering and the read-back parser.
//!
//! `compile` builds a [`Profile`]; [`Profile::render`] turns it into AppArmor text; [`parse`]
//! reads that text back into the same structure, so a test can prove the text says exactly what
//! the structure (and therefore the rule mapping used for alerts) says.

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
    /// `px -> &NAME`: keep the current profile and stack the named one on top.
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
    /// The rule it came from (index into the compiled policy), `None` for base lines.
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
                    Some(ExecMode::Stack(p)) => format!("px -> &{p}"),
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
        if let Some(r) = self.rule {
            let _ = write!(out, "  # rule {r}");
        }
        out.push('\n');
    }
}

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

    /// The AppArmor text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(MARKER);
        out.push('\n');
        let _ = writeln!(out, "# workload: {}", escape_comment(&self.workload));
        let Some((main, children)) = self.sections.split_first() else {
            return out;
        };
        let _ = writeln!(out, "profile {} {FLAGS} {{", main.name);
        for l in &main.lines {
            l.render(&mut out, "  ");
        }
        for c in children {
            out.push('\n');
            let _ = writeln!(
                out,
                "  # source: {} ({})",
                escape_comment(c.source.as_deref().unwrap_or("")),
                if c.stacked { "stacked" } else { "full" }
            );
            let _ = writeln!(out, "  profile {} {FLAGS} {{", c.local_name());
            for l in &c.lines {
                l.render(&mut out, "    ");
            }
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
        target.lines.push(parse_line(l).map_err(|m| err(n, &m))?);
    }
    if depth != 0 {
        return Err(err(0, "unterminated profile"));
    }
    Ok(Profile { workload, sections })
}

/// Appended to every raw policy line (`spec.apparmor`) so that reading a profile back tells the
/// policy's own lines from armor's line forms (AppArmor reads it as a comment).
const NATIVE_SUFFIX: &str = "  # native";

fn parse_line(l: &str) -> Result<Line, String> {
    if let Some(text) = l.strip_suffix(NATIVE_SUFFIX) {
        return Ok(Line::base(Body::Raw(text.to_owned())));
    }
    let (body_text, rule) = match l.rsplit_once(",  # rule ") {
        Some((b, r)) => (
            b,
            Some(r.parse::<u32>().map_err(|e| format!("rule number: {e}"))?),
        ),
        None => match l.strip_suffix(',') {
            Some(b) => (b, None),
            None => {
                return Ok(Line::base(Body::Raw(l.to_owned())));
            }
        },
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
            let m = match t.strip_prefix('&') {
                Some(s) => ExecMode::Stack(s.to_owned()),
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
