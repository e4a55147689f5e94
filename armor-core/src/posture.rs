//! Default posture and visibility.
//!
//! The default posture decides what happens, in a category that is in allow-list mode, to an
//! operation no Allow rule covers (see the [semantics](crate::manual::semantics)). Containers take
//! a global default that a namespace can override with annotations; hosts have their own default.
//! Both are `audit` unless configured.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::workload::Workload;

/// What the default posture does with an operation no Allow rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PostureAction {
    /// Let it pass and raise an Audit alert (`DefaultPosture`).
    #[default]
    Audit,
    /// Deny it and raise a Block alert (`DefaultPosture`).
    Block,
}

impl PostureAction {
    /// `audit` or `block`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audit => "audit",
            Self::Block => "block",
        }
    }
}

impl fmt::Display for PostureAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A posture value that is neither `audit` nor `block`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid posture `{0}`: expected `audit` or `block`")]
#[non_exhaustive]
pub struct PostureParseError(pub String);

impl FromStr for PostureAction {
    type Err = PostureParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "audit" => Ok(Self::Audit),
            "block" => Ok(Self::Block),
            _ => Err(PostureParseError(s.to_string())),
        }
    }
}

/// The default posture of each category. Process operations use `file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct Posture {
    /// File and process operations.
    pub file: PostureAction,
    /// Network operations.
    pub network: PostureAction,
    /// Capability use.
    pub capabilities: PostureAction,
}

impl Posture {
    /// The same action for every category.
    pub fn all(action: PostureAction) -> Self {
        Self {
            file: action,
            network: action,
            capabilities: action,
        }
    }

    /// Parses `file=block,network=audit,capabilities=block` (keys optional, any order; missing keys
    /// keep `self`'s value).
    pub fn with_overrides(mut self, spec: &str) -> Result<Self, PostureParseError> {
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| PostureParseError(item.to_string()))?;
            let v: PostureAction = v.parse()?;
            match k.trim() {
                "file" | "process" => self.file = v,
                "network" => self.network = v,
                "capabilities" => self.capabilities = v,
                _ => return Err(PostureParseError(item.to_string())),
            }
        }
        Ok(self)
    }
}

/// The namespace annotation overriding the file (and process) posture.
pub const FILE_POSTURE_ANNOTATION: &str = "kubearmor-file-posture";
/// The namespace annotation overriding the network posture.
pub const NETWORK_POSTURE_ANNOTATION: &str = "kubearmor-network-posture";
/// The namespace annotation overriding the capabilities posture.
pub const CAPABILITIES_POSTURE_ANNOTATION: &str = "kubearmor-capabilities-posture";
/// The namespace, pod or node annotation selecting visibility.
pub const VISIBILITY_ANNOTATION: &str = "kubearmor-visibility";

/// One kind of telemetry a workload can make visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum VisibilityKind {
    /// Process execution.
    Process,
    /// File access.
    File,
    /// Network sockets.
    Network,
    /// Capability use.
    Capabilities,
    /// DNS queries.
    Dns,
    /// IMA hashes.
    Ima,
}

/// Which telemetry a workload emits as logs (alerts are not affected by visibility in armor
/// when they come from an enforcer; audit alerts need the category visible).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct Visibility {
    /// Process events.
    pub process: bool,
    /// File events.
    pub file: bool,
    /// Network events.
    pub network: bool,
    /// Capability events.
    pub capabilities: bool,
    /// DNS events.
    pub dns: bool,
    /// IMA events.
    pub ima: bool,
}

impl Visibility {
    /// `process,file,network,capabilities`: the default for containers and plain hosts.
    pub fn standard() -> Self {
        Self {
            process: true,
            file: true,
            network: true,
            capabilities: true,
            dns: false,
            ima: false,
        }
    }

    /// Nothing visible.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether `kind` is visible.
    pub fn shows(&self, kind: VisibilityKind) -> bool {
        match kind {
            VisibilityKind::Process => self.process,
            VisibilityKind::File => self.file,
            VisibilityKind::Network => self.network,
            VisibilityKind::Capabilities => self.capabilities,
            VisibilityKind::Dns => self.dns,
            VisibilityKind::Ima => self.ima,
        }
    }
}

/// A visibility list with an unknown item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid visibility item `{0}`: expected process, file, network, capabilities, dns, ima or none"
)]
#[non_exhaustive]
pub struct VisibilityParseError(pub String);

impl FromStr for Visibility {
    type Err = VisibilityParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut v = Self::none();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.to_ascii_lowercase().as_str() {
                "process" => v.process = true,
                "file" => v.file = true,
                "network" => v.network = true,
                "capabilities" => v.capabilities = true,
                "dns" => v.dns = true,
                "ima" => v.ima = true,
                "none" => v = Self::none(),
                _ => return Err(VisibilityParseError(item.to_string())),
            }
        }
        Ok(v)
    }
}

/// A problem with an annotation: reported, and the global default used instead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AnnotationWarning {
    /// Where the annotation is (`namespace shop`, `pod shop/web`, `node n1`).
    pub on: String,
    /// The annotation key.
    pub key: String,
    /// Why it was not used.
    pub message: String,
}

impl fmt::Display for AnnotationWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: annotation `{}`: {}",
            self.on, self.key, self.message
        )
    }
}

/// Global defaults plus per-namespace annotations: everything needed to compute a workload's
/// posture and visibility.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostureConfig {
    /// Default posture of containers.
    pub container_default: Posture,
    /// Default posture of hosts.
    pub host_default: Posture,
    /// Default visibility of containers.
    pub container_visibility: Visibility,
    /// Default visibility of hosts.
    pub host_visibility: Visibility,
    /// Annotations by namespace name.
    pub namespace_annotations: BTreeMap<String, BTreeMap<String, String>>,
}

impl PostureConfig {
    /// `audit` everywhere; standard visibility for containers and hosts.
    pub fn new() -> Self {
        Self {
            container_default: Posture::default(),
            host_default: Posture::default(),
            container_visibility: Visibility::standard(),
            host_visibility: Visibility::standard(),
            namespace_annotations: BTreeMap::new(),
        }
    }

    /// Sets one namespace annotation.
    pub fn annotate_namespace(
        &mut self,
        namespace: impl Into<String>,
        key: impl Into<String>,
        value: impl Into<String>,
    ) {
        self.namespace_annotations
            .entry(namespace.into())
            .or_default()
            .insert(key.into(), value.into());
    }

    /// The posture of `workload`, with a warning for every annotation that could not be used.
    pub fn posture_for(&self, workload: &Workload) -> (Posture, Vec<AnnotationWarning>) {
        let mut warnings = Vec::new();
        let Workload::Container(c) = workload else {
            return (self.host_default, warnings);
        };
        let mut p = self.container_default;
        if let Some(ann) = self.namespace_annotations.get(&c.namespace) {
            for (key, slot) in [
                (FILE_POSTURE_ANNOTATION, &mut p.file),
                (NETWORK_POSTURE_ANNOTATION, &mut p.network),
                (CAPABILITIES_POSTURE_ANNOTATION, &mut p.capabilities),
            ] {
                if let Some(v) = ann.get(key) {
                    match v.parse::<PostureAction>() {
                        Ok(a) => *slot = a,
                        Err(e) => warnings.push(AnnotationWarning {
                            on: format!("namespace {}", c.namespace),
                            key: key.to_string(),
                            message: format!("{e}; using the global default `{slot}`"),
                        }),
                    }
                }
            }
        }
        (p, warnings)
    }

    /// The visibility of `workload`: pod annotation, else namespace annotation, else the global
    /// default (hosts: node annotation, else the host default).
    pub fn visibility_for(&self, workload: &Workload) -> (Visibility, Vec<AnnotationWarning>) {
        let mut warnings = Vec::new();
        let mut pick = |on: String, ann: Option<&String>| -> Option<Visibility> {
            let v = ann?;
            match v.parse::<Visibility>() {
                Ok(v) => Some(v),
                Err(e) => {
                    warnings.push(AnnotationWarning {
                        on,
                        key: VISIBILITY_ANNOTATION.to_string(),
                        message: format!("{e}; annotation ignored"),
                    });
                    None
                }
            }
        };
        let v = match workload {
            Workload::Host(h) => pick(
                format!("node {}", h.node_name),
                h.annotations.get(VISIBILITY_ANNOTATION),
            )
            .unwrap_or(self.host_visibility),
            Workload::Container(c) => {
                let pod = pick(
                    format!(
                        "pod {}/{}",
                        c.namespace,
                        c.pod.as_deref().unwrap_or(&c.name)
                    ),
                    c.annotations.get(VISIBILITY_ANNOTATION),
                );
                let ns = || {
                    self.namespace_annotations
                        .get(&c.namespace)
                        .and_then(|a| a.get(VISIBILITY_ANNOTATION))
                };
                match pod {
                    Some(v) => v,
                    None => pick(format!("namespace {}", c.namespace), ns())
                        .unwrap_or(self.container_visibility),
                }
            }
        };
        (v, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Container, Host};

    #[test]
    fn namespace_annotations_override_case_insensitively() {
        let mut cfg = PostureConfig::new();
        cfg.annotate_namespace("shop", FILE_POSTURE_ANNOTATION, "Block");
        cfg.annotate_namespace("shop", NETWORK_POSTURE_ANNOTATION, "deny");
        let (p, w) = cfg.posture_for(&Container::new("shop", "web").into());
        assert_eq!(p.file, PostureAction::Block);
        assert_eq!(p.network, PostureAction::Audit);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].to_string().contains("kubearmor-network-posture"),
            "{}",
            w[0]
        );
        let (p, _) = cfg.posture_for(&Host::new("n1").into());
        assert_eq!(p, Posture::default());
    }

    #[test]
    fn posture_overrides_parse() {
        let p = Posture::default()
            .with_overrides("file=block, capabilities=BLOCK")
            .unwrap();
        assert_eq!(p.file, PostureAction::Block);
        assert_eq!(p.network, PostureAction::Audit);
        assert_eq!(p.capabilities, PostureAction::Block);
        assert!(Posture::default().with_overrides("disk=block").is_err());
    }

    #[test]
    fn visibility_pod_then_namespace_then_default() {
        let mut cfg = PostureConfig::new();
        cfg.annotate_namespace("a", VISIBILITY_ANNOTATION, "process");
        let mut c = Container::new("a", "x");
        assert_eq!(
            cfg.visibility_for(&c.clone().into()).0,
            "process".parse().unwrap()
        );
        c.annotations
            .insert(VISIBILITY_ANNOTATION.into(), "none".into());
        assert_eq!(cfg.visibility_for(&c.into()).0, Visibility::none());
        assert_eq!(
            cfg.visibility_for(&Container::new("b", "y").into()).0,
            Visibility::standard()
        );
    }
}
