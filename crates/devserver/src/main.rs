//! `devserver`: the backend and the venue stand-in on one origin, with the assembled site.
//! Parses arguments, binds the socket and calls [`devserver::run`]; nothing else lives here.
//!
//! Its first line on stdout is machine-readable, for drivers that start it on port 0:
//! `devserver: listening on http://127.0.0.1:PORT`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use devserver::{CONTROL_PREFIX, Config, DevServer, OriginPattern};
use server::tokens::MintTokenArgs;
use venue_standin::{CONTROL_PREFIX as STANDIN_CONTROL_PREFIX, LOGIN_PATH};

/// The development and test server: the browser-session backend and a stand-in for the Venue UI
/// on one origin, plus the assembled site. A development tool, not for production.
#[derive(Debug, Parser)]
#[command(name = "devserver", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the first line printed says which).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of the backend's store and keys (created if missing).
    #[arg(long, default_value = "devserver-data")]
    data_dir: PathBuf,
    /// Serve this directory (the assembled site: /sw.js, /pkg/, the demo) for other paths.
    #[arg(long)]
    static_dir: Option<PathBuf>,
    /// Allow this origin cross-origin with credentials; `http://127.0.0.1:*` allows any port
    /// (repeatable).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<OriginPattern>,
    /// Serve the test-only control APIs: /__standin/ (venue faults, counters) and /__devserver/
    /// (the VTX switch and counter, events, login tokens, restarts, the token clock).
    #[arg(long)]
    test_controls: bool,
    /// Lifetime of the stand-in's venue JWTs, in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    venue_token_lifetime_secs: u64,
    /// Lifetime of the backend's access JWTs (one-time-token login), in seconds; tests of the
    /// refresh use a few seconds.
    #[arg(long, value_name = "SECS")]
    access_ttl_secs: Option<u64>,
    /// Mint a one-time login token at start (user `demo`, permission CanAccessDashboard only, so
    /// `/api/reports` answers 403; valid 4 h, one use) and print its link `/auth?token=…`.
    #[arg(long)]
    login_link: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut config = Config::new(args.data_dir);
    config.server.static_dir = args.static_dir;
    config.cors_origins = args.cors_origins;
    config.test_controls = args.test_controls;
    config.standin.token_lifetime = Duration::from_secs(args.venue_token_lifetime_secs);
    if let Some(secs) = args.access_ttl_secs {
        config.server.tokens.access_ttl = Duration::from_secs(secs);
    }
    let devserver = DevServer::open(config).await?;
    let listener = server::bind(args.listen, server::DEFAULT_LISTEN_BACKLOG)?;
    let url = format!("http://{}", listener.local_addr()?);

    println!("devserver: listening on {url}");
    println!(
        "devserver: venue login (stand-in) {url}{LOGIN_PATH}  (users: alice, bob; any password)"
    );
    if args.login_link {
        let minted = server::tokens::mint_token(
            devserver.backend().config(),
            &MintTokenArgs {
                user: "demo".to_owned(),
                sponsor: "demo-sponsor".to_owned(),
                subscriber: "demo-subscriber".to_owned(),
                permissions: vec!["CanAccessDashboard".to_owned()],
                valid_for: Duration::from_secs(4 * 3600),
                base_url: url.clone(),
            },
        )
        .await?;
        println!(
            "devserver: one-time login link {}  (user demo, CanAccessDashboard; one use, 4 h)",
            minted.login_url
        );
    }
    if args.test_controls {
        println!(
            "devserver: test controls {url}{STANDIN_CONTROL_PREFIX}/ and {url}{CONTROL_PREFIX}/"
        );
    }
    devserver::run(listener, devserver, server::shutdown_signal()).await?;
    Ok(())
}
