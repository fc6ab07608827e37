//! API clients for skiff's own components (controllers, scheduler, agents): kube-rs
//! clients that present a client certificate and trust only the cluster CA, so every
//! component reaches the store through the same API, checks and credentials as kubectl.

pub mod lenient;

use base64::Engine;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("building a client for {server}: {message}")]
    Config { server: String, message: String },
}

/// Where the API is and how to prove who we are.
#[derive(Clone)]
pub struct Credentials {
    pub server: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// The credentials as a kubeconfig document.
pub fn kubeconfig_yaml(credentials: &Credentials) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: skiff\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: skiff\ncurrent-context: skiff\n",
        credentials.server,
        b64(&credentials.ca_pem),
        b64(&credentials.cert_pem),
        b64(&credentials.key_pem),
    )
}

/// How a skiff component names itself to the API: `skiff/<version> <component>`
/// (Kubernetes' controller manager says `kube-controller-manager/<version> …/<controller>`).
pub fn user_agent(component: &str) -> String {
    format!("skiff/{} {component}", env!("CARGO_PKG_VERSION"))
}

/// A kube-rs client for these credentials that names itself `user_agent` (as
/// Kubernetes components do: the server's logs then say which client a request or a
/// lagging watch belongs to).
pub async fn connect(
    credentials: &Credentials,
    user_agent: &str,
) -> Result<kube::Client, ClientError> {
    let error = |message: String| ClientError::Config {
        server: credentials.server.clone(),
        message,
    };
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&kubeconfig_yaml(credentials))
        .map_err(|e| error(e.to_string()))?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| error(e.to_string()))?;
    let agent = axum::http::HeaderValue::from_str(user_agent)
        .map_err(|e| error(format!("user agent {user_agent:?}: {e}")))?;
    config.headers.push((axum::http::header::USER_AGENT, agent));
    kube::Client::try_from(config).map_err(|e| error(e.to_string()))
}
