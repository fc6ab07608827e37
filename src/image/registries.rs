//! `registries.yaml` in k3s's format: mirrors (endpoints tried in order, then the
//! registry itself) with optional repository rewrites, and per-host credentials and
//! TLS settings.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000"]
//!     rewrite: {"^library/(.*)": "mirrored/$1"}
//! configs:
//!   "127.0.0.1:5000":
//!     auth: {username: u, password: p}   # or auth: base64(u:p), or identitytoken
//!     tls: {ca_file: /x/ca.pem, cert_file: ..., key_file: ..., insecure_skip_verify: false}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use regex::Regex;
use serde::Deserialize;

use super::reference::{Reference, DEFAULT_REGISTRY};
use super::ImageError;

/// Where k3s keeps the file; skiff's equivalent.
pub const DEFAULT_REGISTRIES_PATH: &str = "/etc/skiff/registries.yaml";
/// The API endpoint of Docker Hub.
const DOCKER_HUB_ENDPOINT: &str = "https://registry-1.docker.io";
/// A mirror entry that applies to every registry.
const WILDCARD: &str = "*";

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegistriesConfig {
    #[serde(default)]
    pub mirrors: BTreeMap<String, MirrorConfig>,
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
    /// k3s's `--disable-default-registry-endpoint`: pull only from the mirrors, never
    /// from the registry itself (air-gapped sites). Not a key of the file.
    #[serde(skip)]
    pub disable_default_endpoint: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MirrorConfig {
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Regex on the repository → replacement (`$1` groups), applied for this
    /// mirror's endpoints only.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostConfig {
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// base64 of `username:password`.
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default, alias = "identity_token")]
    pub identitytoken: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Credentials for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token, traded at the token endpoint.
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::IdentityToken(_) => write!(f, "IdentityToken(***)"),
        }
    }
}

/// One place to pull an image from.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The API root, e.g. `http://127.0.0.1:5000/v2` (no trailing slash).
    pub api_root: String,
    /// `host[:port]` of the endpoint, the key for `configs`.
    pub host: String,
    /// The repository to ask this endpoint for (after rewrites).
    pub repository: String,
    /// True for the registry itself (the fallback after the mirrors).
    pub is_default: bool,
}

impl RegistriesConfig {
    /// Reads `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<RegistriesConfig, ImageError> {
        match std::fs::read_to_string(path) {
            Ok(text) => RegistriesConfig::parse(&text).map_err(|e| match e {
                ImageError::RegistriesConfig { reason, .. } => ImageError::RegistriesConfig {
                    path: path.to_path_buf(),
                    reason,
                },
                other => other,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistriesConfig::default()),
            Err(source) => Err(ImageError::Io {
                action: "reading",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses YAML text and checks endpoints and rewrites.
    pub fn parse(text: &str) -> Result<RegistriesConfig, ImageError> {
        let invalid = |reason: String| ImageError::RegistriesConfig {
            path: PathBuf::from("registries.yaml"),
            reason,
        };
        if text.trim().is_empty() {
            return Ok(RegistriesConfig::default());
        }
        let config: RegistriesConfig =
            serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for (registry, mirror) in &config.mirrors {
            for endpoint in &mirror.endpoint {
                parse_endpoint_url(endpoint)
                    .map_err(|reason| invalid(format!("mirror {registry:?}: {reason}")))?;
            }
            for pattern in mirror.rewrite.keys() {
                Regex::new(pattern).map_err(|e| {
                    invalid(format!("mirror {registry:?}: rewrite {pattern:?}: {e}"))
                })?;
            }
        }
        Ok(config)
    }

    /// The endpoints to try for `reference`, in order: the registry's mirrors (or
    /// the `*` mirrors), then the registry itself.
    pub fn endpoints(&self, reference: &Reference) -> Vec<Endpoint> {
        let mirror = self
            .mirrors
            .get(&reference.registry)
            .or_else(|| self.mirrors.get(WILDCARD));
        let mut out = Vec::new();
        if let Some(mirror) = mirror {
            let repository = rewrite_repository(&mirror.rewrite, &reference.repository);
            for url in &mirror.endpoint {
                if let Ok((api_root, host)) = parse_endpoint_url(url) {
                    out.push(Endpoint {
                        api_root,
                        host,
                        repository: repository.clone(),
                        is_default: false,
                    });
                }
            }
        }
        let default = default_endpoint(&reference.registry);
        let skip_default = self.disable_default_endpoint && mirror.is_some();
        if !skip_default && !out.iter().any(|e| e.api_root == default.0) {
            out.push(Endpoint {
                api_root: default.0,
                host: default.1,
                repository: reference.repository.clone(),
                is_default: true,
            });
        }
        out
    }

    /// The `configs` entry for an endpoint host: exact host, then (for Docker Hub's
    /// API host) `docker.io`, then `*`.
    pub fn host_config(&self, endpoint: &Endpoint, registry: &str) -> Option<&HostConfig> {
        self.configs
            .get(&endpoint.host)
            .or_else(|| {
                endpoint
                    .is_default
                    .then(|| self.configs.get(registry))
                    .flatten()
            })
            .or_else(|| self.configs.get(WILDCARD))
    }

    /// Credentials configured for an endpoint.
    pub fn credentials(
        &self,
        endpoint: &Endpoint,
        registry: &str,
    ) -> Result<Option<Credentials>, ImageError> {
        match self
            .host_config(endpoint, registry)
            .and_then(|c| c.auth.as_ref())
        {
            Some(auth) => auth.credentials(&endpoint.host),
            None => Ok(None),
        }
    }
}

impl AuthConfig {
    /// The credentials this entry describes (`identitytoken` wins, then
    /// `username`/`password`, then `auth`).
    pub fn credentials(&self, host: &str) -> Result<Option<Credentials>, ImageError> {
        if let Some(token) = self.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials::IdentityToken(token.clone())));
        }
        if let Some(username) = self.username.as_ref().filter(|u| !u.is_empty()) {
            return Ok(Some(Credentials::Basic {
                username: username.clone(),
                password: self.password.clone().unwrap_or_default(),
            }));
        }
        let Some(auth) = self.auth.as_ref().filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        let invalid = || ImageError::RegistriesConfig {
            path: PathBuf::from("registries.yaml"),
            reason: format!("configs {host:?}: auth is not base64 of username:password"),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| invalid())?;
        let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
        let (username, password) = decoded.split_once(':').ok_or_else(invalid)?;
        Ok(Some(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }))
    }
}

/// `http(s)://host[:port][/path]` → (API root, `host[:port]`). An empty path means
/// `/v2`; any other path is used as the API root as given (k3s's override path).
fn parse_endpoint_url(url: &str) -> Result<(String, String), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("endpoint {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("endpoint {url:?}: scheme must be http or https"));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("endpoint {url:?}: no host"))?;
    let host = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let path = parsed.path().trim_end_matches('/');
    let path = if path.is_empty() { "/v2" } else { path };
    let origin = parsed.origin().ascii_serialization();
    Ok((format!("{origin}{path}"), host))
}

/// The registry's own endpoint: Docker Hub's API host for `docker.io`, plain HTTP
/// for loopback registries, HTTPS for everything else.
fn default_endpoint(registry: &str) -> (String, String) {
    if registry == DEFAULT_REGISTRY {
        let host = DOCKER_HUB_ENDPOINT.trim_start_matches("https://");
        return (format!("{DOCKER_HUB_ENDPOINT}/v2"), host.to_string());
    }
    let scheme = if is_loopback_host(registry) {
        "http"
    } else {
        "https"
    };
    (format!("{scheme}://{registry}/v2"), registry.to_string())
}

fn is_loopback_host(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.split(':').next().unwrap_or(registry),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Applies the first matching rewrite rule.
fn rewrite_repository(rules: &BTreeMap<String, String>, repository: &str) -> String {
    for (pattern, replacement) in rules {
        if let Ok(re) = Regex::new(pattern) {
            if re.is_match(repository) {
                return re.replace(repository, replacement.as_str()).into_owned();
            }
        }
    }
    repository.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "https://mirror.example.com/prefix/v2"
    rewrite:
      "^library/(.*)": "mirrored/$1"
  "*":
    endpoint: ["https://catch-all.example.com"]
configs:
  "127.0.0.1:5000":
    auth:
      username: alice
      password: secret
    tls:
      insecure_skip_verify: true
  "mirror.example.com":
    auth:
      auth: Ym9iOmh1bnRlcjI=
    tls:
      ca_file: /etc/ssl/mirror-ca.pem
  "docker.io":
    auth:
      identitytoken: refresh-me
"#;

    #[test]
    fn parses_k3s_registries_yaml() {
        let c = RegistriesConfig::parse(YAML).unwrap();
        let hub = c.mirrors.get("docker.io").unwrap();
        assert_eq!(hub.endpoint.len(), 2);
        let local = c.configs.get("127.0.0.1:5000").unwrap();
        assert!(local.tls.as_ref().unwrap().insecure_skip_verify);
        let tls = c.configs["mirror.example.com"].tls.clone().unwrap();
        assert_eq!(
            tls.ca_file.unwrap(),
            PathBuf::from("/etc/ssl/mirror-ca.pem")
        );
    }

    #[test]
    fn mirrors_come_first_then_the_registry_with_rewrites_only_on_mirrors() {
        let c = RegistriesConfig::parse(YAML).unwrap();
        let r = Reference::parse("busybox:1.36").unwrap();
        let eps = c.endpoints(&r);
        let roots: Vec<&str> = eps.iter().map(|e| e.api_root.as_str()).collect();
        assert_eq!(
            roots,
            [
                "http://127.0.0.1:5000/v2",
                "https://mirror.example.com/prefix/v2",
                "https://registry-1.docker.io/v2"
            ]
        );
        assert_eq!(eps[0].repository, "mirrored/busybox");
        assert_eq!(eps[2].repository, "library/busybox");
        assert!(eps[2].is_default && !eps[0].is_default);

        let other = Reference::parse("quay.io/org/app").unwrap();
        let roots: Vec<String> = c
            .endpoints(&other)
            .into_iter()
            .map(|e| e.api_root)
            .collect();
        assert_eq!(
            roots,
            ["https://catch-all.example.com/v2", "https://quay.io/v2"]
        );
        let local = Reference::parse("127.0.0.1:5000/app").unwrap();
        let no_mirrors = RegistriesConfig::default();
        assert_eq!(
            no_mirrors.endpoints(&local)[0].api_root,
            "http://127.0.0.1:5000/v2"
        );
    }

    #[test]
    fn credentials_from_every_form() {
        let c = RegistriesConfig::parse(YAML).unwrap();
        let r = Reference::parse("busybox").unwrap();
        let eps = c.endpoints(&r);
        assert_eq!(
            c.credentials(&eps[0], "docker.io").unwrap(),
            Some(Credentials::Basic {
                username: "alice".into(),
                password: "secret".into()
            })
        );
        assert_eq!(
            c.credentials(&eps[1], "docker.io").unwrap(),
            Some(Credentials::Basic {
                username: "bob".into(),
                password: "hunter2".into()
            })
        );
        assert_eq!(
            c.credentials(&eps[2], "docker.io").unwrap(),
            Some(Credentials::IdentityToken("refresh-me".into()))
        );
    }

    #[test]
    fn rejects_bad_files() {
        assert!(RegistriesConfig::parse("mirrors: [1, 2]").is_err());
        assert!(RegistriesConfig::parse("mirrors:\n  x:\n    endpoint: [\"ftp://a\"]").is_err());
        assert!(RegistriesConfig::parse("mirrors:\n  x:\n    rewrite: {\"(\": \"y\"}").is_err());
        assert!(RegistriesConfig::parse("").unwrap().mirrors.is_empty());
        let missing = RegistriesConfig::load(Path::new("/nonexistent/registries.yaml")).unwrap();
        assert!(missing.configs.is_empty());
    }
}
