//! A deliberately small HTTP/1.1 client over tokio-rustls, enough for the benchmark:
//! keep-alive requests with `Content-Length` or chunked response bodies, and
//! line-by-line reading of watch streams. The crate's hyper has no client feature, so
//! this avoids a new dependency.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The cluster CA and the admin client certificate, as PEM, from a kubeconfig.
pub struct Credentials {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl Credentials {
    /// Reads the three `*-data` fields of the kubeconfig skiff writes.
    pub fn from_kubeconfig(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?;
        Ok(Credentials {
            ca_pem: kubeconfig_field(&text, "certificate-authority-data")?,
            cert_pem: kubeconfig_field(&text, "client-certificate-data")?,
            key_pem: kubeconfig_field(&text, "client-key-data")?,
        })
    }
}

fn kubeconfig_field(text: &str, key: &str) -> Result<Vec<u8>> {
    let prefix = format!("{key}:");
    let value = text
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix(&prefix))
        .with_context(|| format!("kubeconfig has no {key}"))?;
    BASE64
        .decode(value.trim().trim_matches('"'))
        .with_context(|| format!("kubeconfig {key} is not base64"))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Opens TLS connections to one server address.
#[derive(Clone)]
pub struct Client {
    connector: TlsConnector,
    address: SocketAddr,
}

impl Client {
    /// A client that verifies the server against the cluster CA and presents the
    /// admin client certificate.
    pub fn authenticated(address: SocketAddr, credentials: &Credentials) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut credentials.ca_pem.as_slice()) {
            roots.add(cert?)?;
        }
        let chain = rustls_pemfile::certs(&mut credentials.cert_pem.as_slice())
            .collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pemfile::private_key(&mut credentials.key_pem.as_slice())?
            .context("kubeconfig client key holds no private key")?;
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        Ok(Self::with_config(address, config))
    }

    /// A client that verifies the server against the cluster CA and presents no
    /// certificate: requests authenticate with a bearer token instead.
    pub fn token_only(address: SocketAddr, credentials: &Credentials) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut credentials.ca_pem.as_slice()) {
            roots.add(cert?)?;
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self::with_config(address, config))
    }

    /// A client for the readiness probe only: on a fresh data dir the CA does not
    /// exist before the server is up, so the probe cannot verify the server.
    /// `/readyz` is public and nothing secret is sent.
    pub fn unverified(address: SocketAddr) -> Result<Self> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider())))
            .with_no_client_auth();
        Ok(Self::with_config(address, config))
    }

    fn with_config(address: SocketAddr, config: ClientConfig) -> Self {
        Client {
            connector: TlsConnector::from(Arc::new(config)),
            address,
        }
    }

    pub async fn connect(&self) -> Result<Conn> {
        let tcp = TcpStream::connect(self.address).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let tls = self.connector.connect(name, tcp).await?;
        Ok(Conn {
            io: BufReader::with_capacity(64 * 1024, tls),
        })
    }
}

/// Accepts any server certificate but still checks handshake signatures.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One request: method, path with query, and an optional body with its type.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub body: Option<(&'static str, Vec<u8>)>,
    /// Extra header lines (name, value).
    pub headers: Vec<(&'static str, String)>,
}

impl Request {
    pub fn get(path: impl Into<String>) -> Self {
        Request {
            method: "GET",
            path: path.into(),
            body: None,
            headers: Vec::new(),
        }
    }

    /// The same request with one more header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn post_json(path: impl Into<String>, body: &Value) -> Self {
        Request {
            method: "POST",
            path: path.into(),
            body: Some(("application/json", body.to_string().into_bytes())),
            headers: Vec::new(),
        }
    }

    pub fn merge_patch(path: impl Into<String>, body: &Value) -> Self {
        Request {
            method: "PATCH",
            path: path.into(),
            body: Some((
                "application/merge-patch+json",
                body.to_string().into_bytes(),
            )),
            headers: Vec::new(),
        }
    }

    fn head_and_body(&self) -> Vec<u8> {
        let mut text = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: skiff-bench\r\nAccept: application/json\r\n",
            self.method, self.path
        );
        for (name, value) in &self.headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some((content_type, body)) = &self.body {
            text.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        text.push_str("\r\n");
        let mut bytes = text.into_bytes();
        if let Some((_, body)) = &self.body {
            bytes.extend_from_slice(body);
        }
        bytes
    }
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// Fails with the request and the whole answer unless the status is `expected`.
    pub fn expect(self, expected: u16, request: &Request) -> Result<Self> {
        ensure!(
            self.status == expected,
            "{} {} answered {} (expected {expected}): {}",
            request.method,
            request.path,
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        Ok(self)
    }

    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).context("response body is not JSON")
    }
}

enum BodyKind {
    Length(usize),
    Chunked,
}

struct Head {
    status: u16,
    body: BodyKind,
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    io: BufReader<TlsStream<TcpStream>>,
}

impl Conn {
    /// Sends `request` and reads the whole response.
    pub async fn send(&mut self, request: &Request) -> Result<Response> {
        self.write_request(request).await?;
        let head = self.read_head().await?;
        let body = self.read_body(&head).await?;
        Ok(Response {
            status: head.status,
            body,
        })
    }

    /// Sends `request` and fails unless it answers `expected`.
    pub async fn call(&mut self, request: &Request, expected: u16) -> Result<Response> {
        self.send(request).await?.expect(expected, request)
    }

    /// Starts a watch; the connection then belongs to the stream.
    pub async fn watch(mut self, path: String) -> Result<WatchStream> {
        let request = Request::get(path);
        self.write_request(&request).await?;
        let head = self.read_head().await?;
        if head.status != 200 || !matches!(head.body, BodyKind::Chunked) {
            let body = self.read_body(&head).await.unwrap_or_default();
            bail!(
                "watch {} answered {}: {}",
                request.path,
                head.status,
                String::from_utf8_lossy(&body)
            );
        }
        Ok(WatchStream {
            conn: self,
            pending: Vec::new(),
            ended: false,
        })
    }

    async fn write_request(&mut self, request: &Request) -> Result<()> {
        let stream = self.io.get_mut();
        stream.write_all(&request.head_and_body()).await?;
        stream.flush().await?;
        Ok(())
    }

    async fn read_line(&mut self) -> Result<String> {
        let mut line = Vec::new();
        let read = self.io.read_until(b'\n', &mut line).await?;
        ensure!(read > 0, "connection closed by the server");
        let text = String::from_utf8(line).context("header line is not UTF-8")?;
        Ok(text.trim_end().to_string())
    }

    async fn read_head(&mut self) -> Result<Head> {
        let status_line = self.read_line().await?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let mut body = BodyKind::Length(0);
        loop {
            let line = self.read_line().await?;
            if line.is_empty() {
                return Ok(Head { status, body });
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                body = BodyKind::Length(value.parse().context("bad content-length")?);
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                body = BodyKind::Chunked;
            }
        }
    }

    async fn read_body(&mut self, head: &Head) -> Result<Vec<u8>> {
        match head.body {
            BodyKind::Length(length) => {
                let mut body = vec![0; length];
                self.io.read_exact(&mut body).await?;
                Ok(body)
            }
            BodyKind::Chunked => {
                let mut body = Vec::new();
                while self.read_chunk(&mut body).await? {}
                Ok(body)
            }
        }
    }

    /// Appends the next chunk to `out`; false after the last (empty) chunk.
    async fn read_chunk(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        let size_line = self.read_line().await?;
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size {size_line:?}"))?;
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            while !self.read_line().await?.is_empty() {}
            return Ok(false);
        }
        let start = out.len();
        out.resize(start + size, 0);
        self.io.read_exact(&mut out[start..]).await?;
        let mut crlf = [0u8; 2];
        self.io.read_exact(&mut crlf).await?;
        Ok(true)
    }
}

/// The newline-separated JSON events of a watch response.
pub struct WatchStream {
    conn: Conn,
    pending: Vec<u8>,
    ended: bool,
}

impl WatchStream {
    /// The next event line, or None when the server ended the stream.
    pub async fn next_line(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(newline) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=newline).collect();
                return Ok(Some(line));
            }
            if self.ended {
                return Ok(None);
            }
            self.ended = !self.conn.read_chunk(&mut self.pending).await?;
        }
    }
}
