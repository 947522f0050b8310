//! `loadgen serve`: the stock server plus the `loadgen.announce` handler.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use protocol::DirectEvent;
use serde_json::json;
use server::events::{EventsArgs, Hub, PublishOptions};
use server::{AppState, Config};

/// The direct event that makes the server publish one event to every front.
pub(crate) const ANNOUNCE: &str = "loadgen.announce";

/// The start of the line `loadgen serve` prints once it listens (`… http://ADDR pid PID`);
/// `loadgen cluster` reads it from its children.
pub(crate) const READY: &str = "loadgen serve: ";

/// Flags of `loadgen serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0: a free port, printed on the first line of stdout).
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// Directory of the embedded store (created if missing).
    #[arg(long, default_value = "loadgen-data")]
    data_dir: PathBuf,
    /// Keep everything instances share in this Redis (`redis://host:port/db`), as the server's
    /// `--redis-url`: several `loadgen serve` on one Redis act as one backend. Without it, the
    /// embedded store in --data-dir.
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    #[command(flatten)]
    events: EventsArgs,
}

/// The line printed once listening: `loadgen serve: http://ADDR pid PID`.
pub(crate) fn ready_line(addr: SocketAddr, pid: u32) -> String {
    format!("{READY}http://{addr} pid {pid}")
}

/// Microseconds since the Unix epoch: both processes read the same clock on one machine.
pub(crate) fn unix_micros() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// Publishes `{"publishedMicros"}` to every front, stamped just before publishing.
async fn announce(_event: DirectEvent, hub: Hub) -> anyhow::Result<()> {
    let data = json!({ "publishedMicros": unix_micros() });
    let published = hub.publish_to_all(ANNOUNCE, data, PublishOptions::default()).await?;
    tracing::info!(id = published.id, "announced");
    Ok(())
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::new(args.data_dir);
    config.events = args.events.into();
    // A load test registers thousands of fronts from one address, and its broadcast topology
    // puts every stream in one front: the abuse limits would measure themselves.
    config.events.registrations_per_sec = None;
    config.events.max_streams_per_front = usize::MAX;
    if let Some(url) = args.redis_url {
        config = config.with_redis(url);
    }
    let state = AppState::open(config).await?;
    state.events.handle(ANNOUNCE, announce);
    let listener = server::bind(args.listen, server::DEFAULT_LISTEN_BACKLOG)?;
    println!("{}", ready_line(listener.local_addr()?, std::process::id()));
    server::serve(listener, state, server::shutdown_signal()).await
}
