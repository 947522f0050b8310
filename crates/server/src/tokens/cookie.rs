//! The refresh-token cookie: `refreshToken=…; HttpOnly; Secure; SameSite=Strict;
//! Path=/api/auth; Max-Age=…`.
//!
//! `HttpOnly` keeps it from page scripts, `SameSite=Strict` from other sites' requests, and the
//! path from every request but the auth endpoints. `Secure` stays on even for the demo:
//! browsers accept `Secure` cookies over plain http on `localhost` and `127.0.0.1`.

use axum::http::{HeaderMap, HeaderValue, header};
use protocol::Timestamp;
use protocol::paths::{AUTH_COOKIE_PATH, REFRESH_COOKIE};

/// The `Set-Cookie` value that stores `token` until `valid_until`.
pub(crate) fn set(token: &str, now: Timestamp, valid_until: Timestamp) -> HeaderValue {
    // Whole seconds, rounded up, so the cookie never ends before the session.
    let max_age = (valid_until.millis().saturating_sub(now.millis()).max(0) + 999) / 1000;
    value(&format!(
        "{REFRESH_COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path={AUTH_COOKIE_PATH}; \
         Max-Age={max_age}"
    ))
}

/// The `Set-Cookie` value that deletes the cookie.
pub(crate) fn clear() -> HeaderValue {
    value(&format!(
        "{REFRESH_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path={AUTH_COOKIE_PATH}; Max-Age=0; \
         Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    ))
}

fn value(text: &str) -> HeaderValue {
    // Tokens are base64url, so the text is always a valid header value; an empty value would
    // only drop the cookie, never panic.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The refresh token from the request's `Cookie` headers, if there is a non-empty one.
pub(crate) fn get(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == REFRESH_COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_has_every_attribute_and_lives_as_long_as_the_session() {
        let now = Timestamp::from_millis(1_000_000);
        let cookie = set("abc", now, now.plus_millis(4 * 3600 * 1000 - 1));
        assert_eq!(
            cookie.to_str().ok(),
            Some(
                "refreshToken=abc; HttpOnly; Secure; SameSite=Strict; Path=/api/auth; \
                 Max-Age=14400"
            )
        );
        assert!(clear().to_str().is_ok_and(|c| c.contains("Max-Age=0")));
    }

    #[test]
    fn the_token_is_found_among_other_cookies() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; refreshTokenX=no"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=2;refreshToken=tok; c=3"));
        assert_eq!(get(&headers), Some("tok"));
        let mut empty = HeaderMap::new();
        empty.append(header::COOKIE, HeaderValue::from_static("refreshToken="));
        assert_eq!(get(&empty), None);
    }
}
