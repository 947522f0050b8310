//! The event service's tables in the embedded SQLite store: fronts with their keys, sessions,
//! kept events and the direct events already handled.
//!
//! Event ids (the SSE `id:`) come from one sequence for all events, so they increase for every
//! front; a front sees gaps, never a step back. One sequence lets an event for every front be
//! stored once.
//!
//! Every function here is synchronous and short; callers run it through [`Db::with`], never
//! across an `.await`. Publishing runs its statements inside the caller's transaction (see
//! `hub.rs`), because the insert and the hand-over to live streams must happen under one lock
//! to keep every front's events in id order.

use protocol::messages::FrontBid;
use protocol::{EventUuid, FrontUuid, PublicKey, SessionUuid};
use protocol::{StreamUuid, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use crate::db::Db;

const SCHEMA: &str = "
-- `bid` is the frontBid: AUTOINCREMENT so that a number is never given to two fronts.
CREATE TABLE IF NOT EXISTS ev_fronts (
    bid            INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid           TEXT NOT NULL UNIQUE,
    public_key     BLOB NOT NULL,
    registered_at  INTEGER NOT NULL
);
-- A session is known from its first activation. `idle_since` is NULL while `active_stream`
-- is open; the session is forgotten once it has been idle for the session TTL.
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
";

/// A registered front as stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrontRow {
    pub(crate) bid: FrontBid,
    pub(crate) key: PublicKey,
}

/// The outcome of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registration {
    /// New, or the same UUID with the same key again: its `frontBid`.
    Registered(FrontBid),
    /// The UUID is registered with another key.
    Conflict,
}

/// An event read back for replay.
#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    pub(crate) id: i64,
    pub(crate) body: String,
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Since {
    /// The client saw every event up to this id (`Last-Event-ID`): send all kept ones after it.
    Id(i64),
    /// The client remembers nothing: send what no stream was given yet, after this id.
    Undelivered(i64),
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Swept {
    pub(crate) events: usize,
    pub(crate) sessions: usize,
}

/// The event tables on the shared database.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    db: Db,
}

impl Store {
    /// Creates the tables if needed. Streams do not survive a restart, so every session that
    /// was streaming when the server stopped starts its idle time now.
    pub(crate) fn open(db: Db, now: Timestamp) -> rusqlite::Result<Self> {
        db.with(|conn| {
            // The connection is shared by the services; rusqlite's default of 16 cached
            // statements is fewer than they use together, and re-parsing costs every request.
            conn.set_prepared_statement_cache_capacity(128);
            conn.execute_batch(SCHEMA)?;
            conn.execute(
                "UPDATE ev_sessions SET idle_since = ?1, active_stream = NULL
                 WHERE idle_since IS NULL",
                [now.millis()],
            )
        })?;
        Ok(Self { db })
    }

    /// The shared database, for statements that must run in one transaction with others.
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Registers a front, or finds it again when UUID and key match.
    pub(crate) fn register(
        &self,
        uuid: FrontUuid,
        key: &PublicKey,
        now: Timestamp,
    ) -> rusqlite::Result<Registration> {
        self.db.with(|conn| {
            let tx = conn.transaction()?;
            let found = front(&tx, uuid)?;
            let outcome = match found {
                Some(row) if row.key == *key => Registration::Registered(row.bid),
                Some(_) => Registration::Conflict,
                None => {
                    tx.prepare_cached(
                        "INSERT INTO ev_fronts (uuid, public_key, registered_at) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![uuid.to_string(), key.as_bytes().as_slice(), now.millis()])?;
                    Registration::Registered(FrontBid(tx.last_insert_rowid()))
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
    }

    /// A registered front by UUID.
    pub(crate) fn front(&self, uuid: FrontUuid) -> rusqlite::Result<Option<FrontRow>> {
        self.db.with(|conn| front(conn, uuid))
    }

    /// Records that the session's stream `stream` ended at `now`. A stream that was already
    /// replaced by a newer one changes nothing.
    pub(crate) fn session_idle(
        &self,
        front: FrontBid,
        session: SessionUuid,
        stream: StreamUuid,
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        self.db.with(|conn| {
            conn.prepare_cached(
                "UPDATE ev_sessions SET active_stream = NULL, idle_since = ?4
                 WHERE front_bid = ?1 AND session_uuid = ?2 AND active_stream = ?3",
            )?
            .execute(params![front.0, session.to_string(), stream.to_string(), now.millis()])
            .map(drop)
        })
    }

    /// Removes expired events, sessions idle since before `idle_cutoff` with the events still
    /// waiting for them, and direct-event records past their keeping time.
    pub(crate) fn sweep(&self, now: Timestamp, idle_cutoff: Timestamp) -> rusqlite::Result<Swept> {
        self.db.with(|conn| {
            let tx = conn.transaction()?;
            let mut events =
                tx.execute("DELETE FROM ev_events WHERE expires_at <= ?1", [now.millis()])?;
            events += tx.execute(
                "DELETE FROM ev_events WHERE session_uuid IS NOT NULL AND EXISTS (
                     SELECT 1 FROM ev_sessions s
                     WHERE s.front_bid = ev_events.front_bid
                       AND s.session_uuid = ev_events.session_uuid
                       AND s.idle_since IS NOT NULL AND s.idle_since <= ?1)",
                [idle_cutoff.millis()],
            )?;
            let sessions = tx.execute(
                "DELETE FROM ev_sessions WHERE idle_since IS NOT NULL AND idle_since <= ?1",
                [idle_cutoff.millis()],
            )?;
            tx.execute("DELETE FROM ev_direct_seen WHERE keep_until <= ?1", [now.millis()])?;
            tx.commit()?;
            Ok(Swept { events, sessions })
        })
    }

    /// Claims a direct event for handling: `false` if it was claimed before.
    pub(crate) fn claim_direct(
        &self,
        front: FrontBid,
        uuid: EventUuid,
        keep_until: Timestamp,
    ) -> rusqlite::Result<bool> {
        self.db.with(|conn| {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO ev_direct_seen (front_bid, event_uuid, keep_until)
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![front.0, uuid.to_string(), keep_until.millis()])
            .map(|inserted| inserted == 1)
        })
    }

    /// Gives a claim back after its handler failed, so that the front may send it again.
    pub(crate) fn release_direct(&self, front: FrontBid, uuid: EventUuid) -> rusqlite::Result<()> {
        self.db.with(|conn| {
            conn.execute(
                "DELETE FROM ev_direct_seen WHERE front_bid = ?1 AND event_uuid = ?2",
                params![front.0, uuid.to_string()],
            )
            .map(drop)
        })
    }
}

/// A registered front by UUID, on an open connection or transaction.
pub(crate) fn front(conn: &Connection, uuid: FrontUuid) -> rusqlite::Result<Option<FrontRow>> {
    let row = conn
        .prepare_cached("SELECT bid, public_key FROM ev_fronts WHERE uuid = ?1")?
        .query_row([uuid.to_string()], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .optional()?;
    Ok(row.and_then(|(bid, key)| {
        let key = <[u8; 32]>::try_from(key.as_slice()).ok()?;
        Some(FrontRow { bid: FrontBid(bid), key: PublicKey::from_bytes(key) })
    }))
}

/// Records that a session without a stream of its own is served by its front's front-scoped
/// stream (another tab holds it): the session is known from now on and idle since `now`, so it
/// is forgotten a session TTL after the last time it was seen this way.
pub(crate) fn session_seen(
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

/// Records that `stream` is now the session's active stream (creating the session).
pub(crate) fn session_activated(
    conn: &Connection,
    front: FrontBid,
    session: SessionUuid,
    stream: StreamUuid,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO ev_sessions (front_bid, session_uuid, active_stream, idle_since)
         VALUES (?1, ?2, ?3, NULL)
         ON CONFLICT (front_bid, session_uuid)
         DO UPDATE SET active_stream = excluded.active_stream, idle_since = NULL",
    )?
    .execute(params![front.0, session.to_string(), stream.to_string()])
    .map(drop)
}

/// Up to `limit` kept, unexpired events for `session` (its own, its front's and those for
/// every front; with `session` `None`, those of every session of the front too), in id order
/// from `since`, marked delivered as they are read.
///
/// A `Last-Event-ID` beyond the last id ever given cannot be from this store (it was reset
/// and the front registered again): `since` becomes [`Since::Undelivered`], or the client
/// would skip every new event up to that id. Events for every front are replayed to
/// streams that resume after a `Last-Event-ID` only: they carry no delivery mark per front.
pub(crate) fn backlog(
    conn: &Connection,
    front: FrontBid,
    session: Option<SessionUuid>,
    since: &mut Since,
    now: Timestamp,
    limit: usize,
) -> rusqlite::Result<Vec<StoredEvent>> {
    let session = session.map(|s| s.to_string());
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // No explicit transaction: most streams have nothing to replay, and then this is one read.
    // The caller holds the database lock, which keeps it consistent with publishing.
    if let Since::Id(seen) = *since
        && seen > last_event_id(conn)?
    {
        *since = Since::Undelivered(0);
    }
    let (sql, after) = match *since {
        Since::Id(id) => (
            "SELECT id, body FROM ev_events
             WHERE front_bid IN (0, ?1) AND id > ?2 AND expires_at > ?3
               AND (?4 IS NULL OR session_uuid IS NULL OR session_uuid = ?4)
             ORDER BY id LIMIT ?5",
            id,
        ),
        Since::Undelivered(id) => (
            "SELECT id, body FROM ev_events
             WHERE front_bid = ?1 AND id > ?2 AND expires_at > ?3
               AND (?4 IS NULL OR session_uuid IS NULL OR session_uuid = ?4) AND delivered = 0
             ORDER BY id LIMIT ?5",
            id,
        ),
    };
    let events = conn
        .prepare_cached(sql)?
        .query_map(params![front.0, after, now.millis(), session, limit], |r| {
            Ok(StoredEvent { id: r.get(0)?, body: r.get(1)? })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        conn.prepare_cached(
            "UPDATE ev_events SET delivered = 1
             WHERE front_bid = ?1 AND id BETWEEN ?2 AND ?3 AND delivered = 0
               AND (?4 IS NULL OR session_uuid IS NULL OR session_uuid = ?4)",
        )?
        .execute(params![front.0, first.id, last.id, session])?;
    }
    Ok(events)
}

/// Whether the session is known (activated once and not forgotten).
pub(crate) fn session_known(
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
pub(crate) fn last_event_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'ev_events'")?
        .query_row([], |r| r.get(0))
        .optional()
        .map(Option::unwrap_or_default)
}

/// A new event to keep.
#[derive(Debug)]
pub(crate) struct NewEvent<'a> {
    /// `None`: for every front.
    pub(crate) front: Option<FrontBid>,
    pub(crate) session: Option<SessionUuid>,
    pub(crate) expires_at: Timestamp,
    pub(crate) delivered: bool,
    pub(crate) body: &'a str,
}

/// Keeps an event and returns its id. Run it in the transaction that hands it over.
pub(crate) fn insert_event(conn: &Connection, event: &NewEvent<'_>) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO ev_events (front_bid, session_uuid, expires_at, delivered, body)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        event.front.map_or(0, |f| f.0),
        event.session.map(|s| s.to_string()),
        event.expires_at.millis(),
        event.delivered,
        event.body
    ])?;
    Ok(conn.last_insert_rowid())
}
