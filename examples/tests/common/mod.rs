//! What the agent tests share: reading the alerts an agent wrote, stopping an agent a failed
//! test left running, and a free port.
#![allow(dead_code, reason = "each test binary uses part of the shared module")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The records of `out` whose `PolicyName` is `policy`, waiting up to 30 s for `n` of them.
pub(crate) fn alerts(out: &Path, policy: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: Vec<serde_json::Value> = std::fs::read_to_string(out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["PolicyName"] == policy)
            .collect();
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Kills process `.0` (an agent) when dropped: when the test fails before it stops it.
pub(crate) struct KillOnDrop(pub(crate) u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// A TCP port free on 127.0.0.1 a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}
