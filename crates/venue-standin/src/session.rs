//! Login sessions: random session ids kept in memory, each bound to a user and an XSRF token,
//! and the session cookie that carries the id.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::http::HeaderValue;
use axum::http::header::{COOKIE, HeaderMap};

use crate::Error;
use crate::config::{Config, SameSite};
use crate::keys::random_token;

/// One logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// The user's login name.
    pub(crate) username: String,
    /// The anti-forgery token the dashboard shows and `/Auth/Authorize` wants back in
    /// `X-XSRF-TOKEN`. One per session, not per page: the service worker scrapes it once and
    /// reuses it, which is what the legacy venue allows too.
    pub(crate) xsrf: String,
}

/// Every session, by id.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    /// Never pruned but on logout: a stand-in sees a handful of logins per run. A std mutex,
    /// held for one map operation and never across an await.
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session for `username`; returns its id (the cookie value).
    pub(crate) fn create(&self, username: &str) -> Result<String, Error> {
        // 256 bits each: guessing either is not a concern even for a stand-in.
        let id = random_token(32)?;
        let session = Session { username: username.to_owned(), xsrf: random_token(32)? };
        self.lock().insert(id.clone(), session);
        Ok(id)
    }

    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        self.lock().get(id).cloned()
    }

    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic elsewhere cannot leave the map half-updated, so a poisoned lock is still usable.
        self.by_id.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The value of cookie `name` in the request, if any. Looks at every `Cookie` header, since
/// HTTP/2 clients may split cookies across several.
pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// `Set-Cookie` that stores session `id`: `HttpOnly`, `Path=/`, the configured `SameSite`.
pub(crate) fn session_cookie(config: &Config, id: &str) -> Result<HeaderValue, Error> {
    cookie_header(config, id, "")
}

/// `Set-Cookie` that deletes the session cookie (same attributes, so the browser matches it).
pub(crate) fn expired_cookie(config: &Config) -> Result<HeaderValue, Error> {
    cookie_header(config, "", "; Max-Age=0")
}

fn cookie_header(config: &Config, value: &str, extra: &str) -> Result<HeaderValue, Error> {
    let secure = config.cookie_secure || config.cookie_same_site == SameSite::None;
    let header = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite={same_site}{secure}{extra}",
        name = config.cookie_name,
        same_site = config.cookie_same_site,
        secure = if secure { "; Secure" } else { "" },
    );
    HeaderValue::from_str(&header).map_err(|_| {
        Error::Config(format!("cookie name {:?} is not a valid token", config.cookie_name))
    })
}
