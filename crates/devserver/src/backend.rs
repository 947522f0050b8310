//! The backend half of the development server, swappable: a test can restart it on the same
//! port, on its store or on a wiped one, while the listener and the venue stand-in stay up.
//! While it is down, its paths answer `503` with a plain-text body.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use server::AppState;
use tower::ServiceExt as _;

/// The name of the test-only direct event that is accepted and answered with nothing.
pub const SINK_EVENT: &str = "sink";

/// The backend: its settings and, while it is up, its state and router. Clones share it.
#[derive(Debug, Clone)]
pub struct Backend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: server::Config,
    /// Register the test-only direct-event handlers at every start.
    test_handlers: bool,
    /// The running backend; `None` while it is down. A std lock, held only to read or swap it,
    /// never across an `.await`.
    slot: RwLock<Option<Arc<Running>>>,
}

#[derive(Debug)]
struct Running {
    state: AppState,
    router: Router,
}

impl Backend {
    /// Opens the backend's store and services.
    pub async fn open(config: server::Config, test_handlers: bool) -> anyhow::Result<Self> {
        let running = start(&config, test_handlers).await?;
        let slot = RwLock::new(Some(Arc::new(running)));
        Ok(Self { inner: Arc::new(Inner { config, test_handlers, slot }) })
    }

    /// The settings it (re)starts with.
    pub fn config(&self) -> &server::Config {
        &self.inner.config
    }

    /// Its state, while it is up.
    pub fn state(&self) -> Option<AppState> {
        self.running().map(|running| running.state.clone())
    }

    fn running(&self) -> Option<Arc<Running>> {
        self.inner.slot.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Answers `request` with the backend's router, or `503` while it is down.
    pub async fn handle(self, request: Request) -> Response {
        let Some(running) = self.running() else { return down() };
        match running.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Ends its open streams and background tasks (graceful shutdown); it stays up otherwise.
    pub async fn shutdown(&self) {
        if let Some(state) = self.state() {
            state.shutdown().await;
        }
    }

    /// Stops it now (streams end, requests get `503`), waits `down`, empties the data directory
    /// if `wipe`, and starts it again on the same settings. Returns at once.
    pub fn restart(&self, wipe: bool, down_for: Duration) {
        let old = self.inner.slot.write().unwrap_or_else(PoisonError::into_inner).take();
        let backend = self.clone();
        tokio::spawn(async move {
            // Its services stop (streams end, tasks and subscriptions too) before the new
            // one starts, so a restart leaks nothing.
            if let Some(running) = old {
                running.state.shutdown().await;
            }
            tokio::time::sleep(down_for).await;
            let config = &backend.inner.config;
            if wipe && let Err(err) = empty_dir(&config.data_dir) {
                tracing::error!(%err, "devserver: cannot wipe the backend's store");
            }
            match start(config, backend.inner.test_handlers).await {
                Ok(running) => {
                    let mut slot =
                        backend.inner.slot.write().unwrap_or_else(PoisonError::into_inner);
                    *slot = Some(Arc::new(running));
                    tracing::info!(wipe, "devserver: backend restarted");
                }
                Err(err) => tracing::error!(%err, "devserver: the backend did not restart"),
            }
        });
    }
}

async fn start(config: &server::Config, test_handlers: bool) -> anyhow::Result<Running> {
    let state = AppState::open(config.clone()).await?;
    if test_handlers {
        state.events.handle(SINK_EVENT, |_event, _hub| async { Ok(()) });
    }
    let router = server::app(state.clone());
    Ok(Running { state, router })
}

/// Plain text, not JSON: a client that polls the backend sees it is not back yet.
pub(crate) fn down() -> Response {
    let body = Body::from("The backend is restarting (a devserver test control).");
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

/// Deletes everything in `dir` (the store, the server's keys), keeping `dir`.
fn empty_dir(dir: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
