//! The lines a child process writes (an agent's stderr log), read on a thread so a silent
//! process fails the test at a deadline instead of hanging it.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// The lines of one stream, with everything seen so far.
#[derive(Debug)]
pub struct Lines {
    rx: Receiver<String>,
    /// Every line read so far, each ending in `\n`.
    pub seen: String,
    /// How long [`Lines::until`] waits.
    pub timeout: Duration,
}

impl Lines {
    /// Starts reading `stream` (a child's stderr) on a thread; waits 60 s per search.
    pub fn new(stream: impl Read + Send + 'static) -> Self {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self::from_channel(rx)
    }

    /// The lines sent on `rx` (a log an in-process agent writes through a closure); waits 60 s
    /// per search.
    pub fn from_channel(rx: Receiver<String>) -> Self {
        Self {
            rx,
            seen: String::new(),
            timeout: Duration::from_secs(60),
        }
    }

    /// Adds the lines that arrived meanwhile to [`Lines::seen`], without waiting.
    pub fn take_arrived(&mut self) {
        for line in self.rx.try_iter() {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
    }

    /// Reads until a line contains `needle`; returns that line.
    ///
    /// # Panics
    /// When no such line comes within [`Lines::timeout`] or the stream ends first (with
    /// everything seen).
    pub fn until(&mut self, needle: &str) -> String {
        self.until_line(&format!("a line containing `{needle}`"), |l| {
            l.contains(needle)
        })
    }

    /// Reads until a line satisfies `wanted` (`what` describes it in the panic); returns it.
    ///
    /// # Panics
    /// As [`Lines::until`].
    #[allow(
        clippy::panic,
        reason = "a test helper: the panic is the test's failure"
    )]
    pub fn until_line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(e) => panic!("{what} not seen ({e}):\n{}", self.seen),
            }
        }
    }
}
