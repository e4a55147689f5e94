//! One policy document: metadata, kind, apiVersion and the spec with its sections.

use super::*;

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
    let meta = metadata(&mut ctx, &mut top, doc);
    let kind = kind(&mut ctx, &mut top, doc);
    let ns = scope(&mut ctx, kind, meta.namespace);
    ctx.policy = meta.name.as_ref().map(|n| match (&kind, &ns) {
        (Some(PolicyKind::KubeArmorPolicy), Some(ns)) => format!("{ns}/{n}"),
        _ => n.clone(),
    });
    if let Some((pos, f, msg)) = meta.name_problem {
        ctx.err(pos, &f, msg);
    }
    api_version(&mut ctx, &mut top, doc);
    let _ = top.take("status");

    let Some(kind) = kind else {
        top.finish(&mut ctx);
        return None;
    };
    let spec = match top.take("spec") {
        Some((sn, _)) => spec(&mut ctx, sn, kind),
        None => {
            ctx.err(doc.pos, "spec", "missing required field `spec`");
            PolicySpec::default()
        }
    };
    top.finish(&mut ctx);

    Some(Policy {
        kind,
        name: meta.name?,
        namespace: ns,
        labels: meta.labels,
        annotations: meta.annotations,
        spec,
        location: doc.pos.location(file),
    })
}

/// What `metadata` holds; a name problem is reported once the policy's display name is known.
#[derive(Default)]
struct Metadata {
    name: Option<String>,
    namespace: Option<(String, Pos, String)>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    name_problem: Option<(Pos, String, String)>,
}

/// `metadata`: name (checked), namespace (checked), labels, annotations; the fields the API
/// server fills in are accepted and ignored.
fn metadata(ctx: &mut Ctx<'_>, top: &mut MapReader<'_>, doc: &Node) -> Metadata {
    let mut out = Metadata::default();
    let Some((mn, mf)) = top.take("metadata") else {
        ctx.err(doc.pos, "metadata", "missing required field `metadata`");
        return out;
    };
    let Some(mut m) = MapReader::new(ctx, mn, &mf) else {
        return out;
    };
    if let Some((n, f)) = m.take("name") {
        if let Some(s) = string(ctx, n, &f) {
            if !(NAME_RE.is_match(&s) && s.len() <= 253) {
                out.name_problem = Some((
                    n.pos,
                    f,
                    format!("`{s}` is not a valid name (lowercase letters, digits, `-` and `.`)"),
                ));
            }
            out.name = Some(s);
        }
    } else {
        ctx.err(mn.pos, "metadata.name", "missing required field `name`");
    }
    if let Some((n, f)) = m.take("namespace")
        && let Some(s) = string(ctx, n, &f)
    {
        if !(NAMESPACE_RE.is_match(&s) && s.len() <= 63) {
            ctx.err(n.pos, &f, format!("`{s}` is not a valid namespace name"));
        }
        out.namespace = Some((s, n.pos, f));
    }
    if let Some((n, f)) = m.take("labels") {
        out.labels = string_map(ctx, n, &f);
    }
    if let Some((n, f)) = m.take("annotations") {
        out.annotations = string_map(ctx, n, &f);
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
    m.finish(ctx);
    out
}

/// `kind`: one of the three policy kinds.
fn kind(ctx: &mut Ctx<'_>, top: &mut MapReader<'_>, doc: &Node) -> Option<PolicyKind> {
    let Some((n, f)) = top.take("kind") else {
        ctx.err(doc.pos, "kind", "missing required field `kind`");
        return None;
    };
    match string(ctx, n, &f).as_deref() {
        Some("KubeArmorPolicy") => Some(PolicyKind::KubeArmorPolicy),
        Some("KubeArmorClusterPolicy") => Some(PolicyKind::KubeArmorClusterPolicy),
        Some("KubeArmorHostPolicy") => Some(PolicyKind::KubeArmorHostPolicy),
        Some(other) => {
            ctx.err(
                n.pos,
                &f,
                format!(
                    "unsupported kind `{other}`: expected KubeArmorPolicy, KubeArmorClusterPolicy \
                     or KubeArmorHostPolicy"
                ),
            );
            None
        }
        None => None,
    }
}

/// The namespace the policy lives in: a namespaced policy's (`default` when absent); a
/// cluster-scoped one has none, and a namespace written on it is ignored with a warning.
fn scope(
    ctx: &mut Ctx<'_>,
    kind: Option<PolicyKind>,
    namespace: Option<(String, Pos, String)>,
) -> Option<String> {
    match (kind, namespace) {
        (Some(PolicyKind::KubeArmorPolicy), Some((s, _, _))) => Some(s),
        (Some(PolicyKind::KubeArmorPolicy), None) => Some("default".to_string()),
        (Some(_), Some((_, pos, f))) => {
            ctx.warn(
                pos,
                &f,
                "cluster-scoped policies have no namespace: it is ignored",
            );
            None
        }
        (Some(_), None) => None,
        (None, ns) => ns.map(|(s, _, _)| s),
    }
}

/// `apiVersion`: exactly [`API_VERSION`].
fn api_version(ctx: &mut Ctx<'_>, top: &mut MapReader<'_>, doc: &Node) {
    match top.take("apiVersion") {
        Some((n, f)) => {
            if let Some(v) = string(ctx, n, &f)
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
}

/// `spec`: the selector a kind needs, the policy-level action and metadata, and each section.
fn spec(ctx: &mut Ctx<'_>, sn: &Node, kind: PolicyKind) -> PolicySpec {
    let mut spec = PolicySpec::default();
    let Some(mut s) = MapReader::new(ctx, sn, "") else {
        return spec;
    };
    let host = kind.is_host();
    selectors(ctx, &mut s, sn, kind, &mut spec);
    spec.meta = meta(ctx, &mut s, ActionLevel::Policy, true);
    if let Some((n, f)) = s.take("process") {
        spec.process = process_section(ctx, n, &f);
    }
    if let Some((n, f)) = s.take("file") {
        spec.file = file_section(ctx, n, &f);
    }
    if let Some((n, f)) = s.take("network") {
        spec.network = network_section(ctx, n, &f, host);
    }
    if let Some((n, f)) = s.take("capabilities") {
        spec.capabilities = capabilities_section(ctx, n, &f, host);
    }
    if let Some((n, f)) = s.take("syscalls") {
        spec.syscalls = syscalls_section(ctx, n, &f);
    }
    if let Some((n, f)) = s.take("presets") {
        if host {
            ctx.err(n.pos, &f, "host policies have no presets");
        } else {
            spec.presets = presets(ctx, n, &f);
        }
    }
    if let Some((n, f)) = s.take("apparmor") {
        spec.apparmor = string(ctx, n, &f);
    }
    if let Some((n, f)) = s.take("device") {
        if host {
            spec.device = device_section(ctx, n, &f);
        } else {
            ctx.err(n.pos, &f, "only host policies have `device` rules");
        }
    }
    s.finish(ctx);
    spec
}

/// `selector` (container policies) or `nodeSelector` (host policies): each kind requires its
/// own and refuses the other's.
fn selectors(
    ctx: &mut Ctx<'_>,
    s: &mut MapReader<'_>,
    sn: &Node,
    kind: PolicyKind,
    spec: &mut PolicySpec,
) {
    let host = kind.is_host();
    if let Some((n, f)) = s.take("selector") {
        if host {
            ctx.err(n.pos, &f, "host policies select nodes with `nodeSelector`");
        } else {
            spec.selector = selector(ctx, n, &f, kind);
        }
    } else if !host {
        ctx.err(sn.pos, "selector", "missing required field `selector`");
    }
    if let Some((n, f)) = s.take("nodeSelector") {
        if host {
            if let Some(mut m) = MapReader::new(ctx, n, &f) {
                if let Some((ln, lf)) = m.take("matchLabels") {
                    spec.node_selector.match_labels = string_map(ctx, ln, &lf);
                }
                m.finish(ctx);
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
}

/// `presets`: each a known preset name with an optional action.
fn presets(ctx: &mut Ctx<'_>, n: &Node, f: &str) -> Vec<Preset> {
    each_item(ctx, n, f, |ctx, p, item, pf| {
        let action = match p.take("action") {
            Some((an, af)) => {
                let a = parse_action(ctx, an, &af, ActionLevel::Strict);
                if a == Some(Action::Allow) {
                    ctx.warn(
                        an.pos,
                        &af,
                        "a preset cannot allow anything: `Allow` is enforced as `Block` (as \
                         KubeArmor does); write `Block` or `Audit`",
                    );
                }
                a
            }
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
    })
}
