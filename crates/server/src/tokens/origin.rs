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

use axum::http::{HeaderMap, Uri, header};

use super::error::TokenError;

/// Refuses cross-site requests (see the module documentation).
pub(crate) fn check(headers: &HeaderMap, uri: &Uri, allowed: &[String]) -> Result<(), TokenError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null").trim_end_matches('/');
        if origin == "null" {
            return Err(TokenError::CrossSite("Origin: null".to_owned()));
        }
        if allowed.iter().any(|a| origin_matches(a, origin)) {
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

/// Whether `origin` is `allowed`, where an `allowed` ending in `:*` stands for any port.
fn origin_matches(allowed: &str, origin: &str) -> bool {
    let allowed = allowed.trim_end_matches('/');
    match allowed.strip_suffix(":*") {
        Some(prefix) => origin
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
            .then(|| &origin[prefix.len()..])
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())),
        None => allowed.eq_ignore_ascii_case(origin),
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
        let allowed = vec!["http://127.0.0.1:9999".to_owned()];
        let ok =
            |pairs: &[(&'static str, &'static str)]| check(&headers(pairs), &uri, &allowed).is_ok();
        assert!(ok(&[]));
        assert!(ok(&[("host", "app.example:8080"), ("origin", "https://app.example:8080")]));
        assert!(ok(&[("host", "app.example"), ("origin", "http://127.0.0.1:9999")]));
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        let any_port = vec!["http://127.0.0.1:*".to_owned()];
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
}
