//! The sealed box: NaCl `box` (X25519 + XSalsa20-Poly1305), byte-compatible with tweetnacl.
//!
//! A sealed value is `base64(nonce[24] ‖ tag[16] ‖ ciphertext)` of the UTF-8 of the value's JSON
//! encoding, so a UUID is sealed *with its quotes*, exactly as `JSON.stringify` would write it.
//! A [`Peer`] holds the X25519 shared key of one pair of keys, computed once: sealing and opening
//! many values for the same peer costs one Diffie-Hellman, not one per value.

use std::fmt;
use std::str::FromStr;

use crypto_box::SalsaBox;
use crypto_box::aead::{Aead, AeadCore, OsRng};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{OpenError, ParseError};
use crate::ids::EventUuid;
use crate::json;
use crate::keys::{PublicKey, SecretKey, decode_b64, encode_b64};
use crate::time::Timestamp;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// A sealed value as it travels: nonce, tag and ciphertext. Parsing checks base64 and length.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(Vec<u8>);

impl Sealed {
    /// Wraps raw `nonce ‖ tag ‖ ciphertext` bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, ParseError> {
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(ParseError::SealedTooShort(bytes.len()));
        }
        Ok(Self(bytes))
    }
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// The wire form: standard padded base64.
    pub fn to_base64(&self) -> String {
        encode_b64(&self.0)
    }
}

impl FromStr for Sealed {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_bytes(decode_b64(s)?)
    }
}

impl fmt::Display for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

impl Serialize for Sealed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Sealed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One side's view of a pair of keys: my secret key and the peer's public key, with the shared
/// key computed once.
///
/// Share a `Peer` behind an `Arc` rather than recomputing it.
pub struct Peer {
    shared: SalsaBox,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Peer(..)")
    }
}

impl Peer {
    /// Computes the shared key of `their_public` and `my_secret` (one X25519).
    pub fn new(their_public: &PublicKey, my_secret: &SecretKey) -> Self {
        Self { shared: SalsaBox::new(&their_public.to_box_key(), my_secret.as_box_key()) }
    }

    /// Seals `value`'s JSON with a fresh random nonce.
    pub fn seal<T: Serialize + ?Sized>(&self, value: &T) -> Sealed {
        let nonce = SalsaBox::generate_nonce(&mut OsRng);
        self.seal_with_nonce(value, nonce.into())
    }

    /// Seals `value`'s JSON with the given nonce. Never reuse a nonce for one peer; this exists
    /// for test vectors.
    pub fn seal_with_nonce<T: Serialize + ?Sized>(&self, value: &T, nonce: [u8; 24]) -> Sealed {
        // Serialising plain data (strings, maps with string keys) cannot fail.
        let plain = json::to_vec(value).unwrap_or_default();
        self.seal_bytes(&plain, nonce)
    }

    fn seal_bytes(&self, plain: &[u8], nonce: [u8; 24]) -> Sealed {
        // `encrypt` only fails for plaintexts beyond XSalsa20's 256 GiB keystream.
        let boxed = self.shared.encrypt(&nonce.into(), plain).unwrap_or_default();
        let mut bytes = Vec::with_capacity(NONCE_LEN + boxed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&boxed);
        Sealed(bytes)
    }

    /// Opens a sealed value and returns the raw plaintext bytes (the JSON text).
    pub fn open_bytes(&self, sealed: &Sealed) -> Result<Vec<u8>, OpenError> {
        let (nonce, boxed) = sealed.0.split_at(NONCE_LEN);
        let nonce = <[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| OpenError::Decrypt)?;
        self.shared.decrypt(&nonce.into(), boxed).map_err(|_| OpenError::Decrypt)
    }

    /// Opens a sealed value and parses its JSON as `T`.
    pub fn open<T: DeserializeOwned>(&self, sealed: &Sealed) -> Result<T, OpenError> {
        let plain = self.open_bytes(sealed)?;
        json::from_slice(&plain).map_err(|e| OpenError::Plaintext(e.to_string()))
    }

    /// Seals event data the way the original front does: `seal(JSON.stringify(data))`, so the
    /// plaintext is the JSON encoding of the data's JSON text.
    pub fn seal_data(&self, data: &json::Value) -> Sealed {
        // Writing a `Value` cannot fail.
        self.seal(&json::to_string(data).unwrap_or_default())
    }

    /// Opens event data sealed by [`Peer::seal_data`].
    pub fn open_data(&self, sealed: &Sealed) -> Result<json::Value, OpenError> {
        let text: String = self.open(sealed)?;
        json::from_str(&text).map_err(|e| OpenError::Plaintext(e.to_string()))
    }

    /// The stamp of an event: `seal(meta.uuid + published-as-epoch-millis)`.
    pub fn stamp(&self, uuid: &EventUuid, published: Timestamp) -> Sealed {
        self.seal(&stamp_text(uuid, published))
    }

    /// Checks that `stamp` was made by the peer for this event.
    pub fn verify_stamp(
        &self,
        stamp: &Sealed,
        uuid: &EventUuid,
        published: Timestamp,
    ) -> Result<(), OpenError> {
        let text: String = self.open(stamp)?;
        // Hex digits compare without case: a front may spell `meta.uuid` in upper case, which
        // parses to the same UUID but is sealed as it was written.
        if text.eq_ignore_ascii_case(&stamp_text(uuid, published)) {
            Ok(())
        } else {
            Err(OpenError::Mismatch)
        }
    }
}

fn stamp_text(uuid: &EventUuid, published: Timestamp) -> String {
    format!("{uuid}{}", published.millis())
}
