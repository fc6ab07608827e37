//! Service-account tokens: what their claims say (issued by TokenRequest, verified
//! on every request that presents one as a bearer token), what a service account may
//! do until RBAC exists, and the small endpoints around them (OIDC discovery, JWKS,
//! SelfSubjectReview).
//!
//! A token is accepted when its ES256 signature is ours, `iss` is ours, `aud` names
//! one of the API's audiences, it has not expired (60 s leeway, as upstream), and the
//! ServiceAccount — and the Pod or Secret it is bound to — still exist with the uid
//! the token names. The caller is then `system:serviceaccount:<ns>:<name>` in
//! `system:serviceaccounts`, `system:serviceaccounts:<ns>` and `system:authenticated`.
//!
//! Authorization (ADR 0009): until RBAC lands, service accounts may read discovery,
//! OpenAPI, version and health, the OIDC documents, and create SelfSubjectReviews;
//! everything else is 403 with upstream's wording.
//!
//! May call: the store (through `ApiState`) to look the bound objects up, and
//! `pki::signing` for the signature.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
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
const SELF_SUBJECT_REVIEWS: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
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
// Authorization until RBAC

pub fn is_service_account(identity: &Identity) -> bool {
    identity.user.starts_with(USER_PREFIX)
}

/// What a service account may do before RBAC exists (ADR 0009).
pub fn authorize(identity: &Identity, method: &Method, uri: &Uri) -> Result<(), ApiError> {
    let path = uri.path().trim_end_matches('/');
    if allowed_for_everyone(method, path) {
        return Ok(());
    }
    Err(forbidden(identity, &RequestInfo::parse(method, uri)))
}

fn allowed_for_everyone(method: &Method, path: &str) -> bool {
    if *method == Method::POST {
        return path == SELF_SUBJECT_REVIEWS;
    }
    if *method != Method::GET && *method != Method::HEAD {
        return false;
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    matches!(
        segments.as_slice(),
        ["api"] | ["api", "v1"] | ["apis"] | ["apis", _] | ["apis", _, _] | ["openapi", ..]
    ) || matches!(
        path,
        "/version" | "/healthz" | "/livez" | "/readyz" | OPENID_CONFIGURATION | JWKS
    )
}

/// The attributes of a request, as kube-apiserver's RequestInfo resolves them.
#[derive(Debug, PartialEq, Eq)]
struct RequestInfo {
    verb: String,
    resource: Option<ResourceAttributes>,
    path: String,
}

#[derive(Debug, PartialEq, Eq)]
struct ResourceAttributes {
    group: String,
    resource: String,
    subresource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
}

impl RequestInfo {
    fn parse(method: &Method, uri: &Uri) -> Self {
        let path = uri.path().trim_end_matches('/').to_string();
        let watch = uri
            .query()
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
            })
            .unwrap_or(false);
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let (group, rest) = match segments.as_slice() {
            ["api", "v1", rest @ ..] => ("", rest),
            ["apis", g, _, rest @ ..] => (*g, rest),
            _ => ("", &[][..]),
        };
        let resource = resource_attributes(group, rest);
        let verb = match &resource {
            None => method.as_str().to_lowercase(),
            Some(r) => resource_verb(method, r.name.is_some(), watch).to_string(),
        };
        RequestInfo {
            verb,
            resource,
            path,
        }
    }
}

fn resource_attributes(group: &str, rest: &[&str]) -> Option<ResourceAttributes> {
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail),
        _ => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    // A namespace is its own namespace, as upstream resolves it.
    let namespace = match (&namespace, resource, &name) {
        (None, "namespaces", Some(n)) => Some(n.clone()),
        _ => namespace,
    };
    Some(ResourceAttributes {
        group: group.to_string(),
        resource: resource.to_string(),
        subresource,
        namespace,
        name,
    })
}

fn resource_verb(method: &Method, named: bool, watch: bool) -> &'static str {
    match (method.as_str(), named) {
        ("GET" | "HEAD", _) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// Upstream's 403: `pods is forbidden: User "…" cannot list resource "pods" in API
/// group "" in the namespace "default"`.
fn forbidden(identity: &Identity, info: &RequestInfo) -> ApiError {
    let user = &identity.user;
    let Some(r) = &info.resource else {
        return ApiError::forbidden(format!(
            "forbidden: User \"{user}\" cannot {} path \"{}\"",
            info.verb, info.path
        ));
    };
    let resource = match &r.subresource {
        Some(sub) => format!("{}/{sub}", r.resource),
        None => r.resource.clone(),
    };
    let scope = match &r.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let reason = format!(
        "User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        info.verb, r.group
    );
    let qualified = if r.group.is_empty() {
        r.resource.clone()
    } else {
        format!("{}.{}", r.resource, r.group)
    };
    let mut error = match &r.name {
        Some(name) => ApiError::forbidden(format!("{qualified} \"{name}\" is forbidden: {reason}")),
        None => ApiError::forbidden(format!("{qualified} is forbidden: {reason}")),
    };
    error.details = Some(json!({
        "name": r.name.clone().unwrap_or_default(),
        "group": r.group,
        "kind": r.resource,
    }));
    error
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

    fn sa() -> Identity {
        subject(None).identity()
    }

    fn check(method: Method, uri: &str) -> Result<(), ApiError> {
        authorize(&sa(), &method, &uri.parse().unwrap())
    }

    #[test]
    fn service_accounts_may_only_discover_and_ask_who_they_are() {
        for ok in [
            "/api",
            "/apis",
            "/api/v1",
            "/apis/apps/v1",
            "/openapi/v3",
            "/version",
        ] {
            assert!(check(Method::GET, ok).is_ok(), "{ok}");
        }
        assert!(check(Method::POST, SELF_SUBJECT_REVIEWS).is_ok());
        assert!(check(Method::GET, JWKS).is_ok());
        let err = check(Method::GET, "/api/v1/namespaces/default/pods").unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods is forbidden: User \"system:serviceaccount:apps:builder\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let err = check(Method::GET, "/apis/apps/v1/deployments?watch=true").unwrap_err();
        assert_eq!(
            err.message,
            "deployments.apps is forbidden: User \"system:serviceaccount:apps:builder\" cannot watch resource \"deployments\" in API group \"apps\" at the cluster scope"
        );
        let err = check(Method::POST, "/api/v1/namespaces/x/pods/web/exec").unwrap_err();
        assert_eq!(
            err.message,
            "pods \"web\" is forbidden: User \"system:serviceaccount:apps:builder\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"x\""
        );
        let err = check(Method::DELETE, "/api/v1/namespaces/x").unwrap_err();
        assert!(err.message.contains(
            "cannot delete resource \"namespaces\" in API group \"\" in the namespace \"x\""
        ));
        let err = check(Method::POST, "/metrics").unwrap_err();
        assert_eq!(
            err.message,
            "forbidden: User \"system:serviceaccount:apps:builder\" cannot post path \"/metrics\""
        );
    }
}
