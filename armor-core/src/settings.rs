//! The cluster-wide settings KubeArmor users keep in a ConfigMap (`kubearmor-config` there,
//! `armor-config` here, same keys): the default postures and visibility of containers and
//! hosts, the cluster's name and the alert throttling.
//!
//! | key | value | default |
//! |---|---|---|
//! | `cluster` | the `ClusterName` records carry | the agent's own (`default`) |
//! | `defaultFilePosture`, `defaultNetworkPosture`, `defaultCapabilitiesPosture` | `audit` or `block` | `audit` |
//! | `hostDefaultFilePosture`, `hostDefaultNetworkPosture`, `hostDefaultCapabilitiesPosture` | `audit` or `block` | `audit` |
//! | `visibility`, `hostVisibility` | `process,file,network,capabilities,dns,ima` or `none` | `process,file,network,capabilities` |
//! | `alertThrottling` | `true` or `false` | `true` |
//! | `maxAlertPerSec` | alerts per second per workload before throttling, 1 or more | `10` |
//! | `throttleSec` | seconds alerts are dropped once the limit is hit, 1 or more | `30` |
//!
//! Values are read as KubeArmor reads them: postures and booleans case-insensitively, numbers
//! as decimal integers. A key armor does not know (KubeArmor's `gRPC`,
//! `enableKubeArmorHostPolicy`, a typo) is a warning, never silently taken; a bad value of a
//! known key is an error, and a settings object with an error is not taken at all: the agent
//! keeps the settings it had. Every problem names where it is: `file:line:col` for a manifest
//! ([`Settings::parse_manifest`]), the object and its field for an object from the API
//! ([`Settings::from_data`]).
//!
//! ```
//! use std::collections::BTreeMap;
//! use armor_core::settings::Settings;
//! let data = BTreeMap::from([
//!     ("defaultFilePosture".to_string(), "block".to_string()),
//!     ("maxAlertPerSec".to_string(), "ten".to_string()),
//!     ("throttleSec".to_string(), "0".to_string()),
//! ]);
//! let err = Settings::from_data(&data, "ConfigMap armor/armor-config").unwrap_err();
//! assert_eq!(err.to_string(), "2 error(s) in the settings:\n\
//!     ConfigMap armor/armor-config: data.maxAlertPerSec: `ten` is not a whole number\n\
//!     ConfigMap armor/armor-config: data.throttleSec: must be 1 or more\n");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::diag::{Level, Location};
use crate::posture::{Posture, PostureAction, Visibility};
use crate::yaml::{LoadLimits, NodeKind};

/// The settings of one ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// `cluster`: the cluster name records carry (`None`: the agent's own).
    pub cluster_name: Option<String>,
    /// The default postures of containers.
    pub container_posture: Posture,
    /// The default postures of hosts.
    pub host_posture: Posture,
    /// `visibility`: what containers make visible by default.
    pub container_visibility: Visibility,
    /// `hostVisibility`: what hosts make visible by default.
    pub host_visibility: Visibility,
    /// Alerts per second per workload before throttling; `0` when `alertThrottling` is off.
    pub max_alerts_per_sec: u32,
    /// How long alerts are dropped once the limit is hit.
    pub throttle: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_name: None,
            container_posture: Posture::default(),
            host_posture: Posture::default(),
            container_visibility: Visibility::standard(),
            host_visibility: Visibility::standard(),
            max_alerts_per_sec: 10,
            throttle: Duration::from_secs(30),
        }
    }
}

/// One problem of a settings object.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SettingsProblem {
    /// Error or warning.
    pub level: Level,
    /// The object (`ConfigMap armor/armor-config`) or the file.
    pub origin: String,
    /// Where in the file, for a manifest.
    pub location: Option<Location>,
    /// The field: `data.<key>`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SettingsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(l) => write!(f, "{l}: ")?,
            None => write!(f, "{}: ", self.origin)?,
        }
        if self.level == Level::Warning {
            f.write_str("warning: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Settings that were not taken: every problem, warnings included.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} error(s) in the settings:\n{}", self.errors().count(), problems_text(&self.problems))]
#[non_exhaustive]
pub struct SettingsError {
    /// Every problem, in key order (manifest: file order).
    pub problems: Vec<SettingsProblem>,
}

impl SettingsError {
    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &SettingsProblem> {
        self.problems.iter().filter(|p| p.level == Level::Error)
    }
}

fn problems_text(problems: &[SettingsProblem]) -> String {
    problems.iter().map(|p| format!("{p}\n")).collect()
}

/// One `data` entry and where its key is.
struct Entry<'a> {
    key: &'a str,
    value: Result<&'a str, String>,
    location: Option<Location>,
}

/// What reading the entries found.
struct Reader {
    origin: String,
    problems: Vec<SettingsProblem>,
}

impl Reader {
    fn push(&mut self, level: Level, entry: Option<&Entry<'_>>, field: String, message: String) {
        self.problems.push(SettingsProblem {
            level,
            origin: self.origin.clone(),
            location: entry.and_then(|e| e.location.clone()),
            field,
            message,
        });
    }

    fn error(&mut self, entry: &Entry<'_>, message: String) {
        self.push(
            Level::Error,
            Some(entry),
            format!("data.{}", entry.key),
            message,
        );
    }
}

fn posture_action(v: &str) -> Result<PostureAction, String> {
    v.parse()
        .map_err(|_| format!("`{v}` is not a posture (expected `audit` or `block`)"))
}

fn count(v: &str) -> Result<u64, String> {
    let n: u64 = v
        .trim()
        .parse()
        .map_err(|_| format!("`{v}` is not a whole number"))?;
    if n == 0 {
        return Err("must be 1 or more".to_string());
    }
    Ok(n)
}

impl Settings {
    /// Reads the `data` of a ConfigMap from the API; `origin` names it in problems
    /// (`ConfigMap armor/armor-config`). Returns the settings and the warnings.
    pub fn from_data(
        data: &BTreeMap<String, String>,
        origin: &str,
    ) -> Result<(Self, Vec<SettingsProblem>), SettingsError> {
        let entries: Vec<Entry<'_>> = data
            .iter()
            .map(|(k, v)| Entry {
                key: k,
                value: Ok(v),
                location: None,
            })
            .collect();
        Self::read(&entries, origin.to_string(), Vec::new())
    }

    /// Reads a ConfigMap manifest (`kind: ConfigMap` with a `data` mapping) from `text`;
    /// `file` names it in problems, each with its line and column.
    pub fn parse_manifest(
        text: &str,
        file: &str,
    ) -> Result<(Self, Vec<SettingsProblem>), SettingsError> {
        let name: Arc<str> = Arc::from(file);
        let at = |line: usize, column: usize| Some(Location::new(name.clone(), line, column));
        let problem = |location: Option<Location>, field: &str, message: String| SettingsError {
            problems: vec![SettingsProblem {
                level: Level::Error,
                origin: file.to_string(),
                location,
                field: field.to_string(),
                message,
            }],
        };
        let docs = crate::yaml::load(text, &LoadLimits::default())
            .map_err(|e| problem(at(e.pos.line, e.pos.column), "", e.message))?;
        let [doc] = docs.as_slice() else {
            return Err(problem(
                at(1, 1),
                "",
                format!("expected one document, found {}", docs.len()),
            ));
        };
        let NodeKind::Map(root) = &*doc.root.kind else {
            return Err(problem(
                at(doc.root.pos.line, doc.root.pos.column),
                "",
                "expected a mapping".to_string(),
            ));
        };
        let field = |key: &str| {
            root.iter()
                .find(|(k, _)| matches!(&*k.kind, NodeKind::Scalar { value, .. } if value == key))
        };
        match field("kind") {
            Some((_, v)) if matches!(&*v.kind, NodeKind::Scalar { value, .. } if value == "ConfigMap") =>
                {}
            Some((_, v)) => {
                return Err(problem(
                    at(v.pos.line, v.pos.column),
                    "kind",
                    "expected `ConfigMap`".to_string(),
                ));
            }
            None => {
                return Err(problem(
                    at(doc.root.pos.line, doc.root.pos.column),
                    "kind",
                    "missing (expected `ConfigMap`)".to_string(),
                ));
            }
        }
        let mut entries = Vec::new();
        if let Some((_, data)) = field("data") {
            let NodeKind::Map(pairs) = &*data.kind else {
                return Err(problem(
                    at(data.pos.line, data.pos.column),
                    "data",
                    "expected a mapping of strings".to_string(),
                ));
            };
            for (k, v) in pairs {
                let NodeKind::Scalar { value: key, .. } = &*k.kind else {
                    return Err(problem(
                        at(k.pos.line, k.pos.column),
                        "data",
                        "keys must be strings".to_string(),
                    ));
                };
                let value = match &*v.kind {
                    NodeKind::Scalar { value, .. } => Ok(value.as_str()),
                    _ => Err("expected a string".to_string()),
                };
                entries.push(Entry {
                    key,
                    value,
                    location: at(k.pos.line, k.pos.column),
                });
            }
        }
        Self::read(&entries, file.to_string(), Vec::new())
    }

    fn read(
        entries: &[Entry<'_>],
        origin: String,
        problems: Vec<SettingsProblem>,
    ) -> Result<(Self, Vec<SettingsProblem>), SettingsError> {
        let mut r = Reader { origin, problems };
        let mut s = Self::default();
        let mut throttling = true;
        let mut seen: Vec<&str> = Vec::new();
        for e in entries {
            if seen.contains(&e.key) {
                r.error(e, "duplicate key".to_string());
                continue;
            }
            seen.push(e.key);
            let v = match &e.value {
                Ok(v) => *v,
                Err(m) => {
                    r.error(e, m.clone());
                    continue;
                }
            };
            let taken: Result<(), String> = match e.key {
                "cluster" if v.trim().is_empty() => Err("must not be empty".to_string()),
                "cluster" => {
                    s.cluster_name = Some(v.trim().to_string());
                    Ok(())
                }
                "defaultFilePosture" => posture_action(v).map(|a| s.container_posture.file = a),
                "defaultNetworkPosture" => {
                    posture_action(v).map(|a| s.container_posture.network = a)
                }
                "defaultCapabilitiesPosture" => {
                    posture_action(v).map(|a| s.container_posture.capabilities = a)
                }
                "hostDefaultFilePosture" => posture_action(v).map(|a| s.host_posture.file = a),
                "hostDefaultNetworkPosture" => {
                    posture_action(v).map(|a| s.host_posture.network = a)
                }
                "hostDefaultCapabilitiesPosture" => {
                    posture_action(v).map(|a| s.host_posture.capabilities = a)
                }
                "visibility" | "hostVisibility" => match v.parse::<Visibility>() {
                    Ok(vis) if e.key == "visibility" => {
                        s.container_visibility = vis;
                        Ok(())
                    }
                    Ok(vis) => {
                        s.host_visibility = vis;
                        Ok(())
                    }
                    Err(err) => Err(err.to_string()),
                },
                "alertThrottling" => match v.trim().to_ascii_lowercase().as_str() {
                    "true" => Ok(()),
                    "false" => {
                        throttling = false;
                        Ok(())
                    }
                    _ => Err(format!("`{v}` is not `true` or `false`")),
                },
                "maxAlertPerSec" => count(v).and_then(|n| {
                    s.max_alerts_per_sec =
                        u32::try_from(n).map_err(|_| format!("`{v}` is too large"))?;
                    Ok(())
                }),
                "throttleSec" => count(v).map(|n| s.throttle = Duration::from_secs(n)),
                other => {
                    r.push(
                        Level::Warning,
                        Some(e),
                        format!("data.{other}"),
                        "not an armor setting; ignored".to_string(),
                    );
                    Ok(())
                }
            };
            if let Err(m) = taken {
                r.error(e, m);
            }
        }
        if !throttling {
            s.max_alerts_per_sec = 0;
        }
        if r.problems.iter().any(|p| p.level == Level::Error) {
            return Err(SettingsError {
                problems: r.problems,
            });
        }
        Ok((s, r.problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_read_and_unknown_keys_are_warnings() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: armor-config, namespace: armor}\ndata:\n  cluster: prod\n  defaultFilePosture: Block\n  defaultNetworkPosture: audit\n  defaultCapabilitiesPosture: block\n  hostDefaultFilePosture: block\n  visibility: process,file\n  hostVisibility: none\n  alertThrottling: \"true\"\n  maxAlertPerSec: \"5\"\n  throttleSec: \"7\"\n  gRPC: \"32767\"\n";
        let (s, warnings) = Settings::parse_manifest(text, "config.yaml").unwrap();
        assert_eq!(s.cluster_name.as_deref(), Some("prod"));
        assert_eq!(s.container_posture.file, PostureAction::Block);
        assert_eq!(s.container_posture.network, PostureAction::Audit);
        assert_eq!(s.container_posture.capabilities, PostureAction::Block);
        assert_eq!(s.host_posture.file, PostureAction::Block);
        assert_eq!(s.host_posture.network, PostureAction::Audit);
        assert_eq!(s.container_visibility, "process,file".parse().unwrap());
        assert_eq!(s.host_visibility, Visibility::none());
        assert_eq!((s.max_alerts_per_sec, s.throttle.as_secs()), (5, 7));
        let w: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            w,
            ["config.yaml:15:3: warning: data.gRPC: not an armor setting; ignored"]
        );
    }

    #[test]
    fn every_bad_value_is_reported_with_its_position_and_nothing_is_taken() {
        let text = "kind: ConfigMap\ndata:\n  defaultFilePosture: blok\n  visibility: process,disk\n  alertThrottling: maybe\n  maxAlertPerSec: \"99999999999\"\n  cluster: \"\"\n  throttleSec: [1]\n";
        let err = Settings::parse_manifest(text, "c.yaml").unwrap_err();
        let lines: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 6, "{lines:?}");
        assert!(
            lines[0].starts_with("c.yaml:3:3: data.defaultFilePosture: `blok` is not a posture")
        );
        assert!(
            lines[1].starts_with("c.yaml:4:3: data.visibility: "),
            "{lines:?}"
        );
        assert!(lines[2].starts_with("c.yaml:5:3: data.alertThrottling: `maybe`"));
        assert_eq!(
            lines[3],
            "c.yaml:6:3: data.maxAlertPerSec: `99999999999` is too large"
        );
        assert_eq!(lines[4], "c.yaml:7:3: data.cluster: must not be empty");
        assert_eq!(lines[5], "c.yaml:8:3: data.throttleSec: expected a string");
        let err = Settings::parse_manifest("kind: Secret\n", "s.yaml").unwrap_err();
        assert_eq!(
            err.problems[0].to_string(),
            "s.yaml:1:7: kind: expected `ConfigMap`"
        );
    }

    #[test]
    fn throttling_off_means_no_limit_and_an_empty_map_is_the_defaults() {
        let data = BTreeMap::from([("alertThrottling".to_string(), "FALSE".to_string())]);
        let (s, w) = Settings::from_data(&data, "ConfigMap a/b").unwrap();
        assert_eq!(s.max_alerts_per_sec, 0);
        assert!(w.is_empty());
        let (s, _) = Settings::from_data(&BTreeMap::new(), "ConfigMap a/b").unwrap();
        assert_eq!(s, Settings::default());
    }
}
