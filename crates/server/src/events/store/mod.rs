//! The event store: one interface ([`EventStore`]) with whole-transaction operations, and two
//! engines — the embedded SQLite store ([`SqliteEngine`], one instance) and Redis
//! ([`RedisEngine`], any number of instances sharing one Redis).
//!
//! The store owns everything a cluster must agree on: the back's identity, fronts and their
//! keys, open streams and their activation, sessions and their idle time, kept events with
//! their ids, which events were delivered, and the direct events already handled. What stays
//! in an instance's memory is only how to reach the streams it holds (`registry.rs`).
//!
//! **Ids.** A front's event ids (the SSE `id:`) increase in the order its events are stored, so
//! one `Last-Event-ID` resumes a tab exactly. The SQLite engine takes them from one sequence for
//! all fronts; the Redis engine from one per front (each publish stays in its front's hash slot),
//! copying an event for every front into each front's stream with the front's next id.
//!
//! **Live delivery.** An engine hands every committed event to the [`Feed`] its service
//! started it with, in each front's id order, on every instance: the SQLite engine right after
//! the commit, under its lock; the Redis engine from its subscription, catching up from the
//! kept events after a gap in a front's sequence, a resubscribe, or at every heartbeat (so a
//! lost pub/sub message costs at most one heartbeat, never an event). It also tells the
//! instance that holds a stream when that stream is activated or replaced, whichever instance
//! took the request.
//!
//! **Replay.** A stream reads kept events after its cursor in pages bounded in count and
//! bytes ([`ReplayRequest`]), one page at a time as it writes them, so a slow reader holds at
//! most one page and building one blocks no other request.

mod redis;
mod sqlite;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use protocol::messages::FrontBid;
use protocol::{BackUuid, EventUuid, FrontUuid, PublicKey, SessionUuid, StreamUuid, Timestamp};

pub use self::redis::RedisEngine;
pub use self::sqlite::SqliteEngine;

/// The future every store operation returns (boxed, so the trait can be used as `dyn`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The store could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store does not answer (Redis down, the database thread gone): the request answers
    /// `503 store_unavailable` and may be tried again.
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    /// A record that does not parse (written by something else, or corrupted).
    #[error("corrupt record in the event store: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Unavailable(format!("embedded store: {e}"))
    }
}

impl From<::redis::RedisError> for StoreError {
    fn from(e: ::redis::RedisError) -> Self {
        Self::Unavailable(format!("redis: {e}"))
    }
}

/// The back's identity as kept: its UUID and the secret half of its X25519 key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct BackRecord {
    /// `backUuid`.
    pub uuid: BackUuid,
    /// The X25519 secret key.
    pub secret: [u8; 32],
}

impl fmt::Debug for BackRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackRecord").field("uuid", &self.uuid).finish_non_exhaustive()
    }
}

/// A registered front as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontRow {
    /// Its `frontBid`.
    pub bid: FrontBid,
    /// Its public key, which never changes.
    pub key: PublicKey,
}

/// The outcome of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// New, or the same UUID with the same key again: its `frontBid`.
    Registered(FrontBid),
    /// The UUID is registered with another key.
    Conflict,
}

/// Which instance holds a stream: an opaque name, unique per running service.
pub type NodeId = Arc<str>;

/// A stream that was just opened and waits for its activation.
#[derive(Debug, Clone)]
pub struct OpenStream {
    /// Its front.
    pub front: FrontRow,
    /// Its front's UUID.
    pub front_uuid: FrontUuid,
    /// Its tab.
    pub session: SessionUuid,
    /// Its UUID (sealed in the `authenticate` challenge).
    pub stream: StreamUuid,
    /// What the client saw last when it opened the stream (`Last-Event-ID`).
    pub last_event_id: Option<i64>,
    /// It carries every event of the front (`?scope=front`).
    pub front_scope: bool,
    /// The instance that holds it.
    pub node: NodeId,
    /// Not activated by then, it is forgotten (milliseconds from now).
    pub activation_timeout_ms: i64,
}

/// A stream that an activation made its session's active stream.
#[derive(Debug, Clone)]
pub struct Activation {
    /// Its front.
    pub front: FrontBid,
    /// Its tab.
    pub session: SessionUuid,
    /// The activated stream.
    pub stream: StreamUuid,
    /// The instance that holds it.
    pub node: NodeId,
    /// The session's previous active stream, which ends now, and the instance holding it.
    pub replaced: Option<(StreamUuid, NodeId)>,
}

/// Why an activation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivateRefusal {
    /// The front is not registered.
    FrontNotRegistered,
    /// No open stream of that front has that UUID (or it timed out, or it belongs to another
    /// front: answered alike, so that stream UUIDs cannot be probed).
    NotFound,
    /// The stream was activated before.
    AlreadyActive,
    /// The front has this many active streams, the most it may have (a stream that replaces
    /// its session's active one does not count).
    TooManyStreams(usize),
}

/// Whether a session may send direct events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// It has an active stream of its own.
    Own(FrontRow),
    /// Another tab's front-scoped stream serves it; it became known (idle) just now.
    Shared(FrontRow),
    /// No active stream serves it.
    Inactive,
    /// The front is not registered.
    FrontNotRegistered,
}

/// A new event to keep and deliver.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `None`: for every front.
    pub front: Option<FrontBid>,
    /// `None`: for every session of the front.
    pub session: Option<SessionUuid>,
    /// When it stops being worth delivering.
    pub expires_at: Timestamp,
    /// The JSON of the `{data, meta}` envelope as sent.
    pub body: String,
    /// Now, by the service's clock.
    pub now: Timestamp,
    /// When this instance began to publish it (for `websession_event_first_write_seconds`).
    pub started: Instant,
}

/// Why an event was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishRefusal {
    /// The session is unknown (never activated, or forgotten) and no front-scoped stream of
    /// its front could serve it.
    SessionNotFound,
}

/// An event handed to [`Feed::event`] or read back for replay.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its id.
    pub id: i64,
    /// `None`: for every front.
    pub front: Option<FrontBid>,
    /// `None`: for every session of its front.
    pub session: Option<SessionUuid>,
    /// The JSON of the envelope.
    pub body: Arc<str>,
    /// When this instance began to publish it, if it did and hands it over now (not in a
    /// replay, nor from another instance).
    pub started: Option<Instant>,
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// The client saw every event up to this id (`Last-Event-ID`): send all kept ones after it.
    Id(i64),
    /// The client remembers nothing: send what no stream was given yet, after this id.
    Undelivered(i64),
}

/// One page of a replay.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// The stream's front.
    pub front: FrontBid,
    /// Its session; `None` for a front-scoped stream (every session's events).
    pub session: Option<SessionUuid>,
    /// Where the page starts.
    pub since: Since,
    /// Now: expired events are skipped.
    pub now: Timestamp,
    /// At most this many events.
    pub max_events: usize,
    /// At most this many bytes of bodies (at least one event, whatever its size).
    pub max_bytes: usize,
    /// The stream's first page. On Redis, the events for every front that the front's own
    /// stream does not hold yet are copied into it before the first page only.
    pub first: bool,
}

/// What a replay page read.
#[derive(Debug, Clone)]
pub struct ReplayPage {
    /// The events, in id order.
    pub events: Vec<StoredEvent>,
    /// Where the next page starts.
    pub next: Since,
    /// Nothing is left after this page.
    pub done: bool,
    /// The client's `Last-Event-ID` is beyond every id this store gave: the store was reset
    /// (or it is another server's id). The replay started over from what was not delivered,
    /// and the client must learn that events may be lost.
    pub reset: bool,
    /// Events after the cursor were trimmed from the store (the per-front cap): the replay
    /// goes on with what is left, and the client must learn that events were lost.
    pub lost: bool,
}

/// What a sweep removes: everything that expired by these times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Now: events and claims that expired by now go.
    pub now: Timestamp,
    /// Sessions idle since this time or earlier go, with the events waiting for them.
    pub idle: Timestamp,
    /// Fronts last active (or registered) at this time or earlier, without an active stream,
    /// go.
    pub front: Timestamp,
}

/// What an idempotency key of the server API already stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// Nothing: the caller holds the key now and publishes, then settles it.
    Claimed,
    /// The event published under that key, with its id.
    Published(i64),
    /// Another request holds the key and has not settled it yet.
    InProgress,
}

/// Why [`EventStore::disconnect`] did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectRefusal {
    /// The front is not registered.
    FrontNotRegistered,
    /// The session is unknown (never activated, or forgotten).
    SessionNotFound,
}

/// One session of a front as [`EventStore::presence`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPresence {
    /// The tab.
    pub session: SessionUuid,
    /// It has an active stream of its own.
    pub active: bool,
    /// Active: when its active stream was activated; idle: since when it is idle. `None` when
    /// the store does not know (a Redis session activated before the store recorded it).
    pub since: Option<Timestamp>,
}

/// A front's sessions: active ones first, then by `since`, latest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// At most the `max` asked for.
    pub sessions: Vec<SessionPresence>,
    /// The front has more sessions than were listed.
    pub truncated: bool,
}

impl Presence {
    /// Orders `sessions` (active first, then latest `since` first) and keeps at most `max`.
    pub(crate) fn from_unordered(mut sessions: Vec<SessionPresence>, max: usize) -> Self {
        sessions.sort_by(|a, b| {
            b.active
                .cmp(&a.active)
                .then_with(|| b.since.cmp(&a.since))
                .then_with(|| a.session.cmp(&b.session))
        });
        let truncated = sessions.len() > max;
        sessions.truncate(max);
        Self { sessions, truncated }
    }
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Events removed (expired, or waiting for a forgotten session).
    pub events: usize,
    /// Sessions forgotten.
    pub sessions: usize,
    /// Fronts deleted.
    pub fronts: usize,
}

/// What an engine tells the service that started it. Calls come in the order the store
/// committed them and must not block.
pub trait Feed: Send + Sync {
    /// A committed event. Returns how many local streams took it.
    fn event(&self, event: &StoredEvent) -> usize;
    /// A stream this instance holds was activated.
    fn activated(&self, stream: StreamUuid);
    /// A stream this instance holds must end: a newer one of its session replaced it, or the
    /// server API disconnected it (its client may come back with `Last-Event-ID`).
    fn replaced(&self, stream: StreamUuid);
    /// The fronts with streams on this instance (for catching up after a gap).
    fn local_fronts(&self) -> Vec<FrontBid>;
}

/// The event store: every operation is one transaction (one SQLite transaction, or one Redis
/// script).
pub trait EventStore: Send + Sync + fmt::Debug {
    /// Starts handing committed events and stream activations to `feed`. Called once, before
    /// any other operation of the service.
    fn start(&self, feed: Arc<dyn Feed>, node: NodeId) -> StoreFuture<'_, ()>;

    /// Ends background work (subscriptions, liveness) and marks this instance's streams gone.
    fn stop(&self) -> StoreFuture<'_, ()>;

    /// The back's identity: `fresh` if none was kept yet (the first caller wins), else the kept
    /// one.
    fn back_identity(&self, fresh: BackRecord) -> StoreFuture<'_, BackRecord>;

    /// Registers a front, or finds it again when UUID and key match.
    fn register(
        &self,
        front: FrontUuid,
        key: PublicKey,
        now: Timestamp,
    ) -> StoreFuture<'_, Registration>;

    /// A registered front by UUID.
    fn front(&self, front: FrontUuid) -> StoreFuture<'_, Option<FrontRow>>;

    /// Records a stream that waits for its activation.
    fn open_stream(&self, stream: OpenStream) -> StoreFuture<'_, ()>;

    /// Makes `stream` its session's active stream (the session is known from now on and not
    /// idle) and tells the instance that holds it, and the one holding the stream it replaces.
    /// Refused if the front has `max_active` active streams and this one replaces none. The
    /// front counts as active at `now` (see [`EventStore::sweep`]).
    fn activate_stream(
        &self,
        front: FrontUuid,
        stream: StreamUuid,
        max_active: usize,
        now: Timestamp,
    ) -> StoreFuture<'_, Result<Activation, ActivateRefusal>>;

    /// Forgets a stream that ended; if it was its session's active stream, the session is idle
    /// from `now`.
    fn close_stream(
        &self,
        front: FrontBid,
        session: SessionUuid,
        stream: StreamUuid,
        now: Timestamp,
    ) -> StoreFuture<'_, ()>;

    /// Ends the active streams of `front`, or of its `session` only, on whichever instance
    /// holds them (told as for a replaced stream): the store forgets them at once, so their
    /// sessions are idle from `now`, and their clients may connect again. Returns how many
    /// streams it ended. A tab that another tab's front-scoped stream serves has no stream of
    /// its own: ending its session ends none.
    fn disconnect(
        &self,
        front: FrontUuid,
        session: Option<SessionUuid>,
        now: Timestamp,
    ) -> StoreFuture<'_, Result<usize, DisconnectRefusal>>;

    /// The sessions of `front` the store knows, with whether each has an active stream and
    /// since when (at most `max`, see [`Presence`]); `None` if the front is not registered.
    fn presence(&self, front: FrontUuid, max: usize) -> StoreFuture<'_, Option<Presence>>;

    /// Whether `session` of `front` may send direct events now. A session served by another
    /// tab's front-scoped stream becomes known, idle since `now`.
    fn served(
        &self,
        front: FrontUuid,
        session: SessionUuid,
        now: Timestamp,
    ) -> StoreFuture<'_, Served>;

    /// Keeps an event, gives it the next id and hands it to every instance's feed. An event
    /// for a session that is unknown becomes known (idle) if a front-scoped stream of its front
    /// is active, and is refused otherwise.
    fn publish(&self, event: NewEvent) -> StoreFuture<'_, Result<i64, PublishRefusal>>;

    /// Reads a page of kept, unexpired events; in [`Since::Undelivered`] mode those read are
    /// marked delivered.
    fn replay(&self, request: ReplayRequest) -> StoreFuture<'_, ReplayPage>;

    /// Claims a direct event for handling: `false` if it was claimed before.
    fn claim_direct(
        &self,
        front: FrontBid,
        event: EventUuid,
        keep_until: Timestamp,
        now: Timestamp,
    ) -> StoreFuture<'_, bool>;

    /// Gives a claim back after its handler failed, so that the front may send it again.
    fn release_direct(&self, front: FrontBid, event: EventUuid) -> StoreFuture<'_, ()>;

    /// Claims `key` of `front` for a publish of the server API, until `keep_until`, unless a
    /// claim is kept for it (then says what it stands for). Expired claims count as absent.
    fn claim_publish(
        &self,
        front: FrontBid,
        key: String,
        keep_until: Timestamp,
        now: Timestamp,
    ) -> StoreFuture<'_, IdempotencyClaim>;

    /// Settles a claim of [`EventStore::claim_publish`]: `Some(id)` keeps it until
    /// `keep_until` as standing for event `id`; `None` (the publish failed) gives it back.
    fn settle_publish(
        &self,
        front: FrontBid,
        key: String,
        id: Option<i64>,
        keep_until: Timestamp,
        now: Timestamp,
    ) -> StoreFuture<'_, ()>;

    /// Removes expired events, sessions idle since `idle_cutoff` or earlier with the events
    /// still waiting for them, direct-event and publish claims past their keeping time, and fronts
    /// without an active stream whose last activation (or registration) was at `front_cutoff` or
    /// earlier.
    fn sweep(&self, cutoffs: Cutoffs) -> StoreFuture<'_, Swept>;

    /// Whether the store answers now (for readiness).
    fn ping(&self) -> StoreFuture<'_, ()>;
}

/// Bodies of the events of a page, capped: at least one event, then while under `max_bytes`.
pub(crate) fn cap_page(events: &mut Vec<StoredEvent>, max_bytes: usize) -> bool {
    let mut bytes = 0;
    let mut keep = 0;
    for event in events.iter() {
        if keep > 0 && bytes + event.body.len() > max_bytes {
            break;
        }
        bytes += event.body.len();
        keep += 1;
    }
    let cut = keep < events.len();
    events.truncate(keep);
    cut
}
