//! `spec.network`: `matchProtocols`.

use super::*;

pub(super) fn network_section(
    ctx: &mut Ctx<'_>,
    node: &Node,
    field: &str,
    host: bool,
) -> NetworkSection {
    let mut out = NetworkSection::default();
    let Some(mut m) = MapReader::new(ctx, node, field) else {
        return out;
    };
    out.meta = meta(ctx, &mut m, ActionLevel::Strict, true);
    if let Some((n, f)) = m.take("matchProtocols") {
        out.match_protocols = each_item(ctx, n, &f, |ctx, r, item, rf| {
            let protocol = required_string(ctx, r, "protocol", item.pos);
            if let Some((p, pos, pf)) = &protocol {
                check_list_items(
                    ctx,
                    *pos,
                    pf,
                    p,
                    |p| PROTOCOLS.contains(&p),
                    "protocol",
                    Case::LowerOrUpper,
                );
            }
            let pts = optional_bool(ctx, r, "pts");
            let from_source = from_source(ctx, r);
            if host && from_source.is_empty() {
                ctx.err(
                    item.pos,
                    rf,
                    "host policies need `fromSource` on network rules",
                );
            }
            let meta = meta(ctx, r, ActionLevel::Strict, true);
            Some(ProtocolRule {
                protocol: protocol?.0,
                pts,
                from_source,
                meta,
                origin: origin(ctx, item, rf),
            })
        });
    }
    if let Some((n, f)) = m.take("matchDNSQueries") {
        out.match_dns_queries = each_item(ctx, n, &f, |ctx, r, item, rf| {
            let domain = required_string(ctx, r, "domain", item.pos);
            if let Some((d, pos, df)) = &domain {
                let trimmed = d.trim_matches('.');
                if trimmed.is_empty()
                    || trimmed.split('.').any(|l| l.is_empty() || l.len() > 63)
                    || !trimmed
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
                {
                    ctx.err(*pos, df, format!("`{d}` is not a domain name"));
                }
            }
            let from_source = from_source(ctx, r);
            let meta = meta(ctx, r, ActionLevel::Strict, true);
            Some(DnsRule {
                domain: domain?.0,
                from_source,
                meta,
                origin: origin(ctx, item, rf),
            })
        });
    }
    m.finish(ctx);
    out
}
