//! Service-account tokens: what their claims say (issued by TokenRequest, verified
//! on every request that presents one as a bearer token), and the small endpoints
//! around them (OIDC discovery, JWKS, SelfSubjectReview).
//!
//! A token is accepted when its ES256 signature is ours, `iss` is ours, `aud` names
//! one of the API's audiences, it has not expired (60 s leeway, as upstream), and the
//! ServiceAccount — and the Pod or Secret it is bound to — still exist with the uid
//! the token names. The caller is then `system:serviceaccount:<ns>:<name>` in
//! `system:serviceaccounts`, `system:serviceaccounts:<ns>` and `system:authenticated`.
//!
//! What a service account may do is RBAC's to decide (`authz::rbac`); the default
//! policy lets every authenticated caller read discovery, OpenAPI, version and health
//! and ask who it is and what it may do.
//!
//! May call: the store (through `ApiState`) to look the bound objects up, and
//! `pki::signing` for the signature.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::auth::Identity;
use super::status::ApiError;
use super::{caller, json_response, object, resources, SharedState};
use crate::pki::signing::SigningKey;
use crate::pki::PkiError;

pub const USER_PREFIX: &str = "system:serviceaccount:";
pub const ALL_GROUP: &str = "system:serviceaccounts";
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECS: i64 = 60;
pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
pub const JWKS: &str = "/openid/v1/jwks";

/// Signs and checks service-account tokens for one cluster.
#[derive(Debug)]
pub struct TokenAuthority {
    key: SigningKey,
    issuer: String,
    audiences: Vec<String>,
}

/// The object a token is bound to (it dies with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundObject {
    /// `Pod` or `Secret`.
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// What a token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSubject {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub bound: Option<BoundObject>,
}

impl TokenSubject {
    pub fn identity(&self) -> Identity {
        Identity {
            user: format!("{USER_PREFIX}{}:{}", self.namespace, self.name),
            groups: vec![
                ALL_GROUP.into(),
                format!("{ALL_GROUP}:{}", self.namespace),
                "system:authenticated".into(),
            ],
        }
    }
}

/// An issued token.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    /// Unix seconds.
    pub expires: i64,
}

impl TokenAuthority {
    /// `issuer` is also the API's one audience, as kube-apiserver defaults it.
    pub fn new(key: SigningKey, issuer: String) -> Self {
        TokenAuthority {
            key,
            audiences: vec![issuer.clone()],
            issuer,
        }
    }

    /// `https://kubernetes.default.svc.<cluster domain>` (k3s' issuer).
    pub fn issuer_for(cluster_domain: &str) -> String {
        format!("https://kubernetes.default.svc.{cluster_domain}")
    }

    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    pub fn issue(
        &self,
        subject: &TokenSubject,
        audiences: &[String],
        lifetime_secs: i64,
        now: i64,
    ) -> Result<Issued, PkiError> {
        let expires = now + lifetime_secs;
        let mut scope = json!({
            "namespace": subject.namespace,
            "serviceaccount": {"name": subject.name, "uid": subject.uid},
        });
        if let Some(bound) = &subject.bound {
            scope[bound.kind.to_lowercase()] = json!({"name": bound.name, "uid": bound.uid});
        }
        let claims = json!({
            "aud": audiences,
            "exp": expires,
            "iat": now,
            "iss": self.issuer,
            "jti": object::new_uid(),
            "kubernetes.io": scope,
            "nbf": now,
            "sub": format!("{USER_PREFIX}{}:{}", subject.namespace, subject.name),
        });
        Ok(Issued {
            token: self.key.sign(&claims)?,
            expires,
        })
    }

    /// The subject of a token we signed that is valid at `now`; `None` otherwise.
    pub fn check(&self, token: &str, now: i64) -> Option<TokenSubject> {
        let claims = self.key.verify(token).ok()?;
        if claims["iss"] != self.issuer.as_str() || !self.accepts_audience(&claims["aud"]) {
            return None;
        }
        let exp = claims["exp"].as_i64()?;
        let nbf = claims["nbf"].as_i64().unwrap_or(i64::MIN);
        if now > exp + LEEWAY_SECS || now + LEEWAY_SECS < nbf {
            return None;
        }
        subject_of(&claims)
    }

    fn accepts_audience(&self, aud: &Value) -> bool {
        let given: Vec<&str> = match aud {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        given
            .iter()
            .any(|a| self.audiences.iter().any(|ours| ours == a))
    }

    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}{JWKS}", self.issuer),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    pub fn jwks(&self) -> Value {
        json!({"keys": [self.key.public_jwk()]})
    }
}

fn subject_of(claims: &Value) -> Option<TokenSubject> {
    let scope = &claims["kubernetes.io"];
    let namespace = scope["namespace"].as_str()?;
    let sa = &scope["serviceaccount"];
    let name = sa["name"].as_str()?;
    if claims["sub"] != format!("{USER_PREFIX}{namespace}:{name}").as_str() {
        return None;
    }
    let bound = ["pod", "secret"].iter().find_map(|kind| {
        let obj = scope.get(*kind)?;
        Some(BoundObject {
            kind: if *kind == "pod" { "Pod" } else { "Secret" }.into(),
            name: obj["name"].as_str()?.into(),
            uid: obj["uid"].as_str()?.into(),
        })
    });
    Some(TokenSubject {
        namespace: namespace.into(),
        name: name.into(),
        uid: sa["uid"].as_str()?.into(),
        bound,
    })
}

pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// True for a bearer token shaped like a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("ey") && token.split('.').count() == 3
}

/// The identity behind a service-account token, or `None` (→ 401) when the token is
/// not ours, expired, or names objects that are gone or were replaced.
pub async fn authenticate(state: &SharedState, token: &str) -> Option<Identity> {
    let authority = state.tokens.get()?;
    let subject = authority.check(token, unix_now())?;
    let sa = stored(state, "serviceaccounts", &subject.namespace, &subject.name).await?;
    if object::meta_str(&sa, "uid") != Some(subject.uid.as_str()) {
        return None;
    }
    if let Some(bound) = &subject.bound {
        let plural = if bound.kind == "Pod" {
            "pods"
        } else {
            "secrets"
        };
        let obj = stored(state, plural, &subject.namespace, &bound.name).await?;
        if object::meta_str(&obj, "uid") != Some(bound.uid.as_str()) || deleted_long_ago(&obj) {
            return None;
        }
    }
    Some(subject.identity())
}

/// Upstream stops honouring a pod-bound token once the pod's deletion is due
/// (deletionTimestamp passed, plus the leeway).
fn deleted_long_ago(obj: &Value) -> bool {
    object::meta_str(obj, "deletionTimestamp")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t.timestamp() + LEEWAY_SECS < unix_now())
}

async fn stored(state: &SharedState, plural: &str, namespace: &str, name: &str) -> Option<Value> {
    let resource = resources::find("", "v1", plural)?;
    let entry = state
        .store
        .get(&resource.key(Some(namespace), name))
        .await
        .ok()??;
    object::from_entry(&entry).ok()
}

// ---------------------------------------------------------------------------
// Endpoints

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews` (`kubectl auth whoami`).
pub async fn self_subject_review(request: Request) -> Response {
    let Some(identity) = caller(&request) else {
        return ApiError::unauthorized().into_response();
    };
    json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {"username": identity.user, "groups": identity.groups}},
        }),
    )
}

pub async fn openid_configuration(State(state): State<SharedState>) -> Response {
    match state.tokens.get() {
        Some(authority) => json_response(StatusCode::OK, &authority.openid_configuration()),
        None => ApiError::no_route().into_response(),
    }
}

pub async fn jwks(State(state): State<SharedState>) -> Response {
    let Some(authority) = state.tokens.get() else {
        return ApiError::no_route().into_response();
    };
    let mut response = json_response(StatusCode::OK, &authority.jwks());
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    response
}

/// Installs the authority the server made from its signing key.
pub fn install(state: &SharedState, authority: TokenAuthority) {
    let _ = state.tokens.set(Arc::new(authority));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(tag: &str) -> (TokenAuthority, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("skiff-satoken-{tag}-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = SigningKey::load_or_create(&dir).unwrap();
        (
            TokenAuthority::new(key, TokenAuthority::issuer_for("cluster.local")),
            dir,
        )
    }

    fn subject(bound: Option<BoundObject>) -> TokenSubject {
        TokenSubject {
            namespace: "apps".into(),
            name: "builder".into(),
            uid: "sa-uid".into(),
            bound,
        }
    }

    #[test]
    fn issued_tokens_carry_upstream_claims_and_check_back() {
        let (auth, dir) = authority("claims");
        let pod = BoundObject {
            kind: "Pod".into(),
            name: "web".into(),
            uid: "pod-uid".into(),
        };
        let audiences = auth.audiences().to_vec();
        let issued = auth
            .issue(&subject(Some(pod.clone())), &audiences, 3600, 1_000_000)
            .unwrap();
        assert_eq!(issued.expires, 1_003_600);
        let claims = auth.key.verify(&issued.token).unwrap();
        assert_eq!(
            claims["iss"],
            "https://kubernetes.default.svc.cluster.local"
        );
        assert_eq!(claims["sub"], "system:serviceaccount:apps:builder");
        assert_eq!(
            claims["aud"][0],
            "https://kubernetes.default.svc.cluster.local"
        );
        assert_eq!(claims["iat"], 1_000_000);
        assert_eq!(claims["nbf"], 1_000_000);
        assert_eq!(claims["kubernetes.io"]["pod"]["uid"], "pod-uid");
        assert_eq!(claims["kubernetes.io"]["serviceaccount"]["uid"], "sa-uid");
        assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
        let checked = auth.check(&issued.token, 1_000_100).unwrap();
        assert_eq!(checked, subject(Some(pod)));
        let id = checked.identity();
        assert_eq!(id.user, "system:serviceaccount:apps:builder");
        assert_eq!(
            id.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:apps",
                "system:authenticated"
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn expiry_audience_and_issuer_are_enforced() {
        let (auth, dir) = authority("expiry");
        let ours = auth.audiences().to_vec();
        let issued = auth.issue(&subject(None), &ours, 600, 1_000_000).unwrap();
        assert!(auth.check(&issued.token, 1_000_600 + LEEWAY_SECS).is_some());
        assert!(auth.check(&issued.token, 1_000_601 + LEEWAY_SECS).is_none());
        assert!(auth
            .check(&issued.token, 1_000_000 - LEEWAY_SECS - 1)
            .is_none());
        let vault = auth
            .issue(&subject(None), &["vault".to_string()], 600, 1_000_000)
            .unwrap();
        assert!(auth.check(&vault.token, 1_000_000).is_none());
        let (other, other_dir) = authority("other");
        let foreign = other.issue(&subject(None), &ours, 600, 1_000_000).unwrap();
        assert!(auth.check(&foreign.token, 1_000_000).is_none());
        let stranger = TokenAuthority::new(
            SigningKey::load_or_create(&dir).unwrap(),
            "https://elsewhere".into(),
        );
        let wrong_issuer = stranger
            .issue(&subject(None), &ours, 600, 1_000_000)
            .unwrap();
        assert!(auth.check(&wrong_issuer.token, 1_000_000).is_none());
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(other_dir).unwrap();
    }
}
