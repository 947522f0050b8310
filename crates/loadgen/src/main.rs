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
//!   sent to every stream. Several `--url` (and `--server-pid`) spread the streams round-robin
//!   over the instances of a cluster.
//! - `loadgen cluster` measures, in one command, one instance on the embedded store beside a
//!   cluster of instances (default 2) on one Redis, with the same client, and prints one
//!   table: handshakes/s, server memory per idle stream (summed over the instances; Redis's
//!   apart), publish-to-receipt p50/p99/max, the ratios cluster / single and the targets of
//!   issue 11 (fan-out p99 ≤ 1.3×, handshakes/s ≥ 0.7×). It starts `loadgen serve` (this
//!   binary), `loadgen serve --redis-url` and a `redis-server` as children on free loopback
//!   ports, and kills them when it ends.
//! - `loadgen peer` compares the `server` binary with nginx + nchan (`nchan.conf`, both
//!   started as children) with the same client: memory per stream and its slope, fan-out
//!   p50/p99/max and CPU at several sizes, unpinned and pinned, medians of alternating runs, the
//!   ratios ours / nchan and the targets of issue 15; also the server's CPU per full handshake
//!   beside one X25519, and SYN retries of a reconnect storm.
//!
//! - `loadgen soak` churns against a running server for a fixed time (tabs opening with the
//!   full handshake and closing, broadcasts flowing) and prints the server's resident memory
//!   once a minute and its drift from the first sample after warm-up to the last.
//!
//! Typical run (optimised build, two terminals or `&`):
//!
//! ```text
//! cargo build --profile native -p loadgen
//! ulimit -n 65536
//! target/native/loadgen serve --listen 127.0.0.1:7700 --data-dir /tmp/lg &
//! target/native/loadgen streams --url http://127.0.0.1:7700 --n 10000 --server-pid $!
//! ```
//!
//! Single instance against a 2-instance cluster (needs `redis-server` on `PATH`):
//!
//! ```text
//! ulimit -n 65536
//! target/native/loadgen cluster --n 10000
//! ```
//!
//! Against nginx + nchan (needs `nginx` and `libnginx-mod-nchan`, and the `server` binary
//! beside this one):
//!
//! ```text
//! cargo build --profile native -p server -p loadgen
//! ulimit -n 20000
//! target/native/loadgen peer --sizes 2000,5000,10000 --runs 3
//! ```

mod cluster;
mod peer;
mod rig;
mod serve;
mod soak;
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
    /// Measure one instance on the embedded store beside a cluster on one Redis (started as
    /// child processes) and print one table.
    Cluster(cluster::ClusterArgs),
    /// Compare the `server` binary with nginx + nchan (started as child processes) with the
    /// same client and print one table with the ratios.
    Peer(peer::PeerArgs),
    /// Churn streams and events against a running server for a fixed time; print its memory
    /// drift.
    Soak(soak::SoakArgs),
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
        Command::Cluster(args) => runtime.block_on(cluster::run(args)),
        Command::Peer(args) => runtime.block_on(peer::run(args)),
        Command::Soak(args) => runtime.block_on(soak::run(args)),
    }
}
