//! What every rule section shares: actions, severity/tags/message, `fromSource` and each
//! rule's origin.

use super::*;

/// Where an action string appears: the policy accepts any case, sections and rules do not.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ActionLevel {
    Policy,
    Strict,
}

pub(super) fn parse_action(
    ctx: &mut Ctx<'_>,
    node: &Node,
    field: &str,
    level: ActionLevel,
) -> Option<Action> {
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
pub(super) fn meta(
    ctx: &mut Ctx<'_>,
    m: &mut MapReader<'_>,
    level: ActionLevel,
    allow_action: bool,
) -> Meta {
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
pub(super) fn each_item<'n, T>(
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

pub(super) fn from_source(ctx: &mut Ctx<'_>, m: &mut MapReader<'_>) -> Vec<SourcePath> {
    let Some((n, f)) = m.take("fromSource") else {
        return Vec::new();
    };
    each_item(ctx, n, &f, |ctx, sm, item, _| {
        let (path, pos, pf) = required_string(ctx, sm, "path", item.pos)?;
        check_path(ctx, pos, &pf, &path);
        Some(SourcePath { path })
    })
}

pub(super) fn origin(ctx: &Ctx<'_>, node: &Node, field: &str) -> Origin {
    Origin {
        location: node.pos.location(&ctx.file),
        field: field.to_string(),
    }
}
