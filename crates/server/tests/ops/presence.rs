//! `POST /api/events/disconnect` and `GET /api/events/presence/{frontUuid}`: the key, every
//! answer, on the embedded store and on Redis; a disconnect through another instance than the
//! one holding the stream; and the tab resuming afterwards without losing an event.

use loadgen::{Received, Stream};
use protocol::api::API_KEY_HEADER;
use protocol::{SessionUuid, Timestamp, paths};
use reqwest::Method;
use serde_json::{Value, json};
use server::api::ApiKey;

use super::status_json;
use crate::events::{long_lived, next, registered};
use crate::tokens::harness::RedisServer;
use crate::util::{TestServer, within};

const KEY: &str = "test-api-key-0123456789";

async fn with_key() -> TestServer {
    TestServer::start_with(|config| config.api_key = ApiKey::new(KEY)).await
}

async fn on_redis_with_key(redis: &RedisServer) -> TestServer {
    let url = redis.url.clone();
    TestServer::start_with(move |config| {
        *config = config.clone().with_redis(url);
        config.api_key = ApiKey::new(KEY);
    })
    .await
}

/// `POST /api/events/disconnect` with `key` (none: no header).
async fn disconnect(server: &TestServer, key: Option<&str>, body: &Value) -> (u16, Value) {
    let request = reqwest::Client::new().post(server.url(paths::API_DISCONNECT)).json(body);
    send(request, key).await
}

/// `GET /api/events/presence/{front}` with `key`.
async fn presence(server: &TestServer, key: Option<&str>, front: &str) -> (u16, Value) {
    let url = server.url(&format!("{}/{front}", paths::API_PRESENCE));
    send(reqwest::Client::new().request(Method::GET, url), key).await
}

async fn send(mut request: reqwest::RequestBuilder, key: Option<&str>) -> (u16, Value) {
    if let Some(key) = key {
        request = request.header(API_KEY_HEADER, key);
    }
    status_json(request.send().await.unwrap()).await
}

/// Everything `stream` still gets until the server ends it.
async fn until_ended(stream: &mut Stream) -> Vec<Received> {
    let mut got = Vec::new();
    while let Some(event) = within(stream.next_event()).await.unwrap() {
        got.push(event);
    }
    got
}

#[tokio::test]
async fn without_a_configured_key_disconnect_and_presence_answer_404() {
    let server = TestServer::start().await;
    let front = registered(&server).await;
    let (status, answer) =
        disconnect(&server, Some(KEY), &json!({"frontUuid": front.uuid()})).await;
    assert_eq!((status, answer["error"].as_str()), (404, Some("not_found")));
    let (status, answer) = presence(&server, Some(KEY), &front.uuid().to_string()).await;
    assert_eq!((status, answer["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn disconnect_and_presence_without_the_right_key_are_401_invalid_api_key() {
    let server = with_key().await;
    let front = registered(&server).await;
    let body = json!({"frontUuid": front.uuid()});
    for key in [None, Some("wrong"), Some("")] {
        let (status, answer) = disconnect(&server, key, &body).await;
        assert_eq!((status, answer["error"].as_str()), (401, Some("invalid_api_key")), "{key:?}");
        let (status, answer) = presence(&server, key, &front.uuid().to_string()).await;
        assert_eq!((status, answer["error"].as_str()), (401, Some("invalid_api_key")), "{key:?}");
    }
    assert_eq!(disconnect(&server, Some(KEY), &body).await, (200, json!({"closed": 0})));
}

/// Every answer of both endpoints on `server`: bad bodies and paths, unknown fronts and tabs,
/// a tab's stream ended and resumed without loss, the whole front's.
async fn good_and_bad_input(server: &TestServer) {
    let front = registered(server).await;
    let uuid = front.uuid().to_string();
    let (one, two) = (SessionUuid::new_v4(), SessionUuid::new_v4());
    let mut tab_one = front.connect(one, None).await.unwrap();
    let mut tab_two = front.connect(two, None).await.unwrap();

    let bad = [
        (json!({}), 400, "invalid_json"),
        (json!({"frontUuid": "nope"}), 400, "invalid_uuid"),
        (json!({"frontUuid": uuid, "sessionUUID": one}), 400, "invalid_json"),
        (json!({"frontUuid": uuid, "sessionUuid": 7}), 400, "invalid_json"),
        (json!(42), 400, "invalid_json"),
        (json!({"frontUuid": SessionUuid::new_v4()}), 404, "front_not_registered"),
        (
            json!({"frontUuid": uuid, "sessionUuid": SessionUuid::new_v4()}),
            404,
            "session_not_found",
        ),
    ];
    for (body, status, code) in bad {
        let (got, answer) = disconnect(server, Some(KEY), &body).await;
        assert_eq!((got, answer["error"].as_str()), (status, Some(code)), "{body}: {answer}");
    }
    let url = server.url(paths::API_DISCONNECT);
    let not_json = reqwest::Client::new().post(&url).header("content-type", "application/json");
    let (status, answer) = send(not_json.body("{\"frontUuid\":"), Some(KEY)).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_json")));
    let plain = reqwest::Client::new().post(&url).body(format!("{{\"frontUuid\":\"{uuid}\"}}"));
    let (status, answer) = send(plain, Some(KEY)).await;
    assert_eq!((status, answer["error"].as_str()), (415, Some("unsupported_media_type")));
    for (front, status, code) in [
        ("nope".to_owned(), 400, "invalid_uuid"),
        (SessionUuid::new_v4().to_string(), 404, "front_not_registered"),
    ] {
        let (got, answer) = presence(server, Some(KEY), &front).await;
        assert_eq!((got, answer["error"].as_str()), (status, Some(code)), "{front}: {answer}");
    }

    let (status, answer) = presence(server, Some(KEY), &uuid).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["truncated"], json!(false));
    let sessions = answer["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{answer}");
    for entry in sessions {
        assert_eq!(entry["active"], json!(true), "{answer}");
        let since: Timestamp = entry["since"].as_str().unwrap().parse().unwrap();
        assert!(since <= Timestamp::now(), "{answer}");
    }

    // One tab: its stream ends; the other goes on.
    let hub = server.hub();
    let before = hub.publish_to_session(front.uuid(), one, "before", json!(1), long_lived());
    let before = before.await.unwrap();
    let body = json!({"frontUuid": uuid, "sessionUuid": one});
    assert_eq!(disconnect(server, Some(KEY), &body).await, (200, json!({"closed": 1})));
    let mut got: Vec<i64> = until_ended(&mut tab_one).await.iter().filter_map(|r| r.id).collect();
    let (_, answer) = presence(server, Some(KEY), &uuid).await;
    let of = |session: SessionUuid| {
        answer["sessions"].as_array().unwrap().iter().find(|e| e["sessionUuid"] == json!(session))
    };
    assert_eq!(of(one).map(|e| e["active"].clone()), Some(json!(false)), "{answer}");
    assert!(of(one).is_some_and(|e| e["since"].is_string()), "idle since: {answer}");
    assert_eq!(of(two).map(|e| e["active"].clone()), Some(json!(true)), "{answer}");
    let (_, answer) = disconnect(server, Some(KEY), &body).await;
    assert_eq!(answer, json!({"closed": 0}), "ended already");

    // Published while it is away; it resumes with Last-Event-ID and gets each event once.
    let mut expected = vec![before.id];
    for n in 0..3 {
        let event = hub.publish_to_session(front.uuid(), one, "meanwhile", json!(n), long_lived());
        expected.push(event.await.unwrap().id);
    }
    let last = tab_one.last_event_id().to_owned();
    let mut tab_one =
        front.connect(one, (!last.is_empty()).then_some(last.as_str())).await.unwrap();
    while got.len() < expected.len() {
        got.push(next(&mut tab_one).await.id.unwrap());
    }
    assert_eq!(got, expected, "every event once, in order");
    let marker = hub.publish_to_front(front.uuid(), "marker", json!(null), long_lived()).await;
    assert_eq!(next(&mut tab_one).await.id, Some(marker.unwrap().id), "nothing twice");
    assert_eq!(next(&mut tab_two).await.event.meta.name, "marker", "the other tab goes on");

    // The whole front: both tabs.
    let (_, answer) = disconnect(server, Some(KEY), &json!({"frontUuid": uuid})).await;
    assert_eq!(answer, json!({"closed": 2}));
    until_ended(&mut tab_one).await;
    until_ended(&mut tab_two).await;
    let (_, answer) = presence(server, Some(KEY), &uuid).await;
    let active = answer["sessions"].as_array().unwrap().iter().filter(|e| e["active"] == true);
    assert_eq!(active.count(), 0, "{answer}");
}

#[tokio::test]
async fn disconnect_and_presence_answer_good_and_bad_input_on_the_embedded_store() {
    good_and_bad_input(&with_key().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_and_presence_answer_good_and_bad_input_on_redis() {
    let redis = RedisServer::start().await;
    good_and_bad_input(&on_redis_with_key(&redis).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_through_another_instance_ends_the_stream_and_the_tab_resumes_losing_nothing()
{
    let redis = RedisServer::start().await;
    let (a, b) = (on_redis_with_key(&redis).await, on_redis_with_key(&redis).await);
    let front = registered(&a).await;
    let session = SessionUuid::new_v4();
    let mut tab = front.connect(session, None).await.unwrap();
    let first = b.hub().publish_to_front(front.uuid(), "first", json!(0), long_lived()).await;
    let first = first.unwrap();
    assert_eq!(next(&mut tab).await.id, Some(first.id));

    // Asked of B, which holds nothing: A's stream ends.
    let body = json!({"frontUuid": front.uuid(), "sessionUuid": session});
    assert_eq!(disconnect(&b, Some(KEY), &body).await, (200, json!({"closed": 1})));
    let mut got: Vec<i64> = until_ended(&mut tab).await.iter().filter_map(|r| r.id).collect();
    let (_, answer) = presence(&a, Some(KEY), &front.uuid().to_string()).await;
    assert_eq!(answer["sessions"][0]["active"], json!(false), "{answer}");

    let mut expected = Vec::new();
    for n in 0..4 {
        let hub = if n % 2 == 0 { a.hub() } else { b.hub() };
        let event =
            hub.publish_to_session(front.uuid(), session, "meanwhile", json!(n), long_lived());
        expected.push(event.await.unwrap().id);
    }
    // The tab comes back through B, after what it saw last.
    let last = tab.last_event_id().to_owned();
    assert_eq!(last, first.id.to_string());
    let mut tab = front.with_client(&b.client()).connect(session, Some(&last)).await.unwrap();
    while got.len() < expected.len() {
        got.push(next(&mut tab).await.id.unwrap());
    }
    assert_eq!(got, expected, "every event once, in order");
    let (_, answer) = presence(&a, Some(KEY), &front.uuid().to_string()).await;
    assert_eq!(answer["sessions"][0]["active"], json!(true), "{answer}");
    assert_eq!(answer["sessions"].as_array().map(Vec::len), Some(1));
}
