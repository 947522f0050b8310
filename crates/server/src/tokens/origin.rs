//! The cross-site check of refresh and logout: the cookie is `SameSite=Strict` already, and this
//! also refuses what a browser marks as coming from another site, for browsers or proxies that
//! do not apply `SameSite`.
//!
//! Rules, in order:
//! - an `Origin` header decides: allowed if it is one of the configured CORS or trusted origins
//!   (an entry ending in `:*` matches any port), or if its
//!   host and port are this request's `Host` (the scheme is not compared: behind a TLS proxy
//!   the server cannot know its own); `Origin: null` is refused;
//! - else `Sec-Fetch-Site` decides: `same-origin` and `none` (typed by the user) are allowed,
//!   `same-site` and `cross-site` are refused;
//! - with neither header the request is not from a browser page (curl, a server), and cookies
//!   there are the caller's own business: allowed.

use std::fmt;
use std::str::FromStr;

use axum::http::{HeaderMap, Uri, header};

use super::error::TokenError;

/// Refuses cross-site requests (see the module documentation).
pub(crate) fn check(
    headers: &HeaderMap,
    uri: &Uri,
    allowed: &[OriginPattern],
) -> Result<(), TokenError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null").trim_end_matches('/');
        if origin == "null" {
            return Err(TokenError::CrossSite("Origin: null".to_owned()));
        }
        if allowed.iter().any(|a| a.matches(origin)) {
            return Ok(());
        }
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()));
        if host.is_some_and(|host| host.eq_ignore_ascii_case(origin_host)) {
            return Ok(());
        }
        return Err(TokenError::CrossSite(format!(
            "Origin {} is neither this server nor an allowed origin",
            origin.chars().take(100).collect::<String>()
        )));
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        None | Some("same-origin" | "none") => Ok(()),
        Some(other) => Err(TokenError::CrossSite(format!(
            "Sec-Fetch-Site: {}",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// An allowed origin: exact (`http://127.0.0.1:8080`) or any port (`http://127.0.0.1:*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    /// `scheme://host`, or the whole origin when `any_port` is false.
    prefix: String,
    any_port: bool,
}

impl OriginPattern {
    /// Exactly `origin` (a trailing `/` ignored), whatever it looks like.
    pub fn exact(origin: &str) -> Self {
        Self { prefix: origin.trim().trim_end_matches('/').to_owned(), any_port: false }
    }

    /// Whether `origin` (an `Origin` header's value) matches; ASCII case is ignored.
    pub fn matches(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        if !self.any_port {
            return origin.eq_ignore_ascii_case(&self.prefix);
        }
        let len = self.prefix.len();
        origin.get(..len).is_some_and(|head| head.eq_ignore_ascii_case(&self.prefix))
            && origin[len..]
                .strip_prefix(':')
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn same_origin_and_allowed_origins_pass_and_other_sites_do_not() {
        let uri = Uri::from_static("/api/auth/refresh");
        let allowed = vec![OriginPattern::exact("http://127.0.0.1:9999")];
        let ok =
            |pairs: &[(&'static str, &'static str)]| check(&headers(pairs), &uri, &allowed).is_ok();
        assert!(ok(&[]));
        assert!(ok(&[("host", "app.example:8080"), ("origin", "https://app.example:8080")]));
        assert!(ok(&[("host", "app.example"), ("origin", "http://127.0.0.1:9999")]));
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        let any_port = vec![pattern("http://127.0.0.1:*")];
        let ok_any = |origin: &'static str| {
            check(&headers(&[("host", "app.example"), ("origin", origin)]), &uri, &any_port).is_ok()
        };
        assert!(ok_any("http://127.0.0.1:41234"));
        assert!(!ok_any("http://127.0.0.1:"));
        assert!(!ok_any("http://127.0.0.1"));
        assert!(!ok_any("http://127.0.0.1:1@evil.example"));
        assert!(!ok_any("http://127.0.0.10:80"));
        assert!(!ok(&[("host", "app.example"), ("origin", "https://evil.example")]));
        assert!(!ok(&[("host", "app.example"), ("origin", "null")]));
        assert!(!ok(&[("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[("sec-fetch-site", "same-site")]));
        // The Origin decides over Sec-Fetch-Site when both are there.
        assert!(!ok(&[
            ("host", "a.example"),
            ("origin", "https://b.example"),
            ("sec-fetch-site", "same-origin")
        ]));
    }

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
