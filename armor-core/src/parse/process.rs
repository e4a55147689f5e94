//! `spec.process`: `matchPaths`, `matchDirectories`, `matchPatterns`.

use super::*;

pub(super) fn process_section(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> ProcessSection {
    let mut out = ProcessSection::default();
    let Some(mut m) = MapReader::new(ctx, node, field) else {
        return out;
    };
    out.meta = meta(ctx, &mut m, ActionLevel::Strict, true);
    if let Some((n, f)) = m.take("matchPaths") {
        out.match_paths = each_item(ctx, n, &f, |ctx, r, item, rf| {
            let path = match r.take("path") {
                Some((pn, pf)) => string(ctx, pn, &pf).inspect(|p| check_path(ctx, pn.pos, &pf, p)),
                None => None,
            };
            let execname = match r.take("execname") {
                Some((en, ef)) => string(ctx, en, &ef).inspect(|e| {
                    if !EXECNAME_RE.is_match(e) {
                        ctx.err(
                            en.pos,
                            &ef,
                            format!("`{e}` must be a file name without \"/\""),
                        );
                    }
                }),
                None => None,
            };
            if path.is_none() && execname.is_none() && !ctx.diags.has_errors_at(item.pos) {
                ctx.err(item.pos, rf, "needs `path` or `execname`");
            }
            if let (Some(p), Some(e)) = (&path, &execname) {
                let msg = if p.rsplit('/').next() == Some(e.as_str()) {
                    "has both `path` and `execname`: `execname` adds nothing".to_string()
                } else {
                    format!(
                        "never matches: an exec must match both `path` and `execname`, and `{p}` is not named `{e}`"
                    )
                };
                ctx.warn(item.pos, rf, msg);
            }
            let owner_only = optional_bool(ctx, r, "ownerOnly").unwrap_or(false);
            let pts = optional_bool(ctx, r, "pts");
            let allowed_args = match r.take("allowedArgs") {
                Some((an, af)) => {
                    let args = string_list(ctx, an, &af);
                    if let Some(long) = args.iter().find(|a| a.len() > crate::rule::MAX_ARG_LEN) {
                        ctx.warn(
                            an.pos,
                            &af,
                            format!(
                                "`{}…` is longer than {} bytes: no exec passing it is ever \
                                 within the list (the kernel checks arguments of at most that \
                                 length)",
                                long.chars().take(20).collect::<String>(),
                                crate::rule::MAX_ARG_LEN
                            ),
                        );
                    }
                    if args.len() > MAX_ALLOWED_ARGS {
                        ctx.err(
                            an.pos,
                            &af,
                            format!(
                                "{} items, at most {MAX_ALLOWED_ARGS} are allowed",
                                args.len()
                            ),
                        );
                    }
                    args
                }
                None => Vec::new(),
            };
            let from_source = from_source(ctx, r);
            let meta = meta(ctx, r, ActionLevel::Strict, true);
            Some(ProcessPathRule {
                path,
                execname,
                owner_only,
                pts,
                allowed_args,
                from_source,
                meta,
                origin: origin(ctx, item, rf),
            })
        });
    }
    if let Some((n, f)) = m.take("matchDirectories") {
        out.match_directories = directories(ctx, n, &f, false);
    }
    if let Some((n, f)) = m.take("matchPatterns") {
        out.match_patterns = patterns(ctx, n, &f, false);
    }
    m.finish(ctx);
    out
}
