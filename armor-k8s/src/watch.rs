//! The stream plumbing around [`PolicyIndex`]: the three policy watches of a cluster, merged,
//! fed to the index, and its effects carried out — compiled policies handed to the caller,
//! statuses written on the objects. Everything that decides is the index's; this module only
//! moves events and effects.
//!
//! Watches restart on their own (kube-runtime's watcher with its default backoff): after a
//! lost connection or an API server restart they resume from the last resource version, and
//! when that version is gone (`410 Gone`) they list again; a re-list goes through the index,
//! which changes nothing for objects that did not change. While the API server is unreachable the last compiled policies stay in force.

use std::sync::Arc;

use armor_core::CompiledPolicy;
use armor_core::crd::PolicyStatus;
use armor_core::model::PolicyKind;
use futures::{Stream, StreamExt};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};

use crate::crd::{KubeArmorClusterPolicy, KubeArmorHostPolicy, KubeArmorPolicy};
use crate::policies::{PolicyEffect, PolicyEvent, PolicyIndex, PolicyRef};

/// The field manager armor's status writes carry.
pub const FIELD_MANAGER: &str = "armor";

/// Why a status write failed.
#[derive(Debug, thiserror::Error)]
#[error("status of {reference} not written")]
#[non_exhaustive]
pub struct StatusError {
    /// The object.
    pub reference: PolicyRef,
    /// What the API answered.
    #[source]
    pub source: kube::Error,
}

/// The three policy watches of `client`'s cluster as one stream of kind-erased events; a
/// watch error (the API server unreachable, a decode failure) is an `Err` item and the watch
/// goes on after a backoff.
pub fn policy_events(
    client: &Client,
) -> impl Stream<Item = Result<PolicyEvent, watcher::Error>> + Send + 'static {
    let config = watcher::Config::default;
    let ksp = watcher(Api::<KubeArmorPolicy>::all(client.clone()), config())
        .default_backoff()
        .map(|r| r.map(|e| PolicyEvent::from_watcher(PolicyKind::KubeArmorPolicy, e)));
    let csp = watcher(Api::<KubeArmorClusterPolicy>::all(client.clone()), config())
        .default_backoff()
        .map(|r| r.map(|e| PolicyEvent::from_watcher(PolicyKind::KubeArmorClusterPolicy, e)));
    let hsp = watcher(Api::<KubeArmorHostPolicy>::all(client.clone()), config())
        .default_backoff()
        .map(|r| r.map(|e| PolicyEvent::from_watcher(PolicyKind::KubeArmorHostPolicy, e)));
    futures::stream::select_all([ksp.boxed(), csp.boxed(), hsp.boxed()])
}

/// Writes `status` on the object (a merge patch of its `status` subresource).
pub async fn write_status(
    client: &Client,
    reference: &PolicyRef,
    status: &PolicyStatus,
) -> Result<(), StatusError> {
    // Both fields, `null` for an absent one: a merge patch removes only what it names.
    let patch = Patch::Merge(serde_json::json!({
        "status": { "status": status.status, "message": status.message }
    }));
    let params = PatchParams::apply(FIELD_MANAGER);
    let name = reference.name.as_str();
    let result = match (reference.kind, &reference.namespace) {
        (PolicyKind::KubeArmorPolicy, Some(ns)) => {
            Api::<KubeArmorPolicy>::namespaced(client.clone(), ns)
                .patch_status(name, &params, &patch)
                .await
                .map(drop)
        }
        (PolicyKind::KubeArmorPolicy, None) => {
            Api::<KubeArmorPolicy>::default_namespaced(client.clone())
                .patch_status(name, &params, &patch)
                .await
                .map(drop)
        }
        (PolicyKind::KubeArmorClusterPolicy, _) => {
            Api::<KubeArmorClusterPolicy>::all(client.clone())
                .patch_status(name, &params, &patch)
                .await
                .map(drop)
        }
        (_, _) => Api::<KubeArmorHostPolicy>::all(client.clone())
            .patch_status(name, &params, &patch)
            .await
            .map(drop),
    };
    result.map_err(|source| StatusError {
        reference: reference.clone(),
        source,
    })
}

/// What [`follow_policies`] reports to its caller besides the policies.
#[derive(Debug)]
#[non_exhaustive]
pub enum Report {
    /// A watch failed; it retries after a backoff (the policies in force stay).
    WatchError(watcher::Error),
    /// A status could not be written (asked again on the next event).
    Status(StatusError),
}

/// Follows the cluster's policies until the watches end (they do not, unless the client is
/// dropped): every event goes through `index`; compiled policies go to `enforce`, statuses are
/// written, problems go to `report`.
pub async fn follow_policies(
    client: Client,
    index: &mut PolicyIndex,
    mut enforce: impl FnMut(Arc<CompiledPolicy>),
    mut report: impl FnMut(Report),
) {
    let mut events = std::pin::pin!(policy_events(&client));
    while let Some(item) = events.next().await {
        let ev = match item {
            Ok(ev) => ev,
            Err(e) => {
                report(Report::WatchError(e));
                continue;
            }
        };
        for effect in index.apply(ev) {
            match effect {
                PolicyEffect::Enforce(policy) => enforce(policy),
                PolicyEffect::Status { reference, status } => {
                    if let Err(e) = write_status(&client, &reference, &status).await {
                        index.forget_status(&reference);
                        report(Report::Status(e));
                    }
                }
            }
        }
    }
}
