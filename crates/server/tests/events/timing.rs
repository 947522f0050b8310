//! Timeouts and expiry, in process under paused Tokio time: the router is called with
//! `tower::ServiceExt::oneshot` and stream bodies are polled directly, so `advance` moves every
//! clock the service reads and nothing sleeps for real.

use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use http_body::Body as _;
use protocol::messages::{ActivateRequest, AuthenticateChallenge, RegisterRequest};
use protocol::sse::{SseItem, SseParser};
use protocol::{FrontUuid, KeyPair, Peer, SessionUuid, StreamUuid, paths};
use serde_json::json;
use server::events::{PublishError, PublishOptions};
use server::{AppState, Config};
use tokio::time::Instant;
use tower::ServiceExt as _;

/// A service on a temporary directory, without a listener.
struct InProcess {
    state: AppState,
    _dir: tempfile::TempDir,
}

impl InProcess {
    async fn open() -> Self {
        Self::open_with(|_| {}).await
    }

    async fn open_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path());
        tweak(&mut config);
        let state = AppState::open(config).await.unwrap();
        Self { state, _dir: dir }
    }

    fn app(&self) -> Router {
        server::app(self.state.clone())
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> StatusCode {
        self.post_for_code(path, body).await.0
    }

    /// The status and, for an error, its code.
    async fn post_for_code(&self, path: &str, body: serde_json::Value) -> (StatusCode, String) {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = self.app().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default();
        (status, code)
    }

    async fn register(&self) -> (FrontUuid, KeyPair) {
        let (front, keys) = (FrontUuid::new_v4(), KeyPair::generate());
        let body = RegisterRequest { public_key: keys.public, front_uuid: front };
        let path = format!("{}/{front}", paths::REGISTER);
        assert_eq!(self.post(&path, serde_json::to_value(body).unwrap()).await, StatusCode::OK);
        (front, keys)
    }

    /// Opens a stream and reads its challenge.
    async fn open_stream(&self, front: FrontUuid, keys: &KeyPair, session: SessionUuid) -> Tab {
        self.open_stream_after(front, keys, session, None).await
    }

    /// Opens a stream that saw every event up to `last_event_id`, and reads its challenge.
    async fn open_stream_after(
        &self,
        front: FrontUuid,
        keys: &KeyPair,
        session: SessionUuid,
        last_event_id: Option<i64>,
    ) -> Tab {
        self.open_stream_at(front, keys, session, last_event_id, "").await
    }

    /// Opens the stream one tab holds for every tab of its front (`?scope=front`).
    async fn open_front_scoped(
        &self,
        front: FrontUuid,
        keys: &KeyPair,
        session: SessionUuid,
    ) -> Tab {
        let query = format!("?{}", paths::STREAM_SCOPE_FRONT_QUERY);
        self.open_stream_at(front, keys, session, None, &query).await
    }

    async fn open_stream_at(
        &self,
        front: FrontUuid,
        keys: &KeyPair,
        session: SessionUuid,
        last_event_id: Option<i64>,
        query: &str,
    ) -> Tab {
        let mut request = Request::get(format!("{}/{front}/{session}{query}", paths::STREAM_OPEN));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let request = request.body(Body::empty()).unwrap();
        let response = self.app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut tab =
            Tab { body: response.into_body(), parser: SseParser::new(), items: Vec::new() };
        let SseItem::Event(hello) = tab.next().await.unwrap() else { panic!("no challenge") };
        let challenge: AuthenticateChallenge = serde_json::from_str(&hello.data).unwrap();
        let stream: StreamUuid =
            Peer::new(&challenge.back_key, &keys.secret).open(&challenge.stream_uuid_enc).unwrap();
        tab.items.clear();
        Tab { items: vec![SseItem::Comment(stream.to_string())], ..tab }
    }

    async fn activate(&self, front: FrontUuid, tab: &mut Tab) {
        let Some(SseItem::Comment(stream)) = tab.items.pop() else { panic!("no stream UUID") };
        let body = ActivateRequest { front_uuid: front, stream_uuid: stream.parse().unwrap() };
        let status = self.post(paths::STREAM_ACTIVATE, serde_json::to_value(body).unwrap());
        assert_eq!(status.await, StatusCode::OK);
    }
}

/// A stream body read frame by frame.
struct Tab {
    body: Body,
    parser: SseParser,
    items: Vec<SseItem>,
}

impl Tab {
    /// The next event, past heartbeats (a heartbeat may come first when its tick and the
    /// activation fall on the same instant of paused time); `None` when the body ends.
    async fn next_event(&mut self) -> Option<protocol::sse::SseEvent> {
        loop {
            match self.next().await? {
                SseItem::Event(event) => return Some(event),
                SseItem::Comment(_) => {}
            }
        }
    }

    /// The next frame of the body as written, unparsed; `None` when the body ends.
    async fn next_frame(&mut self) -> Option<Bytes> {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut self.body).poll_frame(cx)).await;
        Some(frame?.unwrap().into_data().unwrap())
    }

    /// The next item, or `None` when the body ends.
    async fn next(&mut self) -> Option<SseItem> {
        loop {
            if !self.items.is_empty() {
                return Some(self.items.remove(0));
            }
            let frame = std::future::poll_fn(|cx| Pin::new(&mut self.body).poll_frame(cx)).await;
            let data: Bytes = frame?.unwrap().into_data().unwrap();
            self.items = self.parser.feed(&data);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_not_activated_within_ten_seconds_is_closed() {
    let service = InProcess::open().await;
    let (front, keys) = service.register().await;
    let mut tab = service.open_stream(front, &keys, SessionUuid::new_v4()).await;
    tab.items.clear();
    let opened = Instant::now();
    // A heartbeat may come first: each stream's falls somewhere in the period.
    let mut item = tab.next().await;
    while item == Some(SseItem::Comment("heartbeat".into())) {
        item = tab.next().await;
    }
    assert_eq!(item, None, "the body ends");
    let waited = opened.elapsed();
    assert!(waited >= Duration::from_secs(10) && waited < Duration::from_secs(11), "{waited:?}");
    assert_eq!(service.state.events.stream_counts(), (0, 0), "and leaves the registry");
}

#[tokio::test(start_paused = true)]
async fn an_active_stream_gets_a_heartbeat_every_fifteen_seconds_and_outlives_the_timeout() {
    let service = InProcess::open().await;
    let (front, keys) = service.register().await;
    let mut tab = service.open_stream(front, &keys, SessionUuid::new_v4()).await;
    service.activate(front, &mut tab).await;
    // Heartbeats are spread over the period by stream: the first comes within fifteen seconds,
    // each next one fifteen seconds after the one before.
    let start = Instant::now();
    assert_eq!(tab.next().await, Some(SseItem::Comment("heartbeat".into())));
    let mut last = start.elapsed();
    assert!(last <= Duration::from_secs(15), "first beat at {last:?}");
    for beat in 2..=4u32 {
        assert_eq!(tab.next().await, Some(SseItem::Comment("heartbeat".into())));
        let at = start.elapsed();
        let gap = at - last;
        assert!(
            gap <= Duration::from_secs(15)
                && gap + Duration::from_millis(100) > Duration::from_secs(15),
            "{beat}: {gap:?}"
        );
        last = at;
    }
    assert_eq!(service.state.events.stream_counts(), (0, 1));
}

/// Regression (fan-out cost): every stream got its heartbeat at the same instant, 10,000
/// writes at once every period; now each gets one per period, spread over the period.
#[tokio::test(start_paused = true)]
async fn heartbeats_of_many_streams_are_spread_over_the_period() {
    let service = InProcess::open().await;
    let (front, keys) = service.register().await;
    let mut readers = Vec::new();
    let start = Instant::now();
    for _ in 0..24 {
        let mut tab = service.open_stream(front, &keys, SessionUuid::new_v4()).await;
        service.activate(front, &mut tab).await;
        readers.push(tokio::spawn(async move {
            let mut at = Vec::new();
            for _ in 0..2 {
                assert_eq!(tab.next().await, Some(SseItem::Comment("heartbeat".into())));
                at.push(start.elapsed());
            }
            at
        }));
    }
    let mut firsts = std::collections::BTreeSet::new();
    for reader in readers {
        let at = reader.await.unwrap();
        assert!(at[0] <= Duration::from_secs(15), "a first beat within the period: {at:?}");
        assert_eq!(at[1] - at[0], Duration::from_secs(15), "one beat per period: {at:?}");
        firsts.insert(at[0]);
    }
    // 24 random stream UUIDs over 16 slices: all in one slice has odds of 16^-23.
    assert!(firsts.len() > 1, "every stream beat at one instant: {firsts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_session_without_a_stream_is_forgotten_after_thirty_minutes_with_its_events() {
    let service = InProcess::open().await;
    let hub = service.state.events.hub();
    let (front, keys) = service.register().await;
    let session = SessionUuid::new_v4();
    let mut tab = service.open_stream(front, &keys, session).await;
    service.activate(front, &mut tab).await;
    drop(tab);
    tokio::task::yield_now().await;
    assert_eq!(service.state.events.stream_counts(), (0, 0));

    let hours =
        PublishOptions { expires_in: Some(Duration::from_secs(4 * 3600)), ..Default::default() };
    let for_tab = hub.publish_to_session(front, session, "for-tab", json!(1), hours.clone());
    for_tab.await.unwrap();
    tokio::time::sleep(Duration::from_secs(29 * 60)).await;
    let still = hub.publish_to_session(front, session, "still", json!(2), hours.clone()).await;
    assert!(still.is_ok(), "known after 29 minutes: {still:?}");

    tokio::time::sleep(Duration::from_secs(2 * 60)).await;
    let gone = hub.publish_to_session(front, session, "gone", json!(3), hours.clone()).await;
    assert!(matches!(gone, Err(PublishError::SessionNotFound(s)) if s == session), "{gone:?}");

    // The tab comes back under the same session UUID: its old tab events expired with it,
    // the front's event is still there.
    let to_front = hub.publish_to_front(front, "for-front", json!(4), hours).await.unwrap();
    let mut tab = service.open_stream(front, &keys, session).await;
    service.activate(front, &mut tab).await;
    let Some(event) = tab.next_event().await else { panic!("no event") };
    assert_eq!(event.id, Some(to_front.id.to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_session_with_an_active_stream_never_expires() {
    let service = InProcess::open().await;
    let hub = service.state.events.hub();
    let (front, keys) = service.register().await;
    let session = SessionUuid::new_v4();
    let mut tab = service.open_stream(front, &keys, session).await;
    service.activate(front, &mut tab).await;
    // Three hours of heartbeats, each read as it comes: a stream that keeps up.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3 * 3600) {
        assert_eq!(tab.next().await, Some(SseItem::Comment("heartbeat".into())));
    }
    let published =
        hub.publish_to_session(front, session, "hi", json!(1), Default::default()).await;
    assert!(published.is_ok(), "{published:?}");
    let Some(event) = tab.next_event().await else { panic!("the stream ended") };
    assert_eq!(event.id, Some(published.unwrap().id.to_string()));
}

/// Regression: a stream cut off for not reading (its queue full) whose client keeps the
/// connection open kept its session active for ever, since the store learned of the end only
/// when hyper dropped the body.
#[tokio::test(start_paused = true)]
async fn a_stream_cut_off_as_too_slow_does_not_keep_its_session_alive() {
    let service = InProcess::open_with(|config| config.events.stream_buffer = 4).await;
    let hub = service.state.events.hub();
    let (front, keys) = service.register().await;
    let session = SessionUuid::new_v4();
    let mut tab = service.open_stream(front, &keys, session).await;
    service.activate(front, &mut tab).await;
    // The body is never polled again, as with a client that stopped reading.
    for n in 0..8 {
        hub.publish_to_session(front, session, "n", json!(n), Default::default()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(31 * 60 + 60)).await;
    let gone = hub.publish_to_session(front, session, "late", json!(0), Default::default()).await;
    assert!(matches!(gone, Err(PublishError::SessionNotFound(s)) if s == session), "{gone:?}");
    drop(tab);
}

/// A stream whose client does not read is closed after `--stream-buffer` queued frames, and
/// its client loses nothing: it reconnects with `Last-Event-ID` and gets the rest.
#[tokio::test(start_paused = true)]
async fn a_slow_reader_is_cut_off_after_its_buffer_and_resumes_losslessly() {
    let service = InProcess::open_with(|config| config.events.stream_buffer = 4).await;
    let hub = service.state.events.hub();
    let (front, keys) = service.register().await;
    let session = SessionUuid::new_v4();
    let mut tab = service.open_stream(front, &keys, session).await;
    service.activate(front, &mut tab).await;
    // Drain the (empty) replay, so that what follows is queued live.
    let mut ids = Vec::new();
    for n in 0..10 {
        let published = hub.publish_to_session(front, session, "n", json!(n), long()).await;
        ids.push(published.unwrap().id);
    }
    // What was queued before the cut arrives, then the stream ends.
    let mut got = Vec::new();
    while let Some(event) = tab.next_event().await {
        got.push(event.id.unwrap().parse::<i64>().unwrap());
    }
    assert!(got.len() < ids.len(), "cut off before it got all 10: {got:?}");
    assert_eq!(got, ids[..got.len()], "what it got came in order");
    // It reconnects from where it was: the rest, once, in order.
    let last = got.last().copied().unwrap_or(0);
    let mut tab = service.open_stream_after(front, &keys, session, Some(last)).await;
    service.activate(front, &mut tab).await;
    for expected in &ids[got.len()..] {
        let event = tab.next_event().await.expect("the rest");
        assert_eq!(event.id, Some(expected.to_string()));
    }
}

fn long() -> PublishOptions {
    PublishOptions { expires_in: Some(Duration::from_secs(3600)), ..Default::default() }
}

#[tokio::test(start_paused = true)]
async fn events_expire_at_their_expired_time() {
    let service = InProcess::open().await;
    let hub = service.state.events.hub();
    let (front, keys) = service.register().await;
    let short = PublishOptions { expires_in: Some(Duration::from_secs(5)), ..Default::default() };
    let brief = hub.publish_to_front(front, "short", json!(1), short).await.unwrap();
    let long = hub.publish_to_front(front, "default", json!(2), Default::default()).await.unwrap();
    // Just before its expiry it is still delivered (to a stream that resumes from before it).
    tokio::time::advance(Duration::from_millis(4_900)).await;
    let mut early = service.open_stream_after(front, &keys, SessionUuid::new_v4(), Some(0)).await;
    service.activate(front, &mut early).await;
    let Some(event) = early.next_event().await else { panic!("no event") };
    assert_eq!(event.id, Some(brief.id.to_string()), "the 5-second event at 4.9 s");
    tokio::time::advance(Duration::from_millis(1_100)).await;
    let mut tab = service.open_stream(front, &keys, SessionUuid::new_v4()).await;
    service.activate(front, &mut tab).await;
    let Some(event) = tab.next_event().await else { panic!("no event") };
    assert_eq!(event.id, Some(long.id.to_string()), "the 5-second event is gone after 6");
}

/// Regression: 256 kept events of 63 KiB replayed to a stream opened with `Last-Event-ID: 0`
/// were one 16 MiB chunk, built while holding the lock every request needed (an unrelated
/// registration waited 4 s, and ten streams that never read pinned 222 MiB). The replay now
/// comes in pages of at most `--replay-page-bytes` (one event at least), the next one only
/// when the stream is read on, and other requests are served in between.
#[tokio::test(start_paused = true)]
async fn a_large_backlog_is_replayed_in_capped_pages_while_other_requests_are_served() {
    let service = InProcess::open().await;
    let hub = service.state.events.hub();
    let (front, keys) = service.register().await;
    let big = "x".repeat(63 * 1024);
    let hours =
        PublishOptions { expires_in: Some(Duration::from_secs(4 * 3600)), ..Default::default() };
    let mut last = 0;
    for _ in 0..64 {
        let published = hub.publish_to_front(front, "big", json!(big), hours.clone()).await;
        last = published.unwrap().id;
    }
    let cap = service.state.config.events.replay_page_bytes + 64 * 1024;
    let mut tab = service.open_stream_after(front, &keys, SessionUuid::new_v4(), Some(0)).await;
    service.activate(front, &mut tab).await;
    let first = tab.next_frame().await.expect("the first page");
    assert!(first.len() <= cap, "the first page is {} bytes", first.len());

    // The stream is in the middle of its replay, its reader not asking for more: another
    // front registers now, and the replay goes on afterwards.
    service.register().await;
    let marker = format!("id: {last}\n");
    let mut pages = 1;
    loop {
        let page = tab.next_frame().await.expect("the replay goes on");
        assert!(page.len() <= cap, "page {pages} is {} bytes", page.len());
        pages += 1;
        if String::from_utf8_lossy(&page).contains(&marker) {
            break;
        }
    }
    assert!(pages >= 8, "4 MiB in pages of 256 KiB: {pages} pages");
}

/// Regression: fronts were never deleted, so registrations piled up for good. A front with no
/// active stream for the front TTL is pruned; when it comes back it is told to register again
/// (`front_not_registered`), and does, even on the instance that had it in memory.
#[tokio::test(start_paused = true)]
async fn a_front_without_a_stream_for_the_front_ttl_is_pruned_and_registers_again() {
    let service = InProcess::open_with(|config| {
        config.events.front_idle_ttl = Duration::from_secs(3600);
        config.events.session_ttl = Duration::from_secs(60);
    })
    .await;
    let (front, keys) = service.register().await;
    let mut tab = service.open_stream(front, &keys, SessionUuid::new_v4()).await;
    tokio::time::sleep(Duration::from_secs(2 * 3600)).await;
    // Its key is still cached in memory, but the store forgot it: activation says so.
    let Some(SseItem::Comment(stream)) = tab.items.pop() else { panic!("no stream UUID") };
    let body = ActivateRequest { front_uuid: front, stream_uuid: stream.parse().unwrap() };
    let answer = service.post_for_code(paths::STREAM_ACTIVATE, serde_json::to_value(body).unwrap());
    assert_eq!(answer.await, (StatusCode::NOT_FOUND, "front_not_registered".to_owned()));
    // It registers again (the store is asked, not the memory) and streams as before.
    let request = RegisterRequest { public_key: keys.public, front_uuid: front };
    let path = format!("{}/{front}", paths::REGISTER);
    assert_eq!(service.post(&path, serde_json::to_value(request).unwrap()).await, StatusCode::OK);
    let mut tab = service.open_stream(front, &keys, SessionUuid::new_v4()).await;
    service.activate(front, &mut tab).await;
}

/// A session that was streaming when the server stopped (crashed: nothing recorded the end of
/// its stream) is idle from the next start, and forgotten a session TTL later.
#[tokio::test(start_paused = true)]
async fn a_session_streaming_when_the_server_stopped_expires_a_ttl_after_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = AppState::open(Config::new(dir.path())).await.unwrap();
    let service = InProcess { state: first, _dir: tempfile::tempdir().unwrap() };
    let (front, keys) = service.register().await;
    let session = SessionUuid::new_v4();
    let mut tab = service.open_stream(front, &keys, session).await;
    service.activate(front, &mut tab).await;
    // Another start on the same store, the first never told of the stream's end.
    let second = AppState::open(Config::new(dir.path())).await.unwrap();
    let hub = second.events.hub();
    tokio::time::sleep(Duration::from_secs(29 * 60)).await;
    let still = hub.publish_to_session(front, session, "still", json!(1), long()).await;
    assert!(still.is_ok(), "idle for 29 minutes only: {still:?}");
    tokio::time::sleep(Duration::from_secs(2 * 60 + 60)).await;
    let gone = hub.publish_to_session(front, session, "gone", json!(2), long()).await;
    assert!(matches!(gone, Err(PublishError::SessionNotFound(s)) if s == session), "{gone:?}");
    drop(tab);
}

/// A tab served by another tab's shared stream has no stream of its own: it is known from the
/// last time an event was published to it (or it sent one), and forgotten a session TTL later.
#[tokio::test(start_paused = true)]
async fn a_tab_served_by_a_shared_stream_expires_a_ttl_after_it_was_last_seen() {
    let service = InProcess::open().await;
    let hub = service.state.events.hub();
    let (front, keys) = service.register().await;
    let (holder, served) = (SessionUuid::new_v4(), SessionUuid::new_v4());
    let mut shared = service.open_front_scoped(front, &keys, holder).await;
    service.activate(front, &mut shared).await;
    let seen = hub.publish_to_session(front, served, "for-served", json!(1), long()).await;
    assert!(seen.is_ok(), "served by the shared stream: {seen:?}");
    // The shared stream goes; the served tab stays known until its TTL from when it was seen.
    drop(shared);
    tokio::time::sleep(Duration::from_secs(29 * 60)).await;
    let still = hub.publish_to_session(front, served, "still", json!(2), long()).await;
    assert!(still.is_ok(), "seen 29 minutes ago: {still:?}");
    tokio::time::sleep(Duration::from_secs(2 * 60 + 60)).await;
    let gone = hub.publish_to_session(front, served, "gone", json!(3), long()).await;
    assert!(matches!(gone, Err(PublishError::SessionNotFound(s)) if s == served), "{gone:?}");
}
