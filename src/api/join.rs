//! Joining nodes: `GET /cacerts` (public; the agent checks it against the CA hash in
//! its token before sending any secret) and `POST /v1-skiff/node-credentials`, where a
//! node holding the join token (or its own still-valid node certificate, to renew)
//! gets a client certificate `CN=system:node:<name>, O=system:nodes`.
//!
//! A request that names `servingAddresses` also gets a serving certificate for the
//! node's kubelet API (port 10250): a separate key pair, `CN=system:node:<name>`,
//! server authentication only, with the node name and those addresses as subject
//! alternative names. The API server checks it against the cluster CA when it
//! proxies logs and exec to the node (see `proxy`), which authenticates with the
//! kubelet-client certificate the issuer also makes
//! (`CN=system:kube-apiserver-kubelet-client, O=system:masters`).

use std::net::IpAddr;
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
/// The user the API server is when it calls a node's kubelet API.
pub const KUBELET_CLIENT_USER: &str = "system:kube-apiserver-kubelet-client";
/// How long issued certificates last (agents renew theirs well before).
pub const VALIDITY_DAYS: u32 = 365;

/// Issues node certificates; the server implements it over its CA ([`PkiIssuer`]).
pub trait CredentialIssuer: Send + Sync {
    fn ca_pem(&self) -> String;
    /// (certificate PEM, private key PEM) for `system:node:<node>`.
    fn issue_node_credentials(&self, node: &str) -> Result<(String, String), String>;
    /// (certificate PEM, private key PEM) serving the node's kubelet API, with the
    /// node name and `addresses` as subject alternative names.
    fn issue_node_serving_cert(
        &self,
        node: &str,
        addresses: &[IpAddr],
    ) -> Result<(String, String), String> {
        let _ = (node, addresses);
        Err("this server does not issue node serving certificates".into())
    }
    /// (certificate PEM, private key PEM) the API server presents to kubelet APIs:
    /// `CN=system:kube-apiserver-kubelet-client, O=system:masters`.
    fn issue_kubelet_client_cert(&self) -> Result<(String, String), String> {
        Err("this server does not issue a kubelet client certificate".into())
    }
}

/// The issuer over the cluster PKI: what `skiff server` hands the API.
pub struct PkiIssuer(pub Arc<crate::pki::Pki>);

impl CredentialIssuer for PkiIssuer {
    fn ca_pem(&self) -> String {
        self.0.ca_pem().to_string()
    }

    fn issue_node_credentials(&self, node: &str) -> Result<(String, String), String> {
        self.0
            .issue_client_cert(
                &format!("system:node:{node}"),
                &["system:nodes"],
                VALIDITY_DAYS,
            )
            .map_err(|e| e.to_string())
    }

    fn issue_node_serving_cert(
        &self,
        node: &str,
        addresses: &[IpAddr],
    ) -> Result<(String, String), String> {
        let addresses: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
        let names: Vec<&str> = std::iter::once(node)
            .chain(addresses.iter().map(String::as_str))
            .collect();
        self.0
            .issue_serving_cert(&format!("system:node:{node}"), &names, VALIDITY_DAYS)
            .map_err(|e| e.to_string())
    }

    fn issue_kubelet_client_cert(&self) -> Result<(String, String), String> {
        self.0
            .issue_client_cert(KUBELET_CLIENT_USER, &["system:masters"], VALIDITY_DAYS)
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRequest {
    pub node_name: String,
    /// Also issue a kubelet serving certificate for these addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_addresses: Option<Vec<IpAddr>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsResponse {
    pub certificate: String,
    pub key: String,
    pub ca: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_key: Option<String>,
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
        let serving = match &request.serving_addresses {
            Some(addresses) => Some(
                issuer
                    .issue_node_serving_cert(&request.node_name, addresses)
                    .map_err(ApiError::internal)?,
            ),
            None => None,
        };
        let (serving_certificate, serving_key) = serving.unzip();
        Ok(CredentialsResponse {
            certificate,
            key,
            ca: issuer.ca_pem(),
            serving_certificate,
            serving_key,
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
