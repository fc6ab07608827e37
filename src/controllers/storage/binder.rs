//! The PersistentVolume controller's binding half, as upstream's `pv_controller`:
//! a pending claim binds to the smallest Available volume that matches it (class,
//! access modes, capacity, volume mode, label selector, and for `WaitForFirstConsumer`
//! classes the node the scheduler chose); a volume pre-bound to a claim through its
//! `claimRef`, or a claim naming its `volumeName`, binds to exactly that. Binding
//! writes the volume's `claimRef` first, then the claim's `volumeName` and the
//! `pv.kubernetes.io/bind-completed` / `bound-by-controller` annotations, then both
//! statuses (claim: `Bound` with the volume's capacity and access modes).
//! Phases: claims `Pending`/`Bound`/`Lost`; volumes `Available`/`Bound`/`Released`/
//! `Failed` — a volume whose claim is gone is `Released`, then kept (`Retain`),
//! deleted by its provisioner (`Delete` of a provisioned volume), or `Failed` (a
//! static volume with `Delete` or `Recycle`: nothing here can erase its data).
//! A claim without a matching volume whose class has a provisioner is annotated
//! `volume.kubernetes.io/storage-provisioner` for that provisioner; a
//! `WaitForFirstConsumer` claim waits for the scheduler's `selected-node`.
//!
//! May call: the API (claims, volumes, classes, nodes).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::*;
use crate::component::events::EventType;
use crate::controllers::{cache, Context};

const TICK: Duration = Duration::from_millis(500);

/// What a claim needs.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimAction {
    /// Bound and recorded as such.
    Nothing,
    /// Bind (or finish binding) to this volume.
    Bind(String),
    /// Wait; annotate the provisioner asked for; report why once.
    Pending {
        provisioner: Option<String>,
        event: Option<(EventType, &'static str, String)>,
    },
    /// Its volume is gone or bound elsewhere.
    Lost,
}

/// What a volume needs.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumeAction {
    Nothing,
    Phase(&'static str),
    /// Its claim seems gone: confirm with the API, then release.
    Release,
    Fail(String),
}

fn phase_of_claim(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

pub fn phase_of_volume(volume: &PersistentVolume) -> &str {
    volume
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn claim_ref_matches(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.namespace.as_deref() == claim.namespace().as_deref()
        && r.name.as_deref() == Some(claim.name_any().as_str())
        && r.uid
            .as_deref()
            .is_none_or(|uid| uid.is_empty() || Some(uid) == claim.uid().as_deref())
}

fn modes(v: Option<&Vec<String>>) -> HashSet<&str> {
    v.into_iter().flatten().map(String::as_str).collect()
}

/// Whether `volume` can serve `claim` (ignoring who it is bound to).
pub fn volume_fits(
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
    node: Option<(&str, &BTreeMap<String, String>)>,
) -> bool {
    let (Some(cs), Some(vs)) = (claim.spec.as_ref(), volume.spec.as_ref()) else {
        return false;
    };
    if volume.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let wanted = modes(cs.access_modes.as_ref());
    let offered = modes(vs.access_modes.as_ref());
    let size_ok = match (requested_bytes(claim), capacity_bytes(volume)) {
        (Some(want), Some(have)) => have >= want,
        (None, Some(_)) => true,
        _ => false,
    };
    let mode = |m: Option<&String>| m.map_or("Filesystem", String::as_str).to_string();
    let selector_ok = cs.selector.as_ref().is_none_or(|sel| {
        let labels = volume.labels();
        let by_label = sel
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v));
        let by_expr = sel.match_expressions.iter().flatten().all(|r| {
            let value = labels.get(&r.key);
            let values = r.values.as_deref().unwrap_or_default();
            match r.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => !value.is_some_and(|v| values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        });
        by_label && by_expr
    });
    let node_ok =
        node.is_none_or(|(name, labels)| affinity_admits(vs.node_affinity.as_ref(), name, labels));
    claim_class(claim) == volume_class(volume)
        && wanted.is_subset(&offered)
        && !wanted.is_empty()
        && size_ok
        && mode(cs.volume_mode.as_ref()) == mode(vs.volume_mode.as_ref())
        && selector_ok
        && node_ok
}

/// The volume a pending claim should bind to: one pre-bound to it, else the
/// smallest Available unbound one that fits (then by name).
pub fn find_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: &'a [Arc<PersistentVolume>],
    node: Option<(&str, &BTreeMap<String, String>)>,
) -> Option<&'a PersistentVolume> {
    let fitting = volumes.iter().filter(|v| volume_fits(claim, v, node));
    let mut prebound = None;
    let mut best: Option<(&PersistentVolume, f64)> = None;
    for volume in fitting {
        let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if claim_ref.is_some() {
            if claim_ref_matches(volume, claim) {
                prebound = Some(volume.as_ref());
            }
            continue;
        }
        if phase_of_volume(volume) != "Available" && phase_of_volume(volume) != "Pending" {
            continue;
        }
        let size = capacity_bytes(volume).unwrap_or(f64::MAX);
        let better = best
            .is_none_or(|(b, bs)| size < bs || (size == bs && volume.name_any() < b.name_any()));
        if better {
            best = Some((volume, size));
        }
    }
    prebound.or(best.map(|(v, _)| v))
}

/// The claim's next step.
pub fn decide_claim(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    classes: &HashMap<String, Arc<StorageClass>>,
    nodes: &HashMap<String, BTreeMap<String, String>>,
) -> ClaimAction {
    if claim.metadata.deletion_timestamp.is_some() {
        return ClaimAction::Nothing;
    }
    let completed = claim.annotations().contains_key(BIND_COMPLETED);
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if !volume_name.is_empty() {
        let Some(volume) = volumes.iter().find(|v| v.name_any() == volume_name) else {
            return if completed {
                ClaimAction::Lost
            } else {
                ClaimAction::Pending {
                    provisioner: None,
                    event: None,
                }
            };
        };
        let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        return match claim_ref {
            None => ClaimAction::Bind(volume_name),
            Some(_) if claim_ref_matches(volume, claim) => {
                let recorded = completed
                    && phase_of_claim(claim) == "Bound"
                    && claim_ref
                        .and_then(|r| r.uid.as_deref())
                        .is_some_and(|u| !u.is_empty());
                if recorded {
                    ClaimAction::Nothing
                } else {
                    ClaimAction::Bind(volume_name)
                }
            }
            Some(_) if completed => ClaimAction::Lost,
            Some(_) => ClaimAction::Pending {
                provisioner: None,
                event: Some((
                    EventType::Warning,
                    "FailedBinding",
                    "volume \"".to_string()
                        + &volume_name
                        + "\" already bound to a different claim.",
                )),
            },
        };
    }
    let class_name = claim_class(claim);
    let class = classes.get(&class_name).map(Arc::as_ref);
    let selected = claim.annotations().get(SELECTED_NODE).cloned();
    let wffc = is_wait_for_first_consumer(class);
    // A pre-bound volume binds whatever the binding mode.
    let prebound = volumes
        .iter()
        .find(|v| claim_ref_matches(v, claim) && volume_fits(claim, v, None));
    if let Some(volume) = prebound {
        return ClaimAction::Bind(volume.name_any());
    }
    if wffc && selected.is_none() {
        return ClaimAction::Pending {
            provisioner: None,
            event: Some((
                EventType::Normal,
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".into(),
            )),
        };
    }
    let no_labels = BTreeMap::new();
    let node = selected
        .as_deref()
        .filter(|_| wffc)
        .map(|n| (n, nodes.get(n).unwrap_or(&no_labels)));
    if let Some(volume) = find_match(claim, volumes, node) {
        return ClaimAction::Bind(volume.name_any());
    }
    match class {
        Some(c) if c.provisioner != "kubernetes.io/no-provisioner" => ClaimAction::Pending {
            provisioner: Some(c.provisioner.clone()),
            event: Some((
                EventType::Normal,
                "ExternalProvisioning",
                format!(
                    "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                    c.provisioner
                ),
            )),
        },
        None if !class_name.is_empty() => ClaimAction::Pending {
            provisioner: None,
            event: Some((
                EventType::Warning,
                "ProvisioningFailed",
                format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
            )),
        },
        _ => ClaimAction::Pending {
            provisioner: None,
            event: Some((
                EventType::Normal,
                "FailedBinding",
                if class_name.is_empty() {
                    "no persistent volumes available for this claim and no storage class is set".into()
                } else {
                    "no persistent volumes available for this claim".to_string()
                },
            )),
        },
    }
}

/// The volume's next step, given the claims by `namespace/name`.
pub fn decide_volume(
    volume: &PersistentVolume,
    claims: &HashMap<String, Arc<PersistentVolumeClaim>>,
) -> VolumeAction {
    if volume.metadata.deletion_timestamp.is_some() {
        return VolumeAction::Nothing;
    }
    let phase = phase_of_volume(volume);
    let Some(r) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return if phase == "Available" {
            VolumeAction::Nothing
        } else {
            VolumeAction::Phase("Available")
        };
    };
    let uid = r.uid.clone().unwrap_or_default();
    if uid.is_empty() {
        // Pre-bound by a user, waiting for its claim.
        return if phase == "Available" {
            VolumeAction::Nothing
        } else {
            VolumeAction::Phase("Available")
        };
    }
    let key = format!(
        "{}/{}",
        r.namespace.clone().unwrap_or_default(),
        r.name.clone().unwrap_or_default()
    );
    match claims.get(&key) {
        Some(claim) if claim.uid().as_deref() == Some(uid.as_str()) => {
            let points_here = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref())
                == Some(volume.name_any().as_str());
            if points_here && phase != "Bound" {
                VolumeAction::Phase("Bound")
            } else {
                VolumeAction::Nothing
            }
        }
        _ => match phase {
            "Released" => reclaim(volume),
            "Failed" => VolumeAction::Nothing,
            _ => VolumeAction::Release,
        },
    }
}

/// What a Released volume's reclaim policy asks.
fn reclaim(volume: &PersistentVolume) -> VolumeAction {
    let policy = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    let provisioned = volume.annotations().contains_key(PROVISIONED_BY);
    match policy {
        "Delete" if provisioned => VolumeAction::Nothing,
        "Delete" => VolumeAction::Fail(format!(
            "error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched",
            volume.name_any()
        )),
        "Recycle" => VolumeAction::Fail(format!(
            "no volume plugin matched name: kubernetes.io/host-path for volume \"{}\" (recycling is deprecated and not supported)",
            volume.name_any()
        )),
        _ => VolumeAction::Nothing,
    }
}

pub async fn run(ctx: Arc<Context>) {
    let claims = cache(Api::<PersistentVolumeClaim>::all(ctx.client.clone()));
    let volumes = cache(Api::<PersistentVolume>::all(ctx.client.clone()));
    let classes = cache(Api::<StorageClass>::all(ctx.client.clone()));
    let nodes = cache(Api::<Node>::all(ctx.client.clone()));
    let _ = claims.wait_until_ready().await;
    let _ = volumes.wait_until_ready().await;
    let _ = classes.wait_until_ready().await;
    let _ = nodes.wait_until_ready().await;
    let mut reported: HashSet<(String, &'static str)> = HashSet::new();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        ticker.tick().await;
        let all_volumes = volumes.state();
        let class_map: HashMap<String, Arc<StorageClass>> = classes
            .state()
            .into_iter()
            .map(|c| (c.name_any(), c))
            .collect();
        let node_labels: HashMap<String, BTreeMap<String, String>> = nodes
            .state()
            .iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect();
        let all_claims = claims.state();
        for claim in &all_claims {
            let action = decide_claim(claim, &all_volumes, &class_map, &node_labels);
            if let Err(error) = act_on_claim(&ctx, claim, &all_volumes, action, &mut reported).await
            {
                tracing::debug!(claim = %claim_key(claim), %error, "binding a claim failed; retrying");
            }
        }
        let claim_map: HashMap<String, Arc<PersistentVolumeClaim>> =
            all_claims.into_iter().map(|c| (claim_key(&c), c)).collect();
        for volume in &all_volumes {
            let action = decide_volume(volume, &claim_map);
            if let Err(error) = act_on_volume(&ctx, volume, action, &mut reported).await {
                tracing::debug!(volume = %volume.name_any(), %error, "syncing a volume failed; retrying");
            }
        }
        if reported.len() > 10_000 {
            reported.clear();
        }
    }
}

fn ignore_gone(result: kube::Result<()>) -> kube::Result<()> {
    match result {
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        other => other,
    }
}

async fn act_on_claim(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    action: ClaimAction,
    reported: &mut HashSet<(String, &'static str)>,
) -> kube::Result<()> {
    let uid = claim.uid().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    match action {
        ClaimAction::Nothing => Ok(()),
        ClaimAction::Lost => {
            if phase_of_claim(claim) == "Lost" {
                return Ok(());
            }
            let patch = json!({"status": {"phase": "Lost"}});
            ignore_gone(
                api.patch_status(
                    &claim.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map(drop),
            )?;
            ctx.recorder
                .publish(
                    &claim.object_ref(&()),
                    EventType::Warning,
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                )
                .await;
            Ok(())
        }
        ClaimAction::Pending { provisioner, event } => {
            if let Some(p) = provisioner {
                if claim.annotations().get(STORAGE_PROVISIONER) != Some(&p) {
                    let patch = json!({"metadata": {"annotations": {
                        STORAGE_PROVISIONER: p, BETA_STORAGE_PROVISIONER: p}}});
                    ignore_gone(
                        api.patch(
                            &claim.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await
                        .map(drop),
                    )?;
                }
            }
            if let Some((kind, reason, message)) = event {
                if reported.insert((uid, reason)) {
                    ctx.recorder
                        .publish(&claim.object_ref(&()), kind, reason, &message)
                        .await;
                }
            }
            Ok(())
        }
        ClaimAction::Bind(name) => {
            let Some(volume) = volumes.iter().find(|v| v.name_any() == name) else {
                return Ok(());
            };
            bind(ctx, &api, claim, volume).await
        }
    }
}

/// Binds, each step only if not yet done (so a half-done binding is finished).
async fn bind(
    ctx: &Context,
    claims: &Api<PersistentVolumeClaim>,
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
) -> kube::Result<()> {
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let params = PatchParams::default();
    let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let has_uid = claim_ref
        .and_then(|r| r.uid.as_deref())
        .is_some_and(|u| Some(u) == claim.uid().as_deref());
    if !has_uid {
        let mut patch = json!({
            "metadata": {"resourceVersion": volume.resource_version()},
            "spec": {"claimRef": {
                "kind": "PersistentVolumeClaim", "apiVersion": "v1",
                "namespace": claim.namespace(), "name": claim.name_any(),
                "uid": claim.uid(), "resourceVersion": claim.resource_version()}}});
        if claim_ref.is_none() {
            patch["metadata"]["annotations"] = json!({BOUND_BY_CONTROLLER: "yes"});
        }
        volumes
            .patch(&volume.name_any(), &params, &Patch::Merge(&patch))
            .await?;
    }
    if phase_of_volume(volume) != "Bound" {
        let patch = json!({"status": {"phase": "Bound"}});
        volumes
            .patch_status(&volume.name_any(), &params, &Patch::Merge(&patch))
            .await?;
    }
    let spec_volume = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
    let name = volume.name_any();
    if spec_volume.as_deref() != Some(name.as_str())
        || !claim.annotations().contains_key(BIND_COMPLETED)
    {
        let mut annotations = json!({BIND_COMPLETED: "yes"});
        if spec_volume.as_deref().unwrap_or("").is_empty() {
            annotations[BOUND_BY_CONTROLLER] = json!("yes");
        }
        let patch = json!({"metadata": {"annotations": annotations,
                                        "resourceVersion": claim.resource_version()},
                           "spec": {"volumeName": name}});
        claims
            .patch(&claim.name_any(), &params, &Patch::Merge(&patch))
            .await?;
    }
    let spec = volume.spec.clone().unwrap_or_default();
    let status = claim.status.clone().unwrap_or_default();
    if status.phase.as_deref() != Some("Bound")
        || status.capacity != spec.capacity
        || status.access_modes != spec.access_modes
    {
        let patch = json!({"status": {"phase": "Bound", "capacity": spec.capacity,
                                      "accessModes": spec.access_modes}});
        claims
            .patch_status(&claim.name_any(), &params, &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

async fn act_on_volume(
    ctx: &Context,
    volume: &PersistentVolume,
    action: VolumeAction,
    reported: &mut HashSet<(String, &'static str)>,
) -> kube::Result<()> {
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let set_phase = |phase: &'static str, message: Option<String>| {
        let api = api.clone();
        let name = volume.name_any();
        async move {
            let patch = json!({"status": {"phase": phase, "message": message}});
            ignore_gone(
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(drop),
            )
        }
    };
    match action {
        VolumeAction::Nothing => Ok(()),
        VolumeAction::Phase(phase) => set_phase(phase, None).await,
        VolumeAction::Release => {
            // The cache may lag behind a claim just created: ask the API.
            let r = volume
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.clone())
                .unwrap_or_default();
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(
                ctx.client.clone(),
                r.namespace.as_deref().unwrap_or_default(),
            );
            let live = claims
                .get_opt(r.name.as_deref().unwrap_or_default())
                .await?;
            if live.is_some_and(|c| c.uid() == r.uid) {
                return Ok(());
            }
            set_phase("Released", None).await
        }
        VolumeAction::Fail(message) => {
            set_phase("Failed", Some(message.clone())).await?;
            if reported.insert((volume.uid().unwrap_or_default(), "VolumeFailedDelete")) {
                ctx.recorder
                    .publish(
                        &volume.object_ref(&()),
                        EventType::Warning,
                        "VolumeFailedDelete",
                        &message,
                    )
                    .await;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(name: &str, spec: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": spec, "status": {"phase": "Pending"}}),
        )
        .unwrap()
    }

    fn volume(name: &str, size: &str, extra: serde_json::Value) -> Arc<PersistentVolume> {
        let mut v = json!({"metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "hostPath": {"path": "/srv"}, "volumeMode": "Filesystem"},
            "status": {"phase": "Available"}});
        merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn request(size: &str) -> serde_json::Value {
        json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "",
               "resources": {"requests": {"storage": size}}, "volumeMode": "Filesystem"})
    }

    #[test]
    fn the_smallest_fitting_volume_wins() {
        let volumes = vec![
            volume("big", "10Gi", json!({})),
            volume("small", "1Gi", json!({})),
            volume("tiny", "100Mi", json!({})),
            volume(
                "rwx-only",
                "2Gi",
                json!({"spec": {"accessModes": ["ReadWriteMany"]}}),
            ),
            volume(
                "other-class",
                "1Gi",
                json!({"spec": {"storageClassName": "fast"}}),
            ),
        ];
        let c = claim("data", request("500Mi"));
        assert_eq!(find_match(&c, &volumes, None).unwrap().name_any(), "small");
        let c = claim("huge", request("20Gi"));
        assert!(find_match(&c, &volumes, None).is_none());
        let mut spec = request("1Gi");
        spec["storageClassName"] = json!("fast");
        assert_eq!(
            find_match(&claim("f", spec), &volumes, None)
                .unwrap()
                .name_any(),
            "other-class"
        );
    }

    #[test]
    fn selectors_bound_volumes_and_node_affinity_are_respected() {
        let volumes = vec![
            volume(
                "labelled",
                "5Gi",
                json!({"metadata": {"labels": {"tier": "db"}}}),
            ),
            volume("plain", "1Gi", json!({})),
            volume(
                "taken",
                "1Gi",
                json!({"spec": {"claimRef": {"namespace": "default", "name": "x", "uid": "u"}}}),
            ),
            volume(
                "pinned",
                "2Gi",
                json!({"metadata": {"labels": {"tier": "db"}}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"]}]}]}}}}),
            ),
        ];
        let mut spec = request("1Gi");
        spec["selector"] = json!({"matchLabels": {"tier": "db"}});
        let c = claim("db", spec);
        assert_eq!(find_match(&c, &volumes, None).unwrap().name_any(), "pinned");
        let n1 = BTreeMap::from([(HOSTNAME_LABEL.to_string(), "n1".to_string())]);
        assert_eq!(
            find_match(&c, &volumes, Some(("n1", &n1)))
                .unwrap()
                .name_any(),
            "labelled"
        );
    }

    #[test]
    fn pre_bound_volumes_and_named_volumes_bind_exactly() {
        let volumes = vec![
            volume("a", "1Gi", json!({})),
            volume(
                "reserved",
                "5Gi",
                json!({"spec": {"claimRef": {"namespace": "default", "name": "data"}}}),
            ),
        ];
        let classes = HashMap::new();
        let nodes = HashMap::new();
        let c = claim("data", request("1Gi"));
        assert_eq!(
            decide_claim(&c, &volumes, &classes, &nodes),
            ClaimAction::Bind("reserved".into())
        );
        let mut spec = request("1Gi");
        spec["volumeName"] = json!("a");
        let named = claim("named", spec);
        assert_eq!(
            decide_claim(&named, &volumes, &classes, &nodes),
            ClaimAction::Bind("a".into())
        );
        let mut spec = request("1Gi");
        spec["volumeName"] = json!("reserved");
        let other = claim("other", spec);
        assert!(matches!(
            decide_claim(&other, &volumes, &classes, &nodes),
            ClaimAction::Pending { .. }
        ));
    }

    #[test]
    fn wait_for_first_consumer_claims_wait_for_a_node_then_ask_the_provisioner() {
        let class: StorageClass =
            serde_json::from_value(json!({"metadata": {"name": "local-path"},
            "provisioner": LOCAL_PATH_PROVISIONER, "volumeBindingMode": "WaitForFirstConsumer"}))
            .unwrap();
        let classes = HashMap::from([("local-path".to_string(), Arc::new(class))]);
        let mut spec = request("1Gi");
        spec["storageClassName"] = json!("local-path");
        let mut c = claim("data", spec);
        let action = decide_claim(&c, &[], &classes, &HashMap::new());
        assert!(
            matches!(
                &action,
                ClaimAction::Pending {
                    provisioner: None,
                    event: Some((_, "WaitForFirstConsumer", _))
                }
            ),
            "{action:?}"
        );
        c.metadata.annotations = Some([(SELECTED_NODE.to_string(), "n1".to_string())].into());
        let action = decide_claim(&c, &[], &classes, &HashMap::new());
        assert!(
            matches!(&action, ClaimAction::Pending { provisioner: Some(p), .. } if p == LOCAL_PATH_PROVISIONER),
            "{action:?}"
        );
    }

    #[test]
    fn volume_phases_follow_their_claims() {
        let c = Arc::new(claim("data", {
            let mut s = request("1Gi");
            s["volumeName"] = json!("v");
            s
        }));
        let claims = HashMap::from([("default/data".to_string(), c)]);
        let bound_ref = json!({"spec": {"claimRef": {"namespace": "default", "name": "data", "uid": "uid-data"}}});
        let v = volume("v", "1Gi", bound_ref.clone());
        assert_eq!(decide_volume(&v, &claims), VolumeAction::Phase("Bound"));
        assert_eq!(
            decide_volume(
                &volume("free", "1Gi", json!({"status": {"phase": "Pending"}})),
                &claims
            ),
            VolumeAction::Phase("Available")
        );
        let orphan = volume(
            "o",
            "1Gi",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "gone", "uid": "old"}}, "status": {"phase": "Bound"}}),
        );
        assert_eq!(decide_volume(&orphan, &claims), VolumeAction::Release);
        let released = |policy: &str, provisioned: bool| {
            let mut extra = json!({"spec": {"claimRef": {"namespace": "default", "name": "gone", "uid": "old"},
                                            "persistentVolumeReclaimPolicy": policy},
                                   "status": {"phase": "Released"}});
            if provisioned {
                extra["metadata"] =
                    json!({"annotations": {PROVISIONED_BY: LOCAL_PATH_PROVISIONER}});
            }
            volume("r", "1Gi", extra)
        };
        assert_eq!(
            decide_volume(&released("Retain", false), &claims),
            VolumeAction::Nothing
        );
        assert_eq!(
            decide_volume(&released("Delete", true), &claims),
            VolumeAction::Nothing
        );
        assert!(matches!(
            decide_volume(&released("Delete", false), &claims),
            VolumeAction::Fail(_)
        ));
    }
}
