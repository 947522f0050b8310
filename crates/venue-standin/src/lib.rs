//! A development **stand-in** for the legacy Venue UI monolith (someone else's system), so that
//! the demo and the tests run the whole token chain on one machine. It is a mock, not the venue.
//!
//! It serves what the service worker's token chain touches (seed `000_…`):
//!
//! | path | what |
//! |---|---|
//! | `GET /Account/Login` | login form (`alice`: provisioned for ECS, `bob`: not; password ignored) |
//! | `POST /Account/Login` | session cookie, `303` to a same-site `ReturnUrl` or `/Dashboard`; unknown user `401` |
//! | `POST`/`GET /Account/Logout` | session and cookie gone, `303` to the login form |
//! | `GET /Dashboard` | HTML with `<input name="__RequestVerificationToken" type="hidden" value="…">`; no session: `302` to the login |
//! | `GET /Auth/Authorize` | with the cookie and `X-XSRF-TOKEN`: `{"token": "<venue JWT>"}`; else `403` |
//! | `GET /Venue/.well-known/jwks.json` | the public JWKS ([`Config::jwks_path`]) |
//! | `/__standin/…` | test-only control: fault switches, counters, reset ([`CONTROL_PREFIX`]) |
//!
//! None of these collide with our server's paths (`/web-event-*`, `/uc/*`, `/vtx/*`, `/api/*`,
//! `/.well-known/jwks.json`), so [`VenueStandin::router`] can be merged into the demo server's
//! router on one origin, or served alone by [`run`] (as the `venue-standin` binary does).
//!
//! Venue JWTs are signed with EdDSA (Ed25519) by a key generated at start, with a random `kid`;
//! their claims are [`protocol::tokens::VenueClaims`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use venue_standin::{Config, FaultMode, Hop, VenueStandin};
//!
//! let standin = VenueStandin::new(Config::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}", listener.local_addr()?);
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(venue_standin::run(listener, standin.clone(), async {
//!     let _ = stopped.await;
//! }));
//! standin.set_fault(Hop::Authorize, FaultMode::Fail); // `/Auth/Authorize` now answers 500
//! # let _ = url;
//! let _ = stop.send(());
//! server.await??;
//! # Ok(())
//! # }
//! ```

mod config;
mod control;
mod faults;
mod keys;
mod pages;
mod routes;
mod session;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use protocol::ErrorCode;
use protocol::tokens::VenueClaims;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use crate::config::{
    Config, DEFAULT_AUDIENCE, DEFAULT_COOKIE_NAME, DEFAULT_ISSUER, DEFAULT_JWKS_PATH, SameSite,
    User,
};
pub use crate::faults::{FaultMode, Faults, Hop};
pub use crate::keys::ALGORITHM;

use crate::faults::Counters;
use crate::keys::SigningKey;
use crate::session::{Session, Sessions, cookie_value};

/// The login form.
pub const LOGIN_PATH: &str = "/Account/Login";
/// Logout.
pub const LOGOUT_PATH: &str = "/Account/Logout";
/// The page that carries the XSRF token.
pub const DASHBOARD_PATH: &str = "/Dashboard";
/// The venue JWT endpoint.
pub const AUTHORIZE_PATH: &str = "/Auth/Authorize";
/// The name of the hidden input (and form field) that carries the XSRF token.
pub const XSRF_FIELD: &str = "__RequestVerificationToken";
/// The request header `/Auth/Authorize` wants the XSRF token in (matched case-insensitively).
pub const XSRF_HEADER: &str = "x-xsrf-token";
/// The prefix of the test-only control API.
pub const CONTROL_PREFIX: &str = "/__standin";

/// What can go wrong in the stand-in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`Config`] value the stand-in cannot serve with.
    #[error("invalid venue stand-in configuration: {0}")]
    Config(String),
    /// The operating system gave no random bytes.
    #[error("no random bytes from the operating system: {0}")]
    Random(getrandom::Error),
    /// The signing key could not be made.
    #[error("venue signing key: {0}")]
    Key(String),
    /// No user of that name in [`Config::users`].
    #[error("unknown venue user {0:?}")]
    UnknownUser(String),
    /// jsonwebtoken failed to sign or to export the key.
    #[error("venue JWT: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

impl IntoResponse for Error {
    /// `500` with the `internal` error body; the details go to the log, not to the client.
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "venue stand-in: request failed");
        routes::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "Venue stand-in error.",
        )
    }
}

/// The stand-in: configuration, signing key, sessions, fault switches and counters. Cheap to
/// clone; clones share everything, so a test keeps one while the server runs another.
#[derive(Debug, Clone)]
pub struct VenueStandin {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    key: SigningKey,
    sessions: Sessions,
    faults: Faults,
    counters: Counters,
}

impl VenueStandin {
    /// A stand-in with a fresh signing key. Fails on a configuration it cannot serve (a JWKS path
    /// that is not an absolute path or that takes a venue path, a cookie name that is not a
    /// cookie token) or when the operating system has no randomness.
    pub fn new(config: Config) -> Result<Self, Error> {
        validate(&config)?;
        let key = SigningKey::generate()?;
        let inner = Inner {
            config,
            key,
            sessions: Sessions::default(),
            faults: Faults::default(),
            counters: Counters::default(),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Every route of the stand-in, with CORS when configured. Merge it into another router to
    /// serve it on that router's origin.
    pub fn router(&self) -> Router {
        let venue = Router::new()
            .route(LOGIN_PATH, get(routes::login_form).post(routes::login_submit))
            .route(LOGOUT_PATH, get(routes::logout).post(routes::logout))
            .route(DASHBOARD_PATH, get(routes::dashboard))
            .route(AUTHORIZE_PATH, get(routes::authorize))
            .route(&self.inner.config.jwks_path, get(routes::jwks))
            // `route_layer`: only requests that match a venue route are counted, not 404s.
            .route_layer(axum::middleware::from_fn_with_state(
                self.inner.counters.clone(),
                control::count,
            ));
        let app =
            if self.inner.config.control_api { venue.merge(control::router()) } else { venue };
        let app = app.with_state(self.clone());
        if self.inner.config.cors_allow_any_origin_with_credentials {
            // Outermost, so preflights are answered here and neither counted nor faulted.
            app.layer(
                CorsLayer::new()
                    .allow_origin(AllowOrigin::mirror_request())
                    .allow_credentials(true)
                    .allow_methods([Method::GET, Method::POST])
                    .allow_headers([HeaderName::from_static(XSRF_HEADER), header::CONTENT_TYPE]),
            )
        } else {
            app
        }
    }

    /// A handle on the fault switches (shared with the running server).
    pub fn faults(&self) -> Faults {
        self.inner.faults.clone()
    }

    /// Make `hop` answer in `mode`; the same as `self.faults().set(hop, mode)`.
    pub fn set_fault(&self, hop: Hop, mode: FaultMode) {
        self.inner.faults.set(hop, mode);
    }

    /// How many requests arrived at `path` (e.g. [`DASHBOARD_PATH`]) since start or the last
    /// [`reset`](Self::reset), including those a fault switch failed or held.
    pub fn counter(&self, path: &str) -> u64 {
        self.inner.counters.get(path)
    }

    /// Every non-zero counter, by path.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.inner.counters.snapshot()
    }

    /// Counters to zero and every fault switch to [`FaultMode::Ok`] (hanging requests go on).
    /// Sessions stay; see [`expire_sessions`](Self::expire_sessions).
    pub fn reset(&self) {
        self.inner.counters.clear();
        self.inner.faults.clear();
    }

    /// Forget every login session, as when the venue's sessions time out: the dashboard then
    /// redirects to the login and `/Auth/Authorize` answers `403`.
    pub fn expire_sessions(&self) {
        self.inner.sessions.clear();
    }

    /// The public JWKS, as served on [`Config::jwks_path`].
    pub fn jwks(&self) -> serde_json::Value {
        self.inner.key.jwks()
    }

    /// The `kid` of the signing key (fresh at every start).
    pub fn key_id(&self) -> &str {
        self.inner.key.kid()
    }

    /// A venue JWT for `username`, as `/Auth/Authorize` would issue it now: `iss`, `aud`, `sub`,
    /// `iat`, `exp = iat + token_lifetime`, and `ecoid` only for provisioned users.
    pub fn issue_token(&self, username: &str) -> Result<String, Error> {
        let config = &self.inner.config;
        let user = config.user(username).ok_or_else(|| Error::UnknownUser(username.to_owned()))?;
        let iat = unix_now();
        let lifetime = i64::try_from(config.token_lifetime.as_secs()).unwrap_or(i64::MAX);
        self.sign_claims(&VenueClaims {
            sub: user.username.clone(),
            iss: config.issuer.clone(),
            aud: config.audience.clone(),
            iat,
            exp: iat.saturating_add(lifetime),
            nbf: None,
            ecoid: user.ecoid.clone(),
        })
    }

    /// Sign arbitrary claims with the venue key: for tests of the token exchange that need
    /// expired tokens, other audiences or unknown users, all correctly signed.
    pub fn sign_claims(&self, claims: &VenueClaims) -> Result<String, Error> {
        self.inner.key.sign(claims)
    }

    /// The session the request's cookie names, if it is live.
    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie_value(headers, &self.inner.config.cookie_name)?;
        self.inner.sessions.get(id)
    }
}

/// Serve `standin` on `listener` until `shutdown` completes, then finish the requests in flight
/// and return. The caller binds the socket, so tests can bind `127.0.0.1:0`.
///
/// Requests that a [`FaultMode::Hang`] switch holds are released with `503` at shutdown, so that
/// the graceful shutdown does not wait for them forever.
pub async fn run(
    listener: tokio::net::TcpListener,
    standin: VenueStandin,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let faults = standin.faults();
    axum::serve(listener, standin.router())
        .with_graceful_shutdown(async move {
            shutdown.await;
            faults.release_hangs();
        })
        .await
}

fn validate(config: &Config) -> Result<(), Error> {
    let path = &config.jwks_path;
    if !path.starts_with('/') {
        return Err(Error::Config(format!("jwks_path {path:?} must start with '/'")));
    }
    // axum panics on a route registered twice; say so here instead.
    if [LOGIN_PATH, LOGOUT_PATH, DASHBOARD_PATH, AUTHORIZE_PATH].contains(&path.as_str())
        || path.starts_with(CONTROL_PREFIX)
    {
        return Err(Error::Config(format!(
            "jwks_path {path:?} is taken by another stand-in route"
        )));
    }
    let name = &config.cookie_name;
    // RFC 6265 cookie-name is an RFC 7230 token.
    let is_token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(is_token) {
        return Err(Error::Config(format!("cookie_name {name:?} is not a cookie name")));
    }
    Ok(())
}

/// Seconds since the Unix epoch, as JWT times are written.
fn unix_now() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_that_cannot_be_served_are_refused() {
        for jwks_path in ["jwks.json", DASHBOARD_PATH, "/__standin/jwks"] {
            let config = Config { jwks_path: jwks_path.to_owned(), ..Config::default() };
            assert!(matches!(VenueStandin::new(config), Err(Error::Config(_))), "{jwks_path}");
        }
        for cookie_name in ["", "a b", "a;b", "a=b"] {
            let config = Config { cookie_name: cookie_name.to_owned(), ..Config::default() };
            assert!(matches!(VenueStandin::new(config), Err(Error::Config(_))), "{cookie_name}");
        }
    }

    #[test]
    fn unknown_users_get_no_token() {
        let standin = VenueStandin::new(Config::default()).ok();
        let result = standin.map(|standin| standin.issue_token("mallory"));
        assert!(matches!(result, Some(Err(Error::UnknownUser(_)))));
    }
}
