//! `loadgen`: the load tool of the event service.
//!
//! - `loadgen serve` runs the server library as an application would embed it, plus one
//!   direct-event handler, `loadgen.announce`, that publishes one event to every front
//!   ([`server::events::Hub::publish_to_all`]). That handler is the fan-out
//!   trigger for the latency figure; everything else is the stock server. Run it as its own
//!   process, so its memory can be measured apart from the clients'.
//! - `loadgen streams` opens N reverse streams with the full handshake over loopback and
//!   reports handshakes per second, the server's resident memory per activated idle stream
//!   (from `/proc/PID/status` of `--server-pid`), and publish-to-receipt latency of one event
//!   sent to every stream.
//!
//! Typical run (optimised build, two terminals or `&`):
//!
//! ```text
//! cargo build --profile native -p loadgen
//! ulimit -n 65536
//! target/native/loadgen serve --listen 127.0.0.1:7700 --data-dir /tmp/lg &
//! target/native/loadgen streams --url http://127.0.0.1:7700 --n 10000 --server-pid $!
//! ```

mod serve;
mod streams;

use clap::{Parser, Subcommand};

/// Load tool of the event service: a server to measure, and the clients that measure it.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server library with the `loadgen.announce` fan-out handler.
    Serve(serve::ServeArgs),
    /// Open N streams with the full handshake and measure.
    Streams(streams::StreamsArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Streams(args) => runtime.block_on(streams::run(args)),
    }
}
