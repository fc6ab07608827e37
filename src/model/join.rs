//! The wire contract of joining a node: where an agent asks for its credentials,
//! what it sends and what it gets back, and the user the API server dials kubelets as.
//! The API serves it (`api::join`), the agent calls it (`agent::join`).
//!
//! Owns: [`CredentialsRequest`], [`CredentialsResponse`], [`CREDENTIALS_PATH`],
//! [`KUBELET_CLIENT_USER`]. Calls: nothing in skiff.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub const CREDENTIALS_PATH: &str = "/v1-skiff/node-credentials";
/// The user the API server is when it calls a node's kubelet API.
pub const KUBELET_CLIENT_USER: &str = "system:kube-apiserver-kubelet-client";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRequest {
    pub node_name: String,
    /// Also issue a kubelet serving certificate for these addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_addresses: Option<Vec<IpAddr>>,
    /// The node's password, proving it is the machine that first joined as the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_password: Option<String>,
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
