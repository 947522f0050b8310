//! The server API for the application's own backend, behind an API key (`X-API-Key`, compared
//! in constant time): `POST /api/events/publish`, `POST /api/events/disconnect` (ends the
//! streams of a front or a tab, on whichever instance holds them) and
//! `GET /api/events/presence/{frontUuid}` (a front's tabs, which have an active stream, since
//! when). Without a configured key the API answers 404, so a server started without one
//! exposes nothing.
//!
//! | code                      | status | when                                                    |
//! |---------------------------|--------|---------------------------------------------------------|
//! | `not_found`               | 404    | no API key is configured: the API is off                |
//! | `invalid_api_key`         | 401    | `X-API-Key` is missing or wrong                         |
//! | `invalid_json`, `invalid_uuid`, `unsupported_media_type`, `body_too_large` | 400/415/413 | the body (or the path's UUID) is not what the endpoint takes |
//! | `invalid_request`         | 400    | a bound is broken (`name`, `expiresInMs`, `idempotencyKey`) |
//! | `front_not_registered`    | 404    | the front is unknown                                    |
//! | `session_not_found`       | 404    | the tab is unknown (never activated, or forgotten)      |
//! | `idempotency_in_progress` | 409    | a publish with that `idempotencyKey` is still under way |
//! | `store_unavailable`       | 503    | the event store does not answer                         |

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use protocol::api::{
    API_KEY_HEADER, DisconnectRequest, DisconnectResponse, MAX_PRESENCE_SESSIONS, PresenceResponse,
    PublishRequest, PublishResponse, SessionPresence,
};
use protocol::event::DEFAULT_TTL_MILLIS;
use protocol::{ErrorCode, FrontUuid, ParseError, SessionUuid};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Json, RequestError, error_response, parse_uuid};
use crate::events::store::{DisconnectRefusal, IdempotencyClaim, StoreError};
use crate::events::{Events, PublishError, PublishOptions};
use crate::openapi::errors;

/// How long an idempotency key stays claimed while its publish is under way; a server that
/// dies meanwhile blocks the key no longer than this.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(30);

/// The server API's key. Its `Debug` never shows it.
#[derive(Clone)]
pub struct ApiKey {
    /// SHA-256 of the key: comparing digests in constant time hides the key's length too.
    digest: Arc<[u8; 32]>,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl ApiKey {
    /// A key given as text (surrounding whitespace removed). `None` if nothing is left.
    pub fn new(key: &str) -> Option<Self> {
        let key = key.trim();
        (!key.is_empty()).then(|| Self { digest: Arc::new(Sha256::digest(key).into()) })
    }

    /// Reads the key from the first line of `path` (the rest of the file is ignored).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("API key file {}: {e}", path.display()))?;
        Self::new(text.lines().next().unwrap_or_default()).ok_or_else(|| {
            anyhow::anyhow!("API key file {}: the first line is empty", path.display())
        })
    }

    /// Whether `presented` is this key, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        bool::from(presented.ct_eq(self.digest.as_ref()))
    }
}

/// Why the server API refused a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No API key is configured.
    #[error("the server API is off: start the server with --api-key-file")]
    Off,
    /// `X-API-Key` is missing or wrong.
    #[error("the X-API-Key header is missing or wrong")]
    InvalidApiKey,
    /// The body is malformed or breaks a bound.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The front is unknown.
    #[error("front {0} is not registered")]
    FrontNotRegistered(FrontUuid),
    /// The tab is unknown.
    #[error("session {0} is unknown or expired")]
    SessionNotFound(SessionUuid),
    /// Another request holds the idempotency key.
    #[error("a publish with this idempotencyKey is under way; try again")]
    InProgress,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The hub refused what this API asks of it (a bug).
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::Off => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            Self::InvalidApiKey => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidApiKey),
            Self::Request(e) => e.status_code(),
            Self::FrontNotRegistered(_) => (StatusCode::NOT_FOUND, ErrorCode::FrontNotRegistered),
            Self::SessionNotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::SessionNotFound),
            Self::InProgress => (StatusCode::CONFLICT, ErrorCode::IdempotencyInProgress),
            Self::Store(StoreError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::StoreUnavailable)
            }
            Self::Store(_) | Self::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
            }
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, "server API request failed");
            let message = match code {
                ErrorCode::StoreUnavailable => "the event store does not answer; try again",
                _ => "the server failed; details are in its log",
            };
            return error_response(status, code, message);
        }
        error_response(status, code, self.to_string())
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::FrontNotRegistered(front) => Self::FrontNotRegistered(front),
            PublishError::SessionNotFound(session) => Self::SessionNotFound(session),
            PublishError::Store(e) => Self::Store(e),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// The server API's routes; with `key` `None` every route answers 404 `not_found`. Each route
/// is one `.routes(routes!(handler))` of an annotated handler, so it is in the OpenAPI document
/// too; its annotation names the `apiKey` security scheme and lists `401 invalid_api_key` and
/// `404 not_found` (the API off) among its errors.
pub(crate) fn router(events: Events, key: Option<ApiKey>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(publish))
        .routes(routes!(disconnect))
        .routes(routes!(presence))
        .route_layer(middleware::from_fn_with_state(key, require_key))
        .with_state(events)
}

/// Lets a request through only with the configured key.
async fn require_key(State(key): State<Option<ApiKey>>, request: Request, next: Next) -> Response {
    let Some(key) = key else { return ApiError::Off.into_response() };
    let presented = request.headers().get(API_KEY_HEADER).map(|v| v.as_bytes());
    match presented {
        Some(presented) if key.matches(presented) => next.run(request).await,
        _ => ApiError::InvalidApiKey.into_response(),
    }
}

errors! {
    /// The errors of a publish.
    PublishErrors with BODY_ERRORS {
        400: InvalidRequest;
        401: InvalidApiKey;
        404: NotFound, FrontNotRegistered, SessionNotFound;
        409: IdempotencyInProgress;
        503: StoreUnavailable;
    }
}

/// Publish an event to a front's tabs
///
/// To one tab when `sessionUuid` is given, else to every tab of the front (and to tabs that
/// connect before it expires). `encrypted` seals `data` to the front's key. The same
/// `idempotencyKey` for the same front within the event's lifetime publishes once and answers
/// the first id; while that first publish is under way, `409 idempotency_in_progress`.
/// `404 not_found` when the server runs without `--api-key-file` (the API is off).
#[utoipa::path(
    post,
    path = "/api/events/publish",
    tag = "server-api",
    security(("apiKey" = [])),
    request_body = PublishRequest,
    responses(
        (status = 200, description = "Published: the event's id (the SSE `id:` the tabs see).", body = PublishResponse),
        PublishErrors,
    )
)]
async fn publish(
    State(events): State<Events>,
    Json(request): Json<PublishRequest>,
) -> Result<Json<PublishResponse>, ApiError> {
    request.check().map_err(RequestError::InvalidRequest)?;
    let ttl_ms = request.expires_in_ms.unwrap_or(DEFAULT_TTL_MILLIS.unsigned_abs());
    let Some(key) = request.idempotency_key.clone() else {
        return Ok(Json(PublishResponse { id: send(&events, request, ttl_ms).await? }));
    };
    let front = request.front_uuid;
    let bid = events.front_bid(front).await?.ok_or(ApiError::FrontNotRegistered(front))?;
    let store = events.store().clone();
    let now = events.now();
    let claimed_until = now.plus_millis(CLAIM_TIMEOUT.as_millis() as i64);
    match store.claim_publish(bid, key.clone(), claimed_until, now).await? {
        IdempotencyClaim::Published(id) => return Ok(Json(PublishResponse { id })),
        IdempotencyClaim::InProgress => return Err(ApiError::InProgress),
        IdempotencyClaim::Claimed => {}
    }
    let sent = send(&events, request, ttl_ms).await;
    // The key stands for the event as long as the event lives.
    let until = now.plus_millis(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
    let settled = store.settle_publish(bid, key, sent.as_ref().ok().copied(), until, events.now());
    if let Err(e) = settled.await {
        // The event went out; a retry within the claim's timeout answers 409, later it
        // publishes again. Said in the log, not to the client, whose publish succeeded.
        tracing::warn!(error = %e, "could not record a publish's idempotency key");
    }
    Ok(Json(PublishResponse { id: sent? }))
}

/// Publishes through the hub, as the application would.
async fn send(events: &Events, request: PublishRequest, ttl_ms: u64) -> Result<i64, ApiError> {
    let options = PublishOptions {
        expires_in: Some(Duration::from_millis(ttl_ms)),
        request_uuid: None,
        encrypted: request.encrypted,
    };
    let hub = events.hub();
    let (front, name, data) = (request.front_uuid, &request.name, request.data);
    let published = match request.session_uuid {
        Some(session) => hub.publish_to_session(front, session, name, data, options).await?,
        None => hub.publish_to_front(front, name, data, options).await?,
    };
    Ok(published.id)
}

errors! {
    /// The errors of a disconnect.
    DisconnectErrors with BODY_ERRORS {
        401: InvalidApiKey;
        404: NotFound, FrontNotRegistered, SessionNotFound;
        503: StoreUnavailable;
    }
}

/// End the reverse streams of a front or of one tab
///
/// Ends the active streams of the front, or of one tab, on whichever instance holds them, and
/// answers how many. Their clients may connect again and resume with `Last-Event-ID`, losing
/// nothing.
#[utoipa::path(
    post,
    path = "/api/events/disconnect",
    tag = "server-api",
    security(("apiKey" = [])),
    request_body = DisconnectRequest,
    responses(
        (status = 200, description = "How many active streams were ended.", body = DisconnectResponse),
        DisconnectErrors,
    )
)]
async fn disconnect(
    State(events): State<Events>,
    Json(request): Json<DisconnectRequest>,
) -> Result<Json<DisconnectResponse>, ApiError> {
    let (front, session) = (request.front_uuid, request.session_uuid);
    match (events.store().disconnect(front, session, events.now()).await?, session) {
        (Ok(closed), _) => Ok(Json(DisconnectResponse { closed: closed as u64 })),
        (Err(DisconnectRefusal::SessionNotFound), Some(session)) => {
            Err(ApiError::SessionNotFound(session))
        }
        (Err(_), _) => Err(ApiError::FrontNotRegistered(front)),
    }
}

errors! {
    /// The errors of a presence query.
    PresenceErrors {
        400: InvalidUuid;
        401: InvalidApiKey;
        404: NotFound, FrontNotRegistered;
        503: StoreUnavailable;
    }
}

/// A front's tabs and which of them stream
///
/// The front's known tabs as the event store knows them (so through any instance): active ones
/// first, then by `since`, latest first; at most 1000, `truncated` when there are more.
#[utoipa::path(
    get,
    path = "/api/events/presence/{frontUuid}",
    tag = "server-api",
    security(("apiKey" = [])),
    params(("frontUuid" = FrontUuid, Path, description = "The front.")),
    responses(
        (status = 200, description = "The front's tabs.", body = PresenceResponse),
        PresenceErrors,
    )
)]
async fn presence(
    State(events): State<Events>,
    front: Result<UrlPath<String>, PathRejection>,
) -> Result<Json<PresenceResponse>, ApiError> {
    let front = front
        .map(|UrlPath(front)| front)
        .map_err(|e| RequestError::InvalidUuid(ParseError::InvalidUuid(e.body_text())))?;
    let front: FrontUuid = parse_uuid(&front)?;
    let presence = events
        .store()
        .presence(front, MAX_PRESENCE_SESSIONS)
        .await?
        .ok_or(ApiError::FrontNotRegistered(front))?;
    let sessions = presence
        .sessions
        .iter()
        .map(|s| SessionPresence { session_uuid: s.session, active: s.active, since: s.since })
        .collect();
    Ok(Json(PresenceResponse { sessions, truncated: presence.truncated }))
}
