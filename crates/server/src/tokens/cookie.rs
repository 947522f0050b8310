//! The refresh-token cookie: `refreshToken=…; HttpOnly; Secure; SameSite=Strict;
//! Path=/api/auth; Max-Age=…`.
//!
//! `HttpOnly` keeps it from page scripts, `SameSite=Strict` from other sites' requests, and the
//! path from every request but the auth endpoints. `Secure` stays on even for the demo:
//! browsers accept `Secure` cookies over plain http on `localhost` and `127.0.0.1`.
//!
//! Next to it goes a marker, `websessionLoggedIn=1; Secure; SameSite=Strict; Path=/`, readable
//! by the page's scripts and set and cleared with the refresh cookie (same `Max-Age`): a page
//! without it knows there is no session and makes no refresh request that would fail. It
//! carries nothing secret; a forged one only costs the page that one failing request.

use axum::http::{HeaderMap, HeaderValue, header};
use protocol::Timestamp;
use protocol::paths::{AUTH_COOKIE_PATH, REFRESH_COOKIE, SESSION_MARKER_COOKIE};

/// The `Set-Cookie` values that store `token` until `valid_until`: the refresh cookie and the
/// marker, with the same lifetime.
pub(crate) fn set(token: &str, now: Timestamp, valid_until: Timestamp) -> [HeaderValue; 2] {
    // Whole seconds, rounded up, so the cookie never ends before the session.
    let max_age = (valid_until.millis().saturating_sub(now.millis()).max(0) + 999) / 1000;
    [
        value(&format!(
            "{REFRESH_COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; \
             Path={AUTH_COOKIE_PATH}; Max-Age={max_age}"
        )),
        value(&format!(
            "{SESSION_MARKER_COOKIE}=1; Secure; SameSite=Strict; Path=/; Max-Age={max_age}"
        )),
    ]
}

/// The `Set-Cookie` values that delete the refresh cookie and the marker.
pub(crate) fn clear() -> [HeaderValue; 2] {
    const GONE: &str = "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT";
    [
        value(&format!(
            "{REFRESH_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path={AUTH_COOKIE_PATH}; {GONE}"
        )),
        value(&format!("{SESSION_MARKER_COOKIE}=; Secure; SameSite=Strict; Path=/; {GONE}")),
    ]
}

fn value(text: &str) -> HeaderValue {
    // Tokens are base64url, so the text is always a valid header value; an empty value would
    // only drop the cookie, never panic.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// More than one `refreshToken` cookie came with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ambiguous;

/// The refresh token from the request's `Cookie` headers, if there is a non-empty one.
///
/// Two `refreshToken` cookies (in one header or in several, empty ones included) are
/// [`Ambiguous`]: a sibling subdomain can plant a cookie for the parent domain that the browser
/// sends next to ours, first or last as it likes. Taking either would let that page choose the
/// session (or, with an empty value, log the user out), so neither is taken.
pub(crate) fn get(headers: &HeaderMap) -> Result<Option<&str>, Ambiguous> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| name.trim() == REFRESH_COOKIE)
        .map(|(_, value)| value.trim().trim_matches('"'));
    let first = found.next();
    if found.next().is_some() {
        return Err(Ambiguous);
    }
    Ok(first.filter(|value| !value.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_has_every_attribute_and_lives_as_long_as_the_session() {
        let now = Timestamp::from_millis(1_000_000);
        let [cookie, marker] = set("abc", now, now.plus_millis(4 * 3600 * 1000 - 1));
        assert_eq!(
            cookie.to_str().ok(),
            Some(
                "refreshToken=abc; HttpOnly; Secure; SameSite=Strict; Path=/api/auth; \
                 Max-Age=14400"
            )
        );
        assert_eq!(
            marker.to_str().ok(),
            Some("websessionLoggedIn=1; Secure; SameSite=Strict; Path=/; Max-Age=14400"),
            "readable by the page (no HttpOnly), as long as the refresh cookie"
        );
        let [cookie, marker] = clear();
        assert!(cookie.to_str().is_ok_and(|c| c.starts_with("refreshToken=;")));
        assert!(cookie.to_str().is_ok_and(|c| c.contains("Max-Age=0")));
        assert!(marker.to_str().is_ok_and(|c| c.starts_with("websessionLoggedIn=;")));
        assert!(marker.to_str().is_ok_and(|c| c.contains("Max-Age=0; Expires=Thu, 01 Jan 1970")));
    }

    #[test]
    fn the_token_is_found_among_other_cookies() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; refreshTokenX=no"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=2;refreshToken=tok; c=3"));
        assert_eq!(get(&headers), Ok(Some("tok")));
        let mut empty = HeaderMap::new();
        empty.append(header::COOKIE, HeaderValue::from_static("refreshToken="));
        assert_eq!(get(&empty), Ok(None));
    }

    #[test]
    fn two_refresh_cookies_are_ambiguous_in_one_header_or_two_and_when_one_is_empty() {
        for cookies in [
            &["refreshToken=a; refreshToken=b"][..],
            &["refreshToken=; refreshToken=b"],
            &["refreshToken=a", "x=1; refreshToken=b"],
            &["refreshToken=a; refreshToken=a"],
        ] {
            let mut headers = HeaderMap::new();
            for cookie in cookies {
                headers.append(header::COOKIE, HeaderValue::from_static(cookie));
            }
            assert_eq!(get(&headers), Err(Ambiguous), "{cookies:?}");
        }
    }
}
