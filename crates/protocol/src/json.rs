//! JSON text to and from Rust values: the one place that chooses how, per target.
//!
//! On the host this is serde_json. In the wasm package it is the browser's own `JSON.parse` and
//! `JSON.stringify` with `serde-wasm-bindgen` converting between JavaScript values and Rust
//! types: serde_json's parser and printer, monomorphised for every wire type, were a fifth of
//! the package's code (twiggy), while the browser carries a JSON engine anyway. [`Value`] (any
//! JSON) is serde_json's type on both targets; only its data model is used in the wasm, never
//! its text form, so call [`to_string`] rather than `Value::to_string`.
//!
//! The two agree on the text of strings byte for byte (the sealed-box vectors pin it, since a
//! sealed value is its JSON). They may differ where JSON allows it: the order of an object's
//! integer-like keys (JavaScript puts them first) and the spelling of numbers (`1.0` and `1`).

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use serde_json::{Map, Value};

#[cfg(not(target_arch = "wasm32"))]
pub use serde_json::Error;

/// Why a JSON text could not be read or written (in the wasm; serde_json's error on the host).
#[cfg(target_arch = "wasm32")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

#[cfg(target_arch = "wasm32")]
impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(target_arch = "wasm32")]
impl std::error::Error for Error {}

#[cfg(target_arch = "wasm32")]
impl From<serde_wasm_bindgen::Error> for Error {
    fn from(e: serde_wasm_bindgen::Error) -> Self {
        Self(e.to_string())
    }
}

/// `value` as JSON text.
#[cfg(not(target_arch = "wasm32"))]
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value)
}

/// `value` as JSON text.
#[cfg(target_arch = "wasm32")]
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    // JSON-compatible: maps as plain objects, `None` as `null` (JSON.stringify would drop an
    // `undefined` field where serde_json writes `null`).
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    let js = value.serialize(&serializer)?;
    js_sys::JSON::stringify(&js)
        .ok()
        .and_then(|text| text.as_string())
        .ok_or_else(|| Error("JSON.stringify failed".to_owned()))
}

/// `value` as JSON text, in bytes.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    to_string(value).map(String::into_bytes)
}

/// A JSON text parsed as `T`.
#[cfg(not(target_arch = "wasm32"))]
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_json::from_str(text)
}

/// A JSON text parsed as `T`.
#[cfg(target_arch = "wasm32")]
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    let js = js_sys::JSON::parse(text).map_err(|_| Error("not JSON".to_owned()))?;
    Ok(serde_wasm_bindgen::from_value(js)?)
}

/// JSON bytes parsed as `T`; bytes that are not UTF-8 are not JSON.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => from_str(text),
        // serde_json's own error for it, on the host.
        #[cfg(not(target_arch = "wasm32"))]
        Err(_) => serde_json::from_slice(bytes),
        #[cfg(target_arch = "wasm32")]
        Err(e) => Err(Error(e.to_string())),
    }
}
