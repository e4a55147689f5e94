//! An agent run in the test's process ([`armor_runtime::agent::run`] on a thread of its own),
//! its log lines waited for with a deadline ([`armor_testing::lines::Lines`]). Shared by the
//! agent tests of armor-runtime.
#![allow(dead_code, reason = "each test binary uses part of the shared module")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use armor_runtime::agent::{self, AgentOptions};
use armor_testing::lines::Lines;

/// The running agent.
pub(crate) struct InProcessAgent {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<armor_runtime::Result<()>>>,
    /// Its log lines; `lines.seen` holds every line read so far.
    pub(crate) lines: Lines,
}

impl InProcessAgent {
    /// Starts the agent with `options` (records go nowhere); a failure to start is a log line
    /// `agent failed: …`.
    pub(crate) fn start(options: AgentOptions) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut out = std::io::sink();
            let failed = tx.clone();
            let mut log = |l: &str| {
                let _ = tx.send(l.to_owned());
            };
            let r = agent::run(&options, &mut out, &mut log, &flag);
            if let Err(e) = &r {
                let _ = failed.send(format!(
                    "agent failed: {}",
                    armor_core::diag::error_chain(e)
                ));
            }
            r
        });
        Self {
            stop,
            thread: Some(thread),
            lines: Lines::from_channel(rx),
        }
    }

    /// The next log line containing `part`, waiting up to `limit`; panics with every line
    /// seen when none comes.
    pub(crate) fn until(&mut self, part: &str, limit: Duration) -> String {
        self.lines.timeout = limit;
        self.lines.until(part)
    }

    /// Every line read so far, and those that arrived meanwhile, without waiting.
    pub(crate) fn seen(&mut self) -> &str {
        self.lines.take_arrived();
        &self.lines.seen
    }

    /// Stops the agent and returns what its run returned.
    pub(crate) fn stop(mut self) -> armor_runtime::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take();
        thread.map_or(Ok(()), |t| t.join().unwrap())
    }
}

impl Drop for InProcessAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
