//! The HTTP endpoints: registration, stream open, activation and direct events.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use protocol::messages::{
    AUTHENTICATE_EVENT, ActivateRequest, AuthenticateChallenge, FrontBid, RegisterRequest,
};
use protocol::sse::{self, SseEvent};
use protocol::{DirectEvent, FrontUuid, ParseError, Sealed, SessionUuid, paths};
use serde_json::Value;

use super::error::EventError;
use super::store::FrontRow;
use super::store::{ActivateRefusal, OpenStream, Registration, Served};
use super::stream::{SseBody, StreamSpec};
use super::{Events, Inner};
use crate::error::{Json, RequestError, parse_uuid};
use crate::openapi::{StreamEvent, errors};

/// Milliseconds of a duration, for the store.
fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Direct events are remembered at least this long past their expiry, or past their arrival if
/// that is later (and at least twice `--direct-event-window-secs`). A front resends a queued
/// event only until it expires by its own clock, so this covers fronts whose clock is somewhat
/// behind the server's; one further off than the window is refused (`stale_event`).
const DEDUPE_MARGIN_MILLIS: i64 = 10 * 60 * 1000;

/// A path that does not decode is answered like a malformed UUID: every path parameter here
/// but the event name is one.
fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, RequestError> {
    path.map(|Path(value)| value)
        .map_err(|e| RequestError::InvalidUuid(ParseError::InvalidUuid(e.body_text())))
}

/// The client's address: the connection's peer, or for a connection from a trusted proxy the
/// last entry of `X-Forwarded-For` (the one that proxy added). `None` in process (no socket).
pub(super) struct ClientAddr(Option<IpAddr>);

impl FromRequestParts<Events> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        events: &Events,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        let trusted = &events.inner.config.trusted_proxies;
        let forwarded = peer.filter(|peer| trusted.contains(peer)).and_then(|_| {
            let header = parts.headers.get_all("x-forwarded-for").iter().next_back()?;
            header.to_str().ok()?.rsplit(',').next()?.trim().parse::<IpAddr>().ok()
        });
        Ok(Self(forwarded.or(peer)))
    }
}

errors! {
    /// The errors of registration.
    RegisterErrors with BODY_ERRORS {
        400: InvalidRequest;
        409: FrontKeyConflict;
        429: RateLimited;
        503: StoreUnavailable;
    }
}

/// Register a front
///
/// Registers the front's public key under its UUID and answers its `frontBid`. The same UUID
/// with the same key again answers the same `frontBid`; with another key, `409
/// front_key_conflict`. Registrations per client address are rate limited (`429
/// rate_limited` with `Retry-After`).
#[utoipa::path(
    post,
    path = "/web-event-front-reg/{frontUuid}",
    tag = "events",
    params(("frontUuid" = FrontUuid, Path, description = "The front; the body's `frontUuid` must equal it.",
        example = "0d5c4f3e-6a8b-4c1d-9e2f-3a4b5c6d7e8f")),
    request_body = RegisterRequest,
    responses(
        (status = 200, description = "The front's `frontBid`.", body = FrontBid),
        RegisterErrors,
    )
)]
pub(super) async fn register(
    State(events): State<Events>,
    ClientAddr(client): ClientAddr,
    front: Result<Path<String>, PathRejection>,
    body: Result<Json<RegisterRequest>, RequestError>,
) -> Result<Json<FrontBid>, EventError> {
    // Before anything else: a flood of registrations must cost nothing but this check.
    if let (Some(limiter), Some(client)) = (&events.inner.registrations, client)
        && let Err(not_until) = limiter.check_key(&client)
    {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(limiter.clock()));
        return Err(EventError::RateLimited(wait.as_secs().max(1)));
    }
    let front: FrontUuid = parse_uuid(&path(front)?)?;
    let Json(body) = body?;
    if body.front_uuid != front {
        return Err(RequestError::InvalidRequest(format!(
            "frontUuid {} in the body is not the front {front} of the path",
            body.front_uuid
        ))
        .into());
    }
    let inner = &events.inner;
    // A front's key never changes, so a remembered front answers without the store.
    if let Some(info) = inner.registry.cached_front(front) {
        return if info.key == body.public_key {
            Ok(Json(info.bid))
        } else {
            Err(EventError::FrontKeyConflict(front))
        };
    }
    match inner.store.register(front, body.public_key, inner.clock.now()).await? {
        Registration::Registered(bid) => {
            // The stream open that follows needs the shared key: compute it once, now.
            inner.registry.remember(Arc::new(inner.front(bid, front, body.public_key)));
            Ok(Json(bid))
        }
        Registration::Conflict => Err(EventError::FrontKeyConflict(front)),
    }
}

/// The id the client saw last: the `Last-Event-ID` header, or the `lastEventId` query parameter
/// for clients that cannot set headers. Anything but a non-negative integer is ignored (an id
/// from another server is not ours to interpret).
fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Option<i64> {
    let header = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    sse::resume_id(header, query)
}

errors! {
    /// The errors of a stream open.
    OpenErrors {
        400: InvalidUuid;
        404: FrontNotRegistered;
        503: StoreUnavailable, Internal;
    }
}

/// Open a reverse stream
///
/// Answers `text/event-stream`. The first frame is `event: authenticate` with an
/// `AuthenticateChallenge`; the stream waits for its activation (`POST /web-event-stream-act`)
/// and is closed if none comes within the activation timeout. Then come the kept events after
/// `Last-Event-ID` (or what no stream of the front was given yet), then live events: `id: N`
/// and `data: {"data", "meta"}`. `404 front_not_registered` tells the client to register
/// again; `503 internal` while the server shuts down.
#[utoipa::path(
    get,
    path = "/web-event-stream-open/{frontUuid}/{sessionUuid}",
    tag = "events",
    params(
        ("frontUuid" = FrontUuid, Path, description = "The front."),
        ("sessionUuid" = SessionUuid, Path, description = "The tab."),
        ("scope" = Option<String>, Query, description = "`front`: the stream carries every event of the front (the tab that holds the stream for the others); the answer then has `x-web-event-scope: front`."),
        ("lastEventId" = Option<String>, Query, description = "The id of the last event seen, for clients that cannot set `Last-Event-ID`; anything but a non-negative integer is ignored."),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event seen; anything but a non-negative integer is ignored."),
    ),
    responses(
        (status = 200, description = "The reverse stream (Server-Sent Events).", content_type = "text/event-stream", body = StreamEvent),
        OpenErrors,
    )
)]
pub(super) async fn open(
    State(events): State<Events>,
    ids: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, EventError> {
    let (front, session) = path(ids)?;
    let front: FrontUuid = parse_uuid(&front)?;
    let session: SessionUuid = parse_uuid(&session)?;
    let last_event_id = last_event_id(&headers, query.as_deref());
    let front_scope = query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|pair| pair == paths::STREAM_SCOPE_FRONT_QUERY));
    let inner = &events.inner;
    let info = inner.front_info(front).await?.ok_or(EventError::FrontNotRegistered(front))?;
    let (stream, rx, info) =
        inner.registry.open(info, session, front_scope).ok_or(EventError::ShuttingDown)?;
    let spec = StreamSpec { stream, front: info.bid, session, last_event_id, front_scope };
    // Dropped on failure, which takes the stream out of the registry again.
    let body = SseBody::new(Arc::clone(inner), spec, rx);
    inner
        .store
        .open_stream(OpenStream {
            front: FrontRow { bid: info.bid, key: info.key },
            front_uuid: front,
            session,
            stream,
            last_event_id,
            front_scope,
            node: inner.node.clone(),
            activation_timeout_ms: millis(inner.config.activation_timeout),
        })
        .await?;
    let challenge = AuthenticateChallenge {
        back_uuid: inner.identity.uuid,
        back_key: inner.identity.keys.public,
        stream_uuid_enc: info.peer.seal(&stream),
    };
    // Serialising plain structs cannot fail.
    let challenge = serde_json::to_string(&challenge).unwrap_or_default();
    let hello = sse::encode(&SseEvent::data(challenge).with_event(AUTHENTICATE_EVENT));
    let body = body.with_hello(Bytes::from(hello));
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no")),
    ];
    let mut response = (headers, Body::new(body)).into_response();
    if front_scope {
        response.headers_mut().insert(
            header::HeaderName::from_static(paths::STREAM_SCOPE_HEADER),
            HeaderValue::from_static("front"),
        );
    }
    // Served on its socket without hyper's buffers once its head is ready (see detach.rs).
    Ok(crate::detach::detachable(response))
}

errors! {
    /// The errors of an activation.
    ActivateErrors with BODY_ERRORS {
        404: FrontNotRegistered, StreamNotFound;
        409: StreamAlreadyActive;
        429: TooManyStreams;
        503: StoreUnavailable;
    }
}

/// Activate a reverse stream
///
/// The front proves it opened the stream's challenge. The store makes the stream its
/// session's active stream (replacing an older one of the same session) and tells the instance
/// that holds it (this one or another), which replays what the stream missed and then sends
/// live events. Segments appended to the path are ignored (`/web-event-stream-act/…`).
#[utoipa::path(
    post,
    path = "/web-event-stream-act",
    tag = "events",
    request_body = ActivateRequest,
    responses(
        (status = 200, description = "Activated: `true`.", body = bool),
        ActivateErrors,
    )
)]
pub(super) async fn activate(
    State(events): State<Events>,
    body: Result<Json<ActivateRequest>, RequestError>,
) -> Result<Json<bool>, EventError> {
    let Json(body) = body?;
    let (front, stream) = (body.front_uuid, body.stream_uuid);
    let inner = &events.inner;
    let max = inner.config.max_streams_per_front;
    match inner.store.activate_stream(front, stream, max, inner.clock.now()).await? {
        Ok(_) => Ok(Json(true)),
        Err(ActivateRefusal::FrontNotRegistered) => {
            // Pruned (or the store was reset): this instance must not answer from memory.
            inner.registry.forget(front);
            Err(EventError::FrontNotRegistered(front))
        }
        Err(ActivateRefusal::NotFound) => Err(EventError::StreamNotFound),
        Err(ActivateRefusal::AlreadyActive) => Err(EventError::StreamAlreadyActive),
        Err(ActivateRefusal::TooManyStreams(active)) => Err(EventError::TooManyStreams(active)),
    }
}

/// Parses a direct event. A stamp that is not a sealed value is a bad stamp rather than bad
/// JSON, so it is checked first.
fn parse_direct(value: Value) -> Result<DirectEvent, EventError> {
    if let Some(stamp) = value.get("meta").and_then(|meta| meta.get("stamp")) {
        let parsed = stamp.as_str().map(str::parse::<Sealed>);
        if let Some(Err(e)) = parsed {
            return Err(EventError::BadStamp(e.to_string()));
        }
        if parsed.is_none() {
            return Err(EventError::BadStamp("meta.stamp is not a string".to_owned()));
        }
    }
    serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        if text.contains("invalid UUID") {
            RequestError::InvalidUuid(ParseError::InvalidUuid(text)).into()
        } else {
            RequestError::InvalidJson(text).into()
        }
    })
}

errors! {
    /// The errors of a direct event.
    DirectErrors with BODY_ERRORS {
        400: InvalidRequest, InvalidEvent;
        403: BadStamp, SessionInactive, StaleEvent;
        404: FrontNotRegistered, NotFound;
        503: StoreUnavailable;
    }
}

/// Send a direct (front → back) event
///
/// `{data, meta}` from a tab with an active stream, stamped with the front's key (`meta.stamp`
/// = seal(`meta.uuid` + `published` in epoch milliseconds)); `meta.name` must equal the path's
/// event name, and a handler must be registered under it (`404 not_found` otherwise). An event
/// handled already (same `meta.uuid`) answers `true` again without being handled twice.
#[utoipa::path(
    post,
    path = "/web-event-direct/{eventName}",
    tag = "events",
    params(("eventName" = String, Path, description = "The event's name, as in `meta.name`.")),
    request_body = DirectEvent,
    responses(
        (status = 200, description = "Handled (or handled before): `true`.", body = bool),
        DirectErrors,
    )
)]
pub(super) async fn direct(
    State(events): State<Events>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Json<Value>, RequestError>,
) -> Result<Json<bool>, EventError> {
    let name =
        name.map(|Path(name)| name).map_err(|e| RequestError::InvalidRequest(e.body_text()))?;
    let Json(body) = body?;
    let mut event = parse_direct(body)?;
    let meta = &event.meta;
    if meta.name != name {
        return Err(RequestError::InvalidRequest(format!(
            "meta.name {:?} is not the event name {name:?} of the path",
            meta.name
        ))
        .into());
    }
    let inner = &events.inner;
    let now = inner.clock.now();
    match inner.store.served(meta.front_uuid, meta.session_uuid, now).await? {
        Served::Own(_) | Served::Shared(_) => {}
        Served::Inactive => return Err(EventError::SessionInactive(meta.session_uuid)),
        Served::FrontNotRegistered => return Err(EventError::FrontNotRegistered(meta.front_uuid)),
    }
    let info = inner
        .front_info(meta.front_uuid)
        .await?
        .ok_or(EventError::FrontNotRegistered(meta.front_uuid))?;
    info.peer
        .verify_stamp(&meta.stamp, &meta.uuid, meta.published)
        .map_err(|e| EventError::BadStamp(e.to_string()))?;
    // The stamp covers `uuid` and `published` only: a captured event could be sent again with
    // other data once it is forgotten. Bounding `published` closes that: claims are kept at
    // least twice the window, so within it a replay is a duplicate, after it a stale event.
    let window = millis(inner.config.direct_event_window);
    let off = meta.published.millis().saturating_sub(now.millis());
    if off.saturating_abs() > window {
        return Err(EventError::StaleEvent(off / 1000));
    }
    let ahead = meta.expires_at().millis().saturating_sub(now.millis());
    if ahead > millis(inner.config.max_event_ttl) {
        return Err(EventError::InvalidEvent(ahead / 1000));
    }
    let handler = inner.handler(&name).ok_or_else(|| EventError::UnknownEvent(name.clone()))?;

    let margin = DEDUPE_MARGIN_MILLIS.max(window.saturating_mul(2));
    let keep_until = meta.expires_at().max(now).plus_millis(margin);
    let (front, uuid) = (info.bid, meta.uuid);
    if !inner.store.claim_direct(front, uuid, keep_until, now).await? {
        return Ok(Json(true));
    }
    if event.meta.encrypted == Some(true) {
        let opened = info.peer.open_event_data(&event.data);
        match opened.map_err(|e| RequestError::InvalidRequest(format!("encrypted data: {e}"))) {
            Ok(data) => event.data = data,
            Err(e) => {
                inner.store.release_direct(front, uuid).await?;
                return Err(e.into());
            }
        }
    }
    if let Err(e) = handler.call(event, events.hub()).await {
        inner.store.release_direct(front, uuid).await?;
        return Err(EventError::Internal(e.context(format!("direct event handler {name:?}"))));
    }
    Ok(Json(true))
}

impl Inner {
    fn handler(&self, name: &str) -> Option<Arc<dyn super::direct::DirectHandler>> {
        let handlers = self.handlers.read().unwrap_or_else(|p| p.into_inner());
        handlers.get(name).cloned()
    }
}
