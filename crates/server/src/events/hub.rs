//! The publishing handle for the application that runs the server: events to one session
//! (browser tab), to every session of a front, or to every front.
//!
//! Every event is stored before it is handed to live streams, under one lock per publish, so
//! each front's events carry increasing ids and reach every stream in id order. A stream that
//! is down, or too slow, gets the events it missed from the store when it comes back.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use protocol::event::DEFAULT_TTL_MILLIS;
use protocol::{EventMeta, EventUuid, FrontUuid, ReverseEvent, SessionUuid, StreamUuid};
use serde_json::Value;

use super::Inner;
use super::registry::{Frame, FrameTx, FrontInfo};
use super::store::{self, NewEvent};
use super::stream::event_frame;

/// How an event is published.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// How long the event is worth delivering (`meta.expired`); default 60 s.
    pub expires_in: Option<Duration>,
    /// The `meta.uuid` of the direct event this one answers (`meta.requestUuid`).
    pub request_uuid: Option<EventUuid>,
    /// Seal `data` for the front (`meta.encrypted`).
    pub encrypted: bool,
}

/// A stored event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Its id in the front's sequence (the SSE `id:`).
    pub id: i64,
    /// Its `meta.uuid`.
    pub uuid: EventUuid,
}

/// Why an event was not published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No front is registered under that UUID.
    #[error("front {0} is not registered")]
    FrontNotRegistered(FrontUuid),
    /// The session was never activated, or was forgotten after the session TTL.
    #[error("session {0} is unknown or expired")]
    SessionNotFound(SessionUuid),
    /// The hub cannot do that.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// The store failed.
    #[error("the event store failed: {0}")]
    Store(#[from] rusqlite::Error),
}

/// A cheap, cloneable handle to publish events.
#[derive(Clone)]
pub struct Hub {
    pub(super) inner: Arc<Inner>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hub(..)")
    }
}

impl Hub {
    /// Publishes to one session (browser tab) of a front. The session must be known: activated
    /// once and not forgotten.
    pub async fn publish_to_session(
        &self,
        front: FrontUuid,
        session: SessionUuid,
        name: &str,
        data: Value,
        options: PublishOptions,
    ) -> Result<Published, PublishError> {
        self.inner.publish(front, Some(session), name, data, &options)
    }

    /// Publishes to every session of a front, the ones that connect later included (until the
    /// event expires).
    pub async fn publish_to_front(
        &self,
        front: FrontUuid,
        name: &str,
        data: Value,
        options: PublishOptions,
    ) -> Result<Published, PublishError> {
        self.inner.publish(front, None, name, data, &options)
    }

    /// Publishes one event to every front: to every active stream now, and to every stream
    /// that resumes with a `Last-Event-ID` before it, until it expires. The event is stored
    /// once and encoded once, so its `meta` names no front and carries no stamp (both differ
    /// per front), and it cannot be sealed (`encrypted` is refused). Returns how many streams
    /// it was handed to live.
    pub async fn publish_to_all(
        &self,
        name: &str,
        data: Value,
        options: PublishOptions,
    ) -> Result<usize, PublishError> {
        self.inner.publish_to_all(name, data, &options)
    }
}

impl Inner {
    /// The metadata of a new event, published now.
    fn meta(&self, name: &str, options: &PublishOptions) -> EventMeta {
        let published = self.clock.now();
        let ttl = options
            .expires_in
            .map_or(DEFAULT_TTL_MILLIS, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut meta = EventMeta::new(name, published);
        meta.expired = Some(published.plus_millis(ttl));
        meta.back_uuid = Some(self.identity.uuid);
        meta.request_uuid = options.request_uuid;
        meta
    }

    /// Builds and seals an event for one front, before any lock is taken.
    fn prepare(
        &self,
        info: &FrontInfo,
        session: Option<SessionUuid>,
        name: &str,
        data: Value,
        options: &PublishOptions,
    ) -> (EventMeta, String) {
        let mut meta = self.meta(name, options);
        meta.front_uuid = Some(info.uuid);
        meta.session_uuid = session;
        meta.stamp = Some(info.peer.stamp(&meta.uuid, meta.published));
        let data = if options.encrypted {
            meta.encrypted = Some(true);
            Value::String(info.peer.seal_data(&data).to_base64())
        } else {
            data
        };
        let body = encode(data, meta.clone());
        (meta, body)
    }

    fn publish(
        &self,
        front: FrontUuid,
        session: Option<SessionUuid>,
        name: &str,
        data: Value,
        options: &PublishOptions,
    ) -> Result<Published, PublishError> {
        let info = self.front_info(front)?.ok_or(PublishError::FrontNotRegistered(front))?;
        let (meta, body) = self.prepare(&info, session, name, data, options);
        let id = self.store.db().with(|conn| {
            let tx = conn.transaction()?;
            if let Some(session) = session
                && !store::session_known(&tx, info.bid, session)?
            {
                // A session no stream of its own ever served may still be a tab that another
                // tab's front-scoped stream serves: it becomes known.
                if !self.registry.front_scoped(info.bid) {
                    return Err(PublishError::SessionNotFound(session));
                }
                store::session_seen(&tx, info.bid, session, self.clock.now())?;
            }
            let mut targets = Vec::new();
            self.registry.targets(info.bid, session, &mut targets);
            // "Delivered" means handed to a stream. If that stream then drops the frame (too
            // slow), its client still gets it by reconnecting with `Last-Event-ID`.
            let event = NewEvent {
                front: Some(info.bid),
                session,
                expires_at: meta.expires_at(),
                delivered: !targets.is_empty(),
                body: &body,
            };
            let id = store::insert_event(&tx, &event)?;
            tx.commit()?;
            self.hand_over(id, &body, &targets);
            Ok(id)
        })?;
        Ok(Published { id, uuid: meta.uuid })
    }

    fn publish_to_all(
        &self,
        name: &str,
        data: Value,
        options: &PublishOptions,
    ) -> Result<usize, PublishError> {
        if options.encrypted {
            return Err(PublishError::Unsupported("sealing an event for every front"));
        }
        let meta = self.meta(name, options);
        let expires_at = meta.expires_at();
        let body = encode(data, meta);
        self.store.db().with(|conn| {
            let tx = conn.transaction()?;
            let mut targets = Vec::new();
            self.registry.all_targets(&mut targets);
            let event =
                NewEvent { front: None, session: None, expires_at, delivered: true, body: &body };
            let id = store::insert_event(&tx, &event)?;
            tx.commit()?;
            Ok(self.hand_over(id, &body, &targets))
        })
    }

    /// Hands a committed event to its live streams; returns how many took it. Runs under the
    /// database lock, so that the next event cannot overtake it.
    fn hand_over(&self, id: i64, body: &str, targets: &[(StreamUuid, FrameTx)]) -> usize {
        if targets.is_empty() {
            return 0;
        }
        let mut frame = String::with_capacity(body.len() + 32);
        event_frame(id, body, &mut frame);
        let frame = Arc::new(Frame::Event { id, bytes: frame.into() });
        self.registry.send(targets, &frame)
    }
}

/// The `{data, meta}` JSON of an event.
fn encode(data: Value, meta: EventMeta) -> String {
    // Serialising a `Value` and plain structs cannot fail.
    serde_json::to_string(&ReverseEvent { data, meta }).unwrap_or_default()
}
