//! Small bridges of the page client to JavaScript values: JSON conversion, property access,
//! listeners and console output (timers and thrown values are in [`crate::web`]).

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Function;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = warn)]
    fn console_warn(text: &str);
    #[wasm_bindgen(js_namespace = Math, js_name = random)]
    fn math_random() -> f64;
}

/// A uniform random number in `[0, 1)` (for jitter; not for secrets).
pub(crate) fn random() -> f64 {
    math_random()
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Reports something the caller cannot act on (a listener that threw, a queued event dropped).
pub(crate) fn warn(text: &str) {
    console_warn(&format!("websession: {text}"));
}

/// A JavaScript value as JSON: `undefined` and functions become `null`.
pub(crate) fn to_json_value(value: &JsValue) -> Result<protocol::json::Value, String> {
    if value.is_undefined() {
        return Ok(protocol::json::Value::Null);
    }
    let text = js_sys::JSON::stringify(value).map_err(|e| crate::web::describe(&e))?;
    match text.as_string() {
        Some(text) => protocol::json::from_str(&text).map_err(|e| e.to_string()),
        None => Ok(protocol::json::Value::Null),
    }
}

/// A JavaScript value parsed as `T` through its JSON text.
pub(crate) fn from_js<T: DeserializeOwned>(value: &JsValue) -> Result<T, String> {
    let text = js_sys::JSON::stringify(value).map_err(|e| crate::web::describe(&e))?;
    protocol::json::from_str(&text.as_string().unwrap_or_default()).map_err(|e| e.to_string())
}

/// A Rust value as a plain JavaScript value (objects, arrays, strings...), through JSON.
pub(crate) fn to_js<T: Serialize + ?Sized>(value: &T) -> JsValue {
    protocol::json::to_string(value)
        .ok()
        .and_then(|text| js_sys::JSON::parse(&text).ok())
        .unwrap_or(JsValue::NULL)
}

/// Reads `object[key]`; `undefined` when the object has no such property or is not an object.
pub(crate) fn get(object: &JsValue, key: &str) -> JsValue {
    if !object.is_object() {
        return JsValue::UNDEFINED;
    }
    js_sys::Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// `object[key]` as a number, if it is one.
pub(crate) fn get_f64(object: &JsValue, key: &str) -> Option<f64> {
    get(object, key).as_f64()
}

/// `object[key]` as a string, if it is one.
pub(crate) fn get_string(object: &JsValue, key: &str) -> Option<String> {
    get(object, key).as_string()
}

/// `object[key]` as a boolean, if it is one.
pub(crate) fn get_bool(object: &JsValue, key: &str) -> Option<bool> {
    get(object, key).as_bool()
}

/// `object[key]` as a function, if it is one.
pub(crate) fn get_function(object: &JsValue, key: &str) -> Option<Function> {
    get(object, key).dyn_into::<Function>().ok()
}

/// Sets `object[key] = value` (on objects this crate created, so it cannot fail).
pub(crate) fn set(object: &JsValue, key: &str, value: &JsValue) {
    let _ = js_sys::Reflect::set(object, &JsValue::from_str(key), value);
}

/// Calls a listener; a listener that throws is reported and does not stop the others.
pub(crate) fn call_listener(f: &Function, args: &[JsValue]) {
    let result = match args {
        [] => f.call0(&JsValue::NULL),
        [a] => f.call1(&JsValue::NULL, a),
        [a, b] => f.call2(&JsValue::NULL, a, b),
        _ => f.apply(&JsValue::NULL, &args.iter().collect()),
    };
    if let Err(e) = result {
        warn(&format!("a listener threw: {}", crate::web::describe(&e)));
    }
}

/// The global object (`window` in a page, `self` in a worker).
pub(crate) fn global() -> js_sys::Object {
    js_sys::global()
}

/// A function that JavaScript calls to undo a subscription; calling it twice is harmless.
pub(crate) fn unsubscribe_fn(f: impl FnOnce() + 'static) -> Function {
    let once = Rc::new(RefCell::new(Some(f)));
    Closure::<dyn FnMut()>::new(move || {
        if let Some(f) = once.borrow_mut().take() {
            f();
        }
    })
    .into_js_value()
    .unchecked_into()
}
