//! `spec.capabilities`: `matchCapabilities`.

use super::*;

pub(super) fn capabilities_section(
    ctx: &mut Ctx<'_>,
    node: &Node,
    field: &str,
    host: bool,
) -> CapabilitiesSection {
    let mut out = CapabilitiesSection::default();
    let Some(mut m) = MapReader::new(ctx, node, field) else {
        return out;
    };
    out.meta = meta(ctx, &mut m, ActionLevel::Strict, true);
    if let Some((n, f)) = m.take("matchCapabilities") {
        out.match_capabilities = each_item(ctx, n, &f, |ctx, r, item, rf| {
            let cap = required_string(ctx, r, "capability", item.pos);
            if let Some((c, pos, cf)) = &cap {
                check_list_items(ctx, *pos, cf, c, crd_capability, "capability", Case::Lower);
            }
            let from_source = from_source(ctx, r);
            if host && from_source.is_empty() {
                ctx.err(
                    item.pos,
                    rf,
                    "host policies need `fromSource` on capability rules",
                );
            }
            let meta = meta(ctx, r, ActionLevel::Strict, true);
            Some(CapabilityRule {
                capability: cap?.0,
                from_source,
                meta,
                origin: origin(ctx, item, rf),
            })
        });
    }
    m.finish(ctx);
    out
}
