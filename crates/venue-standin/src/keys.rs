//! The venue's signing key: an Ed25519 key made fresh at start, venue JWTs signed with it (EdDSA),
//! and its public half as a JWKS for the token exchange to verify against.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, KeypairBytes};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use protocol::tokens::VenueClaims;

use crate::Error;

/// The JWS algorithm of venue JWTs, as it appears in the JWT header and the JWK's `alg`.
pub const ALGORITHM: &str = "EdDSA";

/// The key pair. The private half never leaves this struct; its `Debug` is redacted by
/// jsonwebtoken's `EncodingKey`.
#[derive(Debug)]
pub(crate) struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    /// The public JWK, made once: it is served on every JWKS request.
    jwk: Jwk,
}

impl SigningKey {
    /// A new random key with a random `kid`. A stand-in keeps no key between runs, so every
    /// start rotates the key; verifiers must fetch the JWKS, not pin a key.
    pub(crate) fn generate() -> Result<Self, Error> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(Error::Random)?;
        let secret = ed25519_dalek::SigningKey::from_bytes(&seed);
        // jsonwebtoken derives the public JWK only from the 48-byte PKCS#8 v1 form (RFC 8410,
        // without the optional public key); `SigningKey::to_pkcs8_der` writes the longer v2
        // form, so the key pair bytes are encoded here with `public_key: None`.
        let der = KeypairBytes { secret_key: secret.to_bytes(), public_key: None }
            .to_pkcs8_der()
            .map_err(|err| Error::Key(err.to_string()))?;
        let encoding = EncodingKey::from_ed_der(der.as_bytes());

        let kid = format!("venue-standin-{}", random_token(12)?);
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA)?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { kid, encoding, jwk })
    }

    /// The key id, in every JWT header and in the JWK.
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// A compact JWS of `claims`, with `alg: EdDSA`, `typ: JWT` and this key's `kid`.
    pub(crate) fn sign(&self, claims: &VenueClaims) -> Result<String, Error> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// The public JWKS: `{"keys": [{"kty": "OKP", "crv": "Ed25519", "x", "kid", "alg", "use"}]}`.
    pub(crate) fn jwks(&self) -> serde_json::Value {
        let set = JwkSet { keys: vec![self.jwk.clone()] };
        // A `JwkSet` of plain strings always serialises; `Null` only guards the type system.
        serde_json::to_value(set).unwrap_or(serde_json::Value::Null)
    }
}

/// `bytes` random bytes from the operating system, base64url without padding: session ids,
/// XSRF tokens and key ids.
pub(crate) fn random_token(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).map_err(Error::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}
