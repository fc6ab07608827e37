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
//!
//! The join token alone only registers a *new* node name. An agent sends its node
//! password (random, made at its first join and kept in its data dir) with every
//! request; the first join records the password's SHA-256 in the Secret
//! `kube-system/<node>.node-password.skiff` (as k3s does), and later joins under that
//! name must send the same password. A name that is taken (its password Secret or its
//! Node exists) without the password is refused: delete the Node and the Secret to
//! register a new machine under it. A node renewing with its own certificate needs no
//! password; admins need none.
//!
//! Serving certificates name only addresses the server can check: the address the
//! request came from, and, for a request over loopback (a caller on the server's own
//! machine: the server's in-process agent), loopback and this machine's addresses.
//! Other requested addresses are left out (and logged).

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::auth::{Identity, PeerAddress, BOOTSTRAP_GROUP};
use super::status::ApiError;
use super::validation::validate_dns1123_subdomain;
use super::SharedState;

pub use crate::model::join::{
    CredentialsRequest, CredentialsResponse, CREDENTIALS_PATH, KUBELET_CLIENT_USER,
};
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
    peer: Option<Extension<PeerAddress>>,
    Json(request): Json<CredentialsRequest>,
) -> Response {
    let peer = peer.map(|Extension(PeerAddress(address))| address.ip());
    let result = async {
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
        if needs_password(&identity) {
            check_node_password(&state, &request.node_name, request.node_password.as_deref())
                .await?;
        }
        let (certificate, key) = issuer
            .issue_node_credentials(&request.node_name)
            .map_err(ApiError::internal)?;
        let serving = match &request.serving_addresses {
            Some(requested) => {
                let addresses = verifiable_addresses(requested, peer, is_local_address);
                if addresses.len() < requested.len() {
                    tracing::warn!(node = %request.node_name, ?requested, ?peer, granted = ?addresses,
                        "serving certificate: addresses the request did not come from are left out");
                }
                Some(
                    issuer
                        .issue_node_serving_cert(&request.node_name, &addresses)
                        .map_err(ApiError::internal)?,
                )
            }
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
    }
    .await;
    match result {
        Ok(response) => (StatusCode::OK, Json(response)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Whether joining under a name needs that name's node password: for the join
/// token's holders, not for the node itself (renewing with its certificate) or admins.
fn needs_password(identity: &Identity) -> bool {
    let is = |g: &str| identity.groups.iter().any(|x| x == g);
    is(BOOTSTRAP_GROUP) && !is("system:masters") && !is("system:nodes")
}

/// The Secret holding a node's password hash, as k3s names it.
pub fn password_secret_name(node: &str) -> String {
    format!("{node}.node-password.skiff")
}

fn password_hash(password: &str) -> String {
    hex::encode(Sha256::digest(password.as_bytes()))
}

fn secret_key(name: &str) -> Result<String, ApiError> {
    let secrets = super::resources::find("", "v1", "secrets")
        .ok_or_else(|| ApiError::internal("no secrets resource"))?;
    Ok(secrets.key(Some("kube-system"), name))
}

/// The stored password hash of `node`, if a password Secret exists.
async fn stored_hash(state: &SharedState, node: &str) -> Result<Option<String>, ApiError> {
    let key = secret_key(&password_secret_name(node))?;
    let Some(entry) = state.store.get(&key).await.map_err(store_error)? else {
        return Ok(None);
    };
    let secret: serde_json::Value = serde_json::from_slice(&entry.value)
        .map_err(|e| ApiError::internal(format!("reading {key}: {e}")))?;
    let hash = secret["data"]["hash"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    Ok(Some(hash))
}

fn store_error(e: crate::store::StoreError) -> ApiError {
    ApiError::internal(e.to_string())
}

fn taken(node: &str, why: &str) -> ApiError {
    ApiError::forbidden(format!(
        "node \"{node}\" is already registered and {why}: if this is a new machine for that name, \
         delete the old registration first (kubectl delete node {node}; \
         kubectl -n kube-system delete secret {})",
        password_secret_name(node)
    ))
}

/// Accepts the join of `node` with `password`: a new name records the password, a
/// known name must match it.
async fn check_node_password(
    state: &SharedState,
    node: &str,
    password: Option<&str>,
) -> Result<(), ApiError> {
    let password = password.filter(|p| !p.is_empty());
    let matches = |hash: &str, password: Option<&str>| {
        password.is_some_and(|p| {
            let given = password_hash(p);
            given.len() == hash.len()
                && given
                    .bytes()
                    .zip(hash.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
    };
    if let Some(hash) = stored_hash(state, node).await? {
        return if matches(&hash, password) {
            Ok(())
        } else {
            Err(taken(node, "this agent's node password does not match"))
        };
    }
    let Some(password) = password else {
        return Err(ApiError::bad_request(format!(
            "joining as node \"{node}\" needs a node password (an agent older than the server?)"
        )));
    };
    let nodes = super::resources::find("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("no nodes resource"))?;
    if state
        .store
        .get(&nodes.key(None, node))
        .await
        .map_err(store_error)?
        .is_some()
    {
        return Err(taken(node, "has no node password on record"));
    }
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": password_secret_name(node), "namespace": "kube-system",
                     "uid": super::object::new_uid(), "creationTimestamp": super::object::now_rfc3339(),
                     "labels": {"skiff.io/node": node}},
        "type": "skiff.io/node-password",
        "data": {"hash": base64::engine::general_purpose::STANDARD.encode(password_hash(password))},
    });
    let create = crate::store::WriteOp::Create {
        key: secret_key(&password_secret_name(node))?,
        value: super::object::to_stored(&secret),
    };
    match state.store.write(create).await {
        Ok(_) => Ok(()),
        // Another join under the same name won the race: judge against its password.
        Err(crate::store::StoreError::AlreadyExists(_)) => match stored_hash(state, node).await? {
            Some(hash) if matches(&hash, Some(password)) => Ok(()),
            _ => Err(taken(node, "this agent's node password does not match")),
        },
        Err(e) => Err(store_error(e)),
    }
}

/// The requested serving addresses the server can vouch for: the request's peer
/// address; for a peer on loopback (a caller on this machine), loopback and this
/// machine's own addresses too.
fn verifiable_addresses(
    requested: &[IpAddr],
    peer: Option<IpAddr>,
    is_local: impl Fn(IpAddr) -> bool,
) -> Vec<IpAddr> {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let Some(peer) = peer.map(canonical) else {
        return Vec::new();
    };
    requested
        .iter()
        .copied()
        .filter(|&ip| {
            let ip = canonical(ip);
            ip == peer || (peer.is_loopback() && (ip.is_loopback() || is_local(ip)))
        })
        .collect()
}

/// Whether `ip` is assigned to one of this machine's interfaces.
fn is_local_address(ip: IpAddr) -> bool {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return false;
    };
    addrs.filter_map(|a| a.address).any(|a| {
        a.as_sockaddr_in().map(|v4| IpAddr::V4(v4.ip())) == Some(ip)
            || a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())) == Some(ip)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_addresses_are_only_those_the_server_can_check() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let requested = [
            ip("10.0.0.5"),
            ip("10.9.9.9"),
            ip("127.0.0.1"),
            ip("192.168.1.1"),
        ];
        let none_local = |_| false;
        assert_eq!(
            verifiable_addresses(&requested, Some(ip("10.0.0.5")), none_local),
            vec![ip("10.0.0.5")]
        );
        assert_eq!(
            verifiable_addresses(&requested, Some(ip("::ffff:10.0.0.5")), none_local),
            vec![ip("10.0.0.5")]
        );
        let server_has = |a: IpAddr| a == ip("192.168.1.1");
        assert_eq!(
            verifiable_addresses(&requested, Some(ip("127.0.0.1")), server_has),
            vec![ip("127.0.0.1"), ip("192.168.1.1")]
        );
        assert_eq!(
            verifiable_addresses(&requested, Some(ip("10.0.0.7")), server_has),
            Vec::<IpAddr>::new()
        );
        assert!(verifiable_addresses(&requested, None, server_has).is_empty());
    }

    #[test]
    fn only_token_holders_need_a_node_password() {
        let who = |groups: &[&str]| Identity {
            user: "u".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        assert!(needs_password(&who(&[BOOTSTRAP_GROUP])));
        assert!(!needs_password(&who(&["system:nodes"])));
        assert!(!needs_password(&who(&["system:masters"])));
    }

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
