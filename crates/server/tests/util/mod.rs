//! Shared helpers: a server on `127.0.0.1:0` with its own data directory, served by
//! [`server::serve`] until it is stopped, and restartable on the same directory.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use server::events::Hub;
use server::{AppState, Config};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt as _, BufReader};
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
        // Stopped at once unless a test drains on purpose.
        config.drain = Duration::ZERO;
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

    /// The settings it runs with (what an operator's `server keys rotate` would read).
    pub(crate) fn config(&self) -> &Config {
        &self.config
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

/// An instance of the `server` binary, as operators run it, killed with SIGKILL when asked or
/// dropped.
pub(crate) struct Process {
    child: Child,
    pub(crate) url: String,
    dir: Option<tempfile::TempDir>,
    args: Vec<String>,
    /// `RUST_LOG` of the process (`warn` unless started with [`Process::start_logging`]).
    log_filter: String,
    /// What it prints after its URL (its trace, with `NO_COLOR`).
    output: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Process {
    /// Starts `server --listen 127.0.0.1:0 --data-dir <fresh> <args>`.
    pub(crate) async fn start(args: &[&str]) -> Self {
        Self::start_logging(args, "warn").await
    }

    /// [`Process::start`] with `RUST_LOG=log_filter`; its trace is read with
    /// [`Process::next_output_line`].
    pub(crate) async fn start_logging(args: &[&str], log_filter: &str) -> Self {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Self::spawn(tempfile::tempdir().unwrap(), args, log_filter.to_owned()).await
    }

    /// Starts it again on the same data directory, with the same arguments (another port).
    pub(crate) async fn restart(mut self) -> Self {
        self.kill();
        let (dir, args) = (self.dir.take().unwrap(), std::mem::take(&mut self.args));
        Self::spawn(dir, args, std::mem::take(&mut self.log_filter)).await
    }

    /// The next line it printed; `None` once it closed its output.
    pub(crate) async fn next_output_line(&mut self) -> Option<String> {
        self.output.next_line().await.unwrap()
    }

    async fn spawn(dir: tempfile::TempDir, args: Vec<String>, log_filter: String) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_LOG", &log_filter)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server binary starts");
        let stdout = tokio::process::ChildStdout::from_std(child.stdout.take().unwrap()).unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = within(async {
            loop {
                let line = lines.next_line().await.unwrap().expect("the server printed its URL");
                if let Some(url) = line.strip_prefix("server: listening on ") {
                    return url.to_owned();
                }
            }
        })
        .await;
        Self { child, url, dir: Some(dir), args, log_filter, output: lines }
    }

    /// Its resident memory now (`VmRSS`), in bytes.
    pub(crate) fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// `kill -TERM`, as a service manager stops it: it drains, then exits.
    pub(crate) fn terminate(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(status.success(), "kill -TERM {pid}: {status}");
    }

    /// Waits up to `limit` for it to exit (polling every 20 ms); its exit status.
    pub(crate) async fn exited(&mut self, limit: Duration) -> std::process::ExitStatus {
        let waited = tokio::time::timeout(limit, async {
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        waited.await.unwrap_or_else(|_| panic!("the server did not exit within {limit:?}"))
    }

    /// `kill -9`: no graceful shutdown, nothing cleaned up in the store.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
