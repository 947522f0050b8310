//! `/healthz` answers while the process serves; `/readyz` follows its stores and shutdown.

use std::time::Duration;

use protocol::paths;
use serde_json::{Value, json};

use super::status_json;
use crate::tokens::harness::RedisServer;
use crate::util::TestServer;

async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    status_json(reqwest::get(server.url(path)).await.unwrap()).await
}

/// Asks `/readyz` until it answers `status` (each answer takes up to the store's command
/// timeout while Redis is down); fails after 100 tries (20 s and more), a generous margin for
/// the connections and the subscription to come back.
async fn readyz_until(server: &TestServer, status: u16) -> Value {
    let mut seen = Vec::new();
    for _ in 0..100 {
        let (got, body) = get(server, paths::READYZ).await;
        if got == status {
            return body;
        }
        seen.push(got);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("/readyz never answered {status}; it answered {seen:?}");
}

#[tokio::test]
async fn healthz_and_readyz_answer_json_on_the_embedded_store() {
    let server = TestServer::start().await;
    assert_eq!(get(&server, paths::HEALTHZ).await, (200, json!({"status": "ok"})));
    let (status, body) = get(&server, paths::READYZ).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"status": "ready", "checks": {
            "draining": "ok", "eventStore": "ok", "oneTimeTokenStore": "ok", "sessionStore": "ok"
        }})
    );
}

#[tokio::test]
async fn readyz_turns_503_once_shutdown_begins_while_healthz_stays_200() {
    let server = TestServer::start().await;
    // The services shut down; the HTTP server itself still answers.
    server.state.shutdown().await;
    let (status, body) = get(&server, paths::READYZ).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "not_ready");
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["draining"], "down");
    assert!(body["message"].as_str().unwrap().contains("draining"), "{body}");
    assert_eq!(get(&server, paths::HEALTHZ).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_redis_is_down_and_200_again_after_it_restarts() {
    let mut redis = RedisServer::start().await;
    let url = redis.url.clone();
    let server = TestServer::start_with(|config| *config = config.clone().with_redis(url)).await;
    let body = readyz_until(&server, 200).await;
    assert_eq!(body["checks"]["eventStore"], "ok");

    redis.stop();
    let body = readyz_until(&server, 503).await;
    assert_eq!(body["error"], "not_ready");
    assert_eq!(body["checks"]["eventStore"], "down", "{body}");
    assert_eq!(body["checks"]["sessionStore"], "down", "{body}");
    assert_eq!(body["checks"]["oneTimeTokenStore"], "ok", "still the embedded one: {body}");
    assert_eq!(get(&server, paths::HEALTHZ).await.0, 200, "the process still lives");

    redis.restart().await;
    // Ready again once the connections and the event subscription are back.
    let body = readyz_until(&server, 200).await;
    assert_eq!(body["status"], "ready");
}
