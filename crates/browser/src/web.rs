//! The small pieces of the web platform both modules use, written once against the global
//! object so they run in a window and in a worker scope alike: a timer that cancels on drop
//! ([`Timeout`], [`sleep`]) and the one reading of a thrown JavaScript value ([`JsError`]).

use std::fmt;

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    // The global functions (`window.setTimeout` or `self.setTimeout`), not a `Window` method,
    // so the worker, which has no `Window`, uses the same timer.
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &js_sys::Function, ms: i32) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
}

/// Clamps a millisecond delay to what `setTimeout` takes (it overflows past 2^31 − 1 ms).
fn clamp_ms(ms: f64) -> i32 {
    if ms.is_nan() || ms <= 0.0 { 0 } else { ms.min(f64::from(i32::MAX)) as i32 }
}

/// A callback scheduled with `setTimeout`; dropping it cancels the callback (`clearTimeout`)
/// and frees the closure, so a dropped timer never calls freed memory.
pub struct Timeout {
    id: JsValue,
    _closure: Closure<dyn FnMut()>,
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Timeout(..)")
    }
}

impl Timeout {
    /// Calls `f` once after `ms` milliseconds, unless the `Timeout` is dropped first.
    pub fn new(ms: f64, f: impl FnOnce() + 'static) -> Self {
        let mut f = Some(f);
        let closure = Closure::<dyn FnMut()>::new(move || {
            if let Some(f) = f.take() {
                f();
            }
        });
        let id = set_timeout(closure.as_ref().unchecked_ref(), clamp_ms(ms));
        Self { id, _closure: closure }
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        clear_timeout(&self.id);
    }
}

/// Resolves after `ms` milliseconds. Dropping the future (a lost `select`) clears the timer.
pub async fn sleep(ms: f64) {
    let (tx, rx) = futures_channel::oneshot::channel::<()>();
    let _timer = Timeout::new(ms, move || {
        let _ = tx.send(());
    });
    let _ = rx.await;
}

/// A thrown JavaScript value as Rust reads it: its `name`, a stable code that callers may branch
/// on (`TypeError`, `AbortError`, `QuotaExceededError`, …; empty when what was thrown is not an
/// `Error`), and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsError {
    /// The error's `name`, or empty for a thrown non-`Error` value.
    pub name: String,
    /// The error's `message`, or the thrown value's text.
    pub message: String,
}

impl JsError {
    /// Whether this is the rejection of an aborted operation (`AbortController.abort()`).
    pub fn is_abort(&self) -> bool {
        self.name == "AbortError"
    }
}

impl From<&JsValue> for JsError {
    fn from(value: &JsValue) -> Self {
        if let Some(error) = value.dyn_ref::<js_sys::Error>() {
            Self { name: error.name().into(), message: error.message().into() }
        } else if let Some(text) = value.as_string() {
            Self { name: String::new(), message: text }
        } else {
            Self { name: String::new(), message: format!("{value:?}") }
        }
    }
}

impl From<JsValue> for JsError {
    fn from(value: JsValue) -> Self {
        Self::from(&value)
    }
}

impl fmt::Display for JsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.name.is_empty(), self.message.is_empty()) {
            (true, _) => f.write_str(&self.message),
            (false, true) => f.write_str(&self.name),
            (false, false) => write!(f, "{}: {}", self.name, self.message),
        }
    }
}

impl std::error::Error for JsError {}

/// A readable sentence for a thrown JavaScript value (its [`JsError`]'s text).
pub fn describe(value: &JsValue) -> String {
    JsError::from(value).to_string()
}
