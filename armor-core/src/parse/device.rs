//! `spec.device` of host policies.

use super::*;

pub(super) fn device_section(ctx: &mut Ctx<'_>, node: &Node, field: &str) -> DeviceSection {
    let mut out = DeviceSection::default();
    let Some(mut m) = MapReader::new(ctx, node, field) else {
        return out;
    };
    out.meta = meta(ctx, &mut m, ActionLevel::Strict, true);
    if let Some((n, f)) = m.take("matchDevice") {
        out.match_device = each_item(ctx, n, &f, |ctx, r, item, rf| {
            let class = required_string(ctx, r, "class", item.pos);
            let int = |ctx: &mut Ctx<'_>, r: &mut MapReader<'_>, key: &str, min: i64| {
                let (n, f) = r.take(key)?;
                let v = integer(ctx, n, &f)?;
                if v < min || v > i64::from(i32::MAX) {
                    ctx.err(
                        n.pos,
                        &f,
                        format!("{v} is out of range: must be at least {min}"),
                    );
                    return None;
                }
                i32::try_from(v).ok()
            };
            let sub_class = int(ctx, r, "subClass", 0);
            let protocol = int(ctx, r, "protocol", 0);
            let level = int(ctx, r, "level", 1);
            let meta = meta(ctx, r, ActionLevel::Strict, true);
            Some(DeviceRule {
                class: class?.0,
                sub_class,
                protocol,
                level,
                meta,
                origin: origin(ctx, item, rf),
            })
        });
    }
    m.finish(ctx);
    out
}
