//! Random policies and operations for property tests: one generator that the engine's
//! differential test and every enforcer's random test draw from, each with its own
//! [`Vocabulary`] (the paths, directories, globs, sources, protocols and capabilities rules and
//! operations share, so that they collide often).
//!
//! ```
//! use armor_testing::random::{self, Vocabulary, Section};
//! use proptest::strategy::{Strategy, ValueTree};
//! use proptest::test_runner::TestRunner;
//!
//! static V: Vocabulary = Vocabulary {
//!     paths: &["/etc/shadow", "/bin/cat"],
//!     dirs: &["/etc/"],
//!     globs: &["/etc/*"],
//!     sources: &["/bin/cat"],
//!     protocols: &["tcp"],
//!     capabilities: &["net_raw"],
//!     sections: &[Section::Process, Section::File],
//!     socket_families: &[2],
//!     socket_protocols: &[0],
//!     capability_numbers: &[13],
//!     glob_weight: 1,
//! };
//! let mut runner = TestRunner::deterministic();
//! let rules = proptest::collection::vec(random::rule(&V), 1..4)
//!     .new_tree(&mut runner)
//!     .unwrap()
//!     .current();
//! let yaml = random::policy_yaml(&V, "p", false, None, &rules);
//! assert!(armor_core::PolicySet::parse(&yaml, "p.yaml").is_ok(), "{yaml}");
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use armor_core::event::{Access, Event, Socket, net};
use proptest::prelude::*;

/// A section of a policy's spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Section {
    /// `process`.
    Process,
    /// `file`.
    File,
    /// `network`.
    Network,
    /// `capabilities`.
    Capabilities,
}

impl Section {
    fn key(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::File => "file",
            Self::Network => "network",
            Self::Capabilities => "capabilities",
        }
    }
}

/// What rules and operations are made of.
#[derive(Debug)]
#[expect(
    clippy::exhaustive_structs,
    reason = "each suite writes its vocabulary out in full, as a static"
)]
pub struct Vocabulary {
    /// Exact paths (also the executables and files operations name).
    pub paths: &'static [&'static str],
    /// Directories, each ending with `/`.
    pub dirs: &'static [&'static str],
    /// `matchPatterns` globs.
    pub globs: &'static [&'static str],
    /// `fromSource` executables (also the sources operations act from).
    pub sources: &'static [&'static str],
    /// `matchProtocols` values (a comma list counts as one).
    pub protocols: &'static [&'static str],
    /// `matchCapabilities` values.
    pub capabilities: &'static [&'static str],
    /// The sections rules are drawn from (and the kinds of operation drawn).
    pub sections: &'static [Section],
    /// Socket families operations create.
    pub socket_families: &'static [u16],
    /// Socket protocols operations create (0: the type's default).
    pub socket_protocols: &'static [u16],
    /// Capability numbers operations use.
    pub capability_numbers: &'static [u8],
    /// How many of every four process or file targets are extra globs (0: a quarter are
    /// globs; each extra one replaces an execname or path target).
    pub glob_weight: u8,
}

/// One random rule (its fields index the vocabulary).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuleSpec {
    /// Its section.
    pub section: Section,
    /// Process or file: 0 path, 1 directory, 2 glob, 3 execname (process) or path (file).
    pub target: u8,
    /// Which path, directory, glob, protocol or capability.
    pub item: usize,
    /// A directory rule's `recursive`.
    pub recursive: bool,
    /// A file rule's `readOnly`.
    pub read_only: bool,
    /// `ownerOnly` (process and file).
    pub owner_only: bool,
    /// `fromSource` (not for globs, as KubeArmor's `matchPatterns` have none).
    pub source: Option<usize>,
    /// The rule's own action (`Allow`, `Audit`, `Block`), else the policy's.
    pub action: Option<&'static str>,
    /// The rule's severity.
    pub severity: Option<u8>,
}

/// A random rule over `v`.
pub fn rule(v: &'static Vocabulary) -> impl Strategy<Value = RuleSpec> {
    (
        (
            proptest::sample::select(v.sections),
            0u8..(4 + v.glob_weight),
            0usize..64,
        ),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        (
            proptest::option::of(0usize..v.sources.len().max(1)),
            proptest::option::of(proptest::sample::select(&["Allow", "Audit", "Block"][..])),
            proptest::option::of(1u8..11),
        ),
    )
        .prop_map(
            |(
                (section, target, item),
                (recursive, read_only, owner_only),
                (source, action, severity),
            )| RuleSpec {
                section,
                // The extra weight goes to globs.
                target: if target >= 4 { 2 } else { target },
                item,
                recursive,
                read_only,
                owner_only,
                source,
                action,
                severity,
            },
        )
}

fn at(v: &[&'static str], i: usize) -> &'static str {
    v.get(i % v.len().max(1)).copied().unwrap_or("/")
}

/// The list entry of `r` under its section's key (`matchPaths`, …), host policies giving every
/// network and capability rule a source (KubeArmor requires one there).
fn entry(v: &Vocabulary, r: &RuleSpec, host: bool) -> (&'static str, String) {
    let mut tail = String::new();
    if let Some(a) = r.action {
        let _ = writeln!(tail, "      action: {a}");
    }
    if let Some(s) = r.severity {
        let _ = writeln!(tail, "      severity: {s}");
    }
    let source = r.source.map(|i| at(v.sources, i));
    let from = |required: bool| match (source, required) {
        (Some(s), _) => format!("      fromSource:\n      - path: {s}\n"),
        (None, true) => format!("      fromSource:\n      - path: {}\n", at(v.sources, 0)),
        (None, false) => String::new(),
    };
    let file = r.section == Section::File;
    let ro = if file {
        format!("      readOnly: {}\n", r.read_only)
    } else {
        String::new()
    };
    let oo = format!("      ownerOnly: {}\n", r.owner_only);
    match (r.section, r.target) {
        (Section::Network, _) => (
            "matchProtocols",
            format!(
                "    - protocol: \"{}\"\n{}{tail}",
                at(v.protocols, r.item),
                from(host)
            ),
        ),
        (Section::Capabilities, _) => (
            "matchCapabilities",
            format!(
                "    - capability: \"{}\"\n{}{tail}",
                at(v.capabilities, r.item),
                from(host)
            ),
        ),
        (_, 1) => (
            "matchDirectories",
            format!(
                "    - dir: {}\n      recursive: {}\n{ro}{oo}{}{tail}",
                at(v.dirs, r.item),
                r.recursive,
                from(false)
            ),
        ),
        (_, 2) => (
            "matchPatterns",
            format!("    - pattern: \"{}\"\n{ro}{oo}{tail}", at(v.globs, r.item)),
        ),
        (Section::Process, 3) => {
            let name = at(v.paths, r.item).rsplit('/').next().unwrap_or("cat");
            (
                "matchPaths",
                format!("    - execname: \"{name}\"\n{oo}{}{tail}", from(false)),
            )
        }
        _ => (
            "matchPaths",
            format!(
                "    - path: \"{}\"\n{ro}{oo}{}{tail}",
                at(v.paths, r.item),
                from(false)
            ),
        ),
    }
}

/// A policy holding `rules`: a KubeArmorPolicy of namespace `shop` selecting `app: web`, or
/// (`host`) a KubeArmorHostPolicy selecting nodes `role: edge`; `action` is the policy's.
pub fn policy_yaml(
    v: &Vocabulary,
    name: &str,
    host: bool,
    action: Option<&str>,
    rules: &[RuleSpec],
) -> String {
    let mut by_section: BTreeMap<&str, BTreeMap<&str, String>> = BTreeMap::new();
    for r in rules {
        let (key, body) = entry(v, r, host);
        by_section
            .entry(r.section.key())
            .or_default()
            .entry(key)
            .or_default()
            .push_str(&body);
    }
    let mut y = format!(
        "apiVersion: security.kubearmor.com/v1\nkind: {}\nmetadata:\n  name: {name}\n",
        if host {
            "KubeArmorHostPolicy"
        } else {
            "KubeArmorPolicy"
        }
    );
    if host {
        y.push_str("spec:\n  nodeSelector:\n    matchLabels:\n      role: edge\n");
    } else {
        y.push_str("  namespace: shop\nspec:\n  selector:\n    matchLabels:\n      app: web\n");
    }
    if let Some(a) = action {
        let _ = writeln!(y, "  action: {a}");
    }
    for section in ["process", "file", "network", "capabilities"] {
        let Some(keys) = by_section.get(section) else {
            continue;
        };
        let _ = writeln!(y, "  {section}:");
        for (key, body) in keys {
            let _ = writeln!(y, "    {key}:");
            y.push_str(body);
        }
    }
    y
}

/// One random operation (its fields index the vocabulary).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Executes path `n`.
    Exec(usize),
    /// Opens path `n` for reading (0), writing (1) or both (2).
    Open(usize, u8),
    /// Opens directory `n` itself (without its trailing `/`).
    OpenDir(usize),
    /// Creates a socket (family, type, protocol).
    Socket(u16, u16, u16),
    /// Uses a capability (its number).
    Capability(u8),
}

/// An operation with its acting source, uid and the file's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RandomEvent {
    /// The operation.
    pub op: Op,
    /// The acting executable (an index into the sources), if known.
    pub source: Option<usize>,
    /// The acting uid.
    pub uid: u32,
    /// The file's owner, if the operation names one.
    pub owner: Option<u32>,
}

/// A random operation over `v`, of the kinds its sections decide.
pub fn event(v: &'static Vocabulary) -> impl Strategy<Value = RandomEvent> {
    let mut kinds: Vec<BoxedStrategy<Op>> = Vec::new();
    if v.sections.contains(&Section::Process) {
        kinds.push((0usize..64).prop_map(Op::Exec).boxed());
    }
    if v.sections.contains(&Section::File) {
        kinds.push(
            (0usize..64, 0u8..3)
                .prop_map(|(p, a)| Op::Open(p, a))
                .boxed(),
        );
        kinds.push((0usize..64).prop_map(Op::OpenDir).boxed());
    }
    if v.sections.contains(&Section::Network) {
        kinds.push(
            (
                proptest::sample::select(v.socket_families),
                proptest::sample::select(&[net::SOCK_STREAM, net::SOCK_DGRAM, net::SOCK_RAW][..]),
                proptest::sample::select(v.socket_protocols),
            )
                .prop_map(|(f, t, p)| Op::Socket(f, t, p))
                .boxed(),
        );
    }
    if v.sections.contains(&Section::Capabilities) {
        kinds.push(
            proptest::sample::select(v.capability_numbers)
                .prop_map(Op::Capability)
                .boxed(),
        );
    }
    (
        proptest::strategy::Union::new(kinds),
        proptest::option::of(0usize..v.sources.len().max(1)),
        0u32..2,
        proptest::option::of(0u32..2),
    )
        .prop_map(|(op, source, uid, owner)| RandomEvent {
            op,
            source,
            uid,
            owner,
        })
}

impl RandomEvent {
    /// The engine's event for it over `v`.
    pub fn event(&self, v: &Vocabulary) -> Event {
        let src = self.source.map(|i| at(v.sources, i));
        let e = match &self.op {
            Op::Exec(p) => Event::exec(at(v.paths, *p), src),
            Op::Open(p, a) => Event::open(
                at(v.paths, *p),
                match a {
                    0 => Access::READ,
                    1 => Access::WRITE,
                    _ => Access::READ_WRITE,
                },
                src,
            ),
            Op::OpenDir(d) => {
                let dir = at(v.dirs, *d);
                let dir = if dir.len() > 1 {
                    dir.trim_end_matches('/')
                } else {
                    dir
                };
                Event::open(dir, Access::READ, src)
            }
            Op::Socket(f, t, p) => Event::socket(Socket::new(*f, *t, *p), src),
            Op::Capability(c) => Event::capability(*c, src),
        };
        let e = e.with_uid(self.uid);
        match self.owner {
            Some(o) => e.with_owner(o),
            None => e,
        }
    }
}
