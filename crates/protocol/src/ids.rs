//! Validated UUID newtypes, one per role, so a session UUID cannot be passed where a front UUID goes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ParseError;

/// Parses the hyphenated form only (36 characters), as `crypto.randomUUID()` writes it.
///
/// The braced, URN and simple forms that `uuid` also accepts are refused: they never appear on
/// this wire, and accepting them would give one UUID several spellings in paths and logs.
pub fn parse_uuid(s: &str) -> Result<uuid::Uuid, ParseError> {
    if s.len() != 36 {
        return Err(ParseError::InvalidUuid(truncate(s)));
    }
    uuid::Uuid::try_parse(s).map_err(|_| ParseError::InvalidUuid(truncate(s)))
}

/// A fresh random (version 4) UUID from the platform's secure random source.
pub fn random_uuid() -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    crypto_box::aead::rand_core::RngCore::fill_bytes(&mut crypto_box::aead::OsRng, &mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// Keeps error messages short when someone sends a megabyte where a UUID goes.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

macro_rules! uuid_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A fresh random (v4) UUID.
            pub fn new_v4() -> Self {
                Self(random_uuid())
            }
            /// Wraps an already parsed UUID.
            pub const fn from_uuid(uuid: uuid::Uuid) -> Self {
                Self(uuid)
            }
            /// The inner UUID.
            pub const fn as_uuid(&self) -> &uuid::Uuid {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_uuid(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0.hyphenated())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

uuid_newtype!(
    /// Identifies a front: one browser profile's origin storage (IndexedDB).
    FrontUuid
);
uuid_newtype!(
    /// Identifies a session: one browser tab (`sessionStorage`).
    SessionUuid
);
uuid_newtype!(
    /// Identifies one reverse-stream connection; sent sealed in the `authenticate` challenge.
    StreamUuid
);
uuid_newtype!(
    /// Identifies a backend instance's event identity.
    BackUuid
);
uuid_newtype!(
    /// Identifies one event (`meta.uuid`, `meta.requestUuid`).
    EventUuid
);
