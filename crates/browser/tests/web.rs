#![cfg(target_arch = "wasm32")]
//! The browser package in headless Chromium: one wasm test binary, one module per part.
//!
//! `cargo xtask ci` builds the site, starts a development server (`crates/devserver`: the
//! backend and the venue stand-in on one origin, with test controls and CORS for the runner's
//! origin) and passes its URL at compile time in `WEBSESSION_DEVSERVER_URL`. Then it runs this
//! binary with `WASM_BINDGEN_USE_SERVICE_WORKER=1`, so the tests of [`sw`] run inside a service
//! worker (the runner's own: they call the worker's logic directly, not through `/sw.js`; the
//! real `/sw.js` is tested in a page by `crates/devserver/tests`).
//!
//! Tests run one at a time (wasm-bindgen-test's concurrency is 1), so each may reset the
//! development server's switches and counters and log in as the user it needs.

mod identity;
mod page;
mod support;
mod sw;
