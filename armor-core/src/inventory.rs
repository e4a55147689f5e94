//! The service inventory: which systemd services of a host are workloads of their own, with the
//! namespace, name and labels policies select them by.
//!
//! The kernel knows a service only as a cgroup (`/system.slice/nginx.service`); Kubernetes-style
//! identity has to come from somewhere, and for services it comes from this file:
//!
//! ```yaml
//! services:
//!   - unit: nginx.service        # required: the systemd unit (its cgroup is the workload)
//!     namespace: web             # optional, default `default`
//!     name: nginx                # optional, default the unit without `.service`
//!     labels: {app: nginx, tier: edge}
//!     annotations:               # optional: kubearmor-visibility, kubearmor-*-posture
//!       kubearmor-visibility: process,file
//! ```
//!
//! A listed service is a [`Workload::Container`] in every respect that decides anything (see
//! [the manual](crate::manual::semantics), "Services"): `KubeArmorPolicy` and
//! `KubeArmorClusterPolicy` select it by namespace and labels, host policies no longer apply to
//! its processes, posture and visibility come from its annotations. Services that are not listed
//! stay part of the host.
//!
//! Loading follows the policy loader's rules: every problem is reported at once with its
//! `file:line:col` and field path, and an inventory with an error is rejected as a whole.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::diag::{Diagnostic, Diagnostics, Level, LoadError, Location};
use crate::parse::{Ctx, MapReader, NAMESPACE_RE, is_null, join, list, string, string_map};
use crate::workload::{Container, Workload};
use crate::yaml::LoadLimits;

/// The namespace of a service whose entry names none (Kubernetes' own default).
pub const DEFAULT_NAMESPACE: &str = "default";

/// One service of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Service {
    /// The systemd unit (`nginx.service`).
    pub unit: String,
    /// The namespace policies select it in.
    pub namespace: String,
    /// Its name (the `ContainerName` of its telemetry).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its annotations (visibility and posture, as on a pod).
    pub annotations: BTreeMap<String, String>,
    /// Where its entry starts.
    pub location: Location,
}

impl Service {
    /// The workload policies see: a container-kind workload with the service's identity.
    pub fn workload(&self) -> Workload {
        let mut c = Container::new(self.namespace.clone(), self.name.clone());
        c.labels.clone_from(&self.labels);
        c.annotations.clone_from(&self.annotations);
        Workload::Container(c)
    }
}

/// The services of a host, by unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inventory {
    services: Vec<Service>,
    warnings: Diagnostics,
}

/// Whether `unit` names a service unit: `NAME.service`, NAME without `/` or whitespace.
fn valid_unit(unit: &str) -> bool {
    unit.strip_suffix(".service").is_some_and(|stem| {
        !stem.is_empty() && !stem.contains('/') && !stem.chars().any(char::is_whitespace)
    })
}

impl Inventory {
    /// An inventory without services.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads an inventory from `text` (`file` names it in diagnostics).
    pub fn parse(text: &str, file: &str) -> Result<Self, LoadError> {
        let file: Arc<str> = Arc::from(file);
        let mut diags = Diagnostics::new();
        let mut services: Vec<Service> = Vec::new();
        match crate::yaml::load(text, &LoadLimits::default()) {
            Err(e) => diags.push(Diagnostic {
                level: Level::Error,
                location: e.pos.location(&file),
                policy: None,
                field: String::new(),
                message: e.message,
            }),
            Ok(docs) => {
                let mut ctx = Ctx {
                    file: file.clone(),
                    policy: None,
                    diags: &mut diags,
                };
                if let Some(d) = docs.get(1) {
                    ctx.err(d.root.pos, "", "an inventory is one YAML document");
                }
                for doc in docs.iter().take(1) {
                    if is_null(&doc.root) {
                        continue;
                    }
                    let Some(mut top) = MapReader::new(&mut ctx, &doc.root, "") else {
                        continue;
                    };
                    if let Some((node, field)) = top.take("services") {
                        for (i, item) in list(&mut ctx, node, &field).iter().enumerate() {
                            let f = format!("{field}[{i}]");
                            if let Some(s) = service(&mut ctx, item, &f, &services) {
                                services.push(s);
                            }
                        }
                    }
                    top.finish(&mut ctx);
                }
            }
        }
        diags.sort();
        if diags.has_errors() {
            return Err(LoadError { diagnostics: diags });
        }
        Ok(Self {
            services,
            warnings: diags,
        })
    }

    /// Reads the inventory file at `path`; an unreadable file is an error at its line 1.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &name),
            Err(e) => {
                let mut diagnostics = Diagnostics::new();
                diagnostics.push(Diagnostic {
                    level: Level::Error,
                    location: Location::new(Arc::from(name.as_str()), 1, 1),
                    policy: None,
                    field: String::new(),
                    message: format!("cannot read the inventory: {e}"),
                });
                Err(LoadError { diagnostics })
            }
        }
    }

    /// The services, in file order.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The service of `unit` (`nginx.service`).
    pub fn get(&self, unit: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.unit == unit)
    }

    /// Warnings found while loading (unknown fields).
    pub fn warnings(&self) -> &Diagnostics {
        &self.warnings
    }
}

/// One `services[i]` entry; `seen` are the entries accepted before it.
fn service(
    ctx: &mut Ctx<'_>,
    node: &crate::yaml::Node,
    field: &str,
    seen: &[Service],
) -> Option<Service> {
    let mut m = MapReader::new(ctx, node, field)?;
    let mut ok = true;
    let unit = match m.take("unit") {
        Some((n, f)) => match string(ctx, n, &f) {
            Some(u) if valid_unit(&u) => {
                if let Some(first) = seen.iter().find(|s| s.unit == u) {
                    ctx.err(
                        n.pos,
                        &f,
                        format!(
                            "`{u}` is listed twice (first at line {})",
                            first.location.line
                        ),
                    );
                    ok = false;
                }
                Some(u)
            }
            Some(u) => {
                ctx.err(
                    n.pos,
                    &f,
                    format!("`{u}` is not a service unit (expected `NAME.service`)"),
                );
                None
            }
            None => None,
        },
        None => {
            ctx.err(
                node.pos,
                &join(field, "unit"),
                "missing required field `unit`",
            );
            None
        }
    };
    let namespace = match m.take("namespace") {
        Some((n, f)) if !is_null(n) => match string(ctx, n, &f) {
            Some(ns) if NAMESPACE_RE.is_match(&ns) && ns.len() <= 63 => Some(ns),
            Some(ns) => {
                ctx.err(n.pos, &f, format!("`{ns}` is not a valid namespace name"));
                None
            }
            None => None,
        },
        _ => Some(DEFAULT_NAMESPACE.to_string()),
    };
    let name = match m.take("name") {
        Some((n, f)) if !is_null(n) => match string(ctx, n, &f) {
            Some(s) if !s.is_empty() && !s.chars().any(char::is_control) => Some(s),
            Some(_) => {
                ctx.err(
                    n.pos,
                    &f,
                    "must be a non-empty name without control characters",
                );
                None
            }
            None => None,
        },
        _ => unit
            .as_deref()
            .and_then(|u| u.strip_suffix(".service"))
            .map(str::to_string),
    };
    let labels = m
        .take("labels")
        .map(|(n, f)| string_map(ctx, n, &f))
        .unwrap_or_default();
    let annotations = m
        .take("annotations")
        .map(|(n, f)| string_map(ctx, n, &f))
        .unwrap_or_default();
    m.finish(ctx);
    if !ok {
        return None;
    }
    Some(Service {
        unit: unit?,
        namespace: namespace?,
        name: name?,
        labels,
        annotations,
        location: node.pos.location(&ctx.file),
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a failure is a test failure"
)]
mod tests {
    use super::*;

    #[test]
    fn entries_with_defaults() {
        let inv = Inventory::parse(
            "services:\n\
             - unit: nginx.service\n  namespace: web\n  labels: {app: nginx}\n\
             - unit: cron.service\n",
            "inv.yaml",
        )
        .unwrap();
        let nginx = inv.get("nginx.service").unwrap();
        assert_eq!(
            (nginx.namespace.as_str(), nginx.name.as_str()),
            ("web", "nginx")
        );
        assert_eq!(nginx.labels.get("app").map(String::as_str), Some("nginx"));
        assert_eq!(nginx.location.line, 2);
        let cron = inv.get("cron.service").unwrap();
        assert_eq!(
            (cron.namespace.as_str(), cron.name.as_str()),
            ("default", "cron")
        );
        let Workload::Container(c) = nginx.workload() else {
            panic!("not a container-kind workload")
        };
        assert_eq!(c.namespace, "web");
        assert_eq!(c.labels, nginx.labels);
        assert!(
            Inventory::parse("", "empty.yaml")
                .unwrap()
                .services()
                .is_empty()
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let text = "services:\n\
                    - unit: nginx\n\
                    - namespace: Web\n  labels: [a]\n\
                    - unit: db.service\n  colour: blue\n\
                    - unit: db.service\n";
        let e = Inventory::parse(text, "inv.yaml").unwrap_err();
        let all = e.diagnostics.to_string();
        for want in [
            "inv.yaml:2:9: services[0].unit: `nginx` is not a service unit (expected `NAME.service`)",
            "inv.yaml:3:3: services[1].unit: missing required field `unit`",
            "inv.yaml:3:14: services[1].namespace: `Web` is not a valid namespace name",
            "inv.yaml:4:11: services[1].labels: expected a mapping, found a list",
            "inv.yaml:6:3: warning: services[2].colour: unknown field `colour` is ignored",
            "inv.yaml:7:9: services[3].unit: `db.service` is listed twice (first at line 5)",
        ] {
            assert!(all.contains(want), "missing `{want}` in:\n{all}");
        }
        assert_eq!(e.diagnostics.errors().count(), 5, "{all}");
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let e = Inventory::load(Path::new("/nonexistent/armor-inventory.yaml")).unwrap_err();
        assert!(
            e.to_string()
                .contains("/nonexistent/armor-inventory.yaml:1:1: cannot read the inventory"),
            "{e}"
        );
    }
}
