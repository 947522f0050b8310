//! The `server` binary: parses flags and calls [`server::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use server::{Config, events, tokens};

/// The browser-session backend: front registration, encrypted reverse streams (SSE), direct
/// events, the VTX token exchange and one-time-token login.
///
/// With no subcommand, it serves.
#[derive(Debug, clap::Parser)]
#[command(version, after_long_help = fixed_limits())]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Read settings from this TOML file: one key per flag, named as the flag
    /// (`header-read-timeout-secs = 30`). A flag or its environment variable overrides the
    /// file; `server config default` prints a commented file with every key.
    #[arg(long, value_name = "PATH", env = "SERVER_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "SERVER_LISTEN")]
    listen: SocketAddr,
    /// Connections that may wait to be accepted (the listen backlog; the kernel caps it at
    /// net.core.somaxconn). Sized for a reconnect storm: every client of a restarted instance
    /// comes back at once, and a connect beyond the backlog waits a 1 s SYN retry.
    #[arg(
        long,
        value_name = "N",
        default_value_t = server::DEFAULT_LISTEN_BACKLOG,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    listen_backlog: u32,
    /// Directory of the embedded store and of the server's own keys (created if missing).
    #[arg(long, default_value = "data", env = "SERVER_DATA_DIR", global = true)]
    data_dir: PathBuf,
    /// Serve files from this directory for paths no endpoint takes (the web app, /sw.js).
    #[arg(long, env = "SERVER_STATIC_DIR")]
    static_dir: Option<PathBuf>,
    /// Allow this origin to call the API cross-origin with credentials (repeatable).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// Keep everything instances share in this Redis (`redis://[:password@]host:port/db`):
    /// fronts, streams, sessions and events, the back's identity, login sessions and the signing
    /// keys (unless --eid-key-file is given). Several instances on one Redis act as one backend,
    /// behind any load balancer. Its maxmemory-policy must be noeviction (any other is refused).
    /// Without it (and without --redis-cluster-url), the embedded store in --data-dir (one
    /// instance).
    #[arg(
        long,
        env = "SERVER_REDIS_URL",
        value_name = "URL",
        global = true,
        hide_env_values = true,
        conflicts_with = "redis_cluster_urls"
    )]
    redis_url: Option<String>,
    /// Keep everything instances share in a Redis Cluster instead of one Redis: a node of it
    /// (`redis://[:password@]host:port`; repeatable, or comma-separated; a few seeds are enough,
    /// the client learns the other nodes from them). Every master's maxmemory-policy must be
    /// noeviction (any other is refused).
    #[arg(
        long = "redis-cluster-url",
        env = "SERVER_REDIS_CLUSTER_URLS",
        value_name = "URL",
        value_delimiter = ',',
        global = true,
        hide_env_values = true
    )]
    redis_cluster_urls: Vec<String>,
    /// Seconds a client may take to send a request's header; a connection that has not sent a
    /// whole header by then (or sat idle between requests that long) is closed.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = server::DEFAULT_HEADER_READ_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    header_read_timeout_secs: u64,
    /// Seconds a client may take to send a whole request body (408 request_timeout after
    /// that). Bodies are at most 64 KiB; a larger Content-Length is refused at once (413).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = server::DEFAULT_BODY_READ_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    body_read_timeout_secs: u64,
    /// Turn on the server API for the application's backend (`POST /api/events/publish`,
    /// `POST /api/events/disconnect`, `GET /api/events/presence/{frontUuid}`) with the key on
    /// this file's first line; requests carry it in `X-API-Key`. Without it the API answers
    /// 404.
    #[arg(long, value_name = "PATH", env = "SERVER_API_KEY_FILE")]
    api_key_file: Option<PathBuf>,
    /// On SIGTERM or Ctrl-C, drain for this many seconds before stopping: /readyz answers 503
    /// and new streams 503 not_ready (with Retry-After) at once, and the open streams end one
    /// by one, spread evenly over this time, each with an SSE `retry:` hint of 2 to 5 s, so
    /// that their clients reconnect to the other instances gradually. 0 ends them all at once.
    /// A second signal exits at once.
    #[arg(
        long,
        value_name = "SECS",
        env = "SERVER_DRAIN_SECS",
        default_value_t = server::DEFAULT_DRAIN.as_secs(),
        value_parser = clap::value_parser!(u64).range(0..=3600)
    )]
    drain_secs: u64,
    /// Serve Prometheus metrics (`GET /metrics`) on this address only, instead of on --listen.
    #[arg(long, value_name = "ADDR", env = "SERVER_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    events: events::EventsArgs,
    #[command(flatten)]
    tokens: tokens::TokensArgs,
}

/// The limits that have no flag, for `--help` (from the constants that set them).
fn fixed_limits() -> String {
    use server::tokens::{VENUE_JWKS_MAX_AGE, VENUE_JWKS_MAX_STALE, VENUE_JWKS_MIN_REFETCH};
    format!(
        "Fixed limits:
  - Request bodies: at most {body} KiB; a larger Content-Length is refused at once (413).
  - One-time tokens: 16 to 512 characters of A-Z a-z 0-9 - _; anything else is refused
    (401 invalid_token) before a store is asked.
  - Refresh tokens: a session keeps its last {history} token hashes; two refreshToken cookies
    on a refresh are refused (401 ambiguous_cookie).
  - Venue JWKS: fresh for {fresh} s, fetched at most once per {refetch} s, keys distrusted
    {stale} s after the last successful fetch.
  - Server API publish: name 1 to {name} characters; expiresInMs 1 to {ttl} (default 60000);
    idempotencyKey 1 to {idem} printable ASCII characters; data within the body limit.
  - Server API presence: at most {presence} sessions of a front listed (\"truncated\": true
    when it has more).
  - Draining: each stream's `retry:` hint is {retry_min} to {retry_max} ms; a stream open
    refused while draining carries a Retry-After of a few seconds.
  - The data directory is created 0700, the files the server creates in it 0600.",
        body = server::error::MAX_BODY_BYTES / 1024,
        history = server::tokens::store::REFRESH_HISTORY,
        fresh = VENUE_JWKS_MAX_AGE.as_secs(),
        refetch = VENUE_JWKS_MIN_REFETCH.as_secs(),
        stale = VENUE_JWKS_MAX_STALE.as_secs(),
        name = protocol::api::MAX_EVENT_NAME_CHARS,
        ttl = protocol::api::MAX_EXPIRES_IN_MS,
        idem = protocol::api::MAX_IDEMPOTENCY_KEY_CHARS,
        presence = protocol::api::MAX_PRESENCE_SESSIONS,
        retry_min = events::DRAIN_RETRY_MIN_MS,
        retry_max = events::DRAIN_RETRY_MIN_MS + events::DRAIN_RETRY_JITTER_MS,
    )
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Write a one-time login token into the enterprise store and print the login URL
    /// `/auth?token=…` (to try the one-time-token login).
    MintToken(tokens::MintTokenArgs),
    /// Configuration files: check one, or print the default one.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The signing keys of EID and access JWTs.
    #[command(subcommand)]
    Keys(KeysCmd),
}

#[derive(Debug, clap::Subcommand)]
enum KeysCmd {
    /// Add a new active signing key to the ring of --data-dir, or of Redis with --redis-url or
    /// --redis-cluster-url (with the --config the servers run with, or their token flags before `keys`: the token
    /// lifetimes set when the replaced key retires). The replaced key still verifies the tokens it signed until the
    /// longest token lifetime (--access-ttl-secs, --eid-ttl-secs) plus the reload interval
    /// plus a leeway have passed, then leaves the ring and the JWKS. Running servers pick the
    /// new key up within the reload interval, or at once when they meet its kid; no one is
    /// logged out. Not with --eid-key-file (a fixed key).
    #[command(after_help = keys_rotate_help())]
    Rotate,
}

/// The fixed times of a rotation, for `server keys rotate --help`.
fn keys_rotate_help() -> String {
    format!(
        "Running servers re-read the ring every {} s, and at once (at most once per {} s) on a \
         kid they do not know. Leeway: {} s.",
        tokens::KEY_RELOAD_EVERY.as_secs(),
        tokens::KEY_RELOAD_MIN_GAP.as_secs(),
        tokens::RETIRE_LEEWAY.as_secs(),
    )
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCmd {
    /// Check that every key of FILE names a flag and every value parses; exit 1 if not.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print a configuration file with every key, commented out, at its default.
    Default,
}

/// Parses the command line, with the keys of the `--config` file for the flags that neither the
/// command line nor the environment set.
fn parse() -> anyhow::Result<Cli> {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let command = Cli::command();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let matches = command.clone().get_matches_from(args.clone());
    let Some(file) = matches.get_one::<PathBuf>("config") else {
        return Ok(Cli::from_arg_matches(&matches)?);
    };
    let args = server::config_file::merge(&command, &matches, args, file)?;
    let matches = command.get_matches_from(args);
    Ok(Cli::from_arg_matches(&matches)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .init();
    let cli = parse()?;
    if let Some(Cmd::Config(cmd)) = &cli.cmd {
        use clap::CommandFactory as _;
        match cmd {
            ConfigCmd::Check { file } => {
                server::config_file::check(&Cli::command(), file)?;
                println!("{}: ok", file.display());
            }
            ConfigCmd::Default => print!("{}", server::config_file::default_file(&Cli::command())),
        }
        return Ok(());
    }
    let mut config = Config {
        data_dir: cli.data_dir,
        static_dir: cli.static_dir,
        cors_origins: cli.cors_origins,
        redis: None,
        header_read_timeout: Duration::from_secs(cli.header_read_timeout_secs),
        body_read_timeout: Duration::from_secs(cli.body_read_timeout_secs),
        events: cli.events.into(),
        tokens: cli.tokens.into(),
        api_key: cli.api_key_file.as_deref().map(server::api::ApiKey::from_file).transpose()?,
        drain: Duration::from_secs(cli.drain_secs),
        metrics: None,
    };
    if let Some(url) = cli.redis_url {
        config = config.with_redis(url);
    } else if !cli.redis_cluster_urls.is_empty() {
        config = config.with_redis_cluster(cli.redis_cluster_urls);
    }
    if let Some(Cmd::Keys(KeysCmd::Rotate)) = cli.cmd {
        let rotated = tokens::rotate_signing_key(&config).await?;
        println!("server: the active signing key is now {}", rotated.kid);
        for (kid, at) in rotated.retiring {
            println!("server: {kid} verifies until {} (unix ms), then retires", at.millis());
        }
        return Ok(());
    }
    if let Some(Cmd::MintToken(args)) = cli.cmd {
        let minted = tokens::mint_token(&config, &args).await?;
        println!("{}", minted.login_url);
        return Ok(());
    }
    let metrics = server::metrics::install_prometheus()?;
    if cli.metrics_listen.is_none() {
        config.metrics = Some(metrics.clone());
    }
    let listener = server::bind(cli.listen, cli.listen_backlog)?;
    let state = server::AppState::open(config).await?;
    if let Some(addr) = cli.metrics_listen {
        let metrics_listener = tokio::net::TcpListener::bind(addr).await?;
        println!("server: metrics on http://{}/metrics", metrics_listener.local_addr()?);
        let router = server::metrics::router(Some(metrics), state.events.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(metrics_listener, router).await {
                tracing::warn!(error = %e, "the metrics listener stopped");
            }
        });
    }
    println!("server: listening on http://{}", listener.local_addr()?);
    let (first_signal, first) = tokio::sync::oneshot::channel::<()>();
    let mut signals = Signals::new()?;
    tokio::spawn(async move {
        signals.next().await;
        let _ = first_signal.send(());
        // The drain may take a while; an operator who asks twice means now.
        signals.next().await;
        eprintln!("server: second signal: exiting at once");
        std::process::exit(1);
    });
    server::serve(listener, state, async {
        let _ = first.await;
    })
    .await
}

/// SIGTERM and Ctrl-C (SIGINT), listened to from creation on, so that a second signal is not
/// lost while the first is being handled.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next signal.
    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
