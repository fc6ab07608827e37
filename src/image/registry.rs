//! A client for the OCI Distribution API v2: manifests and blobs, with bearer-token
//! and basic authentication driven by the registry's `WWW-Authenticate` challenge,
//! per-host TLS from `registries.yaml`, and the registry's own error messages.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use serde::Deserialize;

use super::reference::Digest;
use super::registries::{Credentials, Endpoint, RegistriesConfig, TlsConfig};
use super::spec::MANIFEST_ACCEPT;
use super::ImageError;
use crate::pki::insecure::NoVerification;

/// Manifests and indexes larger than this are refused (containerd's limit too).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence while reading a response before giving up.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Token lifetime when the token server does not say.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
const USER_AGENT: &str = concat!("skiff/", env!("CARGO_PKG_VERSION"));

/// HTTP clients (one per registry host, for its TLS settings) and cached
/// authorization headers, shared by every pull.
pub struct RegistryClient {
    config: RegistriesConfig,
    clients: Mutex<HashMap<String, reqwest::Client>>,
    auth: Mutex<HashMap<String, CachedAuth>>,
}

#[derive(Clone)]
struct CachedAuth {
    header: String,
    expires: Option<Instant>,
}

/// Talks to one endpoint about one repository.
pub struct Session {
    client: Arc<RegistryClient>,
    http: reqwest::Client,
    pub endpoint: Endpoint,
    credentials: Option<Credentials>,
}

impl RegistryClient {
    pub fn new(config: RegistriesConfig) -> RegistryClient {
        RegistryClient {
            config,
            clients: Mutex::new(HashMap::new()),
            auth: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &RegistriesConfig {
        &self.config
    }

    /// A session with `endpoint` for an image of `registry`. `explicit` credentials
    /// (e.g. a pod's pull secret) apply to the image's own registry host.
    pub fn session(
        self: &Arc<Self>,
        endpoint: Endpoint,
        registry: &str,
        explicit: Option<&Credentials>,
    ) -> Result<Session, ImageError> {
        let credentials = match explicit {
            Some(c) if endpoint.is_default || endpoint.host == registry => Some(c.clone()),
            _ => self.config.credentials(&endpoint, registry)?,
        };
        let http = self.http_client(&endpoint, registry)?;
        Ok(Session {
            client: Arc::clone(self),
            http,
            endpoint,
            credentials,
        })
    }

    fn http_client(
        &self,
        endpoint: &Endpoint,
        registry: &str,
    ) -> Result<reqwest::Client, ImageError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&endpoint.host) {
            return Ok(client.clone());
        }
        let tls = self
            .config
            .host_config(endpoint, registry)
            .and_then(|c| c.tls.clone())
            .unwrap_or_default();
        let tls_config = tls_client_config(&tls, &endpoint.host)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| http_error(&endpoint.api_root, e))?;
        clients.insert(endpoint.host.clone(), client.clone());
        Ok(client)
    }

    fn cached_auth(&self, key: &str) -> Option<String> {
        let mut auth = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        match auth.get(key) {
            Some(entry) if entry.expires.is_none_or(|t| t > Instant::now()) => {
                Some(entry.header.clone())
            }
            Some(_) => {
                auth.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember_auth(&self, key: String, header: String, lifetime: Option<Duration>) {
        let expires = lifetime.map(|l| Instant::now() + l.saturating_sub(Duration::from_secs(5)));
        let mut auth = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        auth.insert(key, CachedAuth { header, expires });
    }
}

impl Session {
    fn url(&self, kind: &str, reference: &str) -> String {
        format!(
            "{}/{}/{kind}/{reference}",
            self.endpoint.api_root, self.endpoint.repository
        )
    }

    fn auth_key(&self) -> String {
        format!("{} {}", self.endpoint.api_root, self.endpoint.repository)
    }

    /// Fetches a manifest or index by tag or digest: its bytes and Content-Type.
    pub async fn manifest(&self, reference: &str) -> Result<(Vec<u8>, Option<String>), ImageError> {
        let url = self.url("manifests", reference);
        let response = self
            .send(Method::GET, &url, |r| r.header(ACCEPT, MANIFEST_ACCEPT))
            .await?;
        let response = check_status(response, &url).await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_limited(response, &url, MAX_MANIFEST_BYTES).await?;
        Ok((body, content_type))
    }

    /// Starts a blob download at `offset` (a Range request when non-zero). The
    /// response is 200 (whole blob) or 206 (from `offset`).
    pub async fn blob(&self, digest: &Digest, offset: u64) -> Result<Response, ImageError> {
        let url = self.url("blobs", &digest.to_string());
        let response = self
            .send(Method::GET, &url, |r| {
                if offset > 0 {
                    r.header(RANGE, format!("bytes={offset}-"))
                } else {
                    r
                }
            })
            .await?;
        check_status(response, &url).await
    }

    /// Sends a request, answering one authentication challenge if the registry
    /// asks for it.
    async fn send(
        &self,
        method: Method,
        url: &str,
        extra: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, ImageError> {
        let key = self.auth_key();
        let mut authorization = self.client.cached_auth(&key);
        let mut challenged = false;
        loop {
            let mut request = extra(self.http.request(method.clone(), url));
            if let Some(header) = &authorization {
                request = request.header(AUTHORIZATION, header);
            }
            let response = request.send().await.map_err(|e| http_error(url, e))?;
            if response.status() != StatusCode::UNAUTHORIZED || challenged {
                return Ok(response);
            }
            challenged = true;
            let Some(challenge) = Challenge::from_headers(response.headers()) else {
                return Ok(response);
            };
            match self.answer(&challenge).await? {
                Some((header, lifetime)) => {
                    self.client
                        .remember_auth(key.clone(), header.clone(), lifetime);
                    authorization = Some(header);
                }
                None => return Ok(response),
            }
        }
    }

    /// The Authorization header that answers `challenge`, or None when we have
    /// nothing to offer (the 401 then reaches the caller with its message).
    async fn answer(
        &self,
        challenge: &Challenge,
    ) -> Result<Option<(String, Option<Duration>)>, ImageError> {
        match challenge.scheme.as_str() {
            "basic" => Ok(match &self.credentials {
                Some(Credentials::Basic { username, password }) => {
                    Some((basic_header(username, password), None))
                }
                _ => None,
            }),
            "bearer" => {
                let (token, lifetime) = self.fetch_token(challenge).await?;
                Ok(Some((format!("Bearer {token}"), Some(lifetime))))
            }
            _ => Ok(None),
        }
    }

    /// Gets a token from the challenge's realm (anonymous, basic credentials, or an
    /// OAuth2 refresh token).
    async fn fetch_token(&self, challenge: &Challenge) -> Result<(String, Duration), ImageError> {
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| ImageError::Registry {
                status: 401,
                message: "bearer challenge without a realm".to_string(),
            })?;
        let default_scope = format!("repository:{}:pull", self.endpoint.repository);
        let scope = challenge.params.get("scope").unwrap_or(&default_scope);
        let service = challenge.params.get("service");
        let request = match &self.credentials {
            Some(Credentials::IdentityToken(refresh)) => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", refresh)
                    .append_pair("client_id", "skiff")
                    .append_pair("scope", scope);
                if let Some(service) = service {
                    form.append_pair("service", service);
                }
                self.http
                    .post(realm)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.finish())
            }
            credentials => {
                let mut url = reqwest::Url::parse(realm).map_err(|e| ImageError::Http {
                    url: realm.clone(),
                    message: format!("invalid token realm: {e}"),
                })?;
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = service {
                        query.append_pair("service", service);
                    }
                    query.append_pair("scope", scope);
                }
                let request = self.http.get(url);
                match credentials {
                    Some(Credentials::Basic { username, password }) => {
                        request.header(AUTHORIZATION, basic_header(username, password))
                    }
                    _ => request,
                }
            }
        };
        let response = request.send().await.map_err(|e| http_error(realm, e))?;
        let response = check_status(response, realm).await?;
        let body = read_limited(response, realm, 1024 * 1024).await?;
        parse_token(&body).ok_or_else(|| ImageError::Registry {
            status: 200,
            message: format!("token server {realm} answered without a token"),
        })
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

fn parse_token(body: &[u8]) -> Option<(String, Duration)> {
    let parsed: TokenResponse = serde_json::from_slice(body).ok()?;
    let token = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))?;
    let lifetime = parsed
        .expires_in
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    Some((token, lifetime))
}

fn basic_header(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Turns a non-success response into an error carrying the registry's message.
async fn check_status(response: Response, url: &str) -> Result<Response, ImageError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = read_limited(response, url, 64 * 1024)
        .await
        .unwrap_or_default();
    Err(ImageError::Registry {
        status: status.as_u16(),
        message: registry_message(status, &body),
    })
}

/// Reads a whole response body, refusing more than `limit` bytes.
async fn read_limited(
    mut response: Response,
    url: &str,
    limit: usize,
) -> Result<Vec<u8>, ImageError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ImageError::Registry {
            status: response.status().as_u16(),
            message: format!("response from {url} is larger than {limit} bytes"),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| http_error(url, e))? {
        if body.len() + chunk.len() > limit {
            return Err(ImageError::Registry {
                status: response.status().as_u16(),
                message: format!("response from {url} is larger than {limit} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[derive(Deserialize)]
struct ErrorsBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
    /// Docker Hub's token server.
    #[serde(default)]
    details: Option<String>,
    /// OAuth2 token servers.
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

/// The registry's own words for a failure: `manifest unknown: tag "nope"`. Falls
/// back to the HTTP status and a short plain-text body.
pub fn registry_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(parsed) = serde_json::from_slice::<ErrorsBody>(body) {
        let items: Vec<String> = parsed.errors.iter().map(error_item_text).collect();
        if !items.is_empty() {
            return items.join("; ");
        }
        let oauth = match (parsed.error, parsed.error_description) {
            (Some(e), Some(d)) => Some(format!("{e}: {d}")),
            (e, d) => e.or(d),
        };
        if let Some(text) = parsed.details.or(oauth) {
            return text;
        }
    }
    let reason = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase();
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text.starts_with('<') {
        format!("{reason} (http {})", status.as_u16())
    } else {
        let short: String = text.chars().take(200).collect();
        format!("{reason} (http {}): {short}", status.as_u16())
    }
}

fn error_item_text(item: &ErrorItem) -> String {
    let headline = item
        .message
        .clone()
        .filter(|m| !m.is_empty())
        .or_else(|| {
            item.code
                .as_ref()
                .map(|c| c.to_ascii_lowercase().replace('_', " "))
        })
        .unwrap_or_else(|| "error".to_string());
    if let Some(tag) = item
        .detail
        .as_ref()
        .and_then(|d| d.get("Tag"))
        .and_then(|t| t.as_str())
    {
        if item.code.as_deref() == Some("MANIFEST_UNKNOWN") {
            return format!("{headline}: manifest tagged by {tag:?} is not found");
        }
    }
    match item.detail.as_ref().and_then(detail_text) {
        Some(detail) => format!("{headline}: {detail}"),
        None => headline,
    }
}

/// `"text"` → text; `{"Digest":"x"}` → `digest "x"`; access lists (401/403) →
/// `repository:team/app:pull`.
fn detail_text(detail: &serde_json::Value) -> Option<String> {
    match detail {
        serde_json::Value::Array(items) if items.is_empty() => None,
        serde_json::Value::Array(items) => Some(
            items
                .iter()
                .map(
                    |item| match (item.get("Type"), item.get("Name"), item.get("Action")) {
                        (Some(t), Some(n), Some(a)) => format!(
                            "{}:{}:{}",
                            t.as_str().unwrap_or_default(),
                            n.as_str().unwrap_or_default(),
                            a.as_str().unwrap_or_default()
                        ),
                        _ => item.to_string(),
                    },
                )
                .collect::<Vec<_>>()
                .join(", "),
        ),
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if s.is_empty() => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(map) if map.is_empty() => None,
        serde_json::Value::Object(map) => Some(
            map.iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{} {s:?}", k.to_ascii_lowercase()),
                    other => format!("{} {other}", k.to_ascii_lowercase()),
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
        other => Some(other.to_string()),
    }
}

/// A transport error for `url`, with its causes (the url is not repeated).
pub fn http_error(url: &str, e: reqwest::Error) -> ImageError {
    ImageError::Http {
        url: url.to_string(),
        message: error_chain(&e.without_url()),
    }
}

/// The error and its causes, so "connection refused" is not lost.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, PartialEq)]
pub struct Challenge {
    /// Lowercase: `bearer`, `basic`.
    pub scheme: String,
    pub params: HashMap<String, String>,
}

impl Challenge {
    fn from_headers(headers: &HeaderMap) -> Option<Challenge> {
        headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(Challenge::parse)
            .min_by_key(|c| if c.scheme == "bearer" { 0 } else { 1 })
    }

    /// Parses `Bearer realm="https://auth",service="reg",scope="repository:a:pull"`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.is_empty() {
            return None;
        }
        let mut params = HashMap::new();
        let mut chars = rest.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
                chars.next();
            }
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if key.is_empty() {
                break;
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        other => value.push(other),
                    }
                }
            } else {
                while let Some(c) = chars.peek() {
                    if *c == ',' {
                        break;
                    }
                    value.push(*c);
                    chars.next();
                }
            }
            params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }
}

fn ring() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's trusted roots, loaded once.
fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::warn!(%error, "loading system CA certificates");
        }
        loaded.certs
    })
}

/// rustls (ring) settings for one registry host: system roots plus `ca_file`, a
/// client certificate, or no verification at all when asked.
fn tls_client_config(tls: &TlsConfig, host: &str) -> Result<ClientConfig, ImageError> {
    let tls_err = |reason: String| ImageError::Tls {
        host: host.to_string(),
        reason,
    };
    let provider = ring();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(native_roots().iter().cloned());
        if let Some(ca_file) = &tls.ca_file {
            for cert in read_certs(ca_file).map_err(tls_err)? {
                roots
                    .add(cert)
                    .map_err(|e| tls_err(format!("{}: {e}", ca_file.display())))?;
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert).map_err(tls_err)?;
            let key = read_key(key).map_err(tls_err)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| tls_err(format!("client certificate: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(tls_err(
                "cert_file and key_file must be given together".to_string(),
            ))
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_slice()).collect();
    let certs = certs.map_err(|e| format!("parsing {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificates in {}", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("parsing {}: {e}", path.display()))?
        .ok_or_else(|| format!("no private key in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull,push");
        let b = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(b.scheme, "basic");
        assert_eq!(b.params["realm"], "Registry Realm");
        let odd = Challenge::parse(r#"bearer realm=http://x/token , service = "a \"b\"""#).unwrap();
        assert_eq!(odd.params["realm"], "http://x/token");
        assert_eq!(odd.params["service"], "a \"b\"");
    }

    #[test]
    fn registry_errors_keep_the_registrys_words() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#;
        assert_eq!(
            registry_message(StatusCode::NOT_FOUND, body),
            r#"manifest unknown: manifest tagged by "nope" is not found"#
        );
        let body = br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":{"Digest":"sha256:ab"}}]}"#;
        assert_eq!(
            registry_message(StatusCode::NOT_FOUND, body),
            r#"blob unknown to registry: digest "sha256:ab""#
        );
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Class":"","Name":"team/app","Action":"pull"}]}]}"#;
        assert_eq!(
            registry_message(StatusCode::UNAUTHORIZED, body),
            "authentication required: repository:team/app:pull"
        );
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":"manifest tagged by \"nope\" is not found"}]}"#;
        assert_eq!(
            registry_message(StatusCode::NOT_FOUND, body),
            r#"manifest unknown: manifest tagged by "nope" is not found"#
        );
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#;
        assert_eq!(
            registry_message(StatusCode::UNAUTHORIZED, body),
            "authentication required"
        );
        assert_eq!(
            registry_message(
                StatusCode::UNAUTHORIZED,
                br#"{"details":"incorrect username or password"}"#
            ),
            "incorrect username or password"
        );
        assert_eq!(
            registry_message(StatusCode::BAD_GATEWAY, b"<html>oops</html>"),
            "bad gateway (http 502)"
        );
        assert_eq!(
            registry_message(StatusCode::NOT_FOUND, b"404 page not found\n"),
            "not found (http 404): 404 page not found"
        );
    }

    #[test]
    fn token_responses() {
        let (t, l) = parse_token(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!((t.as_str(), l), ("abc", Duration::from_secs(300)));
        let (t, l) = parse_token(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!((t.as_str(), l), ("xyz", DEFAULT_TOKEN_LIFETIME));
        assert!(parse_token(br#"{"token":""}"#).is_none());
    }

    #[test]
    fn tls_settings_are_checked() {
        let insecure = TlsConfig {
            insecure_skip_verify: true,
            ..TlsConfig::default()
        };
        assert!(tls_client_config(&insecure, "h").is_ok());
        let missing_ca = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        let err = tls_client_config(&missing_ca, "reg.example").unwrap_err();
        assert!(err.to_string().contains("reg.example"), "{err}");
        let half = TlsConfig {
            cert_file: Some("/x".into()),
            ..TlsConfig::default()
        };
        assert!(tls_client_config(&half, "h").is_err());
    }
}
