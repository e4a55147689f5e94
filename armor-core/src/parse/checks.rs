//! The CRD's checks: anchored patterns for paths, directories, names and namespaces, and
//! the list and capability checks.

use super::*;

#[expect(
    clippy::expect_used,
    reason = "constant patterns, checked by the unit tests"
)]
pub(super) fn re(p: &str) -> Regex {
    Regex::new(p).expect("valid constant regex")
}

pub(super) static PATH_RE: LazyLock<Regex> = LazyLock::new(|| re(r"^/+.*[^/]$"));
pub(super) static DIR_RE: LazyLock<Regex> = LazyLock::new(|| re(r"^/$|^/.*/$"));
pub(super) static EXECNAME_RE: LazyLock<Regex> = LazyLock::new(|| re(r"^[^/]+$"));
pub(super) static NAME_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"));
pub(crate) static NAMESPACE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"));

/// Protocol names of the CRD's `MatchNetworkProtocolStringType`, lowercase.
pub const PROTOCOLS: &[&str] = &[
    "tcp",
    "udp",
    "icmp",
    "icmpv6",
    "sctp",
    "raw",
    "stream",
    "dgram",
    "rdm",
    "seqpacket",
    "dccp",
    "packet",
    "all",
];

/// The last capability number the CRD's `MatchCapabilitiesStringType` names (`mac_admin`);
/// newer ones (`bpf`, `perfmon`, …) are not accepted by KubeArmor's CRD.
pub const LAST_CRD_CAPABILITY: u8 = 33;

pub(super) fn crd_capability(name: &str) -> bool {
    crate::event::caps::number(name).is_some_and(|n| n <= LAST_CRD_CAPABILITY)
}

/// Preset names.
pub const PRESETS: &[&str] = &[
    "filelessExec",
    "protectEnv",
    "exec",
    "protectProc",
    "anonymousMapExec",
];

pub(super) fn check_path(ctx: &mut Ctx<'_>, pos: Pos, field: &str, value: &str) {
    if !PATH_RE.is_match(value) {
        ctx.err(
            pos,
            field,
            format!(
                "`{value}` must be an absolute file path: start with \"/\" and not end with \"/\""
            ),
        );
    } else if value.chars().count() > MAX_PATH_LEN {
        ctx.err(pos, field, format!("longer than {MAX_PATH_LEN} characters"));
    }
}

pub(super) fn check_dir(ctx: &mut Ctx<'_>, pos: Pos, field: &str, value: &str) {
    if !value.starts_with('/') {
        ctx.err(pos, field, "must be an absolute path (start with \"/\")");
    } else if !DIR_RE.is_match(value) {
        ctx.err(pos, field, "must end with \"/\"");
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Case {
    LowerOrUpper,
    Lower,
}

/// Checks each item of a comma list against `known` (compared lowercase); warns about spellings
/// the CRD itself would reject but armor normalises.
pub(super) fn check_list_items(
    ctx: &mut Ctx<'_>,
    pos: Pos,
    field: &str,
    value: &str,
    known: impl Fn(&str) -> bool,
    what: &str,
    case: Case,
) {
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    if items.iter().all(|s| s.is_empty()) {
        ctx.err(pos, field, format!("no {what} given"));
        return;
    }
    for item in items {
        if item.is_empty() {
            ctx.warn(pos, field, "empty item in comma list is ignored");
            continue;
        }
        let lower = item.to_ascii_lowercase();
        let bare = if what == "capability" {
            lower.strip_prefix("cap_").unwrap_or(&lower)
        } else {
            &lower
        };
        if !known(bare) {
            ctx.err(pos, field, format!("`{item}` is not a known {what}"));
            continue;
        }
        let crd_ok = match case {
            Case::LowerOrUpper => item == bare || item == bare.to_ascii_uppercase(),
            Case::Lower => item == bare,
        };
        if !crd_ok {
            ctx.warn(
                pos,
                field,
                format!("`{item}` is read as `{bare}`, but KubeArmor's CRD only accepts `{bare}`"),
            );
        }
    }
}
