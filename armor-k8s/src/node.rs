//! What one node's agent follows besides policies and pods: the settings ConfigMap
//! ([`armor_core::settings`]), the namespaces' KubeArmor annotations (postures and visibility)
//! and its own node's labels (which host policies select by), as a pure reducer
//! ([`NodeState::apply`]) that says when the node's settings ([`NodeSettings`]) changed.
//!
//! The settings in force are the last valid ConfigMap's: one with an error is reported and
//! not taken (the previous stay); a deleted or absent ConfigMap means the defaults. Only the
//! annotations KubeArmor defines for namespaces are kept, so a namespace's other annotations
//! changing changes nothing.
//!
//! ```
//! use armor_k8s::node::{NodeInput, NodeState};
//! use k8s_openapi::api::core::v1::Namespace;
//! use kube::runtime::watcher::Event;
//!
//! let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": "shop",
//!     "annotations": {"kubearmor-file-posture": "block", "owner": "team-a"}}})).unwrap();
//! let mut state = NodeState::new("ConfigMap armor/armor-config");
//! let out = state.apply(NodeInput::Namespace(Event::Apply(ns)));
//! let settings = out.settings.expect("the namespace's posture changed the settings");
//! assert_eq!(settings.namespace_annotations["shop"].len(), 1);
//! ```

use std::collections::BTreeMap;

use armor_core::posture::{
    CAPABILITIES_POSTURE_ANNOTATION, FILE_POSTURE_ANNOTATION, NETWORK_POSTURE_ANNOTATION,
    VISIBILITY_ANNOTATION,
};
use armor_core::settings::Settings;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use kube::ResourceExt;
use kube::runtime::watcher::Event;

/// The namespace annotations armor reads.
pub const NAMESPACE_ANNOTATIONS: [&str; 4] = [
    FILE_POSTURE_ANNOTATION,
    NETWORK_POSTURE_ANNOTATION,
    CAPABILITIES_POSTURE_ANNOTATION,
    VISIBILITY_ANNOTATION,
];

/// Everything cluster-wide a node's workloads' rules and records depend on, besides policies
/// and pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeSettings {
    /// The ConfigMap's settings (the defaults without one).
    pub settings: Settings,
    /// The node's labels (host policies' `nodeSelector`).
    pub node_labels: BTreeMap<String, String>,
    /// The KubeArmor annotations of each namespace that has one.
    pub namespace_annotations: BTreeMap<String, BTreeMap<String, String>>,
}

/// One event of the three watches.
#[derive(Debug)]
#[non_exhaustive]
pub enum NodeInput {
    /// The settings ConfigMap (watched by name).
    Config(Event<ConfigMap>),
    /// A namespace.
    Namespace(Event<Namespace>),
    /// This node (watched by name; boxed: a node object is large).
    Node(Box<Event<Node>>),
}

/// What an input changed.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct NodeOutput {
    /// The node's settings, when they changed.
    pub settings: Option<NodeSettings>,
    /// What to log: a ConfigMap not taken (every problem with its field), warnings.
    pub problems: Vec<String>,
}

/// The node's settings as the watches report them; a pure reducer.
#[derive(Debug)]
pub struct NodeState {
    origin: String,
    current: NodeSettings,
    /// Namespaces listed so far by a re-list under way.
    relisting: Option<BTreeMap<String, BTreeMap<String, String>>>,
    /// The ConfigMap's `data` seen last (a re-list of the same data changes nothing).
    config_data: Option<BTreeMap<String, String>>,
    /// Whether the ConfigMap and the node were listed by the (re-)list under way: one not
    /// listed is gone (deleted while the watch was away).
    config_listed: bool,
    node_listed: bool,
}

/// The KubeArmor annotations of `ns`.
fn kubearmor_annotations(ns: &Namespace) -> BTreeMap<String, String> {
    ns.annotations()
        .iter()
        .filter(|(k, _)| NAMESPACE_ANNOTATIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl NodeState {
    /// The defaults, no namespace annotation, no node label; `origin` names the ConfigMap in
    /// problems (`ConfigMap armor/armor-config`).
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            current: NodeSettings::default(),
            relisting: None,
            config_data: None,
            config_listed: false,
            node_listed: false,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &NodeSettings {
        &self.current
    }

    /// Takes one event.
    pub fn apply(&mut self, input: NodeInput) -> NodeOutput {
        let before = self.current.clone();
        let mut out = NodeOutput::default();
        match input {
            NodeInput::Config(ev) => match ev {
                Event::Apply(cm) => self.config(Some(cm.data.unwrap_or_default()), &mut out),
                Event::InitApply(cm) => {
                    self.config_listed = true;
                    self.config(Some(cm.data.unwrap_or_default()), &mut out);
                }
                Event::Delete(_) => self.config(None, &mut out),
                Event::Init => self.config_listed = false,
                // The ConfigMap not listed (absent, or deleted while the watch was away): the
                // defaults.
                Event::InitDone => {
                    if !self.config_listed {
                        self.config(None, &mut out);
                    }
                }
            },
            NodeInput::Namespace(ev) => self.namespace(ev),
            NodeInput::Node(ev) => match *ev {
                Event::Apply(n) => self.current.node_labels = n.labels().clone(),
                Event::InitApply(n) => {
                    self.node_listed = true;
                    self.current.node_labels = n.labels().clone();
                }
                Event::Delete(_) => self.current.node_labels.clear(),
                Event::Init => self.node_listed = false,
                Event::InitDone => {
                    if !self.node_listed {
                        self.current.node_labels.clear();
                    }
                }
            },
        }
        if self.current != before {
            out.settings = Some(self.current.clone());
        }
        out
    }

    /// The ConfigMap's data now (`None`: absent): taken when valid.
    fn config(&mut self, data: Option<BTreeMap<String, String>>, out: &mut NodeOutput) {
        let Some(data) = data else {
            if self.config_data.take().is_some() || self.current.settings != Settings::default() {
                out.problems.push(format!(
                    "{} is gone: the default settings apply",
                    self.origin
                ));
            }
            self.current.settings = Settings::default();
            return;
        };
        if self.config_data.as_ref() == Some(&data) {
            return;
        }
        match Settings::from_data(&data, &self.origin) {
            Ok((settings, warnings)) => {
                out.problems
                    .extend(warnings.iter().map(ToString::to_string));
                self.current.settings = settings;
            }
            Err(e) => out.problems.push(format!(
                "{} not taken, the previous settings stay: {}",
                self.origin,
                e.problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
        }
        self.config_data = Some(data);
    }

    fn namespace(&mut self, ev: Event<Namespace>) {
        let annotations = &mut self.current.namespace_annotations;
        match ev {
            Event::Apply(ns) => {
                let a = kubearmor_annotations(&ns);
                if a.is_empty() {
                    annotations.remove(&ns.name_any());
                } else {
                    annotations.insert(ns.name_any(), a);
                }
            }
            Event::Delete(ns) => {
                annotations.remove(&ns.name_any());
            }
            Event::Init => self.relisting = Some(BTreeMap::new()),
            Event::InitApply(ns) => {
                let a = kubearmor_annotations(&ns);
                match self.relisting.as_mut() {
                    Some(list) if !a.is_empty() => {
                        list.insert(ns.name_any(), a);
                    }
                    Some(_) => {}
                    None if !a.is_empty() => {
                        annotations.insert(ns.name_any(), a);
                    }
                    None => {
                        annotations.remove(&ns.name_any());
                    }
                }
            }
            Event::InitDone => {
                if let Some(list) = self.relisting.take() {
                    *annotations = list;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
    use super::*;

    fn cm(data: &[(&str, &str)]) -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "armor-config", "namespace": "armor"},
            "data": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        }))
        .unwrap()
    }

    fn ns(name: &str, annotations: &[(&str, &str)]) -> Namespace {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "annotations": annotations.iter()
                .map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
        }))
        .unwrap()
    }

    #[test]
    fn a_bad_config_keeps_the_previous_and_a_deleted_one_means_the_defaults() {
        let mut s = NodeState::new("ConfigMap armor/armor-config");
        let out = s.apply(NodeInput::Config(Event::Apply(cm(&[("cluster", "prod")]))));
        assert_eq!(
            out.settings.unwrap().settings.cluster_name.as_deref(),
            Some("prod")
        );
        let out = s.apply(NodeInput::Config(Event::Apply(cm(&[
            ("cluster", "prod"),
            ("defaultFilePosture", "blok"),
        ]))));
        assert!(out.settings.is_none());
        assert_eq!(
            out.problems,
            [
                "ConfigMap armor/armor-config not taken, the previous settings stay: \
              ConfigMap armor/armor-config: data.defaultFilePosture: `blok` is not a posture \
              (expected `audit` or `block`)"
            ]
        );
        assert_eq!(s.settings().settings.cluster_name.as_deref(), Some("prod"));
        // The same object listed again: nothing new, nothing reported twice.
        let out = s.apply(NodeInput::Config(Event::InitApply(cm(&[
            ("cluster", "prod"),
            ("defaultFilePosture", "blok"),
        ]))));
        assert!(out.settings.is_none() && out.problems.is_empty());
        let out = s.apply(NodeInput::Config(Event::Delete(cm(&[]))));
        assert_eq!(out.settings.unwrap().settings, Settings::default());
        // Deleted while the watch was away: the re-list that does not list it means the
        // defaults.
        s.apply(NodeInput::Config(Event::Apply(cm(&[("cluster", "prod")]))));
        s.apply(NodeInput::Config(Event::Init));
        let out = s.apply(NodeInput::Config(Event::InitDone));
        assert_eq!(out.settings.unwrap().settings, Settings::default());
    }

    #[test]
    fn only_kubearmor_annotations_count_and_a_relist_drops_what_is_gone() {
        let mut s = NodeState::new("c");
        let out = s.apply(NodeInput::Namespace(Event::Apply(ns(
            "a",
            &[("team", "x")],
        ))));
        assert!(out.settings.is_none());
        let out = s.apply(NodeInput::Namespace(Event::Apply(ns(
            "b",
            &[(VISIBILITY_ANNOTATION, "process")],
        ))));
        assert!(out.settings.is_some());
        s.apply(NodeInput::Namespace(Event::Init));
        s.apply(NodeInput::Namespace(Event::InitApply(ns(
            "c",
            &[(FILE_POSTURE_ANNOTATION, "block")],
        ))));
        let out = s.apply(NodeInput::Namespace(Event::InitDone));
        let got = out.settings.unwrap().namespace_annotations;
        assert_eq!(got.keys().collect::<Vec<_>>(), ["c"]);
    }
}
