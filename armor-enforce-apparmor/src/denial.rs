//! Parsing AppArmor denial records, as the kernel sends them on the audit netlink socket
//! (`audit(1700000000.123:45): apparmor="DENIED" operation="open" …`) or prints them to its
//! log (`audit: type=1400 audit(…): …`).
//!
//! The parser never panics and accepts any input: hostile or truncated records yield `None` or
//! fewer fields, never a wrong value for a field it returns. Untrusted strings (path, profile,
//! command) are printed by the kernel quoted when they are plain, and as upper-case hex without
//! quotes when they contain a space, a quote or a control character; both are decoded.

/// The audit record type of AppArmor's (and SELinux's) access decisions (`AUDIT_AVC`).
pub const AUDIT_AVC: u16 = 1400;

/// Records longer than this are refused (the kernel's own limit is 8 KiB of text).
pub const MAX_RECORD: usize = 64 * 1024;

/// Fields whose values are untrusted strings, hex-encoded by the kernel when not plain.
const UNTRUSTED: [&str; 8] = [
    "name", "profile", "comm", "label", "target", "peer", "info", "exe",
];

/// One AppArmor denial (`apparmor="DENIED"`) or audited access (`apparmor="AUDIT"`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Denial {
    /// `DENIED`, `AUDIT`, `ALLOWED` (complain mode), `STATUS`.
    pub kind: String,
    /// The audit serial (`audit(time:serial)`); records of one syscall share it.
    pub serial: Option<u64>,
    /// `open`, `exec`, `mknod`, `unlink`, `create`, `capable`, …
    pub operation: String,
    /// `file`, `net`, `cap`, … (absent on older kernels).
    pub class: Option<String>,
    /// The profile that decided (a full name such as `armor.web_1a2b3c4d//src_cat_0badf00d`).
    pub profile: String,
    /// The path (file and exec operations).
    pub name: Option<String>,
    /// The requested permissions (`r`, `w`, `x`, `create`, …).
    pub requested_mask: Option<String>,
    /// The denied permissions.
    pub denied_mask: Option<String>,
    /// The acting pid.
    pub pid: Option<u32>,
    /// The command name.
    pub comm: Option<String>,
    /// The acting filesystem uid.
    pub fsuid: Option<u32>,
    /// The file's owner.
    pub ouid: Option<u32>,
    /// The capability name (`net_raw`).
    pub capname: Option<String>,
    /// The socket family name (`inet`).
    pub family: Option<String>,
    /// The socket type name (`stream`).
    pub sock_type: Option<String>,
    /// The socket protocol number.
    pub protocol: Option<u16>,
}

/// Decodes one raw value: quoted strings lose their quotes; unquoted values of untrusted
/// fields must be even-length upper-case hex and are decoded (invalid UTF-8 becomes U+FFFD);
/// anything else there (`?`, `(null)`, a truncated hex string) is no value.
fn decode(key: &str, raw: &str) -> Option<String> {
    if let Some(q) = raw.strip_prefix('"') {
        return Some(q.strip_suffix('"').unwrap_or(q).to_owned());
    }
    if UNTRUSTED.contains(&key)
        && !raw.is_empty()
        && raw.len().is_multiple_of(2)
        && raw
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        let bytes: Vec<u8> = raw
            .as_bytes()
            .chunks(2)
            .filter_map(|pair| {
                let s = std::str::from_utf8(pair).ok()?;
                u8::from_str_radix(s, 16).ok()
            })
            .collect();
        return Some(String::from_utf8_lossy(&bytes).into_owned());
    }
    (!UNTRUSTED.contains(&key)).then(|| raw.to_owned())
}

/// Splits `key=value` fields. A quoted value runs to the next `"` (the kernel never prints a
/// `"` inside one: such strings are hex-encoded); an unterminated quote ends the record.
pub fn fields(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == '"') {
            // Not a field (`avc:  denied  { read }` style text): skip one word.
            rest = rest.split_once(char::is_whitespace).map_or("", |(_, r)| r);
            continue;
        }
        let (raw, after) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => {
                    let (v, r) = after.split_at(end + 2);
                    (v, r)
                }
                // Truncated: drop the field rather than return a partial value.
                None => break,
            }
        } else {
            after.split_once(char::is_whitespace).unwrap_or((after, ""))
        };
        if let Some(v) = decode(key, raw) {
            out.push((key.to_owned(), v));
        }
        rest = after;
    }
    out
}

/// The text after the `audit(…):` stamp, and the serial, of a netlink payload or a kernel log
/// message.
fn body(text: &str) -> Option<(Option<u64>, &str)> {
    let start = text.find("audit(")?;
    let after = text.get(start + "audit(".len()..)?;
    let (stamp, rest) = after.split_once("):")?;
    let serial = stamp
        .split_once(':')
        .and_then(|(_, s)| s.trim().parse::<u64>().ok());
    Some((serial, rest))
}

/// The kernel log form: `audit: type=1400 audit(…): …` → the record type and the netlink
/// form of the text.
pub fn from_kmsg(message: &str) -> Option<(u16, &str)> {
    let rest = message.trim_start().strip_prefix("audit: type=")?;
    let (ty, rest) = rest.split_once(' ')?;
    Some((ty.parse().ok()?, rest))
}

impl Denial {
    /// Parses the text of one audit record (netlink payload or kernel log message, stamp
    /// included). `None` when it is not an AppArmor record or lacks the operation or profile.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > MAX_RECORD {
            return None;
        }
        let text = match from_kmsg(text) {
            Some((AUDIT_AVC, rest)) => rest,
            Some(_) => return None,
            None => text,
        };
        let (serial, rest) = body(text)?;
        let mut d = Self {
            serial,
            ..Self::default()
        };
        let mut is_apparmor = false;
        for (k, v) in fields(rest) {
            let num = || v.parse::<u32>().ok();
            match k.as_str() {
                "apparmor" => {
                    is_apparmor = true;
                    d.kind = v;
                }
                "operation" => d.operation = v,
                "class" => d.class = Some(v),
                "profile" => d.profile = v,
                "name" => d.name = Some(v),
                "requested_mask" => d.requested_mask = Some(v),
                "denied_mask" => d.denied_mask = Some(v),
                "pid" => d.pid = num(),
                "comm" => d.comm = Some(v),
                "fsuid" => d.fsuid = num(),
                "ouid" => d.ouid = num(),
                "capname" => d.capname = Some(v),
                "family" => d.family = Some(v),
                "sock_type" => d.sock_type = Some(v),
                "protocol" => d.protocol = v.parse().ok(),
                _ => {}
            }
        }
        (is_apparmor && !d.operation.is_empty() && !d.profile.is_empty()).then_some(d)
    }

    /// Whether this is a denial (`DENIED`), not an audit or status record.
    pub fn is_denial(&self) -> bool {
        self.kind == "DENIED"
    }

    /// The main profile's name (before the first `//`).
    pub fn main_profile(&self) -> &str {
        self.profile
            .split_once("//")
            .map_or(self.profile.as_str(), |(m, _)| m)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn parses_netlink_and_kmsg_forms() {
        let nl = r#"audit(1700000000.123:45): apparmor="DENIED" operation="open" class="file" profile="armor.w_1//src_cat_2" name="/etc/x" pid=812 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=1000"#;
        let d = Denial::parse(nl).unwrap();
        assert_eq!(d.serial, Some(45));
        assert_eq!(d.operation, "open");
        assert_eq!(d.profile, "armor.w_1//src_cat_2");
        assert_eq!(d.main_profile(), "armor.w_1");
        assert_eq!(d.name.as_deref(), Some("/etc/x"));
        assert_eq!(d.pid, Some(812));
        assert_eq!(d.ouid, Some(1000));
        assert!(d.is_denial());
        let km = format!("audit: type=1400 {nl}");
        assert_eq!(Denial::parse(&km), Some(d));
        assert_eq!(Denial::parse(&format!("audit: type=1300 {nl}")), None);
    }

    #[test]
    fn decodes_hex_names_but_not_numbers() {
        let t = r#"audit(1.0:2): apparmor="DENIED" operation="open" profile="p" name=2F746D702F61206222 pid=1234 requested_mask="r""#;
        let d = Denial::parse(t).unwrap();
        assert_eq!(d.name.as_deref(), Some("/tmp/a b\""));
        assert_eq!(d.pid, Some(1234));
    }

    #[test]
    fn network_and_capability_fields() {
        let t = r#"audit(1.0:3): apparmor="DENIED" operation="create" class="net" profile="p" pid=9 comm="ping" family="inet" sock_type="raw" protocol=1 requested_mask="create" denied_mask="create""#;
        let d = Denial::parse(t).unwrap();
        assert_eq!(
            (d.family.as_deref(), d.sock_type.as_deref(), d.protocol),
            (Some("inet"), Some("raw"), Some(1))
        );
        let c = r#"audit(1.0:4): apparmor="DENIED" operation="capable" class="cap" profile="p" pid=9 comm="x" capability=13  capname="net_raw""#;
        assert_eq!(
            Denial::parse(c).unwrap().capname.as_deref(),
            Some("net_raw")
        );
    }

    #[test]
    fn truncated_and_foreign_records() {
        let t = r#"audit(1.0:2): apparmor="DENIED" operation="open" profile="p" name="/tmp/trunc"#;
        let d = Denial::parse(t).unwrap();
        assert_eq!(d.name, None, "a truncated quoted value is dropped");
        assert_eq!(
            Denial::parse(r#"audit(1.0:2): operation="open" profile="p""#),
            None
        );
        assert_eq!(
            Denial::parse(r#"audit(1.0:2): apparmor="DENIED" profile="p""#),
            None
        );
        assert_eq!(Denial::parse("audit(1.0:2 apparmor=\"DENIED\""), None);
        assert_eq!(Denial::parse(""), None);
        let avc = "audit: type=1400 audit(1.5:9): avc:  denied  { read } for  pid=5 comm=\"cat\"";
        assert_eq!(Denial::parse(avc), None);
    }
}
