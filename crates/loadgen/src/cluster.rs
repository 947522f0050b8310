//! `loadgen cluster`: one instance on the embedded store beside a cluster of instances on one
//! Redis, measured by the same client ([`crate::streams::measure`]), printed as one table.
//!
//! It starts what it measures as child processes, all on 127.0.0.1: first one `loadgen serve`
//! on the embedded store (a data directory of its own), measured and stopped; then a
//! `redis-server` without persistence on a free port and `--instances` (default 2) `loadgen
//! serve --redis-url` on it. Against the cluster, stream i's handshake goes to instance
//! i mod count and the fan-out trigger (`loadgen.announce`) to the first instance, so every
//! event reaches the other instances' streams through Redis. Memory per stream sums the
//! instances' growth; the Redis process's growth is its own column. The children are killed
//! when the command ends, whether it succeeded, failed or was interrupted.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;

use crate::rig::{Rig, free_port};
use crate::serve::READY;
use crate::streams::{self, LoadArgs, Report, Target};

/// Targets of issue 11 on the 2-core machine: cluster fan-out p99 at most this × single's.
const P99_TARGET: f64 = 1.3;
/// … and cluster handshakes per second at least this × single's.
const HANDSHAKES_TARGET: f64 = 0.7;

/// Flags of `loadgen cluster`.
#[derive(Debug, clap::Args)]
pub(crate) struct ClusterArgs {
    /// Instances of the cluster, all on one Redis.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=16))]
    instances: u8,
    /// The Redis server to start (on a free loopback port, without persistence).
    #[arg(long, default_value = "redis-server", value_name = "PROGRAM")]
    redis_server: PathBuf,
    /// Seconds each child process may take to be ready.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    startup_secs: u64,
    #[command(flatten)]
    load: LoadArgs,
}

pub(crate) async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    // Fail before the first measurement, not after it, when Redis is missing.
    let version = Command::new(&args.redis_server).arg("--version").output().await;
    anyhow::ensure!(
        version.as_ref().is_ok_and(|out| out.status.success()),
        "cannot run {} --version (install redis-server or give --redis-server)",
        args.redis_server.display()
    );
    let mut rig = Rig::new("cluster")?;
    let outcome = tokio::select! {
        outcome = compare(&args, &mut rig) => outcome,
        () = server::shutdown_signal() => Err(anyhow!("interrupted")),
    };
    rig.stop().await;
    let (single, cluster) = outcome?;
    print_table(&args, &single, &cluster);
    Ok(())
}

/// Measures the single instance, stops it, then measures the cluster.
async fn compare(args: &ClusterArgs, rig: &mut Rig) -> anyhow::Result<(Report, Report)> {
    let startup = Duration::from_secs(args.startup_secs);
    println!("== single instance, embedded store");
    let (url, pid) = start_serve(rig, "single", None, startup).await?;
    let target = Target { urls: &[url], servers: &[pid], store: None };
    let single = streams::measure(&args.load, target).await?;
    // Alone on the machine while the cluster is measured.
    rig.stop().await;

    println!("== cluster: {} instances on one redis-server", args.instances);
    let (redis_url, redis_pid) = start_redis(rig, &args.redis_server, startup).await?;
    let (mut urls, mut pids) = (Vec::new(), Vec::new());
    for i in 0..args.instances {
        let (url, pid) =
            start_serve(rig, &format!("instance-{i}"), Some(&redis_url), startup).await?;
        urls.push(url);
        pids.push(pid);
    }
    let target = Target { urls: &urls, servers: &pids, store: Some(redis_pid) };
    let cluster = streams::measure(&args.load, target).await?;
    Ok((single, cluster))
}

/// Starts `loadgen serve` (this binary) on a free port with the data directory `name`, on
/// Redis if `redis` is given; returns its base URL and process id once it listens.
async fn start_serve(
    rig: &mut Rig,
    name: &str,
    redis: Option<&str>,
    startup: Duration,
) -> anyhow::Result<(String, u32)> {
    let exe = std::env::current_exe().context("locating the loadgen binary")?;
    let mut command = Command::new(exe);
    command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(rig.dir().join(name));
    if let Some(url) = redis {
        command.args(["--redis-url", url]);
    }
    let what = format!("loadgen serve {name}");
    let pid = rig.spawn(&what, command, true)?;
    let line = rig.wait_for_line(&what, startup, |line| Some(line.to_owned())).await?;
    let url = served_url(&line)
        .with_context(|| format!("unexpected first line from {what}: {line}"))?
        .to_owned();
    println!("started {what}: {url} pid {pid}");
    Ok((url, pid))
}

/// Starts `program` as a Redis without persistence on a free loopback port; returns its URL
/// and process id once it answers `PING`.
async fn start_redis(
    rig: &mut Rig,
    program: &Path,
    startup: Duration,
) -> anyhow::Result<(String, u32)> {
    let port = free_port()?.to_string();
    let dir = rig.dir().join("redis");
    std::fs::create_dir_all(&dir)?;
    let mut command = Command::new(program);
    command
        .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stderr(Stdio::null());
    let what = program.display().to_string();
    let pid = rig.spawn(&format!("{what} (install redis-server)"), command, false)?;
    let addr = format!("127.0.0.1:{port}");
    rig.wait_until(&what, startup, || ping(&addr)).await?;
    println!("started {what}: {addr} pid {pid}");
    Ok((format!("redis://{addr}/0"), pid))
}

/// The base URL in `loadgen serve`'s first line ([`crate::serve::ready_line`]).
fn served_url(line: &str) -> Option<&str> {
    line.strip_prefix(READY)?.split_whitespace().next().filter(|url| url.starts_with("http://"))
}

/// Whether a Redis at `addr` answers an inline `PING` within a second.
async fn ping(addr: &str) -> bool {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await?;
        std::io::Result::Ok(&reply == b"+PONG\r\n")
    };
    matches!(tokio::time::timeout(Duration::from_secs(1), exchange).await, Ok(Ok(true)))
}

/// `cluster / single`, if both are known and single is not zero.
pub(crate) fn ratio(cluster: Option<f64>, single: Option<f64>) -> Option<f64> {
    match (cluster, single) {
        (Some(c), Some(s)) if s != 0.0 => Some(c / s),
        _ => None,
    }
}

/// The figures of one row, in the table's column order (`None`: not measured).
fn figures(report: &Report) -> [Option<f64>; 6] {
    let kib = |bytes: Option<f64>| bytes.map(|b| b / 1024.0);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let fan_out = report.fan_out.as_ref();
    [
        Some(report.handshakes_per_sec),
        kib(report.server_rss_per_stream),
        kib(report.store_rss_per_stream),
        fan_out.map(|f| ms(f.p50)),
        fan_out.map(|f| ms(f.p99)),
        fan_out.map(|f| ms(f.max)),
    ]
}

/// `opened/n` streams and `received/expected` fan-out receipts.
fn completeness(report: &Report) -> String {
    let total = report.opened + report.failed;
    match &report.fan_out {
        Some(f) => format!("{}/{total}, {}/{}", report.opened, f.received, f.expected),
        None => format!("{}/{total}, -", report.opened),
    }
}

/// Whether every handshake succeeded and every stream received the event.
fn complete(report: &Report) -> bool {
    report.failed == 0 && report.fan_out.as_ref().is_none_or(|f| f.received == f.expected)
}

fn print_table(args: &ClusterArgs, single: &Report, cluster: &Report) {
    let load = &args.load;
    println!();
    println!(
        "loadgen cluster: {} streams, {} per front, concurrency {}, trigger {:?}",
        load.n, load.sessions_per_front, load.concurrency, load.trigger
    );
    let line = |name: &str, [h, rss, redis, p50, p99, max]: [String; 6], tail: &str| {
        let text =
            format!("{name:<26} {h:>12} {rss:>13} {redis:>13} {p50:>9} {p99:>9} {max:>9}  {tail}");
        println!("{}", text.trim_end());
    };
    let headers = ["handshakes/s", "server KiB/st", "redis KiB/st", "p50 ms", "p99 ms", "max ms"];
    line("", headers.map(str::to_owned), "opened, received");
    let row = |name: &str, values: [Option<f64>; 6], show: fn(f64) -> String, tail: &str| {
        let cells = values.map(|v| v.map_or_else(|| "-".to_owned(), show));
        line(name, cells, tail);
    };
    let (s, c) = (figures(single), figures(cluster));
    let figure: fn(f64) -> String = |v| format!("{v:.1}");
    row("single, embedded store", s, figure, &completeness(single));
    let name = format!("cluster, {} on one Redis", args.instances);
    row(&name, c, figure, &completeness(cluster));
    let ratios: [Option<f64>; 6] = std::array::from_fn(|i| ratio(c[i], s[i]));
    row("cluster / single", ratios, |v| format!("{v:.2}×"), "");

    let judged = complete(single) && complete(cluster);
    println!(
        "targets: cluster fan-out p99 ≤ {P99_TARGET}× single: {}; cluster handshakes/s ≥ \
         {HANDSHAKES_TARGET}× single: {}",
        verdict(judged, ratios[4], |v| v <= P99_TARGET),
        verdict(judged, ratios[0], |v| v >= HANDSHAKES_TARGET),
    );
}

/// Whether the ratio `value` meets a target, said for the table. Figures of a run where
/// handshakes failed or streams missed the event compare unlike loads, so they are not judged.
pub(crate) fn verdict(judged: bool, value: Option<f64>, met: fn(f64) -> bool) -> String {
    match value {
        _ if !judged => "not judged: a run is incomplete".to_owned(),
        Some(v) if met(v) => format!("{v:.2}× met"),
        Some(v) => format!("{v:.2}× MISSED"),
        None => "not measured".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::ready_line;
    use crate::streams::FanOut;

    #[test]
    fn the_cluster_reads_the_url_that_serve_prints() {
        let line = ready_line("127.0.0.1:41667".parse().unwrap_or_else(|e| panic!("{e}")), 7);
        assert_eq!(served_url(&line), Some("http://127.0.0.1:41667"));
        assert_eq!(served_url("server: listening on http://127.0.0.1:1"), None);
        assert_eq!(served_url(READY), None);
    }

    fn report(failed: usize, received: usize) -> Report {
        let ms = Duration::from_millis;
        Report {
            opened: 10 - failed,
            failed,
            handshakes_per_sec: 100.0,
            handshake_cpu: Default::default(),
            server_rss_per_stream: None,
            store_rss_per_stream: None,
            fan_out: Some(FanOut {
                received,
                expected: 10 - failed,
                p50: ms(1),
                p99: ms(2),
                max: ms(3),
            }),
        }
    }

    #[test]
    fn a_run_with_failed_handshakes_or_missed_events_is_not_judged() {
        assert!(complete(&report(0, 10)));
        assert!(!complete(&report(1, 9)), "a failed handshake");
        assert!(!complete(&report(0, 9)), "a stream that missed the event");
        assert_eq!(
            verdict(false, Some(1.0), |v| v <= P99_TARGET),
            "not judged: a run is incomplete"
        );
    }

    #[test]
    fn targets_are_met_at_their_bounds_and_missed_beyond() {
        let p99 = |v| v <= P99_TARGET;
        let handshakes = |v| v >= HANDSHAKES_TARGET;
        assert_eq!(verdict(true, Some(1.3), p99), "1.30× met");
        assert_eq!(verdict(true, Some(1.31), p99), "1.31× MISSED");
        assert_eq!(verdict(true, Some(0.7), handshakes), "0.70× met");
        assert_eq!(verdict(true, Some(0.69), handshakes), "0.69× MISSED");
        assert_eq!(verdict(true, None, p99), "not measured");
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
    }
}
