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

    /// Reads every file and every `*.yaml`/`*.yml` below every directory of `paths` (sorted), and
    /// validates the whole set. I/O errors become diagnostics too.
    pub fn load_paths<P: AsRef<Path>>(paths: &[P], config: &Config) -> Result<Self, LoadError> {
        let mut set = Self::new();
        for p in paths {
            let mut files = Vec::new();
            if let Err(e) = collect_files(p.as_ref(), &mut files) {
                set.diagnostics.push(io_diag(p.as_ref(), &e));
            }
            for f in files {
                match std::fs::read_to_string(&f) {
                    Ok(text) => set.add_text(&text, &f.display().to_string(), config),
                    Err(e) => set.diagnostics.push(io_diag(&f, &e)),
                }
            }
        }
        set.finish()
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

pub(super) fn io_diag(path: &Path, e: &std::io::Error) -> crate::diag::Diagnostic {
    crate::diag::Diagnostic {
        level: crate::diag::Level::Error,
        location: crate::diag::Location::new(Arc::from(path.display().to_string()), 1, 1),
        policy: None,
        field: String::new(),
        message: format!("cannot read: {e}"),
    }
}

pub(super) fn collect_files(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            if e.is_dir() {
                collect_files(&e, out)?;
            } else if matches!(e.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
                out.push(e);
            }
        }
        Ok(())
    } else {
        std::fs::metadata(p)?;
        out.push(p.to_path_buf());
        Ok(())
    }
}
