//! Who is calling, and may they: client certificates (CN = user, O = groups, verified
//! against the cluster CA by the TLS layer) and bearer tokens.
//!
//! Authorization: `system:masters` (the admin kubeconfig, the controllers) may do
//! everything; nodes (`system:nodes`) are judged by the node authorizer
//! (`authz::node`, called from the API's middleware); a joining node's bearer token
//! (`system:bootstrappers`) may only reach the join endpoint (this module decides).
//! Everyone else is judged by RBAC (`authz::rbac`). Service-account tokens (JWTs) are
//! checked in `satoken`.

use axum::extract::Request;
use axum::http::{header, Method};

pub use crate::pki::Identity;

use super::status::ApiError;

/// The verified client certificate's identity, put on each request by the TLS server.
#[derive(Debug, Clone)]
pub struct PeerIdentity(pub Option<Identity>);

/// The TCP peer of the request's connection, put on each request by the TLS server.
pub use crate::serve::PeerAddress;

pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers";

pub fn identify(request: &Request, join_secret: &str) -> Option<Identity> {
    if let Some(PeerIdentity(Some(id))) = request.extensions().get::<PeerIdentity>() {
        return Some(id.clone());
    }
    let secret = crate::pki::parse_token(bearer(request)?).ok()?.secret;
    (!join_secret.is_empty() && constant_time_eq(secret.as_bytes(), join_secret.as_bytes())).then(
        || Identity {
            user: "system:bootstrap:skiff".into(),
            groups: vec![BOOTSTRAP_GROUP.into(), "system:authenticated".into()],
        },
    )
}

/// The request's `Authorization: Bearer` token.
pub fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn authorize(identity: &Identity, method: &Method, path: &str) -> Result<(), ApiError> {
    let has = |g: &str| identity.groups.iter().any(|x| x == g);
    if has("system:masters") {
        return Ok(());
    }
    // Discovery is open to every authenticated caller, as on Kubernetes.
    let discovery = *method == Method::GET
        && (matches!(path, "/api" | "/apis" | "/api/v1") || path.starts_with("/openapi/"));
    if discovery {
        return Ok(());
    }
    // The join endpoint decides itself which node a caller may get credentials for.
    if path == crate::model::join::CREDENTIALS_PATH && *method == Method::POST {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "User \"{}\" cannot {} resource at path \"{path}\"",
        identity.user,
        method.as_str().to_lowercase()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admins_and_nodes_may_write() {
        let admin = Identity {
            user: "system:admin".into(),
            groups: vec!["system:masters".into()],
        };
        assert!(authorize(&admin, &Method::POST, "/api/v1/namespaces").is_ok());
        let stranger = Identity {
            user: "bob".into(),
            groups: vec![],
        };
        let err = authorize(&stranger, &Method::GET, "/api/v1/pods").unwrap_err();
        assert_eq!(err.code, 403);
        assert!(authorize(&stranger, &Method::GET, "/apis").is_ok());
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
