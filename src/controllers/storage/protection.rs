//! The protection controller, as upstream's `pvc-protection` and `pv-protection`:
//! a claim being deleted keeps its `kubernetes.io/pvc-protection` finalizer while a
//! pod that is not finished (not `Succeeded`/`Failed`) uses it (through a
//! `persistentVolumeClaim` volume, or the claim an `ephemeral` volume makes), and a
//! volume being deleted keeps `kubernetes.io/pv-protection` while it is `Bound`.
//! The admission plugin adds both finalizers on create.
//!
//! May call: the API (claims, volumes, pods).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use super::binder::phase_of_volume;
use super::provisioner::remove_finalizer;
use crate::controllers::{cache, Context};

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
const TICK: Duration = Duration::from_millis(500);

/// Whether `pod` (in the claim's namespace) still needs the claim `name`.
pub fn pod_uses_claim(pod: &Pod, name: &str) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    let pod_name = pod.name_any();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == name)
                || (v.ephemeral.is_some() && format!("{pod_name}-{}", v.name) == name)
        })
}

pub fn claim_in_use(claim: &PersistentVolumeClaim, pods: &[Arc<Pod>]) -> bool {
    let (ns, name) = (claim.namespace(), claim.name_any());
    pods.iter()
        .any(|p| p.namespace() == ns && pod_uses_claim(p, &name))
}

fn waits(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    finalizer: &str,
) -> bool {
    meta.deletion_timestamp.is_some() && meta.finalizers.iter().flatten().any(|f| f == finalizer)
}

pub async fn run(ctx: Arc<Context>) {
    let claims = cache(Api::<PersistentVolumeClaim>::all(ctx.client.clone()));
    let volumes = cache(Api::<PersistentVolume>::all(ctx.client.clone()));
    let pods = cache(Api::<Pod>::all(ctx.client.clone()));
    let _ = claims.wait_until_ready().await;
    let _ = volumes.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    let mut ticker = tokio::time::interval(TICK);
    loop {
        ticker.tick().await;
        let all_pods = pods.state();
        for claim in claims.state() {
            if !waits(&claim.metadata, PVC_PROTECTION) || claim_in_use(&claim, &all_pods) {
                continue;
            }
            if let Err(error) = release_claim(&ctx, &claim).await {
                tracing::debug!(claim = %claim.name_any(), %error, "releasing a claim failed; retrying");
            }
        }
        for volume in volumes.state() {
            if !waits(&volume.metadata, PV_PROTECTION) || phase_of_volume(&volume) == "Bound" {
                continue;
            }
            let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
            if let Err(error) = remove_finalizer(&api, volume.as_ref(), PV_PROTECTION).await {
                tracing::debug!(volume = %volume.name_any(), %error, "releasing a volume failed; retrying");
            }
        }
    }
}

/// The pod cache may lag behind a pod just created: ask the API before letting go.
async fn release_claim(ctx: &Context, claim: &PersistentVolumeClaim) -> kube::Result<()> {
    let ns = claim.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let live: Vec<Arc<Pod>> = pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(Arc::new)
        .collect();
    if claim_in_use(claim, &live) {
        return Ok(());
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    remove_finalizer(&api, claim, PVC_PROTECTION).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, phase: &str, volumes: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"},
                "spec": {"containers": [], "volumes": volumes}, "status": {"phase": phase}}))
            .unwrap(),
        )
    }

    #[test]
    fn only_unfinished_pods_of_the_namespace_hold_a_claim() {
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "default"}}))
        .unwrap();
        let uses = json!([{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]);
        assert!(claim_in_use(&claim, &[pod("a", "Running", uses.clone())]));
        assert!(claim_in_use(&claim, &[pod("a", "Pending", uses.clone())]));
        assert!(!claim_in_use(
            &claim,
            &[pod("a", "Succeeded", uses.clone())]
        ));
        assert!(!claim_in_use(
            &claim,
            &[pod("a", "Running", json!([{"name": "v", "emptyDir": {}}]))]
        ));
        let eph = json!([{"name": "data", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]);
        let other: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "web-data", "namespace": "default"}}))
        .unwrap();
        assert!(claim_in_use(&other, &[pod("web", "Running", eph)]));
    }
}
