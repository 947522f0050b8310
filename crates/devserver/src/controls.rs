//! Test-only controls of the backend's half of the token chain: a request counter and a fault
//! switch on `/vtx/token` ([`VtxControls`], applied by [`vtx_gate`] in front of the backend),
//! and, with `--test-controls`, their HTTP API under [`CONTROL_PREFIX`]:
//!
//! | request | answer |
//! |---|---|
//! | `GET /__devserver/counters` | `{"/vtx/token": 3}` |
//! | `POST /__devserver/faults` with `{"vtx": mode}` | the switches after the change |
//! | `POST /__devserver/reset` | `204`; VTX and the stand-in: switches to `ok`, counters to zero; the token clock back to the wall clock |
//! | `POST /__devserver/emit` with `{"frontUuid", "sessionUuid"?, "name", "data", "encrypted"?}` | publishes a reverse event: `{"id", "uuid"}` |
//! | `POST /__devserver/mint` with `{"user", "permissions"?, "validForSecs"?, "sponsor"?, "subscriber"?}` | a one-time login token: `{"token", "loginUrl"}` |
//! | `POST /__devserver/restart` with `{"wipe"?, "downMs"?}` | `{"restarting": true}` at once; the backend goes down (streams end, its paths answer `503`), its store is emptied if `wipe`, and it comes back after `downMs` |
//! | `POST /__devserver/clock` with `{"aheadSecs"}` | `{"aheadSecs"}`: the backend's token clock ([`TokenClock`]) runs that far ahead of the wall clock (`0` again after `reset`) |
//!
//! Modes: `ok`, `fail` (`500`), `hang` (no answer until the switch changes), `unauthorized`
//! (`401 invalid_token`), `unauthorized-once` (one `401`, then `ok`). Bodies are parsed as JSON
//! whatever their `Content-Type`, so a browser can post them as `text/plain` without a preflight.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::{ErrorBody, ErrorCode, FrontUuid, SessionUuid, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use server::events::PublishOptions;
use server::tokens::{Clock, MintTokenArgs};
use tokio::sync::watch;
use venue_standin::VenueStandin;

use crate::Backend;

/// The prefix of this server's control API (the stand-in's is `/__standin`).
pub const CONTROL_PREFIX: &str = "/__devserver";

/// How `/vtx/token` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VtxMode {
    /// As the backend says.
    #[default]
    Ok,
    /// `500` with an `internal` error body.
    Fail,
    /// Not at all, until the switch changes or the server shuts down.
    Hang,
    /// `401 invalid_token`, every time.
    Unauthorized,
    /// `401 invalid_token` once, then [`VtxMode::Ok`].
    UnauthorizedOnce,
}

impl VtxMode {
    /// The name in the control API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Fail => "fail",
            Self::Hang => "hang",
            Self::Unauthorized => "unauthorized",
            Self::UnauthorizedOnce => "unauthorized-once",
        }
    }
}

impl fmt::Display for VtxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VtxMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Ok, Self::Fail, Self::Hang, Self::Unauthorized, Self::UnauthorizedOnce]
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown VTX mode {s:?}: expected ok, fail, hang, unauthorized or unauthorized-once"
                )
            })
    }
}

/// The counter and the switch of `/vtx/token`; clones share them.
#[derive(Debug, Clone)]
pub struct VtxControls {
    requests: Arc<AtomicU64>,
    /// A watch channel, so that held requests wake as soon as the switch changes.
    mode: Arc<watch::Sender<VtxMode>>,
}

impl Default for VtxControls {
    fn default() -> Self {
        Self { requests: Arc::default(), mode: Arc::new(watch::channel(VtxMode::Ok).0) }
    }
}

impl VtxControls {
    /// Requests that reached `/vtx/token` (including failed and held ones) since the last reset.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// The current mode.
    pub fn mode(&self) -> VtxMode {
        *self.mode.borrow()
    }

    /// Answer in `mode` from the next request on (and let held requests go when leaving `hang`).
    pub fn set_mode(&self, mode: VtxMode) {
        self.mode.send_replace(mode);
    }

    /// Counter to zero, switch to [`VtxMode::Ok`].
    pub fn reset(&self) {
        self.requests.store(0, Ordering::SeqCst);
        self.set_mode(VtxMode::Ok);
    }

    /// The mode for one request: waits out `hang`, takes `unauthorized-once`.
    async fn take(&self) -> VtxMode {
        let mut rx = self.mode.subscribe();
        let mode = match rx.wait_for(|mode| *mode != VtxMode::Hang).await {
            Ok(mode) => *mode,
            Err(_) => VtxMode::Ok,
        };
        if mode == VtxMode::UnauthorizedOnce {
            // Only one request gets the 401, even when several arrive at once.
            let mut took = false;
            self.mode.send_if_modified(|current| {
                took = *current == VtxMode::UnauthorizedOnce;
                if took {
                    *current = VtxMode::Ok;
                }
                took
            });
            return if took { VtxMode::Unauthorized } else { VtxMode::Ok };
        }
        mode
    }
}

/// Middleware in front of the whole app: counts `/vtx/token` requests and applies the switch.
/// Preflights pass untouched (CORS answers them further out anyway).
pub async fn vtx_gate(State(vtx): State<VtxControls>, request: Request, next: Next) -> Response {
    if request.uri().path() != protocol::paths::VTX_TOKEN || request.method() == "OPTIONS" {
        return next.run(request).await;
    }
    vtx.requests.fetch_add(1, Ordering::SeqCst);
    match vtx.take().await {
        VtxMode::Ok | VtxMode::Hang | VtxMode::UnauthorizedOnce => next.run(request).await,
        VtxMode::Fail => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "Injected fault: /vtx/token is switched to fail.",
        ),
        VtxMode::Unauthorized => error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidToken,
            "Injected fault: /vtx/token refuses the venue JWT.",
        ),
    }
}

/// The backend's token clock: the wall clock, or ahead of it by what a test set, so that a test
/// in a real browser can let an access token or a login session expire at the server without
/// waiting (the browser's own clock is untouched). Clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct TokenClock {
    ahead_ms: Arc<AtomicI64>,
}

impl TokenClock {
    /// Runs `secs` seconds ahead of the wall clock from now on (`0`: the wall clock).
    pub fn set_ahead(&self, secs: i64) {
        self.ahead_ms.store(secs.saturating_mul(1000), Ordering::SeqCst);
    }

    /// How far ahead it runs, in seconds.
    pub fn ahead_secs(&self) -> i64 {
        self.ahead_ms.load(Ordering::SeqCst) / 1000
    }
}

impl Clock for TokenClock {
    fn now(&self) -> Timestamp {
        Timestamp::now().plus_millis(self.ahead_ms.load(Ordering::SeqCst))
    }
}

/// What the control routes act on.
#[derive(Debug, Clone)]
pub struct Controls {
    /// The VTX switch and counter.
    pub vtx: VtxControls,
    /// The venue stand-in.
    pub standin: VenueStandin,
    /// The backend.
    pub backend: Backend,
    /// The backend's token clock.
    pub clock: TokenClock,
}

/// The control routes.
pub fn router(controls: Controls) -> Router {
    Router::new()
        .route(&format!("{CONTROL_PREFIX}/counters"), get(counters))
        .route(&format!("{CONTROL_PREFIX}/faults"), get(faults).post(set_faults))
        .route(&format!("{CONTROL_PREFIX}/reset"), post(reset))
        .route(&format!("{CONTROL_PREFIX}/emit"), post(emit))
        .route(&format!("{CONTROL_PREFIX}/mint"), post(mint))
        .route(&format!("{CONTROL_PREFIX}/restart"), post(restart))
        .route(&format!("{CONTROL_PREFIX}/clock"), post(set_clock))
        .with_state(controls)
}

async fn counters(State(controls): State<Controls>) -> Json<Value> {
    Json(json!({ protocol::paths::VTX_TOKEN: controls.vtx.requests() }))
}

async fn faults(State(controls): State<Controls>) -> Json<Value> {
    Json(json!({ "vtx": controls.vtx.mode().as_str() }))
}

async fn set_faults(State(controls): State<Controls>, body: Bytes) -> Response {
    let vtx = &controls.vtx;
    match parse_faults(&body) {
        Ok(mode) => {
            if let Some(mode) = mode {
                tracing::info!(%mode, "devserver: VTX fault switch set");
                vtx.set_mode(mode);
            }
            Json(json!({ "vtx": vtx.mode().as_str() })).into_response()
        }
        Err(message) => error(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message),
    }
}

/// `{"vtx": mode}` (or `{}`); anything else says what is wrong and changes nothing.
fn parse_faults(body: &[u8]) -> Result<Option<VtxMode>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("The body is not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err(r#"Expected {"vtx": "<mode>"}."#.to_owned());
    };
    if let Some(other) = fields.keys().find(|key| *key != "vtx") {
        return Err(format!(
            "unknown switch {other:?}: only vtx is here (the venue's are under /__standin/faults)"
        ));
    }
    match fields.get("vtx") {
        None => Ok(None),
        Some(Value::String(mode)) => mode.parse().map(Some),
        Some(_) => Err("the mode of vtx must be a string".to_owned()),
    }
}

async fn reset(State(controls): State<Controls>) -> StatusCode {
    controls.vtx.reset();
    controls.standin.reset();
    controls.clock.set_ahead(0);
    StatusCode::NO_CONTENT
}

/// The body of `/__devserver/clock`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SetClock {
    /// Seconds ahead of the wall clock; a day at most either way, so a typo cannot make every
    /// token of the test bed invalid for a century.
    ahead_secs: i64,
}

const MAX_AHEAD_SECS: i64 = 86_400;

async fn set_clock(State(controls): State<Controls>, body: Bytes) -> Response {
    let set: SetClock = match serde_json::from_slice(&body) {
        Ok(set) => set,
        Err(err) => return error(StatusCode::BAD_REQUEST, ErrorCode::InvalidJson, err.to_string()),
    };
    if set.ahead_secs.abs() > MAX_AHEAD_SECS {
        let message = format!("aheadSecs must be within ±{MAX_AHEAD_SECS}");
        return error(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message);
    }
    tracing::info!(ahead_secs = set.ahead_secs, "devserver: token clock set");
    controls.clock.set_ahead(set.ahead_secs);
    Json(json!({ "aheadSecs": controls.clock.ahead_secs() })).into_response()
}

/// The body of `/__devserver/emit`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Emit {
    front_uuid: FrontUuid,
    #[serde(default)]
    session_uuid: Option<SessionUuid>,
    name: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    encrypted: bool,
}

async fn emit(State(controls): State<Controls>, body: Bytes) -> Response {
    let emit: Emit = match serde_json::from_slice(&body) {
        Ok(emit) => emit,
        Err(err) => return error(StatusCode::BAD_REQUEST, ErrorCode::InvalidJson, err.to_string()),
    };
    let Some(state) = controls.backend.state() else { return backend_down() };
    let hub = state.events.hub();
    let options = PublishOptions { encrypted: emit.encrypted, ..PublishOptions::default() };
    let published = match emit.session_uuid {
        Some(session) => {
            hub.publish_to_session(emit.front_uuid, session, &emit.name, emit.data, options).await
        }
        None => hub.publish_to_front(emit.front_uuid, &emit.name, emit.data, options).await,
    };
    match published {
        Ok(published) => {
            Json(json!({ "id": published.id, "uuid": published.uuid })).into_response()
        }
        Err(err) => error(StatusCode::CONFLICT, ErrorCode::InvalidRequest, err.to_string()),
    }
}

/// The body of `/__devserver/mint`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mint {
    user: String,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default = "default_valid_for_secs")]
    valid_for_secs: u64,
    #[serde(default = "default_sponsor")]
    sponsor: String,
    #[serde(default = "default_subscriber")]
    subscriber: String,
}

fn default_valid_for_secs() -> u64 {
    3600
}

fn default_sponsor() -> String {
    "demo-sponsor".to_owned()
}

fn default_subscriber() -> String {
    "demo-subscriber".to_owned()
}

async fn mint(State(controls): State<Controls>, body: Bytes) -> Response {
    let mint: Mint = match serde_json::from_slice(&body) {
        Ok(mint) => mint,
        Err(err) => return error(StatusCode::BAD_REQUEST, ErrorCode::InvalidJson, err.to_string()),
    };
    // Fails while the backend is down, so that a test can poll it to see the backend back.
    if controls.backend.state().is_none() {
        return backend_down();
    }
    let args = MintTokenArgs {
        user: mint.user,
        sponsor: mint.sponsor,
        subscriber: mint.subscriber,
        permissions: mint.permissions,
        valid_for: Duration::from_secs(mint.valid_for_secs),
        base_url: String::new(),
    };
    match server::tokens::mint_token(controls.backend.config(), &args).await {
        Ok(minted) => {
            Json(json!({ "token": minted.token, "loginUrl": minted.login_url })).into_response()
        }
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, err.to_string()),
    }
}

/// The body of `/__devserver/restart`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Restart {
    wipe: bool,
    down_ms: u64,
}

async fn restart(State(controls): State<Controls>, body: Bytes) -> Response {
    let restart: Restart = if body.is_empty() {
        Restart::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(restart) => restart,
            Err(err) => {
                return error(StatusCode::BAD_REQUEST, ErrorCode::InvalidJson, err.to_string());
            }
        }
    };
    tracing::info!(
        wipe = restart.wipe,
        down_ms = restart.down_ms,
        "devserver: restarting the backend"
    );
    controls.backend.restart(restart.wipe, Duration::from_millis(restart.down_ms));
    Json(json!({ "restarting": true })).into_response()
}

fn backend_down() -> Response {
    crate::backend::down()
}

fn error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorBody::new(code, message))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_bodies_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_faults(br#"{"vtx":"unauthorized-once"}"#),
            Ok(Some(VtxMode::UnauthorizedOnce))
        );
        assert_eq!(parse_faults(b"{}"), Ok(None));
        for bad in
            [&b"nope"[..], b"[]", br#"{"vtx":1}"#, br#"{"vtx":"slow"}"#, br#"{"dashboard":"ok"}"#]
        {
            assert!(parse_faults(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_token_clock_runs_ahead_or_behind_by_what_was_set() {
        let clock = TokenClock::default();
        let shared = clock.clone();
        let wall = Timestamp::now().millis();
        assert!((Clock::now(&clock).millis() - wall).abs() < 60_000, "the wall clock at first");
        shared.set_ahead(3_600);
        let ahead = Clock::now(&clock).millis() - Timestamp::now().millis();
        assert!((3_540_000..=3_600_000).contains(&ahead), "an hour ahead: {ahead} ms");
        shared.set_ahead(-3_600);
        let behind = Timestamp::now().millis() - Clock::now(&clock).millis();
        assert!((3_599_000..=3_660_000).contains(&behind), "an hour behind: {behind} ms");
        assert_eq!(clock.ahead_secs(), -3_600);
    }

    #[tokio::test]
    async fn unauthorized_once_refuses_exactly_one_request() {
        let vtx = VtxControls::default();
        vtx.set_mode(VtxMode::UnauthorizedOnce);
        let modes = futures_join(&vtx).await;
        assert_eq!(modes.iter().filter(|m| **m == VtxMode::Unauthorized).count(), 1);
        assert_eq!(vtx.mode(), VtxMode::Ok);
    }

    async fn futures_join(vtx: &VtxControls) -> Vec<VtxMode> {
        let (a, b, c) = tokio::join!(vtx.take(), vtx.take(), vtx.take());
        vec![a, b, c]
    }

    #[tokio::test]
    async fn hang_holds_requests_until_the_switch_changes() {
        let vtx = VtxControls::default();
        vtx.set_mode(VtxMode::Hang);
        let held = tokio::spawn({
            let vtx = vtx.clone();
            async move { vtx.take().await }
        });
        tokio::task::yield_now().await;
        assert!(!held.is_finished());
        vtx.set_mode(VtxMode::Fail);
        assert_eq!(held.await.ok(), Some(VtxMode::Fail));
    }
}
