//! The contents of the volumes that are written as a set of files: configMap,
//! secret, downwardAPI and projected (its configMap, secret, downwardAPI and
//! serviceAccountToken sources), as payloads for the atomic writer; and the
//! service-account tokens they hold, requested through the TokenRequest API
//! (`POST …/serviceaccounts/{sa}/token`, bound to the pod) and renewed at 80 % of
//! their lifetime or after 24 hours, as the kubelet's token manager does.
//!
//! May call: the API (ConfigMaps, Secrets, TokenRequests) through `volumes`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeFile, KeyToPath, Pod, ProjectedVolumeSource, ServiceAccount,
    ServiceAccountTokenProjection,
};
use kube::api::PostParams;
use kube::Api;

use super::atomic_writer::{FileData, Payload};
use super::downward::{self, Allocatable};
use super::volumes::{self, Data, VolumeError};

/// The mode files get when neither the item nor the volume says.
pub const DEFAULT_MODE: i32 = 0o644;
/// A token's lifetime when the projection does not say.
const DEFAULT_EXPIRATION: i64 = 3600;
/// A token is renewed after this share of its lifetime…
const REFRESH_SHARE: f64 = 0.8;
/// …or after this long, whichever comes first.
const REFRESH_MAX: Duration = Duration::from_secs(24 * 3600);

fn mode(item: Option<i32>, default: Option<i32>) -> u32 {
    item.or(default).unwrap_or(DEFAULT_MODE) as u32 & 0o777
}

/// A ConfigMap's or Secret's keys (all, or the listed items) as files. `what` is
/// "config" or "secret" as in the kubelet's "references non-existent … key".
pub fn key_payload(
    what: &str,
    data: &Data,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, VolumeError> {
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, bytes) in data {
                let file = FileData {
                    bytes: bytes.clone(),
                    mode: mode(None, default_mode),
                };
                payload.insert(key.clone(), file);
            }
        }
        Some(items) => {
            for item in items {
                let Some(bytes) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(VolumeError::ItemKey {
                        what: what.to_string(),
                        key: item.key.clone(),
                    });
                };
                let file = FileData {
                    bytes: bytes.clone(),
                    mode: mode(item.mode, default_mode),
                };
                payload.insert(item.path.clone(), file);
            }
        }
    }
    Ok(payload)
}

/// downwardAPI items as files.
pub fn downward_payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    node: &Allocatable,
) -> Result<Payload, VolumeError> {
    let mut payload = Payload::new();
    for item in items {
        let text = if let Some(field) = &item.field_ref {
            downward::volume_field(pod, &field.field_path)?
        } else if let Some(resource) = &item.resource_field_ref {
            downward::volume_resource(pod, resource, node)?
        } else {
            continue;
        };
        let file = FileData {
            bytes: text.into_bytes(),
            mode: mode(item.mode, default_mode),
        };
        payload.insert(item.path.clone(), file);
    }
    Ok(payload)
}

/// A token held for a pod, and when to ask for a new one.
#[derive(Debug, Clone)]
struct Token {
    token: String,
    renew_at: Instant,
}

/// The service-account tokens of one pod's projected volumes, by
/// (service account, audience, lifetime).
#[derive(Debug, Default)]
pub struct Tokens {
    held: HashMap<(String, String, i64), Token>,
}

impl Tokens {
    /// When the first held token is due for renewal.
    pub fn next_renewal(&self) -> Option<Instant> {
        self.held.values().map(|t| t.renew_at).min()
    }

    /// A valid token for the projection, requested when none is held or it is due.
    async fn get(
        &mut self,
        client: &kube::Client,
        pod: &Pod,
        projection: &ServiceAccountTokenProjection,
    ) -> Result<String, VolumeError> {
        let account = service_account(pod);
        let audience = projection.audience.clone().unwrap_or_default();
        let seconds = projection.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION);
        let key = (account.clone(), audience.clone(), seconds);
        if let Some(t) = self.held.get(&key).filter(|t| Instant::now() < t.renew_at) {
            return Ok(t.token.clone());
        }
        let request = token_request(pod, &audience, seconds);
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
        let answer = api
            .create_token_request(&account, &PostParams::default(), &request)
            .await
            .map_err(|e| VolumeError::Token {
                account: account.clone(),
                message: volumes::api_message(&e),
            })?;
        let status = answer.status.ok_or_else(|| VolumeError::Token {
            account: account.clone(),
            message: "the answer has no status".into(),
        })?;
        let lifetime = (status.expiration_timestamp.0 - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::from_secs(seconds.max(0) as u64));
        let token = Token {
            token: status.token,
            renew_at: Instant::now() + renew_after(lifetime),
        };
        self.held.insert(key, token.clone());
        Ok(token.token)
    }
}

/// How long a token of this lifetime is used before a new one is requested.
pub fn renew_after(lifetime: Duration) -> Duration {
    lifetime.mul_f64(REFRESH_SHARE).min(REFRESH_MAX)
}

fn service_account(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// The TokenRequest the kubelet sends: the audience if one is given, the lifetime,
/// bound to the pod.
pub fn token_request(pod: &Pod, audience: &str, seconds: i64) -> TokenRequest {
    TokenRequest {
        metadata: Default::default(),
        spec: TokenRequestSpec {
            audiences: if audience.is_empty() {
                Vec::new()
            } else {
                vec![audience.to_string()]
            },
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        status: None,
    }
}

/// All sources of a projected volume, merged into one payload.
pub async fn projected_payload(
    client: &kube::Client,
    pod: &Pod,
    source: &ProjectedVolumeSource,
    tokens: &mut Tokens,
    node: &Allocatable,
) -> Result<Payload, VolumeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let default_mode = source.default_mode;
    let mut payload = Payload::new();
    for projection in source.sources.iter().flatten() {
        let part: Payload = if let Some(cm) = &projection.config_map {
            let optional = cm.optional.unwrap_or(false);
            match volumes::config_map(client, &namespace, &cm.name).await? {
                Some(data) => {
                    key_payload("config", &data, cm.items.as_deref(), default_mode, optional)?
                }
                None if optional => Payload::new(),
                None => return Err(VolumeError::missing("configmap", &cm.name)),
            }
        } else if let Some(s) = &projection.secret {
            let optional = s.optional.unwrap_or(false);
            match volumes::secret(client, &namespace, &s.name).await? {
                Some(data) => {
                    key_payload("secret", &data, s.items.as_deref(), default_mode, optional)?
                }
                None if optional => Payload::new(),
                None => return Err(VolumeError::missing("secret", &s.name)),
            }
        } else if let Some(d) = &projection.downward_api {
            downward_payload(
                pod,
                d.items.as_deref().unwrap_or_default(),
                default_mode,
                node,
            )?
        } else if let Some(t) = &projection.service_account_token {
            let token = tokens.get(client, pod, t).await?;
            let file = FileData {
                bytes: token.into_bytes(),
                mode: mode(None, default_mode),
            };
            BTreeMap::from([(t.path.clone(), file)])
        } else {
            return Err(VolumeError::Unsupported("projected source".into()));
        };
        payload.extend(part);
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Data {
        Data::from([
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ])
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        }
    }

    #[test]
    fn keys_become_files_with_modes() {
        let all = key_payload("config", &data(), None, Some(0o400), false).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["a"].mode, 0o400);
        let items = [item("b", "dir/bee", Some(0o600))];
        let some = key_payload("config", &data(), Some(&items), None, false).unwrap();
        assert_eq!(some.keys().collect::<Vec<_>>(), ["dir/bee"]);
        assert_eq!(some["dir/bee"].mode, 0o600);
        assert_eq!(some["dir/bee"].bytes, b"2");
    }

    #[test]
    fn a_missing_item_key_fails_unless_optional() {
        let items = [item("zzz", "z", None)];
        let err = key_payload("config", &data(), Some(&items), None, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configmap references non-existent config key: zzz"
        );
        assert!(key_payload("secret", &data(), Some(&items), None, true)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn downward_items_render_fields_and_resources() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "1Gi"}}}]}}))
        .unwrap();
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}]))
        .unwrap();
        let node = Allocatable {
            cpu_millis: 1000.0,
            memory_bytes: 1e9,
            ephemeral_bytes: 1e9,
        };
        let p = downward_payload(&pod, &items, Some(0o444), &node).unwrap();
        assert_eq!(p["labels"].bytes, b"a=\"b\"");
        assert_eq!(p["labels"].mode, 0o444);
        assert_eq!(p["name"].mode, 0o600);
        assert_eq!(p["mem"].bytes, b"1024");
        let bad: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
            {"path": "x", "fieldRef": {"fieldPath": "status.podIP"}}]))
        .unwrap();
        assert!(downward_payload(&pod, &bad, None, &node).is_err());
    }

    #[test]
    fn token_requests_are_bound_to_the_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u1"}, "spec": {"containers": []}}))
        .unwrap();
        let r = token_request(&pod, "", 3600);
        assert!(r.spec.audiences.is_empty());
        assert_eq!(r.spec.expiration_seconds, Some(3600));
        let bound = r.spec.bound_object_ref.unwrap();
        assert_eq!(bound.kind.as_deref(), Some("Pod"));
        assert_eq!(bound.uid.as_deref(), Some("u1"));
        assert_eq!(token_request(&pod, "vault", 600).spec.audiences, ["vault"]);
        assert_eq!(service_account(&pod), "default");
    }

    #[test]
    fn tokens_renew_at_eighty_percent_or_a_day() {
        assert_eq!(
            renew_after(Duration::from_secs(3600)),
            Duration::from_secs(2880)
        );
        assert_eq!(renew_after(Duration::from_secs(7 * 24 * 3600)), REFRESH_MAX);
    }
}
