//! `venue-standin`: serve the development stand-in for the Venue UI monolith on its own port.
//! Parses arguments, binds the socket and calls [`venue_standin::run`]; nothing else lives here.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use venue_standin::{
    AUTHORIZE_PATH, CONTROL_PREFIX, Config, DASHBOARD_PATH, DEFAULT_AUDIENCE, DEFAULT_ISSUER,
    DEFAULT_JWKS_PATH, LOGIN_PATH, SameSite, VenueStandin,
};

/// A development stand-in for the legacy Venue UI monolith: login, /Dashboard with an XSRF
/// token, /Auth/Authorize issuing EdDSA venue JWTs, a JWKS, and test-only fault switches.
/// Not the real Venue UI.
#[derive(Debug, Parser)]
#[command(name = "venue-standin", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7100")]
    listen: SocketAddr,
    /// `iss` of the venue JWTs.
    #[arg(long, default_value = DEFAULT_ISSUER)]
    issuer: String,
    /// `aud` of the venue JWTs.
    #[arg(long, default_value = DEFAULT_AUDIENCE)]
    audience: String,
    /// Lifetime of the venue JWTs, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_lifetime_secs: u64,
    /// Path of the public JWKS.
    #[arg(long, default_value = DEFAULT_JWKS_PATH)]
    jwks_path: String,
    /// Answer CORS requests from any origin, with credentials (for wasm-bindgen-test pages).
    #[arg(long)]
    cors_allow_any_origin_with_credentials: bool,
    /// SameSite attribute of the session cookie: strict, lax or none (none adds Secure).
    #[arg(long, default_value = "lax")]
    cookie_same_site: SameSite,
    /// Do not serve the test-only control API under /__standin.
    #[arg(long)]
    no_control_api: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let config = Config {
        issuer: args.issuer,
        audience: args.audience,
        token_lifetime: Duration::from_secs(args.token_lifetime_secs),
        jwks_path: args.jwks_path,
        cors_allow_any_origin_with_credentials: args.cors_allow_any_origin_with_credentials,
        cookie_same_site: args.cookie_same_site,
        control_api: !args.no_control_api,
        ..Config::default()
    };
    let standin = VenueStandin::new(config)?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let url = format!("http://{}", listener.local_addr()?);

    println!("venue-standin (a development stand-in for the Venue UI, not the real one) on {url}");
    println!("  login      {url}{LOGIN_PATH}  (users: alice, bob; any password)");
    println!("  dashboard  {url}{DASHBOARD_PATH}");
    println!("  authorize  {url}{AUTHORIZE_PATH}");
    println!("  jwks       {url}{}  (kid {})", standin.config().jwks_path, standin.key_id());
    if standin.config().control_api {
        println!("  control    {url}{CONTROL_PREFIX}/{{faults,counters,reset,sessions/expire}}");
    }

    venue_standin::run(listener, standin, async {
        // If Ctrl-C cannot be watched, run until killed rather than stop at once.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
    .await?;
    Ok(())
}
