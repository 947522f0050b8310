//! Every error code of the event endpoints, each from a real bad request, with its status.

use protocol::keys::encode_b64;
use protocol::messages::RegisterRequest;
use protocol::{ErrorBody, ErrorCode, FrontUuid, KeyPair, SessionUuid, StreamUuid, paths};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::registered;
use crate::util::TestServer;

/// Asserts that `response` is the error body with `code`, and `status`.
async fn assert_error(response: reqwest::Response, status: StatusCode, code: ErrorCode) {
    assert_eq!(response.status(), status);
    let body: ErrorBody = response.json().await.unwrap();
    assert_eq!(body.code(), Some(code), "{body:?}");
    assert!(!body.message.is_empty());
}

/// Asserts that a client call failed with `code` and `status`.
fn assert_client_error<T: std::fmt::Debug>(
    result: Result<T, loadgen::ClientError>,
    status: u16,
    code: ErrorCode,
) {
    let error = result.unwrap_err();
    assert_eq!((error.status(), error.code()), (Some(status), Some(code)), "{error}");
}

fn register_body(front: FrontUuid, key: &str) -> Value {
    json!({"publicKey": key, "frontUuid": front.to_string()})
}

#[tokio::test]
async fn malformed_requests_get_their_codes() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let front = FrontUuid::new_v4();
    let register = |uuid: &str| server.url(&format!("{}/{uuid}", paths::REGISTER));
    let key = KeyPair::generate().public.to_base64();

    // invalid_uuid: in the path, in the body, and on stream open.
    let response = http.post(register("not-a-uuid")).json(&register_body(front, &key));
    assert_error(response.send().await.unwrap(), StatusCode::BAD_REQUEST, ErrorCode::InvalidUuid)
        .await;
    let body = json!({"publicKey": key, "frontUuid": "61b179eb-fb3d-4ea8-9b9f"});
    let response = http.post(register(&front.to_string())).json(&body).send().await.unwrap();
    assert_error(response, StatusCode::BAD_REQUEST, ErrorCode::InvalidUuid).await;
    let open = server.url(&format!("{}/{front}/{}", paths::STREAM_OPEN, "123"));
    assert_error(
        http.get(open).send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidUuid,
    )
    .await;

    // invalid_key: a 31-byte key, and bad base64.
    let short = encode_b64(&[7u8; 31]);
    for bad in [short.as_str(), "not base64!", "AAAA"] {
        let response = http.post(register(&front.to_string())).json(&register_body(front, bad));
        let response = response.send().await.unwrap();
        assert_error(response, StatusCode::BAD_REQUEST, ErrorCode::InvalidKey).await;
    }

    // invalid_json: not JSON, and JSON of the wrong shape.
    let response = http
        .post(register(&front.to_string()))
        .header("content-type", "application/json")
        .body("{\"publicKey\": ")
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::BAD_REQUEST, ErrorCode::InvalidJson).await;
    let response = http
        .post(register(&front.to_string()))
        .json(&json!({"publicKey": 5}))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::BAD_REQUEST, ErrorCode::InvalidJson).await;

    // unsupported_media_type: the right JSON, the wrong content type.
    let response = http
        .post(register(&front.to_string()))
        .header("content-type", "text/plain")
        .body(register_body(front, &key).to_string())
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorCode::UnsupportedMediaType)
        .await;

    // body_too_large: 65 KiB of otherwise fine JSON, on every POST endpoint.
    let filler = "x".repeat(65 * 1024);
    let huge = json!({"publicKey": key, "frontUuid": front.to_string(), "filler": filler});
    for path in [
        format!("{}/{front}", paths::REGISTER),
        paths::STREAM_ACTIVATE.to_owned(),
        format!("{}/echo", paths::DIRECT),
    ] {
        let response = http.post(server.url(&path)).json(&huge).send().await.unwrap();
        assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::BodyTooLarge).await;
    }

    // invalid_request: the body names another front than the path.
    let other = FrontUuid::new_v4();
    let response = http.post(register(&front.to_string())).json(&register_body(other, &key));
    assert_error(
        response.send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidRequest,
    )
    .await;
}

#[tokio::test]
async fn registration_conflicts_and_unknown_fronts() {
    let server = TestServer::start().await;
    let client = server.client();
    let front = registered(&server).await;

    // front_key_conflict: the same UUID with another key.
    let request =
        RegisterRequest { public_key: KeyPair::generate().public, front_uuid: front.uuid() };
    let path = format!("{}/{}", paths::REGISTER, front.uuid());
    assert_client_error(
        client.post_json::<_, i64>(&path, &request).await,
        409,
        ErrorCode::FrontKeyConflict,
    );

    // front_not_registered: on stream open, activation and direct events alike.
    let stranger = loadgen::Front::generate(&client);
    assert_client_error(
        stranger.open(SessionUuid::new_v4(), None).await,
        404,
        ErrorCode::FrontNotRegistered,
    );
    assert_client_error(
        client.activate(stranger.uuid(), StreamUuid::new_v4()).await,
        404,
        ErrorCode::FrontNotRegistered,
    );
    let tab = front.connect(SessionUuid::new_v4(), None).await.unwrap();
    let mut event = tab.direct_event("echo", json!(1), false).unwrap();
    event.meta.front_uuid = stranger.uuid();
    assert_client_error(tab.send_event(&event).await, 404, ErrorCode::FrontNotRegistered);
}

#[tokio::test]
async fn activation_needs_the_right_front_and_stream_once() {
    let server = TestServer::start().await;
    let client = server.client();
    let front = registered(&server).await;
    let other = registered(&server).await;
    let pending = front.open(SessionUuid::new_v4(), None).await.unwrap();
    // The other front has a stream too, so it is known to the registry.
    let _other_tab = other.connect(SessionUuid::new_v4(), None).await.unwrap();

    // stream_not_found: another front's UUID with this stream, and a guessed stream UUID.
    let result = client.activate(other.uuid(), pending.stream_uuid()).await;
    assert_client_error(result, 404, ErrorCode::StreamNotFound);
    let result = client.activate(front.uuid(), StreamUuid::new_v4()).await;
    assert_client_error(result, 404, ErrorCode::StreamNotFound);

    // stream_already_active: the same activation again; trailing segments are ignored.
    let stream_uuid = pending.stream_uuid();
    let _tab = pending.activate().await.unwrap();
    let body = json!({"frontUuid": front.uuid(), "streamUuid": stream_uuid});
    let path = format!("{}/{}/{}", paths::STREAM_ACTIVATE, front.uuid(), SessionUuid::new_v4());
    let result = client.post_json::<_, bool>(&path, &body).await;
    assert_client_error(result, 409, ErrorCode::StreamAlreadyActive);

    // A registered front without any stream: still stream_not_found.
    let idle = registered(&server).await;
    assert_client_error(
        client.activate(idle.uuid(), stream_uuid).await,
        404,
        ErrorCode::StreamNotFound,
    );
}

#[tokio::test]
async fn direct_events_need_a_true_stamp_an_active_session_and_a_handler() {
    let server = TestServer::start().await;
    let front = registered(&server).await;
    let tab = front.connect(SessionUuid::new_v4(), None).await.unwrap();
    let http = reqwest::Client::new();

    // bad_stamp: sealed by someone else's key, for another event, or not a sealed value.
    let mut forged = tab.direct_event("echo", json!(1), false).unwrap();
    let mallory = protocol::Peer::new(&server.state.events.back_key(), &KeyPair::generate().secret);
    forged.meta.stamp = mallory.stamp(&forged.meta.uuid, forged.meta.published);
    assert_client_error(tab.send_event(&forged).await, 403, ErrorCode::BadStamp);
    let mut replayed = tab.direct_event("echo", json!(1), false).unwrap();
    replayed.meta.uuid = protocol::EventUuid::new_v4();
    assert_client_error(tab.send_event(&replayed).await, 403, ErrorCode::BadStamp);
    let mut body =
        serde_json::to_value(tab.direct_event("echo", json!(1), false).unwrap()).unwrap();
    body["meta"]["stamp"] = json!("%%%");
    let response = http.post(server.url(&format!("{}/echo", paths::DIRECT))).json(&body);
    assert_error(response.send().await.unwrap(), StatusCode::FORBIDDEN, ErrorCode::BadStamp).await;

    // session_inactive: a session of this front without an active stream.
    let mut elsewhere = tab.direct_event("echo", json!(1), false).unwrap();
    elsewhere.meta.session_uuid = SessionUuid::new_v4();
    assert_client_error(tab.send_event(&elsewhere).await, 403, ErrorCode::SessionInactive);
    let pending = front.open(SessionUuid::new_v4(), None).await.unwrap().into_stream();
    let not_yet = pending.direct_event("echo", json!(1), false).unwrap();
    assert_client_error(pending.send_event(&not_yet).await, 403, ErrorCode::SessionInactive);

    // not_found: no handler of that name.
    let unknown = tab.direct_event("no-such-event", json!(1), false).unwrap();
    assert_client_error(tab.send_event(&unknown).await, 404, ErrorCode::NotFound);

    // invalid_request: meta.name is not the path's name.
    let event = tab.direct_event("echo", json!(1), false).unwrap();
    let response = http.post(server.url(&format!("{}/broadcast", paths::DIRECT))).json(&event);
    assert_error(
        response.send().await.unwrap(),
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidRequest,
    )
    .await;

    // invalid_uuid inside the event.
    let mut body =
        serde_json::to_value(tab.direct_event("echo", json!(1), false).unwrap()).unwrap();
    body["meta"]["sessionUuid"] = json!("tab-1");
    let response = http.post(server.url(&format!("{}/echo", paths::DIRECT))).json(&body);
    assert_error(response.send().await.unwrap(), StatusCode::BAD_REQUEST, ErrorCode::InvalidUuid)
        .await;
}
