//! The end-to-end suite: the product as `cargo xtask demo` serves it (the development server
//! with the assembled site, `/sw.js` and the demo app in `www/`), driven from real headless
//! Chromium through ChromeDriver, on real HTTP on `127.0.0.1`.
//!
//! Every scenario opens the demo app, acts as a user would (clicks its buttons, reads its
//! text) and uses the development server's test controls (`/__devserver/…`, `/__standin/…`)
//! only for what a user cannot do: publishing server events, minting login links, injecting
//! faults, restarting the backend.
//!
//! - `tokens`: seed 000, the service worker's token chain and its errors, and warm
//!   `sessionTokens()` calls answered by the page's copy until the worker says its tokens changed;
//! - `streams`: seeds 001/003, tabs sharing one front, offline, restarts, a wiped store, eight
//!   tabs;
//! - `login`: seed 002, the one-time-token login on the embedded store and on Redis;
//! - `bad_input`: a tampered login token, a corrupted identity, a forged stamp;
//! - `consumer`: not the demo but an app built with Vite from the packed npm package, with the
//!   package's worker as `/sw.js`;
//! - `cluster`: the demo served through a real nginx, round-robin over two backends on one
//!   Redis; tabs, login and refresh across them, one backend killed.
//!
//! Needs the assembled site in `WEBSESSION_SITE_DIR` and the consumer app in
//! `WEBSESSION_CONSUMER_DIR` (`cargo xtask ci` sets both), `chromedriver`
//! with Debian's Chromium, and `redis-server`. Screenshots of key states go to `target/e2e/`.
//! Browser scenarios take turns (two cores): each holds [`harness::serial`] while it runs.

mod bad_input;
mod cluster;
mod consumer;
mod harness;
mod login;
mod streams;
mod tokens;
