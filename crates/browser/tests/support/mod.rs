//! What both test binaries share: the development server's URL.

/// The development server that the driver started (`WEBSESSION_DEVSERVER_URL` at compile time).
pub(crate) fn devserver() -> &'static str {
    match option_env!("WEBSESSION_DEVSERVER_URL") {
        Some(url) => url.trim_end_matches('/'),
        None => panic!(
            "WEBSESSION_DEVSERVER_URL was not set when this test binary was compiled: run the \
             wasm tests through `cargo xtask ci`, which starts the development server and sets it"
        ),
    }
}
