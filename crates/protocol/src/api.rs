//! Bodies of the operator-facing endpoints: the server API that the application's own backend
//! calls (`POST /api/events/publish`, `POST /api/events/disconnect`,
//! `GET /api/events/presence/{frontUuid}`, behind an API key) and the health endpoints.

use std::collections::BTreeMap;

use crate::json::Value;
use serde::{Deserialize, Serialize};

use crate::ids::{FrontUuid, SessionUuid};
use crate::time::Timestamp;

/// The request header that carries the server API's key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The longest event `name` the server API publishes, in characters.
pub const MAX_EVENT_NAME_CHARS: usize = 128;
/// The longest `expiresInMs`: a day. An event (and its idempotency record) is kept at most that
/// long.
pub const MAX_EXPIRES_IN_MS: u64 = 24 * 60 * 60 * 1000;
/// The longest `idempotencyKey`, in characters (printable ASCII, no spaces).
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// `POST /api/events/publish` body: an event for one tab (`sessionUuid`) or for every tab of a
/// front.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "frontUuid": "0d5c4f3e-6a8b-4c1d-9e2f-3a4b5c6d7e8f",
    "name": "order-shipped",
    "data": {"order": 17},
    "expiresInMs": 300000,
    "idempotencyKey": "order-17-shipped"
})))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishRequest {
    /// The front to publish to.
    pub front_uuid: FrontUuid,
    /// One tab of the front; absent: every tab of the front, the ones that connect later
    /// included (until the event expires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_uuid: Option<SessionUuid>,
    /// `meta.name`: 1 to [`MAX_EVENT_NAME_CHARS`] characters, no control characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128))]
    pub name: String,
    /// The event's `data`; absent: `null`.
    #[serde(default)]
    pub data: Value,
    /// Seal `data` to the front's key (`meta.encrypted`), as direct events are.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// How long the event is worth delivering: 1 to [`MAX_EXPIRES_IN_MS`]; absent: 60 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 86_400_000))]
    pub expires_in_ms: Option<u64>,
    /// The same key for the same front, within the event's lifetime, publishes once and
    /// answers the first publish's id: 1 to [`MAX_IDEMPOTENCY_KEY_CHARS`] printable ASCII
    /// characters without spaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 128, pattern = "^[!-~]+$")
    )]
    pub idempotency_key: Option<String>,
}

impl PublishRequest {
    /// Checks the bounds that serde cannot: the reason for the first one broken.
    pub fn check(&self) -> Result<(), String> {
        let chars = self.name.chars().count();
        if chars == 0 || chars > MAX_EVENT_NAME_CHARS {
            return Err(format!("name must have 1 to {MAX_EVENT_NAME_CHARS} characters"));
        }
        if self.name.chars().any(char::is_control) {
            return Err("name must not contain control characters".into());
        }
        if let Some(ms) = self.expires_in_ms
            && !(1..=MAX_EXPIRES_IN_MS).contains(&ms)
        {
            return Err(format!("expiresInMs must be 1 to {MAX_EXPIRES_IN_MS}"));
        }
        if let Some(key) = &self.idempotency_key
            && (key.is_empty()
                || key.len() > MAX_IDEMPOTENCY_KEY_CHARS
                || !key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(format!(
                "idempotencyKey must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII \
                 characters without spaces"
            ));
        }
        Ok(())
    }
}

/// `POST /api/events/publish` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishResponse {
    /// The event's id in its front's sequence (the SSE `id:` its streams see).
    pub id: i64,
}

/// `POST /api/events/disconnect` body: ends the reverse streams of a front, or of one of its
/// tabs. Their clients may connect again (and resume with `Last-Event-ID`, losing nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisconnectRequest {
    /// The front whose streams end.
    pub front_uuid: FrontUuid,
    /// Only this tab's stream; absent: every stream of the front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_uuid: Option<SessionUuid>,
}

/// `POST /api/events/disconnect` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DisconnectResponse {
    /// How many active streams were ended (0 when none was open).
    pub closed: u64,
}

/// The most sessions `GET /api/events/presence/{frontUuid}` lists; `truncated` says when a
/// front has more.
pub const MAX_PRESENCE_SESSIONS: usize = 1000;

/// `GET /api/events/presence/{frontUuid}` answer: the front's known tabs, active ones first,
/// then by `since`, latest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresenceResponse {
    /// At most [`MAX_PRESENCE_SESSIONS`].
    pub sessions: Vec<SessionPresence>,
    /// The front has more sessions than are listed.
    pub truncated: bool,
}

/// One tab in a [`PresenceResponse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionPresence {
    /// The tab.
    pub session_uuid: SessionUuid,
    /// It has an active reverse stream of its own.
    pub active: bool,
    /// Active: when its stream was activated; idle: since when it has had none (ISO-8601 UTC,
    /// milliseconds). Absent when the server does not know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
}

/// `GET /healthz` answer: the process lives and serves HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `"ok"`.
    pub status: String,
}

/// The state of one readiness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    /// It answers.
    Ok,
    /// It does not answer (details in the server's log).
    Down,
}

/// `GET /readyz` answer: `200 {"status": "ready", "checks": …}`, or `503` with
/// `"status": "not_ready"` and the error body's `error` (`not_ready`) and `message` besides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Readiness {
    /// `not_ready` when not ready (the stable code of every error body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Which checks failed, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `ready` or `not_ready`.
    pub status: String,
    /// Each check by name: `eventStore`, `sessionStore`, `oneTimeTokenStore`, and `draining`
    /// (`down` once the server is shutting down).
    pub checks: BTreeMap<String, CheckState>,
}
