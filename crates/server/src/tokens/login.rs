//! The one-time-token login of seed 002, with rotating refresh tokens:
//!
//! - `POST /api/auth/authenticate {"token"}`: the one-time token is taken from the enterprise
//!   store atomically; a session is made; the answer has an access JWT, and the refresh token
//!   goes into the `HttpOnly` cookie.
//! - `POST /api/auth/refresh`: the cookie's token is replaced by a new one (rotation) and a new
//!   access JWT is issued. The token replaced last still refreshes within the grace window,
//!   without being rotated again: a second tab that sent the same cookie at the same moment
//!   gets an access token, and the cookie the first answer set stays. Any replaced token used
//!   later revokes the session (`refresh_reused`). Two `refreshToken` cookies are refused
//!   (`ambiguous_cookie`) and nothing is rotated: a sibling subdomain may have planted one.
//! - `POST /api/auth/logout`: the session of the cookie (or of the bearer's sponsor and
//!   subscriber) is deleted and the cookie cleared. It always answers `200`, so that a client
//!   can log out whatever state its tokens are in.
//!
//! Refresh and logout refuse cross-site requests ([`super::origin`]). Failed refreshes leave the
//! cookie alone: another tab may have put a newer token there.

use axum::extract::State;
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use protocol::tokens::{AuthenticateRequest, LoginResponse, MessageBody, RefreshResponse};

use super::Tokens;
use super::error::{TokenError, no_store};
use super::secret::{
    MAX_TOKEN_CHARS, RefreshKey, TokenHash, is_one_time_token_shaped, new_refresh_token,
};
use super::store::{Refresh, SessionData};
use super::{cookie, origin, vtx};
use crate::error::{Json, RequestError};
use crate::openapi::errors;

/// What a refresh gives: the answer, and the new refresh token if there is one.
#[derive(Debug)]
pub struct Refreshed {
    /// The body.
    pub response: RefreshResponse,
    /// The new refresh token; `None` when the presented one was in its grace window.
    pub refresh_token: Option<String>,
}

impl Tokens {
    /// Takes the one-time `token` and starts a session: the answer body and the refresh token.
    pub async fn authenticate(&self, token: &str) -> Result<(LoginResponse, String), TokenError> {
        let unknown = || {
            TokenError::InvalidToken("the one-time token is unknown or was used already".to_owned())
        };
        if token.is_empty() {
            return Err(TokenError::InvalidRequest("the token is empty".to_owned()));
        }
        // Checked before any store sees it: a token of another shape is no token we could
        // have, and must not become part of a key in the enterprise Redis.
        if !is_one_time_token_shaped(token) {
            return Err(unknown());
        }
        let inner = &self.inner;
        let claims = inner.enterprise.take(token).await?.ok_or_else(unknown)?;
        let now = inner.clock.now();
        if claims.valid_until <= now {
            return Err(TokenError::TokenExpired("The one-time token has expired"));
        }
        let session = SessionData::from(claims);
        let refresh_token = new_refresh_token(Some(session.tag()))?;
        inner.sessions.create(&session, TokenHash::of(&refresh_token), now).await?;
        let (access_token, expires_in) = inner.access.issue(&session)?;
        tracing::info!(
            user = %session.user_id, sponsor = %session.sponsor_id,
            subscriber = %session.subscriber_id, "login"
        );
        let body = LoginResponse {
            access_token,
            refresh_token: inner.config.refresh_token_in_body.then(|| refresh_token.clone()),
            expires_in,
            session_expires_at: session.valid_until,
            permissions: session.permissions,
            sponsor_id: session.sponsor_id,
            subscriber_id: session.subscriber_id,
        };
        Ok((body, refresh_token))
    }

    /// Rotates `refresh_token` (see the module documentation).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Refreshed, TokenError> {
        if refresh_token.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::InvalidToken("the refresh token is too long".to_owned()));
        }
        let inner = &self.inner;
        let now = inner.clock.now();
        let presented = RefreshKey::of(refresh_token);
        // The next token names the same session (its tag is the presented one's).
        let next = new_refresh_token(presented.tag)?;
        let outcome = inner
            .sessions
            .refresh(presented, TokenHash::of(&next), now, inner.config.refresh_grace)
            .await?;
        let (session, next) = match outcome {
            Refresh::Rotated(session) => (session, Some(next)),
            Refresh::InGrace(session) => (session, None),
            Refresh::Reused => {
                tracing::warn!("a replaced refresh token was used again; session revoked");
                return Err(TokenError::RefreshReused);
            }
            Refresh::Expired => return Err(TokenError::SessionExpired),
            Refresh::Unknown => {
                return Err(TokenError::InvalidToken(
                    "the refresh token is unknown or was revoked".to_owned(),
                ));
            }
        };
        let (access_token, expires_in) = inner.access.issue(&session)?;
        let response = RefreshResponse {
            access_token,
            refresh_token: if inner.config.refresh_token_in_body { next.clone() } else { None },
            expires_in,
            session_expires_at: session.valid_until,
            permissions: session.permissions,
        };
        Ok(Refreshed { response, refresh_token: next })
    }

    /// Ends the session named by the refresh token, or else by the access token's sponsor and
    /// subscriber. `true` if a session was deleted.
    pub async fn logout(
        &self,
        refresh_token: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<bool, TokenError> {
        let sessions = &self.inner.sessions;
        if let Some(token) = refresh_token.filter(|t| t.len() <= MAX_TOKEN_CHARS)
            && sessions.delete_by_token(RefreshKey::of(token)).await?
        {
            return Ok(true);
        }
        let claims = match access_token {
            Some(token) => self.inner.access.verify(token).await.ok(),
            None => None,
        };
        if let Some(claims) = claims {
            return Ok(sessions.delete(&claims.sponsor_id, &claims.subscriber_id).await?);
        }
        Ok(false)
    }
}

errors! {
    /// The errors of a login.
    AuthenticateErrors with BODY_ERRORS {
        400: InvalidRequest;
        401: InvalidToken, TokenExpired;
        503: Internal;
    }
}

/// Log in with a one-time token
///
/// Takes the one-time token (once: a second use is `401 invalid_token`) and starts a login
/// session: the answer has an access JWT; the refresh token goes into the `HttpOnly`
/// `refreshToken` cookie (path `/api/auth`), with the readable marker cookie
/// `websessionLoggedIn=1`. `503 internal` when a store does not answer.
#[utoipa::path(
    post,
    path = "/api/auth/authenticate",
    tag = "login",
    request_body = AuthenticateRequest,
    responses(
        (status = 200, description = "Logged in; the cookies are set.", body = LoginResponse),
        AuthenticateErrors,
    )
)]
pub(crate) async fn authenticate(
    State(tokens): State<Tokens>,
    body: Result<Json<AuthenticateRequest>, RequestError>,
) -> Result<Response, TokenError> {
    let Json(request) = body?;
    let (body, refresh_token) = tokens.authenticate(&request.token).await?;
    let cookies = cookie::set(&refresh_token, tokens.inner.clock.now(), body.session_expires_at);
    let mut response = axum::Json(body).into_response();
    append_cookies(&mut response, cookies);
    no_store(&mut response);
    Ok(response)
}

errors! {
    /// The errors of a refresh.
    RefreshErrors {
        401: SessionExpired, RefreshReused, AmbiguousCookie, InvalidToken;
        403: CrossSiteRequest;
        503: Internal;
    }
}

/// Refresh the access token
///
/// Rotates the `refreshToken` cookie's token and issues a new access JWT. The token replaced
/// last still refreshes within the grace window without rotating again; a replaced token used
/// later revokes the session (`401 refresh_reused`). Two `refreshToken` cookies answer `401
/// ambiguous_cookie` and rotate nothing. Cross-site requests are refused.
#[utoipa::path(
    post,
    path = "/api/auth/refresh",
    tag = "login",
    params(("refreshToken" = Option<String>, Cookie, description = "The refresh token (HttpOnly cookie).")),
    responses(
        (status = 200, description = "Refreshed; a rotated cookie is set.", body = RefreshResponse),
        RefreshErrors,
    )
)]
pub(crate) async fn refresh(
    State(tokens): State<Tokens>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, TokenError> {
    origin::check(&headers, &uri, &tokens.inner.allowed_origins)?;
    let token = cookie::get(&headers)
        .map_err(|cookie::Ambiguous| TokenError::AmbiguousCookie)?
        .ok_or(TokenError::NoRefreshCookie)?;
    let refreshed = match tokens.refresh(token).await {
        Ok(refreshed) => refreshed,
        // The session is over for good: the cookies go too, so the page's marker says so and
        // the next page load makes no refresh request.
        Err(
            e @ (TokenError::SessionExpired
            | TokenError::RefreshReused
            | TokenError::InvalidToken(_)),
        ) => {
            let mut response = e.into_response();
            append_cookies(&mut response, cookie::clear());
            return Ok(response);
        }
        Err(e) => return Err(e),
    };
    let expires = refreshed.response.session_expires_at;
    let mut response = axum::Json(refreshed.response).into_response();
    if let Some(next) = refreshed.refresh_token {
        append_cookies(&mut response, cookie::set(&next, tokens.inner.clock.now(), expires));
    }
    no_store(&mut response);
    Ok(response)
}

errors! {
    /// The errors of a logout.
    LogoutErrors {
        403: CrossSiteRequest;
        503: Internal;
    }
}

/// Log out
///
/// Deletes the session of the `refreshToken` cookie (or else of the bearer access token's
/// sponsor and subscriber) and clears the cookies. Answers `200` whatever state the tokens are
/// in. Cross-site requests are refused.
#[utoipa::path(
    post,
    path = "/api/auth/logout",
    tag = "login",
    params(("refreshToken" = Option<String>, Cookie, description = "The refresh token (HttpOnly cookie).")),
    responses(
        (status = 200, description = "Logged out; the cookies are cleared.", body = MessageBody),
        LogoutErrors,
    )
)]
pub(crate) async fn logout(
    State(tokens): State<Tokens>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, TokenError> {
    origin::check(&headers, &uri, &tokens.inner.allowed_origins)?;
    // Ambiguous cookies name no session for sure: only the bearer's is ended then.
    let refresh_token = cookie::get(&headers).unwrap_or(None);
    let deleted = tokens.logout(refresh_token, vtx::bearer(&headers)).await?;
    tracing::info!(deleted, "logout");
    let body = MessageBody { message: "Logged out successfully".to_owned() };
    let mut response = axum::Json(body).into_response();
    append_cookies(&mut response, cookie::clear());
    Ok(response)
}

fn append_cookies(response: &mut Response, cookies: [axum::http::HeaderValue; 2]) {
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
}
