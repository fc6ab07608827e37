//! Public key infrastructure for skiff.
//!
//! Owns the cluster certificate authority, the API server's serving
//! certificate, the admin client certificate, leaf renewal (including the hot
//! swap of the serving certificate into the live TLS configuration), join
//! tokens in the k3s format and kubeconfig files. It calls nothing else in
//! skiff.
//!
//! Files kept under the TLS directory (mode 0700):
//!
//! | file | what | mode |
//! | --- | --- | --- |
//! | `ca.crt`, `ca.key` | cluster CA, ECDSA P-256, 10 years | 0644, 0600 |
//! | `serving.crt`, `serving.key` | API server serving certificate | 0644, 0600 |
//! | `admin.crt`, `admin.key` | `CN=system:admin, O=system:masters` | 0644, 0600 |
//! | `service.key` | service-account token signing key, ECDSA P-256 (`signing`) | 0600 |
//!
//! Every file is written atomically (temporary file, then rename). Leaf
//! certificates last 365 days and are reissued from the same CA when fewer
//! than 90 days remain, when the serving certificate's SAN set changes, or
//! when a file is missing, unreadable as a certificate or does not belong to
//! the CA. The CA itself is never replaced automatically.

pub mod insecure;
pub mod signing;

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

const CA_CERT_FILE: &str = "ca.crt";
const CA_KEY_FILE: &str = "ca.key";
const SERVING_STEM: &str = "serving";
const ADMIN_STEM: &str = "admin";

const SERVING_COMMON_NAME: &str = "kube-apiserver";
const ADMIN_COMMON_NAME: &str = "system:admin";
const ADMIN_GROUP: &str = "system:masters";

const DIR_MODE: u32 = 0o700;
const CERT_MODE: u32 = 0o644;
const KEY_MODE: u32 = 0o600;
const TOKEN_MODE: u32 = 0o600;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// Certificates start this long before their issue time, for clock skew.
const BACKDATE: Duration = Duration::from_secs(60 * 60);
/// Upper bound on any lifetime, far below the limits of the date types.
const MAX_LIFETIME: Duration = Duration::from_secs(100 * 366 * 24 * 60 * 60);

const TOKEN_PREFIX: &str = "K10";
const TOKEN_SERVER_USER: &str = "server";
const SHA256_HEX_LEN: usize = 64;

/// Everything that can go wrong in this module. Messages are lowercase and
/// name the file or input involved.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A filesystem operation failed.
    #[error("{action} {}: {}", path.display(), describe_io(err))]
    Io {
        action: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    /// A certificate or key could not be parsed.
    #[error("parsing {what}: {reason}")]
    Parse { what: String, reason: String },
    /// Generating or signing a certificate failed.
    #[error("issuing {what}: {err}")]
    Issue { what: String, err: rcgen::Error },
    /// A private key on disk does not belong to its certificate.
    #[error("{}: private key does not match certificate {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// Only one half of the CA (certificate or key) exists.
    #[error("{} exists but {} is missing; restore it or remove both to create a new ca", present.display(), missing.display())]
    IncompleteCa { present: PathBuf, missing: PathBuf },
    /// A subject alternative name is neither an IP address nor a DNS name.
    #[error("invalid subject alternative name {name:?}: {reason}")]
    InvalidSan { name: String, reason: String },
    /// Building the rustls configuration failed.
    #[error("building tls config: {0}")]
    Tls(String),
    /// A join token is malformed. The message never contains the secret.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The given token's secret differs from the one stored in the data dir.
    #[error("token given does not match {}: the data dir belongs to another token", path.display())]
    TokenMismatch { path: PathBuf },
    /// The given full token was made for another cluster CA.
    #[error("token ca hash {given} does not match this cluster's ca hash {actual}")]
    TokenCaMismatch { given: String, actual: String },
}

/// How the serving certificate is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertOptions {
    /// This machine's hostname.
    pub hostname: String,
    /// Extra `--tls-san` values, IP addresses or DNS names.
    pub sans: Vec<String>,
    /// Cluster DNS domain, e.g. `cluster.local`.
    pub cluster_domain: String,
    /// First IP of the service CIDR (the `kubernetes` service).
    pub first_service_ip: IpAddr,
    /// Addresses of this machine.
    pub node_addresses: Vec<IpAddr>,
}

/// Certificate lifetimes. `Default` is the production setting; tests inject
/// short ones through [`Pki::load_or_create_with_lifetimes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Lifetime of a newly created CA.
    pub ca: Duration,
    /// Lifetime of the serving and admin certificates.
    pub leaf: Duration,
    /// Leaf certificates with less than this left are reissued.
    pub renew_before: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            ca: DAY * 3650,
            leaf: DAY * 365,
            renew_before: DAY * 90,
        }
    }
}

/// The Kubernetes user a client certificate stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Subject common name.
    pub user: String,
    /// Every subject organization, in certificate order.
    pub groups: Vec<String>,
}

/// The parts of a join token.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedToken {
    /// Lowercase hex SHA-256 of the CA PEM, when the token carries one.
    pub ca_hash: Option<String>,
    /// `server` unless the token names another user.
    pub username: String,
    /// The shared secret.
    pub secret: String,
}

impl fmt::Debug for ParsedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedToken")
            .field("ca_hash", &self.ca_hash)
            .field("username", &self.username)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// The cluster PKI: the CA plus the current serving and admin certificates.
pub struct Pki {
    dir: PathBuf,
    lifetimes: Lifetimes,
    provider: Arc<CryptoProvider>,
    ca: CertAuthority,
    serving_spec: LeafSpec,
    admin_spec: LeafSpec,
    leaves: RwLock<Leaves>,
    resolver: Arc<ServingCertResolver>,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("lifetimes", &self.lifetimes)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads the PKI from `tls_dir`, creating what is missing and reissuing
    /// leaf certificates that are stale (see the module docs).
    pub fn load_or_create(tls_dir: &Path, opts: &CertOptions) -> Result<Pki, PkiError> {
        Self::load_or_create_with_lifetimes(tls_dir, opts, Lifetimes::default())
    }

    /// [`Pki::load_or_create`] with explicit certificate lifetimes.
    pub fn load_or_create_with_lifetimes(
        tls_dir: &Path,
        opts: &CertOptions,
        lifetimes: Lifetimes,
    ) -> Result<Pki, PkiError> {
        ensure_private_dir(tls_dir)?;
        restrict_key_files(tls_dir)?;
        let ca = load_or_create_ca(tls_dir, &lifetimes)?;
        let serving_spec = LeafSpec::serving(opts)?;
        let admin_spec = LeafSpec::admin();
        let serving = load_or_issue_leaf(tls_dir, &serving_spec, &ca, &lifetimes)?;
        let admin = load_or_issue_leaf(tls_dir, &admin_spec, &ca, &lifetimes)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let resolver = Arc::new(ServingCertResolver::new(serving.certified_key(&provider)?));
        Ok(Pki {
            dir: tls_dir.to_path_buf(),
            lifetimes,
            provider,
            ca,
            serving_spec,
            admin_spec,
            leaves: RwLock::new(Leaves { serving, admin }),
            resolver,
        })
    }

    /// Reissues the serving and admin certificates that have less than the
    /// renewal window left, writes them to disk and swaps the serving
    /// certificate into every TLS config made by [`Pki::server_tls_config`].
    /// Returns whether anything was reissued (the caller should then rewrite
    /// kubeconfigs that embed the admin certificate).
    pub fn renew_if_needed(&self) -> Result<bool, PkiError> {
        let mut leaves = self.write_leaves();
        let mut renewed = false;
        if needs_renewal(leaves.serving.not_after, &self.lifetimes) {
            let serving = self.reissue(&self.serving_spec)?;
            self.resolver
                .replace(serving.certified_key(&self.provider)?);
            leaves.serving = serving;
            renewed = true;
        }
        if needs_renewal(leaves.admin.not_after, &self.lifetimes) {
            leaves.admin = self.reissue(&self.admin_spec)?;
            renewed = true;
        }
        Ok(renewed)
    }

    /// A server config for the API server: ring provider, ALPN `h2` and
    /// `http/1.1`, the live serving certificate, and client certificates
    /// optional but verified against the cluster CA when presented.
    pub fn server_tls_config(&self) -> Result<Arc<ServerConfig>, PkiError> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca.cert_der.clone())
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&self.provider),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Tls(e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.resolver());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Issues a client certificate from the cluster CA, e.g. for a node:
    /// `issue_client_cert("system:node:n1", &["system:nodes"], 365)`.
    /// Returns `(certificate PEM, PKCS#8 key PEM)`; nothing is written.
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        organizations: &[&str],
        validity_days: u32,
    ) -> Result<(String, String), PkiError> {
        let spec = LeafSpec::client(common_name, organizations);
        let leaf = issue_leaf(&self.ca, &spec, DAY * validity_days)?;
        Ok((leaf.cert_pem, leaf.key_pem))
    }

    /// Issues a serving certificate from the cluster CA, e.g. for a node's kubelet
    /// API: `issue_serving_cert("system:node:n1", &["n1", "10.0.0.5"], 365)`. Each
    /// name becomes an IP or DNS subject alternative name. Returns `(certificate
    /// PEM, PKCS#8 key PEM)`; nothing is written.
    pub fn issue_serving_cert(
        &self,
        common_name: &str,
        names: &[&str],
        validity_days: u32,
    ) -> Result<(String, String), PkiError> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let spec = LeafSpec {
            stem: "serving",
            common_name: common_name.into(),
            organizations: Vec::new(),
            sans: dedup_sans(&names)?,
            purpose: ExtendedKeyUsagePurpose::ServerAuth,
        };
        let leaf = issue_leaf(&self.ca, &spec, DAY * validity_days)?;
        Ok((leaf.cert_pem, leaf.key_pem))
    }

    /// Returns the cluster join token stored at `path`, creating it when
    /// absent from `given` (a bare secret or a full token for this CA) or
    /// from a random 32-hex-char secret. An existing token is reused; a
    /// `given` token with another secret is an error.
    pub fn load_or_create_token(
        &self,
        path: &Path,
        given: Option<&str>,
    ) -> Result<String, PkiError> {
        let given = given.map(parse_token).transpose()?;
        if let Some(hash) = given.as_ref().and_then(|g| g.ca_hash.as_deref()) {
            check_ca_hash(hash, self.ca_pem())?;
        }
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            secure_dir(dir)?;
        }
        match read_optional(path)? {
            Some(stored) => {
                set_mode(path, TOKEN_MODE)?;
                self.reuse_token(path, &stored, given.as_ref())
            }
            None => {
                let secret = given.map_or_else(random_secret, |g| g.secret);
                let token = join_token(self.ca_pem(), &secret);
                write_token_file(path, &token)?;
                tracing::info!(path = %path.display(), "created cluster token");
                Ok(token)
            }
        }
    }

    /// The cluster CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// The current admin certificate and key PEMs, read together so that a
    /// concurrent renewal cannot pair a certificate with the wrong key.
    pub fn admin_credentials(&self) -> (String, String) {
        let leaves = self.read_leaves();
        (leaves.admin.cert_pem.clone(), leaves.admin.key_pem.clone())
    }

    /// The current admin client certificate, PEM.
    pub fn admin_cert_pem(&self) -> String {
        self.read_leaves().admin.cert_pem.clone()
    }

    /// The current admin client key, PKCS#8 PEM.
    pub fn admin_key_pem(&self) -> String {
        self.read_leaves().admin.key_pem.clone()
    }

    /// When the current serving certificate expires.
    pub fn serving_not_after(&self) -> DateTime<Utc> {
        self.read_leaves().serving.not_after
    }

    /// The resolver that serves the live serving certificate.
    pub fn resolver(&self) -> Arc<ServingCertResolver> {
        Arc::clone(&self.resolver)
    }

    /// The TLS directory this PKI lives in.
    pub fn tls_dir(&self) -> &Path {
        &self.dir
    }

    fn reissue(&self, spec: &LeafSpec) -> Result<Leaf, PkiError> {
        let leaf = issue_leaf(&self.ca, spec, self.lifetimes.leaf)?;
        write_leaf(&self.dir, spec.stem, &leaf)?;
        tracing::info!(cert = spec.stem, not_after = %leaf.not_after, "renewed certificate");
        Ok(leaf)
    }

    fn reuse_token(
        &self,
        path: &Path,
        stored: &str,
        given: Option<&ParsedToken>,
    ) -> Result<String, PkiError> {
        let parsed = parse_token(stored).map_err(|e| PkiError::Parse {
            what: format!("token file {}", path.display()),
            reason: e.to_string(),
        })?;
        if given.is_some_and(|g| g.secret != parsed.secret) {
            return Err(PkiError::TokenMismatch {
                path: path.to_path_buf(),
            });
        }
        let token = join_token(self.ca_pem(), &parsed.secret);
        if token != stored.trim() {
            tracing::warn!(path = %path.display(), "rewriting token file for the current ca");
            write_token_file(path, &token)?;
        }
        Ok(token)
    }

    fn read_leaves(&self) -> RwLockReadGuard<'_, Leaves> {
        self.leaves.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_leaves(&self) -> RwLockWriteGuard<'_, Leaves> {
        self.leaves.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves the current serving certificate to every TLS handshake; renewal
/// replaces it in place, so live listeners pick it up without a restart.
#[derive(Debug)]
pub struct ServingCertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServingCertResolver {
    fn new(key: CertifiedKey) -> Self {
        ServingCertResolver {
            current: RwLock::new(Arc::new(key)),
        }
    }

    /// The certificate handed to new handshakes.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn replace(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
    }
}

impl ResolvesServerCert for ServingCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The user and groups of a client certificate: subject CN and every O.
/// Only pass certificates that rustls has already verified.
pub fn client_identity(cert_der: &[u8]) -> Result<Identity, PkiError> {
    let cert = parse_cert(cert_der, "client certificate")?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .ok_or_else(|| parse_error("client certificate", "subject has no common name"))?
        .as_str()
        .map_err(|e| parse_error("client certificate common name", e))?
        .to_string();
    let groups = subject
        .iter_organization()
        .map(|o| o.as_str().map(str::to_string))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parse_error("client certificate organization", e))?;
    Ok(Identity { user, groups })
}

/// A full k3s-style join token: `K10<sha256 hex of ca_pem>::server:<secret>`.
pub fn join_token(ca_pem: &str, secret: &str) -> String {
    format!(
        "{TOKEN_PREFIX}{}::{TOKEN_SERVER_USER}:{secret}",
        ca_hash(ca_pem)
    )
}

/// Parses a full token (`K10<hash>::<user>:<secret>`), or a short one: a
/// bare secret (user `server`) or `<user>:<secret>`.
pub fn parse_token(s: &str) -> Result<ParsedToken, PkiError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(PkiError::InvalidToken("token is empty".into()));
    }
    let (ca_hash, credentials) = match s.split_once("::") {
        Some((prefix, rest)) => (Some(parse_token_ca_hash(prefix)?), rest),
        None => (None, s),
    };
    let (username, secret) = credentials
        .split_once(':')
        .unwrap_or((TOKEN_SERVER_USER, credentials));
    if username.is_empty() {
        return Err(PkiError::InvalidToken("token has an empty username".into()));
    }
    if secret.is_empty() {
        return Err(PkiError::InvalidToken("token has an empty secret".into()));
    }
    Ok(ParsedToken {
        ca_hash,
        username: username.to_string(),
        secret: secret.to_string(),
    })
}

/// Whether `token` carries a CA hash equal to the hash of `ca_pem`. A short
/// token (no hash) or a malformed one never matches.
pub fn ca_hash_matches(token: &str, ca_pem: &str) -> bool {
    parse_token(token)
        .ok()
        .and_then(|t| t.ca_hash)
        .is_some_and(|hash| hash == ca_hash(ca_pem))
}

/// Writes a kubeconfig (cluster, user and context all named `default`) with
/// the given file mode, atomically, creating parent directories.
pub fn write_kubeconfig(
    path: &Path,
    mode: u32,
    server_url: &str,
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> Result<(), PkiError> {
    let yaml = kubeconfig_yaml(server_url, ca_pem, client_cert_pem, client_key_pem);
    if kubeconfig_unchanged(path, mode, &yaml) {
        // Nothing to write: a start on a full disk must not need free space.
        return Ok(());
    }
    ensure_parent_dir(path)?;
    write_atomic(path, yaml.as_bytes(), mode)
}

/// Whether `path` already holds `yaml` with permissions `mode`.
fn kubeconfig_unchanged(path: &Path, mode: u32, yaml: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let same_mode = std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode);
    same_mode && std::fs::read(path).is_ok_and(|old| old == yaml.as_bytes())
}

fn kubeconfig_yaml(server_url: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar, whatever the URL holds.
    let server = serde_json::Value::from(server_url).to_string();
    let ca = BASE64.encode(ca_pem);
    let cert = BASE64.encode(cert_pem);
    let key = BASE64.encode(key_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
"
    )
}

// ---------------------------------------------------------------------------
// Certificate authority

struct CertAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    subject_raw: Vec<u8>,
    key_id: Option<Vec<u8>>,
    not_after: DateTime<Utc>,
}

impl CertAuthority {
    fn from_pem(cert_pem: String, key_pem: &str, dir: &Path) -> Result<Self, PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_der = first_cert_der(&cert_pem, &cert_path)?;
        let key = parse_key(key_pem, &key_path)?;
        let info = CertInfo::from_der(&cert_der, &cert_path.display().to_string())?;
        if info.public_key != key.public_key_raw() {
            return Err(PkiError::KeyMismatch {
                cert: cert_path,
                key: key_path,
            });
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| PkiError::Parse {
            what: cert_path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(CertAuthority {
            cert_pem,
            cert_der,
            issuer,
            subject_raw: info.subject_raw,
            key_id: info.subject_key_id,
            not_after: info.not_after,
        })
    }

    fn issued(&self, info: &CertInfo) -> bool {
        info.issuer_raw == self.subject_raw && info.authority_key_id == self.key_id
    }
}

fn load_or_create_ca(dir: &Path, lifetimes: &Lifetimes) -> Result<CertAuthority, PkiError> {
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    match (read_optional(&cert_path)?, read_optional(&key_path)?) {
        (Some(cert_pem), Some(key_pem)) => {
            let ca = CertAuthority::from_pem(cert_pem, &key_pem, dir)?;
            if needs_renewal(ca.not_after, lifetimes) {
                tracing::warn!(path = %cert_path.display(), not_after = %ca.not_after,
                    "cluster ca expires soon and is not renewed automatically");
            }
            Ok(ca)
        }
        (None, None) => create_ca(dir, lifetimes),
        (Some(_), None) => Err(PkiError::IncompleteCa {
            present: cert_path,
            missing: key_path,
        }),
        (None, Some(_)) => Err(PkiError::IncompleteCa {
            present: key_path,
            missing: cert_path,
        }),
    }
}

fn create_ca(dir: &Path, lifetimes: &Lifetimes) -> Result<CertAuthority, PkiError> {
    let common_name = format!("skiff-ca@{}", unix_now().as_secs());
    let key = generate_key("cluster ca")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject_dn(&common_name, &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    set_validity(&mut params, lifetimes.ca);
    let cert = params.self_signed(&key).map_err(|err| PkiError::Issue {
        what: "cluster ca".into(),
        err,
    })?;
    let cert_pem = pem_encode("CERTIFICATE", cert.der());
    let key_pem = key.serialize_pem();
    // The key goes first: a crash in between leaves "key without cert",
    // which is reported instead of silently replaced.
    write_atomic(&dir.join(CA_KEY_FILE), key_pem.as_bytes(), KEY_MODE)?;
    write_atomic(&dir.join(CA_CERT_FILE), cert_pem.as_bytes(), CERT_MODE)?;
    tracing::info!(dir = %dir.display(), %common_name, "created cluster ca");
    CertAuthority::from_pem(cert_pem, &key_pem, dir)
}

// ---------------------------------------------------------------------------
// Leaf certificates

/// What a leaf certificate must look like.
#[derive(Debug, Clone)]
struct LeafSpec {
    stem: &'static str,
    common_name: String,
    organizations: Vec<String>,
    sans: Vec<SanType>,
    purpose: ExtendedKeyUsagePurpose,
}

impl LeafSpec {
    fn serving(opts: &CertOptions) -> Result<Self, PkiError> {
        Ok(LeafSpec {
            stem: SERVING_STEM,
            common_name: SERVING_COMMON_NAME.into(),
            organizations: Vec::new(),
            sans: serving_sans(opts)?,
            purpose: ExtendedKeyUsagePurpose::ServerAuth,
        })
    }

    fn admin() -> Self {
        LeafSpec {
            stem: ADMIN_STEM,
            ..Self::client(ADMIN_COMMON_NAME, &[ADMIN_GROUP])
        }
    }

    fn client(common_name: &str, organizations: &[&str]) -> Self {
        LeafSpec {
            stem: "client",
            common_name: common_name.into(),
            organizations: organizations.iter().map(|o| o.to_string()).collect(),
            sans: Vec::new(),
            purpose: ExtendedKeyUsagePurpose::ClientAuth,
        }
    }

    fn san_keys(&self) -> BTreeSet<String> {
        self.sans.iter().filter_map(san_key).collect()
    }
}

/// A certificate with its key, in the forms the rest of the module needs.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
    not_after: DateTime<Utc>,
}

impl Leaf {
    fn new(cert_der: Vec<u8>, key: &KeyPair, what: &str) -> Result<Self, PkiError> {
        let info = CertInfo::from_der(&cert_der, what)?;
        Ok(Leaf {
            cert_pem: pem_encode("CERTIFICATE", &cert_der),
            key_pem: key.serialize_pem(),
            cert_der: CertificateDer::from(cert_der),
            key_der: key.serialize_der(),
            not_after: info.not_after,
        })
    }

    fn certified_key(&self, provider: &CryptoProvider) -> Result<CertifiedKey, PkiError> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        CertifiedKey::from_der(vec![self.cert_der.clone()], key, provider)
            .map_err(|e| PkiError::Tls(format!("loading serving certificate: {e}")))
    }
}

struct Leaves {
    serving: Leaf,
    admin: Leaf,
}

fn load_or_issue_leaf(
    dir: &Path,
    spec: &LeafSpec,
    ca: &CertAuthority,
    lifetimes: &Lifetimes,
) -> Result<Leaf, PkiError> {
    let reason = match load_leaf(dir, spec, ca, lifetimes)? {
        Ok(leaf) => return Ok(leaf),
        Err(reason) => reason,
    };
    let leaf = issue_leaf(ca, spec, lifetimes.leaf)?;
    write_leaf(dir, spec.stem, &leaf)?;
    tracing::info!(cert = spec.stem, %reason, not_after = %leaf.not_after, "issued certificate");
    Ok(leaf)
}

/// The usable leaf on disk, or why a new one must be issued.
fn load_leaf(
    dir: &Path,
    spec: &LeafSpec,
    ca: &CertAuthority,
    lifetimes: &Lifetimes,
) -> Result<Result<Leaf, String>, PkiError> {
    let (cert_path, key_path) = leaf_paths(dir, spec.stem);
    let (Some(cert_pem), Some(key_pem)) = (read_optional(&cert_path)?, read_optional(&key_path)?)
    else {
        return Ok(Err("no certificate on disk".into()));
    };
    let parsed = first_cert_der(&cert_pem, &cert_path).and_then(|der| {
        let info = CertInfo::from_der(&der, &cert_path.display().to_string())?;
        let key = parse_key(&key_pem, &key_path)?;
        Ok((der, info, key))
    });
    let (cert_der, info, key) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if let Some(problem) = leaf_problem(&info, &key, spec, ca, lifetimes) {
        return Ok(Err(problem.into()));
    }
    Ok(Ok(Leaf {
        cert_pem,
        key_pem,
        cert_der,
        key_der: key.serialize_der(),
        not_after: info.not_after,
    }))
}

fn leaf_problem(
    info: &CertInfo,
    key: &KeyPair,
    spec: &LeafSpec,
    ca: &CertAuthority,
    lifetimes: &Lifetimes,
) -> Option<&'static str> {
    if info.public_key != key.public_key_raw() {
        Some("key does not match certificate")
    } else if !ca.issued(info) {
        Some("certificate was not issued by the current ca")
    } else if needs_renewal(info.not_after, lifetimes) {
        Some("certificate expires soon")
    } else if info.sans != spec.san_keys() {
        Some("subject alternative names changed")
    } else {
        None
    }
}

fn issue_leaf(ca: &CertAuthority, spec: &LeafSpec, lifetime: Duration) -> Result<Leaf, PkiError> {
    let what = format!("{} certificate for {}", spec.stem, spec.common_name);
    let key = generate_key(&what)?;
    let organizations: Vec<&str> = spec.organizations.iter().map(String::as_str).collect();
    let mut params = CertificateParams::default();
    params.distinguished_name = subject_dn(&spec.common_name, &organizations);
    params.subject_alt_names = spec.sans.clone();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![spec.purpose.clone()];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    set_validity(&mut params, lifetime);
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(|err| PkiError::Issue {
            what: what.clone(),
            err,
        })?;
    let der = if organizations.len() > 1 {
        // rcgen keeps one value per attribute type; write the full subject.
        let subject = der::subject_name(&spec.common_name, &organizations);
        der::with_subject(cert.der(), &subject, ca.issuer.key())
            .map_err(|reason| parse_error(&what, reason))?
    } else {
        cert.der().to_vec()
    };
    Leaf::new(der, &key, &what)
}

fn write_leaf(dir: &Path, stem: &str, leaf: &Leaf) -> Result<(), PkiError> {
    let (cert_path, key_path) = leaf_paths(dir, stem);
    write_atomic(&key_path, leaf.key_pem.as_bytes(), KEY_MODE)?;
    write_atomic(&cert_path, leaf.cert_pem.as_bytes(), CERT_MODE)
}

fn leaf_paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    )
}

fn needs_renewal(not_after: DateTime<Utc>, lifetimes: &Lifetimes) -> bool {
    let left = not_after.timestamp() - Utc::now().timestamp();
    let window = i64::try_from(lifetimes.renew_before.as_secs()).unwrap_or(i64::MAX);
    left < window
}

/// Subject with the organizations first, as Go's crypto/x509 orders them.
/// rcgen keeps a single organization; [`issue_leaf`] handles more.
fn subject_dn(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(first) = organizations.first() {
        dn.push(DnType::OrganizationName, *first);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn set_validity(params: &mut CertificateParams, lifetime: Duration) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = unix_now();
    params.not_before = epoch + now.saturating_sub(BACKDATE);
    params.not_after = epoch + now + lifetime.min(MAX_LIFETIME);
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and of full length.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn generate_key(what: &str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|err| PkiError::Issue {
        what: what.to_string(),
        err,
    })
}

// ---------------------------------------------------------------------------
// Subject alternative names

fn serving_sans(opts: &CertOptions) -> Result<Vec<SanType>, PkiError> {
    let domain = opts.cluster_domain.trim().trim_end_matches('.');
    let mut names: Vec<String> = Vec::new();
    names.push(opts.hostname.clone());
    names.extend(opts.node_addresses.iter().map(IpAddr::to_string));
    names.push(Ipv4Addr::LOCALHOST.to_string());
    names.push(Ipv6Addr::LOCALHOST.to_string());
    names.push("localhost".into());
    names.extend(["kubernetes", "kubernetes.default", "kubernetes.default.svc"].map(String::from));
    if !domain.is_empty() {
        names.push(format!("kubernetes.default.svc.{domain}"));
    }
    names.push(opts.first_service_ip.to_string());
    names.extend(opts.sans.iter().cloned());
    dedup_sans(&names)
}

fn dedup_sans(names: &[String]) -> Result<Vec<SanType>, PkiError> {
    let mut seen = BTreeSet::new();
    let mut sans = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let san = parse_san(name)?;
        if san_key(&san).is_some_and(|key| seen.insert(key)) {
            sans.push(san);
        }
    }
    Ok(sans)
}

fn parse_san(name: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*'));
    if !valid {
        return Err(PkiError::InvalidSan {
            name: name.into(),
            reason: "not an ip address or dns name".into(),
        });
    }
    let dns = name
        .to_ascii_lowercase()
        .try_into()
        .map_err(|e: rcgen::Error| PkiError::InvalidSan {
            name: name.into(),
            reason: e.to_string(),
        })?;
    Ok(SanType::DnsName(dns))
}

/// A comparable form of a SAN: lowercase DNS name or canonical IP text.
fn san_key(san: &SanType) -> Option<String> {
    match san {
        SanType::DnsName(name) => Some(name.as_str().to_ascii_lowercase()),
        SanType::IpAddress(ip) => Some(ip.to_string()),
        _ => None,
    }
}

fn general_name_key(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
        GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(|ip| ip.to_string()),
        _ => None,
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Some(IpAddr::from(v4))
    } else {
        <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
    }
}

// ---------------------------------------------------------------------------
// Certificate inspection

/// The facts about a certificate that loading and renewal look at.
struct CertInfo {
    not_after: DateTime<Utc>,
    subject_raw: Vec<u8>,
    issuer_raw: Vec<u8>,
    subject_key_id: Option<Vec<u8>>,
    authority_key_id: Option<Vec<u8>>,
    public_key: Vec<u8>,
    sans: BTreeSet<String>,
}

impl CertInfo {
    fn from_der(der: &[u8], what: &str) -> Result<Self, PkiError> {
        let cert = parse_cert(der, what)?;
        let not_after = DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
            .ok_or_else(|| parse_error(what, "not-after date out of range"))?;
        let mut info = CertInfo {
            not_after,
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            subject_key_id: None,
            authority_key_id: None,
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            sans: BTreeSet::new(),
        };
        for extension in cert.extensions() {
            info.absorb(extension.parsed_extension());
        }
        Ok(info)
    }

    fn absorb(&mut self, extension: &ParsedExtension<'_>) {
        match extension {
            ParsedExtension::SubjectKeyIdentifier(id) => self.subject_key_id = Some(id.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                self.authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            ParsedExtension::SubjectAlternativeName(san) => {
                self.sans
                    .extend(san.general_names.iter().filter_map(general_name_key));
            }
            _ => {}
        }
    }
}

fn parse_cert<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| parse_error(what, e))?;
    Ok(cert)
}

fn first_cert_der(pem: &str, path: &Path) -> Result<CertificateDer<'static>, PkiError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .unwrap_or_else(|| Err(io::Error::other("no certificate found")))
        .map_err(|e| parse_error(&path.display().to_string(), e))
}

fn parse_key(pem: &str, path: &Path) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(pem).map_err(|e| parse_error(&path.display().to_string(), e))
}

fn parse_error(what: &str, reason: impl fmt::Display) -> PkiError {
    PkiError::Parse {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = BASE64.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

// ---------------------------------------------------------------------------
// Tokens

fn ca_hash(ca_pem: &str) -> String {
    hex::encode(Sha256::digest(ca_pem.as_bytes()))
}

fn parse_token_ca_hash(prefix: &str) -> Result<String, PkiError> {
    let hash = prefix.strip_prefix(TOKEN_PREFIX).ok_or_else(|| {
        PkiError::InvalidToken(format!("a full token must start with {TOKEN_PREFIX}"))
    })?;
    if hash.len() != SHA256_HEX_LEN || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(PkiError::InvalidToken(format!(
            "ca hash {hash:?} is not {SHA256_HEX_LEN} hex characters"
        )));
    }
    Ok(hash.to_ascii_lowercase())
}

fn check_ca_hash(given: &str, ca_pem: &str) -> Result<(), PkiError> {
    let actual = ca_hash(ca_pem);
    if given == actual {
        Ok(())
    } else {
        Err(PkiError::TokenCaMismatch {
            given: given.to_string(),
            actual,
        })
    }
}

fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn write_token_file(path: &Path, token: &str) -> Result<(), PkiError> {
    ensure_parent_dir(path)?;
    write_atomic(path, format!("{token}\n").as_bytes(), TOKEN_MODE)
}

// ---------------------------------------------------------------------------
// Files

fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(contents) => Ok(Some(contents)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_error("reading", path, err)),
    }
}

fn ensure_private_dir(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
        .map_err(|e| io_error("setting permissions of", dir, e))
}

/// Creates `dir` if needed and makes it private (0700) whatever the umask; an
/// existing directory with a wider mode is narrowed.
pub fn secure_dir(dir: &Path) -> Result<(), PkiError> {
    ensure_private_dir(dir)
}

/// Narrows an existing file to `mode` (files from older versions, or made under a
/// wide umask); a missing file is fine.
pub fn set_mode(path: &Path, mode: u32) -> Result<(), PkiError> {
    match fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(io_error("setting permissions of", path, e))
        }
        _ => Ok(()),
    }
}

/// Private keys already in the TLS dir are made owner-only (0600).
fn restrict_key_files(dir: &Path) -> Result<(), PkiError> {
    let entries = fs::read_dir(dir).map_err(|e| io_error("reading", dir, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "key") {
            set_mode(&path, KEY_MODE)?;
        }
    }
    Ok(())
}

fn ensure_parent_dir(path: &Path) -> Result<(), PkiError> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => fs::create_dir_all(parent).map_err(|e| io_error("creating", parent, e)),
        None => Ok(()),
    }
}

/// Writes `contents` to a temporary file beside `path` with `mode`, then
/// renames it over `path`, so readers see the old or the new file whole.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let file_name = path
        .file_name()
        .ok_or_else(|| io_error("writing", path, io::Error::other("not a file path")))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{:08x}",
        file_name.to_string_lossy(),
        rand::random::<u32>()
    ));
    let result = write_new_file(&tmp, contents, mode)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| io_error("writing", path, e));
    match &result {
        Ok(()) => sync_parent_dir(path),
        // Best effort: the temporary file may not exist.
        Err(_) => drop(fs::remove_file(&tmp)),
    }
    result
}

/// Makes a rename durable. Best effort: failure only weakens crash safety.
fn sync_parent_dir(path: &Path) {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Err(err) = fs::File::open(parent).and_then(|dir| dir.sync_all()) {
            tracing::debug!(dir = %parent.display(), %err, "syncing directory");
        }
    }
}

fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // The umask may have narrowed the mode given to open.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()
}

fn io_error(action: &'static str, path: &Path, err: io::Error) -> PkiError {
    PkiError::Io {
        action,
        path: path.to_path_buf(),
        err,
    }
}

/// `io::Error` text with a lowercase first letter ("permission denied ...").
fn describe_io(err: &io::Error) -> String {
    let text = err.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Minimal DER editing, for subjects with several organizations

mod der {
    const TAG_SEQUENCE: u8 = 0x30;
    const TAG_SET: u8 = 0x31;
    const TAG_OID: u8 = 0x06;
    const TAG_UTF8_STRING: u8 = 0x0c;
    const TAG_BIT_STRING: u8 = 0x03;
    const TAG_EXPLICIT_VERSION: u8 = 0xa0;
    const OID_COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
    const OID_ORGANIZATION: [u8; 3] = [0x55, 0x04, 0x0a];

    /// One DER element: its tag, its full encoding and its content.
    struct Element<'a> {
        tag: u8,
        encoded: &'a [u8],
        content: &'a [u8],
    }

    /// Reads one element from the front of `input`; returns it and the rest.
    fn read_element(input: &[u8]) -> Result<(Element<'_>, &[u8]), String> {
        let truncated = || "truncated der".to_string();
        let (&tag, after_tag) = input.split_first().ok_or_else(truncated)?;
        let (&first, after_first) = after_tag.split_first().ok_or_else(truncated)?;
        let (len, after_len) = if first < 0x80 {
            (usize::from(first), after_first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || after_first.len() < count {
                return Err("unsupported der length".into());
            }
            let (len_bytes, rest) = after_first.split_at(count);
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, rest)
        };
        if after_len.len() < len {
            return Err(truncated());
        }
        let header = input.len() - after_len.len();
        let (encoded, rest) = input.split_at(header + len);
        Ok((
            Element {
                tag,
                encoded,
                content: &after_len[..len],
            },
            rest,
        ))
    }

    fn read_all(mut input: &[u8]) -> Result<Vec<Element<'_>>, String> {
        let mut elements = Vec::new();
        while !input.is_empty() {
            let (element, rest) = read_element(input)?;
            elements.push(element);
            input = rest;
        }
        Ok(elements)
    }

    fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            let len = content.len().to_be_bytes();
            let skip = len.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (len.len() - skip) as u8);
            out.extend_from_slice(&len[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    fn attribute(oid: &[u8], value: &str) -> Vec<u8> {
        let pair = [
            encode(TAG_OID, oid),
            encode(TAG_UTF8_STRING, value.as_bytes()),
        ]
        .concat();
        encode(TAG_SET, &encode(TAG_SEQUENCE, &pair))
    }

    /// A Name of one RDN per organization followed by the common name.
    pub(super) fn subject_name(common_name: &str, organizations: &[&str]) -> Vec<u8> {
        let mut rdns: Vec<u8> = organizations
            .iter()
            .flat_map(|o| attribute(&OID_ORGANIZATION, o))
            .collect();
        rdns.extend(attribute(&OID_COMMON_NAME, common_name));
        encode(TAG_SEQUENCE, &rdns)
    }

    /// Replaces the subject of `cert_der` with `subject` and signs the result
    /// again with `signer`, which must be the key that signed it originally.
    pub(super) fn with_subject(
        cert_der: &[u8],
        subject: &[u8],
        signer: &impl rcgen::SigningKey,
    ) -> Result<Vec<u8>, String> {
        let (cert, _) = read_element(cert_der)?;
        let parts = read_all(cert.content)?;
        let [tbs, algorithm, _signature] = parts.as_slice() else {
            return Err("certificate is not tbs, algorithm, signature".into());
        };
        if cert.tag != TAG_SEQUENCE || tbs.tag != TAG_SEQUENCE {
            return Err("certificate is not a sequence".into());
        }
        let elements = read_all(tbs.content)?;
        // [0] version (optional), serial, signature, issuer, validity, subject, ...
        let has_version = elements.first().map(|e| e.tag) == Some(TAG_EXPLICIT_VERSION);
        let subject_index = if has_version { 5 } else { 4 };
        let mut fields: Vec<&[u8]> = elements.iter().map(|e| e.encoded).collect();
        let slot = fields
            .get_mut(subject_index)
            .ok_or("tbs certificate too short")?;
        *slot = subject;
        let new_tbs = encode(TAG_SEQUENCE, &fields.concat());
        let signature = signer.sign(&new_tbs).map_err(|e| e.to_string())?;
        let bit_string = encode(TAG_BIT_STRING, &[&[0u8][..], &signature].concat());
        Ok(encode(
            TAG_SEQUENCE,
            &[new_tbs.as_slice(), algorithm.encoded, &bit_string].concat(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, ServerConnection};
    use std::os::unix::fs::MetadataExt;

    fn options() -> CertOptions {
        CertOptions {
            hostname: "edge-1".into(),
            sans: vec![],
            cluster_domain: "cluster.local".into(),
            first_service_ip: "10.43.0.1".parse().unwrap(),
            node_addresses: vec!["192.0.2.10".parse().unwrap()],
        }
    }

    fn short_lifetimes() -> Lifetimes {
        Lifetimes {
            leaf: DAY,
            ..Lifetimes::default()
        }
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o777
    }

    fn der_of(pem: &str) -> CertificateDer<'static> {
        first_cert_der(pem, Path::new("test")).unwrap()
    }

    fn sans_of(pem: &str) -> BTreeSet<String> {
        CertInfo::from_der(&der_of(pem), "test").unwrap().sans
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn client_config(ca_pem: &str, client: Option<(&str, &str)>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(der_of(ca_pem)).unwrap();
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => {
                let key = rustls_pemfile::private_key(&mut key.as_bytes())
                    .unwrap()
                    .unwrap();
                builder
                    .with_client_auth_cert(vec![der_of(cert)], key)
                    .unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }

    fn pump(from: &mut dyn FnMut(&mut Vec<u8>), to: &mut dyn FnMut(&[u8])) {
        let mut buf = Vec::new();
        from(&mut buf);
        to(&buf);
    }

    /// Runs a full in-memory handshake; returns the server-seen client
    /// certificate and the client-seen server certificate.
    fn handshake(
        server_config: Arc<ServerConfig>,
        client_config: Arc<ClientConfig>,
    ) -> Result<(Option<Vec<u8>>, Vec<u8>), rustls::Error> {
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = ClientConnection::new(client_config, name)?;
        let mut server = ServerConnection::new(server_config)?;
        for _ in 0..10 {
            pump(
                &mut |buf| {
                    while client.wants_write() {
                        client.write_tls(buf).unwrap();
                    }
                },
                &mut |mut data| {
                    while !data.is_empty() {
                        server.read_tls(&mut data).unwrap();
                    }
                },
            );
            server.process_new_packets()?;
            pump(
                &mut |buf| {
                    while server.wants_write() {
                        server.write_tls(buf).unwrap();
                    }
                },
                &mut |mut data| {
                    while !data.is_empty() {
                        client.read_tls(&mut data).unwrap();
                    }
                },
            );
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
        }
        assert!(!server.is_handshaking(), "handshake did not finish");
        let client_cert = server
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec());
        let server_cert = client.peer_certificates().unwrap()[0].to_vec();
        Ok((client_cert, server_cert))
    }

    #[test]
    fn first_start_creates_ca_and_leaves_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("server/tls");
        let pki = Pki::load_or_create(&dir, &options()).unwrap();

        assert_eq!(mode(&dir), 0o700);
        for key in ["ca.key", "serving.key", "admin.key"] {
            assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
        }
        for cert in ["ca.crt", "serving.crt", "admin.crt"] {
            assert_eq!(mode(&dir.join(cert)), 0o644, "{cert}");
        }
        assert_eq!(pki.ca_pem(), read(&dir.join("ca.crt")));
        assert_eq!(pki.admin_cert_pem(), read(&dir.join("admin.crt")));
        assert_eq!(pki.admin_key_pem(), read(&dir.join("admin.key")));
        assert_eq!(
            pki.admin_credentials(),
            (pki.admin_cert_pem(), pki.admin_key_pem())
        );

        let ca_der = der_of(pki.ca_pem());
        let ca = parse_cert(&ca_der, "ca").unwrap();
        let cn = ca
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert!(cn.starts_with("skiff-ca@"), "{cn}");
        assert!(ca.is_ca());
        let ca_days = (ca.validity().not_after.timestamp() - Utc::now().timestamp()) / 86400;
        assert!((3649..=3650).contains(&ca_days), "{ca_days}");

        let serving_days = (pki.serving_not_after() - Utc::now()).num_days();
        assert!((364..=365).contains(&serving_days), "{serving_days}");
        let admin = client_identity(&der_of(&pki.admin_cert_pem())).unwrap();
        assert_eq!(admin.user, "system:admin");
        assert_eq!(admin.groups, vec!["system:masters".to_string()]);
    }

    #[test]
    fn serving_certificate_names_every_address() {
        let tmp = tempfile::tempdir().unwrap();
        let mut opts = options();
        opts.sans = vec!["Api.Example.com".into(), "203.0.113.7".into(), " ".into()];
        opts.node_addresses.push("2001:db8::10".parse().unwrap());
        let pki = Pki::load_or_create(tmp.path(), &opts).unwrap();

        let sans = sans_of(&read(&tmp.path().join("serving.crt")));
        let expected: BTreeSet<String> = [
            "edge-1",
            "192.0.2.10",
            "2001:db8::10",
            "127.0.0.1",
            "::1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "10.43.0.1",
            "api.example.com",
            "203.0.113.7",
        ]
        .map(String::from)
        .into();
        assert_eq!(sans, expected);
        drop(pki);
    }

    #[test]
    fn invalid_san_is_rejected_with_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        let mut opts = options();
        opts.sans = vec!["https://api.example.com".into()];
        let err = Pki::load_or_create(tmp.path(), &opts).unwrap_err();
        assert!(err.to_string().contains("https://api.example.com"), "{err}");
    }

    #[test]
    fn later_start_reuses_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let first = Pki::load_or_create(tmp.path(), &options()).unwrap();
        let serving = read(&tmp.path().join("serving.crt"));
        let second = Pki::load_or_create(tmp.path(), &options()).unwrap();
        assert_eq!(first.ca_pem(), second.ca_pem());
        assert_eq!(first.admin_cert_pem(), second.admin_cert_pem());
        assert_eq!(serving, read(&tmp.path().join("serving.crt")));
        assert_eq!(first.serving_not_after(), second.serving_not_after());
    }

    #[test]
    fn new_tls_san_reissues_serving_certificate_from_same_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let first = Pki::load_or_create(tmp.path(), &options()).unwrap();
        let old_serving = read(&tmp.path().join("serving.crt"));
        let mut opts = options();
        opts.sans.push("edge.example.net".into());
        let second = Pki::load_or_create(tmp.path(), &opts).unwrap();
        let new_serving = read(&tmp.path().join("serving.crt"));

        assert_ne!(old_serving, new_serving);
        assert!(sans_of(&new_serving).contains("edge.example.net"));
        assert_eq!(first.ca_pem(), second.ca_pem());
        assert_eq!(first.admin_cert_pem(), second.admin_cert_pem());
        let (client_cert, server_cert) = handshake(
            second.server_tls_config().unwrap(),
            client_config(second.ca_pem(), None),
        )
        .unwrap();
        assert!(client_cert.is_none());
        assert_eq!(server_cert, der_of(&new_serving).to_vec());
    }

    #[test]
    fn leaf_from_another_ca_or_with_wrong_key_is_reissued() {
        let tmp = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        Pki::load_or_create(tmp.path(), &options()).unwrap();
        Pki::load_or_create(other.path(), &options()).unwrap();
        fs::copy(other.path().join("admin.crt"), tmp.path().join("admin.crt")).unwrap();
        fs::copy(
            other.path().join("serving.key"),
            tmp.path().join("serving.key"),
        )
        .unwrap();

        let pki = Pki::load_or_create(tmp.path(), &options()).unwrap();
        let admin = der_of(&pki.admin_cert_pem());
        let info = CertInfo::from_der(&admin, "admin").unwrap();
        assert!(pki.ca.issued(&info));
        let (_, server_cert) = handshake(
            pki.server_tls_config().unwrap(),
            client_config(pki.ca_pem(), None),
        )
        .unwrap();
        assert_eq!(
            server_cert,
            der_of(&read(&tmp.path().join("serving.crt"))).to_vec()
        );
    }

    #[test]
    fn renewal_swaps_serving_certificate_into_live_config() {
        let tmp = tempfile::tempdir().unwrap();
        let pki =
            Pki::load_or_create_with_lifetimes(tmp.path(), &options(), short_lifetimes()).unwrap();
        let config = pki.server_tls_config().unwrap();
        let old_admin = pki.admin_cert_pem();
        let (_, before) = handshake(config.clone(), client_config(pki.ca_pem(), None)).unwrap();
        assert_eq!(
            before,
            der_of(&read(&tmp.path().join("serving.crt"))).to_vec()
        );
        assert!((pki.serving_not_after() - Utc::now()).num_hours() <= 24);

        assert!(pki.renew_if_needed().unwrap());

        // The same config object, built before renewal, now serves the new cert.
        let (_, after) = handshake(config, client_config(pki.ca_pem(), None)).unwrap();
        assert_ne!(before, after);
        assert_eq!(
            after,
            der_of(&read(&tmp.path().join("serving.crt"))).to_vec()
        );
        assert_eq!(pki.resolver().current().cert[0].to_vec(), after);
        assert_ne!(old_admin, pki.admin_cert_pem());
        assert_eq!(pki.admin_cert_pem(), read(&tmp.path().join("admin.crt")));
        assert_eq!(mode(&tmp.path().join("serving.key")), 0o600);
        let leftovers: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn renewal_leaves_fresh_certificates_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(tmp.path(), &options()).unwrap();
        let serving = read(&tmp.path().join("serving.crt"));
        assert!(!pki.renew_if_needed().unwrap());
        assert_eq!(serving, read(&tmp.path().join("serving.crt")));
    }

    #[test]
    fn start_reissues_leaves_that_expire_soon() {
        let tmp = tempfile::tempdir().unwrap();
        let short =
            Pki::load_or_create_with_lifetimes(tmp.path(), &options(), short_lifetimes()).unwrap();
        let normal = Pki::load_or_create(tmp.path(), &options()).unwrap();
        assert!((normal.serving_not_after() - Utc::now()).num_days() >= 364);
        assert_ne!(short.admin_cert_pem(), normal.admin_cert_pem());
        assert_eq!(short.ca_pem(), normal.ca_pem());
    }

    #[test]
    fn tls_config_accepts_anonymous_and_cluster_clients_only() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(tmp.path(), &options()).unwrap();
        let config = pki.server_tls_config().unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );

        let admin_cert = pki.admin_cert_pem();
        let admin_key = pki.admin_key_pem();
        let admin = client_config(pki.ca_pem(), Some((&admin_cert, &admin_key)));
        let (client_cert, _) = handshake(config.clone(), admin).unwrap();
        let identity = client_identity(&client_cert.unwrap()).unwrap();
        assert_eq!(identity.user, "system:admin");
        assert_eq!(identity.groups, vec!["system:masters".to_string()]);

        let (client_cert, _) =
            handshake(config.clone(), client_config(pki.ca_pem(), None)).unwrap();
        assert!(client_cert.is_none());

        let other_dir = tempfile::tempdir().unwrap();
        let other = Pki::load_or_create(other_dir.path(), &options()).unwrap();
        let (cert, key) = (other.admin_cert_pem(), other.admin_key_pem());
        let stranger = client_config(pki.ca_pem(), Some((&cert, &key)));
        assert!(handshake(config, stranger).is_err());
    }

    #[test]
    fn issued_client_certificates_carry_every_group_and_verify() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(tmp.path(), &options()).unwrap();
        let config = pki.server_tls_config().unwrap();
        let cases: [&[&str]; 3] = [
            &[],
            &["system:nodes"],
            &["system:nodes", "team-a", "team-b"],
        ];
        for groups in cases {
            let (cert, key) = pki.issue_client_cert("system:node:n1", groups, 30).unwrap();
            let client = client_config(pki.ca_pem(), Some((&cert, &key)));
            let (seen, _) = handshake(config.clone(), client).unwrap();
            let identity = client_identity(&seen.unwrap()).unwrap();
            assert_eq!(identity.user, "system:node:n1");
            assert_eq!(identity.groups, groups.to_vec());
            let days = (CertInfo::from_der(&der_of(&cert), "c").unwrap().not_after - Utc::now())
                .num_days();
            assert!((29..=30).contains(&days), "{days}");
        }
    }

    #[test]
    fn client_identity_rejects_garbage() {
        let err = client_identity(b"not a certificate").unwrap_err();
        assert!(
            err.to_string().starts_with("parsing client certificate"),
            "{err}"
        );
    }

    #[test]
    fn long_names_with_several_groups_survive_subject_rewrite() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(tmp.path(), &options()).unwrap();
        for len in [1usize, 127, 128, 300] {
            let user = "u".repeat(len);
            let (cert, _) = pki.issue_client_cert(&user, &["a", "b"], 1).unwrap();
            let identity = client_identity(&der_of(&cert)).unwrap();
            assert_eq!(identity.user, user);
            assert_eq!(identity.groups, vec!["a".to_string(), "b".to_string()]);
            let info = CertInfo::from_der(&der_of(&cert), "c").unwrap();
            assert!(pki.ca.issued(&info));
        }
    }

    #[test]
    fn token_round_trip_and_short_forms() {
        let ca = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n";
        let token = join_token(ca, "s3cret");
        let hash = hex::encode(Sha256::digest(ca.as_bytes()));
        assert_eq!(token, format!("K10{hash}::server:s3cret"));
        assert!(ca_hash_matches(&token, ca));
        assert!(!ca_hash_matches(&token, "another ca"));
        assert!(!ca_hash_matches("s3cret", ca));

        let full = parse_token(&token).unwrap();
        assert_eq!(full.ca_hash.as_deref(), Some(hash.as_str()));
        assert_eq!(full.username, "server");
        assert_eq!(full.secret, "s3cret");

        let bare = parse_token(" s3cret\n").unwrap();
        assert_eq!(bare.ca_hash, None);
        assert_eq!(bare.username, "server");
        assert_eq!(bare.secret, "s3cret");

        let user = parse_token("node:pw").unwrap();
        assert_eq!(
            (user.username.as_str(), user.secret.as_str()),
            ("node", "pw")
        );
    }

    #[test]
    fn malformed_tokens_are_rejected_without_echoing_the_secret() {
        let hash = "a".repeat(64);
        for bad in [
            "",
            "   ",
            "K10abc::server:s3cret",
            "X10aaaa::server:s3cret",
            &format!("K10{hash}::server:"),
            &format!("K10{hash}:::s3cret"),
        ] {
            let err = parse_token(bad).unwrap_err();
            assert!(matches!(err, PkiError::InvalidToken(_)), "{bad:?}");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
        assert!(!format!("{:?}", parse_token("s3cret").unwrap()).contains("s3cret"));
    }

    #[test]
    fn token_file_is_created_reused_and_guarded() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(&tmp.path().join("tls"), &options()).unwrap();
        let path = tmp.path().join("server/token");

        let token = pki.load_or_create_token(&path, None).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read(&path).trim(), token);
        let parsed = parse_token(&token).unwrap();
        assert_eq!(parsed.secret.len(), 32);
        assert!(parsed.secret.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(ca_hash_matches(&token, pki.ca_pem()));

        assert_eq!(pki.load_or_create_token(&path, None).unwrap(), token);
        assert_eq!(
            pki.load_or_create_token(&path, Some(&parsed.secret))
                .unwrap(),
            token
        );
        assert_eq!(
            pki.load_or_create_token(&path, Some(&token)).unwrap(),
            token
        );
        let err = pki.load_or_create_token(&path, Some("other")).unwrap_err();
        assert!(matches!(err, PkiError::TokenMismatch { .. }));
        assert!(
            err.to_string().contains("belongs to another token"),
            "{err}"
        );
    }

    #[test]
    fn token_file_is_built_from_given_token() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(tmp.path(), &options()).unwrap();

        let bare_path = tmp.path().join("bare");
        let token = pki
            .load_or_create_token(&bare_path, Some("mysecret"))
            .unwrap();
        assert_eq!(token, join_token(pki.ca_pem(), "mysecret"));

        let full_path = tmp.path().join("full");
        let given = join_token(pki.ca_pem(), "other");
        assert_eq!(
            pki.load_or_create_token(&full_path, Some(&given)).unwrap(),
            given
        );

        let wrong = join_token("another ca", "other");
        let err = pki
            .load_or_create_token(&tmp.path().join("wrong"), Some(&wrong))
            .unwrap_err();
        assert!(matches!(err, PkiError::TokenCaMismatch { .. }), "{err}");
        assert!(!tmp.path().join("wrong").exists());
    }

    #[test]
    fn kubeconfig_embeds_credentials_with_given_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(&tmp.path().join("tls"), &options()).unwrap();
        let path = tmp.path().join("etc/skiff/skiff.yaml");
        let (cert, key) = (pki.admin_cert_pem(), pki.admin_key_pem());
        write_kubeconfig(
            &path,
            0o640,
            "https://[::1]:6443",
            pki.ca_pem(),
            &cert,
            &key,
        )
        .unwrap();

        assert_eq!(mode(&path), 0o640);
        let yaml = read(&path);
        assert!(yaml.contains("server: \"https://[::1]:6443\"\n"), "{yaml}");
        assert!(yaml.contains(&format!(
            "certificate-authority-data: {}\n",
            BASE64.encode(pki.ca_pem())
        )));
        assert!(yaml.contains(&format!(
            "client-certificate-data: {}\n",
            BASE64.encode(&cert)
        )));
        assert!(yaml.contains(&format!("client-key-data: {}\n", BASE64.encode(&key))));
        assert!(yaml.contains("current-context: default\n"));

        write_kubeconfig(
            &path,
            0o600,
            "https://127.0.0.1:6443",
            pki.ca_pem(),
            &cert,
            &key,
        )
        .unwrap();
        assert_eq!(mode(&path), 0o600);
        assert!(read(&path).contains("server: \"https://127.0.0.1:6443\"\n"));
    }

    #[test]
    fn errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("ca.crt")).unwrap();
        let err = Pki::load_or_create(tmp.path(), &options()).unwrap_err();
        let message = err.to_string();
        let expected = format!(
            "reading {}: is a directory",
            tmp.path().join("ca.crt").display()
        );
        assert!(message.starts_with(&expected), "{message}");
    }

    #[test]
    fn half_a_ca_or_a_foreign_ca_key_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        Pki::load_or_create(tmp.path(), &options()).unwrap();
        let other = tempfile::tempdir().unwrap();
        Pki::load_or_create(other.path(), &options()).unwrap();

        fs::copy(other.path().join("ca.key"), tmp.path().join("ca.key")).unwrap();
        let err = Pki::load_or_create(tmp.path(), &options()).unwrap_err();
        assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");

        fs::remove_file(tmp.path().join("ca.key")).unwrap();
        let err = Pki::load_or_create(tmp.path(), &options()).unwrap_err();
        assert!(matches!(err, PkiError::IncompleteCa { .. }), "{err}");
        assert!(err.to_string().contains("ca.key is missing"), "{err}");
    }

    #[test]
    fn pki_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Pki>();
        assert_send_sync::<ServingCertResolver>();
    }
}
