//! CORS with credentials for the origins of test pages, once, around the whole app.
//!
//! wasm-bindgen-test serves its page (and its service worker) from `http://127.0.0.1:<random
//! port>`, so an exact origin is not always known in advance: a pattern may end in `:*` for any
//! port. Allowed origins may send the venue's XSRF header, `Authorization` and `Content-Type`,
//! with cookies.

use axum::http::{HeaderName, HeaderValue, Method, header, request::Parts};
pub use server::tokens::OriginPattern;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The layer: the request's origin is echoed when a pattern matches, with credentials.
pub fn layer(patterns: Vec<OriginPattern>) -> CorsLayer {
    let allow = move |origin: &HeaderValue, _: &Parts| {
        origin.to_str().is_ok_and(|origin| patterns.iter().any(|p| p.matches(origin)))
    };
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(allow))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static(venue_standin::XSRF_HEADER),
            HeaderName::from_static("last-event-id"),
        ])
        // The reverse stream's answer to `?scope=front`, read by test pages of other origins.
        .expose_headers([HeaderName::from_static(protocol::paths::STREAM_SCOPE_HEADER)])
}
