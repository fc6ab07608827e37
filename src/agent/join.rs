//! Joining a cluster: fetch the cluster CA from `/cacerts`, check it against the CA
//! hash in the join token *before* any secret is sent, then trade the token for this
//! node's own client certificate (`CN=system:node:<name>`, `O=system:nodes`). The
//! credentials are kept under the data dir and renewed (with the node's own
//! certificate) when under 30 days remain.
//!
//! The node's kubelet API (`kubelet`) serves with a certificate from the same
//! endpoint: `serving_credentials` asks for it with the node's addresses
//! (`servingAddresses`), keeps it as `<node>-serving.crt` / `<node>-serving.key` beside
//! the client credentials, and renews it the same way (also when the node's address
//! is no longer among its names).
//!
//! Each node has a password, made at its first join and kept as `<node>.password`
//! beside its credentials: the server registers a name to the first password it sees
//! and refuses later joins under that name without it (see `api::join`). The
//! credentials directory and its parent are owner-only (0700) and every file in it
//! 0600, whatever the umask; wider modes found at start-up are narrowed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};

use crate::client::Credentials;
use crate::model::join::{CredentialsRequest, CredentialsResponse, CREDENTIALS_PATH};

const RENEW_BEFORE_DAYS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("invalid server url {0:?}: expected https://HOST:PORT")]
    BadUrl(String),
    #[error("invalid join token: {0}")]
    BadToken(String),
    #[error("the server's CA does not match the token's CA hash (expected {expected}, got {actual}): wrong server or tampered connection")]
    CaMismatch { expected: String, actual: String },
    #[error("connecting to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("{url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the server refused node {node:?}: {message}")]
    NameTaken { node: String, message: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// host:port and the TLS name of an https URL.
fn authority(url: &str) -> Result<(String, String), JoinError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| JoinError::BadUrl(url.into()))?;
    let authority = rest.split('/').next().unwrap_or("").to_string();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("").to_string()
    } else {
        authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&authority)
            .to_string()
    };
    if host.is_empty() {
        return Err(JoinError::BadUrl(url.into()));
    }
    let address = if authority.contains(':') && !authority.ends_with(']') {
        authority
    } else {
        format!("{authority}:6443")
    };
    Ok((address, host))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(url: &str, e: impl std::fmt::Display) -> JoinError {
    JoinError::Connect {
        url: url.into(),
        message: e.to_string(),
    }
}

/// Accepts any server certificate: used only to fetch the CA, whose hash is checked
/// against the token before anything secret is sent.
fn insecure_config(url: &str) -> Result<rustls::ClientConfig, JoinError> {
    let provider = provider();
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(url, e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::pki::insecure::NoVerification(
                provider,
            )))
            .with_no_client_auth(),
    )
}

fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// TLS trusting only `ca_pem`, presenting `client` (cert, key) when given.
fn verified_config(
    url: &str,
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> Result<rustls::ClientConfig, JoinError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_certs(ca_pem) {
        roots.add(cert).map_err(|e| tls_error(url, e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(url, e))?
        .with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key.as_bytes())
                .ok()
                .flatten()
                .ok_or_else(|| tls_error(url, "unreadable node key"))?;
            builder
                .with_client_auth_cert(pem_certs(cert), key)
                .map_err(|e| tls_error(url, e))
        }
    }
}

/// One HTTP/1.1 request over TLS; returns (status, body).
async fn request(
    server: &str,
    tls: rustls::ClientConfig,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<String>,
) -> Result<(u16, String), JoinError> {
    let url = format!("{server}{path}");
    let (address, host) = authority(server)?;
    let tcp = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|e| tls_error(&url, e))?;
    let name = ServerName::try_from(host).map_err(|e| tls_error(&url, e))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| tls_error(&url, e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| tls_error(&url, e))?;
    tokio::spawn(connection);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", address.as_str())
        .header("content-type", "application/json");
    if let Some(token) = bearer {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let req = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| tls_error(&url, e))?;
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| tls_error(&url, e))?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| tls_error(&url, e))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

fn ok_body(server: &str, path: &str, (status, body): (u16, String)) -> Result<String, JoinError> {
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(JoinError::Refused {
            url: format!("{server}{path}"),
            status,
            body,
        })
    }
}

/// The cluster CA, checked against the token's hash when it carries one.
pub async fn fetch_ca(server: &str, token: &str) -> Result<String, JoinError> {
    let parsed = crate::pki::parse_token(token).map_err(|e| JoinError::BadToken(e.to_string()))?;
    let reply = request(
        server,
        insecure_config(server)?,
        Method::GET,
        "/cacerts",
        None,
        None,
    )
    .await?;
    let ca = ok_body(server, "/cacerts", reply)?;
    let actual = hex::encode(Sha256::digest(ca.as_bytes()));
    match parsed.ca_hash {
        Some(expected) if expected != actual => Err(JoinError::CaMismatch { expected, actual }),
        Some(_) => Ok(ca),
        None => {
            tracing::warn!(
                "the join token carries no CA hash; trusting the server's CA on first use"
            );
            Ok(ca)
        }
    }
}

/// Where a node keeps its credentials.
struct Files {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl Files {
    fn new(dir: &Path, node: &str) -> Self {
        Files {
            cert: dir.join(format!("{node}.crt")),
            key: dir.join(format!("{node}.key")),
            ca: dir.join("ca.crt"),
        }
    }
}

fn days_left(cert_pem: &str) -> Option<i64> {
    let der = pem_certs(cert_pem).into_iter().next()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    Some((not_after - chrono::Utc::now().timestamp()) / 86_400)
}

/// Makes `dir` (and its parent, the agent's own directory) owner-only, and narrows
/// any file in it to 0600.
fn secure_dir(dir: &Path) -> Result<(), JoinError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |path: &Path, source| JoinError::Io {
        action: "securing",
        path: path.into(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let private = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io(path, e))
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        private(parent, 0o700)?;
    }
    private(dir, 0o700)?;
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            private(&entry.path(), 0o600)?;
        }
    }
    Ok(())
}

/// This node's password: read from the data dir, or made (32 random bytes, hex) and
/// kept there on first use.
pub fn node_password(dir: &Path, node: &str) -> Result<String, JoinError> {
    let path = dir.join(format!("{node}.password"));
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_string()),
        Ok(_) => Err(JoinError::Io {
            action: "reading",
            path,
            source: std::io::Error::other("the node password file is empty; delete it (and the node's registration) to start over"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let password = hex::encode(rand::random::<[u8; 32]>());
            write_secret(&path, &password)?;
            Ok(password)
        }
        Err(source) => Err(JoinError::Io {
            action: "reading",
            path,
            source,
        }),
    }
}

fn write_secret(path: &Path, contents: &str) -> Result<(), JoinError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |action, source| JoinError::Io {
        action,
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("writing", e))?;
    // A leftover temporary file keeps its old mode through open: narrow it.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| io("writing", e))?;
    std::io::Write::write_all(&mut file, contents.as_bytes()).map_err(|e| io("writing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("renaming", e))
}

/// This node's credentials: reused from `dir` while valid, else requested with the
/// join token (or renewed with the node's own certificate).
pub async fn node_credentials(
    server: &str,
    token: &str,
    node: &str,
    dir: &Path,
) -> Result<Credentials, JoinError> {
    secure_dir(dir)?;
    let files = Files::new(dir, node);
    let stored = (
        std::fs::read_to_string(&files.cert),
        std::fs::read_to_string(&files.key),
        std::fs::read_to_string(&files.ca),
    );
    if let (Ok(cert), Ok(key), Ok(ca)) = stored {
        if days_left(&cert).is_some_and(|d| d > RENEW_BEFORE_DAYS) {
            return Ok(Credentials {
                server: server.into(),
                ca_pem: ca,
                cert_pem: cert,
                key_pem: key,
            });
        }
    }
    let ca = fetch_ca(server, token).await?;
    let secret = crate::pki::parse_token(token).map_err(|e| JoinError::BadToken(e.to_string()))?;
    let issued = request_credentials(
        server,
        &ca,
        &secret,
        CredentialsRequest {
            node_name: node.to_string(),
            serving_addresses: None,
            node_password: Some(node_password(dir, node)?),
        },
    )
    .await?;
    write_secret(&files.ca, &issued.ca)?;
    write_secret(&files.key, &issued.key)?;
    write_secret(&files.cert, &issued.certificate)?;
    Ok(Credentials {
        server: server.into(),
        ca_pem: issued.ca,
        cert_pem: issued.certificate,
        key_pem: issued.key,
    })
}

/// Asks the server for credentials with the join token.
async fn request_credentials(
    server: &str,
    ca: &str,
    token: &crate::pki::ParsedToken,
    wanted: CredentialsRequest,
) -> Result<CredentialsResponse, JoinError> {
    let wanted_name = wanted.node_name.clone();
    let body = serde_json::to_string(&wanted).unwrap_or_default();
    let tls = verified_config(server, ca, None)?;
    let bearer = format!("{}:{}", token.username, token.secret);
    let reply = request(
        server,
        tls,
        Method::POST,
        CREDENTIALS_PATH,
        Some(&bearer),
        Some(body),
    )
    .await?;
    if reply.0 == 403 {
        let status: serde_json::Value = serde_json::from_str(&reply.1).unwrap_or_default();
        if let Some(message) = status["message"]
            .as_str()
            .filter(|m| m.contains("node password"))
        {
            return Err(JoinError::NameTaken {
                node: wanted_name,
                message: message.to_string(),
            });
        }
    }
    serde_json::from_str(&ok_body(server, CREDENTIALS_PATH, reply)?)
        .map_err(|e| tls_error(server, format!("unreadable credentials: {e}")))
}

/// The kubelet API's serving certificate and key (PEM), and the cluster CA.
#[derive(Debug, Clone)]
pub struct ServingCredentials {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl ServingCredentials {
    /// Whole days until the certificate expires.
    pub fn days_left(&self) -> Option<i64> {
        days_left(&self.cert_pem)
    }
}

/// This node's kubelet serving certificate: reused from `dir` while valid for more
/// than 30 days and naming `node` and every one of `addresses`, else requested with
/// the join token.
pub async fn serving_credentials(
    server: &str,
    token: &str,
    node: &str,
    addresses: &[IpAddr],
    dir: &Path,
) -> Result<ServingCredentials, JoinError> {
    let cert_path = dir.join(format!("{node}-serving.crt"));
    let key_path = dir.join(format!("{node}-serving.key"));
    let ca_path = dir.join("ca.crt");
    secure_dir(dir)?;
    let stored = (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
        std::fs::read_to_string(&ca_path),
    );
    if let (Ok(cert), Ok(key), Ok(ca)) = stored {
        let fresh = days_left(&cert).is_some_and(|d| d > RENEW_BEFORE_DAYS);
        if fresh && names_cover(&cert, node, addresses) {
            return Ok(ServingCredentials {
                ca_pem: ca,
                cert_pem: cert,
                key_pem: key,
            });
        }
    }
    let ca = fetch_ca(server, token).await?;
    let secret = crate::pki::parse_token(token).map_err(|e| JoinError::BadToken(e.to_string()))?;
    let wanted = CredentialsRequest {
        node_name: node.to_string(),
        serving_addresses: Some(addresses.to_vec()),
        node_password: Some(node_password(dir, node)?),
    };
    let issued = request_credentials(server, &ca, &secret, wanted).await?;
    let (Some(cert), Some(key)) = (issued.serving_certificate, issued.serving_key) else {
        return Err(tls_error(
            server,
            "the server issued no serving certificate (a server older than this agent?)",
        ));
    };
    write_secret(&ca_path, &issued.ca)?;
    write_secret(&key_path, &key)?;
    write_secret(&cert_path, &cert)?;
    Ok(ServingCredentials {
        ca_pem: issued.ca,
        cert_pem: cert,
        key_pem: key,
    })
}

/// Whether a certificate's subject alternative names include `node` and `addresses`.
fn names_cover(cert_pem: &str, node: &str, addresses: &[IpAddr]) -> bool {
    use x509_parser::extensions::GeneralName;
    let Some(der) = pem_certs(cert_pem).into_iter().next() else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(n) => dns.push(n.to_ascii_lowercase()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => ips.push(IpAddr::from(
                    <[u8; 4]>::try_from(*bytes).unwrap_or_default(),
                )),
                16 => ips.push(IpAddr::from(
                    <[u8; 16]>::try_from(*bytes).unwrap_or_default(),
                )),
                _ => {}
            },
            _ => {}
        }
    }
    dns.contains(&node.to_ascii_lowercase()) && addresses.iter().all(|a| ips.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_address_and_tls_name() {
        assert_eq!(
            authority("https://10.0.0.1:6443").unwrap(),
            ("10.0.0.1:6443".to_string(), "10.0.0.1".to_string())
        );
        assert_eq!(
            authority("https://server.local").unwrap(),
            ("server.local:6443".to_string(), "server.local".to_string())
        );
        assert_eq!(authority("https://[::1]:6443").unwrap().1, "::1");
        assert!(authority("http://x:1").is_err());
    }

    #[test]
    fn serving_certificates_must_name_the_node_and_its_addresses() {
        use crate::api::join::{CredentialIssuer, PkiIssuer};
        let dir = tempfile::tempdir().expect("tempdir");
        let options = crate::pki::CertOptions {
            hostname: "server".into(),
            sans: Vec::new(),
            cluster_domain: "cluster.local".into(),
            first_service_ip: "10.43.0.1".parse().expect("ip"),
            node_addresses: Vec::new(),
        };
        let pki = crate::pki::Pki::load_or_create(dir.path(), &options).expect("pki");
        let issuer = PkiIssuer(Arc::new(pki));
        let ip: IpAddr = "10.0.0.5".parse().expect("ip");
        let (cert, _) = issuer
            .issue_node_serving_cert("node1", &[ip])
            .expect("serving cert");
        assert!(names_cover(&cert, "node1", &[ip]));
        assert!(!names_cover(&cert, "node2", &[ip]));
        assert!(!names_cover(
            &cert,
            "node1",
            &["10.0.0.6".parse().expect("ip")]
        ));
        assert!(days_left(&cert).is_some_and(|d| d > 360));
        let (client, _) = issuer.issue_kubelet_client_cert().expect("client cert");
        let der = pem_certs(&client).remove(0);
        let identity = crate::pki::client_identity(der.as_ref()).expect("identity");
        assert_eq!(identity.user, "system:kube-apiserver-kubelet-client");
        assert_eq!(identity.groups, vec!["system:masters".to_string()]);
    }
}
