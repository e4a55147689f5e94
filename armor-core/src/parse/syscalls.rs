//! `spec.syscalls`: `matchSyscalls` and `matchPaths` with their syscall sources.

use super::*;

pub(super) fn syscall_from_source(ctx: &mut Ctx<'_>, m: &mut MapReader<'_>) -> Vec<SyscallSource> {
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

pub(super) fn syscall_names(ctx: &mut Ctx<'_>, m: &mut MapReader<'_>, at: Pos) -> Vec<String> {
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

pub(super) fn syscalls_section(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> SyscallsSection {
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
