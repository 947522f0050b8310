//! `loadgen soak`: churn for a fixed time against a running server, then the server's memory
//! drift. A pool of tabs is kept open; every tick some are closed and replaced by new ones
//! (new sessions, and now and then a new front, with the full handshake), and broadcasts flow
//! through the front of a sender tab. The server's resident memory is sampled once a minute;
//! the run ends with the first and last samples after warm-up and their drift, which a leak
//! (of streams, sessions, fronts, buffers) would make grow with the run's length.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use loadgen::{Client, Front, Stream};
use protocol::SessionUuid;
use serde_json::json;

use crate::streams::rss_bytes;

/// Flags of `loadgen soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// The server to soak.
    #[arg(long, default_value = "http://127.0.0.1:7700")]
    url: String,
    /// Its process id, for its resident memory.
    #[arg(long)]
    server_pid: u32,
    /// How long to churn, in seconds.
    #[arg(long, default_value_t = 1800)]
    secs: u64,
    /// Tabs kept open at once.
    #[arg(long, default_value_t = 300)]
    tabs: usize,
    /// Tabs closed and replaced per second.
    #[arg(long, default_value_t = 20)]
    churn_per_sec: usize,
    /// Broadcasts per second (each reaches every tab of the sender's front).
    #[arg(long, default_value_t = 20)]
    events_per_sec: usize,
    /// Tabs per front: a new front is made for every this many new tabs.
    #[arg(long, default_value_t = 10)]
    tabs_per_front: usize,
    /// Seconds of warm-up before the first memory sample that counts.
    #[arg(long, default_value_t = 60)]
    warmup_secs: u64,
}

/// Drains a tab's events in the background, so it is a reader and not a slow stream.
fn drain(mut tab: Stream) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while let Ok(Some(_)) = tab.next_event().await {} })
}

pub(crate) async fn run(args: SoakArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.url);
    let mut fronts: Vec<Front> = Vec::new();
    let per_front = args.tabs_per_front.max(1);
    let mut made = 0usize;
    let mut tabs = Vec::new();
    let mut opened = 0u64;
    for _ in 0..args.tabs {
        made += 1;
        if made % per_front == 1 || fronts.is_empty() {
            let mut front = Front::generate(&client);
            front.register().await.context("registering a front")?;
            fronts.push(front);
        }
        let front = fronts.last().context("a front")?;
        tabs.push(drain(front.connect(SessionUuid::new_v4(), None).await?));
        opened += 1;
    }
    let sender_front = fronts.first().context("a front")?.clone();
    // The sender cannot read its own stream while it sends, so after its queue fills the
    // server cuts it off as too slow and its session stops being active: then it reconnects.
    let mut sender = sender_front.connect(SessionUuid::new_v4(), None).await?;
    let mut senders = 1u64;

    let started = Instant::now();
    let end = started + Duration::from_secs(args.secs);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut next_sample = started + Duration::from_secs(args.warmup_secs);
    while Instant::now() < end {
        tick.tick().await;
        for _ in 0..args.churn_per_sec.min(tabs.len()) {
            let old = tabs.remove(0);
            old.abort();
            made += 1;
            if made % per_front == 1 {
                let mut front = Front::generate(&client);
                if front.register().await.is_err() {
                    failed += 1;
                    continue;
                }
                fronts.push(front);
                // Bounded: the oldest fronts' tabs are gone by now; their fronts are forgotten.
                if fronts.len() > args.tabs / per_front + 2 {
                    fronts.remove(1);
                }
            }
            let front = fronts.last().context("a front")?;
            match front.connect(SessionUuid::new_v4(), None).await {
                Ok(tab) => {
                    tabs.push(drain(tab));
                    opened += 1;
                }
                Err(_) => failed += 1,
            }
        }
        for _ in 0..args.events_per_sec {
            match sender.send("broadcast", json!("soak")).await {
                Ok(_) => sent += 1,
                Err(_) => {
                    failed += 1;
                    sender = sender_front.connect(SessionUuid::new_v4(), None).await?;
                    senders += 1;
                }
            }
        }
        if Instant::now() >= next_sample {
            let secs = started.elapsed().as_secs();
            let rss = rss_bytes(args.server_pid)?;
            println!(
                "t={secs:>5}s server RSS {:>8.1} MiB  tabs opened {opened}  events {sent}  failed {failed}",
                rss as f64 / (1024.0 * 1024.0)
            );
            samples.push((secs, rss));
            next_sample += Duration::from_secs(60);
        }
    }
    for tab in tabs {
        tab.abort();
    }
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        anyhow::bail!("the run ended before the first sample (warm-up {} s)", args.warmup_secs);
    };
    let drift = (last.1 as f64 - first.1 as f64) / first.1 as f64 * 100.0;
    println!(
        "soak: {} s, {opened} tabs opened, {sent} broadcasts ({senders} senders), {failed} failed; server RSS {:.1} MiB at {} s, {:.1} MiB at {} s: drift {drift:+.1} % (goal < 5 %)",
        args.secs,
        first.1 as f64 / (1024.0 * 1024.0),
        first.0,
        last.1 as f64 / (1024.0 * 1024.0),
        last.0,
    );
    Ok(())
}
