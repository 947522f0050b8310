//! `loadgen streams`: N reverse streams with the full handshake, then the three figures.
//!
//! Topology: with `--sessions-per-front 1` (the default) every stream is its own front, so a
//! handshake is register + open + open the sealed stream UUID + activate, and both sides
//! compute one X25519 per stream. With K > 1, N/K fronts register first (timed apart) and each
//! handshake is open + open + activate.
//!
//! Instances: with several URLs (the instances of a cluster), the handshake of stream i goes
//! wholly to instance i mod count (shared fronts too: any instance serves any front) and the
//! trigger to the first, so the event reaches the other instances' streams through the
//! cluster's store. Memory per stream is the instances' summed growth.
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

/// What to measure and how: the flags `loadgen streams` and `loadgen cluster` share.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    /// Streams to open and keep.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) n: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    pub(crate) concurrency: usize,
    /// Sessions (streams) per front.
    #[arg(long, default_value_t = 1)]
    pub(crate) sessions_per_front: usize,
    /// How the fan-out event for the latency figure is triggered.
    #[arg(long, value_enum, default_value_t = Trigger::Announce)]
    pub(crate) trigger: Trigger,
    /// Seconds to wait after the last handshake before reading the servers' memory.
    #[arg(long, default_value_t = 3)]
    pub(crate) settle_secs: u64,
    /// Open every stream on a connection of its own that carried no request before, instead
    /// of taking one from the pool that registration and activation use.
    #[arg(long)]
    pub(crate) fresh_stream_connections: bool,
}

/// Flags of `loadgen streams`.
#[derive(Debug, clap::Args)]
pub(crate) struct StreamsArgs {
    /// Base URL of the server. Repeat it for the instances of a cluster: the handshake of
    /// stream i goes to the (i mod count)-th URL, the fan-out trigger to the first.
    #[arg(long = "url", value_name = "URL", default_value = "http://127.0.0.1:7700")]
    urls: Vec<String>,
    /// A server's process id, to read its resident memory and CPU time from /proc. Repeat it
    /// for the instances of a cluster: memory per stream is the sum of their growth.
    #[arg(long = "server-pid", value_name = "PID")]
    server_pids: Vec<u32>,
    /// The process id of the store the servers share (a `redis-server`), whose memory and CPU
    /// time are reported apart from the servers'.
    #[arg(long, value_name = "PID")]
    store_pid: Option<u32>,
    #[command(flatten)]
    load: LoadArgs,
}

/// The servers one measurement runs against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// Base URLs of the instances, in round-robin order (the first also takes the trigger).
    pub(crate) urls: &'a [String],
    /// Process ids of the instances (may be empty: then no memory figure).
    pub(crate) servers: &'a [u32],
    /// Process id of the shared store, if it is a process of its own.
    pub(crate) store: Option<u32>,
}

/// The figures of one measurement.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// Streams opened and kept.
    pub(crate) opened: usize,
    /// Handshakes that failed.
    pub(crate) failed: usize,
    /// Completed handshakes per second of the handshake phase.
    pub(crate) handshakes_per_sec: f64,
    /// CPU used by the client and the servers over the handshake phase.
    pub(crate) handshake_cpu: CpuUse,
    /// Growth of the instances' resident memory, summed, per opened idle stream (bytes).
    pub(crate) server_rss_per_stream: Option<f64>,
    /// Growth of the store process's resident memory per opened idle stream (bytes).
    pub(crate) store_rss_per_stream: Option<f64>,
    /// The fan-out latency, unless `--trigger none` (or no stream opened).
    pub(crate) fan_out: Option<FanOut>,
}

/// Publish → receipt latency of one fan-out event.
#[derive(Debug, Clone)]
pub(crate) struct FanOut {
    /// Streams that received the event within the wait.
    pub(crate) received: usize,
    /// Streams that should have.
    pub(crate) expected: usize,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
}

/// The longest wait for the fan-out event to reach every stream.
const FAN_OUT_WAIT: Duration = Duration::from_secs(30);

/// The longest one handshake (or registration, or the trigger's request) may take once it has
/// its turn: a server that stops answering fails the run instead of hanging it.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `work`, failed as `what` if it takes longer than [`REQUEST_TIMEOUT`].
pub(crate) async fn bounded<T, E>(
    what: &str,
    work: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    anyhow::Error: From<E>,
{
    match tokio::time::timeout(REQUEST_TIMEOUT, work).await {
        Ok(out) => Ok(out?),
        Err(_) => anyhow::bail!("{what} took longer than {REQUEST_TIMEOUT:?}"),
    }
}

/// Resident memory of `pid` in bytes (`VmRSS` of /proc/PID/status).
pub(crate) fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS line")?;
    Ok(kib * 1024)
}

/// Summed resident memory of `pids`, in bytes.
pub(crate) fn rss_sum(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter().map(|pid| rss_bytes(*pid)).sum()
}

/// CPU time (user + system) a process has used: the sum of its threads' run times in
/// /proc/PID/task/TID/schedstat (nanoseconds), else utime + stime of /proc/PID/stat (clock
/// ticks of 10 ms: too coarse for a fan-out to a few thousand streams, which takes a few of
/// them). Threads that ended are missing from the sum, so only differences over a short span
/// mean something.
pub(crate) fn cpu_time(pid: &str) -> Option<Duration> {
    let threads = |tasks: std::fs::ReadDir| -> Option<Duration> {
        let mut nanos = 0u64;
        for task in tasks.flatten() {
            // A thread that ended since the listing has no file any more: it adds nothing.
            if let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) {
                nanos += stat.split_whitespace().next()?.parse::<u64>().ok()?;
            }
        }
        Some(Duration::from_nanos(nanos))
    };
    if let Some(time) = std::fs::read_dir(format!("/proc/{pid}/task")).ok().and_then(threads)
        && !time.is_zero()
    {
        return Some(time);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports in clock ticks of 1/100 s (USER_HZ) on every common configuration.
    Some(Duration::from_millis(ticks * 10))
}

/// Counts the CPU time this process (the client), the servers (summed) and the store use from
/// [`CpuMeter::start`] to [`CpuMeter::stop`].
#[derive(Debug, Clone)]
pub(crate) struct CpuMeter {
    servers: Vec<u32>,
    store: Option<u32>,
    before: [Option<Duration>; 3],
}

/// CPU time used over a span; `None` where a process could not be read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuUse {
    pub(crate) client: Option<Duration>,
    pub(crate) server: Option<Duration>,
    pub(crate) store: Option<Duration>,
}

impl CpuMeter {
    pub(crate) fn start(servers: &[u32], store: Option<u32>) -> Self {
        let mut meter = Self { servers: servers.to_vec(), store, before: [None; 3] };
        meter.before = meter.sample();
        meter
    }

    fn sample(&self) -> [Option<Duration>; 3] {
        let servers = if self.servers.is_empty() {
            None
        } else {
            self.servers.iter().map(|pid| cpu_time(&pid.to_string())).sum()
        };
        [cpu_time("self"), servers, self.store.and_then(|pid| cpu_time(&pid.to_string()))]
    }

    pub(crate) fn stop(&self) -> CpuUse {
        let after = self.sample();
        let used = |i: usize| Some(after[i]?.saturating_sub(self.before[i]?));
        CpuUse { client: used(0), server: used(1), store: used(2) }
    }
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Option<Duration>| {
            d.map_or_else(|| "?".to_owned(), |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
        };
        write!(f, "CPU: client {}, server {}", ms(self.client), ms(self.server))?;
        if self.store.is_some() {
            write!(f, ", store {}", ms(self.store))?;
        }
        Ok(())
    }
}

/// The open-files limit of this process, from /proc/self/limits.
pub(crate) fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The `q`-quantile of sorted samples (nearest rank).
pub(crate) fn quantile(sorted: &[Duration], q: f64) -> Duration {
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
    ["\"publishedMicros\":", "\"sentMicros\":"].iter().find_map(|key| number_after(data, key))
}

/// The decimal digits right after `key` in `data`, as a number (the stamp and sequence fields
/// of the load tool's events, found without decoding the event).
pub(crate) fn number_after(data: &str, key: &str) -> Option<i64> {
    let digits = &data[data.find(key)? + key.len()..];
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
    let target = Target { urls: &args.urls, servers: &args.server_pids, store: args.store_pid };
    measure(&args.load, target).await.map(drop)
}

/// Opens `load.n` streams over `target`'s instances, prints each phase's figures as it ends
/// and returns them. The streams close when it returns.
pub(crate) async fn measure(load: &LoadArgs, target: Target<'_>) -> anyhow::Result<Report> {
    anyhow::ensure!(load.n > 0 && load.sessions_per_front > 0, "--n and --sessions-per-front > 0");
    anyhow::ensure!(!target.urls.is_empty(), "at least one --url");
    if let Some(limit) = open_files_limit().filter(|limit| *limit < load.n + load.concurrency + 100)
    {
        eprintln!("warning: open-files limit {limit} is low for {} streams (ulimit -n)", load.n);
    }
    // One connection pool for the short requests; every stream holds its own connection.
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let fresh = if load.fresh_stream_connections {
        let fresh = reqwest::Client::builder().tcp_nodelay(true).pool_max_idle_per_host(0);
        Some(fresh.build()?)
    } else {
        None
    };
    // One client per instance, all on the same pools.
    let clients: Vec<Client> = target
        .urls
        .iter()
        .map(|url| {
            let client = Client::with_http(http.clone(), url);
            match &fresh {
                Some(fresh) => client.with_stream_http(fresh.clone()),
                None => client,
            }
        })
        .collect();
    let instance = |i: usize| &clients[i % clients.len()];
    let measure_rss = !target.servers.is_empty();
    let baseline = measure_rss.then(|| rss_sum(target.servers)).transpose()?;
    let store_baseline = target.store.map(rss_bytes).transpose()?;

    let per_front = load.sessions_per_front;
    let shared_fronts = if per_front > 1 {
        let count = load.n.div_ceil(per_front);
        let started = Instant::now();
        let fronts = register_fronts(&clients, count, load.concurrency).await?;
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
    let permits = Arc::new(Semaphore::new(load.concurrency.max(1)));
    let mut handshakes = JoinSet::new();
    let started = Instant::now();
    // Before the first handshake task is spawned: it may start at once on another thread.
    let meter = CpuMeter::start(target.servers, target.store);
    for i in 0..load.n {
        // The whole handshake of stream i goes to one instance, the next to the next.
        let (client, permits) = (instance(i).clone(), permits.clone());
        let shared = shared_fronts.clone();
        handshakes.spawn(async move {
            let permit = permits.acquire_owned().await?;
            let handshake = async {
                let front = match &shared {
                    // Any instance of a cluster serves any front.
                    Some(fronts) => fronts[i / per_front].with_client(&client),
                    None => {
                        let mut front = Front::generate(&client);
                        front.register().await?;
                        front
                    }
                };
                let stream = front.connect(SessionUuid::new_v4(), None).await?;
                anyhow::Ok((front, stream))
            };
            let done = bounded("a handshake", handshake).await?;
            drop(permit);
            anyhow::Ok(done)
        });
    }
    // The readers end (and their streams close) when this set drops, as this function returns.
    let mut readers = JoinSet::new();
    let (failed, trigger_front) = async {
        let mut failed = 0usize;
        let mut trigger_front = None;
        while let Some(done) = handshakes.join_next().await {
            match done {
                Ok(Ok((front, stream))) => {
                    readers.spawn(read(stream, latency_tx.clone()));
                    trigger_front = trigger_front.or(Some(front));
                }
                Ok(Err(e)) => {
                    failed += 1;
                    if failed <= 5 {
                        eprintln!("handshake failed: {e:#}");
                    }
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("handshake task failed: {e}");
                }
            }
        }
        (failed, trigger_front)
    }
    .await;
    let cpu = meter.stop();
    drop(latency_tx);
    let took = started.elapsed();
    let opened = load.n - failed;
    let handshakes_per_sec = opened as f64 / took.as_secs_f64();
    let what = if per_front > 1 { "open + activate" } else { "register + open + activate" };
    println!(
        "handshakes: {opened} ({what}) over {} instance(s) in {:.2} s = {handshakes_per_sec:.0}/s \
         at concurrency {}, {failed} failed; {cpu}",
        clients.len(),
        took.as_secs_f64(),
        load.concurrency
    );
    let mut report = Report {
        opened,
        failed,
        handshakes_per_sec,
        handshake_cpu: cpu,
        server_rss_per_stream: None,
        store_rss_per_stream: None,
        fan_out: None,
    };

    if measure_rss || store_baseline.is_some() {
        tokio::time::sleep(Duration::from_secs(load.settle_secs)).await;
    }
    let per_stream =
        |before: u64, after: u64| (after as f64 - before as f64) / opened.max(1) as f64;
    let mib = |bytes: u64| bytes as f64 / 1048576.0;
    if let Some(baseline) = baseline {
        let rss = rss_sum(target.servers)?;
        let per_stream = per_stream(baseline, rss);
        report.server_rss_per_stream = Some(per_stream);
        println!(
            "server RSS ({} process(es)): {:.1} MiB before, {:.1} MiB with {opened} idle streams \
             = {:.1} KiB per stream",
            target.servers.len(),
            mib(baseline),
            mib(rss),
            per_stream / 1024.0
        );
    }
    if let (Some(pid), Some(baseline)) = (target.store, store_baseline) {
        let rss = rss_bytes(pid)?;
        let per_stream = per_stream(baseline, rss);
        report.store_rss_per_stream = Some(per_stream);
        println!(
            "store RSS: {:.1} MiB before, {:.1} MiB with {opened} idle streams = {:.1} KiB per \
             stream",
            mib(baseline),
            mib(rss),
            per_stream / 1024.0
        );
    }

    let trigger = match (load.trigger, trigger_front) {
        (Trigger::None, _) | (_, None) => return Ok(report),
        // The trigger goes through the first instance, whichever served the front before.
        (trigger, Some(front)) => (trigger, front.with_client(&clients[0])),
    };
    // The trigger's own stream is an extra one; it is not read.
    let sender =
        bounded("the trigger's handshake", trigger.1.connect(SessionUuid::new_v4(), None)).await?;
    let expected = match trigger.0 {
        Trigger::Announce => opened,
        // Every session of the sender's front, the sender's own (unread) stream excepted.
        _ => per_front.min(opened),
    };
    let sent_at = Instant::now();
    let meter = CpuMeter::start(target.servers, target.store);
    let measured = async {
        match trigger.0 {
            Trigger::Announce => bounded("the trigger", sender.send(ANNOUNCE, json!({}))).await?,
            _ => {
                let data = json!({ "sentMicros": unix_micros() });
                bounded("the trigger", sender.send("broadcast", data)).await?
            }
        };
        let request_took = sent_at.elapsed();
        let mut samples = Vec::with_capacity(expected);
        let deadline = tokio::time::Instant::now() + FAN_OUT_WAIT;
        while samples.len() < expected {
            match tokio::time::timeout_at(deadline, latency_rx.recv()).await {
                Ok(Some(sample)) => samples.push(sample),
                Ok(None) | Err(_) => break,
            }
        }
        anyhow::Ok((samples, request_took))
    }
    .await;
    let cpu = meter.stop();
    let (mut samples, request_took) = measured?;
    samples.sort_unstable();
    let fan_out = FanOut {
        received: samples.len(),
        expected,
        p50: quantile(&samples, 0.50),
        p99: quantile(&samples, 0.99),
        max: quantile(&samples, 1.0),
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "fan-out ({:?}): {}/{expected} received; publish→receipt p50 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms; trigger request {:.1} ms; {cpu}",
        trigger.0,
        fan_out.received,
        ms(fan_out.p50),
        ms(fan_out.p99),
        ms(fan_out.max),
        ms(request_took),
    );
    report.fan_out = Some(fan_out);
    Ok(report)
}

/// Registers `count` fronts, `concurrency` at a time, front j on instance j mod count.
async fn register_fronts(
    clients: &[Client],
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Front>> {
    at_most(count, concurrency, |j| {
        let client = clients[j % clients.len()].clone();
        async move {
            let mut front = Front::generate(&client);
            bounded("a registration", front.register()).await?;
            anyhow::Ok(front)
        }
    })
    .await
}

/// Runs `task(i)` for every i below `count`, at most `concurrency` at a time; their outputs in
/// the order they finished, or the first error.
pub(crate) async fn at_most<T, F>(
    count: usize,
    concurrency: usize,
    task: impl Fn(usize) -> F,
) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let (permits, work) = (permits.clone(), task(i));
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            work.await
        });
    }
    let mut done = Vec::with_capacity(count);
    while let Some(output) = tasks.join_next().await {
        done.push(output??);
    }
    Ok(done)
}
