//! Helpers of the worker tests: the development server's control APIs, the venue login, and a
//! token session pointed at the development server.

use std::time::Duration;

use browser::net::{self, Credentials, HttpRequest, HttpResponse};
use browser::sw::{ChainConfig, FetchHttp, Session, Settings};

use crate::support::devserver;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A request to the development server; panics when it gets no answer.
pub(crate) async fn request(
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let url = format!("{}{path}", devserver());
    let request = HttpRequest {
        method,
        headers,
        body,
        credentials: Credentials::Include,
        ..HttpRequest::get(&url, TIMEOUT)
    };
    net::send(&request).await.unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Posts to a control API. The body goes as `text/plain`, which needs no CORS preflight.
pub(crate) async fn control(path: &str, body: &str) {
    let answer = request("POST", path, Some(body), &[("Content-Type", "text/plain")]).await;
    assert!(answer.is_success(), "POST {path} {body}: {} {}", answer.status, answer.body);
}

/// Every fault switch to normal and every counter to zero (venue and VTX).
pub(crate) async fn reset() {
    control("/__devserver/reset", "").await;
}

/// Sets venue switches (`{"dashboard": "fail"}`) and the VTX switch (`{"vtx": "hang"}`).
pub(crate) async fn fault(hop: &str, mode: &str) {
    let path = if hop == "vtx" { "/__devserver/faults" } else { "/__standin/faults" };
    control(path, &format!(r#"{{"{hop}": "{mode}"}}"#)).await;
}

/// Requests so far at `[/Dashboard, /Auth/Authorize, /vtx/token]`.
pub(crate) async fn counters() -> [u64; 3] {
    let venue = request("GET", "/__standin/counters", None, &[]).await;
    let vtx = request("GET", "/__devserver/counters", None, &[]).await;
    let venue: serde_json::Value = serde_json::from_str(&venue.body).unwrap_or_default();
    let vtx: serde_json::Value = serde_json::from_str(&vtx.body).unwrap_or_default();
    let count = |v: &serde_json::Value, path: &str| v[path].as_u64().unwrap_or(0);
    [count(&venue, "/Dashboard"), count(&venue, "/Auth/Authorize"), count(&vtx, "/vtx/token")]
}

/// Logs this browser in to the venue stand-in as `user` (the session cookie is stored).
pub(crate) async fn login(user: &str) {
    let body = format!("username={user}&password=x");
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    let answer = request("POST", "/Account/Login", Some(&body), &headers).await;
    assert!(
        answer.is_success() && answer.url.ends_with("/Dashboard"),
        "login as {user}: {answer:?}"
    );
}

/// Ends the venue session of this browser.
pub(crate) async fn logout() {
    request("POST", "/Account/Logout", None, &[]).await;
}

/// The worker's settings, pointed at the development server, with a short hop timeout.
pub(crate) fn settings() -> Settings {
    Settings {
        venue_url: Some(devserver().to_owned()),
        server_url: Some(devserver().to_owned()),
        hop_timeout: Duration::from_millis(1500),
        ..Settings::default()
    }
}

/// A token session as the worker makes it, on the real clock.
pub(crate) fn session(settings: &Settings) -> Session<FetchHttp> {
    Session::new(FetchHttp, ChainConfig::new(settings, devserver()))
}

/// A token session on `clock` (milliseconds since the epoch).
pub(crate) fn session_with_clock(
    settings: &Settings,
    clock: impl Fn() -> i64 + 'static,
) -> Session<FetchHttp> {
    Session::with_clock(FetchHttp, ChainConfig::new(settings, devserver()), clock)
}
