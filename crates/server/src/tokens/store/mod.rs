//! Where login sessions and one-time tokens are kept: two traits, each implemented by the
//! embedded SQLite store ([`SqliteStore`], the default) and by Redis ([`RedisStore`]).
//!
//! ## The session model (both stores)
//!
//! A session lives under `RT:{sponsorId}:{subscriberId}` (seed 002's key; on Redis, under the
//! key its [`SessionTag`], a hash of that, names; a new login for the same pair replaces the
//! session) until its `validUntil`, and records:
//! - on the embedded store, a random session id (`sid`), so that index entries of a replaced
//!   session never act on its successor (on Redis the token hashes live in the session itself
//!   and go with it);
//! - the SHA-256 of the *current* refresh token, and of the *previous* one with the instant it
//!   was replaced (for the grace window).
//!
//! A refresh finds its session in one lookup, never by a `KEYS RT:*` scan: the embedded store
//! by an index from token hash to session, Redis by the [`SessionTag`] every refresh token of
//! the session starts with ([`RefreshKey`]). The session keeps the hashes of its last
//! [`REFRESH_HISTORY`] refresh tokens, so a recently replaced token presented again is
//! recognised as reuse (RFC 9700 §4.14.2) rather than as unknown. Older hashes leave the
//! history as new ones come, so a rotation costs the same in the first hour of a session as in
//! its hundredth. The history outlives its session by [`EXPIRED_NOTICE`], so that a refresh
//! after `validUntil` answers "Session has expired" rather than "unknown token".
//!
//! Every operation that reads and then writes is atomic: one SQLite transaction, or one Redis
//! Lua script. Stores take `now` from the caller (the injected clock) and check `validUntil`
//! themselves, so expiry never depends on when a TTL happens to fire.

mod redis;
mod sqlite;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use protocol::Timestamp;
use protocol::tokens::OneTimeTokenClaims;

pub use self::redis::RedisStore;
pub use self::sqlite::SqliteStore;
pub use super::secret::{RefreshKey, SessionTag, TokenHash};

/// How long index entries outlive their session, so that a late refresh learns that the session
/// expired.
pub const EXPIRED_NOTICE: Duration = Duration::from_secs(24 * 3600);

/// How many refresh-token hashes a session keeps (the current one included). Each rotation
/// adds one and, past this many, drops the oldest with its index entry, so the history (and
/// the work of a rotation, which rewrites it) stays bounded however long a session lives. A
/// token older than that answers as unknown (`invalid_token`) instead of revoking the session
/// as reuse: 16 rotations are about four hours of 15-minute access tokens, the seed's whole
/// session.
pub const REFRESH_HISTORY: usize = 16;

/// The future every store method returns (boxed, so the traits can be used as `dyn`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The embedded store.
    #[error("embedded store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Redis.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// A record that does not parse (written by something else, or corrupted).
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The store cannot serve: its thread is gone, or a commit failed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// What a session knows about its user: the one-time token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionData {
    /// The user.
    pub user_id: String,
    /// The sponsor.
    pub sponsor_id: String,
    /// The subscriber.
    pub subscriber_id: String,
    /// What the user may do.
    pub permissions: Vec<String>,
    /// The end of the session.
    pub valid_until: Timestamp,
}

impl SessionData {
    /// The session's key, `RT:{sponsorId}:{subscriberId}`.
    pub fn key(&self) -> String {
        session_key(&self.sponsor_id, &self.subscriber_id)
    }

    /// The session's tag, which its refresh tokens start with.
    pub fn tag(&self) -> SessionTag {
        SessionTag::of(&self.sponsor_id, &self.subscriber_id)
    }
}

/// Reads the claims a store kept for a one-time token as JSON.
pub(crate) fn claims_from_json(json: &str) -> Result<OneTimeTokenClaims, StoreError> {
    serde_json::from_str(json)
        .map_err(|err| StoreError::Corrupt(format!("one-time token claims: {err}")))
}

impl From<OneTimeTokenClaims> for SessionData {
    fn from(c: OneTimeTokenClaims) -> Self {
        Self {
            user_id: c.user_id,
            sponsor_id: c.sponsor_id,
            subscriber_id: c.subscriber_id,
            permissions: c.permissions,
            valid_until: c.valid_until,
        }
    }
}

/// `RT:{sponsorId}:{subscriberId}`.
pub fn session_key(sponsor_id: &str, subscriber_id: &str) -> String {
    format!("RT:{sponsor_id}:{subscriber_id}")
}

/// What a refresh found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The token was the current one: the next token's hash is now current.
    Rotated(SessionData),
    /// The token was the one replaced within the grace window (another tab refreshed first):
    /// nothing changed; the caller issues an access token but no new refresh token.
    InGrace(SessionData),
    /// The token was replaced longer ago than the grace window: the session is now revoked.
    Reused,
    /// The session is past its `validUntil`.
    Expired,
    /// No live session has this token (never issued, logged out, revoked, replaced by a new
    /// login).
    Unknown,
}

/// Login sessions with rotating refresh tokens.
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// Stores a session whose current refresh token hashes to `token`, replacing (and
    /// revoking) any session under the same key.
    fn create<'a>(
        &'a self,
        session: &'a SessionData,
        token: TokenHash,
        now: Timestamp,
    ) -> StoreFuture<'a, ()>;

    /// [`create`](Self::create) for many sessions at once, in one transaction or pipeline
    /// (imports and benchmarks). The sessions must have distinct keys.
    fn create_many<'a>(
        &'a self,
        sessions: &'a [(SessionData, TokenHash)],
        now: Timestamp,
    ) -> StoreFuture<'a, ()>;

    /// Looks the session up by the presented refresh token and, if that token is current,
    /// makes `next` current ([`Refresh`] says what happened). `next` must carry the same
    /// session tag as `presented`.
    fn refresh<'a>(
        &'a self,
        presented: RefreshKey,
        next: TokenHash,
        now: Timestamp,
        grace: Duration,
    ) -> StoreFuture<'a, Refresh>;

    /// Deletes the live session that `token` (current or past) belongs to. `true` if there was
    /// one.
    fn delete_by_token(&self, token: RefreshKey) -> StoreFuture<'_, bool>;

    /// Deletes the session under `RT:{sponsor_id}:{subscriber_id}`. `true` if there was one.
    fn delete<'a>(&'a self, sponsor_id: &'a str, subscriber_id: &'a str) -> StoreFuture<'a, bool>;

    /// Whether the store answers now (readiness, `GET /readyz`).
    fn ping(&self) -> StoreFuture<'_, ()>;
}

/// The enterprise store of one-time tokens.
pub trait OneTimeTokenStore: Send + Sync + fmt::Debug {
    /// Stores `claims` under `token` until `claims.valid_until` (what the enterprise system
    /// does; here for `mint-token` and tests).
    fn put<'a>(
        &'a self,
        token: &'a str,
        claims: &'a OneTimeTokenClaims,
        now: Timestamp,
    ) -> StoreFuture<'a, ()>;

    /// Removes and returns the claims under `token`, atomically: of any number of concurrent
    /// calls with one token, one gets the claims.
    fn take<'a>(&'a self, token: &'a str) -> StoreFuture<'a, Option<OneTimeTokenClaims>>;

    /// Whether the store answers now (readiness, `GET /readyz`).
    fn ping(&self) -> StoreFuture<'_, ()>;
}

/// Milliseconds from `now` until `until`, at least 1 (Redis refuses a TTL of 0).
pub(crate) fn ttl_millis(now: Timestamp, until: Timestamp) -> i64 {
    until.millis().saturating_sub(now.millis()).max(1)
}
