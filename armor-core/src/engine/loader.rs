//! Loading policies from text, files and directories into a validated [`PolicySet`].

use super::*;

/// A validated set of policies: what [`CompiledPolicy::build`] takes.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub(super) policies: Vec<Policy>,
    /// The normalised rules of each policy, in the same order: every policy is normalised once,
    /// when it enters the set.
    pub(super) rules: Vec<Vec<Rule>>,
    pub(super) diagnostics: Diagnostics,
}

impl PolicySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses and validates `text` (one or more YAML documents) named `file` in diagnostics.
    /// Fails with every diagnostic when any of them is an error.
    pub fn parse(text: &str, file: &str) -> Result<Self, LoadError> {
        let mut set = Self::new();
        set.add_text(text, file, &Config::default());
        set.finish()
    }

    /// Reads every file and every `*.yaml`/`*.yml` below every directory of `paths`
    /// ([`PolicyFiles::read`]: sorted, regular files only, bounded), and validates the whole
    /// set. A file that cannot be read is an error diagnostic too, and fails the load.
    pub fn load_paths<P: AsRef<Path>>(paths: &[P], config: &Config) -> Result<Self, LoadError> {
        PolicyFiles::read(paths, &config.load_limits).load(config)
    }

    /// Adds the documents of `text` without failing; call [`PolicySet::finish`] afterwards.
    pub fn add_text(&mut self, text: &str, file: &str, config: &Config) {
        let file: Arc<str> = Arc::from(file);
        match crate::yaml::load(text, &config.load_limits) {
            Err(e) => self.diagnostics.push(crate::diag::Diagnostic {
                level: crate::diag::Level::Error,
                location: e.pos.location(&file),
                policy: None,
                field: String::new(),
                message: e.message,
            }),
            Ok(docs) => {
                for doc in docs {
                    if let Some(p) = crate::parse::policy(&file, &doc.root, &mut self.diagnostics) {
                        self.push(p);
                    }
                }
            }
        }
    }

    /// Runs the set-wide checks (duplicate policy names, shadowed and never-matching rules) and
    /// returns the set, or every diagnostic if there is an error.
    pub fn finish(mut self) -> Result<Self, LoadError> {
        crate::validate::check_set(&self.policies, &self.rules, &mut self.diagnostics);
        self.diagnostics.sort();
        if self.diagnostics.has_errors() {
            return Err(LoadError {
                diagnostics: self.diagnostics,
            });
        }
        Ok(self)
    }

    /// The policies, in load order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The warnings of the load (a set with errors is never returned).
    pub fn diagnostics(&self) -> &Diagnostics {
        &self.diagnostics
    }

    /// Adds an already-built policy (skipping YAML). It is validated again by
    /// [`CompiledPolicy::build`] only for set-wide limits; callers that build policies in code
    /// own their correctness.
    pub fn push(&mut self, policy: Policy) {
        self.rules.push(normalize(&policy));
        self.policies.push(policy);
    }
}

/// How many directory levels below a policy path are read at most (a bind mount can make a
/// directory its own descendant).
pub const MAX_DIR_DEPTH: usize = 16;

/// The policy files below some paths, read once and safely, in a fixed order: what
/// [`PolicySet::load_paths`] parses, and what an agent compares to tell whether its policies
/// changed ([`PolicyFiles::fingerprint`]) before it parses the very bytes it compared.
///
/// # What is read
/// - A path given is read whatever its name (following it when it is a symbolic link: the
///   operator named it); below a directory, the `*.yaml` and `*.yml` files, in name order,
///   recursively up to [`MAX_DIR_DEPTH`] levels.
/// - Entries whose name starts with `.` are skipped: editors' temporary files, and the
///   `..data` and `..<timestamp>` entries where a Kubernetes ConfigMap volume keeps its files.
/// - A symbolic link below a directory is followed only when it resolves to a regular file
///   inside the same path given (a ConfigMap volume's `policy.yaml -> ..data/policy.yaml`
///   does). A link to a directory, to anything outside, dangling or looping is an error.
/// - Only regular files are read: each is opened without following a link
///   (`O_NOFOLLOW`) and without waiting (`O_NONBLOCK`, so a FIFO never blocks), checked to
///   be a regular file on the open descriptor, and read up to [`LoadLimits::max_bytes`]: a
///   FIFO, device or socket, or a larger file, is an error.
///
/// Every error names the path; a load with one is refused whole ([`PolicyFiles::load`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFiles {
    /// (name for diagnostics, text), in reading order.
    files: Vec<(String, String)>,
    /// What could not be read.
    problems: Vec<crate::diag::Diagnostic>,
}

impl PolicyFiles {
    /// Reads the policy files of `paths` under `limits` (see the type's documentation).
    pub fn read<P: AsRef<Path>>(paths: &[P], limits: &LoadLimits) -> Self {
        let mut out = Self::default();
        for p in paths {
            let p = p.as_ref();
            match std::fs::canonicalize(p) {
                Ok(top) if top.is_dir() => out.read_dir(&top, &top, 0, limits),
                Ok(top) => out.read_file(p, &top, limits),
                Err(e) => out.problem(p, &format!("cannot read: {e}")),
            }
        }
        out
    }

    /// The files read: (name, text), in order.
    pub fn files(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files.iter().map(|(n, t)| (n.as_str(), t.as_str()))
    }

    /// What could not be read.
    pub fn problems(&self) -> &[crate::diag::Diagnostic] {
        &self.problems
    }

    /// A 64-bit FNV-1a hash of every file's name and text and of every problem: equal
    /// fingerprints mean the same input (up to a hash collision).
    pub fn fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes.iter().chain(&[0xff]) {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for (name, text) in &self.files {
            eat(name.as_bytes());
            eat(text.as_bytes());
        }
        for d in &self.problems {
            eat(d.to_string().as_bytes());
        }
        h
    }

    /// Parses and validates what was read; fails with every diagnostic, the reading problems
    /// included, when there is an error.
    pub fn load(&self, config: &Config) -> Result<PolicySet, LoadError> {
        let mut set = PolicySet::new();
        for d in &self.problems {
            set.diagnostics.push(d.clone());
        }
        for (name, text) in &self.files {
            set.add_text(text, name, config);
        }
        set.finish()
    }

    fn problem(&mut self, path: &Path, message: &str) {
        self.problems.push(crate::diag::Diagnostic {
            level: crate::diag::Level::Error,
            location: crate::diag::Location::new(Arc::from(path.display().to_string()), 1, 1),
            policy: None,
            field: String::new(),
            message: message.to_owned(),
        });
    }

    /// Reads the policy files of directory `dir`, `depth` levels below `top`.
    fn read_dir(&mut self, top: &Path, dir: &Path, depth: usize, limits: &LoadLimits) {
        if depth > MAX_DIR_DEPTH {
            self.problem(
                dir,
                &format!(
                    "more than {MAX_DIR_DEPTH} directory levels below {}: not read",
                    top.display()
                ),
            );
            return;
        }
        let mut entries: Vec<std::fs::DirEntry> = match std::fs::read_dir(dir) {
            Ok(d) => d.filter_map(Result::ok).collect(),
            Err(e) => return self.problem(dir, &format!("cannot read: {e}")),
        };
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let name = e.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = e.path();
            let yaml = matches!(
                path.extension().and_then(|x| x.to_str()),
                Some("yaml" | "yml")
            );
            let Ok(kind) = e.file_type() else {
                self.problem(&path, "cannot read its type");
                continue;
            };
            if kind.is_dir() {
                self.read_dir(top, &path, depth + 1, limits);
            } else if kind.is_symlink() {
                match std::fs::canonicalize(&path) {
                    Ok(target) if target.is_dir() => self.problem(
                        &path,
                        "a symbolic link to a directory: not followed (policies are read from \
                         the directories themselves)",
                    ),
                    Ok(target) if !target.starts_with(top) => self.problem(
                        &path,
                        &format!(
                            "a symbolic link out of {} (to {}): not followed",
                            top.display(),
                            target.display()
                        ),
                    ),
                    Ok(target) if yaml && target.is_file() => {
                        self.read_file(&path, &target, limits)
                    }
                    Ok(_) if yaml => self.problem(
                        &path,
                        "a symbolic link to something other than a regular file: not read",
                    ),
                    Ok(_) => {}
                    Err(e) => self.problem(
                        &path,
                        &format!("a symbolic link that does not resolve: {e}"),
                    ),
                }
            } else if yaml && kind.is_file() {
                self.read_file(&path, &path, limits);
            } else if yaml {
                // Never opened: opening a device can do something (and a FIFO can wait).
                self.problem(
                    &path,
                    "not a regular file (a FIFO, device or socket): not read",
                );
            }
        }
    }

    /// Reads the regular file at `real` (no link in its last component), named `name`.
    fn read_file(&mut self, name: &Path, real: &Path, limits: &LoadLimits) {
        match read_regular(real, limits.max_bytes) {
            Ok(text) => self.files.push((name.display().to_string(), text)),
            Err(why) => self.problem(name, &why),
        }
    }
}

/// Reads the regular file at `path` (not following a link there, never waiting on a FIFO), at
/// most `max` bytes; anything else says why.
fn read_regular(path: &Path, max: usize) -> Result<String, String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "a symbolic link: not followed".to_owned(),
            _ => format!("cannot read: {e}"),
        })?;
    let meta = f.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file (a FIFO, device or socket): not read".to_owned());
    }
    let mut bytes = Vec::new();
    f.take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > max {
        return Err(format!("larger than {max} bytes: not read"));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {}): not read",
            e.utf8_error().valid_up_to()
        )
    })
}
