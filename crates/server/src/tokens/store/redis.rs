//! The Redis store: sessions for several server instances, and the enterprise one-time-token
//! store; on a standalone Redis or a Redis Cluster alike.
//!
//! Layout (`{p}` is the store's key prefix, empty for sessions by default):
//! - `{p}websession:{s:<tag>}`: one hash per login session, where `<tag>` is its
//!   [`SessionTag`] (32 hex digits of the SHA-256 of `RT:{sponsorId}:{subscriberId}`, which
//!   every refresh token of the session starts with). Fields: `userId`, `sponsorId`,
//!   `subscriberId`, `permissions` (JSON), `validUntil` (ms), `cur` and `prev` (hex SHA-256 of
//!   the current and replaced refresh token), `prevAt` (ms) and `hashes` (the session's last
//!   [`REFRESH_HISTORY`] hashes, oldest first, space-separated). TTL: `validUntil` plus
//!   [`EXPIRED_NOTICE`]. Once a refresh finds it past `validUntil`, only `validUntil` and
//!   `hashes` stay (the session has ended; its tokens answer "expired" for the notice period).
//! - one-time tokens: `{p}{token}` → the claims JSON, taken by the `TAKE` script. The
//!   enterprise Redis holds other keys too, so the script deletes a key only if its value is a
//!   string that reads as one-time-token claims; and the caller has checked the token's shape
//!   (`secret::is_one_time_token_shaped`) before it becomes part of a key.
//!
//! Each read-then-write is one Lua script, so it is atomic, and each touches exactly one key,
//! passed in `KEYS`: a Redis Cluster routes it to the node of that key's slot. A refresh needs
//! no index: the token's tag names the session's key. `{s:<tag>}` is the key's hash tag, so
//! keys added to a session later stay in its slot.

use std::time::Duration;

use ::redis::{AsyncCommands as _, Script};
use protocol::Timestamp;
use protocol::tokens::OneTimeTokenClaims;

use super::claims_from_json;
use super::{
    EXPIRED_NOTICE, OneTimeTokenStore, REFRESH_HISTORY, Refresh, RefreshKey, SessionData,
    SessionStore, SessionTag, StoreError, StoreFuture, TokenHash, ttl_millis,
};
use crate::redis_link::{self, RedisConn, RedisTarget};
use crate::tokens::clock::millis;

/// Sessions created at once (in flight on the multiplexed connection) in `create_many`.
const BATCH: usize = 1_000;
/// A command that takes longer than this fails (the request answers 503) instead of hanging.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// KEYS: session key. ARGV: userId, sponsorId, subscriberId, permissions, validUntil, token
/// hash, key TTL. Replaces any session under the key (a new login for the same pair), whose
/// tokens then find their hashes gone.
const CREATE: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'userId', ARGV[1], 'sponsorId', ARGV[2], 'subscriberId', ARGV[3],
  'permissions', ARGV[4], 'validUntil', ARGV[5], 'cur', ARGV[6], 'prev', '', 'prevAt', '0',
  'hashes', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return 1
";

/// KEYS: session key. ARGV: now, grace (ms), presented hash, next hash, notice (ms),
/// [`REFRESH_HISTORY`].
const REFRESH: &str = r"
local s = redis.call('HMGET', KEYS[1], 'cur', 'prev', 'prevAt', 'validUntil', 'userId',
  'sponsorId', 'subscriberId', 'permissions', 'hashes')
if not s[9] then return {'unknown'} end
local kept, known = {}, false
for h in string.gmatch(s[9], '%S+') do
  kept[#kept + 1] = h
  if h == ARGV[3] then known = true end
end
if not known then return {'unknown'} end
local now = tonumber(ARGV[1])
local valid_until = tonumber(s[4])
if valid_until <= now then
  if s[1] then
    -- The session ends; its hashes stay for the notice period, so that the next attempt
    -- also hears 'expired'.
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[1], 'validUntil', s[4], 'hashes', s[9])
    local left = math.max(valid_until + tonumber(ARGV[5]) - now, 1)
    redis.call('PEXPIRE', KEYS[1], string.format('%d', left))
  end
  return {'expired'}
end
if not s[1] then return {'unknown'} end
if s[1] == ARGV[3] then
  kept[#kept + 1] = ARGV[4]
  local drop = math.max(#kept - tonumber(ARGV[6]), 0)
  redis.call('HSET', KEYS[1], 'prev', s[1], 'prevAt', ARGV[1], 'cur', ARGV[4],
    'hashes', table.concat(kept, ' ', drop + 1))
  return {'rotated', s[5], s[6], s[7], s[8], s[4]}
end
if s[2] == ARGV[3] and now - tonumber(s[3]) <= tonumber(ARGV[2]) then
  return {'grace', s[5], s[6], s[7], s[8], s[4]}
end
redis.call('DEL', KEYS[1])
return {'reused'}
";

/// KEYS: session key. ARGV: the token's hash. Deletes the live session if the token is one of
/// its last ones.
const DELETE_BY_TOKEN: &str = r"
local s = redis.call('HMGET', KEYS[1], 'cur', 'hashes')
if not s[1] then return 0 end
for h in string.gmatch(s[2] or '', '%S+') do
  if h == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
  end
end
return 0
";

/// KEYS: session key. Deletes the session if it is live (an ended one keeps its notice).
const DELETE_BY_KEY: &str = r"
if redis.call('HEXISTS', KEYS[1], 'cur') == 0 then return 0 end
redis.call('DEL', KEYS[1])
return 1
";

/// The longest value `TAKE` reads: claims are a few hundred bytes, and a caller must not make
/// Redis copy a large value of someone else's into the script.
const MAX_CLAIMS_BYTES: usize = 64 * 1024;

/// KEYS: the one-time token's key. ARGV: [`MAX_CLAIMS_BYTES`]. Deletes and returns the value if
/// it is one-time-token claims (a JSON object with the string fields, a string array of
/// permissions and an ISO-8601 `validUntil`); anything else (another type, a large value, other
/// JSON, no JSON) is left alone and answered as absent. One script, so of concurrent takers
/// exactly one gets the claims, as with `GETDEL`.
const TAKE: &str = r"
if redis.call('TYPE', KEYS[1]).ok ~= 'string' then return false end
if redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[1]) then return false end
local value = redis.call('GET', KEYS[1])
local ok, c = pcall(cjson.decode, value)
if not ok or type(c) ~= 'table' then return false end
if type(c.userId) ~= 'string' or type(c.sponsorId) ~= 'string'
  or type(c.subscriberId) ~= 'string' or type(c.validUntil) ~= 'string'
  or type(c.permissions) ~= 'table' then return false end
for _, p in pairs(c.permissions) do
  if type(p) ~= 'string' then return false end
end
if not string.match(c.validUntil, '^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d') then return false end
redis.call('DEL', KEYS[1])
return value
";

/// A Redis store; cheap to clone (the connection is multiplexed and reconnects by itself).
#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConn,
    prefix: String,
    create: Script,
    refresh: Script,
    delete_by_token: Script,
    delete_by_key: Script,
    take: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `target` (fails now if Redis does not answer, so a misconfigured server
    /// does not start). Every key gets `prefix` in front.
    pub async fn connect(target: &RedisTarget, prefix: &str) -> Result<Self, StoreError> {
        let conn = redis_link::connect(target, RESPONSE_TIMEOUT).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            create: Script::new(CREATE),
            refresh: Script::new(REFRESH),
            delete_by_token: Script::new(DELETE_BY_TOKEN),
            delete_by_key: Script::new(DELETE_BY_KEY),
            take: Script::new(TAKE),
        })
    }

    /// `{p}websession:{s:<tag>}`.
    fn session_key(&self, tag: SessionTag) -> String {
        format!("{}websession:{{s:{}}}", self.prefix, tag.to_hex())
    }

    async fn create_async(
        &self,
        session: &SessionData,
        token: TokenHash,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let permissions = serde_json::to_string(&session.permissions)
            .map_err(|err| StoreError::Corrupt(err.to_string()))?;
        let ttl = ttl_millis(now, session.valid_until).saturating_add(millis(EXPIRED_NOTICE));
        let mut conn = self.conn.clone();
        self.create
            .key(self.session_key(session.tag()))
            .arg(&session.user_id)
            .arg(&session.sponsor_id)
            .arg(&session.subscriber_id)
            .arg(permissions)
            .arg(session.valid_until.millis())
            .arg(token.to_hex())
            .arg(ttl)
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    async fn create_many_async(
        &self,
        sessions: &[(SessionData, TokenHash)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        // Not one pipeline: on a cluster a pipeline must stay within one slot, and sessions
        // spread over all of them. Calls in flight together share the multiplexed connection
        // (one per node), which pipelines them all the same.
        for chunk in sessions.chunks(BATCH) {
            let calls =
                chunk.iter().map(|(session, token)| self.create_async(session, *token, now));
            futures_util::future::try_join_all(calls).await?;
        }
        Ok(())
    }

    async fn refresh_async(
        &self,
        presented: RefreshKey,
        next: TokenHash,
        now: Timestamp,
        grace: Duration,
    ) -> Result<Refresh, StoreError> {
        // A token without a tag names no session here (see `RefreshKey`).
        let Some(tag) = presented.tag else { return Ok(Refresh::Unknown) };
        let mut conn = self.conn.clone();
        let reply: Vec<String> = self
            .refresh
            .key(self.session_key(tag))
            .arg(now.millis())
            .arg(millis(grace))
            .arg(presented.hash.to_hex())
            .arg(next.to_hex())
            .arg(millis(EXPIRED_NOTICE))
            .arg(REFRESH_HISTORY)
            .invoke_async(&mut conn)
            .await?;
        parse_refresh(reply)
    }
}

fn parse_refresh(reply: Vec<String>) -> Result<Refresh, StoreError> {
    let corrupt = || StoreError::Corrupt("unexpected reply of the refresh script".to_owned());
    let mut reply = reply.into_iter();
    let outcome = reply.next().ok_or_else(corrupt)?;
    let mut session = || -> Result<SessionData, StoreError> {
        let mut field = || reply.next().ok_or_else(corrupt);
        let (user_id, sponsor_id, subscriber_id) = (field()?, field()?, field()?);
        let permissions = serde_json::from_str(&field()?)
            .map_err(|err| StoreError::Corrupt(format!("session permissions: {err}")))?;
        let valid_until = field()?.parse::<i64>().map_err(|_| corrupt())?;
        Ok(SessionData {
            user_id,
            sponsor_id,
            subscriber_id,
            permissions,
            valid_until: Timestamp::from_millis(valid_until),
        })
    };
    Ok(match outcome.as_str() {
        "rotated" => Refresh::Rotated(session()?),
        "grace" => Refresh::InGrace(session()?),
        "reused" => Refresh::Reused,
        "expired" => Refresh::Expired,
        "unknown" => Refresh::Unknown,
        _ => return Err(corrupt()),
    })
}

impl SessionStore for RedisStore {
    fn create<'a>(
        &'a self,
        session: &'a SessionData,
        token: TokenHash,
        now: Timestamp,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.create_async(session, token, now))
    }

    fn create_many<'a>(
        &'a self,
        sessions: &'a [(SessionData, TokenHash)],
        now: Timestamp,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.create_many_async(sessions, now))
    }

    fn refresh<'a>(
        &'a self,
        presented: RefreshKey,
        next: TokenHash,
        now: Timestamp,
        grace: Duration,
    ) -> StoreFuture<'a, Refresh> {
        Box::pin(self.refresh_async(presented, next, now, grace))
    }

    fn delete_by_token(&self, token: RefreshKey) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let Some(tag) = token.tag else { return Ok(false) };
            let mut conn = self.conn.clone();
            let n: i64 = self
                .delete_by_token
                .key(self.session_key(tag))
                .arg(token.hash.to_hex())
                .invoke_async(&mut conn)
                .await?;
            Ok(n == 1)
        })
    }

    fn delete<'a>(&'a self, sponsor_id: &'a str, subscriber_id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let key = self.session_key(SessionTag::of(sponsor_id, subscriber_id));
            let n: i64 = self.delete_by_key.key(key).invoke_async(&mut conn).await?;
            Ok(n == 1)
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let _: String = ::redis::cmd("PING").query_async(&mut conn).await?;
            Ok(())
        })
    }
}

impl OneTimeTokenStore for RedisStore {
    fn put<'a>(
        &'a self,
        token: &'a str,
        claims: &'a OneTimeTokenClaims,
        now: Timestamp,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let json = serde_json::to_string(claims)
                .map_err(|err| StoreError::Corrupt(err.to_string()))?;
            let ttl = u64::try_from(ttl_millis(now, claims.valid_until)).unwrap_or(1);
            let mut conn = self.conn.clone();
            let options =
                ::redis::SetOptions::default().with_expiration(::redis::SetExpiry::PX(ttl));
            conn.set_options::<_, _, ()>(format!("{}{token}", self.prefix), json, options).await?;
            Ok(())
        })
    }

    fn take<'a>(&'a self, token: &'a str) -> StoreFuture<'a, Option<OneTimeTokenClaims>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let json: Option<String> = self
                .take
                .key(format!("{}{token}", self.prefix))
                .arg(MAX_CLAIMS_BYTES)
                .invoke_async(&mut conn)
                .await?;
            json.as_deref().map(claims_from_json).transpose()
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let _: String = ::redis::cmd("PING").query_async(&mut conn).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_replies_parse_and_garbage_is_an_error() {
        let rotated = vec![
            "rotated".to_owned(),
            "u".to_owned(),
            "s".to_owned(),
            "b".to_owned(),
            "[\"CanViewReports\"]".to_owned(),
            "1000".to_owned(),
        ];
        match parse_refresh(rotated) {
            Ok(Refresh::Rotated(data)) => {
                assert_eq!(data.permissions, ["CanViewReports"]);
                assert_eq!(data.valid_until.millis(), 1000);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_refresh(vec!["reused".to_owned()]), Ok(Refresh::Reused)));
        assert!(parse_refresh(vec!["rotated".to_owned()]).is_err());
        assert!(parse_refresh(vec!["what".to_owned()]).is_err());
        assert!(parse_refresh(vec![]).is_err());
    }
}
