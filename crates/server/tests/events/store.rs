//! The event store's contract, run against every engine: the embedded SQLite engine, the Redis
//! engine on a `redis-server` of the test's own, and the Redis engine on a real three-node Redis
//! Cluster (where a script or pipeline that crosses hash slots fails). Every behaviour the
//! service relies on is asserted here through the `EventStore` trait, so a third engine would
//! run the same suite.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::messages::FrontBid;
use protocol::{BackUuid, EventUuid, FrontUuid, KeyPair, SessionUuid, StreamUuid, Timestamp};
use server::events::store::{
    ActivateRefusal, BackRecord, Cutoffs, DisconnectRefusal, EventStore, Feed, FrontRow,
    IdempotencyClaim, NewEvent, NodeId, OpenStream, Presence, PublishRefusal, RedisEngine,
    Registration, ReplayRequest, Served, SessionPresence, Since, SqliteEngine, StoredEvent,
};

use crate::tokens::harness::{RedisCluster, RedisServer};
use crate::util::within;

/// Runs each named contract test against every engine.
macro_rules! every_engine {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let engine = super::Engine::sqlite().await;
                    super::$name(&engine).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis() {
                    let engine = super::Engine::redis().await;
                    super::$name(&engine).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis_cluster() {
                    let engine = super::Engine::redis_cluster().await;
                    super::$name(&engine).await;
                }
            }
        )*
    };
}

every_engine!(
    the_back_identity_is_made_once_and_kept,
    registration_keeps_one_bid_per_uuid_and_refuses_another_key,
    ids_increase_and_every_instance_feed_gets_each_event_in_order,
    activation_refuses_unknown_pending_twice_and_reports_the_replaced_stream,
    a_session_is_served_by_its_own_stream_or_by_a_front_scoped_one,
    a_replay_after_an_id_gets_its_sessions_and_its_fronts_events_in_pages,
    a_replay_without_an_id_gets_only_undelivered_events_once,
    an_id_beyond_the_store_is_a_reset,
    a_closed_streams_session_is_forgotten_after_the_cutoff_with_its_events,
    a_direct_event_is_claimed_once_until_released,
    a_front_gets_at_most_its_limit_of_active_streams,
    a_front_without_an_active_stream_since_the_cutoff_is_pruned,
    a_publish_key_is_claimed_once_then_stands_for_its_event_until_it_expires,
    a_disconnect_ends_the_active_streams_of_a_front_or_a_tab_and_tells_their_holder,
    presence_lists_a_fronts_sessions_active_first_with_since_when,
    an_event_for_every_front_reaches_a_resuming_tab_of_a_front_held_nowhere_once,
);

/// What a test feed was told.
#[derive(Default)]
struct Told {
    events: Vec<StoredEvent>,
    activated: Vec<StreamUuid>,
    replaced: Vec<StreamUuid>,
    /// How many streams "took" each event: 1 for fronts in `local`.
    local: Vec<FrontBid>,
}

#[derive(Clone, Default)]
struct TestFeed(Arc<Mutex<Told>>);

impl Feed for TestFeed {
    fn event(&self, event: &StoredEvent) -> usize {
        let mut told = self.0.lock().unwrap();
        told.events.push(event.clone());
        usize::from(event.front.is_some_and(|f| told.local.contains(&f)))
    }
    fn activated(&self, stream: StreamUuid) {
        self.0.lock().unwrap().activated.push(stream);
    }
    fn replaced(&self, stream: StreamUuid) {
        self.0.lock().unwrap().replaced.push(stream);
    }
    fn local_fronts(&self) -> Vec<FrontBid> {
        self.0.lock().unwrap().local.clone()
    }
}

impl TestFeed {
    /// Waits until `check` holds for what the feed was told (the Redis feed is asynchronous).
    async fn until(&self, mut check: impl FnMut(&Told) -> bool) {
        within(async {
            while !check(&self.0.lock().unwrap()) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
}

/// One engine, started with a test feed as instance `node`.
struct Engine {
    store: Arc<dyn EventStore>,
    feed: TestFeed,
    node: NodeId,
    /// What the engine runs on, stopped when the test ends.
    _redis: Option<Box<dyn std::any::Any + Send + Sync>>,
    _dir: Option<tempfile::TempDir>,
}

impl Engine {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteEngine::open(&dir.path().join("db.sqlite3"), Timestamp::now()).unwrap();
        Self::start(Arc::new(store), None, Some(dir)).await
    }

    async fn redis() -> Self {
        let redis = RedisServer::start().await;
        let store = RedisEngine::connect(&redis.target()).await.unwrap();
        Self::start(Arc::new(store), Some(Box::new(redis)), None).await
    }

    async fn redis_cluster() -> Self {
        let cluster = RedisCluster::start().await;
        let store = RedisEngine::connect(&cluster.target()).await.unwrap();
        Self::start(Arc::new(store), Some(Box::new(cluster)), None).await
    }

    async fn start(
        store: Arc<dyn EventStore>,
        redis: Option<Box<dyn std::any::Any + Send + Sync>>,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        let feed = TestFeed::default();
        let node: NodeId = Arc::from("node-a");
        store.start(Arc::new(feed.clone()), node.clone()).await.unwrap();
        Self { store, feed, node, _redis: redis, _dir: dir }
    }

    async fn front(&self) -> (FrontUuid, FrontRow) {
        let (uuid, key) = (FrontUuid::new_v4(), KeyPair::generate().public);
        let Registration::Registered(bid) = self.store.register(uuid, key, now()).await.unwrap()
        else {
            panic!("a new front is registered");
        };
        (uuid, FrontRow { bid, key })
    }

    /// Opens and activates a stream of `session`.
    async fn stream(
        &self,
        (uuid, row): (FrontUuid, FrontRow),
        session: SessionUuid,
        front_scope: bool,
    ) -> StreamUuid {
        let stream = StreamUuid::new_v4();
        self.store.open_stream(self.open(uuid, row, session, stream, front_scope)).await.unwrap();
        self.store.activate_stream(uuid, stream, 32, now()).await.unwrap().unwrap();
        stream
    }

    fn open(
        &self,
        front_uuid: FrontUuid,
        front: FrontRow,
        session: SessionUuid,
        stream: StreamUuid,
        front_scope: bool,
    ) -> OpenStream {
        OpenStream {
            front,
            front_uuid,
            session,
            stream,
            last_event_id: None,
            front_scope,
            node: self.node.clone(),
            activation_timeout_ms: 10_000,
        }
    }

    async fn publish(
        &self,
        front: Option<FrontBid>,
        session: Option<SessionUuid>,
        body: &str,
    ) -> Result<i64, PublishRefusal> {
        let event = NewEvent {
            front,
            session,
            expires_at: now().plus_millis(3_600_000),
            body: body.to_owned(),
            now: now(),
            started: std::time::Instant::now(),
        };
        self.store.publish(event).await.unwrap()
    }

    async fn replay(
        &self,
        front: FrontBid,
        session: Option<SessionUuid>,
        since: Since,
    ) -> Vec<String> {
        let request = ReplayRequest {
            front,
            session,
            since,
            now: now(),
            max_events: 1000,
            max_bytes: 1 << 20,
            first: true,
        };
        let page = self.store.replay(request).await.unwrap();
        assert!(page.done);
        page.events.iter().map(|e| e.body.to_string()).collect()
    }
}

fn now() -> Timestamp {
    Timestamp::now()
}

/// Sweeps sessions idle since `idle`, and no front (their cutoff lies long ago).
fn cutoffs(idle: Timestamp) -> Cutoffs {
    Cutoffs { now: now(), idle, front: Timestamp::from_millis(0) }
}

async fn the_back_identity_is_made_once_and_kept(engine: &Engine) {
    let first = BackRecord { uuid: BackUuid::new_v4(), secret: [7; 32] };
    let second = BackRecord { uuid: BackUuid::new_v4(), secret: [9; 32] };
    assert_eq!(engine.store.back_identity(first.clone()).await.unwrap(), first);
    assert_eq!(engine.store.back_identity(second).await.unwrap(), first, "the first one stays");
}

async fn registration_keeps_one_bid_per_uuid_and_refuses_another_key(engine: &Engine) {
    let (uuid, key) = (FrontUuid::new_v4(), KeyPair::generate().public);
    let first = engine.store.register(uuid, key, now()).await.unwrap();
    assert_eq!(engine.store.register(uuid, key, now()).await.unwrap(), first);
    let other = KeyPair::generate().public;
    assert_eq!(engine.store.register(uuid, other, now()).await.unwrap(), Registration::Conflict);
    let Registration::Registered(bid) = first else { panic!("{first:?}") };
    assert_eq!(engine.store.front(uuid).await.unwrap(), Some(FrontRow { bid, key }));
    assert_eq!(engine.store.front(FrontUuid::new_v4()).await.unwrap(), None);
    let (_, second) = engine.front().await;
    assert_ne!(second.bid, bid, "another front gets another bid");
}

async fn ids_increase_and_every_instance_feed_gets_each_event_in_order(engine: &Engine) {
    let (a, b) = (engine.front().await, engine.front().await);
    // An instance is owed the events of the fronts it holds streams of.
    engine.stream(a, SessionUuid::new_v4(), false).await;
    engine.stream(b, SessionUuid::new_v4(), false).await;
    engine.feed.0.lock().unwrap().local.extend([a.1.bid, b.1.bid]);
    let mut ids = [Vec::new(), Vec::new()];
    for i in 0..20 {
        let front = if i % 2 == 0 { a.1.bid } else { b.1.bid };
        ids[i % 2].push(engine.publish(Some(front), None, &format!("e{i}")).await.unwrap());
    }
    engine.publish(None, None, "to-all").await.unwrap();
    // Ids are per front (on Redis, one sequence per front's slot), increasing in publish order.
    for ids in &ids {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }
    // What the feed gets for a front: its events, and the event for every front (once, for all
    // fronts, or copied into each front with its next id).
    let of = |told: &Told, front: FrontBid| -> Vec<StoredEvent> {
        told.events.iter().filter(|e| e.front.is_none_or(|f| f == front)).cloned().collect()
    };
    let (a, b) = (a.1.bid, b.1.bid);
    engine.feed.until(|told| of(told, a).len() >= 11 && of(told, b).len() >= 11).await;
    let told = engine.feed.0.lock().unwrap();
    for (n, front) in [a, b].into_iter().enumerate() {
        let fed = of(&told, front);
        let bodies: Vec<&str> = fed.iter().map(|e| &*e.body).collect();
        let mut expected: Vec<String> =
            (0..20).filter(|i| i % 2 == n).map(|i| format!("e{i}")).collect();
        expected.push("to-all".into());
        assert_eq!(bodies, expected, "each event of front {n} once, in order");
        let fed_ids: Vec<i64> = fed.iter().map(|e| e.id).collect();
        assert_eq!(&fed_ids[..10], &ids[n][..], "with the ids the publish gave");
        assert!(fed_ids.windows(2).all(|w| w[0] < w[1]), "in id order: {fed_ids:?}");
    }
}

async fn activation_refuses_unknown_pending_twice_and_reports_the_replaced_stream(engine: &Engine) {
    let (uuid, row) = engine.front().await;
    let session = SessionUuid::new_v4();
    let unknown =
        engine.store.activate_stream(uuid, StreamUuid::new_v4(), 32, now()).await.unwrap();
    assert_eq!(unknown.unwrap_err(), ActivateRefusal::NotFound);
    let unregistered = engine
        .store
        .activate_stream(FrontUuid::new_v4(), StreamUuid::new_v4(), 32, now())
        .await
        .unwrap();
    assert_eq!(unregistered.unwrap_err(), ActivateRefusal::FrontNotRegistered);

    let first = engine.stream((uuid, row), session, false).await;
    let again = engine.store.activate_stream(uuid, first, 32, now()).await.unwrap();
    assert_eq!(again.unwrap_err(), ActivateRefusal::AlreadyActive);
    // A stream of another front answers like a guessed UUID.
    let (other_uuid, _) = engine.front().await;
    let foreign = engine.store.activate_stream(other_uuid, first, 32, now()).await.unwrap();
    assert_eq!(foreign.unwrap_err(), ActivateRefusal::NotFound);

    let second = StreamUuid::new_v4();
    engine.store.open_stream(engine.open(uuid, row, session, second, false)).await.unwrap();
    let activation = engine.store.activate_stream(uuid, second, 32, now()).await.unwrap().unwrap();
    assert_eq!(activation.session, session);
    assert_eq!(activation.replaced.as_ref().map(|(s, _)| *s), Some(first));
    engine
        .feed
        .until(|told| {
            told.activated.contains(&first)
                && told.activated.contains(&second)
                && told.replaced.contains(&first)
        })
        .await;
}

async fn a_session_is_served_by_its_own_stream_or_by_a_front_scoped_one(engine: &Engine) {
    let front = engine.front().await;
    let (own, other) = (SessionUuid::new_v4(), SessionUuid::new_v4());
    assert_eq!(engine.store.served(front.0, own, now()).await.unwrap(), Served::Inactive);
    assert_eq!(
        engine.store.served(FrontUuid::new_v4(), own, now()).await.unwrap(),
        Served::FrontNotRegistered
    );
    assert_eq!(
        engine.publish(Some(front.1.bid), Some(other), "x").await,
        Err(PublishRefusal::SessionNotFound),
        "a session never activated is unknown"
    );
    let stream = engine.stream(front, own, true).await;
    assert_eq!(engine.store.served(front.0, own, now()).await.unwrap(), Served::Own(front.1));
    assert_eq!(engine.store.served(front.0, other, now()).await.unwrap(), Served::Shared(front.1));
    assert!(engine.publish(Some(front.1.bid), Some(other), "x").await.is_ok(), "known now");

    engine.store.close_stream(front.1.bid, own, stream, now()).await.unwrap();
    assert_eq!(engine.store.served(front.0, own, now()).await.unwrap(), Served::Inactive);
}

async fn a_replay_after_an_id_gets_its_sessions_and_its_fronts_events_in_pages(engine: &Engine) {
    let front = engine.front().await;
    let (mine, theirs) = (SessionUuid::new_v4(), SessionUuid::new_v4());
    engine.stream(front, mine, false).await;
    engine.stream(front, theirs, false).await;
    let bid = front.1.bid;
    let before = engine.publish(Some(bid), Some(mine), "old").await.unwrap();
    engine.publish(Some(bid), Some(mine), "a").await.unwrap();
    engine.publish(Some(bid), Some(theirs), "not-mine").await.unwrap();
    engine.publish(None, None, "to-all").await.unwrap();
    // An event for every front joins a front's order when it reaches the front (on Redis, when
    // an instance holding the front's streams copies it): after "not-mine", before "to-front".
    engine.feed.until(|told| told.events.iter().any(|e| &*e.body == "to-all")).await;
    engine.publish(Some(bid), None, "to-front").await.unwrap();
    let other = engine.front().await;
    engine.publish(Some(other.1.bid), None, "another-front").await.unwrap();
    let expired = NewEvent {
        front: Some(bid),
        session: None,
        expires_at: now().plus_millis(-1),
        body: "expired".into(),
        now: now(),
        started: std::time::Instant::now(),
    };
    engine.store.publish(expired).await.unwrap().unwrap();
    engine.publish(Some(bid), Some(mine), "b").await.unwrap();

    let got = engine.replay(bid, Some(mine), Since::Id(before)).await;
    assert_eq!(got, ["a", "to-all", "to-front", "b"]);
    let all = engine.replay(bid, None, Since::Id(before)).await;
    assert_eq!(all, ["a", "not-mine", "to-all", "to-front", "b"], "a front-scoped replay");

    // In pages: two events at a time, then by bytes (one event at least).
    let mut since = Since::Id(before);
    let mut pages = Vec::new();
    loop {
        let request = ReplayRequest {
            front: bid,
            session: Some(mine),
            since,
            now: now(),
            max_events: 2,
            max_bytes: 1,
            // The events for every front join the front's stream before the first page only.
            first: pages.is_empty(),
        };
        let page = engine.store.replay(request).await.unwrap();
        pages.push(page.events.iter().map(|e| e.body.to_string()).collect::<Vec<_>>());
        since = page.next;
        if page.done {
            break;
        }
        assert!(pages.len() < 20, "the replay ends");
    }
    let flat: Vec<String> = pages.iter().flatten().cloned().collect();
    assert_eq!(flat, ["a", "to-all", "to-front", "b"], "pages: {pages:?}");
    assert!(pages.iter().all(|page| page.len() <= 1), "one event per page at 1 byte: {pages:?}");
}

async fn a_replay_without_an_id_gets_only_undelivered_events_once(engine: &Engine) {
    let front = engine.front().await;
    let bid = front.1.bid;
    let session = SessionUuid::new_v4();
    engine.stream(front, session, false).await;
    let waiting = engine.publish(Some(bid), None, "waiting").await.unwrap();
    engine.feed.until(|told| told.events.iter().any(|e| e.id == waiting)).await;
    // From now on the feed takes this front's events: they count as delivered.
    engine.feed.0.lock().unwrap().local.push(bid);
    let live = engine.publish(Some(bid), None, "live").await.unwrap();
    engine.feed.until(|told| told.events.iter().any(|e| e.id == live)).await;
    engine.publish(None, None, "to-all").await.unwrap();

    // Marking a live delivery may be asynchronous (Redis): wait until it shows.
    within(async {
        loop {
            let request = ReplayRequest {
                front: bid,
                session: None,
                since: Since::Undelivered(live - 1),
                now: now(),
                max_events: 10,
                max_bytes: 1 << 20,
                first: true,
            };
            // Reads from after `waiting`, so nothing is marked by this probe.
            if engine.store.replay(request).await.unwrap().events.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let got = engine.replay(bid, Some(session), Since::Undelivered(0)).await;
    assert_eq!(got, ["waiting"], "not the delivered one, not the event for every front");
    let again = engine.replay(bid, Some(session), Since::Undelivered(0)).await;
    assert!(again.is_empty(), "delivered by the first replay: {again:?}");
}

async fn an_id_beyond_the_store_is_a_reset(engine: &Engine) {
    let front = engine.front().await;
    let bid = front.1.bid;
    engine.publish(Some(bid), None, "kept").await.unwrap();
    let request = ReplayRequest {
        front: bid,
        session: None,
        since: Since::Id(1_000_000),
        now: now(),
        max_events: 10,
        max_bytes: 1 << 20,
        first: true,
    };
    let page = engine.store.replay(request).await.unwrap();
    assert!(page.reset, "the client's id is not from this store");
    let got: Vec<&str> = page.events.iter().map(|e| &*e.body).collect();
    assert_eq!(got, ["kept"], "it starts over from what was never delivered");
}

async fn a_closed_streams_session_is_forgotten_after_the_cutoff_with_its_events(engine: &Engine) {
    let front = engine.front().await;
    let bid = front.1.bid;
    let (gone, stays) = (SessionUuid::new_v4(), SessionUuid::new_v4());
    let stream = engine.stream(front, gone, false).await;
    engine.stream(front, stays, false).await;
    let for_tab = engine.publish(Some(bid), Some(gone), "for-tab").await.unwrap();
    engine.publish(Some(bid), None, "for-front").await.unwrap();
    let closed_at = now();
    engine.store.close_stream(bid, gone, stream, closed_at).await.unwrap();

    let early = engine.store.sweep(cutoffs(closed_at.plus_millis(-1))).await.unwrap();
    assert_eq!(early.sessions, 0, "idle for less than the TTL");
    assert!(engine.publish(Some(bid), Some(gone), "still").await.is_ok());

    let swept = engine.store.sweep(cutoffs(now().plus_millis(1))).await.unwrap();
    assert_eq!(swept.sessions, 1, "the idle one only: {swept:?}");
    assert!(swept.events >= 2, "its two waiting events: {swept:?}");
    assert_eq!(
        engine.publish(Some(bid), Some(gone), "late").await,
        Err(PublishRefusal::SessionNotFound)
    );
    assert!(engine.publish(Some(bid), Some(stays), "active").await.is_ok(), "active stays");
    let left = engine.replay(bid, None, Since::Id(for_tab - 1)).await;
    assert_eq!(left, ["for-front", "active"], "the tab's events went with it");
}

async fn a_direct_event_is_claimed_once_until_released(engine: &Engine) {
    let (_, row) = engine.front().await;
    let event = EventUuid::new_v4();
    let keep = now().plus_millis(60_000);
    assert!(engine.store.claim_direct(row.bid, event, keep, now()).await.unwrap());
    assert!(!engine.store.claim_direct(row.bid, event, keep, now()).await.unwrap());
    engine.store.release_direct(row.bid, event).await.unwrap();
    assert!(engine.store.claim_direct(row.bid, event, keep, now()).await.unwrap());
    let (_, other) = engine.front().await;
    assert!(engine.store.claim_direct(other.bid, event, keep, now()).await.unwrap(), "per front");
}

/// A Redis that may evict keys would silently drop events and sessions: the engine refuses to
/// start on one whose `maxmemory-policy` is not `noeviction` (`volatile-*` too: every key of
/// events has a TTL), and says why.
#[tokio::test]
async fn the_redis_engine_refuses_a_redis_that_may_evict_keys() {
    let redis = RedisServer::start().await;
    let mut conn = redis.connection().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut conn)
        .await
        .unwrap();
    let refused = RedisEngine::connect(&redis.target()).await.unwrap_err().to_string();
    assert!(refused.contains("allkeys-lru") && refused.contains("noeviction"), "{refused}");
    for (policy, accepted) in [("volatile-ttl", false), ("noeviction", true)] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(policy)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(RedisEngine::connect(&redis.target()).await.is_ok(), accepted, "{policy}");
    }
}

async fn a_front_gets_at_most_its_limit_of_active_streams(engine: &Engine) {
    let (uuid, row) = engine.front().await;
    let (one, two, three) = (SessionUuid::new_v4(), SessionUuid::new_v4(), SessionUuid::new_v4());
    let activate = |session, stream| {
        let open = engine.open(uuid, row, session, stream, false);
        async move {
            engine.store.open_stream(open).await.unwrap();
            engine.store.activate_stream(uuid, stream, 2, now()).await.unwrap()
        }
    };
    let first = StreamUuid::new_v4();
    activate(one, first).await.unwrap();
    activate(two, StreamUuid::new_v4()).await.unwrap();
    let refused = activate(three, StreamUuid::new_v4()).await;
    assert_eq!(refused.unwrap_err(), ActivateRefusal::TooManyStreams(2));
    let replacement = StreamUuid::new_v4();
    assert!(activate(one, replacement).await.is_ok(), "replacing a tab's stream is not one more");
    engine.store.close_stream(row.bid, one, first, now()).await.unwrap();
    let still = activate(three, StreamUuid::new_v4()).await;
    assert_eq!(still.unwrap_err(), ActivateRefusal::TooManyStreams(2), "the replaced one is gone");
    engine.store.close_stream(row.bid, one, replacement, now()).await.unwrap();
    assert!(activate(three, StreamUuid::new_v4()).await.is_ok(), "a closed stream makes room");
}

async fn a_front_without_an_active_stream_since_the_cutoff_is_pruned(engine: &Engine) {
    let (streaming, streaming_row) = engine.front().await;
    let (idle, _) = engine.front().await;
    let session = SessionUuid::new_v4();
    let stream = engine.stream((streaming, streaming_row), session, false).await;
    let later = now().plus_millis(1_000);
    let prune = Cutoffs { now: now(), idle: Timestamp::from_millis(0), front: later };
    let swept = engine.store.sweep(prune).await.unwrap();
    assert_eq!(swept.fronts, 1, "{swept:?}");
    assert_eq!(engine.store.front(idle).await.unwrap(), None, "never activated: pruned");
    assert!(engine.store.front(streaming).await.unwrap().is_some(), "an active front stays");
    engine.store.close_stream(streaming_row.bid, session, stream, now()).await.unwrap();
    let swept = engine.store.sweep(prune).await.unwrap();
    assert_eq!(swept.fronts, 1, "no stream any more: {swept:?}");
    assert_eq!(engine.store.front(streaming).await.unwrap(), None);
    // A pruned front registers again, under a new bid.
    let key = KeyPair::generate().public;
    let again = engine.store.register(idle, key, now()).await.unwrap();
    assert!(matches!(again, Registration::Registered(_)), "{again:?}");
}

async fn a_publish_key_is_claimed_once_then_stands_for_its_event_until_it_expires(engine: &Engine) {
    let (_, row) = engine.front().await;
    let claim = |key: &str, until: Timestamp, at: Timestamp| {
        engine.store.claim_publish(row.bid, key.to_owned(), until, at)
    };
    let t0 = now();
    let soon = t0.plus_millis(30_000);
    assert_eq!(claim("k1", soon, t0).await.unwrap(), IdempotencyClaim::Claimed);
    assert_eq!(claim("k1", soon, t0).await.unwrap(), IdempotencyClaim::InProgress);

    let lives_until = t0.plus_millis(3_600_000);
    engine.store.settle_publish(row.bid, "k1".into(), Some(42), lives_until, t0).await.unwrap();
    assert_eq!(claim("k1", soon, t0).await.unwrap(), IdempotencyClaim::Published(42));
    let (_, other) = engine.front().await;
    let other_front = engine.store.claim_publish(other.bid, "k1".into(), soon, t0).await.unwrap();
    assert_eq!(other_front, IdempotencyClaim::Claimed, "keys are per front");

    // A failed publish gives its key back.
    assert_eq!(claim("k2", soon, t0).await.unwrap(), IdempotencyClaim::Claimed);
    engine.store.settle_publish(row.bid, "k2".into(), None, soon, t0).await.unwrap();
    assert_eq!(claim("k2", soon, t0).await.unwrap(), IdempotencyClaim::Claimed);

    // Past the event's life the key is free again (SQLite compares with `now`; Redis lets the
    // key expire, so its record here lives 50 ms).
    let short = t0.plus_millis(50);
    engine.store.settle_publish(row.bid, "k3".into(), Some(7), short, t0).await.unwrap();
    assert_eq!(claim("k3", soon, t0).await.unwrap(), IdempotencyClaim::Published(7));
    tokio::time::sleep(Duration::from_millis(60)).await;
    let later = now().max(t0.plus_millis(51));
    assert_eq!(claim("k3", soon, later).await.unwrap(), IdempotencyClaim::Claimed);
}

/// Resuming from before what the Redis engine trimmed (its per-front cap) is not exact: the
/// replay says events were lost, then gives what is kept. (The embedded store trims only what
/// expired, which is no loss.)
#[tokio::test]
async fn a_replay_from_before_the_trimmed_events_says_they_were_lost() {
    let redis = RedisServer::start().await;
    let store = RedisEngine::connect_with_cap(&redis.target(), 3).await.unwrap();
    let engine = Engine::start(Arc::new(store), Some(Box::new(redis)), None).await;
    let (_, row) = engine.front().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(engine.publish(Some(row.bid), None, &format!("e{n}")).await.unwrap());
    }
    let replay = |since| ReplayRequest {
        front: row.bid,
        session: None,
        since,
        now: now(),
        max_events: 10,
        max_bytes: 1 << 20,
        first: true,
    };
    let page = engine.store.replay(replay(Since::Id(ids[0]))).await.unwrap();
    assert!(page.lost, "e1 was trimmed after e0");
    let got: Vec<&str> = page.events.iter().map(|e| &*e.body).collect();
    assert_eq!(got, ["e2", "e3", "e4"], "what is kept");
    let page = engine.store.replay(replay(Since::Id(ids[1]))).await.unwrap();
    assert!(!page.lost, "everything after e1 is kept");
}

async fn a_disconnect_ends_the_active_streams_of_a_front_or_a_tab_and_tells_their_holder(
    engine: &Engine,
) {
    let front = engine.front().await;
    let (uuid, row) = front;
    let (one, two, idle) = (SessionUuid::new_v4(), SessionUuid::new_v4(), SessionUuid::new_v4());
    let first = engine.stream(front, one, false).await;
    let second = engine.stream(front, two, false).await;
    let gone = engine.stream(front, idle, false).await;
    engine.store.close_stream(row.bid, idle, gone, now()).await.unwrap();
    let other = engine.front().await;
    let elsewhere = engine.stream(other, SessionUuid::new_v4(), false).await;
    let disconnect = |front, session| engine.store.disconnect(front, session, now());

    let unknown = disconnect(FrontUuid::new_v4(), None).await.unwrap();
    assert_eq!(unknown, Err(DisconnectRefusal::FrontNotRegistered));
    let unknown = disconnect(uuid, Some(SessionUuid::new_v4())).await.unwrap();
    assert_eq!(unknown, Err(DisconnectRefusal::SessionNotFound));
    assert_eq!(disconnect(uuid, Some(idle)).await.unwrap(), Ok(0), "a known tab without a stream");

    assert_eq!(disconnect(uuid, Some(one)).await.unwrap(), Ok(1));
    engine.feed.until(|told| told.replaced.contains(&first)).await;
    assert_eq!(engine.store.served(uuid, one, now()).await.unwrap(), Served::Inactive);
    assert_eq!(engine.store.served(uuid, two, now()).await.unwrap(), Served::Own(row));

    assert_eq!(disconnect(uuid, None).await.unwrap(), Ok(1), "the one left of the front");
    engine.feed.until(|told| told.replaced.contains(&second)).await;
    assert_eq!(engine.store.served(uuid, two, now()).await.unwrap(), Served::Inactive);
    assert_eq!(disconnect(uuid, None).await.unwrap(), Ok(0), "nothing left");
    assert!(!engine.feed.0.lock().unwrap().replaced.contains(&elsewhere), "another front's");

    // The holder's own close, which follows, changes nothing; the tabs may come back, and the
    // per-front limit counts only what is active.
    engine.store.close_stream(row.bid, one, first, now()).await.unwrap();
    let again = StreamUuid::new_v4();
    engine.store.open_stream(engine.open(uuid, row, one, again, false)).await.unwrap();
    let activation = engine.store.activate_stream(uuid, again, 1, now()).await.unwrap().unwrap();
    assert_eq!(activation.replaced, None, "the disconnected stream is not the tab's any more");
    assert_eq!(engine.store.served(uuid, one, now()).await.unwrap(), Served::Own(row));
}

async fn presence_lists_a_fronts_sessions_active_first_with_since_when(engine: &Engine) {
    assert_eq!(engine.store.presence(FrontUuid::new_v4(), 10).await.unwrap(), None);
    let front = engine.front().await;
    let (uuid, row) = front;
    let none = engine.store.presence(uuid, 10).await.unwrap();
    assert_eq!(none, Some(Presence { sessions: Vec::new(), truncated: false }));

    let (streaming, left) = (SessionUuid::new_v4(), SessionUuid::new_v4());
    let gone = engine.stream(front, left, false).await;
    let left_at = now().plus_millis(-5_000);
    engine.store.close_stream(row.bid, left, gone, left_at).await.unwrap();
    let before = now();
    engine.stream(front, streaming, false).await;
    let after = now();

    let presence = engine.store.presence(uuid, 10).await.unwrap().unwrap();
    assert!(!presence.truncated);
    let [active, idle] = presence.sessions[..] else { panic!("{presence:?}") };
    assert_eq!((active.session, active.active), (streaming, true), "active first");
    let since = active.since.expect("since its activation");
    assert!(before <= since && since <= after, "{since:?} not in {before:?}..{after:?}");
    assert_eq!(idle, SessionPresence { session: left, active: false, since: Some(left_at) });

    let one = engine.store.presence(uuid, 1).await.unwrap().unwrap();
    assert_eq!((one.sessions, one.truncated), (vec![active], true));

    // A forgotten session is not listed any more.
    engine.store.sweep(cutoffs(now())).await.unwrap();
    let presence = engine.store.presence(uuid, 10).await.unwrap().unwrap();
    assert_eq!(presence.sessions, vec![active]);
}

async fn an_event_for_every_front_reaches_a_resuming_tab_of_a_front_held_nowhere_once(
    engine: &Engine,
) {
    // No instance holds a stream of this front while the events are published (on Redis the
    // event for every front is copied into the front's stream when its tab comes back).
    let front = engine.front().await;
    let bid = front.1.bid;
    let before = engine.publish(Some(bid), None, "before").await.unwrap();
    engine.publish(None, None, "to-all").await.unwrap();
    engine.publish(Some(bid), None, "after").await.unwrap();
    let request = |since| ReplayRequest {
        front: bid,
        session: None,
        since,
        now: now(),
        max_events: 10,
        max_bytes: 1 << 20,
        first: true,
    };
    let page = engine.store.replay(request(Since::Id(before))).await.unwrap();
    let mut got: Vec<&str> = page.events.iter().map(|e| &*e.body).collect();
    got.sort_unstable();
    assert_eq!(got, ["after", "to-all"], "each once");
    let ids: Vec<i64> = page.events.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]) && ids[0] > before, "in id order: {ids:?}");
    let again = engine.store.replay(request(Since::Id(ids[1]))).await.unwrap();
    assert!(again.events.is_empty() && !again.lost && !again.reset, "nothing twice: {again:?}");
    // A new tab gets what no stream was given, which the event for every front is not.
    let fresh = engine.replay(bid, None, Since::Undelivered(0)).await;
    assert_eq!(fresh, ["before", "after"]);
}

/// The events of `front` the feed was told, by body.
fn fed(engine: &Engine, front: FrontBid) -> Vec<String> {
    let told = engine.feed.0.lock().unwrap();
    told.events.iter().filter(|e| e.front == Some(front)).map(|e| e.body.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_pubsub_message_is_caught_up_from_the_fronts_stream() {
    let redis = RedisServer::start().await;
    let url = redis.url.clone();
    let store = RedisEngine::connect(&redis.target()).await.unwrap();
    let engine = Engine::start(Arc::new(store), Some(Box::new(redis)), None).await;
    let front = engine.front().await;
    let bid = front.1.bid;
    engine.stream(front, SessionUuid::new_v4(), false).await;
    let first = engine.publish(Some(bid), None, "first").await.unwrap();
    engine.feed.until(|told| told.events.iter().any(|e| e.id == first)).await;
    // Events stored but whose messages never arrive, as when pub/sub drops them: appended and
    // counted as the publish script does, without the PUBLISH.
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let p = format!("ws:{{f:{}}}:", bid.0);
    let expiry = now().plus_millis(3_600_000).millis();
    let mut silently = async |body: &str| {
        let id: i64 =
            ::redis::cmd("INCR").arg(format!("{p}seq")).query_async(&mut conn).await.unwrap();
        let _: String = ::redis::cmd("XADD")
            .arg(format!("{p}ev"))
            .arg(format!("0-{id}"))
            .arg("s")
            .arg("")
            .arg("x")
            .arg(expiry)
            .arg("b")
            .arg(body)
            .query_async(&mut conn)
            .await
            .unwrap();
    };
    silently("silent").await;
    let next = engine.publish(Some(bid), None, "next").await.unwrap();
    engine.feed.until(|told| told.events.iter().any(|e| e.id == next)).await;
    assert_eq!(fed(&engine, bid), ["first", "silent", "next"], "the gap is read, in order");
    // Lost with no event after it: the liveness tick finds the front's counter ahead.
    silently("last").await;
    let told = async {
        while !fed(&engine, bid).iter().any(|body| body == "last") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    // A tick is 5 s: within two of them.
    tokio::time::timeout(Duration::from_secs(11), told).await.expect("caught up at a tick");
    assert_eq!(fed(&engine, bid), ["first", "silent", "next", "last"]);
}
