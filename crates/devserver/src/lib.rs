//! The development and test server: the backend ([`server::app`]) and the venue stand-in
//! ([`venue_standin::VenueStandin`]) on one origin, the assembled site (`/sw.js`, `/pkg/`, the
//! demo) as static files, and what tests need on top. It is a development tool: production runs
//! the `server` binary (or mounts [`server::app`]) against the real venue.
//!
//! One origin matters: the service worker fetches the venue's `/Dashboard` and `/Auth/Authorize`
//! with the user's cookies and the backend's `/vtx/token`, and the defaults of its settings
//! point all three at its own origin. The stand-in's paths never collide with the backend's
//! (see `venue_standin`), and the backend's VTX trusts the stand-in's JWKS, given inline.
//!
//! On top, for tests:
//! - CORS with credentials for configured origins, patterns like `http://127.0.0.1:*` included
//!   (wasm-bindgen-test serves its pages from its own random port);
//! - a counter and a fault switch on `/vtx/token` ([`VtxControls`]), next to the stand-in's own
//!   for the venue hops;
//! - with [`Config::test_controls`], the HTTP control API of both: the stand-in's under
//!   `/__standin/` and this server's under [`CONTROL_PREFIX`] (see [`controls`]), which also
//!   publishes reverse events, mints one-time login tokens and restarts the backend on the same
//!   port ([`Backend`]), moves the backend's token clock ahead ([`TokenClock`]), and a `sink`
//!   direct event that is accepted and answered with nothing.

pub mod backend;
pub mod controls;
pub mod cors;
pub mod webdriver;

use std::future::Future;
use std::path::PathBuf;

use axum::Router;
use server::tokens::VenueKeySource;
use tokio::net::TcpListener;
use venue_standin::VenueStandin;

pub use backend::Backend;
pub use controls::{CONTROL_PREFIX, TokenClock, VtxControls, VtxMode};
pub use cors::OriginPattern;

/// Everything the development server needs. Build it with `Config::new(data_dir)` and set the
/// public fields.
#[derive(Debug, Clone)]
pub struct Config {
    /// The backend's settings (its data directory, static files, token lifetimes). Its
    /// `tokens.venue_keys` is replaced by the stand-in's JWKS and its `cors_origins` are not
    /// used: [`Config::cors_origins`] covers both halves of the origin.
    pub server: server::Config,
    /// The stand-in's settings (users, token lifetime).
    pub standin: venue_standin::Config,
    /// Origins allowed to call everything cross-origin, with credentials.
    pub cors_origins: Vec<OriginPattern>,
    /// Serve the test-only control APIs (`/__standin/…`, `/__devserver/…`).
    pub test_controls: bool,
    /// The venue JWKS the backend trusts instead of its own stand-in's: another development
    /// server's, when several backends of a cluster share one stand-in behind a load balancer.
    pub trusted_venue_jwks: Option<serde_json::Value>,
}

impl Config {
    /// Defaults, with the backend's store in `data_dir`, no static files, no CORS and no
    /// control API.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let mut server = server::Config::new(data_dir);
        // The test suites register a front per test, from one address, faster than any user.
        server.events.registrations_per_sec = None;
        Self {
            server,
            standin: venue_standin::Config::default(),
            cors_origins: Vec::new(),
            test_controls: false,
            trusted_venue_jwks: None,
        }
    }

    /// Serve the files of `dir` for paths no route takes.
    pub fn with_static_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.server.static_dir = Some(dir.into());
        self
    }
}

/// A development server's parts; cheap to clone, clones share everything, so a test keeps one
/// to flip switches and read counters while the server runs another.
#[derive(Debug, Clone)]
pub struct DevServer {
    backend: Backend,
    standin: VenueStandin,
    vtx: VtxControls,
    clock: TokenClock,
    cors_origins: Vec<OriginPattern>,
    test_controls: bool,
}

impl DevServer {
    /// Opens the backend's store and makes the stand-in (with a fresh signing key, which the
    /// backend then trusts).
    pub async fn open(mut config: Config) -> anyhow::Result<Self> {
        config.standin.control_api = config.test_controls;
        // CORS is answered once, outermost; the halves must not add their own headers.
        config.standin.cors_allow_any_origin_with_credentials = false;
        config.server.cors_origins.clear();
        // Pages of the CORS origins may also refresh and log out (the backend's cross-site
        // check would refuse them: they are other origins).
        config.server.tokens.trusted_origins = config.cors_origins.clone();
        let standin = VenueStandin::new(config.standin.clone())?;
        let jwks = config.trusted_venue_jwks.take().unwrap_or_else(|| standin.jwks());
        config.server.tokens.venue_keys = VenueKeySource::Jwks(jwks);
        config.server.tokens.venue_issuer = config.standin.issuer.clone();
        config.server.tokens.venue_audience = config.standin.audience.clone();
        // With the controls on, a test may move the token clock ahead; without, the backend keeps
        // the clock it was given.
        let clock = TokenClock::default();
        if config.test_controls {
            config.server.tokens.clock = std::sync::Arc::new(clock.clone());
        }
        let backend = Backend::open(config.server, config.test_controls).await?;
        Ok(Self {
            backend,
            standin,
            vtx: VtxControls::default(),
            clock,
            cors_origins: config.cors_origins,
            test_controls: config.test_controls,
        })
    }

    /// The whole router: stand-in, backend (with its static files) for every other path, the
    /// VTX switch, the control API if configured, and CORS around all of it.
    pub fn router(&self) -> Router {
        let mut router = self.standin.router();
        if self.test_controls {
            router = router.merge(controls::router(controls::Controls {
                vtx: self.vtx.clone(),
                standin: self.standin.clone(),
                backend: self.backend.clone(),
                clock: self.clock.clone(),
            }));
        }
        let backend = self.backend.clone();
        let router =
            router.fallback(move |request: axum::extract::Request| backend.clone().handle(request));
        let router = router
            .layer(axum::middleware::from_fn_with_state(self.vtx.clone(), controls::vtx_gate));
        if self.cors_origins.is_empty() {
            router
        } else {
            router.layer(cors::layer(self.cors_origins.clone()))
        }
    }

    /// The venue stand-in (fault switches and counters of the venue hops).
    pub fn standin(&self) -> &VenueStandin {
        &self.standin
    }

    /// The switch and counter of `/vtx/token`.
    pub fn vtx(&self) -> &VtxControls {
        &self.vtx
    }

    /// The backend (its state while it is up; restarts).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The backend's token clock (moved only with the test controls on).
    pub fn clock(&self) -> &TokenClock {
        &self.clock
    }

    /// Every fault switch to normal, every counter to zero, on both halves, and the token clock
    /// back to the wall clock.
    pub fn reset(&self) {
        self.standin.reset();
        self.vtx.reset();
        self.clock.set_ahead(0);
    }
}

/// Serves `devserver` on `listener` until `shutdown` completes. The caller binds the socket, so
/// tests bind `127.0.0.1:0`. At shutdown, open streams end and requests held by a `hang` switch
/// are let go (every switch goes back to normal), so the graceful shutdown does not wait for
/// them; they get their answer or a closed connection.
pub async fn run(
    listener: TcpListener,
    devserver: DevServer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = devserver.router();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            devserver.backend.shutdown().await;
            devserver.reset();
        })
        .await
}
