//! CORS with credentials for the origins of test pages, once, around the whole app.
//!
//! wasm-bindgen-test serves its page (and its service worker) from `http://127.0.0.1:<random
//! port>`, so an exact origin is not always known in advance: a pattern may end in `:*` for any
//! port. Allowed origins may send the venue's XSRF header, `Authorization` and `Content-Type`,
//! with cookies.

use std::fmt;
use std::str::FromStr;

use axum::http::{HeaderName, HeaderValue, Method, header, request::Parts};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// An allowed origin: exact (`http://127.0.0.1:8080`) or any port (`http://127.0.0.1:*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    /// `scheme://host`, or the whole origin when `any_port` is false.
    prefix: String,
    any_port: bool,
}

impl OriginPattern {
    /// Whether `origin` (an `Origin` header's value) matches.
    pub fn matches(&self, origin: &str) -> bool {
        if !self.any_port {
            return origin == self.prefix;
        }
        origin
            .strip_prefix(&self.prefix)
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
    }
}

impl FromStr for OriginPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().trim_end_matches('/');
        let (scheme, rest) =
            s.split_once("://").ok_or_else(|| format!("{s:?} is not an origin"))?;
        if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
            return Err(format!(
                "{s:?} is not an origin like http://127.0.0.1:8080 or http://127.0.0.1:*"
            ));
        }
        match s.strip_suffix(":*") {
            Some(prefix) => Ok(Self { prefix: prefix.to_owned(), any_port: true }),
            None => Ok(Self { prefix: s.to_owned(), any_port: false }),
        }
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.prefix)?;
        if self.any_port { f.write_str(":*") } else { Ok(()) }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> OriginPattern {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn exact_and_any_port_patterns() {
        let any = pattern("http://127.0.0.1:*");
        assert!(any.matches("http://127.0.0.1:41234"));
        assert!(!any.matches("http://127.0.0.1"));
        assert!(!any.matches("http://127.0.0.1:"));
        assert!(!any.matches("http://127.0.0.10:80"));
        assert!(!any.matches("https://127.0.0.1:80"));
        let exact = pattern("http://localhost:8080/");
        assert!(exact.matches("http://localhost:8080"));
        assert!(!exact.matches("http://localhost:8081"));
        assert_eq!(any.to_string(), "http://127.0.0.1:*");
    }

    #[test]
    fn non_origins_are_refused() {
        for bad in ["127.0.0.1:8080", "ftp://x", "http://", "http://a/b", "*"] {
            assert!(bad.parse::<OriginPattern>().is_err(), "{bad}");
        }
    }
}
