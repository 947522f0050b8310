//! Refresh throughput and latency by the number of live sessions, on the embedded store and on
//! Redis, next to seed 002's `KEYS RT:*` lookup on the same Redis (kept here only, as the
//! baseline). Not a timed test: it prints a table.
//!
//! ```text
//! cargo bench -p server --bench refresh
//! cargo bench -p server --bench refresh -- --sizes 1000,100000 --requests 5000
//! ```
//!
//! Each row: N sessions are written straight through the store trait (`create_many`), then
//! `POST /api/auth/refresh` requests go through the token router in-process (tower `oneshot`,
//! no TCP), [`CONCURRENCY`] at a time, each with the current cookie of a session picked at
//! random, so the whole handler runs: origin check, cookie, store rotation, access JWT signing,
//! JSON. The baseline does what seed 002 did per refresh: `KEYS RT:*`, read the records until
//! the one holding the token is found, sign an access token.
//!
//! Needs `redis-server` on PATH for the Redis rows (started on a free port, without
//! persistence, and stopped at the end).

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use protocol::Timestamp;
use server::Config;
use server::db::Db;
use server::redis_link::RedisTarget;
use server::tokens::store::{RefreshKey, SessionData, SessionTag, TokenHash};
use server::tokens::{SessionStoreConfig, Tokens, TokensConfig};
use tokio::task::JoinSet;
use tower::ServiceExt as _;

/// Requests in flight at once.
const CONCURRENCY: usize = 32;
/// Sessions written per transaction or pipeline while populating.
const POPULATE_CHUNK: usize = 50_000;
/// How long the baseline may run per row (it is O(N) per request).
const BASELINE_BUDGET: Duration = Duration::from_secs(20);

struct Options {
    sizes: Vec<usize>,
    requests: usize,
}

fn options() -> Options {
    let mut options = Options { sizes: vec![1_000, 100_000, 1_000_000], requests: 20_000 };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sizes" => {
                options.sizes =
                    args.next().unwrap().split(',').map(|s| s.trim().parse().unwrap()).collect();
            }
            "--requests" => options.requests = args.next().unwrap().parse().unwrap(),
            // `cargo bench` passes `--bench`; anything else is ignored too.
            _ => {}
        }
    }
    options
}

#[derive(Debug)]
struct Row {
    store: &'static str,
    sessions: usize,
    /// Requests of the throughput phase ([`CONCURRENCY`] in flight).
    requests: usize,
    per_second: f64,
    /// p50 and p99 with one request in flight: the latency of a refresh itself.
    alone: (Duration, Duration),
    /// p50 and p99 with [`CONCURRENCY`] in flight: including the wait for the store.
    loaded: (Duration, Duration),
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if std::env::args().any(|a| a == "--parts") {
        runtime.block_on(parts());
        return;
    }
    let rows = runtime.block_on(run(&options));
    println!();
    println!(
        "| store | live sessions | requests | refreshes/s ({CONCURRENCY} in flight) | p50 / p99, 1 in flight | \
         p50 / p99, {CONCURRENCY} in flight |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {} / {} | {} / {} |",
            row.store,
            row.sessions,
            row.requests,
            row.per_second,
            show(row.alone.0),
            show(row.alone.1),
            show(row.loaded.0),
            show(row.loaded.1),
        );
    }
}

async fn run(options: &Options) -> Vec<Row> {
    let redis = RedisServer::start();
    if redis.is_none() {
        eprintln!("redis-server not found: only the embedded rows are measured");
    }
    let mut rows = Vec::new();
    for &n in &options.sizes {
        let requests = options.requests;
        rows.push(embedded_row(n, requests).await);
        eprintln!("{:?}", rows.last().unwrap());
        if let Some(redis) = &redis {
            flush(&redis.url).await;
            rows.push(redis_row(&redis.url, n, requests).await);
            eprintln!("{:?}", rows.last().unwrap());
            flush(&redis.url).await;
            rows.push(keys_baseline_row(&redis.url, n, requests).await);
            eprintln!("{:?}", rows.last().unwrap());
            flush(&redis.url).await;
        }
    }
    rows
}

/// A token service on `session_store`, its data in a fresh temporary directory.
async fn tokens(session_store: SessionStoreConfig) -> (Tokens, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.tokens = TokensConfig { session_store, ..TokensConfig::default() };
    let db = Db::open(&config.db_path()).unwrap();
    (Tokens::open(&config, db).await.unwrap(), dir)
}

/// The refresh token of session `i` (the stores only see its hash, so any text will do).
/// Session `i`'s first refresh token: its session's tag, as the service makes them.
fn token_of(i: usize) -> String {
    let tag = SessionTag::of(&format!("sponsor-{i}"), &format!("sub-{i}"));
    format!("{}.bench-refresh-token-{i:010}", tag.to_hex())
}

fn session_of(i: usize, valid_until: Timestamp) -> SessionData {
    SessionData {
        user_id: format!("user-{i}"),
        sponsor_id: format!("sponsor-{i}"),
        subscriber_id: format!("sub-{i}"),
        permissions: vec!["CanAccessDashboard".to_owned(), "CanViewReports".to_owned()],
        valid_until,
    }
}

async fn populate(tokens: &Tokens, n: usize) {
    let started = Instant::now();
    let now = Timestamp::now();
    let valid_until = now.plus_millis(4 * 3600 * 1000);
    for start in (0..n).step_by(POPULATE_CHUNK) {
        let chunk: Vec<(SessionData, TokenHash)> = (start..(start + POPULATE_CHUNK).min(n))
            .map(|i| (session_of(i, valid_until), TokenHash::of(&token_of(i))))
            .collect();
        tokens.sessions().create_many(&chunk, now).await.unwrap();
    }
    eprintln!("populated {n} sessions in {:.1?}", started.elapsed());
}

async fn embedded_row(n: usize, requests: usize) -> Row {
    let (tokens, _dir) = tokens(SessionStoreConfig::Embedded).await;
    populate(&tokens, n).await;
    measure("embedded (SQLite)", &tokens, n, requests).await
}

async fn redis_row(url: &str, n: usize, requests: usize) -> Row {
    let target = RedisTarget::Single(url.to_owned());
    let (tokens, _dir) = tokens(SessionStoreConfig::Redis { target }).await;
    populate(&tokens, n).await;
    measure("Redis (one key per session)", &tokens, n, requests).await
}

/// Refreshes through the router: a warm-up, a throughput phase with [`CONCURRENCY`] requests
/// in flight and a latency phase with one, each worker on its own random sessions, always with
/// the session's current token.
async fn measure(store: &'static str, tokens: &Tokens, n: usize, requests: usize) -> Row {
    let router = server::tokens::router(tokens.clone());
    let fresh = |indexes: Vec<usize>| -> Vec<(usize, String)> {
        indexes.into_iter().map(|i| (i, token_of(i))).collect()
    };
    let measured = pick(n, requests.min(n));
    // Warm-up, on other sessions where there are enough, so the measured ones are cold.
    let warmup = requests / 10;
    let others = pick_other(n, warmup, &measured);
    let state = if others.len() >= CONCURRENCY {
        run_refreshes(&router, fresh(others), warmup, CONCURRENCY).await;
        fresh(measured)
    } else {
        run_refreshes(&router, fresh(measured), warmup, CONCURRENCY).await.1
    };
    let started = Instant::now();
    let (mut loaded, state) = run_refreshes(&router, state, requests, CONCURRENCY).await;
    let elapsed = started.elapsed();
    let (mut alone, _) = run_refreshes(&router, state, (requests / 4).min(5_000), 1).await;
    loaded.sort();
    alone.sort();
    Row {
        store,
        sessions: n,
        requests,
        per_second: requests as f64 / elapsed.as_secs_f64(),
        alone: (percentile(&alone, 0.50), percentile(&alone, 0.99)),
        loaded: (percentile(&loaded, 0.50), percentile(&loaded, 0.99)),
    }
}

/// `requests` refreshes, `concurrency` at a time, spread over the sessions of `state` (index,
/// current token); returns the latencies and the sessions' new tokens.
async fn run_refreshes(
    router: &Router,
    state: Vec<(usize, String)>,
    requests: usize,
    concurrency: usize,
) -> (Vec<Duration>, Vec<(usize, String)>) {
    if state.is_empty() || requests == 0 {
        return (Vec::new(), state);
    }
    let mut shares: Vec<Vec<(usize, String)>> = (0..concurrency).map(|_| Vec::new()).collect();
    for (k, session) in state.into_iter().enumerate() {
        shares[k % concurrency].push(session);
    }
    let mut workers = JoinSet::new();
    for (w, mut mine) in shares.into_iter().enumerate() {
        let count = requests / concurrency + usize::from(w < requests % concurrency);
        let router = router.clone();
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(count);
            if mine.is_empty() {
                return (latencies, mine);
            }
            for k in 0..count {
                let slot = k % mine.len();
                let request = Request::post("/api/auth/refresh")
                    .header(header::COOKIE, format!("refreshToken={}", mine[slot].1))
                    .body(Body::empty())
                    .unwrap();
                let started = Instant::now();
                let response = router.clone().oneshot(request).await.unwrap();
                let status = response.status();
                let cookie = response.headers().get(header::SET_COOKIE).cloned();
                let _ = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap();
                latencies.push(started.elapsed());
                assert_eq!(status, StatusCode::OK);
                let cookie = cookie.unwrap();
                let value = cookie.to_str().unwrap();
                mine[slot].1 = value["refreshToken=".len()..value.find(';').unwrap()].to_owned();
            }
            (latencies, mine)
        });
    }
    let mut all = Vec::with_capacity(requests);
    let mut state = Vec::new();
    for (latencies, mine) in workers.join_all().await {
        all.extend(latencies);
        state.extend(mine);
    }
    (all, state)
}

/// `k` distinct session indexes out of `n`, spread at random.
fn pick(n: usize, k: usize) -> Vec<usize> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut chosen = std::collections::HashSet::with_capacity(k);
    while chosen.len() < k {
        // xorshift: reproducible, and good enough to scatter lookups over the index.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chosen.insert((state % n as u64) as usize);
    }
    chosen.into_iter().collect()
}

/// Up to `k` indexes not in `taken`.
fn pick_other(n: usize, k: usize, taken: &[usize]) -> Vec<usize> {
    let taken: std::collections::HashSet<_> = taken.iter().copied().collect();
    (0..n).filter(|i| !taken.contains(i)).take(k).collect()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

fn show(d: Duration) -> String {
    if d >= Duration::from_millis(10) {
        format!("{:.0} ms", d.as_secs_f64() * 1e3)
    } else if d >= Duration::from_millis(1) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    }
}

// ---------------------------------------------------------------------------------------------
// The baseline: seed 002's refresh, `KEYS RT:*` then read records until the token matches.

/// Writes `n` records as seed 002 kept them: the refresh token itself inside the JSON.
async fn populate_seed_records(conn: &mut redis::aio::MultiplexedConnection, n: usize) {
    let started = Instant::now();
    let valid_until = Timestamp::now().plus_millis(4 * 3600 * 1000);
    for start in (0..n).step_by(POPULATE_CHUNK) {
        let mut pipe = redis::pipe();
        for i in start..(start + POPULATE_CHUNK).min(n) {
            let record = serde_json::json!({
                "userId": format!("user-{i}"),
                "sponsorId": format!("sponsor-{i}"),
                "subscriberId": format!("sub-{i}"),
                "refreshToken": token_of(i),
                "permissions": ["CanAccessDashboard", "CanViewReports"],
                "maxValidUntil": valid_until.to_string(),
            });
            pipe.cmd("SET")
                .arg(format!("RT:sponsor-{i}:sub-{i}"))
                .arg(record.to_string())
                .arg("EX")
                .arg(4 * 3600)
                .ignore();
        }
        pipe.query_async::<()>(conn).await.unwrap();
    }
    eprintln!("populated {n} seed records in {:.1?}", started.elapsed());
}

/// One seed-style refresh: the record holding `token`, found by scanning every `RT:*` key.
async fn seed_lookup(conn: &mut redis::aio::MultiplexedConnection, token: &str) -> Option<String> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("RT:*").query_async(conn).await.unwrap();
    for chunk in keys.chunks(1_000) {
        let values: Vec<Option<String>> =
            redis::cmd("MGET").arg(chunk).query_async(conn).await.unwrap();
        for value in values.into_iter().flatten() {
            let record: serde_json::Value = serde_json::from_str(&value).unwrap();
            if record["refreshToken"] == token {
                return Some(value);
            }
        }
    }
    None
}

async fn keys_baseline_row(url: &str, n: usize, requests: usize) -> Row {
    let client = redis::Client::open(url).unwrap();
    // No response timeout: over a million keys, one `KEYS` takes longer than the default 500 ms.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut conn = client.get_multiplexed_async_connection_with_config(&config).await.unwrap();
    populate_seed_records(&mut conn, n).await;
    // The same signing work as the real refresh, so only the lookup differs.
    let (tokens, _dir) = tokens(SessionStoreConfig::Embedded).await;
    let sessions = pick(n, requests.min(n));
    let signer = tokens;
    let started = Instant::now();
    let mut latencies = Vec::new();
    // Sequential: concurrency would only queue requests behind the single-threaded KEYS.
    for (k, &i) in sessions.iter().cycle().enumerate() {
        if k >= requests || (started.elapsed() > BASELINE_BUDGET && latencies.len() >= 3) {
            break;
        }
        let one = Instant::now();
        let record = seed_lookup(&mut conn, &token_of(i)).await.unwrap();
        let record: serde_json::Value = serde_json::from_str(&record).unwrap();
        let session = SessionData {
            user_id: record["userId"].as_str().unwrap().to_owned(),
            sponsor_id: record["sponsorId"].as_str().unwrap().to_owned(),
            subscriber_id: record["subscriberId"].as_str().unwrap().to_owned(),
            permissions: vec![],
            valid_until: Timestamp::now().plus_millis(3_600_000),
        };
        std::hint::black_box(signer.access_tokens().issue(&session).unwrap());
        latencies.push(one.elapsed());
    }
    let elapsed = started.elapsed();
    let done = latencies.len();
    latencies.sort();
    let quantiles = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
    Row {
        store: "Redis, seed `KEYS RT:*` (baseline, 1 in flight)",
        sessions: n,
        requests: done,
        per_second: done as f64 / elapsed.as_secs_f64(),
        alone: quantiles,
        loaded: quantiles,
    }
}

async fn flush(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // ASYNC: a million keys take longer to free than the client waits for an answer.
    redis::cmd("FLUSHALL").arg("ASYNC").query_async::<()>(&mut conn).await.unwrap();
}

/// A `redis-server` on a free port, without persistence; killed on drop.
struct RedisServer {
    child: Child,
    url: String,
}

impl RedisServer {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let url = format!("redis://127.0.0.1:{port}");
        let server = Self { child, url };
        for _ in 0..250 {
            if redis::Client::open(server.url.as_str()).and_then(|c| c.get_connection()).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn store_only(label: &str, db: Db, n: usize) {
    use server::tokens::store::{SessionStore as _, SqliteStore};
    let store = SqliteStore::open(db).unwrap();
    let now = Timestamp::now();
    let valid_until = now.plus_millis(4 * 3600 * 1000);
    for start in (0..n).step_by(POPULATE_CHUNK) {
        let chunk: Vec<(SessionData, TokenHash)> = (start..(start + POPULATE_CHUNK).min(n))
            .map(|i| (session_of(i, valid_until), TokenHash::of(&token_of(i))))
            .collect();
        store.create_many(&chunk, now).await.unwrap();
    }
    let count = 20_000;
    let ids = pick(n, count);
    let started = Instant::now();
    for (k, i) in ids.iter().enumerate() {
        let next = format!("next-{k}");
        let r = store
            .refresh(
                RefreshKey::of(&token_of(*i)),
                TokenHash::of(&next),
                now,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert!(matches!(r, server::tokens::store::Refresh::Rotated(_)));
    }
    let e = started.elapsed();
    eprintln!("{label}: store.refresh {:.1} µs each", e.as_secs_f64() * 1e6 / count as f64);
}

async fn parts() {
    let n = 100_000;
    {
        let dir = tempfile::tempdir().unwrap();
        store_only("file", Db::open(&dir.path().join("a.sqlite3")).unwrap(), n).await;
        store_only("memory", Db::in_memory().unwrap(), n).await;
        let db = Db::open(&dir.path().join("b.sqlite3")).unwrap();
        db.with(|c| c.pragma_update(None, "wal_autocheckpoint", 0)).unwrap();
        store_only("file, no checkpoints", db, n).await;
        let t = Instant::now();
        for i in 0..20_000 {
            std::hint::black_box(TokenHash::of(&token_of(i)));
        }
        eprintln!("sha256: {:.2} µs", t.elapsed().as_secs_f64() * 1e6 / 20_000.0);
    }
    let (tokens, _dir) = tokens(SessionStoreConfig::Embedded).await;
    populate(&tokens, n).await;
    let now = Timestamp::now();
    // store only
    let started = Instant::now();
    let count = 20_000;
    for i in 0..count {
        let next = format!("next-{i}");
        let r = tokens
            .sessions()
            .refresh(
                RefreshKey::of(&token_of(i)),
                TokenHash::of(&next),
                now,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert!(matches!(r, server::tokens::store::Refresh::Rotated(_)));
    }
    let e = started.elapsed();
    eprintln!("store.refresh: {:.1} µs each", e.as_secs_f64() * 1e6 / count as f64);
    let session = session_of(1, now.plus_millis(3_600_000));
    let started = Instant::now();
    for _ in 0..count {
        std::hint::black_box(tokens.access_tokens().issue(&session).unwrap());
    }
    let e = started.elapsed();
    eprintln!("access issue: {:.1} µs each", e.as_secs_f64() * 1e6 / count as f64);
    let router = server::tokens::router(tokens.clone());
    let state: Vec<(usize, String)> = (20_000..40_000).map(|i| (i, token_of(i))).collect();
    let started = Instant::now();
    let mut current = state;
    for k in 0..count {
        let slot = k % current.len();
        let request = Request::post("/api/auth/refresh")
            .header(header::COOKIE, format!("refreshToken={}", current[slot].1))
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let cookie = response.headers().get(header::SET_COOKIE).cloned().unwrap();
        let value = cookie.to_str().unwrap();
        current[slot].1 = value["refreshToken=".len()..value.find(';').unwrap()].to_owned();
    }
    let e = started.elapsed();
    eprintln!("router sequential: {:.1} µs each", e.as_secs_f64() * 1e6 / count as f64);
}
