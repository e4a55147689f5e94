//! Reading kernel log records (`/dev/kmsg`) and parsing audit records out of them.
//!
//! Without an audit daemon the kernel prints audit records (AppArmor and SELinux denials among
//! them) to its log as `audit: type=1400 audit(…): key=value …`.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::OpenOptionsExt as _;

use crate::{Error, Result};

const KMSG: &str = "/dev/kmsg";

/// A reader of the kernel log that sees only records logged after it was opened.
#[derive(Debug)]
pub struct KernelLog {
    file: File,
}

impl KernelLog {
    /// Opens `/dev/kmsg` positioned after the newest record.
    pub fn open_at_end() -> Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(KMSG)
            .map_err(|e| Error::syscall("open", KMSG, e))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| Error::syscall("seek", KMSG, e))?;
        Ok(Self { file })
    }

    /// The messages of the records logged since the last call (or since opening).
    pub fn read_new(&mut self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        // One read returns one record; a record is at most about 8 KiB.
        let mut buf = vec![0_u8; 16 * 1024];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let record = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
                    if let Some(msg) = record_message(&record) {
                        out.push(msg.to_owned());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // EPIPE: records were overwritten before we read them; go on with the next.
                Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::syscall("read", KMSG, e)),
            }
        }
        Ok(out)
    }

    /// Polls for up to `timeout` until a record satisfies `pred`; audit records reach the log
    /// asynchronously (through the kauditd thread).
    pub fn wait_for<T>(
        &mut self,
        timeout: std::time::Duration,
        mut pred: impl FnMut(&str) -> Option<T>,
    ) -> Result<Option<T>> {
        let start = std::time::Instant::now();
        loop {
            for msg in self.read_new()? {
                if let Some(v) = pred(&msg) {
                    return Ok(Some(v));
                }
            }
            if start.elapsed() >= timeout {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The message of one `/dev/kmsg` record (`prio,seq,usec,flags;message\n KEY=value…`).
pub fn record_message(record: &str) -> Option<&str> {
    let (_, rest) = record.split_once(';')?;
    Some(rest.lines().next().unwrap_or_default())
}

/// One audit record as printed to the kernel log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditRecord {
    /// The record type (1400, `AUDIT_AVC`, for AppArmor and SELinux denials alike).
    pub record_type: u32,
    /// `key=value` fields in order; quotes are removed from quoted values.
    pub fields: Vec<(String, String)>,
}

impl AuditRecord {
    /// Parses a kernel log message such as
    /// `audit: type=1400 audit(1.2:3): apparmor="DENIED" operation="open" name="/x"`.
    /// Returns `None` for messages that are not audit records.
    pub fn parse(message: &str) -> Option<Self> {
        let rest = message.trim_start().strip_prefix("audit: type=")?;
        let (ty, rest) = rest.split_once(' ')?;
        let record_type = ty.parse().ok()?;
        let rest = rest.strip_prefix("audit(")?;
        let (_, mut rest) = rest.split_once("):")?;
        let mut fields = Vec::new();
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            let (key, after) = rest.split_once('=')?;
            if key.contains(char::is_whitespace) || key.is_empty() {
                return None;
            }
            let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
                let (value, after) = quoted.split_once('"')?;
                (value, after)
            } else if let Some(braced) = after.strip_prefix("{ ") {
                // SELinux permission sets: `{ read open }`.
                let (value, after) = braced.split_once(" }")?;
                (value, after)
            } else {
                after.split_once(' ').unwrap_or((after, ""))
            };
            fields.push((key.to_owned(), value.to_owned()));
            rest = after;
        }
        Some(Self {
            record_type,
            fields,
        })
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_apparmor_denial() {
        let msg = r#"audit: type=1400 audit(1700000000.123:45): apparmor="DENIED" operation="open" class="file" profile="armor-test" name="/tmp/x y" pid=812 comm="armor-op" requested_mask="r" denied_mask="r" fsuid=0 ouid=0"#;
        let r = AuditRecord::parse(msg).unwrap();
        assert_eq!(r.record_type, 1400);
        assert_eq!(r.get("apparmor"), Some("DENIED"));
        assert_eq!(r.get("name"), Some("/tmp/x y"));
        assert_eq!(r.get("pid"), Some("812"));
        assert_eq!(r.get("ouid"), Some("0"));
        assert_eq!(r.get("missing"), None);
    }

    #[test]
    fn parses_an_selinux_avc() {
        let msg = "audit: type=1400 audit(1.5:9): avc:  denied  { read } for  pid=5 comm=\"cat\"";
        // `avc:  denied` is not key=value: such records are rejected, not misparsed.
        assert_eq!(AuditRecord::parse(msg), None);
        let kv = "audit: type=1404 audit(1.5:9): enforcing=1 old_enforcing=0 auid=4294967295";
        assert_eq!(AuditRecord::parse(kv).unwrap().get("enforcing"), Some("1"));
    }

    #[test]
    fn rejects_other_messages() {
        assert_eq!(AuditRecord::parse("Linux version 6.1.0"), None);
        assert_eq!(AuditRecord::parse("audit: type=x audit(1:2): a=b"), None);
        assert_eq!(
            record_message("6,1234,5678,-;hello\n SUBSYSTEM=x\n"),
            Some("hello")
        );
    }
}
