#![cfg(target_arch = "wasm32")]
//! The browser package in a service worker of headless Chromium: the worker's token chain and
//! the front identity. Its twin `in_page.rs` (which says why there are two) runs the page
//! client in a page.
//!
//! The worker is the runner's own, not `/sw.js`: these tests call the worker's logic directly.
//! The real `/sw.js` is tested in a page by `crates/devserver/tests`.

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_service_worker);

mod identity;
mod support;
mod sw;
mod web;
