//! The server's own signing key (Ed25519, JWS `EdDSA`): it signs the EID JWTs of the exchange
//! and the access JWTs of the login, and its public half is published at
//! `/.well-known/jwks.json`.
//!
//! The key lives in a PKCS#8 PEM file (by default `<data-dir>/eid-signing-key.pem`), made on
//! first start with mode 0600, the same form `openssl genpkey -algorithm ed25519` writes, so an
//! operator can also bring their own.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, KeypairBytes};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::Serialize;

use super::error::TokenError;

/// The JWS algorithm of every JWT this server signs.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;

/// Why the signing key could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("signing key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not an Ed25519 PKCS#8 PEM private key.
    #[error("signing key file {path} is not an Ed25519 PKCS#8 PEM private key: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What did not parse.
        reason: String,
    },
    /// The key could not be made or turned into a JWK.
    #[error("signing key: {0}")]
    Key(String),
}

/// The key pair; the private half never leaves it (`EncodingKey`'s `Debug` is redacted).
#[derive(Debug)]
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public JWK, made once: every JWKS request serves it.
    jwk: Jwk,
}

impl SigningKey {
    /// Loads the key at `path`, or makes one there if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let io = |source| KeyError::Io { path: shown.clone(), source };
        match fs::read_to_string(path) {
            Ok(pem) => return Self::from_pem(&pem, &shown),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io(err)),
        }
        let secret = random_secret()?;
        let pem = pem_of(secret)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Like the data directory: only this user may look into it.
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(io)?;
        }
        let mut options = fs::OpenOptions::new();
        // `create_new`: two servers starting on one data dir must not both write a key; the
        // loser reads the winner's.
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(pem.as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                tracing::info!(path = %shown, "created the server's signing key");
                Self::from_secret(secret)
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                let pem = fs::read_to_string(path).map_err(io)?;
                Self::from_pem(&pem, &shown)
            }
            Err(err) => Err(io(err)),
        }
    }

    /// A fresh key that lives only in memory (tests, benchmarks).
    pub fn generate() -> Result<Self, KeyError> {
        Self::from_secret(random_secret()?)
    }

    /// A new key as PKCS#8 PEM, for keeping it elsewhere than in a file (a shared store).
    pub(crate) fn new_pem() -> Result<String, KeyError> {
        pem_of(random_secret()?)
    }

    /// The key in `pem`; `origin` names where it came from, for errors.
    pub(crate) fn from_pem(pem: &str, path: &str) -> Result<Self, KeyError> {
        let pair = KeypairBytes::from_pkcs8_pem(pem)
            .map_err(|err| KeyError::Format { path: path.to_owned(), reason: err.to_string() })?;
        Self::from_secret(pair.secret_key)
    }

    pub(crate) fn from_secret(secret: [u8; 32]) -> Result<Self, KeyError> {
        // jsonwebtoken derives the public JWK only from the short PKCS#8 v1 form (no public key
        // inside), so the DER handed to it is always re-encoded that way.
        let der = KeypairBytes { secret_key: secret, public_key: None }
            .to_pkcs8_der()
            .map_err(|err| KeyError::Key(err.to_string()))?;
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        let mut jwk = Jwk::from_encoding_key(&encoding, ALGORITHM)
            .map_err(|err| KeyError::Key(err.to_string()))?;
        // The RFC 7638 thumbprint: stable for a key, so restarts keep the `kid` and a rotated
        // key gets a new one without anyone choosing names.
        let kid =
            jwk.thumbprint(ThumbprintHash::SHA256).map_err(|err| KeyError::Key(err.to_string()))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|err| KeyError::Key(err.to_string()))?;
        Ok(Self { kid, encoding, decoding, jwk })
    }

    /// The key id, in every JWT header and in the JWK.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWKS.
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: vec![self.jwk.clone()] }
    }

    /// The public key, for verifying what this server signed.
    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// A compact JWS of `claims` with `alg: EdDSA`, this key's `kid` and the given `typ`.
    pub(crate) fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, TokenError> {
        let mut header = Header::new(ALGORITHM);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|err| TokenError::Internal(format!("signing a JWT: {err}")))
    }
}

fn pem_of(secret: [u8; 32]) -> Result<String, KeyError> {
    let pem = KeypairBytes { secret_key: secret, public_key: None }
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|err| KeyError::Key(err.to_string()))?;
    Ok(pem.to_string())
}

fn random_secret() -> Result<[u8; 32], KeyError> {
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).map_err(|err| KeyError::Key(err.to_string()))?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_key_is_made_once_then_read_back_with_the_same_kid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/eid.pem");
        let made = SigningKey::load_or_create(&path).unwrap();
        let read = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(made.kid(), read.kid());
        let pem = fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_file_that_is_not_a_key_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eid.pem");
        fs::write(&path, "not a key").unwrap();
        assert!(matches!(SigningKey::load_or_create(&path), Err(KeyError::Format { .. })));
    }

    #[test]
    fn what_it_signs_verifies_with_its_published_key() {
        let key = SigningKey::generate().unwrap();
        let token = key.sign("JWT", &serde_json::json!({"sub": "x"})).unwrap();
        let jwks = key.jwks();
        let public = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
        let mut validation = jsonwebtoken::Validation::new(ALGORITHM);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &public, &validation).unwrap();
        assert_eq!(data.header.kid.as_deref(), Some(key.kid()));
    }
}
