//! The Redis engine: the event store of a cluster. Every instance on one Redis acts as one
//! backend; any instance serves any request.
//!
//! ## Keys
//! | key | type | holds |
//! |---|---|---|
//! | `ws:back` | hash | the back's identity (`uuid`, `secret`), made once by the first instance |
//! | `ws:front:<uuid>` | hash | `bid`, `key` of a registered front |
//! | `ws:seq:bid`, `ws:seq:ev` | counters | frontBids; event ids (one sequence for all fronts) |
//! | `ws:{f:<bid>}:ev` | stream | the front's events, entry id `0-<event id>`; fields `s` (session or empty), `x` (expiry, ms), `b` (body) |
//! | `ws:all:ev` | stream | events for every front, alike |
//! | `ws:{f:<bid>}:trim`, `ws:all:trim` | string | the highest id trimmed from the stream by its cap |
//! | `ws:{f:<bid>}:und` | sorted set | ids of the front's events no stream was given yet |
//! | `ws:{f:<bid>}:sev:<session>` | list | ids of a tab's events, deleted with the tab |
//! | `ws:{f:<bid>}:s:<session>` | hash | a session: `st` (its active stream or empty), `node`, `since` (when `st` was activated, ms), `idle` (ms or empty) |
//! | `ws:{f:<bid>}:ss` | set | the front's known sessions, for presence (a member whose hash is gone is dropped when read; a session kept from before this index is listed from its next activation) |
//! | `ws:{f:<bid>}:st:<stream>` | hash | an open stream: `session`, `node`, `scope`, `act`; expires if never activated |
//! | `ws:{f:<bid>}:fs` | set | the front's active front-scoped streams |
//! | `ws:{f:<bid>}:act` | set | the front's active streams (for the per-front limit) |
//! | `ws:fronts:seen` | sorted set | front UUIDs by their last activation (or registration), for pruning |
//! | `ws:{f:<bid>}:seen:<uuid>` | string | a handled direct event, until its keeping time |
//! | `ws:{f:<bid>}:idem:<key>` | string | a server-API publish's idempotency key: its event id, or `-` while under way |
//! | `ws:idle` | sorted set | idle sessions (`<bid>:<session>`) by idle-since, for expiry |
//! | `ws:nodes`, `ws:node:<id>:st` | sorted set, set | instances by last sign of life; the streams each holds |
//! | `ws:sweeper` | string | which instance sweeps now (`SET NX PX`) |
//!
//! Keys of one front share the hash tag `{f:<bid>}`. The scripts also touch the few global keys
//! (`ws:seq:ev`, `ws:idle`), so this engine runs on standalone Redis (or Sentinel), as the token
//! store does; Redis Cluster would need those moved per front.
//!
//! ## Delivery
//! Each publish is one script: it takes the next id, appends the event to its front's stream
//! (capped at [`STREAM_CAP`] entries), extends the stream's life to the event's expiry and
//! publishes `<id> <bid> <session> <body>` on `ws:ev`. Every instance subscribes to `ws:ev`
//! and to `ws:node:<id>` (activations and replacements of the streams it holds). Because ids
//! come from one counter and each is published in the script that took it, an instance sees
//! them consecutively: a gap means a lost message, and the instance reads what it missed from
//! the streams of the fronts it holds before going on. It does the same after every
//! (re)subscription and whenever the counter is ahead of what it saw at a liveness tick, so a
//! lost message costs at most one tick, never an event.
//!
//! ## Failures
//! Commands time out after [`RESPONSE_TIMEOUT`], so a request that needs a Redis that is down
//! answers `503 store_unavailable` instead of hanging; the connection comes back by itself.
//! An instance that dies leaves its streams in Redis: once it has shown no sign of life for
//! [`NODE_DEAD_AFTER`], a sweep makes their sessions idle. Redis must not evict keys: a
//! `maxmemory-policy` other than `noeviction` is refused at start (`volatile-*` evicts keys
//! with a TTL, which every key of events has).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Script, Value};
use futures_util::StreamExt as _;
use protocol::messages::FrontBid;
use protocol::{
    BackUuid, EventUuid, FrontUuid, PublicKey, SessionUuid, StreamUuid, Timestamp, keys,
};
use tokio::task::JoinHandle;

use super::{
    ActivateRefusal, Activation, BackRecord, Cutoffs, DisconnectRefusal, EventStore, Feed,
    FrontRow, IdempotencyClaim, NewEvent, NodeId, OpenStream, Presence, PublishRefusal,
    Registration, ReplayPage, ReplayRequest, Served, SessionPresence, Since, StoreError,
    StoreFuture, StoredEvent, Swept, cap_page,
};
use crate::tokens::redact_url;

/// A command that takes longer fails, and the request answers 503.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1500);
/// Events kept per front at most (older ones are trimmed first); a client that resumes from
/// before them gets what is left.
pub(crate) const STREAM_CAP: usize = 10_000;
/// How often an instance shows it lives and checks that it missed no event.
pub(crate) const TICK: Duration = Duration::from_secs(5);
/// An instance silent for this long is taken for dead: its streams' sessions become idle.
pub(crate) const NODE_DEAD_AFTER: Duration = Duration::from_secs(30);
/// How long after opening a stream that is never activated its record goes (past the
/// activation timeout, which ends the stream itself).
const PENDING_MARGIN_MS: i64 = 5_000;
/// Idle sessions forgotten per sweep step.
const SWEEP_BATCH: isize = 500;

const SEQ_EV: &str = "ws:seq:ev";
const SEQ_BID: &str = "ws:seq:bid";
const BACK: &str = "ws:back";
const ALL: &str = "ws:all:";
const EVENTS_CHANNEL: &str = "ws:ev";
const NODES: &str = "ws:nodes";
const SWEEPER: &str = "ws:sweeper";

fn front_key(uuid: FrontUuid) -> String {
    format!("ws:front:{uuid}")
}

/// The key prefix of a front's keys, with its hash tag.
fn prefix(bid: FrontBid) -> String {
    format!("ws:{{f:{}}}:", bid.0)
}

fn node_channel(node: &str) -> String {
    format!("ws:node:{node}")
}

fn node_streams(node: &str) -> String {
    format!("ws:node:{node}:st")
}

/// KEYS: front key, bid counter. ARGV: public key, front UUID, now.
const REGISTER: &str = r"
local bid = redis.call('HGET', KEYS[1], 'bid')
if bid then
  if redis.call('HGET', KEYS[1], 'key') == ARGV[1] then return {1, tonumber(bid)} end
  return {0, 0}
end
bid = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'bid', bid, 'key', ARGV[1])
redis.call('ZADD', 'ws:fronts:seen', ARGV[3], ARGV[2])
return {1, bid}
";

/// KEYS: back key. ARGV: uuid, secret.
const BACK_IDENTITY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'uuid', ARGV[1], 'secret', ARGV[2])
end
return redis.call('HMGET', KEYS[1], 'uuid', 'secret')
";

/// KEYS: front prefix. ARGV: stream, bid, now, most active streams, front UUID.
const ACTIVATE: &str = r"
local st = KEYS[1] .. 'st:' .. ARGV[1]
local rec = redis.call('HMGET', st, 'session', 'node', 'scope', 'act')
if not rec[1] then return {'notfound'} end
if rec[4] == '1' then return {'active'} end
local skey = KEYS[1] .. 's:' .. rec[1]
local prev = redis.call('HMGET', skey, 'st', 'node')
local replacing = prev[1] and prev[1] ~= ''
local active = redis.call('SCARD', KEYS[1] .. 'act')
if not replacing and active >= tonumber(ARGV[4]) then return {'toomany', tostring(active)} end
redis.call('HSET', st, 'act', '1')
redis.call('PERSIST', st)
redis.call('SADD', KEYS[1] .. 'act', ARGV[1])
redis.call('ZADD', 'ws:fronts:seen', ARGV[3], ARGV[5])
redis.call('HSET', skey, 'st', ARGV[1], 'node', rec[2], 'since', ARGV[3], 'idle', '')
redis.call('SADD', KEYS[1] .. 'ss', rec[1])
redis.call('ZREM', 'ws:idle', ARGV[2] .. ':' .. rec[1])
if rec[3] == '1' then redis.call('SADD', KEYS[1] .. 'fs', ARGV[1]) end
redis.call('PUBLISH', 'ws:node:' .. rec[2], 'act ' .. ARGV[1])
local replaced, replaced_node = '', ''
if prev[1] and prev[1] ~= '' and prev[1] ~= ARGV[1] then
  replaced, replaced_node = prev[1], prev[2] or ''
  redis.call('SREM', KEYS[1] .. 'fs', replaced)
  redis.call('SREM', KEYS[1] .. 'act', replaced)
  redis.call('PUBLISH', 'ws:node:' .. replaced_node, 'end ' .. replaced)
end
return {'ok', rec[1], rec[2], replaced, replaced_node}
";

/// KEYS: front prefix. ARGV: stream, bid, now. Forgets the stream; its session is idle from
/// now if it was the session's active stream.
const CLOSE: &str = r"
local st = KEYS[1] .. 'st:' .. ARGV[1]
local session = redis.call('HGET', st, 'session')
redis.call('DEL', st)
redis.call('SREM', KEYS[1] .. 'fs', ARGV[1])
redis.call('SREM', KEYS[1] .. 'act', ARGV[1])
if not session then return 0 end
local skey = KEYS[1] .. 's:' .. session
if redis.call('HGET', skey, 'st') == ARGV[1] then
  redis.call('HSET', skey, 'st', '', 'idle', ARGV[3])
  redis.call('ZADD', 'ws:idle', ARGV[3], ARGV[2] .. ':' .. session)
  return 1
end
return 0
";

/// KEYS: front prefix. ARGV: session, bid, now.
const SERVED: &str = r"
local skey = KEYS[1] .. 's:' .. ARGV[1]
local st = redis.call('HGET', skey, 'st')
if st and st ~= '' then return 'own' end
if redis.call('SCARD', KEYS[1] .. 'fs') > 0 then
  redis.call('HSET', skey, 'st', '', 'idle', ARGV[3])
  redis.call('SADD', KEYS[1] .. 'ss', ARGV[1])
  redis.call('ZADD', 'ws:idle', ARGV[3], ARGV[2] .. ':' .. ARGV[1])
  return 'shared'
end
return 'inactive'
";

/// KEYS: front prefix (or `ws:all:`). ARGV: session or empty, expiry, body, now, bid (0 for
/// all), cap. Returns the id, or -1 for an unknown session.
const PUBLISH: &str = r"
local now = tonumber(ARGV[4])
if ARGV[1] ~= '' then
  local skey = KEYS[1] .. 's:' .. ARGV[1]
  if redis.call('EXISTS', skey) == 0 then
    if redis.call('SCARD', KEYS[1] .. 'fs') == 0 then return -1 end
    redis.call('HSET', skey, 'st', '', 'idle', ARGV[4])
    redis.call('SADD', KEYS[1] .. 'ss', ARGV[1])
    redis.call('ZADD', 'ws:idle', ARGV[4], ARGV[5] .. ':' .. ARGV[1])
  end
end
local id = redis.call('INCR', 'ws:seq:ev')
local ttl = math.max(tonumber(ARGV[2]) - now, 1)
local function keep(key)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
local ev = KEYS[1] .. 'ev'
redis.call('XADD', ev, '0-' .. id, 's', ARGV[1], 'x', ARGV[2], 'b', ARGV[3])
keep(ev)
-- Over the cap, the oldest entries go, and the stream remembers up to where: a client that
-- resumes from before that is told that events were lost.
if redis.call('XLEN', ev) > tonumber(ARGV[6]) then
  redis.call('XTRIM', ev, 'MAXLEN', ARGV[6])
  local first = redis.call('XRANGE', ev, '-', '+', 'COUNT', 1)[1]
  local trimmed = tonumber(string.sub(first[1], 3)) - 1
  redis.call('SET', KEYS[1] .. 'trim', trimmed)
  keep(KEYS[1] .. 'trim')
end
if ARGV[5] ~= '0' then
  redis.call('ZADD', KEYS[1] .. 'und', id, id)
  keep(KEYS[1] .. 'und')
  if ARGV[1] ~= '' then
    redis.call('RPUSH', KEYS[1] .. 'sev:' .. ARGV[1], id)
    keep(KEYS[1] .. 'sev:' .. ARGV[1])
  end
end
local session = ARGV[1]
if session == '' then session = '-' end
redis.call('PUBLISH', 'ws:ev', id .. ' ' .. ARGV[5] .. ' ' .. session .. ' ' .. ARGV[3])
return id
";

/// KEYS: the idempotency key. ARGV: its TTL (ms). Returns what the key holds, or claims it
/// (`-`, under way) and returns nil. One script: `SET NX GET` needs Redis 7.
static CLAIM_PUBLISH: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
local kept = redis.call('GET', KEYS[1])
if kept then return kept end
redis.call('SET', KEYS[1], '-', 'PX', ARGV[1])
return false
",
    )
});

/// KEYS: front prefix. ARGV: session, bid, cutoff. Forgets a session idle since the cutoff or
/// before, with the events still waiting for it. Returns how many events went.
const FORGET: &str = r"
local skey = KEYS[1] .. 's:' .. ARGV[1]
redis.call('ZREM', 'ws:idle', ARGV[2] .. ':' .. ARGV[1])
local s = redis.call('HMGET', skey, 'st', 'idle')
if s[1] and s[1] ~= '' then return -1 end
if s[2] and s[2] ~= '' and tonumber(s[2]) > tonumber(ARGV[3]) then return -1 end
local sev = KEYS[1] .. 'sev:' .. ARGV[1]
local ids = redis.call('LRANGE', sev, 0, -1)
local gone = 0
for _, id in ipairs(ids) do
  gone = gone + redis.call('XDEL', KEYS[1] .. 'ev', '0-' .. id)
  redis.call('ZREM', KEYS[1] .. 'und', id)
end
redis.call('DEL', sev, skey)
redis.call('SREM', KEYS[1] .. 'ss', ARGV[1])
return gone
";

/// KEYS: front prefix. ARGV: session or empty (every session), bid, now. Ends the active
/// streams as `CLOSE` does and tells each holder (`end <stream>`). Returns `{'ok', stream,
/// node, …}` for the streams it ended, or `{'nosession'}`.
const DISCONNECT: &str = r"
local streams = {}
if ARGV[1] ~= '' then
  local skey = KEYS[1] .. 's:' .. ARGV[1]
  if redis.call('EXISTS', skey) == 0 then return {'nosession'} end
  local st = redis.call('HGET', skey, 'st')
  if st and st ~= '' then streams = {st} end
else
  streams = redis.call('SMEMBERS', KEYS[1] .. 'act')
end
local out = {'ok'}
for _, stream in ipairs(streams) do
  local st = KEYS[1] .. 'st:' .. stream
  local rec = redis.call('HMGET', st, 'session', 'node')
  redis.call('DEL', st)
  redis.call('SREM', KEYS[1] .. 'fs', stream)
  redis.call('SREM', KEYS[1] .. 'act', stream)
  if rec[1] then
    local skey = KEYS[1] .. 's:' .. rec[1]
    if redis.call('HGET', skey, 'st') == stream then
      redis.call('HSET', skey, 'st', '', 'idle', ARGV[3])
      redis.call('ZADD', 'ws:idle', ARGV[3], ARGV[2] .. ':' .. rec[1])
    end
  end
  if rec[2] then
    redis.call('PUBLISH', 'ws:node:' .. rec[2], 'end ' .. stream)
    table.insert(out, stream)
    table.insert(out, rec[2])
  end
end
return out
";

/// KEYS: front prefix. Returns `{session, st, since, idle, …}` of the front's known sessions,
/// dropping from the index those whose hash is gone.
const PRESENCE: &str = r"
local out = {}
for _, session in ipairs(redis.call('SMEMBERS', KEYS[1] .. 'ss')) do
  local h = redis.call('HMGET', KEYS[1] .. 's:' .. session, 'st', 'since', 'idle')
  if not h[1] and not h[3] then
    redis.call('SREM', KEYS[1] .. 'ss', session)
  else
    table.insert(out, session)
    table.insert(out, h[1] or '')
    table.insert(out, h[2] or '')
    table.insert(out, h[3] or '')
  end
end
return out
";

struct Scripts {
    register: Script,
    back: Script,
    activate: Script,
    close: Script,
    served: Script,
    publish: Script,
    forget: Script,
    disconnect: Script,
    presence: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            register: Script::new(REGISTER),
            back: Script::new(BACK_IDENTITY),
            activate: Script::new(ACTIVATE),
            close: Script::new(CLOSE),
            served: Script::new(SERVED),
            publish: Script::new(PUBLISH),
            forget: Script::new(FORGET),
            disconnect: Script::new(DISCONNECT),
            presence: Script::new(PRESENCE),
        }
    }
}

struct Shared {
    client: Client,
    conn: ConnectionManager,
    scripts: Scripts,
    /// This instance's name, once the service started the engine.
    node: Mutex<Option<NodeId>>,
    /// The subscription task.
    task: Mutex<Option<JoinHandle<()>>>,
    /// This instance's streams, told of their activation directly when it happens here.
    feed: Mutex<Option<Arc<dyn Feed>>>,
    /// Entries kept per event stream ([`STREAM_CAP`] unless set).
    cap: usize,
    /// The subscription is up (readiness: [`EventStore::ping`] fails while it is down).
    subscribed: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn node(&self) -> Option<NodeId> {
        lock(&self.node).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain values replaced in single steps: a panic elsewhere cannot leave them half-changed.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Redis engine; cheap to clone.
#[derive(Clone)]
pub struct RedisEngine {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisEngine(..)")
    }
}

impl RedisEngine {
    /// Connects to the Redis at `url` and checks that it keeps what events need: a server whose
    /// `maxmemory-policy` is not `noeviction` is refused.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_cap(url, STREAM_CAP).await
    }

    /// [`RedisEngine::connect`], keeping at most `cap` events per front (the oldest are
    /// trimmed first, and a client resuming from before them is told events were lost).
    pub async fn connect_with_cap(url: &str, cap: usize) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let unavailable =
            |e: ::redis::RedisError| StoreError::Unavailable(format!("redis {shown}: {e}"));
        let client = Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let mut conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(unavailable)?;
        let policy: Result<Vec<String>, _> =
            ::redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async(&mut conn).await;
        match policy {
            Ok(pair) => {
                // `allkeys-*` evicts anything; `volatile-*` evicts keys with a TTL, and event
                // streams, sessions and claims all have one. Only `noeviction` keeps them.
                if let Some(policy) = pair.get(1).filter(|p| p.as_str() != "noeviction") {
                    return Err(StoreError::Unavailable(format!(
                        "redis {shown} has maxmemory-policy {policy}, which may evict the keys \
                         events need (they all have a TTL); set it to noeviction"
                    )));
                }
            }
            // Managed Redis services may refuse CONFIG; then the operator is trusted.
            Err(e) => tracing::warn!(error = %e, "cannot read redis maxmemory-policy"),
        }
        let shared = Shared {
            client,
            conn,
            scripts: Scripts::new(),
            node: Mutex::new(None),
            task: Mutex::new(None),
            feed: Mutex::new(None),
            subscribed: std::sync::atomic::AtomicBool::new(false),
            cap: cap.max(1),
        };
        Ok(Self { shared: Arc::new(shared) })
    }

    fn conn(&self) -> ConnectionManager {
        self.shared.conn.clone()
    }
}

/// Milliseconds in Redis's text form.
fn ms(t: Timestamp) -> i64 {
    t.millis()
}

impl EventStore for RedisEngine {
    fn start(&self, feed: Arc<dyn Feed>, node: NodeId) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            *lock(&self.shared.node) = Some(node.clone());
            *lock(&self.shared.feed) = Some(feed.clone());
            let mut conn = self.conn();
            let seen: Option<i64> = ::redis::cmd("GET").arg(SEQ_EV).query_async(&mut conn).await?;
            beat(&mut conn, &node).await?;
            let (ready, subscribed) = tokio::sync::oneshot::channel();
            let subscriber = Subscriber {
                engine: self.clone(),
                feed,
                node,
                seen: seen.unwrap_or(0),
                ready: Some(ready),
            };
            *lock(&self.shared.task) = Some(tokio::spawn(subscriber.run()));
            // Streams open only once events reach this instance.
            match tokio::time::timeout(RESPONSE_TIMEOUT * 2, subscribed).await {
                Ok(Ok(())) => Ok(()),
                _ => Err(StoreError::Unavailable("could not subscribe to events".into())),
            }
        })
    }

    fn stop(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if let Some(task) = lock(&self.shared.task).take() {
                task.abort();
            }
            lock(&self.shared.feed).take();
            let Some(node) = self.shared.node() else { return Ok(()) };
            // The streams this instance held end now: their sessions are idle from now.
            let mut conn = self.conn();
            let held: Vec<String> =
                ::redis::cmd("SMEMBERS").arg(node_streams(&node)).query_async(&mut conn).await?;
            let now = Timestamp::now();
            for entry in held {
                if let Some((bid, stream)) = parse_held(&entry) {
                    self.close(&mut conn, bid, &stream, now).await?;
                }
            }
            ::redis::pipe()
                .del(node_streams(&node))
                .zrem(NODES, node.as_ref())
                .query_async::<()>(&mut conn)
                .await?;
            Ok(())
        })
    }

    fn back_identity(&self, fresh: BackRecord) -> StoreFuture<'_, BackRecord> {
        Box::pin(async move {
            let mut conn = self.conn();
            let (uuid, secret): (String, String) = self
                .shared
                .scripts
                .back
                .key(BACK)
                .arg(fresh.uuid.to_string())
                .arg(keys::encode_b64(&fresh.secret))
                .invoke_async(&mut conn)
                .await?;
            let uuid: BackUuid =
                uuid.parse().map_err(|_| StoreError::Corrupt(format!("{BACK} uuid")))?;
            let secret = keys::decode_b64(&secret)
                .ok()
                .and_then(|s| <[u8; 32]>::try_from(s.as_slice()).ok())
                .ok_or_else(|| StoreError::Corrupt(format!("{BACK} secret")))?;
            Ok(BackRecord { uuid, secret })
        })
    }

    fn register(
        &self,
        front: FrontUuid,
        key: PublicKey,
        now: Timestamp,
    ) -> StoreFuture<'_, Registration> {
        Box::pin(async move {
            let mut conn = self.conn();
            let (ok, bid): (i64, i64) = self
                .shared
                .scripts
                .register
                .key(front_key(front))
                .key(SEQ_BID)
                .arg(key.to_base64())
                .arg(front.to_string())
                .arg(ms(now))
                .invoke_async(&mut conn)
                .await?;
            Ok(if ok == 1 {
                Registration::Registered(FrontBid(bid))
            } else {
                Registration::Conflict
            })
        })
    }

    fn front(&self, front: FrontUuid) -> StoreFuture<'_, Option<FrontRow>> {
        Box::pin(async move { self.front_row(&mut self.conn(), front).await })
    }

    fn open_stream(&self, stream: OpenStream) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut conn = self.conn();
            let record = format!("{}st:{}", prefix(stream.front.bid), stream.stream);
            let ttl = stream.activation_timeout_ms.saturating_add(PENDING_MARGIN_MS);
            ::redis::pipe()
                .hset_multiple(
                    &record,
                    &[
                        ("session", stream.session.to_string()),
                        ("node", stream.node.to_string()),
                        ("scope", if stream.front_scope { "1" } else { "0" }.to_owned()),
                        ("act", "0".to_owned()),
                    ],
                )
                .pexpire(&record, ttl)
                .sadd(node_streams(&stream.node), held(stream.front.bid, stream.stream))
                .query_async::<()>(&mut conn)
                .await?;
            Ok(())
        })
    }

    fn activate_stream(
        &self,
        front: FrontUuid,
        stream: StreamUuid,
        max_active: usize,
        now: Timestamp,
    ) -> StoreFuture<'_, Result<Activation, ActivateRefusal>> {
        Box::pin(async move {
            let mut conn = self.conn();
            let Some(row) = self.front_row(&mut conn, front).await? else {
                return Ok(Err(ActivateRefusal::FrontNotRegistered));
            };
            let answer: Vec<String> = self
                .shared
                .scripts
                .activate
                .key(prefix(row.bid))
                .arg(stream.to_string())
                .arg(row.bid.0)
                .arg(ms(now))
                .arg(max_active)
                .arg(front.to_string())
                .invoke_async(&mut conn)
                .await?;
            match answer.first().map(String::as_str) {
                Some("ok") => {}
                Some("active") => return Ok(Err(ActivateRefusal::AlreadyActive)),
                Some("toomany") => {
                    let active = answer.get(1).and_then(|n| n.parse().ok()).unwrap_or(max_active);
                    return Ok(Err(ActivateRefusal::TooManyStreams(active)));
                }
                _ => return Ok(Err(ActivateRefusal::NotFound)),
            }
            let corrupt = || StoreError::Corrupt(format!("stream {stream} of front {}", row.bid.0));
            let session: SessionUuid =
                answer.get(1).and_then(|s| s.parse().ok()).ok_or_else(corrupt)?;
            let node: NodeId = Arc::from(answer.get(2).ok_or_else(corrupt)?.as_str());
            let replaced = match (answer.get(3), answer.get(4)) {
                (Some(old), Some(old_node)) if !old.is_empty() => {
                    old.parse().ok().map(|old: StreamUuid| (old, Arc::from(old_node.as_str())))
                }
                _ => None,
            };
            // The script told the holders through their channels; when one is this instance,
            // it acts now rather than after the round trip (acting twice is harmless).
            let me = self.shared.node();
            let feed = lock(&self.shared.feed).clone();
            if let Some(feed) = feed {
                if me.as_deref() == Some(&*node) {
                    feed.activated(stream);
                }
                if let Some((old, old_node)) = &replaced
                    && me.as_deref() == Some(&**old_node)
                {
                    feed.replaced(*old);
                }
            }
            Ok(Ok(Activation { front: row.bid, session, stream, node, replaced }))
        })
    }

    fn close_stream(
        &self,
        front: FrontBid,
        _session: SessionUuid,
        stream: StreamUuid,
        now: Timestamp,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut conn = self.conn();
            self.close(&mut conn, front, &stream.to_string(), now).await?;
            if let Some(node) = self.shared.node() {
                let _: () = ::redis::cmd("SREM")
                    .arg(node_streams(&node))
                    .arg(held(front, stream))
                    .query_async(&mut conn)
                    .await?;
            }
            Ok(())
        })
    }

    fn disconnect(
        &self,
        front: FrontUuid,
        session: Option<SessionUuid>,
        now: Timestamp,
    ) -> StoreFuture<'_, Result<usize, DisconnectRefusal>> {
        Box::pin(async move {
            let mut conn = self.conn();
            let Some(row) = self.front_row(&mut conn, front).await? else {
                return Ok(Err(DisconnectRefusal::FrontNotRegistered));
            };
            let answer: Vec<String> = self
                .shared
                .scripts
                .disconnect
                .key(prefix(row.bid))
                .arg(session.map(|s| s.to_string()).unwrap_or_default())
                .arg(row.bid.0)
                .arg(ms(now))
                .invoke_async(&mut conn)
                .await?;
            if answer.first().map(String::as_str) != Some("ok") {
                return Ok(Err(DisconnectRefusal::SessionNotFound));
            }
            let ended = answer.get(1..).unwrap_or_default();
            // The script told the holders; the streams held here end now rather than after the
            // round trip (ending twice is harmless).
            let me = self.shared.node();
            let feed = lock(&self.shared.feed).clone();
            if let Some(feed) = feed {
                for pair in ended.chunks_exact(2) {
                    if me.as_deref() == Some(pair[1].as_str())
                        && let Ok(stream) = pair[0].parse::<StreamUuid>()
                    {
                        feed.replaced(stream);
                    }
                }
            }
            Ok(Ok(ended.len() / 2))
        })
    }

    fn presence(&self, front: FrontUuid, max: usize) -> StoreFuture<'_, Option<Presence>> {
        Box::pin(async move {
            let mut conn = self.conn();
            let Some(row) = self.front_row(&mut conn, front).await? else { return Ok(None) };
            let answer: Vec<String> =
                self.shared.scripts.presence.key(prefix(row.bid)).invoke_async(&mut conn).await?;
            let millis = |v: &str| v.parse::<i64>().ok().map(Timestamp::from_millis);
            let sessions = answer
                .chunks_exact(4)
                .map(|fields| {
                    let session = fields[0].parse().map_err(|_| {
                        StoreError::Corrupt(format!("a session of front {}", row.bid.0))
                    })?;
                    let active = !fields[1].is_empty();
                    let since = if active { millis(&fields[2]) } else { millis(&fields[3]) };
                    Ok(SessionPresence { session, active, since })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Some(Presence::from_unordered(sessions, max)))
        })
    }

    fn served(
        &self,
        front: FrontUuid,
        session: SessionUuid,
        now: Timestamp,
    ) -> StoreFuture<'_, Served> {
        Box::pin(async move {
            let mut conn = self.conn();
            let Some(row) = self.front_row(&mut conn, front).await? else {
                return Ok(Served::FrontNotRegistered);
            };
            let answer: String = self
                .shared
                .scripts
                .served
                .key(prefix(row.bid))
                .arg(session.to_string())
                .arg(row.bid.0)
                .arg(ms(now))
                .invoke_async(&mut conn)
                .await?;
            Ok(match answer.as_str() {
                "own" => Served::Own(row),
                "shared" => Served::Shared(row),
                _ => Served::Inactive,
            })
        })
    }

    fn publish(&self, event: NewEvent) -> StoreFuture<'_, Result<i64, PublishRefusal>> {
        Box::pin(async move {
            let mut conn = self.conn();
            let (key, bid) = match event.front {
                Some(bid) => (prefix(bid), bid.0),
                None => (ALL.to_owned(), 0),
            };
            let id: i64 = self
                .shared
                .scripts
                .publish
                .key(key)
                .arg(event.session.map(|s| s.to_string()).unwrap_or_default())
                .arg(ms(event.expires_at))
                .arg(event.body)
                .arg(ms(event.now))
                .arg(bid)
                .arg(self.shared.cap)
                .invoke_async(&mut conn)
                .await?;
            Ok(if id < 0 { Err(PublishRefusal::SessionNotFound) } else { Ok(id) })
        })
    }

    fn replay(&self, request: ReplayRequest) -> StoreFuture<'_, ReplayPage> {
        Box::pin(async move {
            let mut conn = self.conn();
            match request.since {
                Since::Id(seen) => {
                    let last: Option<i64> =
                        ::redis::cmd("GET").arg(SEQ_EV).query_async(&mut conn).await?;
                    if seen > last.unwrap_or(0) {
                        let mut page = self
                            .replay_undelivered(
                                &mut conn,
                                &ReplayRequest { since: Since::Undelivered(0), ..request },
                            )
                            .await?;
                        page.reset = true;
                        return Ok(page);
                    }
                    self.replay_after(&mut conn, &request, seen).await
                }
                Since::Undelivered(_) => self.replay_undelivered(&mut conn, &request).await,
            }
        })
    }

    fn claim_direct(
        &self,
        front: FrontBid,
        event: EventUuid,
        keep_until: Timestamp,
        now: Timestamp,
    ) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let mut conn = self.conn();
            let key = format!("{}seen:{event}", prefix(front));
            let set: Option<String> = ::redis::cmd("SET")
                .arg(key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg((ms(keep_until) - ms(now)).max(1))
                .query_async(&mut conn)
                .await?;
            Ok(set.is_some())
        })
    }

    fn release_direct(&self, front: FrontBid, event: EventUuid) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut conn = self.conn();
            let key = format!("{}seen:{event}", prefix(front));
            let _: () = ::redis::cmd("DEL").arg(key).query_async(&mut conn).await?;
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
        Box::pin(async move {
            let mut conn = self.conn();
            let kept: Option<String> = CLAIM_PUBLISH
                .key(format!("{}idem:{key}", prefix(front)))
                .arg((ms(keep_until) - ms(now)).max(1))
                .invoke_async(&mut conn)
                .await?;
            Ok(match kept.as_deref() {
                None => IdempotencyClaim::Claimed,
                Some("-") => IdempotencyClaim::InProgress,
                Some(id) => IdempotencyClaim::Published(id.parse().map_err(|_| {
                    StoreError::Corrupt(format!("idempotency record {id:?} of front {}", front.0))
                })?),
            })
        })
    }

    fn settle_publish(
        &self,
        front: FrontBid,
        key: String,
        id: Option<i64>,
        keep_until: Timestamp,
        now: Timestamp,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut conn = self.conn();
            let key = format!("{}idem:{key}", prefix(front));
            let cmd = match id {
                Some(id) => {
                    let mut set = ::redis::cmd("SET");
                    set.arg(key).arg(id).arg("PX").arg((ms(keep_until) - ms(now)).max(1));
                    set
                }
                None => {
                    let mut del = ::redis::cmd("DEL");
                    del.arg(key);
                    del
                }
            };
            let _: () = cmd.query_async(&mut conn).await?;
            Ok(())
        })
    }

    fn sweep(&self, cutoffs: Cutoffs) -> StoreFuture<'_, Swept> {
        Box::pin(async move {
            let mut conn = self.conn();
            let node = self.shared.node().unwrap_or_else(|| Arc::from("-"));
            // One instance sweeps at a time; the lock lapses by itself if it dies meanwhile.
            let took: Option<String> = ::redis::cmd("SET")
                .arg(SWEEPER)
                .arg(node.as_ref())
                .arg("NX")
                .arg("PX")
                .arg(60_000)
                .query_async(&mut conn)
                .await?;
            if took.is_none() {
                return Ok(Swept::default());
            }
            let result = self.sweep_now(&mut conn, cutoffs).await;
            let _: () = ::redis::cmd("DEL").arg(SWEEPER).query_async(&mut conn).await?;
            result
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut conn = self.conn();
            let _: String = ::redis::cmd("PING").query_async(&mut conn).await?;
            let started = lock(&self.shared.task).is_some();
            if started && !self.shared.subscribed.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(StoreError::Unavailable("the event subscription is down".into()));
            }
            Ok(())
        })
    }
}

/// How a stream is listed in its instance's set: `<bid> <stream>`.
fn held(front: FrontBid, stream: StreamUuid) -> String {
    format!("{} {stream}", front.0)
}

fn parse_held(entry: &str) -> Option<(FrontBid, String)> {
    let (bid, stream) = entry.split_once(' ')?;
    Some((FrontBid(bid.parse().ok()?), stream.to_owned()))
}

/// Shows that `node` lives.
async fn beat(conn: &mut ConnectionManager, node: &str) -> Result<(), StoreError> {
    let _: () = ::redis::cmd("ZADD")
        .arg(NODES)
        .arg(ms(Timestamp::now()))
        .arg(node)
        .query_async(conn)
        .await?;
    Ok(())
}

/// An entry of an event stream, as read.
struct Entry {
    id: i64,
    session: String,
    expires: i64,
    body: String,
}

/// Parses the reply of `XRANGE`: `[[id, [field, value, …]], …]`.
fn entries(reply: Value) -> Vec<Entry> {
    let Value::Array(items) = reply else { return Vec::new() };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(mut parts) = item else { return None };
            let fields = parts.pop()?;
            let id: String = ::redis::from_redis_value(parts.pop()?).ok()?;
            let id: i64 = id.strip_prefix("0-")?.parse().ok()?;
            let fields: Vec<String> = ::redis::from_redis_value(fields).ok()?;
            let mut entry = Entry { id, session: String::new(), expires: 0, body: String::new() };
            for pair in fields.chunks(2) {
                match (pair.first().map(String::as_str), pair.get(1)) {
                    (Some("s"), Some(v)) => entry.session.clone_from(v),
                    (Some("x"), Some(v)) => entry.expires = v.parse().unwrap_or(0),
                    (Some("b"), Some(v)) => entry.body.clone_from(v),
                    _ => {}
                }
            }
            Some(entry)
        })
        .collect()
}

impl RedisEngine {
    async fn front_row(
        &self,
        conn: &mut ConnectionManager,
        front: FrontUuid,
    ) -> Result<Option<FrontRow>, StoreError> {
        let (bid, key): (Option<i64>, Option<String>) = ::redis::cmd("HMGET")
            .arg(front_key(front))
            .arg("bid")
            .arg("key")
            .query_async(conn)
            .await?;
        let (Some(bid), Some(key)) = (bid, key) else { return Ok(None) };
        let key: PublicKey =
            key.parse().map_err(|_| StoreError::Corrupt(format!("key of front {front}")))?;
        Ok(Some(FrontRow { bid: FrontBid(bid), key }))
    }

    async fn close(
        &self,
        conn: &mut ConnectionManager,
        front: FrontBid,
        stream: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let _: i64 = self
            .shared
            .scripts
            .close
            .key(prefix(front))
            .arg(stream)
            .arg(front.0)
            .arg(ms(now))
            .invoke_async(conn)
            .await?;
        Ok(())
    }

    /// Reads entries of `key` after `after`, at most `count`.
    async fn range(
        conn: &mut ConnectionManager,
        key: &str,
        after: i64,
        count: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let reply: Value = ::redis::cmd("XRANGE")
            .arg(key)
            .arg(format!("(0-{after}"))
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(conn)
            .await?;
        Ok(entries(reply))
    }

    /// A page after `seen` from the front's stream and the all-fronts stream, merged by id.
    async fn replay_after(
        &self,
        conn: &mut ConnectionManager,
        request: &ReplayRequest,
        seen: i64,
    ) -> Result<ReplayPage, StoreError> {
        let n = request.max_events.max(1);
        let (own_trim, all_trim): (Option<i64>, Option<i64>) = ::redis::pipe()
            .get(format!("{}trim", prefix(request.front)))
            .get(format!("{ALL}trim"))
            .query_async(conn)
            .await?;
        let lost = own_trim.is_some_and(|t| t > seen) || all_trim.is_some_and(|t| t > seen);
        let own = Self::range(conn, &format!("{}ev", prefix(request.front)), seen, n).await?;
        let all = Self::range(conn, &format!("{ALL}ev"), seen, n).await?;
        // A source that filled its page may hold more past its last entry: merge only up to
        // the lowest such last id, so no id is skipped.
        let limit = [&own, &all]
            .iter()
            .filter(|source| source.len() >= n)
            .filter_map(|source| source.last().map(|e| e.id))
            .min();
        let mut merged: BTreeMap<i64, Entry> = BTreeMap::new();
        for entry in own.into_iter().chain(all) {
            if limit.is_none_or(|limit| entry.id <= limit) {
                merged.insert(entry.id, entry);
            }
        }
        let last_read = merged.keys().next_back().copied();
        let mut events = self.keep(merged.into_values(), request);
        let cut = cap_page(&mut events, request.max_bytes);
        let next = match (cut, events.last(), last_read) {
            (true, Some(last), _) => Since::Id(last.id),
            (_, _, Some(read)) => Since::Id(read),
            _ => request.since,
        };
        Ok(ReplayPage { events, next, done: limit.is_none() && !cut, reset: false, lost })
    }

    /// A page of the events no stream was given, marked given as they are read.
    async fn replay_undelivered(
        &self,
        conn: &mut ConnectionManager,
        request: &ReplayRequest,
    ) -> Result<ReplayPage, StoreError> {
        let Since::Undelivered(after) = request.since else {
            return Err(StoreError::Corrupt("an undelivered replay without its cursor".into()));
        };
        let p = prefix(request.front);
        let n = request.max_events.max(1);
        let ids: Vec<i64> = ::redis::cmd("ZRANGEBYSCORE")
            .arg(format!("{p}und"))
            .arg(format!("({after}"))
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(n)
            .query_async(conn)
            .await?;
        let mut pipe = ::redis::pipe();
        for id in &ids {
            pipe.cmd("XRANGE").arg(format!("{p}ev")).arg(format!("0-{id}")).arg(format!("0-{id}"));
        }
        let replies: Vec<Value> =
            if ids.is_empty() { Vec::new() } else { pipe.query_async(conn).await? };
        let found: Vec<Entry> = replies.into_iter().flat_map(entries).collect();
        // Ids whose event is gone (expired, trimmed, or its tab forgotten) are dropped from the
        // set; events for another tab stay undelivered for it.
        let missing: Vec<i64> =
            ids.iter().copied().filter(|id| !found.iter().any(|e| e.id == *id)).collect();
        let mut events = self.keep(found, request);
        let cut = cap_page(&mut events, request.max_bytes);
        let marks: Vec<i64> = events.iter().map(|e| e.id).chain(missing).collect();
        if !marks.is_empty() {
            let _: () =
                ::redis::cmd("ZREM").arg(format!("{p}und")).arg(marks).query_async(conn).await?;
        }
        let read_up_to = if cut { events.last().map(|e| e.id) } else { ids.last().copied() };
        let next = Since::Undelivered(read_up_to.unwrap_or(after));
        Ok(ReplayPage { events, next, done: ids.len() < n && !cut, reset: false, lost: false })
    }

    /// The entries a stream of `request` may have: unexpired, for its session or for all.
    fn keep(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        request: &ReplayRequest,
    ) -> Vec<StoredEvent> {
        let now = ms(request.now);
        let session = request.session.map(|s| s.to_string());
        entries
            .into_iter()
            .filter(|e| e.expires > now)
            .filter(|e| match &session {
                Some(session) => e.session.is_empty() || e.session == *session,
                None => true,
            })
            .map(|e| StoredEvent {
                id: e.id,
                front: Some(request.front),
                session: e.session.parse().ok(),
                body: Arc::from(e.body),
            })
            .collect()
    }

    async fn sweep_now(
        &self,
        conn: &mut ConnectionManager,
        cutoffs: Cutoffs,
    ) -> Result<Swept, StoreError> {
        let Cutoffs { now, idle: idle_cutoff, front: front_cutoff } = cutoffs;
        let mut swept = Swept::default();
        // Instances that stopped showing signs of life: their streams are gone.
        let dead_before = ms(now) - i64::try_from(NODE_DEAD_AFTER.as_millis()).unwrap_or(0);
        let dead: Vec<String> = ::redis::cmd("ZRANGEBYSCORE")
            .arg(NODES)
            .arg("-inf")
            .arg(dead_before)
            .query_async(conn)
            .await?;
        for node in dead {
            let held: Vec<String> =
                ::redis::cmd("SMEMBERS").arg(node_streams(&node)).query_async(conn).await?;
            for entry in held {
                if let Some((bid, stream)) = parse_held(&entry) {
                    self.close(conn, bid, &stream, now).await?;
                }
            }
            ::redis::pipe()
                .del(node_streams(&node))
                .zrem(NODES, &node)
                .query_async::<()>(conn)
                .await?;
            tracing::info!(node, "an instance stopped answering; its streams are ended");
        }
        loop {
            let idle: Vec<String> = ::redis::cmd("ZRANGEBYSCORE")
                .arg("ws:idle")
                .arg("-inf")
                .arg(ms(idle_cutoff))
                .arg("LIMIT")
                .arg(0)
                .arg(SWEEP_BATCH)
                .query_async(conn)
                .await?;
            let batch = idle.len();
            for member in idle {
                let Some((bid, session)) = member.split_once(':') else {
                    let _: () =
                        ::redis::cmd("ZREM").arg("ws:idle").arg(&member).query_async(conn).await?;
                    continue;
                };
                let Ok(bid) = bid.parse::<i64>() else { continue };
                let gone: i64 = self
                    .shared
                    .scripts
                    .forget
                    .key(prefix(FrontBid(bid)))
                    .arg(session)
                    .arg(bid)
                    .arg(ms(idle_cutoff))
                    .invoke_async(conn)
                    .await?;
                if gone >= 0 {
                    swept.sessions += 1;
                    swept.events += usize::try_from(gone).unwrap_or(0);
                }
            }
            if isize::try_from(batch).unwrap_or(0) < SWEEP_BATCH {
                break;
            }
        }
        // Fronts without a stream activated since the cutoff and none active now.
        let idle_fronts: Vec<String> = ::redis::cmd("ZRANGEBYSCORE")
            .arg("ws:fronts:seen")
            .arg("-inf")
            .arg(ms(front_cutoff))
            .arg("LIMIT")
            .arg(0)
            .arg(SWEEP_BATCH)
            .query_async(conn)
            .await?;
        for uuid in idle_fronts {
            let key = format!("ws:front:{uuid}");
            let bid: Option<i64> =
                ::redis::cmd("HGET").arg(&key).arg("bid").query_async(conn).await?;
            if let Some(bid) = bid {
                let active: usize = ::redis::cmd("SCARD")
                    .arg(format!("{}act", prefix(FrontBid(bid))))
                    .query_async(conn)
                    .await?;
                if active > 0 {
                    continue;
                }
                let _: () = ::redis::cmd("DEL").arg(&key).query_async(conn).await?;
                swept.fronts += 1;
            }
            let _: () =
                ::redis::cmd("ZREM").arg("ws:fronts:seen").arg(&uuid).query_async(conn).await?;
        }
        Ok(swept)
    }
}

/// The subscription of one instance: committed events and its streams' activations.
struct Subscriber {
    engine: RedisEngine,
    feed: Arc<dyn Feed>,
    node: NodeId,
    /// Every event up to this id was handed to the feed (or belongs to no local front).
    seen: i64,
    /// Told once the first subscription is up.
    ready: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Subscriber {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.subscribed().await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    self.engine
                        .shared
                        .subscribed
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(error = %e, "event subscription lost; resubscribing");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Subscribes, catches up, then follows the messages until the connection breaks.
    async fn subscribed(&mut self) -> Result<(), StoreError> {
        let mut pubsub = self.engine.shared.client.get_async_pubsub().await?;
        pubsub.subscribe(EVENTS_CHANNEL).await?;
        pubsub.subscribe(node_channel(&self.node)).await?;
        // Published while no subscription listened: read from the streams.
        self.catch_up().await?;
        self.engine.shared.subscribed.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(());
        }
        let mut messages = pubsub.into_on_message();
        // The first check one tick from now: the catch-up just above covered the present.
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else {
                        return Err(StoreError::Unavailable("the subscription ended".into()));
                    };
                    let Ok(payload) = message.get_payload::<String>() else { continue };
                    if message.get_channel_name() == EVENTS_CHANNEL {
                        self.on_event(&payload).await?;
                    } else {
                        self.on_node_message(&payload);
                    }
                }
                _ = ticks.tick() => {
                    let mut conn = self.engine.conn();
                    beat(&mut conn, &self.node).await?;
                    let last: Option<i64> =
                        ::redis::cmd("GET").arg(SEQ_EV).query_async(&mut conn).await?;
                    if last.unwrap_or(0) > self.seen {
                        self.catch_up().await?;
                    }
                }
            }
        }
    }

    fn on_node_message(&self, payload: &str) {
        let Some((verb, stream)) = payload.split_once(' ') else { return };
        let Ok(stream) = stream.parse::<StreamUuid>() else { return };
        match verb {
            "act" => self.feed.activated(stream),
            "end" => self.feed.replaced(stream),
            _ => {}
        }
    }

    async fn on_event(&mut self, payload: &str) -> Result<(), StoreError> {
        let mut parts = payload.splitn(4, ' ');
        let (Some(id), Some(bid), Some(session), Some(body)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(());
        };
        let (Ok(id), Ok(bid)) = (id.parse::<i64>(), bid.parse::<i64>()) else { return Ok(()) };
        if id <= self.seen {
            return Ok(());
        }
        if id > self.seen + 1 {
            // A message was lost: what it carried is in the streams.
            return self.catch_up().await;
        }
        self.seen = id;
        let event = StoredEvent {
            id,
            front: (bid != 0).then_some(FrontBid(bid)),
            session: session.parse().ok(),
            body: Arc::from(body),
        };
        self.deliver(&event);
        Ok(())
    }

    fn deliver(&self, event: &StoredEvent) {
        let taken = self.feed.event(event);
        if let (true, Some(front)) = (taken > 0, event.front) {
            // Delivered: a stream that opens without Last-Event-ID does not get it again.
            let mut conn = self.engine.conn();
            let (key, id) = (format!("{}und", prefix(front)), event.id);
            tokio::spawn(async move {
                let marked: Result<(), _> =
                    ::redis::cmd("ZREM").arg(key).arg(id).query_async(&mut conn).await;
                if let Err(e) = marked {
                    tracing::debug!(error = %e, "could not mark an event delivered");
                }
            });
        }
    }

    /// Hands over every event after `seen` of the fronts this instance holds streams of.
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        let mut conn = self.engine.conn();
        let last: Option<i64> = ::redis::cmd("GET").arg(SEQ_EV).query_async(&mut conn).await?;
        let last = last.unwrap_or(0);
        if last <= self.seen {
            return Ok(());
        }
        let mut merged: BTreeMap<i64, StoredEvent> = BTreeMap::new();
        let count = STREAM_CAP;
        for front in self.feed.local_fronts() {
            for e in
                RedisEngine::range(&mut conn, &format!("{}ev", prefix(front)), self.seen, count)
                    .await?
            {
                let session = e.session.parse().ok();
                merged.insert(
                    e.id,
                    StoredEvent { id: e.id, front: Some(front), session, body: Arc::from(e.body) },
                );
            }
        }
        for e in RedisEngine::range(&mut conn, &format!("{ALL}ev"), self.seen, count).await? {
            merged.insert(
                e.id,
                StoredEvent { id: e.id, front: None, session: None, body: Arc::from(e.body) },
            );
        }
        let caught = merged.len();
        for event in merged.values() {
            self.deliver(event);
        }
        self.seen = merged.keys().next_back().copied().unwrap_or(last).max(last);
        if caught > 0 {
            tracing::info!(events = caught, "caught up on events the subscription missed");
        }
        Ok(())
    }
}
