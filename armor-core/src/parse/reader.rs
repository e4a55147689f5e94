//! Typed readers over YAML nodes that report every problem with its position ([`Ctx`],
//! [`MapReader`]): unknown keys warn, duplicates and wrong types are errors.

use super::*;

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
    pub(super) entries: Vec<(&'n str, &'n Node, &'n Node)>,
    pub(super) taken: Vec<bool>,
    pub(super) field: String,
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

pub(super) fn boolean(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> Option<bool> {
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

pub(super) fn integer(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> Option<i64> {
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

pub(super) fn string_list(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> Vec<String> {
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

/// Reads a required string field and checks it with `check`.
pub(super) fn required_string(
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

pub(super) fn optional_string(
    ctx: &mut Ctx<'_>,
    m: &mut MapReader<'_>,
    key: &str,
) -> Option<String> {
    let (n, f) = m.take(key)?;
    if is_null(n) {
        return None;
    }
    string(ctx, n, &f)
}

pub(super) fn optional_bool(ctx: &mut Ctx<'_>, m: &mut MapReader<'_>, key: &str) -> Option<bool> {
    let (n, f) = m.take(key)?;
    if is_null(n) {
        return None;
    }
    boolean(ctx, n, &f)
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
