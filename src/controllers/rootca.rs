//! The root CA publisher: every namespace has the ConfigMap `kube-root-ca.crt` whose
//! `ca.crt` is the cluster CA (PEM), so pods can verify the API server through the
//! projected service-account volume — created when a namespace appears, recreated
//! when deleted, set back when edited (other keys and annotations are dropped or
//! kept as upstream does: `data` is replaced whole, the description annotation is
//! restored). Nothing is done in a namespace being terminated.
//!
//! The CA comes from the controller's configuration (the server passes its PEM).
//! May call: the API (namespaces, configmaps).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use super::serviceaccounts::{ignore_races, run_per_namespace};
use super::{Context, Result};

const NAME: &str = "root-ca-cert-publisher";
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
pub const CA_KEY: &str = "ca.crt";
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

pub async fn run(ctx: Arc<Context>, ca_pem: Arc<str>) {
    run_per_namespace::<ConfigMap, _, _>(NAME, CONFIG_MAP, ctx, move |ns, ctx| {
        let ca_pem = ca_pem.clone();
        async move { publish(&ctx, &ns, &ca_pem).await }
    })
    .await;
}

async fn publish(ctx: &Context, namespace: &str, ca_pem: &str) -> Result<()> {
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    match maps.get_opt(CONFIG_MAP).await? {
        None => {
            let map = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(CONFIG_MAP.into()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            };
            let map = corrected(map, ca_pem).unwrap_or_default();
            ignore_races(maps.create(&PostParams::default(), &map).await.map(drop))
        }
        Some(existing) => match corrected(existing, ca_pem) {
            Some(map) => ignore_races(
                maps.replace(CONFIG_MAP, &PostParams::default(), &map)
                    .await
                    .map(drop),
            ),
            None => Ok(()),
        },
    }
}

/// The map as it should be, or `None` when it already is.
fn corrected(mut map: ConfigMap, ca_pem: &str) -> Option<ConfigMap> {
    let data = BTreeMap::from([(CA_KEY.to_string(), ca_pem.to_string())]);
    let annotations = map.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let described =
        annotations.get(DESCRIPTION_ANNOTATION).map(String::as_str) == Some(DESCRIPTION);
    if described && map.data.as_ref() == Some(&data) && map.binary_data.is_none() {
        return None;
    }
    annotations.insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
    map.data = Some(data);
    map.binary_data = None;
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edited_maps_are_set_back_and_correct_ones_left_alone() {
        let fresh = corrected(ConfigMap::default(), "PEM").unwrap();
        assert_eq!(fresh.data.as_ref().unwrap()[CA_KEY], "PEM");
        assert_eq!(
            fresh.metadata.annotations.as_ref().unwrap()[DESCRIPTION_ANNOTATION],
            DESCRIPTION
        );
        assert!(corrected(fresh.clone(), "PEM").is_none());
        let mut edited = fresh.clone();
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("extra".into(), "x".into());
        let fixed = corrected(edited, "PEM").unwrap();
        assert_eq!(fixed.data.unwrap().len(), 1);
        assert!(corrected(fresh, "OTHER PEM").is_some());
    }
}
