//! The JSON Schemas of the wire's validated newtypes, for the server's OpenAPI document (feature
//! `openapi`, which only the server enables, so the wasm package does not grow).
//!
//! The newtypes serialise through hand-written serde impls (a UUID as its hyphenated string, a
//! key or a sealed value as padded base64, a timestamp as ISO-8601), so their schemas are
//! written by hand too; every other wire type derives its schema next to its serde derive.

use utoipa::openapi::schema::{Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, ObjectBuilder, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::ids::{BackUuid, EventUuid, FrontUuid, SessionUuid, StreamUuid};
use crate::keys::PublicKey;
use crate::sealed::Sealed;
use crate::time::Timestamp;

/// A string schema with a format (known to OpenAPI, or a custom one) and a description.
fn string(format: SchemaFormat, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(format))
        .description(Some(description))
        .into()
}

/// The `uuid` format (utoipa knows it only with its `uuid` feature, which would pull a schema
/// impl for `uuid::Uuid` that nothing here needs).
fn uuid() -> SchemaFormat {
    SchemaFormat::Custom("uuid".to_owned())
}

macro_rules! string_schema {
    ($($ty:ty => $format:expr, $description:literal;)+) => {$(
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string($format, $description)
            }
        }
        impl ToSchema for $ty {}
    )+};
}

string_schema! {
    FrontUuid => uuid(),
        "A front (one browser profile's origin storage): a hyphenated UUID.";
    SessionUuid => uuid(),
        "A session (one browser tab): a hyphenated UUID.";
    StreamUuid => uuid(),
        "One reverse-stream connection: a hyphenated UUID.";
    BackUuid => uuid(),
        "A backend's event identity: a hyphenated UUID.";
    EventUuid => uuid(),
        "One event: a hyphenated UUID.";
    Timestamp => SchemaFormat::KnownFormat(KnownFormat::DateTime),
        "ISO-8601 in UTC with milliseconds, as `Date.toISOString()` writes it.";
    PublicKey => SchemaFormat::KnownFormat(KnownFormat::Byte),
        "An X25519 public key: 32 bytes in standard, padded base64 (44 characters).";
    Sealed => SchemaFormat::KnownFormat(KnownFormat::Byte),
        "A NaCl box: base64(nonce[24] ‖ tag[16] ‖ ciphertext) of the value's JSON.";
}
