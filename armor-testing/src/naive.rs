//! A naive reference matcher, written straight from the manual's semantics.
//!
//! It shares no matching, selection or normalisation code with `armor-core`'s engine: it reads
//! the parsed model ([`armor_core::model::Policy`]) and re-derives everything itself — its own
//! inheritance, its own selector evaluation, its own backtracking glob matcher, its own
//! directory test — and decides by scanning every rule and sorting the covering ones. It is slow
//! on purpose: the benchmarks compare the engine with it, and the property tests check that both
//! always agree.

use std::collections::BTreeMap;

use armor_core::event::{Event, Operation};
use armor_core::model::{
    Action, ExpressionKey, Meta, Operator, Policy, PolicyKind, SourcePath, SyscallSource,
};
use armor_core::posture::PostureConfig;
use armor_core::workload::Workload;

use crate::corpus::{Case, DecisionMaker, Outcome};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cat {
    Process,
    File,
    Network,
    Caps,
    Syscall,
}

#[derive(Debug, Clone)]
enum What {
    Path(String),
    Name(String),
    Dir(String, bool),
    Glob(String),
    Proto(String),
    Cap(String),
    Sys(Vec<String>, Option<(String, bool)>),
    /// A preset, by name.
    Preset(String),
    Never,
}

#[derive(Debug, Clone)]
enum Src {
    Exact(String),
    Under(String, bool),
}

#[derive(Debug, Clone)]
struct NRule {
    policy: String,
    namespace: String,
    order: usize,
    cat: Cat,
    what: What,
    sources: Vec<Src>,
    read_only: bool,
    owner_only: bool,
    action: Action,
    severity: u8,
    tags: Vec<String>,
    message: String,
    /// `allowedArgs` (process matchPaths).
    args: Vec<String>,
}

/// The naive matcher over a list of parsed policies.
#[derive(Debug, Clone)]
pub struct NaiveMatcher {
    /// Each policy with its rules, expanded once (a scan of every rule per event stays).
    policies: Vec<(Policy, Vec<NRule>)>,
}

fn inherit(rule: &Meta, section: &Meta, spec: &Meta) -> (Action, u8, Vec<String>, String) {
    let mut action = Action::Block;
    for m in [spec, section, rule] {
        if let Some(a) = m.action {
            action = a;
        }
    }
    let mut severity = 0;
    for m in [spec, section, rule] {
        if let Some(s) = m.severity {
            severity = s;
        }
    }
    let mut tags = Vec::new();
    for m in [spec, section, rule] {
        if !m.tags.is_empty() {
            tags = m.tags.clone();
        }
    }
    let mut message = String::new();
    for m in [spec, section, rule] {
        if let Some(s) = &m.message
            && !s.is_empty()
        {
            message = s.clone();
        }
    }
    (action, severity, tags, message)
}

fn srcs(from: &[SourcePath]) -> Vec<Src> {
    from.iter().map(|s| Src::Exact(s.path.clone())).collect()
}

fn sys_srcs(from: &[SyscallSource]) -> Vec<Src> {
    let mut v = Vec::new();
    for s in from {
        if let Some(p) = &s.path {
            v.push(Src::Exact(p.clone()));
        } else if let Some(d) = &s.dir {
            let mut d = d.clone();
            if !d.ends_with('/') {
                d.push('/');
            }
            v.push(Src::Under(d, s.recursive));
        }
    }
    v
}

fn rules_of(p: &Policy) -> Vec<NRule> {
    let mut out = Vec::new();
    let spec = &p.spec;
    let ns = if p.kind == PolicyKind::KubeArmorPolicy {
        p.namespace.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let mut add = |cat: Cat,
                   what: What,
                   sources: Vec<Src>,
                   ro: bool,
                   oo: bool,
                   meta: &Meta,
                   section: &Meta| {
        let (mut action, severity, tags, message) = inherit(meta, section, &spec.meta);
        if cat == Cat::Syscall {
            action = Action::Audit;
        }
        let order = out.len();
        out.push(NRule {
            policy: p.name.clone(),
            namespace: ns.clone(),
            order,
            cat,
            what,
            sources,
            read_only: ro,
            owner_only: oo,
            action,
            severity,
            tags,
            message,
            args: Vec::new(),
        });
    };
    let sp = &spec.process;
    for r in &sp.match_paths {
        let what = match (&r.path, &r.execname) {
            (Some(path), Some(name)) => {
                if path.split('/').next_back() == Some(name.as_str()) {
                    What::Path(path.clone())
                } else {
                    What::Never
                }
            }
            (Some(path), None) => What::Path(path.clone()),
            (None, Some(name)) => What::Name(name.clone()),
            (None, None) => What::Never,
        };
        add(
            Cat::Process,
            what,
            srcs(&r.from_source),
            false,
            r.owner_only,
            &r.meta,
            &sp.meta,
        );
    }
    for r in &sp.match_directories {
        add(
            Cat::Process,
            What::Dir(r.dir.clone(), r.recursive),
            srcs(&r.from_source),
            false,
            r.owner_only,
            &r.meta,
            &sp.meta,
        );
    }
    for r in &sp.match_patterns {
        add(
            Cat::Process,
            What::Glob(r.pattern.clone()),
            vec![],
            false,
            r.owner_only,
            &r.meta,
            &sp.meta,
        );
    }
    let sf = &spec.file;
    for r in &sf.match_paths {
        add(
            Cat::File,
            What::Path(r.path.clone()),
            srcs(&r.from_source),
            r.read_only,
            r.owner_only,
            &r.meta,
            &sf.meta,
        );
    }
    for r in &sf.match_directories {
        add(
            Cat::File,
            What::Dir(r.dir.clone(), r.recursive),
            srcs(&r.from_source),
            r.read_only,
            r.owner_only,
            &r.meta,
            &sf.meta,
        );
    }
    for r in &sf.match_patterns {
        add(
            Cat::File,
            What::Glob(r.pattern.clone()),
            vec![],
            r.read_only,
            r.owner_only,
            &r.meta,
            &sf.meta,
        );
    }
    let sn = &spec.network;
    for r in &sn.match_protocols {
        for item in r.protocol.split(',') {
            let item = item.trim().to_lowercase();
            if item.is_empty() {
                continue;
            }
            add(
                Cat::Network,
                What::Proto(item),
                srcs(&r.from_source),
                false,
                false,
                &r.meta,
                &sn.meta,
            );
        }
    }
    // DNS rules are not decided (and take no part in allow-list mode).
    let sc = &spec.capabilities;
    for r in &sc.match_capabilities {
        for item in r.capability.split(',') {
            let item = item.trim().to_lowercase();
            let item = item.trim_start_matches("cap_").to_string();
            if item.is_empty() {
                continue;
            }
            add(
                Cat::Caps,
                What::Cap(item),
                srcs(&r.from_source),
                false,
                false,
                &r.meta,
                &sc.meta,
            );
        }
    }
    let ss = &spec.syscalls;
    for r in &ss.match_syscalls {
        add(
            Cat::Syscall,
            What::Sys(r.syscalls.clone(), None),
            sys_srcs(&r.from_source),
            false,
            false,
            &r.meta,
            &ss.meta,
        );
    }
    for r in &ss.match_paths {
        add(
            Cat::Syscall,
            What::Sys(r.syscalls.clone(), Some((r.path.clone(), r.recursive))),
            sys_srcs(&r.from_source),
            false,
            false,
            &r.meta,
            &ss.meta,
        );
    }
    // Presets last, with the policy's metadata and their own action (anything but Audit blocks).
    for pr in &spec.presets {
        let cat = match pr.name.as_str() {
            "filelessExec" | "exec" => Cat::Process,
            _ => Cat::File,
        };
        let mut meta = Meta::default();
        meta.action = Some(if pr.action == Some(Action::Audit) {
            Action::Audit
        } else {
            Action::Block
        });
        add(
            cat,
            What::Preset(pr.name.clone()),
            vec![],
            false,
            false,
            &meta,
            &Meta::default(),
        );
    }
    // The process matchPaths rules come first, one each: give them their allowedArgs.
    for (r, n) in spec.process.match_paths.iter().zip(out.iter_mut()) {
        n.args = r.allowed_args.clone();
    }
    out
}

fn label_pair(v: &str) -> (String, String) {
    match v.find('=') {
        Some(i) => (v[..i].trim().to_string(), v[i + 1..].trim().to_string()),
        None => (v.trim().to_string(), String::new()),
    }
}

fn selects(p: &Policy, w: &Workload) -> bool {
    match (p.kind, w) {
        (PolicyKind::KubeArmorHostPolicy, Workload::Host(h)) => {
            p.spec.node_selector.match_labels.iter().all(|(k, v)| {
                if h.labels.get(k) == Some(v) {
                    return true;
                }
                (k == "kubernetes.io/hostname" || k == "kubearmor.io/hostname")
                    && v.split(',')
                        .any(|n| n.trim() == "*" || n.trim() == h.node_name)
            })
        }
        (PolicyKind::KubeArmorHostPolicy, _) => false,
        (_, Workload::Host(_)) => false,
        (kind, Workload::Container(c)) => {
            if kind == PolicyKind::KubeArmorPolicy {
                let ns = p.namespace.clone().unwrap_or_else(|| "default".into());
                if ns != c.namespace {
                    return false;
                }
            }
            for (k, v) in &p.spec.selector.match_labels {
                if k == "kubearmor.io/container.name" {
                    let inner = v.trim().trim_start_matches('[').trim_end_matches(']');
                    let names: Vec<&str> = inner
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .collect();
                    if !names.is_empty() && !names.contains(&c.name.as_str()) {
                        return false;
                    }
                } else if c.labels.get(k) != Some(v) {
                    return false;
                }
            }
            for e in &p.spec.selector.match_expressions {
                let present = |v: &String| match e.key {
                    ExpressionKey::Label => {
                        let (k, val) = label_pair(v);
                        c.labels.get(&k) == Some(&val)
                    }
                    ExpressionKey::Namespace => v.trim() == c.namespace,
                    _ => false,
                };
                let n = e.values.iter().filter(|v| present(v)).count();
                let ok = match e.operator {
                    Operator::In => n > 0,
                    Operator::NotIn => n == 0,
                    _ => false,
                };
                if !ok {
                    return false;
                }
            }
            true
        }
        _ => false,
    }
}

/// One trailing slash off (the manual: never more, so `/a//` stays non-canonical).
fn strip(p: &str) -> String {
    let mut s = p.to_string();
    if s.len() > 1 && s.ends_with('/') {
        s.pop();
    }
    s
}

fn under(dir: &str, recursive: bool, path: &str) -> bool {
    let path = strip(path);
    let d = strip(dir);
    if path == d {
        return true;
    }
    let prefix = if d == "/" {
        "/".to_string()
    } else {
        format!("{d}/")
    };
    if !path.starts_with(&prefix) || path.len() == prefix.len() {
        return false;
    }
    recursive || !path[prefix.len()..].contains('/')
}

// ---- a backtracking AppArmor glob matcher ----

#[derive(Debug, Clone)]
enum Tok {
    Lit(char),
    Star,
    DStar,
    Any,
    Class(bool, Vec<(char, char)>),
}

/// Expands `{a,b}` alternatives into plain token lists.
fn expand(pat: &[char]) -> Vec<Vec<Tok>> {
    let mut results: Vec<Vec<Tok>> = vec![vec![]];
    let mut i = 0;
    while i < pat.len() {
        let c = pat[i];
        match c {
            '{' => {
                // find matching brace, split top-level commas
                let mut depth = 0;
                let mut j = i;
                let mut parts = vec![];
                let mut start = i + 1;
                while j < pat.len() {
                    match pat[j] {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                parts.push(&pat[start..j]);
                                break;
                            }
                        }
                        ',' if depth == 1 => {
                            parts.push(&pat[start..j]);
                            start = j + 1;
                        }
                        '\\' => j += 1,
                        _ => {}
                    }
                    j += 1;
                }
                let mut alts = vec![];
                for part in parts {
                    alts.extend(expand(part));
                }
                let mut next = vec![];
                for r in &results {
                    for a in &alts {
                        let mut x = r.clone();
                        x.extend(a.iter().cloned());
                        next.push(x);
                    }
                }
                results = next;
                i = j + 1;
                continue;
            }
            '*' => {
                let t = if pat.get(i + 1) == Some(&'*') {
                    while pat.get(i + 1) == Some(&'*') {
                        i += 1;
                    }
                    Tok::DStar
                } else {
                    Tok::Star
                };
                results.iter_mut().for_each(|r| r.push(t.clone()));
            }
            '?' => results.iter_mut().for_each(|r| r.push(Tok::Any)),
            '[' => {
                let mut j = i + 1;
                let neg = matches!(pat.get(j), Some('^') | Some('!'));
                if neg {
                    j += 1;
                }
                let first = j;
                let mut ranges = vec![];
                while j < pat.len() && !(pat[j] == ']' && j > first) {
                    let mut a = pat[j];
                    if a == '\\' {
                        j += 1;
                        a = pat[j];
                    }
                    if pat.get(j + 1) == Some(&'-') && pat.get(j + 2).is_some_and(|c| *c != ']') {
                        let mut b = pat[j + 2];
                        if b == '\\' {
                            j += 1;
                            b = pat[j + 2];
                        }
                        ranges.push((a, b));
                        j += 3;
                    } else {
                        ranges.push((a, a));
                        j += 1;
                    }
                }
                results
                    .iter_mut()
                    .for_each(|r| r.push(Tok::Class(neg, ranges.clone())));
                i = j;
            }
            '\\' => {
                i += 1;
                let l = pat[i];
                results.iter_mut().for_each(|r| r.push(Tok::Lit(l)));
            }
            _ => results.iter_mut().for_each(|r| r.push(Tok::Lit(c))),
        }
        i += 1;
    }
    results
}

fn glob_match(toks: &[Tok], s: &[char], prev_slash: bool) -> bool {
    let Some(t) = toks.first() else {
        return s.is_empty();
    };
    let rest = &toks[1..];
    match t {
        Tok::Lit(c) => s.first() == Some(c) && glob_match(rest, &s[1..], *c == '/'),
        Tok::Any => s.first().is_some_and(|c| *c != '/') && glob_match(rest, &s[1..], false),
        Tok::Class(neg, ranges) => {
            let Some(&c) = s.first() else { return false };
            let inside = ranges.iter().any(|(a, b)| *a <= c && c <= *b);
            inside != *neg && glob_match(rest, &s[1..], c == '/')
        }
        Tok::Star => {
            let min = usize::from(prev_slash);
            let mut n = 0;
            loop {
                if n >= min && glob_match(rest, &s[n..], false) {
                    return true;
                }
                if n >= s.len() || s[n] == '/' {
                    return false;
                }
                n += 1;
            }
        }
        Tok::DStar => {
            if prev_slash && s.first().is_none_or(|c| *c == '/') {
                return false;
            }
            let min = usize::from(prev_slash);
            (min..=s.len()).any(|n| glob_match(rest, &s[n..], n > 0 && s[n - 1] == '/'))
        }
    }
}

fn glob(pattern: &str, path: &str) -> bool {
    let pat: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = path.chars().collect();
    expand(&pat).iter().any(|t| glob_match(t, &s, false))
}

fn proto_hit(name: &str, family: u16, ty: u16, proto: u16) -> bool {
    // Implied protocol for protocol 0 on IP sockets.
    let p = if proto != 0 {
        proto
    } else if family == 2 || family == 10 {
        match ty {
            1 => 6,
            2 => 17,
            _ => 0,
        }
    } else {
        0
    };
    match name {
        "all" => true,
        "tcp" => p == 6,
        "udp" => p == 17,
        "icmp" => p == 1 || (family == 10 && p == 58),
        "icmpv6" => p == 58,
        "sctp" => p == 132,
        "stream" => ty == 1,
        "dgram" => ty == 2,
        "raw" => ty == 3,
        "rdm" => ty == 4,
        "seqpacket" => ty == 5,
        "dccp" => ty == 6,
        "packet" => ty == 10,
        _ => false,
    }
}

const CAP_NAMES: &[&str] = &[
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// Whether the rule's target matches; `None` = the rule is for another category.
fn target_hit(r: &NRule, ev: &Event) -> bool {
    match (&r.what, &ev.operation) {
        (What::Never, _) => false,
        (What::Preset(name), op) => match (name.as_str(), op) {
            ("filelessExec", Operation::Process { path, .. }) => {
                ev.facts.fileless
                    || under("/dev/shm/", true, path)
                    || under("/run/shm/", true, path)
            }
            ("exec", Operation::Process { .. }) => ev.facts.tty,
            ("anonymousMapExec", Operation::ExecMemory { .. }) => true,
            ("protectProc", Operation::File { .. }) => ev.facts.other_process,
            ("protectEnv", Operation::File { path, .. }) => {
                ev.facts.other_process && strip(path).ends_with("/environ")
            }
            _ => false,
        },
        (What::Path(p), Operation::Process { path, .. } | Operation::File { path, .. }) => {
            strip(path) == *p
        }
        (What::Name(n), Operation::Process { path, .. }) => {
            strip(path).rsplit('/').next() == Some(n.as_str())
        }
        (What::Dir(d, rec), Operation::Process { path, .. } | Operation::File { path, .. }) => {
            under(d, *rec, path)
        }
        (What::Glob(g), Operation::Process { path, .. } | Operation::File { path, .. }) => {
            glob(g, &strip(path))
        }
        (What::Proto(name), Operation::Network(s)) => {
            proto_hit(name, s.family, s.sock_type, s.protocol)
        }
        (What::Cap(name), Operation::Capability(c)) => {
            CAP_NAMES.get(usize::from(*c)) == Some(&name.as_str())
        }
        (What::Sys(names, path), Operation::Syscall { name, path: have }) => {
            if !names.iter().any(|n| n == name) {
                return false;
            }
            match (path, have) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some((p, rec)), Some(h)) => {
                    if p.ends_with('/') {
                        under(p, *rec, h)
                    } else {
                        strip(h) == *p
                    }
                }
            }
        }
        _ => false,
    }
}

fn cat_of(ev: &Event) -> Cat {
    match &ev.operation {
        Operation::Process { .. } => Cat::Process,
        Operation::File { .. } | Operation::ExecMemory { .. } => Cat::File,
        Operation::Network(_) => Cat::Network,
        Operation::Capability(_) => Cat::Caps,
        _ => Cat::Syscall,
    }
}

impl NaiveMatcher {
    /// A matcher over `policies`.
    pub fn new(policies: Vec<Policy>) -> Self {
        Self {
            policies: policies
                .into_iter()
                .map(|p| {
                    let rules = rules_of(&p);
                    (p, rules)
                })
                .collect(),
        }
    }

    /// Decides `event` for `workload` under `cfg`.
    pub fn decide(&self, cfg: &PostureConfig, workload: &Workload, event: &Event) -> Outcome {
        let cat = cat_of(event);
        let host = matches!(workload, Workload::Host(_));
        let rules: Vec<&NRule> = self
            .policies
            .iter()
            .filter(|(p, _)| selects(p, workload))
            .flat_map(|(_, rules)| rules.iter())
            .filter(|r| r.cat == cat)
            .collect();
        // Posture: global (or host), namespace annotation if valid.
        let (global, ann): (_, BTreeMap<String, String>) = match workload {
            Workload::Host(_) => (cfg.host_default, BTreeMap::new()),
            Workload::Container(c) => (
                cfg.container_default,
                cfg.namespace_annotations
                    .get(&c.namespace)
                    .cloned()
                    .unwrap_or_default(),
            ),
            _ => (cfg.container_default, BTreeMap::new()),
        };
        let (key, default_block) = match cat {
            Cat::Process | Cat::File => ("kubearmor-file-posture", global.file.as_str() == "block"),
            Cat::Network => (
                "kubearmor-network-posture",
                global.network.as_str() == "block",
            ),
            Cat::Caps => (
                "kubearmor-capabilities-posture",
                global.capabilities.as_str() == "block",
            ),
            Cat::Syscall => ("", false),
        };
        let posture_block = match ann.get(key).map(|v| v.trim().to_lowercase()) {
            Some(v) if v == "block" => true,
            Some(v) if v == "audit" => false,
            _ => default_block,
        };
        // Anonymous executable memory is named by no rule but a preset: no posture.
        let allow_list = cat != Cat::Syscall
            && !matches!(event.operation, Operation::ExecMemory { .. })
            && rules.iter().any(|r| r.action == Action::Allow);

        let mut covering: Vec<(&NRule, bool)> = Vec::new();
        for &r in &rules {
            if !target_hit(r, event) {
                continue;
            }
            let from_src = !r.sources.is_empty();
            if from_src {
                let Some(src) = &event.source else { continue };
                let ok = r.sources.iter().any(|s| match s {
                    Src::Exact(p) => p == src,
                    Src::Under(d, rec) => under(d, *rec, src),
                });
                if !ok {
                    continue;
                }
            }
            if r.read_only || r.owner_only || !r.args.is_empty() {
                let (write, owner) = match &event.operation {
                    Operation::File { access, owner, .. } => (access.write, *owner),
                    Operation::Process { owner, .. } => (false, *owner),
                    _ => (false, None),
                };
                let mut permitted = true;
                if r.read_only && r.cat == Cat::File && write {
                    permitted = false;
                }
                if r.owner_only && owner != Some(event.uid) {
                    permitted = false;
                }
                if !r.args.is_empty() {
                    let listed = match &event.args {
                        Some(a) => a.iter().all(|x| r.args.iter().any(|y| y == x)),
                        None => false,
                    };
                    if !listed {
                        permitted = false;
                    }
                }
                let covers = if r.action == Action::Allow {
                    permitted
                } else {
                    !permitted
                };
                if !covers {
                    continue;
                }
            }
            covering.push((r, from_src));
        }
        let sort = |v: &mut Vec<&NRule>| {
            v.sort_by(|a, b| {
                b.severity
                    .cmp(&a.severity)
                    .then(a.policy.cmp(&b.policy))
                    .then(a.namespace.cmp(&b.namespace))
                    .then(a.order.cmp(&b.order))
            })
        };
        let of = |action: Action, src: Option<bool>| -> Vec<&NRule> {
            covering
                .iter()
                .filter(|(r, s)| r.action == action && src.is_none_or(|x| x == *s))
                .map(|(r, _)| *r)
                .collect()
        };
        let alert = |r: &NRule, verdict: &str, action: &str| Outcome {
            verdict: verdict.into(),
            policy: Some(r.policy.clone()),
            severity: (r.severity > 0).then_some(r.severity),
            tags: r.tags.clone(),
            message: (!r.message.is_empty()).then(|| r.message.clone()),
            action: Some(action.into()),
            alert_type: Some(
                if host {
                    "MatchedHostPolicy"
                } else {
                    "MatchedPolicy"
                }
                .into(),
            ),
        };
        let posture = |verdict: &str, action: &str| Outcome {
            verdict: verdict.into(),
            policy: Some("DefaultPosture".into()),
            action: Some(action.into()),
            alert_type: Some(
                if host {
                    "MatchedHostPolicy"
                } else {
                    "MatchedPolicy"
                }
                .into(),
            ),
            ..Outcome::default()
        };
        let mut audits = of(Action::Audit, None);
        sort(&mut audits);

        let any_src = covering
            .iter()
            .any(|(r, s)| *s && matches!(r.action, Action::Allow | Action::Block));
        let level = Some(any_src);
        let mut blocks = of(Action::Block, level);
        sort(&mut blocks);
        if let Some(b) = blocks.first() {
            return alert(b, "block", "Block");
        }
        let allowed = !of(Action::Allow, level).is_empty();
        if !allowed && allow_list && posture_block {
            return posture("block", "Block");
        }
        if let Some(a) = audits.first() {
            return alert(a, "audit", "Audit");
        }
        if !allowed && allow_list {
            return posture("audit", "Audit");
        }
        Outcome {
            verdict: "allow".into(),
            ..Outcome::default()
        }
    }
}

/// The naive matcher as a corpus [`DecisionMaker`].
#[derive(Debug, Default, Clone, Copy)]
#[expect(
    clippy::exhaustive_structs,
    reason = "a unit marker, deliberately closed"
)]
pub struct Naive;

impl DecisionMaker for Naive {
    fn name(&self) -> &str {
        "naive"
    }

    fn decide(&self, case: &Case) -> Result<Outcome, String> {
        let set = armor_core::PolicySet::parse(&case.policies, &case.name)
            .map_err(|e| format!("policies rejected: {e}"))?;
        let m = NaiveMatcher::new(set.policies().to_vec());
        let w = case.workload().map_err(|e| e.to_string())?;
        let cfg = case.posture_config().map_err(|e| e.to_string())?;
        let e = case.event().map_err(|e| e.to_string())?;
        Ok(m.decide(&cfg, &w, &e))
    }
}
