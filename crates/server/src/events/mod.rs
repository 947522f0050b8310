//! Front registration, reverse streams (SSE) with the crypto handshake, and direct events: the
//! server half of seeds 001 and 003, wire-compatible with the TeqFw web-event back.
//!
//! - `config.rs`: [`EventsConfig`] and its flags [`EventsArgs`].
//! - `identity.rs`: the back's own UUID and key pair, kept in the store.
//! - `store/`: [`store::EventStore`], the interface to everything instances share (fronts,
//!   streams and their activation, sessions, kept events, handled direct events), and its two
//!   engines, embedded SQLite and Redis.
//! - `registry.rs`: the streams this instance holds, by stream, front and session.
//! - `stream.rs`: one stream's body (challenge, replay, live events, heartbeats).
//! - `hub.rs`: [`Hub`], how the application publishes events.
//! - `direct.rs`: [`DirectHandler`] and the built-in `echo` and `broadcast`.
//! - `handlers.rs`: the HTTP endpoints; `error.rs`: their errors and statuses.
//! - `maintenance.rs`: heartbeats and expiry, in the background.
//!
//! Delivery: every event gets an id (the SSE `id:`) from one increasing sequence, so each
//! front's ids increase. An event is stored before it is sent, and the store hands it to the
//! streams of every instance in id order; a stream that (re)connects with
//! `Last-Event-ID` (header, or `lastEventId` query parameter) gets every kept event after that
//! id once it is activated, then live ones, in order and without duplicates. A stream that
//! connects without it gets what no stream of its front was given yet.

mod clock;
mod config;
mod direct;
mod error;
mod handlers;
mod hub;
mod identity;
mod maintenance;
mod registry;
pub mod store;
mod stream;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock, Weak};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use protocol::messages::FrontBid;
use protocol::{BackUuid, ErrorCode, FrontUuid, Peer, PublicKey, StreamUuid};
use tokio::task::JoinHandle;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::config::{EventsArgs, EventsConfig};
pub use self::direct::{DirectHandler, HandlerFuture, answer_options, broadcast, echo};
pub use self::error::EventError;
pub use self::hub::{Hub, PublishError, PublishOptions, Published};

use self::clock::Clock;
use self::identity::BackIdentity;
use self::registry::{FrontInfo, Registry};
use self::store::{EventStore, Feed, NodeId, StoreError, StoredEvent};
use crate::config::Config;
use crate::error::error_response;

/// The event service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

/// What the handlers, the hub and the streams share.
pub(crate) struct Inner {
    config: EventsConfig,
    identity: BackIdentity,
    store: Arc<dyn EventStore>,
    /// This instance's name in the store (which instance holds which stream).
    node: NodeId,
    registry: Registry,
    clock: Clock,
    /// Read on every direct event, written when the application adds a handler: a
    /// `std::sync::RwLock`, never held across an `.await` (handlers are cloned out first).
    handlers: RwLock<HashMap<String, Arc<dyn DirectHandler>>>,
    /// The background tasks, aborted at shutdown.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Events for many streams, handed over in batches by a task (see `hub.rs`).
    fan_out: hub::FanOut,
    /// Registrations per client address, if limited. Per instance: behind a balancer each
    /// instance allows the rate, which bounds a client all the same.
    registrations: Option<governor::DefaultKeyedRateLimiter<std::net::IpAddr>>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .field("back_uuid", &self.identity.uuid)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// Opens the service on `store`: creates the back's identity on first start, registers
    /// the built-in `echo` and `broadcast` handlers, starts the store's feed and the heartbeat
    /// and expiry tasks.
    pub async fn open(config: &Config, store: Arc<dyn EventStore>) -> anyhow::Result<Self> {
        let clock = Clock::start();
        let identity = BackIdentity::load_or_create(store.as_ref()).await?;
        let node = node_id()?;
        let (fan_out, deliveries) = hub::FanOut::new(config.events.fan_out_batch);
        let inner = Arc::new(Inner {
            config: config.events.clone(),
            identity,
            store,
            node: node.clone(),
            registry: Registry::new(config.events.stream_buffer, config.events.recent_fronts),
            clock,
            handlers: RwLock::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            fan_out,
            registrations: registration_limiter(&config.events),
        });
        let feed = Arc::new(LocalFeed { inner: Arc::downgrade(&inner) });
        inner.store.start(feed, node).await?;
        let events = Self { inner };
        events.handle("echo", echo);
        events.handle("broadcast", broadcast);
        let mut tasks = maintenance::spawn(&events.inner);
        tasks.push(tokio::spawn(hub::fan_out(Arc::downgrade(&events.inner), deliveries)));
        *events.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        Ok(events)
    }

    /// The handle to publish events with.
    pub fn hub(&self) -> Hub {
        Hub { inner: self.inner.clone() }
    }

    /// Handles direct events named `name` with `handler`, replacing any handler of that name.
    pub fn handle(&self, name: impl Into<String>, handler: impl DirectHandler) -> &Self {
        let mut handlers = self.inner.handlers.write().unwrap_or_else(|p| p.into_inner());
        handlers.insert(name.into(), Arc::new(handler));
        self
    }

    /// The back's UUID (`backUuid` of the `authenticate` challenge).
    pub fn back_uuid(&self) -> BackUuid {
        self.inner.identity.uuid
    }

    /// The back's public key (`backKey`).
    pub fn back_key(&self) -> PublicKey {
        self.inner.identity.keys.public
    }

    /// Open streams: `(waiting for activation, active)`.
    pub fn stream_counts(&self) -> (usize, usize) {
        self.inner.registry.counts()
    }

    /// Drains this instance: refuses new streams from now on (`503 not_ready` with
    /// `Retry-After`), then ends each open stream with a `retry:` hint of a few seconds
    /// ([`drain_retry_ms`], jittered), one at a time, spread evenly over `window`, so that
    /// their clients do not all reconnect to the instances that stay at once. Returns once
    /// the last was told to end. Streams held by other instances are not touched; events keep
    /// flowing to the streams not yet ended.
    pub async fn drain(&self, window: std::time::Duration) {
        let streams = self.inner.registry.drain();
        let Ok(count) = u32::try_from(streams.len()) else { return };
        if count == 0 {
            return;
        }
        tracing::info!(streams = count, window_ms = window.as_millis() as u64, "draining");
        let step = window / count;
        let started = tokio::time::Instant::now();
        // The i-th at (i + ½) steps: the first after half a step, in which balancers can see
        // `/readyz` fail, the last half a step before the window ends.
        for (i, stream) in (0..count).zip(streams) {
            tokio::time::sleep_until(started + step * i + step / 2).await;
            let retry = format!("retry: {}\n\n", drain_retry_ms());
            self.inner.registry.end_with_retry(stream, &retry.into());
        }
    }

    /// Ends every open stream and refuses new ones (graceful shutdown); stops the background
    /// tasks and the store's subscriptions. Events published afterwards are still stored for
    /// later delivery.
    pub async fn shutdown(&self) {
        self.inner.registry.shutdown();
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        tasks.iter().for_each(JoinHandle::abort);
        if let Err(e) = self.inner.store.stop().await {
            tracing::warn!(error = %e, "the event store did not stop cleanly");
        }
    }

    /// Active streams by scope: (one tab's, a whole front's).
    pub fn active_streams_by_scope(&self) -> (usize, usize) {
        self.inner.registry.active_by_scope()
    }

    /// The event store (the server API keeps its idempotency records there).
    pub(crate) fn store(&self) -> &Arc<dyn EventStore> {
        &self.inner.store
    }

    /// The `frontBid` of a registered front.
    pub(crate) async fn front_bid(&self, front: FrontUuid) -> Result<Option<FrontBid>, StoreError> {
        Ok(self.inner.front_info(front).await?.map(|info| info.bid))
    }

    /// Now, by the service's clock.
    pub(crate) fn now(&self) -> protocol::Timestamp {
        self.inner.clock.now()
    }

    /// Whether the event store answers (readiness).
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.inner.store.ping().await
    }
}

impl Inner {
    /// A registered front with its shared key: from the registry while it has streams or was
    /// seen recently, else from the store (and one X25519 for the shared key).
    async fn front_info(&self, uuid: FrontUuid) -> Result<Option<Arc<FrontInfo>>, StoreError> {
        if let Some(info) = self.registry.cached_front(uuid) {
            return Ok(Some(info));
        }
        let Some(row) = self.store.front(uuid).await? else { return Ok(None) };
        let info = Arc::new(self.front(row.bid, uuid, row.key));
        self.registry.remember(info.clone());
        Ok(Some(info))
    }

    /// Tells the store, in the background, that a stream ended (its session is idle from now if
    /// it was current). Without a runtime (the process is ending) the store learns of it at its
    /// next start, or from the instance's silence.
    fn record_end(&self, ended: registry::Ended) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (store, clock) = (self.store.clone(), self.clock);
        runtime.spawn(async move {
            let closed = store.close_stream(ended.front, ended.session, ended.stream, clock.now());
            if let Err(e) = closed.await {
                tracing::warn!(error = %e, "could not record the end of a stream");
            }
        });
    }

    /// Records the end of the streams cut off for not keeping up: a client that does not read
    /// may keep its connection (and so the body) open for good, and must not keep its session
    /// alive with it.
    fn record_cut(&self) {
        for ended in self.registry.take_cut() {
            self.record_end(ended);
        }
    }

    /// A front's info, with its shared key computed (one X25519).
    fn front(&self, bid: FrontBid, uuid: FrontUuid, key: PublicKey) -> FrontInfo {
        FrontInfo { bid, uuid, key, peer: Peer::new(&key, &self.identity.keys.secret) }
    }
}

/// The token bucket of registrations per client address: `registrations_per_sec`, bursts of
/// `registration_burst`.
fn registration_limiter(
    config: &EventsConfig,
) -> Option<governor::DefaultKeyedRateLimiter<std::net::IpAddr>> {
    let rate = config.registrations_per_sec.filter(|rate| *rate > 0.0)?;
    let period = std::time::Duration::from_secs_f64(1.0 / rate);
    let burst = std::num::NonZeroU32::new(config.registration_burst.max(1))?;
    let quota = governor::Quota::with_period(period)?.allow_burst(burst);
    Some(governor::RateLimiter::dashmap(quota))
}

/// The shortest `retry:` hint a drained stream gets, in milliseconds.
pub const DRAIN_RETRY_MIN_MS: u64 = 2_000;
/// The random part added to [`DRAIN_RETRY_MIN_MS`], at most, in milliseconds.
pub const DRAIN_RETRY_JITTER_MS: u64 = 3_000;

/// A `retry:` hint for a drained stream: [`DRAIN_RETRY_MIN_MS`] plus up to
/// [`DRAIN_RETRY_JITTER_MS`], at random, so that its client comes back neither at once nor
/// together with the others.
pub fn drain_retry_ms() -> u64 {
    let mut bytes = [0u8; 2];
    // Without randomness the hint is still a valid one, only not jittered.
    let _ = getrandom::getrandom(&mut bytes);
    DRAIN_RETRY_MIN_MS + u64::from(u16::from_le_bytes(bytes)) % (DRAIN_RETRY_JITTER_MS + 1)
}

/// A random name for this instance, unique among those sharing a store.
fn node_id() -> anyhow::Result<NodeId> {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes)?;
    Ok(Arc::from(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// What the store tells this instance: committed events and activations of its streams. It
/// holds the service weakly, so the store (which the service owns) does not keep it alive.
struct LocalFeed {
    inner: Weak<Inner>,
}

impl Feed for LocalFeed {
    fn event(&self, event: &StoredEvent) -> usize {
        self.inner.upgrade().map_or(0, |inner| inner.hand_over(event))
    }

    fn activated(&self, stream: StreamUuid) {
        if let Some(inner) = self.inner.upgrade() {
            inner.registry.activate(stream);
        }
    }

    fn replaced(&self, stream: StreamUuid) {
        if let Some(inner) = self.inner.upgrade() {
            inner.registry.end(stream);
        }
    }

    fn local_fronts(&self) -> Vec<FrontBid> {
        self.inner.upgrade().map(|inner| inner.registry.fronts()).unwrap_or_default()
    }
}

/// The event endpoints (paths in [`protocol::paths`]).
pub fn router(events: Events) -> Router {
    let (router, _) = routes(events).split_for_parts();
    router.method_not_allowed_fallback(method_not_allowed)
}

/// The event endpoints with their OpenAPI operations.
pub(crate) fn routes(events: Events) -> OpenApiRouter {
    use protocol::paths::STREAM_ACTIVATE;
    OpenApiRouter::new()
        .routes(routes!(handlers::register))
        .routes(routes!(handlers::open))
        .routes(routes!(handlers::activate))
        // The original front appends segments to the activation path; they carry nothing. An
        // alias of the documented operation, so not an operation of its own.
        .route(&format!("{STREAM_ACTIVATE}/{{*rest}}"), post(handlers::activate))
        .routes(routes!(handlers::direct))
        .with_state(events)
}

async fn method_not_allowed() -> axum::response::Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidRequest,
        "this endpoint does not take that method",
    )
}
