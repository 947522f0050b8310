//! The embedded engine: the event store in SQLite, for one instance.
//!
//! The engine has a connection of its own (the token service has another), and every
//! operation runs on Tokio's blocking pool, never on an async worker: a slow statement or an
//! fsync then holds up only the requests that wait for this store, not the runtime. One
//! connection serialises the operations anyway, so they go into one queue, drained by one
//! blocking task at a time (`spawn_blocking` when the queue was idle; the task ends when it is
//! empty). That replaced one blocking task per operation, all contending for the connection's
//! lock, where every store call of a handshake paid a thread wake-up and a lock hand-off
//! (`loadgen peer`'s handshake figure); under load the draining task just takes the next one.
//!
//! The draining task commits in groups: it takes every operation queued (up to [`MAX_BATCH`]),
//! runs them in one transaction, each inside a savepoint of its own (an operation that fails
//! rolls back alone), commits once, and only then answers them. Under load a handshake's
//! registration and activation no longer pay a commit each, with its whole-page WAL writes
//! (a fifth of the server's CPU per handshake in `perf`, before): operations queued together
//! share one commit and the pages they touch in common. What an operation does outside the
//! database once it is durable (handing an event or an activation to the feed) waits for the
//! commit too, so nothing is delivered that a failed commit took back. Publishing hands each
//! event to the feed in the order of the ids, on the one task that gives them: every stream
//! sees its front's events in id order. The mark that an event was handed to a stream
//! (`delivered`) is written with the next group, or on its own once the queue is empty, rather
//! than in a commit of its own.
//!
//! Open streams live in memory beside the connection (one instance holds them all); sessions,
//! fronts, events and direct-event claims live in the database and survive a restart.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use protocol::messages::FrontBid;
use protocol::{BackUuid, EventUuid, FrontUuid, PublicKey, SessionUuid, StreamUuid, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    ActivateRefusal, Activation, BackRecord, Cutoffs, DisconnectRefusal, EventStore, Feed,
    FrontRow, IdempotencyClaim, NewEvent, NodeId, OpenStream, Presence, PublishRefusal,
    Registration, ReplayPage, ReplayRequest, Served, SessionPresence, Since, StoreError,
    StoreFuture, StoredEvent, Swept, cap_page,
};
use crate::db::Db;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ev_identity (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    back_uuid   TEXT NOT NULL,
    secret_key  BLOB NOT NULL
);
-- `bid` is the frontBid: AUTOINCREMENT so that a number is never given to two fronts.
CREATE TABLE IF NOT EXISTS ev_fronts (
    bid            INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid           TEXT NOT NULL UNIQUE,
    public_key     BLOB NOT NULL,
    registered_at  INTEGER NOT NULL
);
-- A session is known from its first activation. `idle_since` is NULL while `active_stream`
-- is open; the session is forgotten once it has been idle for the session TTL.
-- `active_since` (added later, see `SqliteEngine::on`): when `active_stream` was activated.
CREATE TABLE IF NOT EXISTS ev_sessions (
    front_bid      INTEGER NOT NULL REFERENCES ev_fronts(bid),
    session_uuid   TEXT NOT NULL,
    active_stream  TEXT,
    idle_since     INTEGER,
    PRIMARY KEY (front_bid, session_uuid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ev_sessions_idle ON ev_sessions (idle_since)
    WHERE idle_since IS NOT NULL;
-- Events kept for replay. `id`: the SSE id, AUTOINCREMENT so that it never goes back, even
-- after the newest events were deleted. `front_bid` 0: for every front. `session_uuid` NULL:
-- for every session of the front. `body`: the JSON of the `{data, meta}` envelope as sent.
-- `delivered`: handed to at least one stream.
CREATE TABLE IF NOT EXISTS ev_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    front_bid     INTEGER NOT NULL,
    session_uuid  TEXT,
    expires_at    INTEGER NOT NULL,
    delivered     INTEGER NOT NULL DEFAULT 0,
    body          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ev_events_front ON ev_events (front_bid, id);
CREATE INDEX IF NOT EXISTS ev_events_expiry ON ev_events (expires_at);
-- Direct events already handled, so a resent one is not handled twice.
CREATE TABLE IF NOT EXISTS ev_direct_seen (
    front_bid   INTEGER NOT NULL,
    event_uuid  TEXT NOT NULL,
    keep_until  INTEGER NOT NULL,
    PRIMARY KEY (front_bid, event_uuid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ev_direct_seen_expiry ON ev_direct_seen (keep_until);
-- Idempotency keys of the server API's publishes: `event_id` NULL while the publish is under way.
CREATE TABLE IF NOT EXISTS ev_publish_keys (
    front_bid   INTEGER NOT NULL,
    key         TEXT NOT NULL,
    event_id    INTEGER,
    keep_until  INTEGER NOT NULL,
    PRIMARY KEY (front_bid, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ev_publish_keys_expiry ON ev_publish_keys (keep_until);
";

/// A stream this instance holds, as the store knows it.
#[derive(Debug, Clone)]
struct StreamRec {
    front: FrontBid,
    session: SessionUuid,
    front_scope: bool,
    active: bool,
}

/// Open streams, beside the connection and under the same lock.
#[derive(Default)]
struct Streams {
    open: HashMap<StreamUuid, StreamRec>,
    /// The active stream of each session.
    active: HashMap<(FrontBid, SessionUuid), StreamUuid>,
    /// How many active streams each front has (fronts with none are absent).
    active_per_front: HashMap<FrontBid, usize>,
    /// The active front-scoped streams of each front.
    front_scoped: HashMap<FrontBid, HashSet<StreamUuid>>,
    feed: Option<Arc<dyn Feed>>,
    node: Option<NodeId>,
    /// What the operation being run leaves for after its group's commit (see [`Then`]).
    then: Vec<Then>,
    /// Events handed to a stream whose `delivered` mark is not written yet.
    delivered: Vec<i64>,
}

/// Work an operation leaves for after its group is committed, in the order the operations ran;
/// dropped if the commit fails.
type Then = Box<dyn FnOnce(&mut Streams) + Send>;

/// The most operations committed together. A bound on how long the first one of a group waits
/// for its answer behind the others.
const MAX_BATCH: usize = 128;

struct Shared {
    db: Db,
    streams: Mutex<Streams>,
    /// Operations waiting for the connection, and whether a blocking task drains them.
    jobs: Mutex<Jobs>,
}

/// An operation on the connection, run inside its group's transaction. It returns its answer,
/// to be given once the group's commit succeeded (`Ok`) or failed.
type Job = Box<dyn FnOnce(&mut Connection, &mut Streams) -> Answer + Send>;

/// Gives an operation's answer, and runs what it left for after the commit if that succeeded.
type Answer = Box<dyn FnOnce(Result<(), StoreError>, &mut Streams) + Send>;

#[derive(Default)]
struct Jobs {
    queue: VecDeque<Job>,
    draining: bool,
}

impl Shared {
    fn streams(&self) -> MutexGuard<'_, Streams> {
        // Plain maps changed in single steps: a panic elsewhere cannot leave them half-changed.
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn jobs(&self) -> MutexGuard<'_, Jobs> {
        // A queue changed in single steps.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job`; starts a blocking task to drain the queue unless one does already.
    fn submit(self: &Arc<Self>, job: Job) {
        let start = {
            let mut jobs = self.jobs();
            jobs.queue.push_back(job);
            !std::mem::replace(&mut jobs.draining, true)
        };
        if start {
            let shared = self.clone();
            // Dropped unawaited: each job answers its caller itself.
            drop(tokio::task::spawn_blocking(move || shared.drain()));
        }
    }

    /// Runs the queued jobs, a group at a time, until the queue is empty; then writes the
    /// `delivered` marks still pending. A job that panics drops its answer, so its caller sees
    /// the store fail; the others still run.
    fn drain(&self) {
        loop {
            let group = self.next_group();
            if group.is_empty() {
                self.db.with(|conn| self.commit_group(conn, Vec::new()));
                let mut jobs = self.jobs();
                // A job queued after the take above, before `draining` is cleared, is ours.
                if jobs.queue.is_empty() {
                    jobs.draining = false;
                    return;
                }
                continue;
            }
            self.db.with(|conn| self.commit_group(conn, group));
        }
    }

    /// The next jobs to commit together: every one queued, up to [`MAX_BATCH`].
    fn next_group(&self) -> Vec<Job> {
        let mut jobs = self.jobs();
        let take = jobs.queue.len().min(MAX_BATCH);
        jobs.queue.drain(..take).collect()
    }

    /// Runs `group` in one transaction and answers each job after the commit. Also writes the
    /// pending `delivered` marks, first; with an empty group only those, if there are any.
    fn commit_group(&self, conn: &mut Connection, group: Vec<Job>) {
        let marks = std::mem::take(&mut self.streams().delivered);
        if group.is_empty() && marks.is_empty() {
            return;
        }
        // Without a transaction (it could not begin, or ended early) each job's savepoint
        // commits it alone, and it is answered at once.
        let mut open = begin(conn);
        if open {
            for id in &marks {
                if let Err(err) = mark_delivered(conn, *id) {
                    tracing::warn!(error = %err, "marking an event delivered failed");
                }
            }
        }
        let mut answers: Vec<Answer> = Vec::with_capacity(group.len());
        for job in group {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                job(conn, &mut self.streams())
            }));
            let Ok(answer) = ran else {
                tracing::warn!("an event store operation panicked");
                // Its writes are undone (if it panicked inside its savepoint) and what it left
                // for after the commit is dropped.
                let _ = conn.execute_batch("ROLLBACK TO op; RELEASE op");
                self.streams().then.clear();
                continue;
            };
            if !open {
                self.answer(vec![answer], Ok(()));
                continue;
            }
            answers.push(answer);
            if conn.is_autocommit() {
                // SQLite rolls a transaction back on some errors (a full disk, for one): what
                // ran in it is gone.
                open = false;
                self.answer(std::mem::take(&mut answers), Err(rolled_back()));
            }
        }
        let committed = if open {
            conn.execute_batch("COMMIT").map_err(|err| {
                let _ = conn.execute_batch("ROLLBACK");
                StoreError::from(err)
            })
        } else {
            Ok(())
        };
        if !open || committed.is_err() {
            // Written with a later group; until then, or if never, the event may be replayed
            // once more, which its id lets the client recognise.
            let mut streams = self.streams();
            let later = std::mem::replace(&mut streams.delivered, marks);
            streams.delivered.extend(later);
        }
        self.answer(answers, committed);
    }

    /// Gives `answers` in order, under the streams' lock.
    fn answer(&self, answers: Vec<Answer>, committed: Result<(), StoreError>) {
        if answers.is_empty() {
            return;
        }
        let mut streams = self.streams();
        for answer in answers {
            answer(committed.clone(), &mut streams);
        }
    }
}

/// Begins a group's transaction; false if it could not (the jobs then commit one by one).
fn begin(conn: &Connection) -> bool {
    match conn.execute_batch("BEGIN IMMEDIATE") {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(error = %err, "beginning a group of event store operations failed");
            false
        }
    }
}

fn rolled_back() -> StoreError {
    StoreError::Unavailable("the event store rolled back a group of operations".into())
}

/// Runs `f` inside a savepoint (a transaction of its own outside a group's): its writes are
/// released if it succeeds and rolled back if it fails.
fn savepoint<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.execute_batch("SAVEPOINT op")?;
    let result = f(conn);
    let end = if result.is_ok() { "RELEASE op" } else { "ROLLBACK TO op; RELEASE op" };
    let ended = conn.execute_batch(end);
    let value = result?;
    ended?;
    Ok(value)
}

/// Writes that event `id` was handed to a stream.
fn mark_delivered(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE ev_events SET delivered = 1 WHERE id = ?1")?.execute([id]).map(drop)
}

/// The embedded engine; cheap to clone.
#[derive(Clone)]
pub struct SqliteEngine {
    shared: Arc<Shared>,
}

impl fmt::Debug for SqliteEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SqliteEngine(..)")
    }
}

impl SqliteEngine {
    /// Opens (or creates) the store in the database file at `path`, on a connection of its own.
    /// Every session that was streaming when the server stopped starts its idle time at `now`.
    pub fn open(path: &Path, now: Timestamp) -> Result<Self, StoreError> {
        Self::on(Db::open(path)?, now)
    }

    /// A private in-memory store (tests).
    pub fn in_memory(now: Timestamp) -> Result<Self, StoreError> {
        Self::on(Db::in_memory()?, now)
    }

    fn on(db: Db, now: Timestamp) -> Result<Self, StoreError> {
        db.with(|conn| {
            conn.set_prepared_statement_cache_capacity(64);
            conn.execute_batch(SCHEMA)?;
            // Added after the first release: when the front last had a stream activated.
            let has_last_active = conn
                .prepare("SELECT 1 FROM pragma_table_info('ev_fronts') WHERE name = 'last_active'")?
                .exists([])?;
            if !has_last_active {
                conn.execute_batch("ALTER TABLE ev_fronts ADD COLUMN last_active INTEGER")?;
            }
            // Added with the server API's presence: when the active stream was activated.
            let has_active_since = conn
                .prepare(
                    "SELECT 1 FROM pragma_table_info('ev_sessions') WHERE name = 'active_since'",
                )?
                .exists([])?;
            if !has_active_since {
                conn.execute_batch("ALTER TABLE ev_sessions ADD COLUMN active_since INTEGER")?;
            }
            conn.execute(
                "UPDATE ev_sessions SET idle_since = ?1, active_stream = NULL
                 WHERE idle_since IS NULL",
                [now.millis()],
            )
        })?;
        let streams = Mutex::new(Streams::default());
        Ok(Self { shared: Arc::new(Shared { db, streams, jobs: Mutex::default() }) })
    }

    /// Runs `f` on the blocking pool with the connection and the open streams, inside a
    /// savepoint of its own in its group's transaction; answers once the group is committed.
    /// What `f` pushes to `Streams::then` runs after the commit, before the answer.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &mut Streams) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let shared = self.shared.clone();
        Box::pin(async move {
            let (answer, answered) = tokio::sync::oneshot::channel();
            let job: Job = Box::new(move |conn, streams| {
                let result = savepoint(conn, |conn| f(conn, streams));
                let then = std::mem::take(&mut streams.then);
                Box::new(move |committed, streams| {
                    let result = match (result, committed) {
                        (Ok(value), Ok(())) => {
                            for then in then {
                                then(streams);
                            }
                            Ok(value)
                        }
                        (Err(err), _) | (Ok(_), Err(err)) => Err(err),
                    };
                    let _ = answer.send(result);
                })
            });
            shared.submit(job);
            answered
                .await
                .map_err(|_| StoreError::Unavailable("an event store operation failed".into()))?
        })
    }

    /// Runs `f` on the open streams alone, here: for operations that touch no table.
    fn with_streams<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Streams) -> T,
    ) -> StoreFuture<'_, T> {
        let result = f(&mut self.shared.streams());
        Box::pin(async move { Ok(result) })
    }
}

impl EventStore for SqliteEngine {
    fn start(&self, feed: Arc<dyn Feed>, node: NodeId) -> StoreFuture<'_, ()> {
        let mut streams = self.shared.streams();
        streams.feed = Some(feed);
        streams.node = Some(node);
        Box::pin(async { Ok(()) })
    }

    fn stop(&self) -> StoreFuture<'_, ()> {
        self.shared.streams().feed = None;
        Box::pin(async { Ok(()) })
    }

    fn back_identity(&self, fresh: BackRecord) -> StoreFuture<'_, BackRecord> {
        self.run(move |conn, _| {
            // INSERT OR IGNORE, then read: whoever wrote first wins, and everyone reads it.
            conn.execute(
                "INSERT OR IGNORE INTO ev_identity (id, back_uuid, secret_key) VALUES (1, ?1, ?2)",
                params![fresh.uuid.to_string(), fresh.secret.as_slice()],
            )?;
            let (uuid, secret) = conn.query_row(
                "SELECT back_uuid, secret_key FROM ev_identity WHERE id = 1",
                [],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )?;
            let uuid: BackUuid =
                uuid.parse().map_err(|_| StoreError::Corrupt("ev_identity.back_uuid".into()))?;
            let secret = <[u8; 32]>::try_from(secret.as_slice())
                .map_err(|_| StoreError::Corrupt("ev_identity.secret_key".into()))?;
            Ok(BackRecord { uuid, secret })
        })
    }

    fn register(
        &self,
        uuid: FrontUuid,
        key: PublicKey,
        now: Timestamp,
    ) -> StoreFuture<'_, Registration> {
        self.run(move |conn, _| {
            let outcome = match front(conn, uuid)? {
                Some(row) if row.key == key => Registration::Registered(row.bid),
                Some(_) => Registration::Conflict,
                None => {
                    conn.prepare_cached(
                        "INSERT INTO ev_fronts (uuid, public_key, registered_at) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![uuid.to_string(), key.as_bytes().as_slice(), now.millis()])?;
                    Registration::Registered(FrontBid(conn.last_insert_rowid()))
                }
            };
            Ok(outcome)
        })
    }

    fn front(&self, uuid: FrontUuid) -> StoreFuture<'_, Option<FrontRow>> {
        self.run(move |conn, _| front(conn, uuid))
    }

    fn open_stream(&self, stream: OpenStream) -> StoreFuture<'_, ()> {
        // Open streams live in memory only: no trip through the store's queue.
        self.with_streams(move |streams| {
            let rec = StreamRec {
                front: stream.front.bid,
                session: stream.session,
                front_scope: stream.front_scope,
                active: false,
            };
            streams.open.insert(stream.stream, rec);
        })
    }

    fn activate_stream(
        &self,
        front_uuid: FrontUuid,
        stream: StreamUuid,
        max_active: usize,
        now: Timestamp,
    ) -> StoreFuture<'_, Result<Activation, ActivateRefusal>> {
        self.run(move |conn, streams| {
            let Some(row) = front(conn, front_uuid)? else {
                return Ok(Err(ActivateRefusal::FrontNotRegistered));
            };
            let node = streams.node.clone().unwrap_or_else(|| Arc::from("local"));
            let Some(rec) = streams.open.get_mut(&stream).filter(|rec| rec.front == row.bid) else {
                return Ok(Err(ActivateRefusal::NotFound));
            };
            if rec.active {
                return Ok(Err(ActivateRefusal::AlreadyActive));
            }
            let session = rec.session;
            let active = streams.active_per_front.get(&row.bid).copied().unwrap_or(0);
            if !streams.active.contains_key(&(row.bid, session)) && active >= max_active {
                return Ok(Err(ActivateRefusal::TooManyStreams(active)));
            }
            // One transaction: one commit (one WAL append) for both writes.
            session_activated(conn, row.bid, session, stream, now)?;
            conn.prepare_cached("UPDATE ev_fronts SET last_active = ?2 WHERE bid = ?1")?
                .execute(params![row.bid.0, now.millis()])?;
            let Some(rec) = streams.open.get_mut(&stream) else {
                return Ok(Err(ActivateRefusal::NotFound));
            };
            rec.active = true;
            let (session, front_scope) = (rec.session, rec.front_scope);
            if front_scope {
                streams.front_scoped.entry(row.bid).or_default().insert(stream);
            }
            let replaced = streams.active.insert((row.bid, session), stream);
            if replaced.is_none() {
                *streams.active_per_front.entry(row.bid).or_default() += 1;
            }
            let activation = Activation {
                front: row.bid,
                session,
                stream,
                node: node.clone(),
                replaced: replaced.filter(|old| *old != stream).map(|old| (old, node)),
            };
            let replaced = activation.replaced.as_ref().map(|(old, _)| *old);
            streams.then.push(Box::new(move |streams| {
                if let Some(feed) = &streams.feed {
                    feed.activated(stream);
                    if let Some(old) = replaced {
                        feed.replaced(old);
                    }
                }
            }));
            Ok(Ok(activation))
        })
    }

    fn close_stream(
        &self,
        front: FrontBid,
        session: SessionUuid,
        stream: StreamUuid,
        now: Timestamp,
    ) -> StoreFuture<'_, ()> {
        self.run(move |conn, streams| Ok(close(conn, streams, front, session, stream, now)?))
    }

    fn disconnect(
        &self,
        front_uuid: FrontUuid,
        session: Option<SessionUuid>,
        now: Timestamp,
    ) -> StoreFuture<'_, Result<usize, DisconnectRefusal>> {
        self.run(move |conn, streams| {
            let Some(row) = front(conn, front_uuid)? else {
                return Ok(Err(DisconnectRefusal::FrontNotRegistered));
            };
            let ending: Vec<(SessionUuid, StreamUuid)> = match session {
                Some(session) => {
                    if !session_known(conn, row.bid, session)? {
                        return Ok(Err(DisconnectRefusal::SessionNotFound));
                    }
                    let active = streams.active.get(&(row.bid, session));
                    active.map(|stream| (session, *stream)).into_iter().collect()
                }
                None => streams
                    .active
                    .iter()
                    .filter(|((bid, _), _)| *bid == row.bid)
                    .map(|((_, session), stream)| (*session, *stream))
                    .collect(),
            };
            for (session, stream) in &ending {
                close(conn, streams, row.bid, *session, *stream, now)?;
            }
            let ended: Vec<StreamUuid> = ending.iter().map(|(_, stream)| *stream).collect();
            streams.then.push(Box::new(move |streams| {
                if let Some(feed) = &streams.feed {
                    for stream in ended {
                        feed.replaced(stream);
                    }
                }
            }));
            Ok(Ok(ending.len()))
        })
    }

    fn presence(&self, front_uuid: FrontUuid, max: usize) -> StoreFuture<'_, Option<Presence>> {
        self.run(move |conn, _| {
            let Some(row) = front(conn, front_uuid)? else { return Ok(None) };
            let sessions = conn
                .prepare_cached(
                    "SELECT session_uuid, active_stream IS NOT NULL, active_since, idle_since
                     FROM ev_sessions WHERE front_bid = ?1",
                )?
                .query_map([row.bid.0], |r| {
                    let session: String = r.get(0)?;
                    let active: bool = r.get(1)?;
                    let since: Option<i64> = if active { r.get(2)? } else { r.get(3)? };
                    Ok((session, active, since))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let sessions = sessions
                .into_iter()
                .map(|(session, active, since)| {
                    let session = session.parse().map_err(|_| {
                        StoreError::Corrupt(format!(
                            "ev_sessions.session_uuid of front {}",
                            row.bid.0
                        ))
                    })?;
                    Ok(SessionPresence {
                        session,
                        active,
                        since: since.map(Timestamp::from_millis),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Some(Presence::from_unordered(sessions, max)))
        })
    }

    fn served(
        &self,
        front_uuid: FrontUuid,
        session: SessionUuid,
        now: Timestamp,
    ) -> StoreFuture<'_, Served> {
        self.run(move |conn, streams| {
            let Some(row) = front(conn, front_uuid)? else {
                return Ok(Served::FrontNotRegistered);
            };
            if streams.active.contains_key(&(row.bid, session)) {
                return Ok(Served::Own(row));
            }
            if streams.front_scoped.contains_key(&row.bid) {
                session_seen(conn, row.bid, session, now)?;
                return Ok(Served::Shared(row));
            }
            Ok(Served::Inactive)
        })
    }

    fn publish(&self, event: NewEvent) -> StoreFuture<'_, Result<i64, PublishRefusal>> {
        self.run(move |conn, streams| {
            if let (Some(front), Some(session)) = (event.front, event.session)
                && !session_known(conn, front, session)?
            {
                // A session no stream of its own ever served may still be a tab that another
                // tab's front-scoped stream serves: it becomes known.
                if !streams.front_scoped.contains_key(&front) {
                    return Ok(Err(PublishRefusal::SessionNotFound));
                }
                session_seen(conn, front, session, event.now)?;
            }
            conn.prepare_cached(
                "INSERT INTO ev_events (front_bid, session_uuid, expires_at, delivered, body)
                 VALUES (?1, ?2, ?3, 0, ?4)",
            )?
            .execute(params![
                event.front.map_or(0, |f| f.0),
                event.session.map(|s| s.to_string()),
                event.expires_at.millis(),
                event.body
            ])?;
            let id = conn.last_insert_rowid();
            let stored = StoredEvent {
                id,
                front: event.front,
                session: event.session,
                body: event.body.into(),
                started: Some(event.started),
            };
            // Handed over once committed, by the one task that gives the ids, in their order:
            // the next event cannot overtake it.
            streams.then.push(Box::new(move |streams| {
                if let Some(feed) = &streams.feed
                    && feed.event(&stored) > 0
                {
                    // "Delivered" means handed to a stream. If that stream then drops the frame
                    // (too slow), its client still gets it by reconnecting with `Last-Event-ID`.
                    streams.delivered.push(stored.id);
                }
            }));
            Ok(Ok(id))
        })
    }

    fn replay(&self, request: ReplayRequest) -> StoreFuture<'_, ReplayPage> {
        self.run(move |conn, _| replay(conn, &request))
    }

    fn claim_direct(
        &self,
        front: FrontBid,
        event: EventUuid,
        keep_until: Timestamp,
        _now: Timestamp,
    ) -> StoreFuture<'_, bool> {
        self.run(move |conn, _| {
            let inserted = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO ev_direct_seen (front_bid, event_uuid, keep_until)
                     VALUES (?1, ?2, ?3)",
                )?
                .execute(params![front.0, event.to_string(), keep_until.millis()])?;
            Ok(inserted == 1)
        })
    }

    fn release_direct(&self, front: FrontBid, event: EventUuid) -> StoreFuture<'_, ()> {
        self.run(move |conn, _| {
            conn.execute(
                "DELETE FROM ev_direct_seen WHERE front_bid = ?1 AND event_uuid = ?2",
                params![front.0, event.to_string()],
            )?;
            Ok(())
        })
    }

    fn claim_publish(
        &self,
        front: FrontBid,
        key: String,
        keep_until: Timestamp,
        now: Timestamp,
    ) -> StoreFuture<'_, IdempotencyClaim> {
        self.run(move |conn, _| {
            conn.execute(
                "DELETE FROM ev_publish_keys WHERE front_bid = ?1 AND key = ?2 AND keep_until <= ?3",
                params![front.0, key, now.millis()],
            )?;
            let kept: Option<Option<i64>> = conn
                .query_row(
                    "SELECT event_id FROM ev_publish_keys WHERE front_bid = ?1 AND key = ?2",
                    params![front.0, key],
                    |r| r.get(0),
                )
                .optional()?;
            let claim = match kept {
                Some(Some(id)) => IdempotencyClaim::Published(id),
                Some(None) => IdempotencyClaim::InProgress,
                None => {
                    conn.execute(
                        "INSERT INTO ev_publish_keys (front_bid, key, keep_until) VALUES (?1, ?2, ?3)",
                        params![front.0, key, keep_until.millis()],
                    )?;
                    IdempotencyClaim::Claimed
                }
            };
            Ok(claim)
        })
    }

    fn settle_publish(
        &self,
        front: FrontBid,
        key: String,
        id: Option<i64>,
        keep_until: Timestamp,
        _now: Timestamp,
    ) -> StoreFuture<'_, ()> {
        self.run(move |conn, _| {
            match id {
                Some(id) => conn.execute(
                    "INSERT INTO ev_publish_keys (front_bid, key, event_id, keep_until)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (front_bid, key)
                     DO UPDATE SET event_id = excluded.event_id, keep_until = excluded.keep_until",
                    params![front.0, key, id, keep_until.millis()],
                )?,
                None => conn.execute(
                    "DELETE FROM ev_publish_keys WHERE front_bid = ?1 AND key = ?2",
                    params![front.0, key],
                )?,
            };
            Ok(())
        })
    }

    fn sweep(&self, cutoffs: Cutoffs) -> StoreFuture<'_, Swept> {
        let Cutoffs { now, idle: idle_cutoff, front: front_cutoff } = cutoffs;
        self.run(move |conn, streams| {
            let mut events =
                conn.execute("DELETE FROM ev_events WHERE expires_at <= ?1", [now.millis()])?;
            events += conn.execute(
                "DELETE FROM ev_events WHERE session_uuid IS NOT NULL AND EXISTS (
                     SELECT 1 FROM ev_sessions s
                     WHERE s.front_bid = ev_events.front_bid
                       AND s.session_uuid = ev_events.session_uuid
                       AND s.idle_since IS NOT NULL AND s.idle_since <= ?1)",
                [idle_cutoff.millis()],
            )?;
            let sessions = conn.execute(
                "DELETE FROM ev_sessions WHERE idle_since IS NOT NULL AND idle_since <= ?1",
                [idle_cutoff.millis()],
            )?;
            conn.execute("DELETE FROM ev_direct_seen WHERE keep_until <= ?1", [now.millis()])?;
            // Fronts no stream was activated for since the cutoff, and none is active now.
            let idle_fronts: Vec<i64> = conn
                .prepare_cached(
                    "SELECT bid FROM ev_fronts WHERE coalesce(last_active, registered_at) <= ?1",
                )?
                .query_map([front_cutoff.millis()], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut fronts = 0;
            for bid in idle_fronts {
                if streams.active_per_front.contains_key(&FrontBid(bid)) {
                    continue;
                }
                for table in ["ev_sessions", "ev_events", "ev_direct_seen"] {
                    conn.execute(&format!("DELETE FROM {table} WHERE front_bid = ?1"), [bid])?;
                }
                fronts += conn.execute("DELETE FROM ev_fronts WHERE bid = ?1", [bid])?;
            }
            conn.execute("DELETE FROM ev_publish_keys WHERE keep_until <= ?1", [now.millis()])?;
            Ok(Swept { events, sessions, fronts })
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.run(|conn, _| {
            conn.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
    }
}

/// A registered front by UUID.
fn front(conn: &Connection, uuid: FrontUuid) -> Result<Option<FrontRow>, StoreError> {
    let row = conn
        .prepare_cached("SELECT bid, public_key FROM ev_fronts WHERE uuid = ?1")?
        .query_row([uuid.to_string()], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .optional()?;
    row.map(|(bid, key)| {
        let key = <[u8; 32]>::try_from(key.as_slice())
            .map_err(|_| StoreError::Corrupt(format!("ev_fronts.public_key of front {bid}")))?;
        Ok(FrontRow { bid: FrontBid(bid), key: PublicKey::from_bytes(key) })
    })
    .transpose()
}

/// Records that a session without a stream of its own is served by its front's front-scoped
/// stream (another tab holds it): the session is known from now on and idle since `now`, so it
/// is forgotten a session TTL after the last time it was seen this way.
fn session_seen(
    conn: &Connection,
    front: FrontBid,
    session: SessionUuid,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO ev_sessions (front_bid, session_uuid, active_stream, idle_since)
         VALUES (?1, ?2, NULL, ?3)
         ON CONFLICT (front_bid, session_uuid)
         DO UPDATE SET idle_since = excluded.idle_since WHERE active_stream IS NULL",
    )?
    .execute(params![front.0, session.to_string(), now.millis()])
    .map(drop)
}

/// Records that `stream` is now the session's active stream, since `now` (creating the
/// session).
fn session_activated(
    conn: &Connection,
    front: FrontBid,
    session: SessionUuid,
    stream: StreamUuid,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO ev_sessions (front_bid, session_uuid, active_stream, idle_since, active_since)
         VALUES (?1, ?2, ?3, NULL, ?4)
         ON CONFLICT (front_bid, session_uuid)
         DO UPDATE SET active_stream = excluded.active_stream, idle_since = NULL,
                       active_since = excluded.active_since",
    )?
    .execute(params![front.0, session.to_string(), stream.to_string(), now.millis()])
    .map(drop)
}

/// Forgets an open stream; if it was its session's active stream, the session is idle from
/// `now`.
fn close(
    conn: &Connection,
    streams: &mut Streams,
    front: FrontBid,
    session: SessionUuid,
    stream: StreamUuid,
    now: Timestamp,
) -> rusqlite::Result<()> {
    streams.open.remove(&stream);
    if let Some(scoped) = streams.front_scoped.get_mut(&front) {
        scoped.remove(&stream);
        if scoped.is_empty() {
            streams.front_scoped.remove(&front);
        }
    }
    if streams.active.get(&(front, session)) != Some(&stream) {
        return Ok(());
    }
    streams.active.remove(&(front, session));
    if let Some(count) = streams.active_per_front.get_mut(&front) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            streams.active_per_front.remove(&front);
        }
    }
    conn.prepare_cached(
        "UPDATE ev_sessions SET active_stream = NULL, idle_since = ?4
         WHERE front_bid = ?1 AND session_uuid = ?2 AND active_stream = ?3",
    )?
    .execute(params![front.0, session.to_string(), stream.to_string(), now.millis()])
    .map(drop)
}

/// Whether the session is known (activated once, or seen, and not forgotten).
fn session_known(
    conn: &Connection,
    front: FrontBid,
    session: SessionUuid,
) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM ev_sessions WHERE front_bid = ?1 AND session_uuid = ?2")?
        .query_row(params![front.0, session.to_string()], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
}

/// The last event id ever given (0 before the first event).
fn last_event_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'ev_events'")?
        .query_row([], |r| r.get(0))
        .optional()
        .map(Option::unwrap_or_default)
}

/// One replay page. Events for every front are replayed to streams that resume after a
/// `Last-Event-ID` only: they carry no delivery mark per front.
fn replay(conn: &Connection, request: &ReplayRequest) -> Result<ReplayPage, StoreError> {
    let mut since = request.since;
    let mut reset = false;
    if let Since::Id(seen) = since
        && seen > last_event_id(conn)?
    {
        since = Since::Undelivered(0);
        reset = true;
    }
    let session = request.session.map(|s| s.to_string());
    let limit = i64::try_from(request.max_events).unwrap_or(i64::MAX);
    let (sql, after) = match since {
        Since::Id(id) => (
            "SELECT id, front_bid, session_uuid, body FROM ev_events
             WHERE front_bid IN (0, ?1) AND id > ?2 AND expires_at > ?3
               AND (?4 IS NULL OR session_uuid IS NULL OR session_uuid = ?4)
             ORDER BY id LIMIT ?5",
            id,
        ),
        Since::Undelivered(id) => (
            "SELECT id, front_bid, session_uuid, body FROM ev_events
             WHERE front_bid = ?1 AND id > ?2 AND expires_at > ?3
               AND (?4 IS NULL OR session_uuid IS NULL OR session_uuid = ?4) AND delivered = 0
             ORDER BY id LIMIT ?5",
            id,
        ),
    };
    let mut events = conn
        .prepare_cached(sql)?
        .query_map(params![request.front.0, after, request.now.millis(), session, limit], |r| {
            let front: i64 = r.get(1)?;
            let session: Option<String> = r.get(2)?;
            Ok(StoredEvent {
                id: r.get(0)?,
                front: (front != 0).then_some(FrontBid(front)),
                session: session.and_then(|s| s.parse().ok()),
                body: Arc::from(r.get::<_, String>(3)?),
                started: None,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let full = events.len() >= request.max_events;
    let cut = cap_page(&mut events, request.max_bytes);
    if let (Since::Undelivered(_), Some(first), Some(last)) = (since, events.first(), events.last())
    {
        conn.prepare_cached(
            "UPDATE ev_events SET delivered = 1
             WHERE front_bid = ?1 AND id BETWEEN ?2 AND ?3 AND delivered = 0
               AND (?4 IS NULL OR session_uuid IS NULL OR session_uuid = ?4)",
        )?
        .execute(params![request.front.0, first.id, last.id, session])?;
    }
    let next = match (since, events.last()) {
        (Since::Id(_), Some(last)) => Since::Id(last.id),
        (Since::Undelivered(_), Some(last)) => Since::Undelivered(last.id),
        (since, None) => since,
    };
    // Nothing is trimmed here but by expiry, which is no loss: an event is worth delivering
    // only until it expires.
    Ok(ReplayPage { events, next, done: !full && !cut, reset, lost: false })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use protocol::KeyPair;

    use super::*;

    fn fronts(engine: &SqliteEngine) -> Vec<String> {
        engine.shared.db.with(|conn| {
            conn.prepare("SELECT uuid FROM ev_fronts ORDER BY bid")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        })
    }

    fn poll<T>(future: &mut Pin<Box<dyn Future<Output = T> + Send + '_>>) -> Poll<T> {
        future.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Group commit (issue 15's handshake cost): operations queued together run in one
    /// transaction, each in a savepoint; one that fails rolls back alone, and none is answered
    /// before the group is committed.
    #[test]
    fn a_failing_operation_rolls_back_alone_and_its_group_is_answered_after_one_commit() {
        let engine = SqliteEngine::in_memory(Timestamp::from_millis(0)).unwrap();
        // As if a draining task were busy: what is submitted now waits in the queue.
        engine.shared.jobs().draining = true;
        let (kept, failed, registered) =
            (FrontUuid::new_v4(), FrontUuid::new_v4(), FrontUuid::new_v4());
        let insert = |conn: &Connection, uuid: FrontUuid| {
            conn.execute(
                "INSERT INTO ev_fronts (uuid, public_key, registered_at) VALUES (?1, x'00', 0)",
                [uuid.to_string()],
            )
        };
        let mut first = engine.run(move |conn, _| {
            insert(conn, kept)?;
            Ok(conn.is_autocommit())
        });
        let mut second = engine.run(move |conn, _| -> Result<(), StoreError> {
            insert(conn, failed)?;
            Err(StoreError::Corrupt("the test's failing operation".into()))
        });
        let key = KeyPair::generate().public;
        let mut third = engine.register(registered, key, Timestamp::from_millis(0));
        assert!(poll(&mut first).is_pending() && poll(&mut second).is_pending());
        assert!(poll(&mut third).is_pending());
        assert_eq!(engine.shared.jobs().queue.len(), 3, "all three wait for the drain");

        engine.shared.drain();

        let Poll::Ready(Ok(autocommit)) = poll(&mut first) else { panic!("first not answered") };
        assert!(!autocommit, "the first ran inside the group's transaction");
        assert!(
            matches!(poll(&mut second), Poll::Ready(Err(StoreError::Corrupt(_)))),
            "the failing one answers its own error"
        );
        assert!(matches!(poll(&mut third), Poll::Ready(Ok(Registration::Registered(_)))));
        assert_eq!(
            fronts(&engine),
            [kept.to_string(), registered.to_string()],
            "the failed one's write is rolled back, the others' are committed"
        );
        let jobs = engine.shared.jobs();
        assert!(jobs.queue.is_empty() && !jobs.draining, "the drain ends with the queue empty");
    }

    /// At most `MAX_BATCH` operations share a commit: the first of a long queue is not kept
    /// waiting for all the others.
    #[test]
    fn a_group_takes_at_most_max_batch_operations() {
        let engine = SqliteEngine::in_memory(Timestamp::from_millis(0)).unwrap();
        engine.shared.jobs().draining = true;
        let mut futures: Vec<_> = (0..MAX_BATCH + 1)
            .map(|_| engine.run(|conn, _| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)))
            .collect();
        assert!(futures.iter_mut().all(|f| poll(f).is_pending()));
        let group = engine.shared.next_group();
        engine.shared.db.with(|conn| engine.shared.commit_group(conn, group));
        let answered = futures.iter_mut().filter_map(|f| poll(f).is_ready().then_some(())).count();
        assert_eq!(answered, MAX_BATCH, "one left for the next group");
    }
}
