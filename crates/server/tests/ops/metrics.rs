//! `/metrics`: Prometheus text with the counters of what happened, scraped after a handshake,
//! a publish through the server API and a refresh; and the binary's `--metrics-listen`.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use protocol::api::API_KEY_HEADER;
use protocol::{SessionUuid, paths};
use reqwest::StatusCode;
use serde_json::json;
use server::api::ApiKey;
use server::metrics::PrometheusHandle;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::events::{next, registered};
use crate::tokens::harness::{Auth, Backend};
use crate::util::{TestServer, within};

/// The one Prometheus recorder of this test process (a process has at most one).
fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| server::metrics::install_prometheus().unwrap()).clone()
}

/// Every sample of a Prometheus text page, by series (`name{labels}`).
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

async fn scrape(url: &str) -> HashMap<String, f64> {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    parse(&response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_handshake_a_publish_and_a_refresh() {
    let handle = recorder();
    let auth = Auth::start_with(Backend::embedded(), |config| {
        config.metrics = Some(handle);
        config.api_key = ApiKey::new("k");
    })
    .await;
    let server = &auth.server;
    let metrics_url = server.url(paths::METRICS);
    // Other tests of this process count too: compare before and after, at least.
    let before = scrape(&metrics_url).await;
    let grew = |after: &HashMap<String, f64>, series: &str| {
        after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
    };

    let front = registered(server).await;
    let session = SessionUuid::new_v4();
    let mut stream = front.open(session, None).await.unwrap().activate().await.unwrap();
    let unknown = loadgen::Front::generate(&server.client());
    assert!(unknown.open(SessionUuid::new_v4(), None).await.is_err());
    let published = reqwest::Client::new()
        .post(server.url(paths::API_PUBLISH))
        .header(API_KEY_HEADER, "k")
        .json(&json!({"frontUuid": front.uuid(), "sessionUuid": session, "name": "m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), StatusCode::OK);
    next(&mut stream).await;
    let login = auth.login(&[]).await;
    assert_eq!(auth.refresh(&login.refresh).await.status(), StatusCode::OK);
    assert_eq!(auth.refresh("not-a-live-token-0123456789").await.status().as_u16(), 401);

    let after = scrape(&metrics_url).await;
    for (series, at_least) in [
        (r#"websession_stream_opens_total{result="ok"}"#, 1.0),
        (r#"websession_stream_opens_total{result="front_not_registered"}"#, 1.0),
        (r#"websession_events_published_total{target="session"}"#, 1.0),
        ("websession_events_delivered_total", 1.0),
        ("websession_event_first_write_seconds_count", 1.0),
        (r#"websession_refresh_total{result="ok"}"#, 1.0),
        (r#"websession_refresh_total{result="invalid_token"}"#, 1.0),
        ("websession_activation_seconds_count", 1.0),
        (r#"websession_store_seconds_count{op="publish"}"#, 1.0),
        (r#"websession_store_seconds_count{op="activate_stream"}"#, 1.0),
    ] {
        assert!(grew(&after, series) >= at_least, "{series} grew by {}", grew(&after, series));
    }
    assert_eq!(after.get(r#"websession_streams_active{scope="session"}"#).copied(), Some(1.0));
    drop(stream);
}

#[tokio::test]
async fn without_a_recorder_handle_metrics_answers_404() {
    let server = TestServer::start().await;
    let response = reqwest::get(server.url(paths::METRICS)).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn the_binary_serves_metrics_on_metrics_listen_and_takes_its_api_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, "from-the-file\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--api-key-file")
        .arg(&key_file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server binary starts");
    let stdout = tokio::process::ChildStdout::from_std(child.stdout.take().unwrap()).unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut main, mut metrics) = (None, None);
    within(async {
        while main.is_none() {
            let line = lines.next_line().await.unwrap().expect("the server printed its URLs");
            if let Some(url) = line.strip_prefix("server: metrics on ") {
                metrics = Some(url.to_owned());
            }
            if let Some(url) = line.strip_prefix("server: listening on ") {
                main = Some(url.to_owned());
            }
        }
    })
    .await;
    let (main, metrics) = (main.unwrap(), metrics.expect("the metrics address came first"));

    assert_eq!(reqwest::get(format!("{main}/readyz")).await.unwrap().status(), StatusCode::OK);
    let answer = reqwest::get(format!("{main}{}", paths::METRICS)).await.unwrap();
    assert_eq!(answer.status(), StatusCode::NOT_FOUND, "only on --metrics-listen");
    let scraped = scrape(&metrics).await;
    assert!(scraped.contains_key(r#"websession_store_seconds_count{op="ping"}"#), "{scraped:?}");

    let publish = reqwest::Client::new()
        .post(format!("{main}{}", paths::API_PUBLISH))
        .header(API_KEY_HEADER, "from-the-file")
        .json(&json!({"frontUuid": SessionUuid::new_v4(), "name": "x"}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = publish.json().await.unwrap();
    assert_eq!(body["error"], "front_not_registered", "the key from the file was taken");
    let _ = child.kill();
    let _ = child.wait();
}
