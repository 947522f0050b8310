//! Front registration, reverse streams (SSE) with the crypto handshake, and direct events: the
//! server half of seeds 001 and 003, wire-compatible with the TeqFw web-event back.
//!
//! - `config.rs`: [`EventsConfig`] and its flags [`EventsArgs`].
//! - `identity.rs`: the back's own UUID and key pair, kept in the store.
//! - `store.rs`: fronts, sessions, kept events and handled direct events, in SQLite.
//! - `registry.rs`: open streams in memory, by stream, front and session.
//! - `stream.rs`: one stream's body (challenge, replay, live events, heartbeats).
//! - `hub.rs`: [`Hub`], how the application publishes events.
//! - `direct.rs`: [`DirectHandler`] and the built-in `echo` and `broadcast`.
//! - `handlers.rs`: the HTTP endpoints; `error.rs`: their errors and statuses.
//! - `maintenance.rs`: heartbeats and expiry, in the background.
//!
//! Delivery: every event gets an id (the SSE `id:`) from one increasing sequence, so each
//! front's ids increase. An event is stored before it is sent; a stream that (re)connects with
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
mod store;
mod stream;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use protocol::messages::FrontBid;
use protocol::{BackUuid, ErrorCode, FrontUuid, Peer, PublicKey};
use tokio::task::JoinHandle;

pub use self::config::{EventsArgs, EventsConfig};
pub use self::direct::{DirectHandler, HandlerFuture, answer_options, broadcast, echo};
pub use self::error::EventError;
pub use self::hub::{Hub, PublishError, PublishOptions, Published};

use self::clock::Clock;
use self::identity::BackIdentity;
use self::registry::{FrontInfo, Registry};
use self::store::Store;
use crate::config::Config;
use crate::db::Db;
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
    store: Store,
    registry: Registry,
    clock: Clock,
    /// Read on every direct event, written when the application adds a handler: a
    /// `std::sync::RwLock`, never held across an `.await` (handlers are cloned out first).
    handlers: RwLock<HashMap<String, Arc<dyn DirectHandler>>>,
    /// The background tasks, aborted at shutdown.
    tasks: Mutex<Vec<JoinHandle<()>>>,
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
    /// Opens the service on the shared store: creates its tables and the back's identity on
    /// first start, registers the built-in `echo` and `broadcast` handlers, and starts the
    /// heartbeat and expiry tasks.
    pub async fn open(config: &Config, db: Db) -> anyhow::Result<Self> {
        let clock = Clock::start();
        let identity = BackIdentity::load_or_create(&db)?;
        let store = Store::open(db, clock.now())?;
        let inner = Arc::new(Inner {
            config: config.events.clone(),
            identity,
            store,
            registry: Registry::new(config.events.stream_buffer),
            clock,
            handlers: RwLock::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let events = Self { inner };
        events.handle("echo", echo);
        events.handle("broadcast", broadcast);
        let tasks = maintenance::spawn(&events.inner);
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

    /// Ends every open stream and refuses new ones (graceful shutdown); stops the background
    /// tasks. Events published afterwards are still stored for later delivery.
    pub fn shutdown(&self) {
        self.inner.registry.shutdown();
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        tasks.iter().for_each(JoinHandle::abort);
    }
}

impl Inner {
    /// A registered front with its shared key: from the registry while it has streams or was
    /// seen recently, else from the store (and one X25519 for the shared key).
    fn front_info(&self, uuid: FrontUuid) -> rusqlite::Result<Option<Arc<FrontInfo>>> {
        if let Some(info) = self.registry.cached_front(uuid) {
            return Ok(Some(info));
        }
        let Some(row) = self.store.front(uuid)? else { return Ok(None) };
        let info = Arc::new(self.front(row.bid, uuid, row.key));
        self.registry.remember(info.clone());
        Ok(Some(info))
    }

    /// A front's info, with its shared key computed (one X25519).
    fn front(&self, bid: FrontBid, uuid: FrontUuid, key: PublicKey) -> FrontInfo {
        FrontInfo { bid, uuid, key, peer: Peer::new(&key, &self.identity.keys.secret) }
    }
}

/// The event endpoints (paths in [`protocol::paths`]).
pub fn router(events: Events) -> Router {
    use protocol::paths::{DIRECT, REGISTER, STREAM_ACTIVATE, STREAM_OPEN};
    Router::new()
        .route(&format!("{REGISTER}/{{front_uuid}}"), post(handlers::register))
        .route(&format!("{STREAM_OPEN}/{{front_uuid}}/{{session_uuid}}"), get(handlers::open))
        .route(STREAM_ACTIVATE, post(handlers::activate))
        // The original front appends segments; they carry nothing.
        .route(&format!("{STREAM_ACTIVATE}/{{*rest}}"), post(handlers::activate))
        .route(&format!("{DIRECT}/{{event_name}}"), post(handlers::direct))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(events)
}

async fn method_not_allowed() -> axum::response::Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidRequest,
        "this endpoint does not take that method",
    )
}
