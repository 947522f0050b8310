//! The publishing handle for the application that runs the server: events to one session
//! (browser tab), to every session of a front, or to every front.
//!
//! Every event is stored before it is handed to live streams; the store gives it its id and
//! hands it to every instance's streams in id order (see `store/mod.rs`). A stream that
//! is down, or too slow, gets the events it missed from the store when it comes back.
//!
//! Handing an event over is queueing its (encoded once) frame on each target stream, which
//! wakes that stream's writer. An event for a few streams is handed over at once, on the
//! store's feed. One for more than `--fan-out-batch` streams goes to the fan-out task, which
//! queues it on a batch of streams at a time and yields between batches, so that the writers
//! of the first batch write while the rest wait: the first write leaves within a batch of the
//! commit, not after every stream was queued (10,000 of them took milliseconds, and on one
//! core no writer ran before the last was queued). Events keep their id order per stream:
//! while a delivery is queued or under way, every later one queues behind it (a stream skips
//! an event whose id is below one it wrote).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use protocol::event::DEFAULT_TTL_MILLIS;
use protocol::{EventMeta, EventUuid, FrontUuid, ReverseEvent, SessionUuid, StreamUuid};
use serde_json::Value;
use tokio::sync::mpsc;

use super::Inner;
use super::registry::{FirstWrite, Frame, FrontInfo};
use super::store::{NewEvent, PublishRefusal, StoreError, StoredEvent};
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
    #[error(transparent)]
    Store(#[from] StoreError),
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
        self.inner.publish(front, Some(session), name, data, &options).await
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
        self.inner.publish(front, None, name, data, &options).await
    }

    /// Publishes one event to every front: to every active stream now, and to every stream
    /// that resumes with a `Last-Event-ID` before it, until it expires. The event is stored
    /// once and encoded once, so its `meta` names no front and carries no stamp (both differ
    /// per front), and it cannot be sealed (`encrypted` is refused). On Redis, ids are per
    /// front: the event is copied into each front's stream as it reaches the front, under the
    /// front's next id, so the returned id is its place among the events for every front, not
    /// the `id:` a tab sees.
    pub async fn publish_to_all(
        &self,
        name: &str,
        data: Value,
        options: PublishOptions,
    ) -> Result<Published, PublishError> {
        self.inner.publish_to_all(name, data, &options).await
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
            info.peer.seal_event_data(&data)
        } else {
            data
        };
        let body = encode(data, meta.clone());
        (meta, body)
    }

    async fn publish(
        &self,
        front: FrontUuid,
        session: Option<SessionUuid>,
        name: &str,
        data: Value,
        options: &PublishOptions,
    ) -> Result<Published, PublishError> {
        let started = Instant::now();
        let info = self.front_info(front).await?.ok_or(PublishError::FrontNotRegistered(front))?;
        let (meta, body) = self.prepare(&info, session, name, data, options);
        let event = NewEvent {
            front: Some(info.bid),
            session,
            expires_at: meta.expires_at(),
            body,
            now: self.clock.now(),
            started,
        };
        let target = if session.is_some() { "session" } else { "front" };
        match self.store.publish(event).await? {
            Ok(id) => {
                metrics::counter!("websession_events_published_total", "target" => target)
                    .increment(1);
                Ok(Published { id, uuid: meta.uuid })
            }
            Err(PublishRefusal::SessionNotFound) => Err(match session {
                Some(session) => PublishError::SessionNotFound(session),
                None => PublishError::Unsupported("a front's event refused for a session"),
            }),
        }
    }

    async fn publish_to_all(
        &self,
        name: &str,
        data: Value,
        options: &PublishOptions,
    ) -> Result<Published, PublishError> {
        if options.encrypted {
            return Err(PublishError::Unsupported("sealing an event for every front"));
        }
        let started = Instant::now();
        let meta = self.meta(name, options);
        let event = NewEvent {
            front: None,
            session: None,
            expires_at: meta.expires_at(),
            body: encode(data, meta.clone()),
            now: self.clock.now(),
            started,
        };
        match self.store.publish(event).await? {
            Ok(id) => {
                metrics::counter!("websession_events_published_total", "target" => "all")
                    .increment(1);
                Ok(Published { id, uuid: meta.uuid })
            }
            Err(PublishRefusal::SessionNotFound) => {
                Err(PublishError::Unsupported("an event for every front has no session"))
            }
        }
    }

    /// Hands a committed event to this instance's live streams of its target; returns how
    /// many took it. Called by the store's feed, in id order.
    pub(super) fn hand_over(&self, event: &StoredEvent) -> usize {
        let mut targets = Vec::new();
        match event.front {
            Some(front) => self.registry.targets(front, event.session, &mut targets),
            None => self.registry.all_targets(&mut targets),
        }
        if targets.is_empty() {
            return 0;
        }
        let mut frame = String::with_capacity(event.body.len() + 32);
        event_frame(event.id, &event.body, &mut frame);
        let first = event.started.map(FirstWrite::new);
        let frame = Arc::new(Frame::Event { id: event.id, bytes: frame.into(), first });
        let fan_out = &self.fan_out;
        if targets.len() <= fan_out.batch && fan_out.pending.load(Ordering::Acquire) == 0 {
            let taken = self.registry.send(&targets, &frame);
            self.record_cut();
            metrics::counter!("websession_events_delivered_total").increment(taken as u64);
            return taken;
        }
        // Counted as taken by every target: a stream that cannot take it (gone, or too slow)
        // is ended and resumes from the store, as if it had dropped the frame.
        let count = targets.len();
        fan_out.pending.fetch_add(1, Ordering::AcqRel);
        if fan_out.queue.send(Delivery { targets, frame }).is_err() {
            // The task ended (shutdown): the event is stored, the streams are ending.
            fan_out.pending.fetch_sub(1, Ordering::AcqRel);
            return 0;
        }
        count
    }
}

/// An event's frame and the streams it goes to, for the fan-out task.
pub(super) struct Delivery {
    targets: Vec<StreamUuid>,
    frame: Arc<Frame>,
}

/// The queue of the fan-out task (see the module's doc).
pub(super) struct FanOut {
    queue: mpsc::UnboundedSender<Delivery>,
    /// Deliveries queued or under way; while any is, later ones queue behind it.
    pending: AtomicUsize,
    /// `--fan-out-batch`.
    batch: usize,
}

impl FanOut {
    /// The queue, and its receiving end for [`fan_out`].
    pub(super) fn new(batch: usize) -> (Self, mpsc::UnboundedReceiver<Delivery>) {
        let (queue, deliveries) = mpsc::unbounded_channel();
        (Self { queue, pending: AtomicUsize::new(0), batch: batch.max(1) }, deliveries)
    }
}

/// The fan-out task: hands each queued event to its streams a batch at a time, yielding
/// between batches so that the writers just woken run before the next batch is queued.
pub(super) async fn fan_out(inner: Weak<Inner>, mut deliveries: mpsc::UnboundedReceiver<Delivery>) {
    while let Some(Delivery { targets, frame }) = deliveries.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        let mut taken = 0;
        for (i, batch) in targets.chunks(inner.fan_out.batch).enumerate() {
            if i > 0 {
                tokio::task::yield_now().await;
            }
            taken += inner.registry.send(batch, &frame);
        }
        drop(targets);
        inner.record_cut();
        metrics::counter!("websession_events_delivered_total").increment(taken as u64);
        inner.fan_out.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The `{data, meta}` JSON of an event.
fn encode(data: Value, meta: EventMeta) -> String {
    // Serialising a `Value` and plain structs cannot fail.
    serde_json::to_string(&ReverseEvent { data, meta }).unwrap_or_default()
}
