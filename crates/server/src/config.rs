//! Server configuration: one struct with public fields, built by the binary from its flags or by
//! tests directly.

use std::path::PathBuf;
use std::time::Duration;

use crate::db::Db;
use crate::redis_link::RedisTarget;
use crate::{events, tokens};

/// The default of [`Config::drain`] (and of `--drain-secs`).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the embedded store and the server's own keys live; created if missing.
    pub data_dir: PathBuf,
    /// Files served for paths no route takes (the web app, `/sw.js`, the browser package).
    pub static_dir: Option<PathBuf>,
    /// Origins allowed to call the API cross-origin, with credentials. Empty: same origin only.
    pub cors_origins: Vec<String>,
    /// The Redis (a server or a Redis Cluster) that instances of a cluster share. When set,
    /// everything the instances must agree on lives there: fronts, streams, sessions and
    /// events, the back's identity, login sessions and the signing key (unless a key file is
    /// given); nothing the cluster needs stays in the data directory. `None`: the embedded store.
    pub redis: Option<RedisTarget>,
    /// How long a client may take to send a request header; also how long a keep-alive
    /// connection may sit idle. Applies to [`crate::serve`] and [`crate::run`].
    pub header_read_timeout: Duration,
    /// How long a client may take to send a whole request body.
    pub body_read_timeout: Duration,
    /// Reverse streams and direct events.
    pub events: events::EventsConfig,
    /// Token exchange and login.
    pub tokens: tokens::TokensConfig,
    /// The server API's key (`X-API-Key`); `None`: the API answers 404.
    pub api_key: Option<crate::api::ApiKey>,
    /// How long [`crate::serve`] takes to drain once its shutdown future resolves: `/readyz`
    /// answers 503 and no stream opens from the start, and the open streams are ended one by
    /// one, spread evenly over this time, each with a `retry:` hint; then the server stops.
    /// Zero ends them all at once.
    pub drain: Duration,
    /// The Prometheus recorder's handle that `/metrics` renders (see
    /// [`crate::metrics::install_prometheus`]); `None`: `/metrics` answers 404.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl Config {
    /// Defaults for everything, with the store in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            static_dir: None,
            cors_origins: Vec::new(),
            redis: None,
            header_read_timeout: crate::DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: crate::DEFAULT_BODY_READ_TIMEOUT,
            events: events::EventsConfig::default(),
            tokens: tokens::TokensConfig::default(),
            api_key: None,
            drain: DEFAULT_DRAIN,
            metrics: None,
        }
    }

    /// Keeps all shared state in the Redis at `url`
    /// (`redis://[user:password@]host:port/db`; see [`Config::redis`]).
    pub fn with_redis(self, url: impl Into<String>) -> Self {
        self.with_redis_target(RedisTarget::Single(url.into()))
    }

    /// Keeps all shared state in the Redis Cluster that the nodes at `urls` belong to (some
    /// nodes are enough: the others are learnt from them; see [`Config::redis`]).
    pub fn with_redis_cluster<S: Into<String>>(self, urls: impl IntoIterator<Item = S>) -> Self {
        self.with_redis_target(RedisTarget::Cluster(urls.into_iter().map(Into::into).collect()))
    }

    /// Keeps all shared state in `target` (see [`Config::redis`]).
    pub fn with_redis_target(mut self, target: RedisTarget) -> Self {
        self.tokens.session_store = tokens::SessionStoreConfig::Redis { target: target.clone() };
        self.redis = Some(target);
        self
    }

    /// The embedded store's database file in `data_dir` (the server and `mint-token` share it).
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("server.sqlite3")
    }

    /// Makes `data_dir` and an empty database file, readable by this user only, and opens the
    /// database.
    ///
    /// The directory holds secrets (the back's X25519 key in the database, the signing key), so
    /// it is made with mode 0700, and the database file with 0600 before SQLite opens it:
    /// SQLite gives its `-wal` and `-shm` files the mode of the database file. Directories and
    /// files that exist already keep their mode (an operator may have chosen it).
    pub fn open_db(&self) -> anyhow::Result<Db> {
        let dir = &self.data_dir;
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|err| anyhow::anyhow!("data directory {}: {err}", dir.display()))?;
        let path = self.db_path();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(&path).map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
        Db::open(&path).map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))
    }
}
