#![doc = include_str!("../README.md")]
//!
//! ## API themes
//!
//! * [`crd`]: the three custom resources (`KubeArmorPolicy`, `KubeArmorClusterPolicy`,
//!   `KubeArmorHostPolicy`) derived from armor-core's CRD types ([`armor_core::crd`]), and their
//!   CustomResourceDefinitions ([`crd::crds`], [`crd::crds_yaml`]: what `armorctl crd` prints and
//!   `deploy/crds.yaml` holds).
//! * [`node`]: what else a node's agent follows, as a pure reducer: the settings ConfigMap
//!   (validated, problems located by field), the namespaces' posture and visibility
//!   annotations, the node's labels.
//! * [`pods`]: the pods of this node as a pure reducer over the pod watch: every container with a
//!   runtime id (regular, init, ephemeral) and the identity its alerts carry (pod labels, owner).
//! * [`policies`]: the cluster's policy objects as a pure reducer over the three policy watches:
//!   each validated by armor-core (errors with field paths), the valid ones compiled together,
//!   effects to put them in force and to write each object's status.
//! * [`watch`]: the thin plumbing: the three policy watches merged into the index, compiled
//!   policies handed over, statuses written ([`watch::follow_policies`]); and everything a
//!   node's agent follows, merged ([`watch::follow_node`]).
//! * [`yaml`]: a small YAML writer for JSON values (the CRDs as `kubectl apply` files).
#![forbid(unsafe_code)]

pub mod crd;
pub mod node;
pub mod pods;
pub mod policies;
pub mod watch;
pub mod yaml;
