//! Where an agent writes its JSON lines: several outputs at once ([`Tee`]), and a file rotated
//! by size with a kept count ([`RotatingFile`]).
//!
//! ```no_run
//! use armor_runtime::output::{RotatingFile, Tee};
//! let file = RotatingFile::open("/var/log/armor/alerts.jsonl", 100 << 20, 5)?;
//! let out = Tee::new(vec![Box::new(std::io::stdout()), Box::new(file)]);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A file of JSON lines that is rotated once it holds `max_bytes`: `FILE` becomes `FILE.1`,
/// `FILE.1` becomes `FILE.2`, … up to `FILE.<keep>`; the oldest beyond `keep` is removed, and
/// writing goes on in a new `FILE` (mode 0640). The check is made on `flush`, which an agent
/// calls after each batch of records: every file holds whole lines, and a file exceeds
/// `max_bytes` by one batch at most. `keep` 0 keeps no old file. A file moved or removed by
/// someone else (logrotate) is noticed on the next `flush`, and writing goes on in a new file at
/// the path.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: io::BufWriter<File>,
    size: u64,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

impl RotatingFile {
    /// `path`, appended to (its present size counts), rotated at `max_bytes` (at least 1),
    /// keeping `keep` old files.
    pub fn open(path: impl Into<PathBuf>, max_bytes: u64, keep: u32) -> io::Result<Self> {
        let path = path.into();
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            max_bytes: max_bytes.max(1),
            keep,
            file: io::BufWriter::new(file),
            size,
        })
    }

    /// `FILE.<n>`.
    fn old(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    /// Shifts the old files by one and starts a new file.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let gone = |r: io::Result<()>| match r {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        };
        if self.keep == 0 {
            gone(std::fs::remove_file(&self.path))?;
        } else {
            gone(std::fs::remove_file(self.old(self.keep)))?;
            for n in (1..self.keep).rev() {
                gone(std::fs::rename(self.old(n), self.old(n + 1)))?;
            }
            // Gone already (moved away by someone else): nothing to rotate.
            gone(std::fs::rename(&self.path, self.old(1)))?;
        }
        self.file = io::BufWriter::new(open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()?;
        // Moved or removed by someone else (logrotate): go on in a new file at the path.
        let ours = self.file.get_ref().metadata()?.ino();
        if std::fs::metadata(&self.path).map(|m| m.ino()).ok() != Some(ours) {
            self.file = io::BufWriter::new(open_append(&self.path)?);
            self.size = self.file.get_ref().metadata()?.len();
        }
        if self.size >= self.max_bytes {
            self.rotate()?;
        }
        Ok(())
    }
}

/// Several outputs written alike, in order: each gets every byte. The first error is returned
/// (naming which output), after every output was given its turn at the same bytes.
pub struct Tee {
    outputs: Vec<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee")
            .field("outputs", &self.outputs.len())
            .finish()
    }
}

impl Tee {
    /// `outputs`, written in this order.
    pub fn new(outputs: Vec<Box<dyn Write + Send>>) -> Self {
        Self { outputs }
    }
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut first = None;
        for (i, o) in self.outputs.iter_mut().enumerate() {
            if let Err(e) = o.write_all(buf) {
                first.get_or_insert(io::Error::new(e.kind(), format!("output {}: {e}", i + 1)));
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut first = None;
        for (i, o) in self.outputs.iter_mut().enumerate() {
            if let Err(e) = o.flush() {
                first.get_or_insert(io::Error::new(e.kind(), format!("output {}: {e}", i + 1)));
            }
        }
        first.map_or(Ok(()), Err)
    }
}
