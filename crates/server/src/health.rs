//! Liveness and readiness for load balancers and orchestrators: `GET /healthz` answers while
//! the process serves HTTP; `GET /readyz` asks every store (the event store, which on Redis
//! also reports whether its subscription is up, the session store and the one-time-token store)
//! and answers 503 `not_ready` while one does not answer or once the server is shutting down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use protocol::api::{CheckState, Health, Readiness};
use protocol::{ErrorBody, ErrorCode};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::openapi::Always;

/// Whether the server is shutting down; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// From now on `/readyz` answers 503, so that load balancers stop sending new clients.
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Draining::start`] was called.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The health routes.
pub(crate) fn router(state: AppState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .merge(OpenApiRouter::new().routes(routes!(readyz)).with_state(state))
}

/// Liveness
///
/// `200 {"status": "ok"}` while the process serves HTTP. It asks nothing, so that a store
/// outage does not make an orchestrator restart healthy instances.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process lives.", body = Health), Always)
)]
pub(crate) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".to_owned() })
}

/// Readiness
///
/// `200` when every store answers (the event store, on Redis with its subscription, the
/// session store, the one-time-token store) and the server is not shutting down; else `503`
/// with `"error": "not_ready"` and which checks are `down`. Point load balancers here.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: every check is `ok`.", body = Readiness),
        (status = 503, description = "Not ready: `not_ready`, with the checks that are `down`.", body = Readiness),
        Always,
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let (events, (sessions, one_time)) = tokio::join!(state.events.ready(), state.tokens.ready());
    let mut checks = BTreeMap::new();
    let mut check = |name: &str, result: Result<(), String>| {
        let state = match result {
            Ok(()) => CheckState::Ok,
            Err(e) => {
                tracing::warn!(check = name, error = %e, "not ready");
                CheckState::Down
            }
        };
        checks.insert(name.to_owned(), state);
    };
    check("eventStore", events.map_err(|e| e.to_string()));
    check("sessionStore", sessions.map_err(|e| e.to_string()));
    check("oneTimeTokenStore", one_time.map_err(|e| e.to_string()));
    let draining = state.draining.is_draining();
    checks.insert("draining".to_owned(), if draining { CheckState::Down } else { CheckState::Ok });
    let down: Vec<&str> = checks
        .iter()
        .filter(|(_, s)| **s == CheckState::Down)
        .map(|(name, _)| name.as_str())
        .collect();
    if down.is_empty() {
        let body = Readiness { error: None, message: None, status: "ready".to_owned(), checks };
        return (StatusCode::OK, Json(body)).into_response();
    }
    let error = ErrorBody::new(ErrorCode::NotReady, format!("not ready: {}", down.join(", ")));
    let body = Readiness {
        error: Some(error.error),
        message: Some(error.message),
        status: "not_ready".to_owned(),
        checks,
    };
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response.extensions_mut().insert(ErrorCode::NotReady);
    response
}
