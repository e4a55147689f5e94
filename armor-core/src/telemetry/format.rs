//! KubeArmor's spellings of kernel values (flags, families, protocols, errno) and timestamps,
//! in one place for every record armor writes.

use std::time::{SystemTime, UNIX_EPOCH};

/// `O_RDONLY|O_CLOEXEC` for open flags (x86_64 values).
pub fn open_flags(flags: u64) -> String {
    let mut out = vec![match flags & 0o3 {
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_RDONLY",
    }];
    for (bit, name) in [
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o400, "O_NOCTTY"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o200000, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o2000000, "O_CLOEXEC"),
        (0o10000000, "O_PATH"),
    ] {
        if flags & bit != 0 {
            out.push(name);
        }
    }
    out.join("|")
}

/// `AF_INET` for 2.
pub fn family(f: u16) -> String {
    match f {
        1 => "AF_UNIX".into(),
        2 => "AF_INET".into(),
        10 => "AF_INET6".into(),
        16 => "AF_NETLINK".into(),
        17 => "AF_PACKET".into(),
        n => n.to_string(),
    }
}

/// `SOCK_STREAM` for 1.
pub fn sock_type(t: u16) -> String {
    match t {
        1 => "SOCK_STREAM".into(),
        2 => "SOCK_DGRAM".into(),
        3 => "SOCK_RAW".into(),
        5 => "SOCK_SEQPACKET".into(),
        n => n.to_string(),
    }
}

/// `TCP` for 6 (0 stays `0`).
pub fn protocol(p: u16) -> String {
    match p {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        132 => "SCTP".into(),
        255 => "RAW".into(),
        n => n.to_string(),
    }
}

/// `Passed` for a non-negative return value, else the errno's text (`Permission denied`).
pub fn result(ret: i64) -> String {
    if ret >= 0 {
        return super::RESULT_PASSED.to_string();
    }
    // `i64::MIN` has no negation: a kernel never returns it, a corrupt record may.
    let errno = ret
        .checked_neg()
        .and_then(|e| i32::try_from(e).ok())
        .unwrap_or(0);
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match text.split_once(" (os error") {
        Some((t, _)) => t.to_string(),
        None => text,
    }
}

/// Now as `(unix seconds, RFC 3339 with microseconds)`.
pub fn now() -> (i64, String) {
    at(SystemTime::now())
}

/// `wall` as `(unix seconds, RFC 3339 with microseconds)`: the `Timestamp` and `UpdatedTime`
/// of a record.
pub fn at(wall: SystemTime) -> (i64, String) {
    let d = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(0);
    (secs, rfc3339(secs, d.subsec_micros()))
}

/// `2022-08-31T09:02:55.841537Z`.
pub fn rfc3339(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(open_flags(0o2000000), "O_RDONLY|O_CLOEXEC");
        assert_eq!(open_flags(0o1101), "O_WRONLY|O_CREAT|O_TRUNC");
        assert_eq!(result(0), "Passed");
        assert_eq!(result(-13), "Permission denied");
        assert_eq!(result(-2), "No such file or directory");
        // Found by the event fuzzer: a corrupt record's return value.
        assert_eq!(result(i64::MIN), result(-i64::from(i32::MAX) - 1_000));
        assert!(!result(i64::MIN).is_empty());
        assert_eq!(
            rfc3339(1_661_936_575, 841_537),
            "2022-08-31T09:02:55.841537Z"
        );
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            (family(2), sock_type(1), protocol(6)),
            ("AF_INET".into(), "SOCK_STREAM".into(), "TCP".into())
        );
    }
}
