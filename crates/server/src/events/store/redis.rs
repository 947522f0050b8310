//! The Redis engine: the event store of a cluster. Every instance on one Redis acts as one
//! backend; any instance serves any request.
//!
//! ## Keys
//! | key | type | holds |
//! |---|---|---|
//! | `ws:back` | hash | the back's identity (`uuid`, `secret`), made once by the first instance |
//! | `ws:front:<uuid>` | hash | `bid`, `key` of a registered front |
//! | `ws:seq:bid` | counter | frontBids |
//! | `ws:{f:<bid>}:seq` | counter | the front's event ids (kept while the front is) |
//! | `ws:{f:<bid>}:ev` | stream | the front's events, entry id `0-<event id>`; fields `s` (session or empty), `x` (expiry, ms), `b` (body) |
//! | `ws:{f:<bid>}:allpos` | string | the last event for every front copied into the front's stream |
//! | `ws:{all}:seq`, `ws:{all}:ev` | counter, stream | events for every front, with ids of their own, as published |
//! | `ws:{f:<bid>}:trim`, `ws:{all}:trim` | string | the highest id trimmed from the stream by its cap |
//! | `ws:{f:<bid>}:und` | sorted set | ids of the front's events no stream was given yet |
//! | `ws:{f:<bid>}:sev:<session>` | list | ids of a tab's events, deleted with the tab |
//! | `ws:{f:<bid>}:s:<session>` | hash | a session: `st` (its active stream or empty), `node`, `since` (when `st` was activated, ms), `idle` (ms or empty) |
//! | `ws:{f:<bid>}:ss` | set | the front's known sessions, for presence (a member whose hash is gone is dropped when read; a session kept from before this index is listed from its next activation) |
//! | `ws:{f:<bid>}:st:<stream>` | hash | an open stream: `session`, `node`, `scope`, `act`; expires if never activated |
//! | `ws:{f:<bid>}:fs` | set | the front's active front-scoped streams |
//! | `ws:{f:<bid>}:act` | set | the front's active streams (for the per-front limit) |
//! | `ws:{f:<bid>}:seen:<uuid>` | string | a handled direct event, until its keeping time |
//! | `ws:{f:<bid>}:idem:<key>` | string | a server-API publish's idempotency key: its event id, or `-` while under way |
//! | `ws:fronts:seen` | sorted set | index: front UUIDs by their last activation (or registration), for pruning |
//! | `ws:idle` | sorted set | index: idle sessions (`<bid>:<session>`) by idle-since, for expiry |
//! | `ws:nodes`, `ws:node:<id>:st` | sorted set, set | instances by last sign of life; the streams each holds |
//! | `ws:sweeper` | string | which instance sweeps now (`SET NX PX`) |
//!
//! ## Redis Cluster
//! Every script and every pipeline touches the keys of one hash slot: a front's keys share the
//! hash tag `{f:<bid>}`, the events for every front `{all}`, and the rest are single keys. So
//! the engine runs alike on standalone Redis, Sentinel, or a Redis Cluster, where fronts spread
//! over the masters. That is why ids are per front, not one sequence for all: one counter
//! would put every publish on one slot. An event for every front is stored once, in
//! `ws:{all}:ev`, and copied into each front's stream, with the front's next id, when an
//! instance holding a stream of that front hears of it, and when a stream of a front opens
//! (`allpos` makes the copy happen once per front, whichever instances race to do it). So one
//! `Last-Event-ID` still resumes a tab exactly: everything it can get sits in its front's
//! stream, in one order. The two indexes (`ws:idle`, `ws:fronts:seen`) live outside the
//! fronts' slots and are written after a front's script, as hints: the sweep re-checks each
//! entry in the front's own slot, and changes them only by compare-and-set, so a late or
//! reordered index write never forgets a session that is still idle.
//!
//! ## Delivery
//! Each publish is one script on the front's slot: it takes the front's next id, appends the
//! event to the front's stream (capped at [`STREAM_CAP`] entries), extends the stream's life to
//! the event's expiry and publishes `<id> <bid> <session> <body>` on `ws:ev` (a publish for
//! every front: `<all id> 0 <expiry> <body>`, which makes each instance copy it into the fronts
//! it holds streams of, one script per front while the front is not behind). Every instance
//! subscribes to `ws:ev` and to `ws:node:<id>` (activations and replacements of the streams it
//! holds). A front's ids are consecutive and published in
//! the script that took them, so an instance sees each front's ids in a row: a gap means a lost
//! message, and the instance reads what it missed from that front's stream before going on. It
//! does the same after every (re)subscription and whenever a front's counter is ahead of what
//! it saw at a liveness tick, so a lost message costs at most one tick, never an event. An
//! instance starts following a front when a stream of it opens here, from the front's counter
//! read after the stream was registered: what came before is the stream's replay.
//!
//! ## Failures
//! Commands time out after [`RESPONSE_TIMEOUT`], so a request that needs a Redis that is down
//! answers `503 store_unavailable` instead of hanging; the connection comes back by itself.
//! An instance that dies leaves its streams in Redis: once it has shown no sign of life for
//! [`NODE_DEAD_AFTER`], a sweep makes their sessions idle. Redis must not evict keys: a
//! `maxmemory-policy` other than `noeviction` is refused at start (`volatile-*` evicts keys
//! with a TTL, which every key of events has).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::{Script, Value};
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
use crate::redis_link::{self, RedisConn, RedisTarget};

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

const SEQ_BID: &str = "ws:seq:bid";
const BACK: &str = "ws:back";
/// The key prefix of the events for every front (one slot of their own).
const ALL: &str = "ws:{all}:";
const EVENTS_CHANNEL: &str = "ws:ev";
const NODES: &str = "ws:nodes";
const SWEEPER: &str = "ws:sweeper";
/// Index of idle sessions (`<bid>:<session>` by idle-since), written after the fronts' scripts.
const IDLE: &str = "ws:idle";
/// Index of fronts by last activation or registration, written after the fronts' scripts.
const FRONTS_SEEN: &str = "ws:fronts:seen";
/// Events for every front copied into a front's stream per script at most.
const COPY_PAGE: usize = 256;
/// Fronts an instance checks or copies into at once (over its one multiplexed connection).
const FRONTS_AT_ONCE: usize = 32;

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

/// How a session is listed in [`IDLE`].
fn idle_member(front: FrontBid, session: &str) -> String {
    format!("{}:{session}", front.0)
}

/// Lua shared by the scripts that append events: `append(prefix, session, expiry, body, now,
/// cap, undelivered, bid)` takes the stream's next id, appends, trims to the cap (remembering
/// up to where), extends the keys' lives to the event's expiry, and announces the event.
macro_rules! append_lua {
    () => {
        r"
local function keep(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
local function append(p, session, expiry, body, now, cap, undelivered, bid, shown)
  local seq, ev = p .. 'seq', p .. 'ev'
  -- A stream kept from before the per-front counter goes on from its last id.
  if redis.call('EXISTS', seq) == 0 then
    local top = redis.call('XREVRANGE', ev, '+', '-', 'COUNT', 1)[1]
    if top then redis.call('SET', seq, string.sub(top[1], 3)) end
  end
  local id = redis.call('INCR', seq)
  local ttl = math.max(tonumber(expiry) - now, 1)
  redis.call('XADD', ev, '0-' .. id, 's', session, 'x', expiry, 'b', body)
  keep(ev, ttl)
  -- Over the cap, the oldest entries go, and the stream remembers up to where: a client that
  -- resumes from before that is told that events were lost.
  if redis.call('XLEN', ev) > cap then
    redis.call('XTRIM', ev, 'MAXLEN', cap)
    local first = redis.call('XRANGE', ev, '-', '+', 'COUNT', 1)[1]
    local trimmed = tonumber(string.sub(first[1], 3)) - 1
    if trimmed > tonumber(redis.call('GET', p .. 'trim') or '0') then
      redis.call('SET', p .. 'trim', trimmed)
    end
  end
  if undelivered then
    redis.call('ZADD', p .. 'und', id, id)
    keep(p .. 'und', ttl)
    if session ~= '' then
      redis.call('RPUSH', p .. 'sev:' .. session, id)
      keep(p .. 'sev:' .. session, ttl)
    end
  end
  shown = shown or session
  if shown == '' then shown = '-' end
  redis.call('PUBLISH', 'ws:ev', id .. ' ' .. bid .. ' ' .. shown .. ' ' .. body)
  return id
end
"
    };
}

/// KEYS: front key. ARGV: public key, the bid to give if the front is new. Returns `{ok,
/// bid, new}`.
const REGISTER: &str = r"
local bid = redis.call('HGET', KEYS[1], 'bid')
if bid then
  if redis.call('HGET', KEYS[1], 'key') == ARGV[1] then return {1, tonumber(bid), 0} end
  return {0, 0, 0}
end
redis.call('HSET', KEYS[1], 'bid', ARGV[2], 'key', ARGV[1])
return {1, tonumber(ARGV[2]), 1}
";

/// KEYS: back key. ARGV: uuid, secret.
const BACK_IDENTITY: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'uuid', ARGV[1], 'secret', ARGV[2])
end
return redis.call('HMGET', KEYS[1], 'uuid', 'secret')
";

/// KEYS: front prefix. ARGV: stream, now, most active streams.
const ACTIVATE: &str = r"
local st = KEYS[1] .. 'st:' .. ARGV[1]
local rec = redis.call('HMGET', st, 'session', 'node', 'scope', 'act')
if not rec[1] then return {'notfound'} end
if rec[4] == '1' then return {'active'} end
local skey = KEYS[1] .. 's:' .. rec[1]
local prev = redis.call('HMGET', skey, 'st', 'node')
local replacing = prev[1] and prev[1] ~= ''
local active = redis.call('SCARD', KEYS[1] .. 'act')
if not replacing and active >= tonumber(ARGV[3]) then return {'toomany', tostring(active)} end
redis.call('HSET', st, 'act', '1')
redis.call('PERSIST', st)
redis.call('SADD', KEYS[1] .. 'act', ARGV[1])
redis.call('HSET', skey, 'st', ARGV[1], 'node', rec[2], 'since', ARGV[2], 'idle', '')
redis.call('SADD', KEYS[1] .. 'ss', rec[1])
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

/// KEYS: front prefix. ARGV: stream, now. Forgets the stream; its session is idle from now if
/// it was the session's active stream: then returns the session (for the idle index).
const CLOSE: &str = r"
local st = KEYS[1] .. 'st:' .. ARGV[1]
local session = redis.call('HGET', st, 'session')
redis.call('DEL', st)
redis.call('SREM', KEYS[1] .. 'fs', ARGV[1])
redis.call('SREM', KEYS[1] .. 'act', ARGV[1])
if not session then return false end
local skey = KEYS[1] .. 's:' .. session
if redis.call('HGET', skey, 'st') == ARGV[1] then
  redis.call('HSET', skey, 'st', '', 'idle', ARGV[2])
  return session
end
return false
";

/// KEYS: front prefix. ARGV: session, now.
const SERVED: &str = r"
local skey = KEYS[1] .. 's:' .. ARGV[1]
local st = redis.call('HGET', skey, 'st')
if st and st ~= '' then return 'own' end
if redis.call('SCARD', KEYS[1] .. 'fs') > 0 then
  redis.call('HSET', skey, 'st', '', 'idle', ARGV[2])
  redis.call('SADD', KEYS[1] .. 'ss', ARGV[1])
  return 'shared'
end
return 'inactive'
";

/// KEYS: front prefix. ARGV: session or empty, expiry, body, now, bid, cap. Returns `{id,
/// idle}`: the id, or -1 for an unknown session; `idle` 1 when the session was made here
/// (idle: the caller indexes it).
const PUBLISH: &str = concat!(
    append_lua!(),
    r"
local idle = 0
if ARGV[1] ~= '' then
  local skey = KEYS[1] .. 's:' .. ARGV[1]
  if redis.call('EXISTS', skey) == 0 then
    if redis.call('SCARD', KEYS[1] .. 'fs') == 0 then return {-1, 0} end
    redis.call('HSET', skey, 'st', '', 'idle', ARGV[4])
    redis.call('SADD', KEYS[1] .. 'ss', ARGV[1])
    idle = 1
  end
end
local id = append(KEYS[1], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[6]),
  true, ARGV[5])
return {id, idle}
"
);

/// KEYS: the prefix of the events for every front. ARGV: expiry, body, now, cap. Returns the
/// id in that stream.
const PUBLISH_ALL: &str = concat!(
    append_lua!(),
    r"
return append(KEYS[1], '', ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), false, '0',
  ARGV[1])
"
);

/// KEYS: front prefix. ARGV: cap, now, bid, the last id read of the events for every front,
/// the highest id trimmed from them, then `all id, expiry, body` of each unexpired event read.
/// Copies those the front has not yet into its stream, each with the front's next id; a front
/// without a position starts at the last id read (it gets what comes after). When events it
/// had not copied were trimmed, a tab that resumes from before the copies is told so. Returns
/// how many were copied.
const COPY_ALL: &str = concat!(
    append_lua!(),
    r"
local p = KEYS[1]
local read = tonumber(ARGV[4])
local pos = redis.call('GET', p .. 'allpos')
if not pos then
  redis.call('SET', p .. 'allpos', read)
  return 0
end
pos = tonumber(pos)
if read <= pos then return 0 end
if tonumber(ARGV[5]) > pos then
  local next = tonumber(redis.call('GET', p .. 'seq') or '0') + 1
  if next > tonumber(redis.call('GET', p .. 'trim') or '0') then
    redis.call('SET', p .. 'trim', next)
  end
end
local copied = 0
for i = 6, #ARGV, 3 do
  if tonumber(ARGV[i]) > pos then
    append(p, '', ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[2]), tonumber(ARGV[1]), false, ARGV[3])
    copied = copied + 1
  end
end
redis.call('SET', p .. 'allpos', read)
return copied
"
);

/// KEYS: front prefix. ARGV: all id, expiry, body, cap, now, bid. Copies one event for every
/// front, as its message carried it, when the front's position is just before it: returns the
/// front's id for it, -2 if the front has it already, or -1 when the front is further behind
/// (then the paged `COPY_ALL` catches up).
const COPY_ONE: &str = concat!(
    append_lua!(),
    r"
local pos = tonumber(redis.call('GET', KEYS[1] .. 'allpos') or '-1')
local all = tonumber(ARGV[1])
if pos >= all then return -2 end
if pos ~= all - 1 or tonumber(ARGV[2]) <= tonumber(ARGV[5]) then return -1 end
local id = append(KEYS[1], '', ARGV[2], ARGV[3], tonumber(ARGV[5]), tonumber(ARGV[4]), false,
  ARGV[6])
redis.call('SET', KEYS[1] .. 'allpos', all)
return id
"
);

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

/// KEYS: front prefix. ARGV: session, cutoff. Forgets a session idle since the cutoff or
/// before, with the events still waiting for it. Returns `{events gone, ''}`, or `{-1, ''}`
/// for an active session and `{-1, idle since}` for one idle since after the cutoff.
const FORGET: &str = r"
local skey = KEYS[1] .. 's:' .. ARGV[1]
local s = redis.call('HMGET', skey, 'st', 'idle')
if s[1] and s[1] ~= '' then return {-1, ''} end
if s[2] and s[2] ~= '' and tonumber(s[2]) > tonumber(ARGV[2]) then return {-1, s[2]} end
local sev = KEYS[1] .. 'sev:' .. ARGV[1]
local ids = redis.call('LRANGE', sev, 0, -1)
local gone = 0
for _, id in ipairs(ids) do
  gone = gone + redis.call('XDEL', KEYS[1] .. 'ev', '0-' .. id)
  redis.call('ZREM', KEYS[1] .. 'und', id)
end
redis.call('DEL', sev, skey)
redis.call('SREM', KEYS[1] .. 'ss', ARGV[1])
return {gone, ''}
";

/// KEYS: the idle index. ARGV: member, time. Takes the member out if it is listed as idle since
/// `time` or before: a later idle time written meanwhile by another instance stays.
const UNIDLE: &str = r"
local since = redis.call('ZSCORE', KEYS[1], ARGV[1])
if since and tonumber(since) <= tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
";

/// KEYS: front prefix. ARGV: session or empty (every session), now. Ends the active streams as
/// `CLOSE` does and tells each holder (`end <stream>`). Returns `{'ok', stream, node, idle
/// session or '', …}` for the streams it ended, or `{'nosession'}`.
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
  local idle = ''
  if rec[1] then
    local skey = KEYS[1] .. 's:' .. rec[1]
    if redis.call('HGET', skey, 'st') == stream then
      redis.call('HSET', skey, 'st', '', 'idle', ARGV[2])
      idle = rec[1]
    end
  end
  if rec[2] then
    redis.call('PUBLISH', 'ws:node:' .. rec[2], 'end ' .. stream)
    table.insert(out, stream)
    table.insert(out, rec[2])
    table.insert(out, idle)
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
    publish_all: Script,
    copy_all: Script,
    copy_one: Script,
    forget: Script,
    unidle: Script,
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
            publish_all: Script::new(PUBLISH_ALL),
            copy_all: Script::new(COPY_ALL),
            copy_one: Script::new(COPY_ONE),
            forget: Script::new(FORGET),
            unidle: Script::new(UNIDLE),
            disconnect: Script::new(DISCONNECT),
            presence: Script::new(PRESENCE),
        }
    }
}

struct Shared {
    target: RedisTarget,
    conn: RedisConn,
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
    /// How far this instance handed each front it follows to the feed.
    cursors: Mutex<HashMap<FrontBid, Cursor>>,
}

/// Where this instance stands in a front's events.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// Every event of the front up to this id was handed to the feed.
    seen: i64,
    /// When a stream of the front last opened here: a front followed but without streams is
    /// dropped only a while after that, so a stream that is just registering keeps it.
    touched: tokio::time::Instant,
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
    /// Connects to `target` and checks that it keeps what events need: a server whose
    /// `maxmemory-policy` is not `noeviction` is refused (on a cluster: any master's).
    pub async fn connect(target: &RedisTarget) -> Result<Self, StoreError> {
        Self::connect_with_cap(target, STREAM_CAP).await
    }

    /// [`RedisEngine::connect`], keeping at most `cap` events per front (the oldest are
    /// trimmed first, and a client resuming from before them is told events were lost).
    pub async fn connect_with_cap(target: &RedisTarget, cap: usize) -> Result<Self, StoreError> {
        let shown = target.shown();
        let unavailable =
            |e: ::redis::RedisError| StoreError::Unavailable(format!("redis {shown}: {e}"));
        let mut conn = redis_link::connect(target, RESPONSE_TIMEOUT).await.map_err(unavailable)?;
        match redis_link::maxmemory_policies(&mut conn).await {
            Ok(policies) => {
                // `allkeys-*` evicts anything; `volatile-*` evicts keys with a TTL, and event
                // streams, sessions and claims all have one. Only `noeviction` keeps them.
                if let Some((node, policy)) = policies.iter().find(|(_, p)| p != "noeviction") {
                    return Err(StoreError::Unavailable(format!(
                        "redis {shown} has maxmemory-policy {policy} ({node}), which may evict \
                         the keys events need (they all have a TTL); set it to noeviction"
                    )));
                }
            }
            // Managed Redis services may refuse CONFIG; then the operator is trusted.
            Err(e) => tracing::warn!(error = %e, "cannot read redis maxmemory-policy"),
        }
        let shared = Shared {
            target: target.clone(),
            conn,
            scripts: Scripts::new(),
            node: Mutex::new(None),
            task: Mutex::new(None),
            feed: Mutex::new(None),
            subscribed: std::sync::atomic::AtomicBool::new(false),
            cursors: Mutex::new(HashMap::new()),
            cap: cap.max(1),
        };
        Ok(Self { shared: Arc::new(shared) })
    }

    fn conn(&self) -> RedisConn {
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
            let all_seen: Option<i64> =
                ::redis::cmd("GET").arg(format!("{ALL}seq")).query_async(&mut conn).await?;
            beat(&mut conn, &node).await?;
            let (ready, subscribed) = tokio::sync::oneshot::channel();
            let subscriber = Subscriber {
                engine: self.clone(),
                feed,
                node,
                all_seen: all_seen.unwrap_or(0),
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
            let _: () = ::redis::cmd("DEL").arg(node_streams(&node)).query_async(&mut conn).await?;
            let _: () =
                ::redis::cmd("ZREM").arg(NODES).arg(node.as_ref()).query_async(&mut conn).await?;
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
            if let Some(row) = self.front_row(&mut conn, front).await? {
                return Ok(if row.key == key {
                    Registration::Registered(row.bid)
                } else {
                    Registration::Conflict
                });
            }
            // A new front: its bid comes from the one counter, outside the front's slot. Two
            // instances racing to register it each take one; the script keeps the first.
            let fresh: i64 = ::redis::cmd("INCR").arg(SEQ_BID).query_async(&mut conn).await?;
            let (ok, bid, new): (i64, i64, i64) = self
                .shared
                .scripts
                .register
                .key(front_key(front))
                .arg(key.to_base64())
                .arg(fresh)
                .invoke_async(&mut conn)
                .await?;
            if ok != 1 {
                return Ok(Registration::Conflict);
            }
            let bid = FrontBid(bid);
            if new == 1 {
                // It gets the events for every front published from now on.
                let all: Option<i64> =
                    ::redis::cmd("GET").arg(format!("{ALL}seq")).query_async(&mut conn).await?;
                let _: () = ::redis::cmd("SET")
                    .arg(format!("{}allpos", prefix(bid)))
                    .arg(all.unwrap_or(0))
                    .arg("NX")
                    .query_async(&mut conn)
                    .await?;
                self.seen_front(&mut conn, front, now).await?;
            }
            Ok(Registration::Registered(bid))
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
                .query_async::<()>(&mut conn)
                .await?;
            let _: () = ::redis::cmd("SADD")
                .arg(node_streams(&stream.node))
                .arg(held(stream.front.bid, stream.stream))
                .query_async(&mut conn)
                .await?;
            self.follow(&mut conn, stream.front.bid).await?;
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
                .arg(ms(now))
                .arg(max_active)
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
            // The indexes, outside the front's slot: it was seen now, its session is not idle.
            self.seen_front(&mut conn, front, now).await?;
            self.unidle(&mut conn, &idle_member(row.bid, &session.to_string()), ms(now)).await?;
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
                .arg(ms(now))
                .invoke_async(&mut conn)
                .await?;
            if answer.first().map(String::as_str) != Some("ok") {
                return Ok(Err(DisconnectRefusal::SessionNotFound));
            }
            let ended = answer.get(1..).unwrap_or_default();
            for triple in ended.chunks_exact(3) {
                if !triple[2].is_empty() {
                    self.idle(&mut conn, &idle_member(row.bid, &triple[2]), ms(now)).await?;
                }
            }
            // The script told the holders; the streams held here end now rather than after the
            // round trip (ending twice is harmless).
            let me = self.shared.node();
            let feed = lock(&self.shared.feed).clone();
            if let Some(feed) = feed {
                for pair in ended.chunks_exact(3) {
                    if me.as_deref() == Some(pair[1].as_str())
                        && let Ok(stream) = pair[0].parse::<StreamUuid>()
                    {
                        feed.replaced(stream);
                    }
                }
            }
            Ok(Ok(ended.len() / 3))
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
                .arg(ms(now))
                .invoke_async(&mut conn)
                .await?;
            Ok(match answer.as_str() {
                "own" => Served::Own(row),
                "shared" => {
                    self.idle(&mut conn, &idle_member(row.bid, &session.to_string()), ms(now))
                        .await?;
                    Served::Shared(row)
                }
                _ => Served::Inactive,
            })
        })
    }

    fn publish(&self, event: NewEvent) -> StoreFuture<'_, Result<i64, PublishRefusal>> {
        Box::pin(async move {
            let mut conn = self.conn();
            let Some(bid) = event.front else {
                let id: i64 = self
                    .shared
                    .scripts
                    .publish_all
                    .key(ALL)
                    .arg(ms(event.expires_at))
                    .arg(event.body)
                    .arg(ms(event.now))
                    .arg(self.shared.cap)
                    .invoke_async(&mut conn)
                    .await?;
                return Ok(Ok(id));
            };
            let session = event.session.map(|s| s.to_string()).unwrap_or_default();
            let (id, idle): (i64, i64) = self
                .shared
                .scripts
                .publish
                .key(prefix(bid))
                .arg(&session)
                .arg(ms(event.expires_at))
                .arg(event.body)
                .arg(ms(event.now))
                .arg(bid.0)
                .arg(self.shared.cap)
                .invoke_async(&mut conn)
                .await?;
            if id < 0 {
                return Ok(Err(PublishRefusal::SessionNotFound));
            }
            if idle == 1 {
                self.idle(&mut conn, &idle_member(bid, &session), ms(event.now)).await?;
            }
            Ok(Ok(id))
        })
    }

    fn replay(&self, request: ReplayRequest) -> StoreFuture<'_, ReplayPage> {
        Box::pin(async move {
            let mut conn = self.conn();
            // Events for every front published while no stream of this front was held anywhere
            // join its stream first: a tab resuming gets them in its order, a new one does not
            // get them (they are not undelivered). Once per replay: from then on the stream is
            // live here, and this instance copies them as it hears of them.
            if request.first {
                self.copy_all(&mut conn, request.front, request.now).await?;
            }
            match request.since {
                Since::Id(seen) => {
                    if seen > self.last_id(&mut conn, request.front).await? {
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
async fn beat(conn: &mut RedisConn, node: &str) -> Result<(), StoreError> {
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
        conn: &mut RedisConn,
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
        conn: &mut RedisConn,
        front: FrontBid,
        stream: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let idle: Option<String> = self
            .shared
            .scripts
            .close
            .key(prefix(front))
            .arg(stream)
            .arg(ms(now))
            .invoke_async(conn)
            .await?;
        if let Some(session) = idle {
            self.idle(conn, &idle_member(front, &session), ms(now)).await?;
        }
        Ok(())
    }

    /// Lists a session in the idle index, idle since `since`.
    async fn idle(&self, conn: &mut RedisConn, member: &str, since: i64) -> Result<(), StoreError> {
        let _: () = ::redis::cmd("ZADD").arg(IDLE).arg(since).arg(member).query_async(conn).await?;
        Ok(())
    }

    /// Takes a session out of the idle index unless it was listed idle after `at`.
    async fn unidle(&self, conn: &mut RedisConn, member: &str, at: i64) -> Result<(), StoreError> {
        let _: i64 =
            self.shared.scripts.unidle.key(IDLE).arg(member).arg(at).invoke_async(conn).await?;
        Ok(())
    }

    /// Notes in the front index that `front` was seen `now` (pruned only long after).
    async fn seen_front(
        &self,
        conn: &mut RedisConn,
        front: FrontUuid,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let _: () = ::redis::cmd("ZADD")
            .arg(FRONTS_SEEN)
            .arg(ms(now))
            .arg(front.to_string())
            .query_async(conn)
            .await?;
        Ok(())
    }

    /// The highest id the front's stream has given (0 if none).
    async fn last_id(&self, conn: &mut RedisConn, front: FrontBid) -> Result<i64, StoreError> {
        let p = prefix(front);
        let seq: Option<i64> = ::redis::cmd("GET").arg(format!("{p}seq")).query_async(conn).await?;
        if let Some(seq) = seq {
            return Ok(seq);
        }
        // A stream kept from before the per-front counter: its last entry.
        let reply: Value = ::redis::cmd("XREVRANGE")
            .arg(format!("{p}ev"))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await?;
        Ok(entries(reply).first().map_or(0, |e| e.id))
    }

    /// Starts following `front` on this instance (a stream of it was just registered here),
    /// from its counter as it is now: what came before, the stream replays.
    async fn follow(&self, conn: &mut RedisConn, front: FrontBid) -> Result<(), StoreError> {
        let now = tokio::time::Instant::now();
        if let Some(cursor) = lock(&self.shared.cursors).get_mut(&front) {
            cursor.touched = now;
            return Ok(());
        }
        let seen = self.last_id(conn, front).await?;
        lock(&self.shared.cursors).entry(front).or_insert(Cursor { seen, touched: now }).touched =
            now;
        Ok(())
    }

    /// Copies the events for every front that `front` has not yet into its stream (see
    /// `COPY_ALL`), a page at a time.
    async fn copy_all(
        &self,
        conn: &mut RedisConn,
        front: FrontBid,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let p = prefix(front);
        loop {
            let pos: Option<i64> =
                ::redis::cmd("GET").arg(format!("{p}allpos")).query_async(conn).await?;
            let (last, trimmed): (Option<i64>, Option<i64>) = ::redis::pipe()
                .get(format!("{ALL}seq"))
                .get(format!("{ALL}trim"))
                .query_async(conn)
                .await?;
            let (last, trimmed) = (last.unwrap_or(0), trimmed.unwrap_or(0));
            if pos.is_some_and(|pos| pos >= last) {
                return Ok(());
            }
            let read = match pos {
                Some(pos) => Self::range(conn, &format!("{ALL}ev"), pos, COPY_PAGE).await?,
                None => Vec::new(),
            };
            let full = read.len() >= COPY_PAGE;
            let up_to = if full { read.last().map_or(last, |e| e.id) } else { last };
            let mut script = self.shared.scripts.copy_all.key(&p);
            script.arg(self.shared.cap).arg(ms(now)).arg(front.0).arg(up_to).arg(trimmed);
            for e in read.iter().filter(|e| e.expires > ms(now)) {
                script.arg(e.id).arg(e.expires).arg(&e.body);
            }
            let _: i64 = script.invoke_async(conn).await?;
            if !full {
                return Ok(());
            }
        }
    }

    /// Reads entries of `key` after `after`, at most `count`.
    async fn range(
        conn: &mut RedisConn,
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

    /// A page after `seen` from the front's stream.
    async fn replay_after(
        &self,
        conn: &mut RedisConn,
        request: &ReplayRequest,
        seen: i64,
    ) -> Result<ReplayPage, StoreError> {
        let n = request.max_events.max(1);
        let p = prefix(request.front);
        let trimmed: Option<i64> =
            ::redis::cmd("GET").arg(format!("{p}trim")).query_async(conn).await?;
        let lost = trimmed.is_some_and(|t| t > seen);
        let read = Self::range(conn, &format!("{p}ev"), seen, n).await?;
        let full = read.len() >= n;
        let last_read = read.last().map(|e| e.id);
        let mut events = self.keep(read, request);
        let cut = cap_page(&mut events, request.max_bytes);
        let next = match (cut, events.last(), last_read) {
            (true, Some(last), _) => Since::Id(last.id),
            (_, _, Some(read)) => Since::Id(read),
            _ => request.since,
        };
        Ok(ReplayPage { events, next, done: !full && !cut, reset: false, lost })
    }

    /// A page of the events no stream was given, marked given as they are read.
    async fn replay_undelivered(
        &self,
        conn: &mut RedisConn,
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
                started: None,
            })
            .collect()
    }

    async fn sweep_now(&self, conn: &mut RedisConn, cutoffs: Cutoffs) -> Result<Swept, StoreError> {
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
            let idle: Vec<(String, i64)> = ::redis::cmd("ZRANGEBYSCORE")
                .arg(IDLE)
                .arg("-inf")
                .arg(ms(idle_cutoff))
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(SWEEP_BATCH)
                .query_async(conn)
                .await?;
            let batch = idle.len();
            for (member, _) in idle {
                let parsed = member
                    .split_once(':')
                    .and_then(|(bid, session)| Some((bid.parse::<i64>().ok()?, session)));
                let Some((bid, session)) = parsed else {
                    let _: () =
                        ::redis::cmd("ZREM").arg(IDLE).arg(&member).query_async(conn).await?;
                    continue;
                };
                let (gone, since): (i64, String) = self
                    .shared
                    .scripts
                    .forget
                    .key(prefix(FrontBid(bid)))
                    .arg(session)
                    .arg(ms(idle_cutoff))
                    .invoke_async(conn)
                    .await?;
                match since.parse::<i64>() {
                    // Idle again since after the cutoff: listed as such, unless an instance
                    // listed a later time meanwhile.
                    Ok(since) => {
                        let _: () = ::redis::cmd("ZADD")
                            .arg(IDLE)
                            .arg("GT")
                            .arg(since)
                            .arg(&member)
                            .query_async(conn)
                            .await?;
                    }
                    // Forgotten, or active: out of the index, unless it went idle again since.
                    Err(_) => self.unidle(conn, &member, ms(idle_cutoff)).await?,
                }
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
            .arg(FRONTS_SEEN)
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
                let p = prefix(FrontBid(bid));
                let active: usize =
                    ::redis::cmd("SCARD").arg(format!("{p}act")).query_async(conn).await?;
                if active > 0 {
                    continue;
                }
                let _: () = ::redis::cmd("DEL").arg(&key).query_async(conn).await?;
                // The keys without a TTL go with it; the rest expire by themselves.
                let _: () = ::redis::cmd("DEL")
                    .arg(format!("{p}seq"))
                    .arg(format!("{p}allpos"))
                    .arg(format!("{p}trim"))
                    .query_async(conn)
                    .await?;
                swept.fronts += 1;
            }
            let _: () = ::redis::cmd("ZREM").arg(FRONTS_SEEN).arg(&uuid).query_async(conn).await?;
        }
        Ok(swept)
    }
}

/// The subscription of one instance: committed events and its streams' activations.
struct Subscriber {
    engine: RedisEngine,
    feed: Arc<dyn Feed>,
    node: NodeId,
    /// The last id of the events for every front this instance acted on.
    all_seen: i64,
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
        let mut pubsub = redis_link::subscriber(&self.engine.shared.target).await?;
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
                    self.forget_unheld();
                    self.catch_up().await?;
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
        if bid == 0 {
            // For every front: copied into the streams of the fronts held here, whose copies
            // come back as their own events (to other instances) and are handed over here.
            if id == self.all_seen + 1 {
                let expiry = session.parse::<i64>().unwrap_or(0);
                return self.copy_one(id, expiry, body).await;
            }
            if id > self.all_seen {
                self.copy_all().await?;
            }
            return Ok(());
        }
        let front = FrontBid(bid);
        let event = StoredEvent {
            id,
            front: Some(front),
            session: session.parse().ok(),
            body: Arc::from(body),
            // Through pub/sub: when its publish began (maybe elsewhere) is not known here.
            started: None,
        };
        self.on_front_event(event).await
    }

    /// One front's event, as its message or a copy made here told it.
    async fn on_front_event(&mut self, event: StoredEvent) -> Result<(), StoreError> {
        let Some(front) = event.front else { return Ok(()) };
        let id = event.id;
        let seen = lock(&self.engine.shared.cursors).get(&front).map(|c| c.seen);
        match seen {
            // A front not followed here: its streams (if one is opening) replay it.
            None => {
                self.deliver(&event);
            }
            Some(seen) if id <= seen => {}
            Some(seen) if id == seen + 1 => {
                self.advance(front, id);
                self.deliver(&event);
            }
            // A message was lost: what it carried is in the front's stream.
            Some(seen) => self.catch_up_front(front, seen).await?,
        }
        Ok(())
    }

    fn advance(&self, front: FrontBid, id: i64) {
        if let Some(cursor) = lock(&self.engine.shared.cursors).get_mut(&front) {
            cursor.seen = cursor.seen.max(id);
        }
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

    /// Stops following the fronts that have had no stream here for two ticks.
    fn forget_unheld(&self) {
        let held: std::collections::HashSet<FrontBid> =
            self.feed.local_fronts().into_iter().collect();
        let Some(before) = tokio::time::Instant::now().checked_sub(TICK * 2) else { return };
        lock(&self.engine.shared.cursors)
            .retain(|front, cursor| held.contains(front) || cursor.touched > before);
    }

    /// Copies the event for every front `all` (the next after what this instance acted on,
    /// as its message carried it) into each front followed here, one script per front, and
    /// hands each copy over as soon as it is made; a front that is further behind gets the
    /// paged copy.
    async fn copy_one(&mut self, all: i64, expiry: i64, body: &str) -> Result<(), StoreError> {
        let fronts: Vec<FrontBid> = lock(&self.engine.shared.cursors).keys().copied().collect();
        let now = Timestamp::now();
        let engine = &self.engine.clone();
        let mut copies = futures_util::stream::iter(fronts)
            .map(|front| async move {
                let mut conn = engine.conn();
                let id: i64 = engine
                    .shared
                    .scripts
                    .copy_one
                    .key(prefix(front))
                    .arg(all)
                    .arg(expiry)
                    .arg(body)
                    .arg(engine.shared.cap)
                    .arg(ms(now))
                    .arg(front.0)
                    .invoke_async(&mut conn)
                    .await?;
                if id == -1 {
                    engine.copy_all(&mut conn, front, now).await?;
                }
                Ok::<_, StoreError>((front, id))
            })
            .buffer_unordered(FRONTS_AT_ONCE);
        let shared_body: Arc<str> = Arc::from(body);
        // Each front's copy is handed over as soon as it is made, while the other fronts are
        // still being copied: waiting for all of them held the first write of an event for
        // every front behind thousands of round trips (`loadgen cluster`). If one fails, the
        // event stays unseen here and the next catch-up copies what is left; what was handed
        // over is not again (its front's cursor passed it).
        while let Some(copied) = copies.next().await {
            let (front, id) = copied?;
            if id > 0 {
                let event = StoredEvent {
                    id,
                    front: Some(front),
                    session: None,
                    body: shared_body.clone(),
                    started: None,
                };
                self.on_front_event(event).await?;
            }
        }
        self.all_seen = all;
        Ok(())
    }

    /// Copies the events for every front not yet copied into the fronts held here.
    async fn copy_all(&mut self) -> Result<(), StoreError> {
        let mut conn = self.engine.conn();
        let last: Option<i64> =
            ::redis::cmd("GET").arg(format!("{ALL}seq")).query_async(&mut conn).await?;
        let fronts: Vec<FrontBid> = lock(&self.engine.shared.cursors).keys().copied().collect();
        let now = Timestamp::now();
        // Many fronts at once over the one multiplexed connection: their round trips overlap.
        let engine = &self.engine;
        let mut copies = futures_util::stream::iter(fronts)
            .map(|front| async move { engine.copy_all(&mut engine.conn(), front, now).await })
            .buffer_unordered(FRONTS_AT_ONCE);
        while let Some(copied) = copies.next().await {
            copied?;
        }
        self.all_seen = self.all_seen.max(last.unwrap_or(0));
        Ok(())
    }

    /// Hands over what the front's stream holds after `seen`.
    async fn catch_up_front(&self, front: FrontBid, seen: i64) -> Result<(), StoreError> {
        let mut conn = self.engine.conn();
        // Read first: every id up to it is in the stream read below, or gone for good (trimmed,
        // expired), so the cursor may pass it; later ids still come as messages.
        let last = self.engine.last_id(&mut conn, front).await?;
        let key = format!("{}ev", prefix(front));
        let mut after = seen;
        loop {
            let page = RedisEngine::range(&mut conn, &key, after, COPY_PAGE).await?;
            for e in &page {
                let event = StoredEvent {
                    id: e.id,
                    front: Some(front),
                    session: e.session.parse().ok(),
                    body: Arc::from(e.body.as_str()),
                    started: None,
                };
                self.deliver(&event);
                after = e.id;
            }
            if page.len() < COPY_PAGE {
                break;
            }
        }
        self.advance(front, last.max(after));
        if after > seen {
            tracing::info!(events = after - seen, front = front.0, "caught up on missed events");
        }
        Ok(())
    }

    /// Hands over every event the fronts followed here got and this instance missed, and
    /// copies the events for every front they have not yet.
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        let mut conn = self.engine.conn();
        let last: Option<i64> =
            ::redis::cmd("GET").arg(format!("{ALL}seq")).query_async(&mut conn).await?;
        if last.unwrap_or(0) > self.all_seen {
            self.copy_all().await?;
        }
        let followed: Vec<(FrontBid, i64)> =
            lock(&self.engine.shared.cursors).iter().map(|(f, c)| (*f, c.seen)).collect();
        let engine = &self.engine;
        let behind: Vec<(FrontBid, i64)> = futures_util::stream::iter(followed)
            .map(|(front, seen)| async move {
                let last = engine.last_id(&mut engine.conn(), front).await?;
                Ok::<_, StoreError>((last > seen).then_some((front, seen)))
            })
            .buffer_unordered(FRONTS_AT_ONCE)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .filter_map(Result::transpose)
            .collect::<Result<_, _>>()?;
        for (front, seen) in behind {
            self.catch_up_front(front, seen).await?;
        }
        Ok(())
    }
}
