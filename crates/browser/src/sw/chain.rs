//! The hops of the token chain (seed 000) over an abstract HTTP client, and how each outcome maps
//! to the worker's three errors.
//!
//! 1. `GET` the dashboard with the user's cookies and scrape the XSRF token (stage `xsrf`);
//! 2. `GET` the authorize endpoint with the cookies and the XSRF header → venue JWT (`authorize`);
//! 3. `GET` the VTX endpoint with `Authorization: Bearer <venue JWT>` → EID JWT (`vtx`).
//!
//! Caching, the `ecoid` check, the retry after a VTX `401` and the single flight live in
//! [`super::session`]; this module only runs one hop at a time.

use std::time::Duration;

use protocol::ErrorCode;
use protocol::tokens::{AuthorizeResponse, ChainStage, SessionError, TokenExchangeResponse};

use super::jwt::Jwt;
use super::settings::{Endpoints, Settings, XsrfSource};
use super::xsrf;
use crate::net::{HttpResponse, NetError};

/// The HTTP client the chain runs on: [`crate::net::send`] in the browser, a fake in tests.
// `async fn` in a public trait: the worker is single-threaded, so no `Send` bound is wanted.
#[allow(async_fn_in_trait)]
pub trait Http {
    /// `GET url` with `headers`, with the user's cookies when `cookies`, within `timeout`.
    async fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        cookies: bool,
        timeout: Duration,
    ) -> Result<HttpResponse, NetError>;
}

/// Why the chain gave no tokens: one of the three codes of `/uc/session/vtx`, the hop, and a
/// detail for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// [`ErrorCode::VenueSessionExpired`], [`ErrorCode::NotProvisioned`] or
    /// [`ErrorCode::TokenAcquisitionFailed`].
    pub code: ErrorCode,
    /// The hop that failed.
    pub stage: ChainStage,
    /// The hop ran out of time (answered `504` rather than `502`).
    pub timed_out: bool,
    /// What happened, for the console; never shown to users.
    pub detail: String,
}

impl Failure {
    /// The venue session is gone (a login page, `401`, or no token).
    pub fn venue_session_expired(stage: ChainStage, detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::VenueSessionExpired, stage, detail)
    }

    /// The venue user has no `ecoid`.
    pub fn not_provisioned(stage: ChainStage, detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotProvisioned, stage, detail)
    }

    /// A hop failed: network, 5xx, an answer that makes no sense.
    pub fn acquisition_failed(stage: ChainStage, detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::TokenAcquisitionFailed, stage, detail)
    }

    fn new(code: ErrorCode, stage: ChainStage, detail: impl Into<String>) -> Self {
        Self { code, stage, timed_out: false, detail: detail.into() }
    }

    fn network(stage: ChainStage, err: NetError) -> Self {
        let timed_out = matches!(err, NetError::Timeout(_));
        Self { timed_out, ..Self::acquisition_failed(stage, err.to_string()) }
    }

    /// The HTTP status of the worker's answer: `401`, `403`, `502`, or `504` for a timeout.
    pub fn status(&self) -> u16 {
        match self.code {
            ErrorCode::VenueSessionExpired => 401,
            ErrorCode::NotProvisioned => 403,
            _ if self.timed_out => 504,
            _ => 502,
        }
    }

    /// The body of the answer and of the `session-error` message.
    pub fn to_session_error(&self) -> SessionError {
        let message = match self.code {
            ErrorCode::VenueSessionExpired => "Venue session expired",
            ErrorCode::NotProvisioned => "Venue user is not provisioned for ECS",
            _ => "Token acquisition failed",
        };
        SessionError {
            error: self.code.as_str().to_owned(),
            message: message.to_owned(),
            stage: self.stage,
        }
    }
}

/// The settings one run of the chain needs, resolved to absolute URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    /// Where the hops go.
    pub endpoints: Endpoints,
    /// Where the XSRF token is in the dashboard.
    pub xsrf_sources: Vec<XsrfSource>,
    /// The header that carries it.
    pub xsrf_header: String,
    /// Per hop.
    pub hop_timeout: Duration,
    /// Tokens count as expired this long before `exp`.
    pub margin: Duration,
}

impl ChainConfig {
    /// The chain's part of `settings`, for a worker at `origin`.
    pub fn new(settings: &Settings, origin: &str) -> Self {
        Self {
            endpoints: settings.endpoints(origin),
            xsrf_sources: settings.xsrf_sources.clone(),
            xsrf_header: settings.xsrf_header.clone(),
            hop_timeout: settings.hop_timeout,
            margin: settings.margin,
        }
    }
}

/// Hop 1: the dashboard's XSRF token.
pub(crate) async fn xsrf_token(http: &impl Http, config: &ChainConfig) -> Result<String, Failure> {
    let stage = ChainStage::Xsrf;
    let url = &config.endpoints.dashboard;
    let response = http
        .get(url, &[], true, config.hop_timeout)
        .await
        .map_err(|e| Failure::network(stage, e))?;
    match response.status {
        401 | 403 => {
            return Err(Failure::venue_session_expired(
                stage,
                format!("dashboard answered {}", response.status),
            ));
        }
        status if !response.is_success() => {
            return Err(Failure::acquisition_failed(stage, format!("dashboard answered {status}")));
        }
        _ => {}
    }
    // The venue sends an expired session to its login page; that page may well carry an
    // anti-forgery token of its own, so a redirect away from the dashboard decides first.
    if response.redirected && path_of(&response.url) != path_of(url) {
        return Err(Failure::venue_session_expired(
            stage,
            format!("dashboard redirected to {}", response.url),
        ));
    }
    xsrf::find_token(&response.body, &config.xsrf_sources)
        .ok_or_else(|| Failure::venue_session_expired(stage, "no XSRF token in the dashboard"))
}

/// Hop 2: the venue JWT, from `{"token": …}` JSON or a bare JWT.
pub(crate) async fn venue_jwt(
    http: &impl Http,
    config: &ChainConfig,
    xsrf: &str,
) -> Result<Jwt, Failure> {
    let stage = ChainStage::Authorize;
    let headers = [(config.xsrf_header.as_str(), xsrf)];
    let response = http
        .get(&config.endpoints.authorize, &headers, true, config.hop_timeout)
        .await
        .map_err(|e| Failure::network(stage, e))?;
    match response.status {
        401 | 403 => {
            return Err(Failure::venue_session_expired(
                stage,
                format!("authorize answered {}: {}", response.status, excerpt(&response.body)),
            ));
        }
        status if !response.is_success() => {
            return Err(Failure::acquisition_failed(stage, format!("authorize answered {status}")));
        }
        _ => {}
    }
    let body = response.body.trim();
    let token = if body.starts_with('{') {
        protocol::json::from_str::<AuthorizeResponse>(body)
            .map(|answer| answer.token)
            .map_err(|e| Failure::acquisition_failed(stage, format!("authorize JSON: {e}")))?
    } else if body.starts_with('"') {
        protocol::json::from_str::<String>(body)
            .map_err(|e| Failure::acquisition_failed(stage, format!("authorize JSON: {e}")))?
    } else {
        body.to_owned()
    };
    Jwt::decode(&token).map_err(|e| Failure::acquisition_failed(stage, format!("venue JWT: {e}")))
}

/// What the exchange can answer besides a token: the retryable `401` or a final failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExchangeError {
    /// VTX refused the venue JWT: drop it and run the chain again (once).
    Unauthorized(String),
    /// Anything else.
    Failed(Failure),
}

/// Hop 3: the EID JWT for `venue`, at `now_ms`.
pub(crate) async fn exchange(
    http: &impl Http,
    config: &ChainConfig,
    venue: &Jwt,
    now_ms: i64,
) -> Result<Jwt, ExchangeError> {
    let stage = ChainStage::Vtx;
    let bearer = format!("Bearer {}", venue.token);
    let response = http
        .get(&config.endpoints.vtx, &[("Authorization", &bearer)], false, config.hop_timeout)
        .await
        .map_err(|e| ExchangeError::Failed(Failure::network(stage, e)))?;
    let failed = |detail: String| ExchangeError::Failed(Failure::acquisition_failed(stage, detail));
    if response.status == 401 {
        return Err(ExchangeError::Unauthorized(excerpt(&response.body)));
    }
    if !response.is_success() {
        let code = response.error_body().and_then(|b| b.code());
        if response.status == 403 && code == Some(ErrorCode::NotProvisioned) {
            return Err(ExchangeError::Failed(Failure::not_provisioned(
                stage,
                "VTX: not provisioned",
            )));
        }
        return Err(failed(format!(
            "VTX answered {}: {}",
            response.status,
            excerpt(&response.body)
        )));
    }
    let answer: TokenExchangeResponse =
        response.json().map_err(|e| failed(format!("VTX JSON: {e}")))?;
    let mut eid = Jwt::decode(&answer.access_token).map_err(|e| failed(format!("EID JWT: {e}")))?;
    // `expires_in` stands in for an EID JWT without `exp`.
    if eid.expires_at_ms.is_none() && answer.expires_in > 0 {
        eid.expires_at_ms = Some(now_ms.saturating_add(answer.expires_in.saturating_mul(1000)));
    }
    Ok(eid)
}

/// The path of an absolute URL (`/Dashboard` of `https://v.example/Dashboard?x#y`).
fn path_of(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path[..end].trim_end_matches('/')
}

/// The start of a body, for error details.
fn excerpt(body: &str) -> String {
    body.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_messages_of_the_three_errors() {
        let cases = [
            (Failure::venue_session_expired(ChainStage::Xsrf, ""), 401, "Venue session expired"),
            (
                Failure::not_provisioned(ChainStage::Authorize, ""),
                403,
                "Venue user is not provisioned for ECS",
            ),
            (Failure::acquisition_failed(ChainStage::Vtx, ""), 502, "Token acquisition failed"),
            (
                Failure::network(ChainStage::Authorize, NetError::Timeout(Duration::from_secs(1))),
                504,
                "Token acquisition failed",
            ),
            (
                Failure::network(ChainStage::Authorize, NetError::Network("refused".into())),
                502,
                "Token acquisition failed",
            ),
        ];
        for (failure, status, message) in cases {
            assert_eq!(failure.status(), status, "{failure:?}");
            let body = failure.to_session_error();
            assert_eq!(body.message, message);
            assert_eq!(body.error, failure.code.as_str());
            assert_eq!(body.stage, failure.stage);
        }
    }

    #[test]
    fn paths_of_urls() {
        assert_eq!(path_of("https://v.example/Dashboard?x=1#y"), "/Dashboard");
        assert_eq!(path_of("https://v.example/Dashboard/"), "/Dashboard");
        assert_eq!(path_of("https://v.example"), "");
        assert_eq!(
            path_of("http://127.0.0.1:1/Account/Login?ReturnUrl=%2FDashboard"),
            "/Account/Login"
        );
    }
}
