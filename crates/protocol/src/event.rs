//! Events: the `{data, meta}` envelope in both directions, with its metadata.

use serde::{Deserialize, Serialize};

use crate::ids::{BackUuid, EventUuid, FrontUuid, SessionUuid};
use crate::sealed::Sealed;
use crate::time::Timestamp;

/// How long an event lives when its `expired` is not given.
pub const DEFAULT_TTL_MILLIS: i64 = 60_000;

/// Metadata of a back → front event (reverse stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMeta {
    /// The event's name; handlers subscribe by it.
    pub name: String,
    /// Unique per event; receivers drop a UUID they have seen.
    pub uuid: EventUuid,
    /// When the event was created.
    pub published: Timestamp,
    /// When the event stops being worth delivering; default `published` + 60 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired: Option<Timestamp>,
    /// The backend that sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_uuid: Option<BackUuid>,
    /// The front it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front_uuid: Option<FrontUuid>,
    /// The tab it is for; absent when it is for every tab of the front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_uuid: Option<SessionUuid>,
    /// `seal(uuid + published millis)` by the sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<Sealed>,
    /// Whether `data` is a sealed value ([`crate::Peer::seal_data`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    /// The `meta.uuid` of the request this event answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_uuid: Option<EventUuid>,
}

impl EventMeta {
    /// Metadata for a new event named `name`, published now with a fresh UUID.
    pub fn new(name: impl Into<String>, published: Timestamp) -> Self {
        Self {
            name: name.into(),
            uuid: EventUuid::new_v4(),
            published,
            expired: None,
            back_uuid: None,
            front_uuid: None,
            session_uuid: None,
            stamp: None,
            encrypted: None,
            request_uuid: None,
        }
    }

    /// When the event expires: `expired`, or `published` + 60 s.
    pub fn expires_at(&self) -> Timestamp {
        self.expired.unwrap_or(self.published.plus_millis(DEFAULT_TTL_MILLIS))
    }
}

/// Metadata of a front → back event (direct stream). Unlike [`EventMeta`], the sender's front,
/// session and stamp are required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DirectMeta {
    /// The event's name; must match the path's `{eventName}`.
    pub name: String,
    /// Unique per event; the backend handles each UUID once.
    pub uuid: EventUuid,
    /// When the event was created.
    pub published: Timestamp,
    /// When the event stops being worth handling; default `published` + 60 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired: Option<Timestamp>,
    /// The sender's front.
    pub front_uuid: FrontUuid,
    /// The sender's tab.
    pub session_uuid: SessionUuid,
    /// `seal(uuid + published millis)` with the front's secret key and the back's public key.
    pub stamp: Sealed,
    /// Whether `data` is a sealed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    /// The `meta.uuid` of the event this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_uuid: Option<EventUuid>,
}

impl DirectMeta {
    /// When the event expires: `expired`, or `published` + 60 s.
    pub fn expires_at(&self) -> Timestamp {
        self.expired.unwrap_or(self.published.plus_millis(DEFAULT_TTL_MILLIS))
    }
}

/// The `{data, meta}` envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Envelope<M> {
    /// The payload: any JSON, or a sealed string when `meta.encrypted`.
    #[serde(default)]
    pub data: crate::json::Value,
    /// The metadata.
    pub meta: M,
}

/// A back → front event, as the `data:` of a reverse-stream SSE frame.
pub type ReverseEvent = Envelope<EventMeta>;
/// A front → back event, as the body of `POST /web-event-direct/{eventName}`.
pub type DirectEvent = Envelope<DirectMeta>;
