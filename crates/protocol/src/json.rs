//! JSON text to and from Rust values: the one place that chooses how, per target.
//!
//! On the host this is serde_json. In the wasm package it is the browser's own `JSON.parse` and
//! `JSON.stringify`, with `serde-wasm-bindgen` turning Rust values into JavaScript values and a
//! deserializer of ours (`from_js`) reading JavaScript values into Rust types: serde_json's
//! parser and printer, monomorphised for every wire type, were a fifth of the package's code
//! (twiggy), while the browser carries a JSON engine anyway. The reader is ours rather than
//! serde-wasm-bindgen's for size: its error type never prints the unexpected value, so no float
//! formatting (core's `flt2dec`, 18 KB of the worker's wasm) is linked only to say "invalid
//! type: floating point `1.5`", and each typed entry point accepts its one kind of value, so a
//! type's deserializer holds one visitor call rather than a whole dispatch. [`Value`] (any
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
impl serde::de::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }

    // Without the unexpected value: its `Display` formats floats (see the module doc).
    fn invalid_type(_: serde::de::Unexpected<'_>, expected: &dyn serde::de::Expected) -> Self {
        Self(format!("invalid type: expected {expected}"))
    }

    fn invalid_value(_: serde::de::Unexpected<'_>, expected: &dyn serde::de::Expected) -> Self {
        Self(format!("invalid value: expected {expected}"))
    }
}

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
    T::deserialize(from_js::Deserializer(js))
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

/// A serde deserializer of the values `JSON.parse` makes (null, booleans, numbers, strings,
/// arrays, plain objects), self-describing as JSON is: everything goes through
/// `deserialize_any` but options, enums and newtypes.
#[cfg(target_arch = "wasm32")]
mod from_js {
    use js_sys::wasm_bindgen::{JsCast, JsValue};
    use js_sys::{Array, Object};
    use serde::de::value::MapAccessDeserializer;
    use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

    use super::Error;

    /// The largest integer a JavaScript number holds exactly (`Number.MAX_SAFE_INTEGER`).
    const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

    pub(super) struct Deserializer(pub(super) JsValue);

    impl<'de> de::Deserializer<'de> for Deserializer {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let value = self.0;
            if value.is_null() || value.is_undefined() {
                visitor.visit_unit()
            } else if let Some(b) = value.as_bool() {
                visitor.visit_bool(b)
            } else if value.as_f64().is_some() {
                Self(value).deserialize_f64(visitor)
            } else if let Some(s) = value.as_string() {
                visitor.visit_string(s)
            } else if Array::is_array(&value) {
                Self(value).deserialize_seq(visitor)
            } else if value.is_object() {
                visitor.visit_map(Map::new(&value))
            } else {
                Err(wrong("a JSON value"))
            }
        }

        // The typed entry points below each accept their one kind of value and fail with one
        // shared error otherwise: a type's deserializer then holds one visitor call, not the
        // whole dispatch of `deserialize_any` with an error per kind (5 KB per wire type).

        fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0.as_bool() {
                Some(b) => visitor.visit_bool(b),
                None => Err(wrong("a boolean")),
            }
        }

        /// Integers as integers, so that integer fields and `Value` read them as such.
        fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0.as_f64() {
                #[allow(clippy::cast_possible_truncation)] // an integer within ±2^53
                Some(n) if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER => {
                    visitor.visit_i64(n as i64)
                }
                Some(n) => visitor.visit_f64(n),
                None => Err(wrong("a number")),
            }
        }

        fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0.as_string() {
                Some(s) => visitor.visit_string(s),
                None => Err(wrong("a string")),
            }
        }

        fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            if self.0.is_null() || self.0.is_undefined() {
                visitor.visit_unit()
            } else {
                Err(wrong("null"))
            }
        }

        fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            if !Array::is_array(&self.0) {
                return Err(wrong("an array"));
            }
            let array: Array = self.0.unchecked_into();
            let len = array.length();
            let mut seq = Seq { array, next: 0 };
            let out = visitor.visit_seq(&mut seq)?;
            // As serde_json: a tuple or fixed-size array refuses extra elements.
            if seq.next < len {
                return Err(wrong("fewer elements"));
            }
            Ok(out)
        }

        /// Only from an object: unlike serde_json, a struct is not also read from an array of its
        /// fields (the wire never sends one).
        fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            if self.0.is_object() && !Array::is_array(&self.0) {
                visitor.visit_map(Map::new(&self.0))
            } else {
                Err(wrong("an object"))
            }
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            self.deserialize_map(visitor)
        }

        fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_unit()
        }

        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            if self.0.is_null() || self.0.is_undefined() {
                visitor.visit_none()
            } else {
                visitor.visit_some(self)
            }
        }

        /// As serde_json: a unit variant is its name, another variant `{"name": content}`.
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            if let Some(name) = self.0.as_string() {
                visitor.visit_enum(IntoDeserializer::<Error>::into_deserializer(name))
            } else if self.0.is_object() && !Array::is_array(&self.0) {
                visitor.visit_enum(MapAccessDeserializer::new(Map::new(&self.0)))
            } else {
                Err(wrong("a string or an object"))
            }
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_newtype_struct(self)
        }

        serde::forward_to_deserialize_any! { i128 u128 bytes byte_buf }

        fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_f64(visitor)
        }
        fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_f64(visitor)
        }
        fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_f64(visitor)
        }
        fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_f64(visitor)
        }
        fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_f64(visitor)
        }
        fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_f64(visitor)
        }
        fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_f64(visitor)
        }
        fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_f64(visitor)
        }
        fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_f64(visitor)
        }
        fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_string(visitor)
        }
        fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_string(visitor)
        }
        fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_string(visitor)
        }
        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            self.deserialize_unit(visitor)
        }
        fn deserialize_tuple<V: Visitor<'de>>(
            self,
            _len: usize,
            visitor: V,
        ) -> Result<V::Value, Error> {
            self.deserialize_seq(visitor)
        }
        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _len: usize,
            visitor: V,
        ) -> Result<V::Value, Error> {
            self.deserialize_seq(visitor)
        }
    }

    /// The error of a value of the wrong kind: one function, not one per visitor.
    #[cold]
    #[inline(never)]
    fn wrong(expected: &str) -> Error {
        Error(format!("invalid type: expected {expected}"))
    }

    struct Seq {
        array: Array,
        next: u32,
    }

    impl<'de> SeqAccess<'de> for Seq {
        type Error = Error;

        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, Error> {
            if self.next >= self.array.length() {
                return Ok(None);
            }
            let item = self.array.get(self.next);
            self.next += 1;
            seed.deserialize(Deserializer(item)).map(Some)
        }

        fn size_hint(&self) -> Option<usize> {
            Some(self.array.length().saturating_sub(self.next) as usize)
        }
    }

    /// An object's own enumerable properties, in their order (`Object.entries`).
    struct Map {
        entries: Array,
        next: u32,
        value: Option<JsValue>,
    }

    impl Map {
        fn new(object: &JsValue) -> Self {
            Self { entries: Object::entries(object.unchecked_ref()), next: 0, value: None }
        }
    }

    impl<'de> MapAccess<'de> for Map {
        type Error = Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Error> {
            if self.next >= self.entries.length() {
                return Ok(None);
            }
            let entry: Array = self.entries.get(self.next).unchecked_into();
            self.next += 1;
            self.value = Some(entry.get(1));
            seed.deserialize(Deserializer(entry.get(0))).map(Some)
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
            let value =
                self.value.take().ok_or_else(|| Error("a value before its key".to_owned()))?;
            seed.deserialize(Deserializer(value))
        }

        fn size_hint(&self) -> Option<usize> {
            Some(self.entries.length().saturating_sub(self.next) as usize)
        }
    }
}
