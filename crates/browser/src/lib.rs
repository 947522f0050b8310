//! The browser package: the service worker's logic and the page client, exported to JavaScript
//! with wasm-bindgen. Built by `cargo xtask wasm` into an ES module package.

pub(crate) mod idb;
pub mod identity;
pub mod net;
#[cfg(feature = "page")]
pub mod page;
pub(crate) mod records;
#[cfg(feature = "worker")]
pub mod sw;
pub mod web;

#[cfg(feature = "page")]
use wasm_bindgen::prelude::*;

/// The package version, as the service worker reports it in `sw-activated`.
#[cfg_attr(feature = "page", wasm_bindgen::prelude::wasm_bindgen)]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// Seals `text` for a fresh key pair and opens it again; `true` when the crypto of this build
/// works in this browser. The demo page shows the answer.
#[cfg(feature = "page")]
#[wasm_bindgen(js_name = selfCheck)]
pub fn self_check(text: &str) -> bool {
    let a = protocol::KeyPair::generate();
    let b = protocol::KeyPair::generate();
    let sealed = protocol::Peer::new(&b.public, &a.secret).seal(text);
    protocol::Peer::new(&a.public, &b.secret).open::<String>(&sealed).is_ok_and(|t| t == text)
}
