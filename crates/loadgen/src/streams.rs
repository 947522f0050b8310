//! `loadgen streams`: N reverse streams with the full handshake, then the three figures.
//!
//! Topology: with `--sessions-per-front 1` (the default) every stream is its own front, so a
//! handshake is register + open + open the sealed stream UUID + activate, and both sides
//! compute one X25519 per stream. With K > 1, N/K fronts register first (timed apart) and each
//! handshake is open + open + activate.
//!
//! Latency: one extra stream (not counted) sends the trigger. With `--trigger announce`
//! (needs `loadgen serve`) the server publishes one event to every front and stamps it with
//! its clock just before publishing; each stream's latency is receipt time minus that stamp.
//! With `--trigger broadcast` (the stock server, all streams in one front, K = N) the client
//! stamps the direct event before sending it, so the figure also includes that request.
//! Client and server share two cores, so the client's own work is part of every figure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use loadgen::{Client, Front, Stream};
use protocol::SessionUuid;
use protocol::sse::SseItem;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::serve::{ANNOUNCE, unix_micros};

/// How the fan-out event is triggered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Trigger {
    /// `loadgen.announce`: the server publishes to every front (needs `loadgen serve`).
    Announce,
    /// The built-in `broadcast`: every tab of the sender's front (use K = N).
    Broadcast,
    /// No latency measurement.
    None,
}

/// Flags of `loadgen streams`.
#[derive(Debug, clap::Args)]
pub(crate) struct StreamsArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:7700")]
    url: String,
    /// Streams to open and keep.
    #[arg(long, default_value_t = 10_000)]
    n: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Sessions (streams) per front.
    #[arg(long, default_value_t = 1)]
    sessions_per_front: usize,
    /// The server's process id, to read its resident memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// How the fan-out event for the latency figure is triggered.
    #[arg(long, value_enum, default_value_t = Trigger::Announce)]
    trigger: Trigger,
    /// Seconds to wait after the last handshake before reading the server's memory.
    #[arg(long, default_value_t = 3)]
    settle_secs: u64,
    /// Open every stream on a connection of its own that carried no request before, instead
    /// of taking one from the pool that registration and activation use.
    #[arg(long)]
    fresh_stream_connections: bool,
}

/// Resident memory of `pid` in bytes (`VmRSS` of /proc/PID/status).
fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS line")?;
    Ok(kib * 1024)
}

/// CPU time (user + system) a process has used, from /proc/PID/stat.
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports in clock ticks of 1/100 s (USER_HZ) on every common configuration.
    Some(Duration::from_millis(ticks * 10))
}

/// CPU used by this process and the server while `work` runs.
async fn timed<T>(server: Option<u32>, work: impl Future<Output = T>) -> (T, String) {
    let server = server.map(|pid| pid.to_string());
    let before = (cpu_time("self"), server.as_deref().and_then(cpu_time));
    let out = work.await;
    let after = (cpu_time("self"), server.as_deref().and_then(cpu_time));
    let ms = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => format!("{} ms", b.saturating_sub(a).as_millis()),
        _ => "?".to_owned(),
    };
    (out, format!("CPU: client {}, server {}", ms(before.0, after.0), ms(before.1, after.1)))
}

/// The open-files limit of this process, from /proc/self/limits.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The `q`-quantile of sorted samples (nearest rank).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The microsecond stamp in an event's data, found without decoding the whole event: on two
/// cores the reader's own work counts in every stream's latency, so it does as little as it
/// can. (The integration tests decode and check every field; this only times.)
fn stamp_micros(data: &str) -> Option<i64> {
    let at = ["\"publishedMicros\":", "\"sentMicros\":"]
        .iter()
        .find_map(|key| data.find(key).map(|i| i + key.len()))?;
    let digits = &data[at..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Reads `stream` until it ends; reports the latency of every fan-out event it receives.
async fn read(mut stream: Stream, latencies: mpsc::UnboundedSender<Duration>) {
    while let Ok(Some(item)) = stream.next_item().await {
        if let SseItem::Event(event) = item
            && let Some(sent) = stamp_micros(&event.data)
        {
            let micros = u64::try_from(unix_micros() - sent).unwrap_or(0);
            let _ = latencies.send(Duration::from_micros(micros));
        }
    }
}

pub(crate) async fn run(args: StreamsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.n > 0 && args.sessions_per_front > 0, "--n and --sessions-per-front > 0");
    if let Some(limit) = open_files_limit().filter(|limit| *limit < args.n + args.concurrency + 100)
    {
        eprintln!("warning: open-files limit {limit} is low for {} streams (ulimit -n)", args.n);
    }
    // One connection pool for the short requests; every stream holds its own connection.
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let mut client = Client::with_http(http, &args.url);
    if args.fresh_stream_connections {
        let fresh = reqwest::Client::builder().tcp_nodelay(true).pool_max_idle_per_host(0);
        client = client.with_stream_http(fresh.build()?);
    }
    let baseline = args.server_pid.map(rss_bytes).transpose()?;

    let per_front = args.sessions_per_front;
    let shared_fronts = if per_front > 1 {
        let count = args.n.div_ceil(per_front);
        let started = Instant::now();
        let fronts = register_fronts(&client, count, args.concurrency).await?;
        let took = started.elapsed();
        println!(
            "registered {count} fronts in {:.2} s ({:.0}/s)",
            took.as_secs_f64(),
            count as f64 / took.as_secs_f64()
        );
        Some(Arc::new(fronts))
    } else {
        None
    };

    let (latency_tx, mut latency_rx) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut handshakes = JoinSet::new();
    let started = Instant::now();
    for i in 0..args.n {
        let (client, permits, latency_tx) = (client.clone(), permits.clone(), latency_tx.clone());
        let shared = shared_fronts.clone();
        handshakes.spawn(async move {
            let permit = permits.acquire_owned().await?;
            let front = match &shared {
                Some(fronts) => fronts[i / per_front].clone(),
                None => {
                    let mut front = Front::generate(&client);
                    front.register().await?;
                    front
                }
            };
            let stream = front.connect(SessionUuid::new_v4(), None).await?;
            drop(permit);
            tokio::spawn(read(stream, latency_tx));
            anyhow::Ok(front)
        });
    }
    drop(latency_tx);
    let ((failures, trigger_front), cpu) = timed(args.server_pid, async {
        let mut failures = 0usize;
        let mut trigger_front = None;
        while let Some(done) = handshakes.join_next().await {
            match done {
                Ok(Ok(front)) => trigger_front = trigger_front.or(Some(front)),
                Ok(Err(e)) => {
                    failures += 1;
                    if failures <= 5 {
                        eprintln!("handshake failed: {e:#}");
                    }
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("handshake task failed: {e}");
                }
            }
        }
        (failures, trigger_front)
    })
    .await;
    let took = started.elapsed();
    let opened = args.n - failures;
    let what = if per_front > 1 { "open + activate" } else { "register + open + activate" };
    println!(
        "handshakes: {opened} ({what}) in {:.2} s = {:.0}/s at concurrency {}, {failures} failed; \
         {cpu}",
        took.as_secs_f64(),
        opened as f64 / took.as_secs_f64(),
        args.concurrency
    );

    if let (Some(pid), Some(baseline)) = (args.server_pid, baseline) {
        tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
        let rss = rss_bytes(pid)?;
        let per_stream = rss.saturating_sub(baseline) as f64 / opened.max(1) as f64;
        println!(
            "server RSS: {:.1} MiB before, {:.1} MiB with {opened} idle streams = {:.1} KiB per stream",
            baseline as f64 / 1048576.0,
            rss as f64 / 1048576.0,
            per_stream / 1024.0
        );
    }

    let trigger = match (args.trigger, trigger_front) {
        (Trigger::None, _) | (_, None) => return Ok(()),
        (trigger, Some(front)) => (trigger, front),
    };
    // The trigger's own stream is an extra one; it is not read.
    let sender = trigger.1.connect(SessionUuid::new_v4(), None).await?;
    let expected = match trigger.0 {
        Trigger::Announce => opened,
        // Every session of the sender's front, the sender's own (unread) stream excepted.
        _ => per_front.min(opened),
    };
    let sent_at = Instant::now();
    let (measured, cpu) = timed(args.server_pid, async {
        match trigger.0 {
            Trigger::Announce => sender.send(ANNOUNCE, json!({})).await?,
            _ => sender.send("broadcast", json!({ "sentMicros": unix_micros() })).await?,
        };
        let request_took = sent_at.elapsed();
        let mut samples = Vec::with_capacity(expected);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while samples.len() < expected {
            match tokio::time::timeout_at(deadline, latency_rx.recv()).await {
                Ok(Some(sample)) => samples.push(sample),
                Ok(None) | Err(_) => break,
            }
        }
        anyhow::Ok((samples, request_took))
    })
    .await;
    let (mut samples, request_took) = measured?;
    samples.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "fan-out ({:?}): {}/{expected} received; publish→receipt p50 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms; trigger request {:.1} ms; {cpu}",
        trigger.0,
        samples.len(),
        ms(quantile(&samples, 0.50)),
        ms(quantile(&samples, 0.99)),
        ms(quantile(&samples, 1.0)),
        ms(request_took),
    );
    Ok(())
}

/// Registers `count` fronts, `concurrency` at a time.
async fn register_fronts(
    client: &Client,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Front>> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        let (client, permits) = (client.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let mut front = Front::generate(&client);
            front.register().await?;
            anyhow::Ok(front)
        });
    }
    let mut fronts = Vec::with_capacity(count);
    while let Some(front) = tasks.join_next().await {
        fronts.push(front??);
    }
    Ok(fronts)
}
