//! The embedded store: sessions, the refresh-token index and one-time tokens in the server's
//! SQLite database ([`crate::db::Db`], shared with the event streams).
//!
//! Operations run on a thread of their own, not on the calling task. Two reasons:
//! - a tokio worker waiting for the database lock blocks its thread, so under load the
//!   signing of access tokens (the other half of a refresh's cost) would stop overlapping the
//!   SQL work;
//! - the thread takes every operation waiting in its queue (up to [`MAX_BATCH`]) into one
//!   transaction, each in its own savepoint, and commits once: group commit, so the cost of a
//!   commit is shared. Answers are sent only after the commit, so nobody sees a rotation that
//!   could still be lost; an operation that fails rolls back its savepoint alone.
//!
//! Expired rows are deleted by [`SqliteStore::sweep`], which the service runs every minute;
//! reads check expiry themselves, so a row the sweeper has not reached yet is never taken for
//! live.

use std::sync::mpsc;
use std::time::Duration;

use protocol::Timestamp;
use protocol::tokens::OneTimeTokenClaims;
use rusqlite::{Connection, OptionalExtension as _, Transaction, TransactionBehavior, params};

use super::claims_from_json;
use super::{
    EXPIRED_NOTICE, OneTimeTokenStore, REFRESH_HISTORY, Refresh, RefreshKey, SessionData,
    SessionStore, StoreError, StoreFuture, TokenHash,
};
use crate::db::Db;
use crate::tokens::clock::millis;

/// The version of the tables below. Older token tables (from development builds) are dropped
/// and made again: they hold only sessions, whose users log in again.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS token_session (
    key           TEXT PRIMARY KEY,
    sid           TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    sponsor_id    TEXT NOT NULL,
    subscriber_id TEXT NOT NULL,
    permissions   TEXT NOT NULL,     -- JSON array of strings
    valid_until   INTEGER NOT NULL,  -- ms since the epoch
    current_hash  BLOB NOT NULL,     -- SHA-256 of the current refresh token
    previous_hash BLOB,              -- SHA-256 of the token it replaced
    replaced_at   INTEGER,           -- when previous_hash was replaced, ms
    hashes        BLOB NOT NULL      -- the last REFRESH_HISTORY hashes, 32 bytes each
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS token_session_valid_until ON token_session (valid_until);

-- The refresh tokens in the sessions' histories, by hash. There is no index on `sid`: a session's
-- rows are found through its `hashes`, which saves a random index insert on every rotation.
CREATE TABLE IF NOT EXISTS token_refresh (
    hash        BLOB PRIMARY KEY,
    sid         TEXT NOT NULL,
    session_key TEXT NOT NULL,
    valid_until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS token_refresh_valid_until ON token_refresh (valid_until);

-- One-time tokens by the SHA-256 of the token.
CREATE TABLE IF NOT EXISTS token_one_time (
    hash       BLOB PRIMARY KEY,
    claims     TEXT NOT NULL,     -- OneTimeTokenClaims JSON
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS token_one_time_expires_at ON token_one_time (expires_at);
";

/// Opens the token tables, remaking them if they are of another version.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS token_schema (version INTEGER NOT NULL)")?;
    let version: Option<i64> =
        tx.query_row("SELECT max(version) FROM token_schema", [], |r| r.get(0))?;
    if version != Some(SCHEMA_VERSION) {
        tx.execute_batch(
            "DROP TABLE IF EXISTS token_session; DROP TABLE IF EXISTS token_refresh; \
             DROP TABLE IF EXISTS token_one_time; DELETE FROM token_schema;",
        )?;
        tx.execute("INSERT INTO token_schema (version) VALUES (?1)", params![SCHEMA_VERSION])?;
    }
    tx.execute_batch(SCHEMA)?;
    tx.commit()
}

/// Rows deleted per sweeper transaction: the lock is released between batches so requests
/// are not held up behind a large sweep.
const SWEEP_BATCH: i64 = 5_000;

/// Operations committed together at most. It bounds how long one batch holds the database
/// lock, which the event streams share.
const MAX_BATCH: usize = 64;

/// One operation for the store thread: it runs inside the batch's transaction and returns what
/// to do once the batch is committed (or failed to be).
type Job = Box<dyn FnOnce(&mut Transaction<'_>) -> Reply + Send>;
/// Sends an operation's result, or the commit's error.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

/// The embedded store; cheap to clone (clones share the thread).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Db,
    jobs: mpsc::Sender<Job>,
}

impl SqliteStore {
    /// Creates the tables if needed and starts the store thread, which ends when the last clone
    /// of the store is dropped.
    pub fn open(db: Db) -> Result<Self, StoreError> {
        db.with(migrate)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread_db = db.clone();
        std::thread::Builder::new()
            .name("token-store".to_owned())
            .spawn(move || serve(&thread_db, &queue))
            .map_err(|err| {
                StoreError::Unavailable(format!("cannot start the store thread: {err}"))
            })?;
        Ok(Self { db, jobs })
    }

    /// Runs `op` on the store thread, in a savepoint of the batch's transaction; resolves once
    /// the batch is committed.
    fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |tx| {
            let result = in_savepoint(tx, op);
            Box::new(move |committed| {
                let result = match committed {
                    Ok(()) => result,
                    // Nothing of the batch was written, whatever `op` said.
                    Err(err) => Err(StoreError::Unavailable(format!("commit failed: {err}"))),
                };
                let _ = answer.send(result);
            })
        });
        let queued = self.jobs.send(job);
        Box::pin(async move {
            queued
                .map_err(|_| StoreError::Unavailable("the store thread has stopped".to_owned()))?;
            answered.await.map_err(|_| {
                StoreError::Unavailable("the store thread dropped the operation".to_owned())
            })?
        })
    }

    /// Deletes sessions past `validUntil`, index entries past their notice period and
    /// one-time tokens past theirs. Returns the number of rows deleted.
    pub fn sweep(&self, now: Timestamp) -> Result<usize, StoreError> {
        let now = now.millis();
        let notice_end = now.saturating_sub(millis(EXPIRED_NOTICE));
        let statements = [
            (
                "DELETE FROM token_session WHERE key IN \
                 (SELECT key FROM token_session WHERE valid_until <= ?1 LIMIT ?2)",
                now,
            ),
            (
                "DELETE FROM token_refresh WHERE hash IN \
                 (SELECT hash FROM token_refresh WHERE valid_until <= ?1 LIMIT ?2)",
                notice_end,
            ),
            (
                "DELETE FROM token_one_time WHERE hash IN \
                 (SELECT hash FROM token_one_time WHERE expires_at <= ?1 LIMIT ?2)",
                now,
            ),
        ];
        let mut total = 0;
        for (sql, before) in statements {
            loop {
                let n = self.db.with(|conn| conn.execute(sql, params![before, SWEEP_BATCH]))?;
                total += n;
                if i64::try_from(n).unwrap_or(0) < SWEEP_BATCH {
                    break;
                }
            }
        }
        Ok(total)
    }
}

/// The store thread: takes what is queued, runs it in one transaction, commits, answers.
fn serve(db: &Db, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = db.with(|conn| {
            // If not even a transaction can be begun, the jobs are dropped unrun, and their
            // callers hear that the operation was dropped.
            let mut tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|err| err.to_string())?;
            let replies: Vec<Reply> = batch.drain(..).map(|job| job(&mut tx)).collect();
            let committed = tx.commit().map_err(|err| err.to_string());
            Ok::<_, String>((replies, committed))
        });
        // Answers go out after the lock is released.
        match outcome {
            Ok((replies, committed)) => {
                for reply in replies {
                    reply(committed.clone());
                }
            }
            Err(err) => tracing::error!(error = %err, "token store: cannot begin a transaction"),
        }
    }
}

fn in_savepoint<T>(
    tx: &mut Transaction<'_>,
    op: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let savepoint = tx.savepoint()?;
    let result = op(&savepoint)?;
    savepoint.commit()?;
    Ok(result)
}

fn insert_session(
    conn: &Connection,
    session: &SessionData,
    token: TokenHash,
) -> Result<(), StoreError> {
    let key = session.key();
    // A new login under the same key ends the old session and its tokens.
    delete_session(conn, &key, None)?;
    let sid = protocol::ids::random_uuid().to_string();
    let permissions = serde_json::to_string(&session.permissions)
        .map_err(|err| StoreError::Corrupt(err.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO token_session (key, sid, user_id, sponsor_id, subscriber_id, permissions, \
         valid_until, current_hash, hashes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
    )?
    .execute(params![
        key,
        sid,
        session.user_id,
        session.sponsor_id,
        session.subscriber_id,
        permissions,
        session.valid_until.millis(),
        token.as_bytes(),
    ])?;
    insert_index(conn, token, &sid, &key, session.valid_until.millis())?;
    Ok(())
}

fn insert_index(
    conn: &Connection,
    token: TokenHash,
    sid: &str,
    key: &str,
    valid_until: i64,
) -> Result<(), StoreError> {
    // `OR REPLACE`: a hash can only repeat if a token was reused as "next", which 512 random
    // bits rule out; if it ever happens, the newest owner wins.
    conn.prepare_cached(
        "INSERT OR REPLACE INTO token_refresh (hash, sid, session_key, valid_until) \
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![token.as_bytes(), sid, key, valid_until])?;
    Ok(())
}

/// Deletes the session under `key` (only if its sid is `sid`, when given) and every index
/// entry of it.
fn delete_session(conn: &Connection, key: &str, sid: Option<&str>) -> Result<bool, StoreError> {
    let current: Option<(String, Vec<u8>)> = conn
        .prepare_cached("SELECT sid, hashes FROM token_session WHERE key = ?1")?
        .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((current, hashes)) = current else { return Ok(false) };
    if sid.is_some_and(|sid| sid != current) {
        return Ok(false);
    }
    conn.prepare_cached("DELETE FROM token_session WHERE key = ?1")?.execute(params![key])?;
    delete_index(conn, &hashes)?;
    Ok(true)
}

/// Deletes the index entries of `hashes` (32 bytes each).
fn delete_index(conn: &Connection, hashes: &[u8]) -> Result<(), StoreError> {
    let mut delete = conn.prepare_cached("DELETE FROM token_refresh WHERE hash = ?1")?;
    for hash in hashes.chunks_exact(32) {
        delete.execute(params![hash])?;
    }
    Ok(())
}

/// A session row.
struct Row {
    sid: String,
    data: SessionData,
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
    replaced_at: Option<i64>,
    hashes: Vec<u8>,
}

fn read_session(conn: &Connection, key: &str) -> Result<Option<Row>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT sid, user_id, sponsor_id, subscriber_id, permissions, valid_until, \
             current_hash, previous_hash, replaced_at, hashes FROM token_session WHERE key = ?1",
        )?
        .query_row(params![key], |r| {
            let row = Row {
                sid: r.get(0)?,
                data: SessionData {
                    user_id: r.get(1)?,
                    sponsor_id: r.get(2)?,
                    subscriber_id: r.get(3)?,
                    permissions: Vec::new(),
                    valid_until: Timestamp::from_millis(r.get(5)?),
                },
                current: r.get(6)?,
                previous: r.get(7)?,
                replaced_at: r.get(8)?,
                hashes: r.get(9)?,
            };
            Ok((row, r.get::<_, String>(4)?))
        })
        .optional()?;
    let Some((mut row, permissions)) = row else { return Ok(None) };
    row.data.permissions = serde_json::from_str(&permissions)
        .map_err(|err| StoreError::Corrupt(format!("permissions of {key}: {err}")))?;
    Ok(Some(row))
}

fn refresh_in(
    conn: &Connection,
    presented: TokenHash,
    next: TokenHash,
    now: i64,
    grace: i64,
) -> Result<Refresh, StoreError> {
    let index: Option<(String, String, i64)> = conn
        .prepare_cached("SELECT sid, session_key, valid_until FROM token_refresh WHERE hash = ?1")?
        .query_row(params![presented.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((sid, key, index_valid_until)) = index else { return Ok(Refresh::Unknown) };
    let row = match read_session(conn, &key)? {
        Some(row) if row.sid == sid => row,
        // The session the token belonged to is gone (expired and swept, logged out, revoked,
        // or replaced by a new login under the same key).
        _ => {
            return Ok(if index_valid_until <= now { Refresh::Expired } else { Refresh::Unknown });
        }
    };
    if row.data.valid_until.millis() <= now {
        // Only the session row goes: the index entries stay for the notice period, so the
        // next attempt also hears "expired".
        conn.prepare_cached("DELETE FROM token_session WHERE key = ?1")?.execute(params![key])?;
        return Ok(Refresh::Expired);
    }
    if row.current.as_slice() == presented.as_bytes() {
        let mut hashes = row.hashes;
        hashes.extend_from_slice(next.as_bytes());
        let keep = REFRESH_HISTORY * 32;
        if hashes.len() > keep {
            let dropped: Vec<u8> = hashes.drain(..hashes.len() - keep).collect();
            delete_index(conn, &dropped)?;
        }
        conn.prepare_cached(
            "UPDATE token_session SET previous_hash = current_hash, replaced_at = ?2, \
             current_hash = ?3, hashes = ?4 WHERE key = ?1",
        )?
        .execute(params![key, now, next.as_bytes(), hashes])?;
        insert_index(conn, next, &row.sid, &key, row.data.valid_until.millis())?;
        return Ok(Refresh::Rotated(row.data));
    }
    let in_grace = row.previous.as_deref() == Some(presented.as_bytes().as_slice())
        && row.replaced_at.is_some_and(|at| now.saturating_sub(at) <= grace);
    if in_grace {
        return Ok(Refresh::InGrace(row.data));
    }
    conn.prepare_cached("DELETE FROM token_session WHERE key = ?1")?.execute(params![key])?;
    delete_index(conn, &row.hashes)?;
    Ok(Refresh::Reused)
}

impl SessionStore for SqliteStore {
    fn create<'a>(
        &'a self,
        session: &'a SessionData,
        token: TokenHash,
        _now: Timestamp,
    ) -> StoreFuture<'a, ()> {
        // `now` is not needed: expiry is stored as the absolute `validUntil`.
        let session = session.clone();
        self.run(move |conn| insert_session(conn, &session, token))
    }

    fn create_many<'a>(
        &'a self,
        sessions: &'a [(SessionData, TokenHash)],
        _now: Timestamp,
    ) -> StoreFuture<'a, ()> {
        let sessions = sessions.to_vec();
        self.run(move |conn| {
            for (session, token) in &sessions {
                insert_session(conn, session, *token)?;
            }
            Ok(())
        })
    }

    fn refresh<'a>(
        &'a self,
        presented: RefreshKey,
        next: TokenHash,
        now: Timestamp,
        grace: Duration,
    ) -> StoreFuture<'a, Refresh> {
        // The index goes by the hash alone; the tag is for Redis Cluster's routing.
        let presented = presented.hash;
        self.run(move |conn| refresh_in(conn, presented, next, now.millis(), millis(grace)))
    }

    fn delete_by_token(&self, token: RefreshKey) -> StoreFuture<'_, bool> {
        let token = token.hash;
        self.run(move |conn| {
            let found: Option<(String, String)> = conn
                .prepare_cached("SELECT sid, session_key FROM token_refresh WHERE hash = ?1")?
                .query_row(params![token.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            match found {
                Some((sid, key)) => delete_session(conn, &key, Some(&sid)),
                None => Ok(false),
            }
        })
    }

    fn delete<'a>(&'a self, sponsor_id: &'a str, subscriber_id: &'a str) -> StoreFuture<'a, bool> {
        let key = super::session_key(sponsor_id, subscriber_id);
        self.run(move |conn| delete_session(conn, &key, None))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.run(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
    }
}

impl OneTimeTokenStore for SqliteStore {
    fn put<'a>(
        &'a self,
        token: &'a str,
        claims: &'a OneTimeTokenClaims,
        _now: Timestamp,
    ) -> StoreFuture<'a, ()> {
        let (hash, expires_at) = (TokenHash::of(token), claims.valid_until.millis());
        let json = serde_json::to_string(claims);
        self.run(move |conn| {
            let json = json.map_err(|err| StoreError::Corrupt(err.to_string()))?;
            conn.prepare_cached(
                "INSERT OR REPLACE INTO token_one_time (hash, claims, expires_at) \
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![hash.as_bytes(), json, expires_at])?;
            Ok(())
        })
    }

    fn take<'a>(&'a self, token: &'a str) -> StoreFuture<'a, Option<OneTimeTokenClaims>> {
        let hash = TokenHash::of(token);
        self.run(move |conn| {
            // `DELETE … RETURNING` is the embedded `GETDEL`; the store thread runs one
            // operation at a time, so of concurrent takers exactly one gets the row.
            let json: Option<String> = conn
                .prepare_cached("DELETE FROM token_one_time WHERE hash = ?1 RETURNING claims")?
                .query_row(params![hash.as_bytes()], |r| r.get(0))
                .optional()?;
            json.as_deref().map(claims_from_json).transpose()
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.run(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn count(db: &Db, table: &str) -> i64 {
        db.with(|c| c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)))
            .unwrap()
    }

    #[tokio::test]
    async fn the_sweeper_deletes_sessions_at_valid_until_and_their_index_after_the_notice() {
        let db = Db::in_memory().unwrap();
        let store = SqliteStore::open(db.clone()).unwrap();
        let t0 = Timestamp::from_millis(1_700_000_000_000);
        let hour = 3_600_000;
        let session = SessionData {
            user_id: "u".to_owned(),
            sponsor_id: "s".to_owned(),
            subscriber_id: "b".to_owned(),
            permissions: vec![],
            valid_until: t0.plus_millis(hour),
        };
        store.create(&session, TokenHash::of("t"), t0).await.unwrap();
        let claims = OneTimeTokenClaims {
            user_id: "u".to_owned(),
            sponsor_id: "s".to_owned(),
            subscriber_id: "b".to_owned(),
            permissions: vec![],
            valid_until: t0.plus_millis(hour),
        };
        store.put("one-time", &claims, t0).await.unwrap();

        assert_eq!(store.sweep(t0.plus_millis(hour - 1)).unwrap(), 0);
        assert_eq!(store.sweep(t0.plus_millis(hour)).unwrap(), 2);
        assert_eq!((count(&db, "token_session"), count(&db, "token_one_time")), (0, 0));
        // The index entry stays for the notice period, so a late refresh hears "expired".
        assert_eq!(count(&db, "token_refresh"), 1);
        let late = store
            .refresh(
                RefreshKey::of("t"),
                TokenHash::of("n"),
                t0.plus_millis(2 * hour),
                Duration::ZERO,
            )
            .await
            .unwrap();
        assert_eq!(late, Refresh::Expired);
        let notice_end = t0.plus_millis(hour + millis(EXPIRED_NOTICE));
        assert_eq!(store.sweep(notice_end).unwrap(), 1);
        assert_eq!(count(&db, "token_refresh"), 0);
    }
}
