//! The venue's own endpoints: login and logout, `/Dashboard`, `/Auth/Authorize` and the JWKS.

use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Form, Json};
use protocol::tokens::AuthorizeResponse;
use protocol::{ErrorBody, ErrorCode};
use serde::Deserialize;

use crate::faults::{Hop, Verdict};
use crate::session::{cookie_value, expired_cookie, session_cookie};
use crate::{DASHBOARD_PATH, Error, LOGIN_PATH, VenueStandin, XSRF_HEADER};

/// The query of the login page: where to go after logging in.
#[derive(Debug, Deserialize)]
pub(crate) struct ReturnUrlQuery {
    #[serde(rename = "ReturnUrl")]
    return_url: Option<String>,
}

/// The login form's fields. A missing user name defaults to empty, so a bad post gets the form
/// back with an error rather than axum's plain-text rejection. The `password` field is not read
/// at all: the stand-in accepts any password.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(rename = "ReturnUrl")]
    return_url: Option<String>,
}

/// `GET /Account/Login`: the form.
pub(crate) async fn login_form(
    State(standin): State<VenueStandin>,
    Query(query): Query<ReturnUrlQuery>,
) -> Html<String> {
    Html(crate::pages::login(standin.config(), query.return_url.as_deref(), None))
}

/// `POST /Account/Login`: a known user gets a session cookie and a `303` to `ReturnUrl` (if it is
/// a path on this site) or to the dashboard; anyone else gets `401` and the form again.
pub(crate) async fn login_submit(
    State(standin): State<VenueStandin>,
    Query(query): Query<ReturnUrlQuery>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, Error> {
    // ASP.NET posts ReturnUrl in the form; a form action with `?ReturnUrl=` works too.
    let return_url = form.return_url.or(query.return_url);
    let config = standin.config();
    let Some(user) = config.user(form.username.trim()) else {
        tracing::info!(username = %form.username, "venue stand-in: login refused, unknown user");
        let page = crate::pages::login(config, return_url.as_deref(), Some("Unknown user name."));
        return Ok((StatusCode::UNAUTHORIZED, Html(page)).into_response());
    };

    // A new login replaces the browser's previous session rather than leaving it behind.
    if let Some(old) = cookie_value(&headers, &config.cookie_name) {
        standin.inner.sessions.remove(old);
    }
    let id = standin.inner.sessions.create(&user.username)?;
    tracing::info!(username = %user.username, "venue stand-in: logged in");

    let target = return_url
        .as_deref()
        .filter(|url| is_local_path(url))
        .and_then(|url| HeaderValue::from_str(url).ok())
        .unwrap_or(HeaderValue::from_static(DASHBOARD_PATH));
    Ok((StatusCode::SEE_OTHER, [(SET_COOKIE, session_cookie(config, &id)?), (LOCATION, target)])
        .into_response())
}

/// `POST` (or `GET`) `/Account/Logout`: forget the session, delete the cookie, back to login.
pub(crate) async fn logout(
    State(standin): State<VenueStandin>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let config = standin.config();
    if let Some(id) = cookie_value(&headers, &config.cookie_name) {
        standin.inner.sessions.remove(id);
    }
    Ok((
        StatusCode::SEE_OTHER,
        [(SET_COOKIE, expired_cookie(config)?), (LOCATION, HeaderValue::from_static(LOGIN_PATH))],
    )
        .into_response())
}

/// `GET /Dashboard`: the page with the XSRF token, or a `302` to the login page as the legacy
/// venue answers when its session has expired.
pub(crate) async fn dashboard(State(standin): State<VenueStandin>, headers: HeaderMap) -> Response {
    if let Some(response) = fault(&standin, Hop::Dashboard).await {
        return response;
    }
    let Some(session) = standin.session(&headers) else {
        return (
            StatusCode::FOUND,
            [(LOCATION, HeaderValue::from_static("/Account/Login?ReturnUrl=%2FDashboard"))],
        )
            .into_response();
    };
    let ecoid = standin.config().user(&session.username).and_then(|user| user.ecoid.as_deref());
    let page = crate::pages::dashboard(&session.username, ecoid, &session.xsrf);
    (no_store(), Html(page)).into_response()
}

/// `GET /Auth/Authorize`: the venue JWT for the session's user, given the session cookie and
/// the session's XSRF token in `X-XSRF-TOKEN`; otherwise `403`.
pub(crate) async fn authorize(
    State(standin): State<VenueStandin>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    if let Some(response) = fault(&standin, Hop::Authorize).await {
        return Ok(response);
    }
    let Some(session) = standin.session(&headers) else {
        return Ok(error(
            StatusCode::FORBIDDEN,
            ErrorCode::VenueSessionExpired,
            "No venue session: log in to the venue first.",
        ));
    };
    let sent = headers.get(XSRF_HEADER).and_then(|value| value.to_str().ok());
    if sent != Some(session.xsrf.as_str()) {
        return Ok(error(
            StatusCode::FORBIDDEN,
            ErrorCode::CrossSiteRequest,
            "Missing or wrong X-XSRF-TOKEN: take it from the dashboard of this session.",
        ));
    }
    let token = standin.issue_token(&session.username)?;
    tracing::info!(username = %session.username, "venue stand-in: venue JWT issued");
    Ok((no_store(), Json(AuthorizeResponse { token })).into_response())
}

/// `GET` on the JWKS path: the public key set.
pub(crate) async fn jwks(State(standin): State<VenueStandin>) -> Json<serde_json::Value> {
    Json(standin.jwks())
}

/// The response a fault switch asks for, after waiting out a hang; `None` to answer normally.
async fn fault(standin: &VenueStandin, hop: Hop) -> Option<Response> {
    match standin.inner.faults.apply(hop).await {
        Verdict::Proceed => None,
        Verdict::Fail => Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            format!("Injected fault: the {hop} hop is switched to fail."),
        )),
        Verdict::Released => Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal,
            "The venue stand-in is shutting down.",
        )),
    }
}

/// A JSON error in the product's one error shape.
pub(crate) fn error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorBody::new(code, message))).into_response()
}

/// Pages and tokens bound to a session must not be cached by the browser or a proxy.
fn no_store() -> [(axum::http::HeaderName, HeaderValue); 1] {
    [(CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

/// Whether `url` is a path on this site, safe to redirect to after login. Rejects absolute URLs,
/// protocol-relative `//host` and `/\host` (which browsers treat as `//host`), and control
/// characters, the usual open-redirect tricks.
pub(crate) fn is_local_path(url: &str) -> bool {
    url.starts_with('/')
        && !url.starts_with("//")
        && !url.contains('\\')
        && !url.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::is_local_path;

    #[test]
    fn only_same_site_paths_are_redirect_targets() {
        for ok in ["/Dashboard", "/", "/a/b?c=d#e"] {
            assert!(is_local_path(ok), "{ok}");
        }
        for bad in
            ["https://evil.example/", "//evil.example/", "/\\evil.example", "Dashboard", "", "/\tx"]
        {
            assert!(!is_local_path(bad), "{bad}");
        }
    }
}
