//! The Redis store: sessions and the refresh-token index for several server instances, and the
//! enterprise one-time-token store.
//!
//! Layout (`{p}` is the store's key prefix, empty for sessions by default):
//! - `{p}RT:{sponsorId}:{subscriberId}`: a hash with `sid`, `userId`, `sponsorId`,
//!   `subscriberId`, `permissions` (JSON), `validUntil` (ms), `cur` and `prev` (hex SHA-256 of
//!   the current and replaced refresh token), `prevAt` (ms) and `hashes` (the session's last
//!   [`REFRESH_HISTORY`] hashes, oldest first, space-separated, to delete its index on logout).
//!   TTL: until `validUntil`.
//! - `{p}RTH:{hex sha256}`: `"{sid} {validUntil} {session key}"`. TTL: `validUntil` plus
//!   [`EXPIRED_NOTICE`].
//! - one-time tokens: `{p}{token}` → the claims JSON, taken by the `TAKE` script. The
//!   enterprise Redis holds other keys too, so the script deletes a key only if its value is a
//!   string that reads as one-time-token claims; and the caller has checked the token's shape
//!   (`secret::is_one_time_token_shaped`) before it becomes part of a key.
//!
//! Each read-then-write is one Lua script, so it is atomic. The scripts reach the session key
//! through the index, which standalone Redis allows and Redis Cluster does not.

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands as _, Client, Script};
use protocol::Timestamp;
use protocol::tokens::OneTimeTokenClaims;

use super::claims_from_json;
use super::{
    EXPIRED_NOTICE, OneTimeTokenStore, REFRESH_HISTORY, Refresh, SessionData, SessionStore,
    StoreError, StoreFuture, TokenHash, ttl_millis,
};
use crate::tokens::clock::millis;

/// Index keys are `{prefix}RTH:{hash}`.
const INDEX: &str = "RTH:";
/// Sessions created per pipeline in `create_many`.
const BATCH: usize = 1_000;
/// A command that takes longer than this fails (the request answers 503) instead of hanging.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// KEYS: session key, index key of the token. ARGV: sid, userId, sponsorId, subscriberId,
/// permissions, validUntil, token hash, session TTL, index TTL, index prefix.
const CREATE: &str = r"
local old = redis.call('HGET', KEYS[1], 'hashes')
if old then
  for h in string.gmatch(old, '%S+') do redis.call('DEL', ARGV[10] .. h) end
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'sid', ARGV[1], 'userId', ARGV[2], 'sponsorId', ARGV[3],
  'subscriberId', ARGV[4], 'permissions', ARGV[5], 'validUntil', ARGV[6], 'cur', ARGV[7],
  'prev', '', 'prevAt', '0', 'hashes', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. ARGV[6] .. ' ' .. KEYS[1], 'PX', ARGV[9])
return 1
";

/// KEYS: index key of the presented token, index key of the next token. ARGV: now, grace (ms),
/// presented hash, next hash, index prefix, notice (ms), [`REFRESH_HISTORY`].
const REFRESH: &str = r"
local idx = redis.call('GET', KEYS[1])
if not idx then return {'unknown'} end
local sid, vu, skey = string.match(idx, '^(%S+) (%S+) (.+)$')
if not sid then return {'unknown'} end
local now = tonumber(ARGV[1])
local s = redis.call('HMGET', skey, 'sid', 'cur', 'prev', 'prevAt', 'validUntil', 'userId',
  'sponsorId', 'subscriberId', 'permissions', 'hashes')
if s[1] ~= sid then
  if tonumber(vu) <= now then return {'expired'} end
  return {'unknown'}
end
local valid_until = tonumber(s[5])
if valid_until <= now then
  redis.call('DEL', skey)
  return {'expired'}
end
if s[2] == ARGV[3] then
  local kept = {}
  for h in string.gmatch(s[10] or '', '%S+') do kept[#kept + 1] = h end
  kept[#kept + 1] = ARGV[4]
  local drop = math.max(#kept - tonumber(ARGV[7]), 0)
  for i = 1, drop do redis.call('DEL', ARGV[5] .. kept[i]) end
  redis.call('HSET', skey, 'prev', s[2], 'prevAt', ARGV[1], 'cur', ARGV[4],
    'hashes', table.concat(kept, ' ', drop + 1))
  redis.call('SET', KEYS[2], idx, 'PX', string.format('%d', valid_until - now + tonumber(ARGV[6])))
  return {'rotated', s[6], s[7], s[8], s[9], s[5]}
end
if s[3] == ARGV[3] and now - tonumber(s[4]) <= tonumber(ARGV[2]) then
  return {'grace', s[6], s[7], s[8], s[9], s[5]}
end
for h in string.gmatch(s[10] or '', '%S+') do redis.call('DEL', ARGV[5] .. h) end
redis.call('DEL', skey)
return {'reused'}
";

/// KEYS: index key of the token. ARGV: index prefix.
const DELETE_BY_TOKEN: &str = r"
local idx = redis.call('GET', KEYS[1])
if not idx then return 0 end
local sid, vu, skey = string.match(idx, '^(%S+) (%S+) (.+)$')
if not sid then return 0 end
local s = redis.call('HMGET', skey, 'sid', 'hashes')
if s[1] ~= sid then return 0 end
for h in string.gmatch(s[2] or '', '%S+') do redis.call('DEL', ARGV[1] .. h) end
redis.call('DEL', skey)
return 1
";

/// KEYS: session key. ARGV: index prefix.
const DELETE_BY_KEY: &str = r"
local hashes = redis.call('HGET', KEYS[1], 'hashes')
if not hashes then return 0 end
for h in string.gmatch(hashes, '%S+') do redis.call('DEL', ARGV[1] .. h) end
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
    conn: ConnectionManager,
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
    /// Connects to `url` (fails now if Redis does not answer, so a misconfigured server does
    /// not start). Every key gets `prefix` in front.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(RESPONSE_TIMEOUT));
        let conn = ConnectionManager::new_with_config(client, config).await?;
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

    fn session_key(&self, session: &SessionData) -> String {
        format!("{}{}", self.prefix, session.key())
    }

    fn index_key(&self, token: TokenHash) -> String {
        format!("{}{INDEX}{}", self.prefix, token.to_hex())
    }

    fn index_prefix(&self) -> String {
        format!("{}{INDEX}", self.prefix)
    }

    /// The arguments of one `CREATE` call: keys, then argv.
    fn create_args(
        &self,
        session: &SessionData,
        token: TokenHash,
        now: Timestamp,
    ) -> Result<([String; 2], [String; 10]), StoreError> {
        let permissions = serde_json::to_string(&session.permissions)
            .map_err(|err| StoreError::Corrupt(err.to_string()))?;
        let ttl = ttl_millis(now, session.valid_until);
        let keys = [self.session_key(session), self.index_key(token)];
        let argv = [
            protocol::ids::random_uuid().to_string(),
            session.user_id.clone(),
            session.sponsor_id.clone(),
            session.subscriber_id.clone(),
            permissions,
            session.valid_until.millis().to_string(),
            token.to_hex(),
            ttl.to_string(),
            ttl.saturating_add(millis(EXPIRED_NOTICE)).to_string(),
            self.index_prefix(),
        ];
        Ok((keys, argv))
    }

    async fn create_many_async(
        &self,
        sessions: &[(SessionData, TokenHash)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        // Pipelined `EVALSHA`s need the script loaded first (a pipeline cannot fall back to
        // `EVAL` on `NOSCRIPT`).
        let sha: String = self.create.prepare_invoke().load_async(&mut conn).await?;
        for chunk in sessions.chunks(BATCH) {
            let mut pipe = ::redis::pipe();
            for (session, token) in chunk {
                let (keys, argv) = self.create_args(session, *token, now)?;
                pipe.cmd("EVALSHA")
                    .arg(&sha)
                    .arg(keys.len())
                    .arg(&keys[..])
                    .arg(&argv[..])
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        Ok(())
    }

    async fn refresh_async(
        &self,
        presented: TokenHash,
        next: TokenHash,
        now: Timestamp,
        grace: Duration,
    ) -> Result<Refresh, StoreError> {
        let mut conn = self.conn.clone();
        let reply: Vec<String> = self
            .refresh
            .key(self.index_key(presented))
            .key(self.index_key(next))
            .arg(now.millis())
            .arg(millis(grace))
            .arg(presented.to_hex())
            .arg(next.to_hex())
            .arg(self.index_prefix())
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
        Box::pin(async move {
            let (keys, argv) = self.create_args(session, token, now)?;
            let mut invocation = self.create.prepare_invoke();
            invocation.key(&keys[..]).arg(&argv[..]);
            let mut conn = self.conn.clone();
            invocation.invoke_async::<i64>(&mut conn).await?;
            Ok(())
        })
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
        presented: TokenHash,
        next: TokenHash,
        now: Timestamp,
        grace: Duration,
    ) -> StoreFuture<'a, Refresh> {
        Box::pin(self.refresh_async(presented, next, now, grace))
    }

    fn delete_by_token(&self, token: TokenHash) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let n: i64 = self
                .delete_by_token
                .key(self.index_key(token))
                .arg(self.index_prefix())
                .invoke_async(&mut conn)
                .await?;
            Ok(n == 1)
        })
    }

    fn delete<'a>(&'a self, sponsor_id: &'a str, subscriber_id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let key = format!("{}{}", self.prefix, super::session_key(sponsor_id, subscriber_id));
            let n: i64 = self
                .delete_by_key
                .key(key)
                .arg(self.index_prefix())
                .invoke_async(&mut conn)
                .await?;
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
