//! `spec.file`: `matchPaths`, `matchDirectories`, `matchPatterns`.

use super::*;

pub(super) fn directories(
    ctx: &mut Ctx<'_>,
    node: &Node,
    f: &str,
    file: bool,
) -> Vec<DirectoryRule> {
    each_item(ctx, node, f, |ctx, r, item, rf| {
        let dir = required_string(ctx, r, "dir", item.pos);
        if let Some((d, pos, df)) = &dir {
            check_dir(ctx, *pos, df, d);
        }
        let recursive = optional_bool(ctx, r, "recursive").unwrap_or(false);
        let owner_only = optional_bool(ctx, r, "ownerOnly").unwrap_or(false);
        let read_only = file && optional_bool(ctx, r, "readOnly").unwrap_or(false);
        let pts = optional_bool(ctx, r, "pts");
        let from_source = from_source(ctx, r);
        let meta = meta(ctx, r, ActionLevel::Strict, true);
        Some(DirectoryRule {
            dir: dir?.0,
            recursive,
            owner_only,
            read_only,
            pts,
            from_source,
            meta,
            origin: origin(ctx, item, rf),
        })
    })
}

pub(super) fn patterns(ctx: &mut Ctx<'_>, node: &Node, f: &str, file: bool) -> Vec<PatternRule> {
    each_item(ctx, node, f, |ctx, r, item, rf| {
        let pattern = required_string(ctx, r, "pattern", item.pos);
        if let Some((p, pos, pf)) = &pattern
            && let Err(e) = crate::glob::Glob::new(p)
        {
            ctx.err(*pos, pf, e.to_string());
        }
        let owner_only = optional_bool(ctx, r, "ownerOnly").unwrap_or(false);
        let read_only = file && optional_bool(ctx, r, "readOnly").unwrap_or(false);
        let meta = meta(ctx, r, ActionLevel::Strict, true);
        Some(PatternRule {
            pattern: pattern?.0,
            owner_only,
            read_only,
            meta,
            origin: origin(ctx, item, rf),
        })
    })
}

pub(super) fn file_section(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> FileSection {
    let mut out = FileSection::default();
    let Some(mut m) = MapReader::new(ctx, node, field) else {
        return out;
    };
    out.meta = meta(ctx, &mut m, ActionLevel::Strict, true);
    if let Some((n, f)) = m.take("matchPaths") {
        out.match_paths = each_item(ctx, n, &f, |ctx, r, item, rf| {
            let path = required_string(ctx, r, "path", item.pos);
            if let Some((p, pos, pf)) = &path {
                check_path(ctx, *pos, pf, p);
            }
            let read_only = optional_bool(ctx, r, "readOnly").unwrap_or(false);
            let owner_only = optional_bool(ctx, r, "ownerOnly").unwrap_or(false);
            let pts = optional_bool(ctx, r, "pts");
            let from_source = from_source(ctx, r);
            let meta = meta(ctx, r, ActionLevel::Strict, true);
            Some(FilePathRule {
                path: path?.0,
                read_only,
                owner_only,
                pts,
                from_source,
                meta,
                origin: origin(ctx, item, rf),
            })
        });
    }
    if let Some((n, f)) = m.take("matchDirectories") {
        out.match_directories = directories(ctx, n, &f, true);
    }
    if let Some((n, f)) = m.take("matchPatterns") {
        out.match_patterns = patterns(ctx, n, &f, true);
    }
    m.finish(ctx);
    out
}
