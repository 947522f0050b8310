//! The server's one integration-test binary: each service's tests are a module here, sharing
//! the helpers in `util`.

#![allow(clippy::unwrap_used)]

mod util;

mod events;
mod http;
mod ops;
#[cfg(unix)]
mod secrets;
mod tokens;
