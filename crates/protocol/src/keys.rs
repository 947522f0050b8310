//! X25519 keys in the wire's spelling: 32 bytes as standard, padded base64.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ParseError;

/// Decodes standard padded base64, the only alphabet this wire uses.
pub fn decode_b64(s: &str) -> Result<Vec<u8>, ParseError> {
    STANDARD.decode(s).map_err(|e| ParseError::InvalidBase64(e.to_string()))
}

/// Encodes standard padded base64.
pub fn encode_b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn decode_32(s: &str) -> Result<[u8; 32], ParseError> {
    let bytes = decode_b64(s)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| ParseError::InvalidKeyLength(bytes.len()))
}

/// A public X25519 key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Wraps raw key bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Standard padded base64, as on the wire.
    pub fn to_base64(&self) -> String {
        encode_b64(&self.0)
    }
    pub(crate) fn to_box_key(self) -> crypto_box::PublicKey {
        crypto_box::PublicKey::from(self.0)
    }
}

impl FromStr for PublicKey {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_32(s).map(Self)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A secret X25519 key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretKey(crypto_box::SecretKey);

impl SecretKey {
    /// A fresh random key from the platform's secure random source.
    pub fn generate() -> Self {
        Self(crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng))
    }
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(crypto_box::SecretKey::from(bytes))
    }
    /// The raw key bytes; handle with care.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
    /// Standard padded base64, as the identity record stores it.
    pub fn to_base64(&self) -> String {
        encode_b64(&self.0.to_bytes())
    }
    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.0.public_key().as_bytes())
    }
    pub(crate) fn as_box_key(&self) -> &crypto_box::SecretKey {
        &self.0
    }
}

impl FromStr for SecretKey {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_32(s).map(Self::from_bytes)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl Serialize for SecretKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for SecretKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A key pair, stored as `{"public", "secret"}` (the identity record's `frontKeys`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyPair {
    /// The public half, shared with peers.
    pub public: PublicKey,
    /// The secret half, never sent.
    pub secret: SecretKey,
}

impl KeyPair {
    /// A fresh random pair.
    pub fn generate() -> Self {
        Self::from_secret(SecretKey::generate())
    }
    /// The pair of a known secret key.
    pub fn from_secret(secret: SecretKey) -> Self {
        Self { public: secret.public_key(), secret }
    }
    /// Whether `public` really belongs to `secret` (a stored pair may have been corrupted).
    pub fn is_consistent(&self) -> bool {
        self.secret.public_key() == self.public
    }
}
