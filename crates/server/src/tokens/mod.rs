//! The token services: the VTX token exchange (seed 000) and the one-time-token login with
//! rotating refresh tokens (seed 002).
//!
//! | endpoint | what | module |
//! |---|---|---|
//! | `GET /vtx/token` (bearer venue JWT), `POST /vtx/token` (RFC 8693 form) | venue JWT → EID JWT | [`vtx`] |
//! | `GET /.well-known/jwks.json` | the server's public signing keys (those that may still have valid tokens) | [`keys`], [`ring`] |
//! | `POST /api/auth/authenticate` | one-time token → access JWT + refresh cookie | [`login`] |
//! | `POST /api/auth/refresh` | refresh cookie → new access JWT + new refresh cookie | [`login`] |
//! | `POST /api/auth/logout` | session deleted, cookie cleared | [`login`] |
//! | `GET /api/dashboard`, `GET /api/reports` | demo routes behind [`RequirePermission`] | [`guard`] |
//!
//! **Invariants.** Stores hold hashes of refresh tokens, never tokens. Every expiry decision
//! reads the injected [`Clock`]. Every JWT this server signs uses the active Ed25519 key of its
//! [`KeyRing`] and names it by `kid`; every key that may still have valid tokens is at
//! `/.well-known/jwks.json`, and rotation ([`rotate_signing_key`]) logs no one out; venue JWTs are verified only against the venue's
//! keys and only with `EdDSA` or `ES256`.
//!
//! **Boundary.** Wire bodies are `protocol::tokens`; sessions and one-time tokens go through the
//! [`store`] traits, embedded (SQLite, [`crate::db::Db`]) or Redis.

mod access;
mod clock;
mod config;
mod cookie;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod guard;
mod keys;
mod login;
mod mint;
mod origin;
mod ring;
mod secret;
pub mod store;
mod venue_keys;
mod vtx;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::access::{ACCESS_TOKEN_TYPE, AccessTokens};
pub use self::clock::{Clock, ManualClock, SystemClock};
pub use self::config::{
    DEFAULT_EID_AUDIENCE, DEFAULT_ISSUER, DEFAULT_KEY_FILE, DEFAULT_VENUE_AUDIENCE,
    DEFAULT_VENUE_ISSUER, EnterpriseStoreConfig, SessionStoreConfig, TokensArgs, TokensConfig,
    VenueKeySource, redact_url,
};
pub use self::error::{OAuthError, TokenError};
pub use self::guard::{RequirePermission, RequirePermissionService};
pub use self::keys::{ALGORITHM, KeyError, SigningKey};
pub use self::login::Refreshed;
pub use self::mint::{MintTokenArgs, MintedToken, mint_token, parse_duration};
pub use self::origin::OriginPattern;
pub use self::ring::{
    KEY_RELOAD_EVERY, KEY_RELOAD_MIN_GAP, KeyRing, RETIRE_LEEWAY, RING_FILE, Rotated,
    retirement_delay, rotate_signing_key,
};
pub use self::venue_keys::{
    MAX_AGE as VENUE_JWKS_MAX_AGE, MAX_STALE as VENUE_JWKS_MAX_STALE,
    MIN_REFETCH as VENUE_JWKS_MIN_REFETCH,
};
pub use self::vtx::EID_TOKEN_TYPE;

use self::store::{OneTimeTokenStore, RedisStore, SessionStore, SqliteStore};
use self::venue_keys::VenueKeys;
use crate::config::Config;
use crate::db::Db;

/// How often the embedded store deletes expired rows.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The token services' state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tokens {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: TokensConfig,
    clock: Arc<dyn Clock>,
    keys: Arc<KeyRing>,
    access: AccessTokens,
    venue_keys: VenueKeys,
    sessions: Arc<dyn SessionStore>,
    enterprise: Arc<dyn OneTimeTokenStore>,
    /// Origins besides our own that may refresh and log out (the CORS origins).
    allowed_origins: Vec<OriginPattern>,
    /// Background tasks, aborted at shutdown or when the services are dropped.
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(|p| p.into_inner());
        tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

impl Tokens {
    /// Opens the services: reads the signing-key ring (making the first key if there is
    /// none), connects the stores (the embedded ones on `db`) and reads a venue key file.
    /// Fails when a configured Redis does not answer or a key file is wrong, so a
    /// misconfigured server does not start.
    pub async fn open(config: &Config, db: Db) -> anyhow::Result<Self> {
        let tokens = &config.tokens;
        let keys = Arc::new(KeyRing::open(config).await?);
        let mut embedded = None;
        let mut embedded_store = || -> anyhow::Result<SqliteStore> {
            if embedded.is_none() {
                embedded = Some(SqliteStore::open(db.clone())?);
            }
            embedded.clone().ok_or_else(|| anyhow::anyhow!("embedded store"))
        };
        let sessions: Arc<dyn SessionStore> = match &tokens.session_store {
            SessionStoreConfig::Embedded => Arc::new(embedded_store()?),
            SessionStoreConfig::Redis { target } => Arc::new(
                RedisStore::connect(target, "")
                    .await
                    .map_err(|err| anyhow::anyhow!("session Redis {}: {err}", target.shown()))?,
            ),
        };
        let enterprise: Arc<dyn OneTimeTokenStore> = match &tokens.enterprise_store {
            EnterpriseStoreConfig::Embedded => Arc::new(embedded_store()?),
            EnterpriseStoreConfig::Redis { target, key_prefix } => Arc::new(
                RedisStore::connect(target, key_prefix)
                    .await
                    .map_err(|err| anyhow::anyhow!("enterprise Redis {}: {err}", target.shown()))?,
            ),
        };
        let services = Self::with_ring(config, keys.clone(), sessions, enterprise)?;
        let mut tasks = services.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = embedded {
            tasks.push(spawn_sweeper(store, tokens.clock.clone()));
        }
        tasks.extend(ring::spawn_reloader(keys));
        drop(tasks);
        Ok(services)
    }

    /// Stops the background tasks (they also stop when the last handle is dropped).
    pub fn shutdown(&self) {
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }

    /// The services on stores and a key of the caller's choosing (tests, benchmarks,
    /// applications with their own store); the key is fixed (it does not rotate).
    pub fn with_stores(
        config: &Config,
        key: SigningKey,
        sessions: Arc<dyn SessionStore>,
        enterprise: Arc<dyn OneTimeTokenStore>,
    ) -> anyhow::Result<Self> {
        let keys = Arc::new(KeyRing::fixed(key, config.tokens.clock.clone()));
        Self::with_ring(config, keys, sessions, enterprise)
    }

    fn with_ring(
        config: &Config,
        keys: Arc<KeyRing>,
        sessions: Arc<dyn SessionStore>,
        enterprise: Arc<dyn OneTimeTokenStore>,
    ) -> anyhow::Result<Self> {
        let tokens = config.tokens.clone();
        let access = AccessTokens::new(
            keys.clone(),
            &tokens.issuer,
            tokens.access_ttl,
            tokens.clock.clone(),
        );
        let venue_keys = VenueKeys::open(&tokens.venue_keys, tokens.clock.clone())?;
        let inner = Inner {
            clock: tokens.clock.clone(),
            config: tokens,
            keys,
            access,
            venue_keys,
            sessions,
            enterprise,
            tasks: std::sync::Mutex::new(Vec::new()),
            allowed_origins: config
                .cors_origins
                .iter()
                .map(|origin| OriginPattern::exact(origin))
                .chain(config.tokens.trusted_origins.iter().cloned())
                .collect(),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The server's active signing key (its `kid`).
    pub fn signing_key(&self) -> Arc<SigningKey> {
        self.inner.keys.active()
    }

    /// The signing-key ring (every key that may still have valid tokens, its JWKS).
    pub fn key_ring(&self) -> &KeyRing {
        &self.inner.keys
    }

    /// Re-reads the signing-key ring now, instead of within [`KEY_RELOAD_EVERY`] (after a
    /// [`rotate_signing_key`] in the same process, say).
    pub async fn reload_keys(&self) {
        self.inner.keys.reload().await;
    }

    /// Issues and verifies access tokens (for guards of one's own).
    pub fn access_tokens(&self) -> &AccessTokens {
        &self.inner.access
    }

    /// Whether the stores answer (readiness): the session store's and the one-time-token
    /// store's answers to a ping, asked at once.
    pub async fn ready(&self) -> (Result<(), store::StoreError>, Result<(), store::StoreError>) {
        tokio::join!(self.inner.sessions.ping(), self.inner.enterprise.ping())
    }

    /// The session store.
    pub fn sessions(&self) -> &Arc<dyn SessionStore> {
        &self.inner.sessions
    }

    /// The enterprise one-time-token store.
    pub fn enterprise(&self) -> &Arc<dyn OneTimeTokenStore> {
        &self.inner.enterprise
    }
}

/// Deletes expired rows of the embedded store every [`SWEEP_EVERY`], until it is aborted.
fn spawn_sweeper(store: SqliteStore, clock: Arc<dyn Clock>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match store.sweep(clock.now()) {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "swept expired token rows"),
                Err(err) => tracing::warn!(error = %err, "sweeping expired token rows failed"),
            }
        }
    })
}

/// The token endpoints, and the demo routes behind the permission guard.
pub fn router(tokens: Tokens) -> Router {
    routes(tokens).split_for_parts().0
}

/// The token endpoints and the demo routes, with their OpenAPI operations.
pub(crate) fn routes(tokens: Tokens) -> OpenApiRouter {
    let demo = guard::demo_routes(&tokens);
    OpenApiRouter::new()
        .routes(routes!(vtx::get_token, vtx::post_token))
        .routes(routes!(vtx::jwks))
        .routes(routes!(login::authenticate))
        .routes(routes!(login::refresh))
        .routes(routes!(login::logout))
        .with_state(tokens)
        .merge(demo)
}
