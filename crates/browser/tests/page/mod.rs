//! The page client in a real page against the real server (the devserver the driver starts and
//! names in `WEBSESSION_DEVSERVER_URL` at compile time).
//!
//! The tests need the devserver's test controls (see `util.rs`): `POST /__devserver/emit` publishes
//! a reverse event, `POST /__devserver/mint` writes a one-time login token, `POST /__devserver/restart`
//! restarts the backend on the same port (optionally on a wiped store), and a `sink` direct
//! event handler that accepts events and answers nothing. The access tokens must be short-lived
//! (a few seconds) for the refresh tests.
//!
//! Every test opens its fronts with session UUIDs of its own and closes them, so that tests
//! sharing the page's IndexedDB identity, Web Locks and channels do not see each other. They are
//! in the binary configured to run in a page (`tests/in_page.rs`).

mod auth;
mod direct;
mod events;
mod resilience;
mod sharing;
mod util;
