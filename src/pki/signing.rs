//! The service-account signing key: an ECDSA P-256 key kept as `service.key`
//! (PKCS#8 PEM, mode 0600) in the TLS directory, created on first start and reused
//! after, that signs and verifies compact JWS tokens with ES256.
//!
//! Owns: the key file and the JWS encoding (header, base64url, signature). What
//! the claims mean is the API's business (`api::satoken`).

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{parse_error, pem_encode, read_optional, write_atomic, PkiError, KEY_MODE};

pub const SIGNING_KEY_FILE: &str = "service.key";
const ALGORITHM: &str = "ES256";
/// DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is not a compact jws")]
    Malformed,
    #[error("token header: {0}")]
    Header(String),
    #[error("token signature is invalid")]
    Signature,
    #[error("token claims are not a json object")]
    Claims,
}

/// The key that signs service-account tokens.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    key_id: String,
    rng: SystemRandom,
    path: PathBuf,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads `<tls_dir>/service.key`, or creates it (mode 0600) when missing.
    pub fn load_or_create(tls_dir: &Path) -> Result<SigningKey, PkiError> {
        let path = tls_dir.join(SIGNING_KEY_FILE);
        let rng = SystemRandom::new();
        let pkcs8 = match read_optional(&path)? {
            Some(pem) => pkcs8_from_pem(&pem, &path)?,
            None => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| parse_error(&path.display().to_string(), "key generation"))?;
                let der = doc.as_ref().to_vec();
                write_atomic(&path, pem_encode("PRIVATE KEY", &der).as_bytes(), KEY_MODE)?;
                der
            }
        };
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|e| parse_error(&path.display().to_string(), e))?;
        let key_id = key_id(pair.public_key().as_ref());
        Ok(SigningKey {
            pair,
            key_id,
            rng,
            path,
        })
    }

    /// `kid`: base64url of the SHA-256 of the public key's DER, as Kubernetes names it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// A compact JWS of `claims` (ES256, with this key's `kid`).
    pub fn sign(&self, claims: &Value) -> Result<String, PkiError> {
        let header = json!({"alg": ALGORITHM, "kid": self.key_id});
        let signing_input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| parse_error(&self.path.display().to_string(), "signing failed"))?;
        Ok(format!(
            "{signing_input}.{}",
            B64URL.encode(signature.as_ref())
        ))
    }

    /// The claims of a token this key signed; any other token is an error.
    pub fn verify(&self, token: &str) -> Result<Value, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Value = decode_json(header).ok_or(JwtError::Malformed)?;
        if header["alg"] != ALGORITHM {
            return Err(JwtError::Header(format!(
                "unsupported alg {}",
                header["alg"]
            )));
        }
        if header.get("kid").is_some_and(|k| k != self.key_id.as_str()) {
            return Err(JwtError::Header("unknown kid".into()));
        }
        let signature = B64URL.decode(signature).map_err(|_| JwtError::Malformed)?;
        let signed = &token[..header_and_claims_len(token)];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.pair.public_key().as_ref())
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| JwtError::Signature)?;
        let claims: Value = decode_json(claims).ok_or(JwtError::Claims)?;
        claims.is_object().then_some(claims).ok_or(JwtError::Claims)
    }

    /// The public key as a JSON Web Key (for `/openid/v1/jwks`).
    pub fn public_jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({
            "use": "sig",
            "kty": "EC",
            "kid": self.key_id,
            "crv": "P-256",
            "alg": ALGORITHM,
            "x": B64URL.encode(&point[1..33]),
            "y": B64URL.encode(&point[33..65]),
        })
    }
}

fn header_and_claims_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn decode_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&B64URL.decode(part).ok()?).ok()
}

fn key_id(point: &[u8]) -> String {
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(point);
    B64URL.encode(Sha256::digest(&spki))
}

fn pkcs8_from_pem(pem: &str, path: &Path) -> Result<Vec<u8>, PkiError> {
    let mut reader = pem.as_bytes();
    let first = rustls_pemfile::pkcs8_private_keys(&mut reader).next();
    first
        .ok_or_else(|| parse_error(&path.display().to_string(), "no PKCS#8 private key"))?
        .map(|k| k.secret_pkcs8_der().to_vec())
        .map_err(|e| parse_error(&path.display().to_string(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("skiff-signing-{tag}-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn key_is_created_private_and_reused() {
        let dir = temp_dir("reuse");
        let first = SigningKey::load_or_create(&dir).unwrap();
        let mode = std::fs::metadata(dir.join(SIGNING_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let token = first.sign(&json!({"sub": "x"})).unwrap();
        let second = SigningKey::load_or_create(&dir).unwrap();
        assert_eq!(first.key_id(), second.key_id());
        assert_eq!(second.verify(&token).unwrap()["sub"], "x");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tampered_or_foreign_tokens_fail() {
        let dir_a = temp_dir("a");
        let dir_b = temp_dir("b");
        let a = SigningKey::load_or_create(&dir_a).unwrap();
        let b = SigningKey::load_or_create(&dir_b).unwrap();
        let token = a
            .sign(&json!({"sub": "system:serviceaccount:x:y"}))
            .unwrap();
        assert!(b.verify(&token).is_err());
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64URL.encode(json!({"sub": "system:admin"}).to_string());
        parts[1] = &forged;
        assert_eq!(a.verify(&parts.join(".")), Err(JwtError::Signature));
        assert_eq!(a.verify("not-a-jwt"), Err(JwtError::Malformed));
        let none_alg = format!(
            "{}.{}.",
            B64URL.encode(r#"{"alg":"none"}"#),
            B64URL.encode("{}")
        );
        assert!(matches!(a.verify(&none_alg), Err(JwtError::Header(_))));
        std::fs::remove_dir_all(dir_a).unwrap();
        std::fs::remove_dir_all(dir_b).unwrap();
    }

    #[test]
    fn jwk_carries_the_public_point() {
        let dir = temp_dir("jwk");
        let key = SigningKey::load_or_create(&dir).unwrap();
        let jwk = key.public_jwk();
        assert_eq!(jwk["kid"], key.key_id());
        assert_eq!(B64URL.decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
        assert_eq!(B64URL.decode(jwk["y"].as_str().unwrap()).unwrap().len(), 32);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
