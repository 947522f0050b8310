//! `loadgen peer`: the event server beside nginx + nchan (Debian's `nginx-light` and
//! `libnginx-mod-nchan`), measured by the same client in one command, printed as one table
//! with the ratios and the targets of issue 15.
//!
//! Setup on each side: ours is the `server` binary with the server API on, one front with N
//! activated sessions (one stream each); nchan is one nginx worker with one channel and N
//! EventSource subscribers ([`NCHAN_CONF`], `crates/loadgen/nchan.conf`). Both sides'
//! streams are read by the same [`SseReader`] and the same [`receive`] loop: a receipt is
//! timed when the reader yields the frame, a publish just before its request is sent
//! (`POST /api/events/publish` to the front, `POST /pub` to the channel).
//!
//! A run of one side starts its server fresh (pinned to `--server-cpu` with `taskset` when
//! pinning is on, this process then on `--client-cpu`), grows its streams to each of `--sizes`
//! in turn and at each reads the server's resident memory (nginx: master and worker summed)
//! and publishes one event, which every stream must receive; the server's and the client's CPU
//! time is counted from the publish to the last receipt. Memory per stream is the growth over
//! the server's memory before the first stream; the slope between two sizes drops the fixed
//! costs (such as pooled keep-alive connections of the handshakes). On ours the time from the
//! publish to the first stream's write is also read by the server's own clock, from its
//! `/metrics` (`websession_event_first_write_seconds`) before and after the event: the client's
//! first receipt adds the client's own delays. On ours a run then
//! measures the server's CPU per full handshake with registration (`loadgen streams`'
//! measurement, each stream its own front) and a reconnect storm: `--reconnects` connections
//! opened at once against the default listen backlog, counting those that took 1 s or more (a
//! SYN retry). The time of one X25519 shared-key computation (`SalsaBox::new`, as the server
//! computes per front) is measured in this process in every run.
//!
//! Runs alternate which side goes first; the table shows each figure's median over the runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use loadgen::{Client, Front, SseReader};
use protocol::api::{API_KEY_HEADER, PublishRequest};
use protocol::sse::SseItem;
use protocol::{KeyPair, Peer, SessionUuid};
use reqwest::header::ACCEPT;
use serde_json::json;
use tokio::process::Command;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::cluster::{ratio, verdict};
use loadgen::process::children;

use crate::rig::{Rig, free_port};
use crate::streams::{
    self, CpuMeter, LoadArgs, Target, Trigger, bounded, number_after, quantile, rss_sum,
};

/// The nchan configuration, with `@NAME@` placeholders that [`nchan_conf`] fills in.
pub(crate) const NCHAN_CONF: &str = include_str!("../nchan.conf");

/// The key of the fan-out sequence number in the events' data, on both sides.
const FAN_OUT_KEY: &str = "\"fanout\":";

/// The name of the fan-out event on our server.
const FAN_OUT_EVENT: &str = "loadgen.peer";

/// The longest wait for a fan-out event to reach every stream.
const FAN_OUT_WAIT: Duration = Duration::from_secs(30);

/// A connect that took this long waited for at least one SYN retry (the first comes after 1 s).
const SYN_RETRY: Duration = Duration::from_secs(1);

/// The longest wait for a server to go quiet (finish what earlier steps left it) before a
/// measurement of its CPU.
const QUIET_WAIT: Duration = Duration::from_secs(10);

/// Targets of issue 15: ours / nchan at most this for memory per stream, fan-out p99 and the
/// server's CPU for the fan-out …
const PEER_TARGET: f64 = 1.0;
/// … and the server's CPU per full handshake at most this × one X25519 computation.
const HANDSHAKE_TARGET: f64 = 2.0;

/// Pinning of the processes to CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Pin {
    /// Every process free on every CPU.
    Off,
    /// The server on `--server-cpu`, this client on `--client-cpu` (with `taskset`).
    On,
}

/// Flags of `loadgen peer`.
#[derive(Debug, clap::Args)]
pub(crate) struct PeerArgs {
    /// Stream counts, ascending: each run grows its streams to each in turn and measures there.
    #[arg(long, value_delimiter = ',', default_value = "2000,5000,10000")]
    sizes: Vec<usize>,
    /// Runs of each side per pinning mode (alternating which side goes first); the table shows
    /// medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=99))]
    runs: u32,
    /// Pinning modes to measure, in order (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "off,on")]
    pin: Vec<Pin>,
    /// The CPU the server (ours, or nginx) runs on when pinned.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// The CPU this client runs on when pinned.
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
    /// Loopback port of our server (0: a free one).
    #[arg(long, default_value_t = 0)]
    server_port: u16,
    /// Loopback port of nginx (0: a free one).
    #[arg(long, default_value_t = 0)]
    nchan_port: u16,
    /// Our server's binary [default: `server` beside this binary, as `cargo build --profile
    /// native -p server -p loadgen` puts it].
    #[arg(long, value_name = "PROGRAM")]
    server: Option<PathBuf>,
    /// The nginx to run nchan in.
    #[arg(long, default_value = "nginx", value_name = "PROGRAM")]
    nginx: PathBuf,
    /// The nchan module nginx loads.
    #[arg(long, default_value = "/usr/lib/nginx/modules/ngx_nchan_module.so", value_name = "PATH")]
    nchan_module: PathBuf,
    /// Streams opened (handshakes, subscriptions) at once.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,
    /// Seconds to wait after the last stream of a size opened before reading the memory.
    #[arg(long, default_value_t = 2)]
    settle_secs: u64,
    /// Full handshakes with registration (each stream its own front) to measure our server's
    /// CPU per handshake (0: not measured).
    #[arg(long, default_value_t = 2000)]
    handshakes: usize,
    /// Connections opened at once against our server to count SYN retries (0: not measured).
    #[arg(long, default_value_t = 2000)]
    reconnects: usize,
    /// X25519 shared-key computations timed per run.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
    x25519_iterations: u32,
    /// Seconds each server may take to be ready.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    startup_secs: u64,
}

/// The two servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    Nchan,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Nchan => "nchan",
        }
    }
}

/// What one side measured at one size in one run (memory in bytes, times in ms).
#[derive(Debug, Clone, Default)]
struct AtSize {
    per_stream: Option<f64>,
    slope: Option<f64>,
    /// The first receipt: how soon the first write left the server.
    first: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
    server_cpu: Option<f64>,
    client_cpu: Option<f64>,
    received: usize,
    /// Ours: from the start of the publish to the first stream that writes the event, by the
    /// server's own clock (`websession_event_first_write_seconds`), free of the client's delays.
    server_first: Option<f64>,
}

/// What one side measured in one run.
#[derive(Debug, Clone, Default)]
struct Run {
    sizes: Vec<AtSize>,
    /// Ours: the server's CPU per full handshake, in µs.
    handshake_us: Option<f64>,
    /// Ours: the reconnect storm.
    storm: Option<Storm>,
}

/// Connections opened at once: how many took a SYN retry or failed, and the slowest.
#[derive(Debug, Clone, Copy)]
struct Storm {
    slow: usize,
    failed: usize,
    max: Duration,
}

/// A server under measurement.
#[derive(Debug)]
struct Server {
    side: Side,
    /// Base URL, `http://127.0.0.1:PORT`.
    url: String,
    /// The main process (nginx: the master).
    pid: u32,
    /// Ours: the API key and the one front every stream belongs to.
    ours: Option<(String, Front)>,
}

impl Server {
    /// The processes whose memory and CPU count: ours, or nginx's master and its workers.
    fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid];
        if self.side == Side::Nchan {
            pids.extend(children(self.pid));
        }
        pids
    }

    /// Opens `count` streams, `concurrency` at a time: on ours the handshake of a new session
    /// of the front (open, activate), on nchan an EventSource subscription.
    async fn subscribe(
        &self,
        http: &reqwest::Client,
        count: usize,
        concurrency: usize,
    ) -> anyhow::Result<Vec<SseReader>> {
        streams::at_most(count, concurrency, |_| {
            let front = self.ours.as_ref().map(|(_, front)| front.clone());
            let request = http.get(format!("{}/sub", self.url)).header(ACCEPT, "text/event-stream");
            bounded("opening a stream", async move {
                match front {
                    Some(front) => {
                        let stream = front.connect(SessionUuid::new_v4(), None).await?;
                        anyhow::Ok(stream.into_reader())
                    }
                    None => {
                        let response = request.send().await?;
                        let status = response.status();
                        ensure!(status.is_success(), "nchan answered a subscription {status}");
                        Ok(SseReader::new(response))
                    }
                }
            })
        })
        .await
    }

    /// On nchan, waits until the channel counts `count` subscribers (a subscription's answer
    /// may come before nchan counts it); on ours an activated stream is subscribed already.
    async fn subscribed(&self, http: &reqwest::Client, count: usize) -> anyhow::Result<()> {
        if self.side == Side::Ours {
            return Ok(());
        }
        let deadline = Instant::now() + streams::REQUEST_TIMEOUT;
        loop {
            let info: serde_json::Value = bounded("asking nchan for its subscribers", async {
                let response = http
                    .get(format!("{}/pub", self.url))
                    .header(ACCEPT, "application/json")
                    .send()
                    .await?;
                anyhow::Ok(response.json().await?)
            })
            .await?;
            let counted = info["subscribers"].as_u64();
            if counted == Some(count as u64) {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "nchan counts {counted:?} subscribers, not {count}, after {:?}",
                streams::REQUEST_TIMEOUT
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes one event whose data is `{"fanout": seq}` to every stream.
    async fn publish(&self, http: &reqwest::Client, seq: u64) -> anyhow::Result<()> {
        let data = json!({ "fanout": seq });
        let request = match &self.ours {
            Some((key, front)) => {
                let body = PublishRequest {
                    front_uuid: front.uuid(),
                    session_uuid: None,
                    name: FAN_OUT_EVENT.to_owned(),
                    data,
                    encrypted: false,
                    expires_in_ms: None,
                    idempotency_key: None,
                };
                let url = format!("{}/api/events/publish", self.url);
                http.post(url).header(API_KEY_HEADER, key).json(&body)
            }
            None => http.post(format!("{}/pub", self.url)).body(data.to_string()),
        };
        let response = bounded("a publish", request.send()).await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("{} answered a publish {status}: {body}", self.side.name());
        }
        Ok(())
    }
}

/// What to put in nchan.conf's placeholders.
#[derive(Debug)]
struct NchanPlaces<'a> {
    module: &'a Path,
    dir: &'a Path,
    port: u16,
    connections: usize,
}

/// nchan.conf with its placeholders filled in; an error names a placeholder left.
fn nchan_conf(places: &NchanPlaces<'_>) -> anyhow::Result<String> {
    let conf = NCHAN_CONF
        .replace("@MODULE@", &places.module.display().to_string())
        .replace("@DIR@", &places.dir.display().to_string())
        .replace("@PORT@", &places.port.to_string())
        .replace("@CONNECTIONS@", &places.connections.to_string())
        // Every connection is a file, and nginx opens a few of its own.
        .replace("@FILES@", &(places.connections + 100).to_string());
    // Comments may name the placeholders.
    let directive = |line: &&str| !line.trim_start().starts_with('#');
    if let Some(line) = conf.lines().filter(directive).find(|line| line.contains('@')) {
        bail!("nchan.conf: a placeholder is not filled in: {}", line.trim());
    }
    Ok(conf)
}

/// `program`, run on `cpu` with `taskset` if given.
fn command_on(program: &Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", &cpu.to_string()]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// How to start nginx + nchan.
#[derive(Debug)]
struct NchanSetup<'a> {
    nginx: &'a Path,
    module: &'a Path,
    port: u16,
    connections: usize,
    cpu: Option<usize>,
    startup: Duration,
}

/// Starts nginx with nchan.conf in the rig's directory; returns it once it accepts
/// connections and has its worker.
async fn start_nchan(rig: &mut Rig, setup: &NchanSetup<'_>) -> anyhow::Result<Server> {
    let dir = rig.dir().join("nchan");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let port = if setup.port == 0 { free_port()? } else { setup.port };
    let places =
        NchanPlaces { module: setup.module, dir: &dir, port, connections: setup.connections };
    let conf = dir.join("nchan.conf");
    std::fs::write(&conf, nchan_conf(&places)?)
        .with_context(|| format!("writing {}", conf.display()))?;
    let mut command = command_on(setup.nginx, setup.cpu);
    // `-e`: nginx opens its error log before it reads the configuration.
    command.arg("-p").arg(&dir).arg("-c").arg(&conf).args(["-e", "stderr", "-g", "daemon off;"]);
    let name = format!("{} (install nginx-light and libnginx-mod-nchan)", setup.nginx.display());
    let pid = rig.spawn(&name, command, false)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    rig.wait_until("nginx", setup.startup, || async move {
        tokio::net::TcpStream::connect(addr).await.is_ok() && !children(pid).is_empty()
    })
    .await?;
    println!("started nginx + nchan: http://{addr} pid {pid}, workers {:?}", children(pid));
    Ok(Server { side: Side::Nchan, url: format!("http://{addr}"), pid, ours: None })
}

/// Starts our server on a fresh data directory with the server API on and room for every
/// stream in one front and registrations unlimited; returns it once it listens, with the front
/// registered.
async fn start_ours(
    rig: &mut Rig,
    args: &PeerArgs,
    program: &Path,
    cpu: Option<usize>,
    http: &reqwest::Client,
) -> anyhow::Result<Server> {
    let key = format!("loadgen-peer-{}", SessionUuid::new_v4());
    let key_file = rig.dir().join("api-key");
    std::fs::write(&key_file, &key).with_context(|| format!("writing {}", key_file.display()))?;
    let most = args.sizes.iter().max().copied().unwrap_or(1);
    let mut command = command_on(program, cpu);
    command
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", args.server_port))
        .arg("--data-dir")
        .arg(rig.dir().join("server"))
        .arg("--api-key-file")
        .arg(&key_file)
        .args(["--max-streams-per-front", &most.to_string(), "--registrations-per-sec", "0"])
        // Stopped when its streams are closed already: nothing to drain.
        .args(["--drain-secs", "0"])
        // Its log would share stdout with the line it is ready.
        .env("RUST_LOG", "warn");
    let pid = rig.spawn(&program.display().to_string(), command, true)?;
    let startup = Duration::from_secs(args.startup_secs);
    let url = rig
        .wait_for_line("server", startup, |line| {
            line.strip_prefix("server: listening on ").map(str::to_owned)
        })
        .await?;
    println!("started server: {url} pid {pid}");
    let mut front = Front::generate(&Client::with_http(http.clone(), &url));
    bounded("registering the front", front.register()).await?;
    Ok(Server { side: Side::Ours, url, pid, ours: Some((key, front)) })
}

/// Reads `reader` until it ends; sends the fan-out sequence number and receipt time of every
/// fan-out event. The one receiving loop of both sides.
async fn receive(mut reader: SseReader, receipts: mpsc::UnboundedSender<(i64, Instant)>) {
    while let Ok(Some(item)) = reader.next_item().await {
        let seen = Instant::now();
        if let SseItem::Event(event) = item
            && let Some(seq) = number_after(&event.data, FAN_OUT_KEY)
        {
            let _ = receipts.send((seq, seen));
        }
    }
}

/// Waits until `pids` use less than 5 % of a CPU over 200 ms (what an earlier step left them
/// is done; heartbeats of 10,000 idle streams stay below it), at most [`QUIET_WAIT`].
async fn quiet(pids: &[u32]) {
    let deadline = Instant::now() + QUIET_WAIT;
    while Instant::now() < deadline {
        let meter = CpuMeter::start(pids, None);
        tokio::time::sleep(Duration::from_millis(200)).await;
        if meter.stop().server.is_none_or(|used| used < Duration::from_millis(10)) {
            return;
        }
    }
}

/// Measures one side in one run: starts its server, grows its streams to each size, measures,
/// and on ours the handshakes and the reconnect storm.
async fn measure_side(
    args: &PeerArgs,
    side: Side,
    cpu: Option<usize>,
    server_program: &Path,
    rig: &mut Rig,
) -> anyhow::Result<Run> {
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let concurrency = args.concurrency as usize;
    let most = args.sizes.iter().max().copied().unwrap_or(1);
    let server = match side {
        Side::Ours => start_ours(rig, args, server_program, cpu, &http).await?,
        Side::Nchan => {
            let setup = NchanSetup {
                nginx: &args.nginx,
                module: &args.nchan_module,
                port: args.nchan_port,
                // Streams, the pool's keep-alive connections and the listener, with room: a
                // worker short of connections closes some (its error log says so). Its table
                // is allocated at start, so the room adds to the baseline, not per stream.
                // Within the open-files limit nginx inherits, which it may not raise.
                connections: (2 * most + concurrency + 1000)
                    .min(streams::open_files_limit().unwrap_or(usize::MAX).saturating_sub(100)),
                cpu,
                startup: Duration::from_secs(args.startup_secs),
            };
            start_nchan(rig, &setup).await?
        }
    };
    let pids = server.pids();
    let baseline = rss_sum(&pids)?;
    let (receipts, mut received) = mpsc::unbounded_channel();
    let mut readers = JoinSet::new();
    let mut run = Run::default();
    let mut last: Option<(usize, u64)> = None;
    for (seq, &size) in (1..).zip(&args.sizes) {
        let open = last.map_or(0, |(n, _)| n);
        let started = Instant::now();
        for reader in server.subscribe(&http, size - open, concurrency).await? {
            readers.spawn(receive(reader, receipts.clone()));
        }
        server.subscribed(&http, size).await?;
        let opening = started.elapsed();
        tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
        let rss = rss_sum(&pids)?;
        let mut at = AtSize {
            per_stream: Some((rss as f64 - baseline as f64) / size as f64),
            slope: last.map(|(n, r)| (rss as f64 - r as f64) / (size - n) as f64),
            ..AtSize::default()
        };
        last = Some((size, rss));

        let first_before = first_write(&http, &server).await;
        quiet(&pids).await;
        let meter = CpuMeter::start(&pids, None);
        let published = Instant::now();
        server.publish(&http, seq).await?;
        let mut latencies = Vec::with_capacity(size);
        let deadline = tokio::time::Instant::now() + FAN_OUT_WAIT;
        while latencies.len() < size {
            match tokio::time::timeout_at(deadline, received.recv()).await {
                Ok(Some((got, when))) if got == seq as i64 => latencies.push(when - published),
                // An earlier event reaching a stream late: not this one's.
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let cpu = meter.stop();
        // The one event published since the last scrape: its time is the growth of the sum.
        at.server_first = match (first_before, first_write(&http, &server).await) {
            (Some((sum, count)), Some((sum_now, count_now))) if count_now > count => {
                Some((sum_now - sum) / (count_now - count) * 1000.0)
            }
            _ => None,
        };
        latencies.sort_unstable();
        let ms = |d: Duration| Some(d.as_secs_f64() * 1000.0);
        at.received = latencies.len();
        if !latencies.is_empty() {
            at.first = ms(quantile(&latencies, 0.0));
            at.p50 = ms(quantile(&latencies, 0.50));
            at.p99 = ms(quantile(&latencies, 0.99));
            at.max = ms(quantile(&latencies, 1.0));
        }
        at.server_cpu = cpu.server.and_then(ms);
        at.client_cpu = cpu.client.and_then(ms);
        println!(
            "{} N={size}: opened in {:.2} s; RSS {:.1} KiB/stream{}; fan-out {}/{size} received, \
             first {} ms{}, p50 {} ms, p99 {} ms, max {} ms; {cpu}",
            side.name(),
            opening.as_secs_f64(),
            at.per_stream.unwrap_or_default() / 1024.0,
            at.slope.map(|s| format!(", slope {:.1} KiB", s / 1024.0)).unwrap_or_default(),
            at.received,
            show(at.first, 2),
            at.server_first.map(|f| format!(" (first write {f:.2} ms)")).unwrap_or_default(),
            show(at.p50, 1),
            show(at.p99, 1),
            show(at.max, 1),
        );
        run.sizes.push(at);
    }
    readers.shutdown().await;
    if side == Side::Ours {
        let target =
            Target { urls: std::slice::from_ref(&server.url), servers: &pids, store: None };
        if args.handshakes > 0 {
            quiet(&pids).await;
            let load = LoadArgs {
                n: args.handshakes,
                concurrency,
                sessions_per_front: 1,
                trigger: Trigger::None,
                settle_secs: 0,
                fresh_stream_connections: false,
            };
            let report = streams::measure(&load, target).await?;
            ensure!(report.failed == 0, "{} handshakes failed", report.failed);
            run.handshake_us = report
                .handshake_cpu
                .server
                .map(|cpu| cpu.as_secs_f64() * 1e6 / report.opened.max(1) as f64);
        }
        if args.reconnects > 0 {
            quiet(&pids).await;
            let addr = server.url.trim_start_matches("http://").parse()?;
            let storm = storm(addr, args.reconnects).await;
            println!(
                "reconnect storm: {} connections at once, {} took ≥ 1 s (SYN retry), {} failed, \
                 slowest {:.1} ms",
                args.reconnects,
                storm.slow,
                storm.failed,
                storm.max.as_secs_f64() * 1000.0
            );
            run.storm = Some(storm);
        }
    }
    Ok(run)
}

/// Ours: the sum (seconds) and count of `websession_event_first_write_seconds` from the
/// server's `/metrics`; `None` for nchan, or if the scrape fails.
async fn first_write(http: &reqwest::Client, server: &Server) -> Option<(f64, f64)> {
    if server.side != Side::Ours {
        return None;
    }
    let text = http.get(format!("{}/metrics", server.url)).send().await.ok()?.text().await.ok()?;
    let value = |name: &str| {
        text.lines().find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
    };
    // Before the first event the series are absent: nothing yet.
    Some((
        value("websession_event_first_write_seconds_sum ").unwrap_or(0.0),
        value("websession_event_first_write_seconds_count ").unwrap_or(0.0),
    ))
}

/// Opens `count` TCP connections to `addr` at once (all wait for one signal, then connect),
/// each timed from its own start, and holds them until all are done.
async fn storm(addr: SocketAddr, count: usize) -> Storm {
    let (go, ready) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        let mut ready = ready.clone();
        tasks.spawn(async move {
            let _ = ready.wait_for(|go| *go).await;
            let started = Instant::now();
            let connected = tokio::time::timeout(
                streams::REQUEST_TIMEOUT,
                tokio::net::TcpStream::connect(addr),
            )
            .await;
            (started.elapsed(), connected.ok().and_then(Result::ok))
        });
    }
    // Every task waits at the signal before it is given.
    tokio::task::yield_now().await;
    let _ = go.send(true);
    let (mut slow, mut failed, mut max, mut held) = (0, 0, Duration::ZERO, Vec::new());
    while let Some(done) = tasks.join_next().await {
        let Ok((took, stream)) = done else {
            failed += 1;
            continue;
        };
        max = max.max(took);
        slow += usize::from(took >= SYN_RETRY);
        match stream {
            Some(stream) => held.push(stream),
            None => failed += 1,
        }
    }
    Storm { slow, failed, max }
}

/// The mean time of one X25519 shared-key computation with the key derivation the server does
/// per front (`SalsaBox::new` through [`Peer::new`]), over `iterations`.
fn time_x25519(iterations: u32) -> Duration {
    let (front, back) = (KeyPair::generate(), KeyPair::generate());
    let started = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(Peer::new(std::hint::black_box(&front.public), &back.secret));
    }
    started.elapsed() / iterations
}

/// This process, all its threads, held on one CPU with `taskset`; back on the CPUs it had
/// when dropped.
#[derive(Debug)]
struct PinnedSelf {
    before: String,
}

impl PinnedSelf {
    fn to(cpu: usize) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let before = status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .context("no Cpus_allowed_list in /proc/self/status")?
            .trim()
            .to_owned();
        taskset_self(&cpu.to_string())?;
        Ok(Self { before })
    }
}

impl Drop for PinnedSelf {
    fn drop(&mut self) {
        if let Err(e) = taskset_self(&self.before) {
            eprintln!("warning: {e:#}");
        }
    }
}

/// Sets the CPUs of every thread of this process (threads started later inherit them).
fn taskset_self(cpus: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    ensure!(status.success(), "taskset -a -p -c {cpus} failed: {status}");
    Ok(())
}

/// The runs of both sides in one pinning mode.
#[derive(Debug, Default)]
struct Mode {
    ours: Vec<Run>,
    nchan: Vec<Run>,
    /// µs per X25519 computation, one per run.
    x25519_us: Vec<f64>,
}

pub(crate) async fn run(args: PeerArgs) -> anyhow::Result<()> {
    ensure!(!args.sizes.is_empty(), "--sizes needs at least one size");
    ensure!(
        args.sizes.windows(2).all(|w| w[0] < w[1]) && args.sizes[0] > 0,
        "--sizes must be positive and ascending"
    );
    let most = args.sizes.iter().max().copied().unwrap_or(1);
    ensure!(most <= 100_000, "at most 100,000 streams (our server's --max-streams-per-front)");
    let server_program = match &args.server {
        Some(program) => program.clone(),
        None => std::env::current_exe()?.with_file_name("server"),
    };
    ensure!(
        server_program.exists() || args.server.is_some(),
        "no server binary at {} (cargo build --profile native -p server -p loadgen, or --server)",
        server_program.display()
    );
    ensure!(
        args.nchan_module.exists(),
        "no nchan module at {} (cargo xtask install, or --nchan-module)",
        args.nchan_module.display()
    );
    if let Some(limit) = streams::open_files_limit().filter(|limit| *limit < most + 3000) {
        eprintln!("warning: open-files limit {limit} is low for {most} streams (ulimit -n)");
    }
    let mut modes = Vec::new();
    for &pin in &args.pin {
        let pinned = match pin {
            Pin::On => Some(PinnedSelf::to(args.client_cpu)?),
            Pin::Off => None,
        };
        let cpu = pinned.as_ref().map(|_| args.server_cpu);
        let mut mode = Mode::default();
        for run in 0..args.runs {
            let x25519 = time_x25519(args.x25519_iterations);
            println!("X25519 (SalsaBox::new): {:.1} µs", x25519.as_secs_f64() * 1e6);
            mode.x25519_us.push(x25519.as_secs_f64() * 1e6);
            let order =
                if run % 2 == 0 { [Side::Ours, Side::Nchan] } else { [Side::Nchan, Side::Ours] };
            for side in order {
                println!("== pin {pin:?}, run {}/{}: {}", run + 1, args.runs, side.name());
                let mut rig = Rig::new("peer")?;
                let outcome = tokio::select! {
                    outcome = measure_side(&args, side, cpu, &server_program, &mut rig) => outcome,
                    () = server::shutdown_signal() => Err(anyhow!("interrupted")),
                };
                rig.stop().await;
                let outcome = outcome.with_context(|| format!("measuring {}", side.name()))?;
                match side {
                    Side::Ours => mode.ours.push(outcome),
                    Side::Nchan => mode.nchan.push(outcome),
                }
            }
        }
        drop(pinned);
        modes.push((pin, mode));
    }
    println!();
    for (pin, mode) in &modes {
        print_mode(&args, *pin, mode);
    }
    Ok(())
}

/// The median of the known values (the mean of the middle two for an even count).
fn median(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut known: Vec<f64> = values.into_iter().flatten().collect();
    if known.is_empty() {
        return None;
    }
    known.sort_by(f64::total_cmp);
    let mid = known.len() / 2;
    Some(if known.len().is_multiple_of(2) {
        (known[mid - 1] + known[mid]) / 2.0
    } else {
        known[mid]
    })
}

/// A figure with `decimals`, or `-` if unknown.
fn show(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// The medians at size index `i` over `runs`, in the table's column order.
fn medians(runs: &[Run], i: usize) -> [Option<f64>; 8] {
    let at = |f: fn(&AtSize) -> Option<f64>| median(runs.iter().map(|run| f(&run.sizes[i])));
    let kib = |bytes: Option<f64>| bytes.map(|b| b / 1024.0);
    [
        kib(at(|a| a.per_stream)),
        kib(at(|a| a.slope)),
        at(|a| a.first),
        at(|a| a.p50),
        at(|a| a.p99),
        at(|a| a.max),
        at(|a| a.server_cpu),
        at(|a| a.client_cpu),
    ]
}

/// The column of the first receipt in [`medians`].
const FIRST_COLUMN: usize = 2;

/// Whether every run delivered the event of size index `i` to every stream.
fn all_received(runs: &[Run], i: usize, size: usize) -> bool {
    runs.iter().all(|run| run.sizes[i].received == size)
}

fn print_mode(args: &PeerArgs, pin: Pin, mode: &Mode) {
    let how = match pin {
        Pin::Off => "unpinned".to_owned(),
        Pin::On => {
            format!("pinned: server CPU {}, client CPU {}", args.server_cpu, args.client_cpu)
        }
    };
    println!(
        "loadgen peer, {how}: medians of {} runs; ours: one front, N activated sessions; nchan: \
         one channel, N EventSource subscribers (RSS and CPU: nginx master + worker)",
        args.runs
    );
    let line = |n: &str, side: &str, cells: [String; 8], tail: &str| {
        let [rss, slope, first, p50, p99, max, server, client] = cells;
        let text = format!(
            "{n:>6}  {side:<11} {rss:>10} {slope:>11} {first:>8} {p50:>8} {p99:>8} {max:>8} \
             {server:>10} {client:>10}  {tail}"
        );
        println!("{}", text.trim_end());
    };
    let headers = [
        "KiB/stream",
        "slope KiB",
        "first ms",
        "p50 ms",
        "p99 ms",
        "max ms",
        "server ms",
        "client ms",
    ];
    line("N", "", headers.map(str::to_owned), "received (every run)");
    let mut judged = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for (i, &size) in args.sizes.iter().enumerate() {
        let (ours, nchan) = (medians(&mode.ours, i), medians(&mode.nchan, i));
        let complete = all_received(&mode.ours, i, size) && all_received(&mode.nchan, i, size);
        let received = |runs: &[Run]| {
            let got: Vec<String> = runs.iter().map(|r| r.sizes[i].received.to_string()).collect();
            format!("{} of {size}", got.join(", "))
        };
        let n = size.to_string();
        // The first receipt is under a millisecond on a good run: two decimals.
        let cells = |v: [Option<f64>; 8]| {
            std::array::from_fn(|c| show(v[c], if c == FIRST_COLUMN { 2 } else { 1 }))
        };
        line(&n, "ours", cells(ours), &received(&mode.ours));
        line(&n, "nchan", cells(nchan), &received(&mode.nchan));
        let ratios: [Option<f64>; 8] = std::array::from_fn(|c| ratio(ours[c], nchan[c]));
        line(
            &n,
            "ours/nchan",
            ratios.map(|v| v.map_or("-".to_owned(), |v| format!("{v:.2}×"))),
            "",
        );
        for (k, column) in [0, 1, 4, 6].into_iter().enumerate() {
            let met = verdict(complete, ratios[column], |v| v <= PEER_TARGET);
            judged[k].push(format!("{size} {met}"));
        }
    }
    let firsts: Vec<String> = args
        .sizes
        .iter()
        .enumerate()
        .map(|(i, size)| {
            let first = median(mode.ours.iter().map(|run| run.sizes[i].server_first));
            format!("N={size} {} ms", show(first, 2))
        })
        .collect();
    println!(
        "ours: first write by the server's clock (publish start → the first stream writes it, \
         websession_event_first_write_seconds): {}",
        firsts.join("; ")
    );
    let names = ["RSS per stream", "RSS slope", "fan-out p99", "server CPU for the fan-out"];
    for (name, verdicts) in names.iter().zip(&judged) {
        println!("target {name} ≤ {PEER_TARGET:.1}× nchan's: {}", verdicts.join("; "));
    }
    let handshake = median(mode.ours.iter().map(|run| run.handshake_us));
    let x25519 = median(mode.x25519_us.iter().copied().map(Some));
    if args.handshakes > 0 {
        println!(
            "ours: server CPU per full handshake (register + open + activate, {} handshakes) {} \
             µs; one X25519 (SalsaBox::new) {} µs; target ≤ {HANDSHAKE_TARGET:.1}×: {}",
            args.handshakes,
            show(handshake, 1),
            show(x25519, 1),
            verdict(true, ratio(handshake, x25519), |v| v <= HANDSHAKE_TARGET),
        );
    }
    if args.reconnects > 0 {
        let storms: Vec<String> = mode
            .ours
            .iter()
            .filter_map(|run| run.storm)
            .map(|s| {
                let failed =
                    if s.failed > 0 { format!(", {} failed", s.failed) } else { String::new() };
                format!("{} slow{failed}, max {:.1} ms", s.slow, s.max.as_secs_f64() * 1000.0)
            })
            .collect();
        let retried = mode.ours.iter().filter_map(|run| run.storm).any(|s| s.slow + s.failed > 0);
        println!(
            "ours: {} connections at once (listen backlog 1024), took ≥ 1 s (SYN retry) per run: \
             {}; target none: {}",
            args.reconnects,
            storms.join("; "),
            if retried { "MISSED" } else { "met" }
        );
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nchan_configuration_has_every_placeholder_filled_in() {
        let places = NchanPlaces {
            module: Path::new("/usr/lib/nginx/modules/ngx_nchan_module.so"),
            dir: Path::new("/tmp/loadgen-peer-test"),
            port: 42424,
            connections: 12_345,
        };
        let conf = nchan_conf(&places).unwrap_or_else(|e| panic!("{e:#}"));
        let directives = conf.lines().filter(|line| !line.trim_start().starts_with('#'));
        assert!(directives.clone().all(|line| !line.contains('@')), "{conf}");
        assert!(conf.contains("load_module /usr/lib/nginx/modules/ngx_nchan_module.so;"));
        assert!(conf.contains("listen 127.0.0.1:42424 backlog=1024;"));
        assert!(conf.contains("worker_connections 12345;"));
        assert!(conf.contains("worker_rlimit_nofile 12445;"));
        assert!(conf.contains("pid /tmp/loadgen-peer-test/nginx.pid;"));
        assert!(conf.contains("worker_processes 1;"));
    }

    #[test]
    fn medians_take_the_middle_and_skip_unknowns() {
        assert_eq!(median([Some(3.0), None, Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(median([Some(4.0), Some(1.0)]), Some(2.5));
        assert_eq!(median([None]), None);
    }

    /// nginx + nchan from the repository's configuration, three subscribers read by the one
    /// receiving loop of `loadgen peer`: each subscriber gets every published event once, in
    /// order, with the sequence number it was published with.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nchan_events_reach_every_subscriber_through_the_shared_reader() {
        let mut rig = Rig::new("peer-test").unwrap_or_else(|e| panic!("{e:#}"));
        let setup = NchanSetup {
            nginx: Path::new("nginx"),
            module: Path::new("/usr/lib/nginx/modules/ngx_nchan_module.so"),
            port: 0,
            connections: 64,
            cpu: None,
            startup: Duration::from_secs(30),
        };
        let server = start_nchan(&mut rig, &setup)
            .await
            .unwrap_or_else(|e| panic!("nginx + nchan must start (cargo xtask install): {e:#}"));
        assert_eq!(server.pids().len(), 2, "nginx's master and its one worker");
        let http = reqwest::Client::new();
        let readers = server.subscribe(&http, 3, 3).await.unwrap_or_else(|e| panic!("{e:#}"));
        server.subscribed(&http, 3).await.unwrap_or_else(|e| panic!("{e:#}"));
        let mut tasks = JoinSet::new();
        let mut inboxes = Vec::new();
        for reader in readers {
            let (receipts, inbox) = mpsc::unbounded_channel();
            tasks.spawn(receive(reader, receipts));
            inboxes.push(inbox);
        }
        for seq in 1..=5 {
            server.publish(&http, seq).await.unwrap_or_else(|e| panic!("{e:#}"));
        }
        for inbox in &mut inboxes {
            let mut seen = Vec::new();
            while seen.len() < 5 {
                // Only so that a lost event fails the test instead of hanging it.
                let next = tokio::time::timeout(Duration::from_secs(60), inbox.recv()).await;
                let (seq, _) = next
                    .unwrap_or_else(|_| panic!("events missing; got {seen:?}"))
                    .unwrap_or_else(|| panic!("the stream ended; got {seen:?}"));
                seen.push(seq);
            }
            assert_eq!(seen, [1, 2, 3, 4, 5]);
        }
        tasks.shutdown().await;
        rig.stop().await;
    }
}
