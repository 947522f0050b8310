//! The development server over real HTTP (`routes`), and the real `/sw.js` in headless Chromium
//! through ChromeDriver (`sw_js`): one test binary, servers on `127.0.0.1:0`.
//!
//! The Chromium tests need the assembled site (`cargo xtask ci` builds it and names it in
//! `WEBSESSION_SITE_DIR`; default `target/site`) and `chromedriver` (or `$CHROMEDRIVER`).

#![allow(clippy::unwrap_used)]

mod routes;
mod sw_js;
mod util;
