//! Diagnostics: every problem found while loading and validating policies, with its position.
//!
//! Loading never stops at the first problem. All errors and warnings of a set of files are
//! collected into [`Diagnostics`]; a set with any [`Level::Error`] is rejected as a whole, so
//! nothing is ever applied half-way.

use std::fmt;
use std::sync::Arc;

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Level {
    /// The policy set is rejected.
    Error,
    /// The policy set loads, but something is probably not what the author meant.
    Warning,
}

/// A position in a source file: 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub struct Location {
    /// The file name as given to the loader (`-` or `<inline>` for text without a file).
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Location {
    /// A location in `file` at `line`:`column` (both 1-based).
    pub fn new(file: Arc<str>, line: usize, column: usize) -> Self {
        Self { file, line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem found in a policy file.
///
/// Its [`Display`](fmt::Display) form is the one `armorctl validate` prints:
/// `a.yaml:14:9: in policy ns/block-shadow: file.matchDirectories[0].dir: must end with "/"`
/// (warnings carry `warning: ` after the position).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Diagnostic {
    /// Error or warning.
    pub level: Level,
    /// Where the offending node starts.
    pub location: Location,
    /// The policy it belongs to (`namespace/name`, or `name` for cluster-scoped kinds), when known.
    pub policy: Option<String>,
    /// The field path inside the document, relative to `spec` for spec fields
    /// (`file.matchDirectories[0].dir`), or `metadata.name`, `kind`, ….
    pub field: String,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if self.level == Level::Warning {
            f.write_str("warning: ")?;
        }
        if let Some(p) = &self.policy {
            write!(f, "in policy {p}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// All the problems of one load, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Diagnostics {
    /// Every diagnostic, errors and warnings interleaved in the order they were found.
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one diagnostic.
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.level == Level::Error)
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.level == Level::Error)
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.level == Level::Warning)
    }

    /// Appends every diagnostic of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    /// Sorts by file, line and column (stable: same-position diagnostics keep their order).
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| a.location.cmp(&b.location));
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

/// The error of a load that found at least one error: every diagnostic, warnings included.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} error(s) in the input:\n{diagnostics}", diagnostics.errors().count())]
#[non_exhaustive]
pub struct LoadError {
    /// Every diagnostic of the load.
    pub diagnostics: Diagnostics,
}

/// An error and its causes on one line, `error: cause: cause`, as agents and enforcers print
/// them.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
