//! `POST /api/events/publish`: the key, every answer, idempotency, on one instance and across
//! two instances on one Redis.

use protocol::api::{API_KEY_HEADER, MAX_EXPIRES_IN_MS};
use protocol::{SessionUuid, paths};
use serde_json::{Value, json};
use server::api::ApiKey;

use super::status_json;
use crate::events::{next, registered};
use crate::tokens::harness::RedisServer;
use crate::util::TestServer;

const KEY: &str = "test-api-key-0123456789";

async fn with_key() -> TestServer {
    TestServer::start_with(|config| config.api_key = ApiKey::new(KEY)).await
}

/// `POST /api/events/publish` with `key` (none: no header).
async fn publish(server: &TestServer, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(server.url(paths::API_PUBLISH)).json(body);
    if let Some(key) = key {
        request = request.header(API_KEY_HEADER, key);
    }
    status_json(request.send().await.unwrap()).await
}

#[tokio::test]
async fn without_a_configured_key_the_api_answers_404() {
    let server = TestServer::start().await;
    let body = json!({"frontUuid": SessionUuid::new_v4().to_string(), "name": "x"});
    let (status, answer) = publish(&server, Some(KEY), &body).await;
    assert_eq!((status, answer["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_401_invalid_api_key() {
    let server = with_key().await;
    let front = registered(&server).await;
    let body = json!({"frontUuid": front.uuid(), "name": "x"});
    for key in [None, Some("wrong"), Some(""), Some("test-api-key-012345678")] {
        let (status, answer) = publish(&server, key, &body).await;
        assert_eq!((status, answer["error"].as_str()), (401, Some("invalid_api_key")), "{key:?}");
    }
    assert_eq!(publish(&server, Some(KEY), &body).await.0, 200);
}

#[test]
fn the_key_file_gives_its_first_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    std::fs::write(&path, "first-line-key \nsecond line\n").unwrap();
    let key = ApiKey::from_file(&path).unwrap();
    assert!(key.matches(b"first-line-key"));
    assert!(!key.matches(b"second line"));
    assert!(!format!("{key:?}").contains("first"), "Debug never shows the key");
    std::fs::write(&path, "\nkey on the second line\n").unwrap();
    assert!(ApiKey::from_file(&path).is_err(), "an empty first line is refused");
}

#[tokio::test]
async fn publishes_to_a_tab_to_every_tab_and_sealed() {
    let server = with_key().await;
    let front = registered(&server).await;
    let session = SessionUuid::new_v4();
    let mut stream = front.open(session, None).await.unwrap().activate().await.unwrap();

    let body = json!({"frontUuid": front.uuid(), "sessionUuid": session, "name": "to-tab",
                      "data": {"n": 1}, "expiresInMs": 5000});
    let (status, answer) = publish(&server, Some(KEY), &body).await;
    assert_eq!(status, 200, "{answer}");
    let got = next(&mut stream).await;
    assert_eq!(got.id, answer["id"].as_i64(), "the answer is the SSE id");
    assert_eq!(got.event.meta.name, "to-tab");
    assert_eq!(got.event.meta.session_uuid, Some(session));
    assert_eq!(got.event.data, json!({"n": 1}));
    assert_eq!(got.event.meta.expired, Some(got.event.meta.published.plus_millis(5000)));

    let body = json!({"frontUuid": front.uuid(), "name": "to-front"});
    let (_, answer) = publish(&server, Some(KEY), &body).await;
    let got = next(&mut stream).await;
    assert_eq!((got.id, got.event.meta.session_uuid), (answer["id"].as_i64(), None));
    assert_eq!(got.event.data, Value::Null, "no data: null");

    let body = json!({"frontUuid": front.uuid(), "name": "secret", "data": {"pin": 1234},
                      "encrypted": true});
    assert_eq!(publish(&server, Some(KEY), &body).await.0, 200);
    let got = next(&mut stream).await;
    assert_eq!(got.event.meta.encrypted, Some(true));
    assert_eq!(got.event.data, json!({"pin": 1234}), "opened by the client with its key");
}

#[tokio::test]
async fn unknown_fronts_and_sessions_are_404_with_their_codes() {
    let server = with_key().await;
    let body = json!({"frontUuid": SessionUuid::new_v4().to_string(), "name": "x"});
    let (status, answer) = publish(&server, Some(KEY), &body).await;
    assert_eq!((status, answer["error"].as_str()), (404, Some("front_not_registered")));
    // With an idempotency key too (the key is looked up per front).
    let body = json!({"frontUuid": SessionUuid::new_v4().to_string(), "name": "x",
                      "idempotencyKey": "k"});
    let (status, answer) = publish(&server, Some(KEY), &body).await;
    assert_eq!((status, answer["error"].as_str()), (404, Some("front_not_registered")));

    let front = registered(&server).await;
    let body = json!({"frontUuid": front.uuid(), "sessionUuid": SessionUuid::new_v4(),
                      "name": "x"});
    let (status, answer) = publish(&server, Some(KEY), &body).await;
    assert_eq!((status, answer["error"].as_str()), (404, Some("session_not_found")));
}

#[tokio::test]
async fn bad_bodies_are_refused_with_their_codes() {
    let server = with_key().await;
    let front = registered(&server).await;
    let uuid = front.uuid().to_string();
    let cases = [
        (json!({"frontUuid": uuid, "name": ""}), 400, "invalid_request"),
        (json!({"frontUuid": uuid, "name": "x".repeat(129)}), 400, "invalid_request"),
        (json!({"frontUuid": uuid, "name": "a\nb"}), 400, "invalid_request"),
        (json!({"frontUuid": uuid, "name": "x", "expiresInMs": 0}), 400, "invalid_request"),
        (
            json!({"frontUuid": uuid, "name": "x", "expiresInMs": MAX_EXPIRES_IN_MS + 1}),
            400,
            "invalid_request",
        ),
        (json!({"frontUuid": uuid, "name": "x", "idempotencyKey": "a b"}), 400, "invalid_request"),
        (
            json!({"frontUuid": uuid, "name": "x", "idempotencyKey": "k".repeat(129)}),
            400,
            "invalid_request",
        ),
        (json!({"frontUuid": uuid, "name": "x", "sessionUUID": uuid}), 400, "invalid_json"),
        (json!({"frontUuid": "nope", "name": "x"}), 400, "invalid_uuid"),
        (json!({"name": "x"}), 400, "invalid_json"),
        (
            json!({"frontUuid": uuid, "name": "x", "data": "d".repeat(70_000)}),
            413,
            "body_too_large",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = publish(&server, Some(KEY), &body).await;
        assert_eq!((got, answer["error"].as_str()), (status, Some(code)), "{answer}");
    }
    let (status, _) = publish(
        &server,
        Some(KEY),
        &json!({"frontUuid": uuid, "name": "x".repeat(128), "expiresInMs": MAX_EXPIRES_IN_MS,
                "idempotencyKey": "k".repeat(128)}),
    )
    .await;
    assert_eq!(status, 200, "the bounds themselves are allowed");
}

#[tokio::test]
async fn the_same_idempotency_key_publishes_once_and_answers_the_same_id() {
    let server = with_key().await;
    let front = registered(&server).await;
    let session = SessionUuid::new_v4();
    let mut stream = front.open(session, None).await.unwrap().activate().await.unwrap();
    let body = json!({"frontUuid": front.uuid(), "name": "once", "idempotencyKey": "order-17"});
    let (status, first) = publish(&server, Some(KEY), &body).await;
    assert_eq!(status, 200);
    let (status, again) = publish(&server, Some(KEY), &body).await;
    assert_eq!((status, &again), (200, &first), "the same id again");

    let other = json!({"frontUuid": front.uuid(), "name": "marker", "idempotencyKey": "order-18"});
    let (_, marker) = publish(&server, Some(KEY), &other).await;
    assert_ne!(marker, first);
    let got = next(&mut stream).await;
    assert_eq!((got.id, got.event.meta.name.as_str()), (first["id"].as_i64(), "once"));
    let got = next(&mut stream).await;
    assert_eq!(got.event.meta.name, "marker", "the repeat published nothing");
}

#[tokio::test]
async fn an_idempotency_key_of_a_refused_publish_is_free_again() {
    let server = with_key().await;
    let front = registered(&server).await;
    let session = SessionUuid::new_v4();
    let body = json!({"frontUuid": front.uuid(), "sessionUuid": session, "name": "x",
                      "idempotencyKey": "retry-me"});
    assert_eq!(publish(&server, Some(KEY), &body).await.0, 404, "the tab is not known yet");
    let _stream = front.open(session, None).await.unwrap().activate().await.unwrap();
    let (status, answer) = publish(&server, Some(KEY), &body).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_holds_across_two_instances_on_one_redis() {
    let redis = RedisServer::start().await;
    let start = || {
        let url = redis.url.clone();
        TestServer::start_with(move |config| {
            *config = config.clone().with_redis(url);
            config.api_key = ApiKey::new(KEY);
        })
    };
    let (a, b) = (start().await, start().await);
    let front = registered(&a).await;
    let body = json!({"frontUuid": front.uuid(), "name": "once", "idempotencyKey": "k-1",
                      "expiresInMs": 60_000});
    let (status, first) = publish(&a, Some(KEY), &body).await;
    assert_eq!(status, 200);
    assert_eq!(publish(&b, Some(KEY), &body).await, (200, first.clone()));
    let (_, fresh) = publish(&b, Some(KEY), &json!({"frontUuid": front.uuid(), "name": "n"})).await;
    assert_eq!(fresh["id"].as_i64(), first["id"].as_i64().map(|id| id + 1), "nothing between");
}
