//! Rules → one AppArmor profile per workload, derived from the engine's precedence.
//!
//! Layout (see the crate documentation for the reasoning):
//!
//! * the **main profile** holds every rule without `fromSource`, and an exec transition for
//!   every `fromSource` executable;
//! * a **child profile** per `fromSource` executable holds that executable's rules. When no
//!   `fromSource` rule is an Allow, children are **stacked** on the main profile (`px -> MAIN//&MAIN//CHILD`):
//!   the kernel intersects both, which is exactly "a fromSource Block or any global Block wins",
//!   and the global rules are not copied. Only when some `fromSource` rule is an Allow (which
//!   must beat a global Block, an intersection cannot widen) are children **full**: they hold
//!   the global rules too, with the global Blocks that a source Allow overrides removed.
//!
//! A category is *restrictive* when it is in allow-list mode with a `block` posture: then
//! nothing is granted but the Allow rules, and AppArmor's implicit denial is the DefaultPosture
//! Block. Otherwise the category is granted wholesale and Block rules subtract from it with
//! `audit deny`.

use std::collections::BTreeSet;

use armor_core::enforcer::{Artifact, Unenforceable};
use armor_core::engine::RuleSet;

use armor_core::event::caps;
use armor_core::posture::PostureAction;
use armor_core::rule::{PresetKind, ProtocolMatch, SourceMatch, trim_slash};
use armor_core::workload::WorkloadKey;
use armor_core::{Action, Category, Event, Rule, Target, Verdict};

use crate::profile::{
    Body, ExecMode, Line, Owner, Perms, Profile, Section, group_mergeable, literal, quote_if_needed,
};
use crate::simulation::Ranking;

/// Socket types AppArmor's parser names.
const TYPES: [&str; 6] = ["stream", "dgram", "raw", "rdm", "seqpacket", "packet"];

/// The compiled profile of one workload.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AppArmorArtifact {
    /// The workload.
    pub key: WorkloadKey,
    /// The structured profile.
    pub profile: Profile,
    /// The engine's precedence over the profile's rules (to map denials back to rules).
    pub ranking: Ranking,
    /// The rendered text (what `apply` writes and loads).
    pub text: String,
    /// Rules not enforced exactly as the engine decides them, with the reason.
    pub not_enforced: Vec<Unenforceable>,
}

impl AppArmorArtifact {
    /// The main profile's name.
    pub fn name(&self) -> &str {
        self.profile.main().map_or("", |s| s.name.as_str())
    }
}

impl Artifact for AppArmorArtifact {
    fn render(&self) -> String {
        self.text.clone()
    }

    fn unenforceable(&self) -> &[Unenforceable] {
        &self.not_enforced
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// 32-bit FNV-1a: a stable, dependency-free hash for profile names.
fn fnv32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn sanitize(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

/// Every armor profile's name starts with this.
pub const NAME_PREFIX: &str = "armor.";

/// The stable profile name of a workload: `armor.<sanitised name>_<hash of the name>`.
pub fn profile_name(key: &WorkloadKey) -> String {
    format!(
        "{NAME_PREFIX}{}_{:08x}",
        sanitize(&key.name, 64),
        fnv32(&key.name)
    )
}

/// The local name of the child profile of `source`.
pub fn child_name(source: &str) -> String {
    let base = source.rsplit('/').next().unwrap_or(source);
    format!("src_{}_{:08x}", sanitize(base, 32), fnv32(source))
}

/// The profile glob of a path target (`exec`: for exec lines, where paths stay literal so
/// their transition dominates glob lines).
fn target_glob(t: &Target, exec: bool) -> Result<String, String> {
    let lit = |p: &str| literal(p).ok_or_else(|| format!("path {p:?} has control characters"));
    let g = match t {
        Target::Path(p) => {
            let l = lit(trim_slash(p))?;
            if exec { l } else { format!("{l}{{,/}}") }
        }
        Target::ExecName(n) => format!("/{{,**/}}{}", lit(n)?),
        Target::Directory { dir, recursive } => {
            let base = dir.trim_end_matches('/');
            match (base.is_empty(), recursive) {
                (true, true) => "/{,**}".to_owned(),
                (true, false) => "/{,*,*/}".to_owned(),
                (false, true) => format!("{}{{,/,/**}}", lit(base)?),
                (false, false) => format!("{}{{,/,/*,/*/}}", lit(base)?),
            }
        }
        Target::Pattern(g) => {
            let s = g.as_str();
            if s.ends_with('/') {
                return Err(
                    "a pattern ending in `/` matches nothing in the engine (paths are \
                            compared without a trailing `/`) but directories in AppArmor"
                        .to_owned(),
                );
            }
            // A trailing `*`/`**` may match nothing in AppArmor, so `/d/*` would match the
            // directory `/d/` itself (the kernel names directories with a trailing `/`); in
            // the engine it never matches `/d`. Require one character.
            let s = if let Some(b) = s.strip_suffix("/**") {
                format!("{b}/?**")
            } else if let Some(b) = s.strip_suffix("/*") {
                format!("{b}/?*")
            } else {
                s.to_owned()
            };
            format!("{s}{{,/}}")
        }
        other => return Err(format!("{other} is not a path")),
    };
    Ok(quote_if_needed(&g))
}

/// The (owner, permissions) a Block or Audit file rule covers: the complement of its
/// permitted set.
/// Whose files an Allow of `r` grants: the owner's with `ownerOnly`, else anyone's.
fn allowed_owner(r: &Rule) -> Owner {
    if r.owner_only {
        Owner::Owner
    } else {
        Owner::Any
    }
}

fn covered_file(r: &Rule) -> Vec<(Owner, Perms)> {
    match (r.read_only, r.owner_only) {
        (false, false) => vec![(Owner::Any, Perms::ALL)],
        (true, false) => vec![(Owner::Any, Perms::WRITE)],
        (false, true) => vec![(Owner::Other, Perms::ALL)],
        (true, true) => vec![(Owner::Owner, Perms::WRITE), (Owner::Other, Perms::ALL)],
    }
}

fn cap_name(c: u8) -> Option<String> {
    let n = caps::name(c)?.to_ascii_lowercase();
    let bare = n.strip_prefix("cap_").unwrap_or(&n).to_owned();
    // Capabilities AppArmor 3.0's parser knows (0..=40).
    (c <= 40).then_some(bare)
}

/// Network line text for a protocol match, and whether it is exact.
fn network_what(m: ProtocolMatch) -> Result<(String, bool), String> {
    match m {
        ProtocolMatch::All => Ok((String::new(), true)),
        ProtocolMatch::Type(_) => {
            let n = m.name();
            if TYPES.contains(&n) {
                Ok((n.to_owned(), true))
            } else {
                Err(format!(
                    "AppArmor has no `{n}` socket type; the rule is not in the profile"
                ))
            }
        }
        ProtocolMatch::Protocol(_) => match m.name() {
            n @ ("tcp" | "udp" | "icmp") => Ok((n.to_owned(), false)),
            n => Err(format!(
                "AppArmor's parser has no `{n}` protocol; the rule is not in the profile"
            )),
        },
        _ => Err("unknown protocol match".to_owned()),
    }
}

struct Builder<'a> {
    rules: &'a RuleSet,
    main: String,
    sources: BTreeSet<String>,
    stacked: bool,
    restrictive: [bool; 4],
    unenforceable: BTreeSet<(u32, String)>,
}

fn source_paths(r: &Rule) -> impl Iterator<Item = &str> {
    r.from_source.iter().filter_map(|s| match s {
        SourceMatch::Path(p) => Some(p.as_str()),
        _ => None,
    })
}

/// Whether two targets may match a common path or socket (conservative: `true` when unsure).
fn may_overlap(a: &Target, b: &Target) -> bool {
    fn region(t: &Target) -> Option<(String, bool)> {
        match t {
            Target::Path(p) => Some((trim_slash(p).to_owned(), true)),
            Target::Directory { dir, .. } => Some((dir.trim_end_matches('/').to_owned(), false)),
            Target::Pattern(g) => Some((g.literal_prefix().to_owned(), false)),
            Target::ExecName(_) => Some((String::new(), false)),
            _ => None,
        }
    }
    if let (Target::Protocol(x), Target::Protocol(y)) = (a, b) {
        // `all` holds every socket; a protocol (tcp) is carried by some socket type (stream).
        return match (x, y) {
            (ProtocolMatch::All, _) | (_, ProtocolMatch::All) => true,
            (ProtocolMatch::Type(_), ProtocolMatch::Protocol(_))
            | (ProtocolMatch::Protocol(_), ProtocolMatch::Type(_)) => true,
            _ => x == y,
        };
    }
    match (region(a), region(b)) {
        (Some((pa, true)), Some((pb, true))) => pa == pb,
        (Some((pa, ea)), Some((pb, eb))) => {
            if ea {
                pa.starts_with(&pb)
            } else if eb {
                pb.starts_with(&pa)
            } else {
                pa.starts_with(&pb) || pb.starts_with(&pa)
            }
        }
        _ => a == b,
    }
}

/// Why the AppArmor profile language cannot carry preset `p`.
fn preset_gap(p: PresetKind) -> &'static str {
    match p {
        PresetKind::FilelessExec => {
            "AppArmor has no rule for a file with no name (a memfd or an unlinked file is \
             mediated by a path no profile rule can name), so the preset is not enforced"
        }
        PresetKind::Exec => "AppArmor profiles have no condition on the controlling terminal",
        PresetKind::ProtectEnv | PresetKind::ProtectProc => {
            "AppArmor rules cannot compare the process a /proc entry belongs to with the caller \
             (no pid condition; `owner` compares file owners)"
        }
        PresetKind::AnonymousMapExec => {
            "AppArmor does not mediate anonymous memory (mmap or mprotect of no file)"
        }
        _ => "AppArmor does not carry this preset",
    }
}

impl Builder<'_> {
    fn warn(&mut self, id: u32, reason: impl Into<String>) {
        self.unenforceable.insert((id, reason.into()));
    }

    fn child_full(&self, source: &str) -> String {
        format!("{}//{}", self.main, child_name(source))
    }

    /// The transition an exec of `source` takes from a section (`in_main`).
    fn transition(&self, source: &str, in_main: bool) -> ExecMode {
        let target = self.child_full(source);
        if in_main && self.stacked {
            ExecMode::Stack(target)
        } else {
            ExecMode::Profile(target)
        }
    }

    /// The mode of ordinary allowed execs in a section.
    fn grant_mode(&self, in_main: bool) -> ExecMode {
        if in_main {
            ExecMode::Inherit
        } else {
            ExecMode::Profile(self.main.clone())
        }
    }

    /// The lines of one rule in a section whose category restrictiveness is `restrictive`.
    fn rule_lines(&mut self, id: u32, r: &Rule, restrictive: bool, in_main: bool) -> Vec<Line> {
        if r.action == Action::Audit && restrictive {
            self.warn(
                id,
                "Audit rule in a category under allow-list mode with block posture: AppArmor \
                 cannot audit without granting, so the Audit alert is not raised",
            );
            return Vec::new();
        }
        match r.category {
            Category::File => self.file_lines(id, r, restrictive),
            Category::Process => self.exec_lines(id, r, restrictive, in_main),
            Category::Network => self.network_lines(id, r, restrictive),
            Category::Capabilities => self.capability_lines(id, r, restrictive),
            _ => Vec::new(),
        }
    }

    /// A file rule: an Allow grants (only under an allow-list), an Audit or Block audits (and
    /// denies) every permission the rule covers.
    fn file_lines(&mut self, id: u32, r: &Rule, restrictive: bool) -> Vec<Line> {
        let glob = match target_glob(&r.target, false) {
            Ok(g) => g,
            Err(e) => {
                self.warn(id, e);
                return Vec::new();
            }
        };
        if r.action == Action::Allow {
            if !restrictive {
                return Vec::new();
            }
            let perms = if r.read_only { Perms::READ } else { Perms::ALL };
            let owner = allowed_owner(r);
            return vec![rule_line(
                id,
                false,
                false,
                Body::File { owner, glob, perms },
            )];
        }
        let deny = r.action == Action::Block;
        covered_file(r)
            .into_iter()
            .map(|(owner, perms)| {
                rule_line(
                    id,
                    true,
                    deny,
                    Body::File {
                        owner,
                        glob: glob.clone(),
                        perms,
                    },
                )
            })
            .collect()
    }

    /// A process rule: an Allow grants the exec with its transition (only under an
    /// allow-list); a Block denies the exec and mapping the file executable; an Audit audits
    /// the exec and keeps its transition.
    fn exec_lines(&mut self, id: u32, r: &Rule, restrictive: bool, in_main: bool) -> Vec<Line> {
        let glob = match target_glob(&r.target, true) {
            Ok(g) => g,
            Err(e) => {
                self.warn(id, e);
                return Vec::new();
            }
        };
        let mode = match &r.target {
            Target::Path(p) if self.sources.contains(trim_slash(p)) => {
                self.transition(trim_slash(p), in_main)
            }
            _ => self.grant_mode(in_main),
        };
        if r.action == Action::Allow {
            if !restrictive {
                return Vec::new();
            }
            return vec![rule_line(
                id,
                false,
                false,
                Body::Exec {
                    owner: allowed_owner(r),
                    glob,
                    mode: Some(mode),
                },
            )];
        }
        let owner = if r.owner_only {
            Owner::Other
        } else {
            Owner::Any
        };
        let deny = r.action == Action::Block;
        let mut out = Vec::new();
        if deny {
            // Mapping the file executable is an exec of it too: `ld.so FILE` maps FILE's code
            // instead of executing it (`m`, not `x`).
            out.push(rule_line(
                id,
                true,
                true,
                Body::File {
                    owner,
                    glob: glob.clone(),
                    perms: Perms::MAP,
                },
            ));
        }
        out.push(rule_line(
            id,
            true,
            deny,
            Body::Exec {
                owner,
                glob,
                mode: if deny { None } else { Some(mode) },
            },
        ));
        out
    }

    /// A network rule: one `network` line for its protocol or type, named when AppArmor
    /// mediates it less exactly than the engine.
    fn network_lines(&mut self, id: u32, r: &Rule, restrictive: bool) -> Vec<Line> {
        let Target::Protocol(m) = &r.target else {
            self.warn(id, "DNS rules are not mediated by AppArmor");
            return Vec::new();
        };
        let what = match network_what(*m) {
            Ok((w, exact)) => {
                if !exact {
                    self.warn(
                        id,
                        format!(
                            "`network {w}` is mediated by family and type on most kernels, and \
                             a socket created with protocol 0 is not resolved to {w} as the \
                             engine does"
                        ),
                    );
                }
                w
            }
            Err(e) => {
                self.warn(id, e);
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        self.simple(id, r.action, restrictive, Body::Network { what }, &mut out);
        out
    }

    /// A capability rule: one `capability` line, when AppArmor's parser knows the capability.
    fn capability_lines(&mut self, id: u32, r: &Rule, restrictive: bool) -> Vec<Line> {
        let Target::Capability(c) = &r.target else {
            return Vec::new();
        };
        let Some(name) = cap_name(*c) else {
            self.warn(id, "capability unknown to AppArmor 3.0's parser");
            return Vec::new();
        };
        let mut out = Vec::new();
        self.simple(
            id,
            r.action,
            restrictive,
            Body::Capability { name },
            &mut out,
        );
        out
    }

    fn simple(&self, id: u32, action: Action, restrictive: bool, body: Body, out: &mut Vec<Line>) {
        let (audit, deny) = match action {
            Action::Allow if restrictive => (false, false),
            Action::Allow => return,
            Action::Block => (true, true),
            _ => (true, false),
        };
        out.push(Line {
            audit,
            deny,
            body,
            rule: Some(id),
        });
    }

    /// Grants for the categories that are not restrictive (`restrictive` per category).
    fn base_lines(&self, restrictive: [bool; 4], in_main: bool) -> Vec<Line> {
        let mut v: Vec<Line> = [
            "signal",
            "ptrace",
            "unix",
            "dbus",
            "mount",
            "umount",
            "pivot_root",
        ]
        .into_iter()
        .map(|k| Line::base(Body::Other(k.to_owned())))
        .collect();
        let [process, file, network, capability] = restrictive;
        // Under a file allow-list only executable mappings are granted wholesale: the engine
        // decides opens, not mappings (mapping needs an fd the open rules already decided),
        // and the kernel maps an executed binary under its new profile, which would otherwise
        // kill the process after the point of no return of its exec.
        v.push(Line::base(Body::File {
            owner: Owner::Any,
            glob: "/{,**}".to_owned(),
            perms: if file { Perms::MAP } else { Perms::ALL },
        }));
        if !process {
            v.push(Line::base(Body::Exec {
                owner: Owner::Any,
                glob: "/{,**}".to_owned(),
                mode: Some(self.grant_mode(in_main)),
            }));
        }
        if !network {
            v.push(Line::base(Body::Network {
                what: String::new(),
            }));
        }
        if !capability {
            v.push(Line::base(Body::Capability {
                name: String::new(),
            }));
        }
        v
    }

    /// Exec transitions into every source's child, qualified by what the engine allows when
    /// the process category is restrictive.
    fn transitions(&self, restrictive: bool, from: Option<&str>, in_main: bool) -> Vec<Line> {
        let mut v = Vec::new();
        for s in &self.sources {
            let Some(glob) = literal(s).map(|l| quote_if_needed(&l)) else {
                continue;
            };
            let owner = if restrictive {
                let allowed = |owner_uid: u32| {
                    self.rules
                        .decide(
                            &Event::exec(s.clone(), from)
                                .with_uid(0)
                                .with_owner(owner_uid),
                        )
                        .verdict
                        != Verdict::Block
                };
                match (allowed(0), allowed(1)) {
                    (true, true) => Owner::Any,
                    (true, false) => Owner::Owner,
                    (false, true) => Owner::Other,
                    (false, false) => continue,
                }
            } else {
                Owner::Any
            };
            v.push(Line::base(Body::Exec {
                owner,
                glob,
                mode: Some(self.transition(s, in_main)),
            }));
        }
        v
    }
}

/// A line of rule `id`.
fn rule_line(id: u32, audit: bool, deny: bool, body: Body) -> Line {
    Line {
        audit,
        deny,
        body,
        rule: Some(id),
    }
}

/// Compiles a workload's rules (and the raw `apparmor:` lines of its policies, taken from the
/// rule set) into a profile.
pub fn compile(key: &WorkloadKey, rules: &RuleSet) -> AppArmorArtifact {
    let raw: Vec<&str> = rules
        .native_apparmor()
        .flat_map(|(_, text)| text.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut b = Builder {
        rules,
        main: profile_name(key),
        sources: BTreeSet::new(),
        stacked: true,
        restrictive: restrictive_of(rules),
        unenforceable: BTreeSet::new(),
    };
    let (global, sourced) = b.sort_rules();
    let mut sections = vec![b.main_section(&global, &raw)];
    let sources: Vec<String> = b.sources.iter().cloned().collect();
    for s in sources {
        sections.push(b.child_section(&s, &sourced, &global));
    }
    let profile = Profile {
        workload: key.name.clone(),
        sections,
    };
    let text = profile.render();
    let ranking = Ranking::of(
        rules,
        profile
            .sections
            .iter()
            .flat_map(|s| s.lines.iter().filter_map(|l| l.rule)),
    );
    AppArmorArtifact {
        key: key.clone(),
        ranking,
        profile,
        text,
        not_enforced: b
            .unenforceable
            .into_iter()
            .map(|(rule, reason)| Unenforceable::new(rule, reason))
            .collect(),
    }
}

/// Per category with a posture: whether the profile denies what no rule allows (allow-list
/// mode with a blocking posture; processes follow the file posture).
fn restrictive_of(rules: &RuleSet) -> [bool; 4] {
    let posture = rules.posture();
    let mut restrictive = [false; 4];
    for (i, c) in Category::WITH_POSTURE.iter().enumerate() {
        let p = match c {
            Category::Network => posture.network,
            Category::Capabilities => posture.capabilities,
            _ => posture.file,
        };
        if let Some(slot) = restrictive.get_mut(i) {
            *slot = rules.allow_list(*c) && p == PostureAction::Block;
        }
    }
    restrictive
}

impl<'r> Builder<'r> {
    /// The rules a profile carries, split into those of every program (`global`) and those of
    /// `fromSource` programs (`sourced`, whose sources become children); what AppArmor cannot
    /// mediate (syscalls, DNS) or reports differently (Allow under an audit posture) is named.
    #[expect(clippy::type_complexity, reason = "two lists of (rule id, rule)")]
    fn sort_rules(&mut self) -> (Vec<(u32, &'r Rule)>, Vec<(u32, &'r Rule)>) {
        let rules = self.rules;
        let mut global = Vec::new();
        let mut sourced = Vec::new();
        for (&id, r) in rules.rule_ids().iter().zip(rules.rules()) {
            // A rule whose target path is not canonical never matches: it has no line.
            if !r.target_can_match() {
                continue;
            }
            match r.category {
                Category::Syscall => {
                    self.warn(
                        id,
                        "syscall rules are audit-only and decided by the monitor; AppArmor does \
                         not mediate syscalls",
                    );
                    continue;
                }
                c if c.posture_index().is_none() => continue,
                _ => {}
            }
            if !r.engine_evaluated() {
                self.warn(id, "DNS rules are not mediated by AppArmor");
                continue;
            }
            if let Target::Preset(p) = &r.target {
                self.warn(id, preset_gap(*p));
                continue;
            }
            if !r.allowed_args.is_empty() {
                // Fail closed: a Block covers every exec of the path (also with the listed
                // arguments); an Allow is left out, so its execs fall to the posture.
                self.warn(
                    id,
                    if r.action == Action::Allow {
                        "AppArmor has no condition on an exec's arguments: the Allow rule is left \
                         out of the profile, so its execs fall to the posture even with the \
                         listed arguments"
                    } else {
                        "AppArmor has no condition on an exec's arguments: the rule covers every \
                         exec of the path, also with the listed arguments"
                    },
                );
                if r.action == Action::Allow {
                    continue;
                }
            }
            if r.action == Action::Allow && !self.restrictive_for(r.category, &self.restrictive) {
                self.warn(
                    id,
                    "audit posture: operations no Allow rule covers pass, but AppArmor raises \
                     no DefaultPosture Audit alert for them",
                );
            }
            if r.from_source.is_empty() {
                global.push((id, r));
            } else {
                for s in source_paths(r) {
                    self.sources.insert(trim_slash(s).to_owned());
                }
                if r.action == Action::Allow {
                    self.stacked = false;
                }
                sourced.push((id, r));
            }
        }
        (global, sourced)
    }

    /// Whether category `c` is restrictive under `restrictive`.
    fn restrictive_for(&self, c: Category, restrictive: &[bool; 4]) -> bool {
        let i = c.posture_index().unwrap_or(0);
        restrictive.get(i).copied().unwrap_or(false)
    }

    /// The main profile: base lines, every global rule, the exec transitions into children,
    /// and the raw `apparmor:` lines.
    fn main_section(&mut self, global: &[(u32, &Rule)], raw: &[&str]) -> Section {
        let mut lines = self.base_lines(self.restrictive, true);
        for &(id, r) in global {
            let rs = self.restrictive_for(r.category, &self.restrictive);
            lines.extend(self.rule_lines(id, r, rs, true));
        }
        let process_restrictive = self.restrictive.first().copied().unwrap_or(false);
        lines.extend(self.transitions(process_restrictive, None, true));
        lines.extend(raw.iter().map(|l| Line::base(Body::Raw((*l).to_owned()))));
        Section {
            name: self.main.clone(),
            source: None,
            stacked: false,
            lines: group_mergeable(lines),
        }
    }

    /// The child of source `s`: its own rules, and, for a full (not stacked) child, the global
    /// rules no Allow of the source overrides.
    fn child_section(
        &mut self,
        s: &str,
        sourced: &[(u32, &Rule)],
        global: &[(u32, &Rule)],
    ) -> Section {
        let mine: Vec<(u32, &Rule)> = sourced
            .iter()
            .filter(|(_, r)| source_paths(r).any(|p| trim_slash(p) == s))
            .copied()
            .collect();
        let restrictive = if self.stacked {
            [false; 4]
        } else {
            self.restrictive
        };
        let mut lines = self.base_lines(restrictive, false);
        self.allow_list_reads(s, &mine, &restrictive, &mut lines);
        for &(id, r) in &mine {
            let rs = self.restrictive_for(r.category, &restrictive);
            lines.extend(self.rule_lines(id, r, rs, false));
        }
        if !self.stacked {
            for &(gid, g) in global {
                if g.action == Action::Block && self.overridden(g, &mine) {
                    continue;
                }
                let rs = self.restrictive_for(g.category, &restrictive);
                lines.extend(self.rule_lines(gid, g, rs, false));
            }
        }
        let pr = restrictive.first().copied().unwrap_or(false);
        lines.extend(self.transitions(pr, Some(s), false));
        Section {
            name: self.child_full(s),
            source: Some(s.to_owned()),
            stacked: self.stacked,
            lines: group_mergeable(lines),
        }
    }

    /// What a file allow-list means for a child: a stacked child's executed binaries must be
    /// readable in the main profile; a full child may read its own binary. Both differ from
    /// the engine and are named on the rules concerned.
    fn allow_list_reads(
        &mut self,
        s: &str,
        mine: &[(u32, &Rule)],
        restrictive: &[bool; 4],
        lines: &mut Vec<Line>,
    ) {
        // A stacked child under the workload's file allow-list: a program the source executes
        // leaves the child for the main profile, and the kernel maps it there, which AppArmor
        // allows only when the main profile grants reading it.
        if self.stacked && self.restrictive.get(1).copied().unwrap_or(false) {
            for &(id, _) in mine {
                self.warn(
                    id,
                    format!(
                        "under a file allow-list AppArmor needs read access to every binary `{s}` \
                         executes in the workload's profile (the kernel maps it there), which the \
                         engine's allow-list does not require"
                    ),
                );
            }
        }
        // A full child under a file allow-list: the kernel maps an executed binary under the
        // profile the exec enters, and AppArmor requires read and map permission for that
        // (the engine counts no file read there). The source gets them on its own binary, so it
        // can run at all; both differences are named on the rules that made the child full.
        if restrictive.get(1).copied().unwrap_or(false)
            && let Some(glob) = literal(s).map(|l| quote_if_needed(&l))
        {
            lines.push(Line::base(Body::File {
                owner: Owner::Any,
                glob,
                perms: Perms::READ_MAP,
            }));
            for &(id, r) in mine {
                if r.action == Action::Allow {
                    self.warn(
                        id,
                        format!(
                            "under a file allow-list AppArmor needs read access to every executed binary in the \
                             profile the exec enters: `{s}` may read its own binary, which the \
                             engine's allow-list blocks, and programs it executes must be readable \
                             under the workload's allow-list"
                        ),
                    );
                }
            }
        }
    }

    /// Whether the global Block `g` is left out of a full child because one of its Allows has
    /// exactly its target without qualifiers; an Allow that overlaps it otherwise keeps the
    /// Block (AppArmor's deny wins inside a profile) and is named.
    fn overridden(&mut self, g: &Rule, mine: &[(u32, &Rule)]) -> bool {
        let overriders: Vec<(u32, &Rule)> = mine
            .iter()
            .filter(|(_, a)| {
                a.action == Action::Allow
                    && a.category == g.category
                    && may_overlap(&a.target, &g.target)
            })
            .copied()
            .collect();
        if overriders
            .iter()
            .any(|(_, a)| a.target == g.target && !a.has_qualifiers())
        {
            return true;
        }
        for (aid, _) in overriders {
            self.warn(
                aid,
                format!(
                    "fromSource Allow overlapping the Block rule {} of policy `{}` on another \
                     target or with qualifiers: AppArmor's deny wins inside a profile, so the \
                     Block is kept for this source",
                    g.index, g.policy.name
                ),
            );
        }
        false
    }
}
