//! Shared helpers: a server on `127.0.0.1:0` with its own data directory, served by
//! [`server::serve`] until it is stopped, and restartable on the same directory.

#![allow(dead_code)]

use std::time::Duration;

use server::events::Hub;
use server::{AppState, Config};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server on a free port. Dropping it stops it without waiting; [`TestServer::stop`] waits.
pub(crate) struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// The state it serves, to reach the services directly (`state.events.hub()`).
    pub(crate) state: AppState,
    config: Config,
    dir: Option<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// A server with default settings on a fresh data directory.
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server on a fresh data directory, with settings changed by `tweak`.
    pub(crate) async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path());
        tweak(&mut config);
        Self::serve(config, Some(dir)).await
    }

    async fn serve(config: Config, dir: Option<TempDir>) -> Self {
        let state = AppState::open(config.clone()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        Self { url, state, config, dir, stop: Some(stop), task: Some(task) }
    }

    /// The URL of `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The event hub.
    pub(crate) fn hub(&self) -> Hub {
        self.state.events.hub()
    }

    /// A client of the event endpoints.
    pub(crate) fn client(&self) -> loadgen::Client {
        loadgen::Client::new(&self.url)
    }

    /// Shuts down gracefully and waits until `serve` returned: open streams must end, or this
    /// fails after five seconds.
    pub(crate) async fn stop(mut self) -> (Config, Option<TempDir>) {
        self.shutdown().await;
        (self.config.clone(), self.dir.take())
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("graceful shutdown hangs")
                .unwrap()
                .unwrap();
        }
    }

    /// Stops the server and starts a new one on the same data directory (on another port).
    pub(crate) async fn restart(self) -> Self {
        let (config, dir) = self.stop().await;
        Self::serve(config, dir).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Waits up to five seconds for `future`, so a missing event fails the test instead of
/// hanging it.
pub(crate) async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), future).await.expect("timed out")
}

/// Polls `condition` every 10 ms until it holds; fails after five seconds.
pub(crate) async fn wait_until(mut condition: impl FnMut() -> bool) {
    within(async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
