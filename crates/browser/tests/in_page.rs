#![cfg(target_arch = "wasm32")]
//! The browser package in a page of headless Chromium: the page client and the front identity.
//! Its twin `in_worker.rs` runs the service worker's logic and the identity in a service worker.
//!
//! `cargo xtask ci` builds the site, starts a development server (`crates/devserver`: the
//! backend and the venue stand-in on one origin, with test controls and CORS for the runner's
//! origin) and passes its URL at compile time in `WEBSESSION_DEVSERVER_URL`.
//!
//! One binary per place, each configured for it, rather than one binary run in both places:
//! a test that needs a page would have to return early in the worker run (and the other way
//! round), and a test that returns early passes without having checked anything. Here every
//! test runs where it belongs, and one that cannot run (no devserver URL, not in a page) fails.
//!
//! Tests run one at a time (wasm-bindgen-test's concurrency is 1), so each may reset the
//! development server's switches and counters and log in as the user it needs.

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod identity;
mod page;
mod support;
mod web;
