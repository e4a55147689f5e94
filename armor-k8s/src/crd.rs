//! The policy custom resources: KubeArmor's group (`security.kubearmor.com`), version (`v1`),
//! kinds, plural and short names, scope, `status` subresource and printer columns, with specs
//! that are armor-core's CRD types ([`armor_core::crd`]) — one definition of the wire shape,
//! whose JSON schema is the CRDs' structural schema.
//!
//! ```
//! use kube::CustomResourceExt;
//! let crd = armor_k8s::crd::KubeArmorPolicy::crd();
//! assert_eq!(crd.spec.names.short_names, Some(vec!["ksp".to_string()]));
//! ```

#![allow(
    clippy::exhaustive_structs,
    reason = "the resource types the CustomResource derive generates (metadata, spec, status) are \
              kube's plain data, as for every kube-rs resource; the specs are non-exhaustive"
)]

use armor_core::crd::{ClusterPolicySpec, HostPolicySpec, PolicySpec, PolicyStatus};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of the policy kinds.
pub const GROUP: &str = "security.kubearmor.com";
/// Their version.
pub const VERSION: &str = "v1";

/// A `KubeArmorPolicy`: rules for the containers of its namespace that its selector picks.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "security.kubearmor.com",
    version = "v1",
    kind = "KubeArmorPolicy",
    doc = "A KubeArmorPolicy: security rules for the containers of its namespace that its selector picks",
    plural = "kubearmorpolicies",
    singular = "kubearmorpolicy",
    shortname = "ksp",
    namespaced,
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action","priority":10}"#,
    printcolumn = r#"{"name":"Selector","type":"string","jsonPath":".spec.selector.matchLabels","priority":10}"#
)]
#[non_exhaustive]
pub struct KubeArmorPolicySpec {
    /// The spec, as armor-core defines it.
    #[serde(flatten)]
    pub spec: PolicySpec,
}

/// A `KubeArmorClusterPolicy`: rules for the containers of the namespaces and labels its
/// selector picks.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "security.kubearmor.com",
    version = "v1",
    kind = "KubeArmorClusterPolicy",
    doc = "A KubeArmorClusterPolicy: security rules for the containers of the namespaces and labels its selector picks",
    plural = "kubearmorclusterpolicies",
    singular = "kubearmorclusterpolicy",
    shortname = "csp",
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action","priority":10}"#,
    printcolumn = r#"{"name":"Selector","type":"string","jsonPath":".spec.selector.matchExpressions","priority":10}"#
)]
#[non_exhaustive]
pub struct KubeArmorClusterPolicySpec {
    /// The spec, as armor-core defines it.
    #[serde(flatten)]
    pub spec: ClusterPolicySpec,
}

/// A `KubeArmorHostPolicy`: rules for the nodes its node selector picks.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "security.kubearmor.com",
    version = "v1",
    kind = "KubeArmorHostPolicy",
    doc = "A KubeArmorHostPolicy: security rules for the nodes its node selector picks",
    plural = "kubearmorhostpolicies",
    singular = "kubearmorhostpolicy",
    shortname = "hsp",
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action","priority":10}"#,
    printcolumn = r#"{"name":"Selector","type":"string","jsonPath":".spec.nodeSelector.matchLabels","priority":10}"#
)]
#[non_exhaustive]
pub struct KubeArmorHostPolicySpec {
    /// The spec, as armor-core defines it.
    #[serde(flatten)]
    pub spec: HostPolicySpec,
}

/// The three CustomResourceDefinitions, in kind order (policy, cluster policy, host policy).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        KubeArmorPolicy::crd(),
        KubeArmorClusterPolicy::crd(),
        KubeArmorHostPolicy::crd(),
    ]
}

/// The three CRDs as one multi-document YAML file (what `armorctl crd` prints and
/// `deploy/crds.yaml` holds).
pub fn crds_yaml() -> Result<String, serde_json::Error> {
    let mut out = String::from(
        "# KubeArmor's policy CRDs (security.kubearmor.com/v1) as armor generates them from\n\
         # armor-core's CRD types: `armorctl crd` prints this file.\n",
    );
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&crate::yaml::to_string(&serde_json::to_value(&crd)?));
    }
    Ok(out)
}
