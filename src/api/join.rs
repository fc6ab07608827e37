//! Joining nodes: `GET /cacerts` (public; the agent checks it against the CA hash in
//! its token before sending any secret) and `POST /v1-skiff/node-credentials`, where a
//! node holding the join token (or its own still-valid node certificate, to renew)
//! gets a client certificate `CN=system:node:<name>, O=system:nodes`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::auth::{Identity, BOOTSTRAP_GROUP};
use super::status::ApiError;
use super::validation::validate_dns1123_subdomain;
use super::SharedState;

pub const CREDENTIALS_PATH: &str = "/v1-skiff/node-credentials";

/// Issues node certificates; the server implements it over its CA.
pub trait CredentialIssuer: Send + Sync {
    fn ca_pem(&self) -> String;
    /// (certificate PEM, private key PEM) for `system:node:<node>`.
    fn issue_node_credentials(&self, node: &str) -> Result<(String, String), String>;
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRequest {
    pub node_name: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsResponse {
    pub certificate: String,
    pub key: String,
    pub ca: String,
}

fn issuer(state: &SharedState) -> Result<&Arc<dyn CredentialIssuer>, ApiError> {
    state
        .issuer
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this server does not issue node credentials"))
}

pub async fn cacerts(State(state): State<SharedState>) -> Response {
    match issuer(&state) {
        Ok(issuer) => issuer.ca_pem().into_response(),
        Err(e) => e.into_response(),
    }
}

/// May `identity` get credentials for `node`: holders of the join token for any node,
/// a node for itself.
fn may_issue(identity: &Identity, node: &str) -> bool {
    let is = |g: &str| identity.groups.iter().any(|x| x == g);
    is(BOOTSTRAP_GROUP)
        || is("system:masters")
        || (is("system:nodes") && identity.user == format!("system:node:{node}"))
}

pub async fn node_credentials(
    State(state): State<SharedState>,
    identity: Option<Extension<Identity>>,
    Json(request): Json<CredentialsRequest>,
) -> Response {
    let result = (|| {
        let Some(Extension(identity)) = identity else {
            return Err(ApiError::unauthorized());
        };
        validate_dns1123_subdomain(&request.node_name).map_err(|e| {
            ApiError::bad_request(format!("invalid nodeName {:?}: {e}", request.node_name))
        })?;
        if !may_issue(&identity, &request.node_name) {
            return Err(ApiError::forbidden(format!(
                "User \"{}\" cannot get credentials for node \"{}\"",
                identity.user, request.node_name
            )));
        }
        let issuer = issuer(&state)?;
        let (certificate, key) = issuer
            .issue_node_credentials(&request.node_name)
            .map_err(ApiError::internal)?;
        Ok(CredentialsResponse {
            certificate,
            key,
            ca: issuer.ca_pem(),
        })
    })();
    match result {
        Ok(response) => (StatusCode::OK, Json(response)).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_renew_only_their_own_credentials() {
        let node = Identity {
            user: "system:node:a".into(),
            groups: vec!["system:nodes".into()],
        };
        assert!(may_issue(&node, "a"));
        assert!(!may_issue(&node, "b"));
        let joining = Identity {
            user: "system:bootstrap:skiff".into(),
            groups: vec![BOOTSTRAP_GROUP.into()],
        };
        assert!(may_issue(&joining, "b"));
    }
}
