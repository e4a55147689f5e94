//! `spec.selector`: `matchLabels` and `matchExpressions`.

use super::*;

pub(super) fn selector(ctx: &mut Ctx<'_>, node: &Node, field: &str, kind: PolicyKind) -> Selector {
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
