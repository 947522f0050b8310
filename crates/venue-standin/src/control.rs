//! The test-only control API under `/__standin/`: fault switches, request counters, reset. It
//! exists so that wasm tests in a browser, which cannot reach the stand-in's Rust handle, can
//! drive it too. Nothing of the real Venue UI is here.
//!
//! Bodies are read as raw bytes and parsed as JSON whatever the `Content-Type`, so a browser can
//! post them as `text/plain` and skip the CORS preflight.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::ErrorCode;
use serde_json::{Map, Value};

use crate::faults::{Counters, FaultMode, Hop};
use crate::routes::error;
use crate::{CONTROL_PREFIX, VenueStandin};

/// The control routes, to be merged into the stand-in's router.
pub(crate) fn router() -> Router<VenueStandin> {
    Router::new()
        .route(&format!("{CONTROL_PREFIX}/faults"), get(faults).post(set_faults))
        .route(&format!("{CONTROL_PREFIX}/counters"), get(counters))
        .route(&format!("{CONTROL_PREFIX}/reset"), post(reset))
        .route(&format!("{CONTROL_PREFIX}/sessions/expire"), post(expire_sessions))
}

/// Middleware on the venue routes: count each request under its path, before any fault switch
/// acts, so a failed or hanging request counts too.
pub(crate) async fn count(
    State(counters): State<Counters>,
    request: Request,
    next: Next,
) -> Response {
    counters.increment(request.uri().path());
    next.run(request).await
}

/// `GET /__standin/faults`: `{"dashboard": "ok", "authorize": "hang"}`.
async fn faults(State(standin): State<VenueStandin>) -> Json<Value> {
    Json(fault_json(&standin))
}

/// `POST /__standin/faults` with any of `{"dashboard": mode, "authorize": mode}`, mode being
/// `ok`, `fail` or `hang`; hops not named keep their mode. Answers the new switches. The whole
/// body is checked before anything changes, so a typo changes nothing.
async fn set_faults(State(standin): State<VenueStandin>, body: Bytes) -> Response {
    let changes = match parse_faults(&body) {
        Ok(changes) => changes,
        Err((code, message)) => return error(StatusCode::BAD_REQUEST, code, message),
    };
    let faults = standin.faults();
    for (hop, mode) in changes {
        tracing::info!(%hop, %mode, "venue stand-in: fault switch set");
        faults.set(hop, mode);
    }
    Json(fault_json(&standin)).into_response()
}

/// `GET /__standin/counters`: `{"/Dashboard": 2, "/Auth/Authorize": 1, …}`; paths never
/// requested are absent.
async fn counters(State(standin): State<VenueStandin>) -> Json<Value> {
    let counts = standin.counters().into_iter().map(|(path, n)| (path, Value::from(n)));
    Json(Value::Object(counts.collect()))
}

/// `POST /__standin/reset`: counters to zero, every fault switch to `ok`. Sessions stay.
async fn reset(State(standin): State<VenueStandin>) -> StatusCode {
    standin.reset();
    StatusCode::NO_CONTENT
}

/// `POST /__standin/sessions/expire`: forget every session, as when the venue's sessions time out.
async fn expire_sessions(State(standin): State<VenueStandin>) -> StatusCode {
    standin.expire_sessions();
    StatusCode::NO_CONTENT
}

fn fault_json(standin: &VenueStandin) -> Value {
    let faults = standin.faults();
    let modes = Hop::ALL
        .into_iter()
        .map(|hop| (hop.as_str().to_owned(), Value::from(faults.get(hop).as_str())));
    Value::Object(modes.collect::<Map<_, _>>())
}

fn parse_faults(body: &[u8]) -> Result<Vec<(Hop, FaultMode)>, (ErrorCode, String)> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| (ErrorCode::InvalidJson, format!("The body is not JSON: {err}")))?;
    let Value::Object(fields) = value else {
        return Err((
            ErrorCode::InvalidJson,
            r#"Expected an object like {"dashboard": "fail", "authorize": "hang"}."#.to_owned(),
        ));
    };
    fields
        .iter()
        .map(|(hop, mode)| {
            let hop: Hop = hop.parse().map_err(|msg| (ErrorCode::InvalidRequest, msg))?;
            let mode = mode
                .as_str()
                .ok_or_else(|| format!("the mode of {hop} must be a string"))
                .and_then(str::parse)
                .map_err(|msg| (ErrorCode::InvalidRequest, msg))?;
            Ok((hop, mode))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn fault_bodies_parse_or_say_what_is_wrong() {
        let mut both = parse_faults(br#"{"dashboard":"fail","authorize":"hang"}"#).unwrap();
        both.sort_by_key(|(hop, _)| hop.as_str());
        assert_eq!(
            both,
            vec![(Hop::Authorize, FaultMode::Hang), (Hop::Dashboard, FaultMode::Fail)]
        );
        assert_eq!(parse_faults(b"{}"), Ok(vec![]));
        assert!(matches!(parse_faults(b"nope"), Err((ErrorCode::InvalidJson, _))));
        assert!(matches!(parse_faults(b"[]"), Err((ErrorCode::InvalidJson, _))));
        assert!(matches!(parse_faults(br#"{"vtx":"fail"}"#), Err((ErrorCode::InvalidRequest, _))));
        assert!(matches!(
            parse_faults(br#"{"dashboard":"slow"}"#),
            Err((ErrorCode::InvalidRequest, _))
        ));
        assert!(matches!(parse_faults(br#"{"dashboard":1}"#), Err((ErrorCode::InvalidRequest, _))));
    }
}
