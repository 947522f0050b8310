//! The service worker's logic: the lifecycle and the venue → VTX token chain behind
//! `GET /uc/session/vtx` (seed 000).
//!
//! `/sw.js` (the shim in `sw/`) adds the listeners and calls these exports once
//! `ready = init().then(() => swStart(t0))` resolves:
//!
//! | export | called from | does |
//! |---|---|---|
//! | `swStart(t0)` | top level | reads the settings (registration URL query, `config` JSON file) |
//! | `swInstall()` | `install` | front identity in IndexedDB, registration if the backend answers; `skipWaiting` with `update=immediate` |
//! | `swActivate()` | `activate` | `clients.claim()`, posts `{type: "sw-activated", version}` to the tabs |
//! | `swSession(request)` | `fetch` of `GET /uc/session/vtx` | resolves to the `Response` (never rejects) |
//! | `swMessage(data)` | `message` | `session-clear` drops the tokens (and posts `session-changed` to the tabs), `skip-waiting` promotes a waiting worker |
//! | `swNavigate()` | `fetch` of a navigation (not answered) | with `update=navigation`, promotes a waiting worker |
//!
//! The logic below the exports is plain Rust: [`settings`] and [`xsrf`] and [`jwt`] are pure,
//! [`chain`] runs one hop over the [`Http`] trait, and [`session`] keeps the tokens and the single
//! flight. Tests drive [`Session`] directly with [`FetchHttp`] (in a browser) or a fake (on the
//! host).

pub mod chain;
#[doc(hidden)]
pub mod fuzzing;
pub mod jwt;
pub mod session;
pub mod settings;
mod worker;
pub mod xsrf;

use wasm_bindgen::prelude::*;

pub use chain::{ChainConfig, Failure, Http};
pub use session::Session;
pub use settings::{Endpoints, Settings, UpdateMode, XsrfSource};
pub use worker::FetchHttp;

/// Reads the settings; `started_at` is `performance.now()` at the shim's first line, so that
/// answers can report how long the worker took to become ready.
#[wasm_bindgen(js_name = swStart)]
pub async fn sw_start(started_at: f64) {
    worker::start(started_at).await;
}

/// The `install` step; never rejects.
#[wasm_bindgen(js_name = swInstall)]
pub async fn sw_install() {
    worker::install().await;
}

/// The `activate` step; never rejects.
#[wasm_bindgen(js_name = swActivate)]
pub async fn sw_activate() {
    worker::activate().await;
}

/// The answer to `GET /uc/session/vtx`: `200` with the tokens, or `401`/`403`/`502`/`504` with
/// `{error, message, stage}`. The request itself is not read: the shim routes only that one.
#[wasm_bindgen(js_name = swSession)]
pub async fn sw_session(_request: web_sys::Request) -> Result<web_sys::Response, JsValue> {
    worker::session_response().await
}

/// A `message` event's `data`.
#[wasm_bindgen(js_name = swMessage)]
pub async fn sw_message(data: JsValue) {
    worker::message(data).await;
}

/// A navigation request passed by.
#[wasm_bindgen(js_name = swNavigate)]
pub fn sw_navigate() {
    worker::navigate();
}
