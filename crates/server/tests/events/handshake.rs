//! The whole handshake with the Rust client, then events both ways.

use protocol::messages::AUTHENTICATE_EVENT;
use protocol::{SessionUuid, paths};
use serde_json::json;
use server::events::PublishOptions;

use super::{next, registered};
use crate::util::{TestServer, within};

#[tokio::test]
async fn register_open_activate_then_events_to_the_session_the_front_and_an_echo() {
    let server = TestServer::start().await;
    let mut front = loadgen::Front::generate(&server.client());
    let bid = front.register().await.unwrap();
    assert_eq!(front.register().await.unwrap(), bid, "same UUID and key: same frontBid");

    let session = SessionUuid::new_v4();
    let pending = front.open(session, None).await.unwrap();
    assert_eq!(pending.challenge().back_uuid, server.state.events.back_uuid());
    assert_eq!(pending.challenge().back_key, server.state.events.back_key());
    let mut stream = pending.activate().await.unwrap();

    let hub = server.hub();
    let to_tab = hub
        .publish_to_session(front.uuid(), session, "to-tab", json!({"n": 1}), Default::default())
        .await
        .unwrap();
    let got = next(&mut stream).await;
    assert_eq!(got.id, Some(to_tab.id), "the id: line belongs to the event's own block");
    let meta = &got.event.meta;
    assert_eq!((meta.name.as_str(), meta.uuid), ("to-tab", to_tab.uuid));
    assert_eq!(meta.session_uuid, Some(session));
    assert_eq!(meta.front_uuid, Some(front.uuid()));
    assert_eq!(meta.back_uuid, Some(server.state.events.back_uuid()));
    assert_eq!(meta.expired, Some(meta.published.plus_millis(60_000)));
    let stamp = meta.stamp.as_ref().unwrap();
    stream.peer().unwrap().verify_stamp(stamp, &meta.uuid, meta.published).unwrap();
    assert_eq!(got.event.data, json!({"n": 1}));

    let to_front = hub
        .publish_to_front(front.uuid(), "to-front", json!("all tabs"), Default::default())
        .await
        .unwrap();
    let got = next(&mut stream).await;
    assert_eq!((got.id, got.event.meta.uuid), (Some(to_front.id), to_front.uuid));
    assert_eq!(to_front.id, to_tab.id + 1, "one increasing sequence per front");
    assert_eq!(got.event.meta.session_uuid, None);
    assert_eq!(got.event.data, json!("all tabs"));

    let sealed = PublishOptions { encrypted: true, ..Default::default() };
    hub.publish_to_session(front.uuid(), session, "secret", json!({"pin": 1234}), sealed)
        .await
        .unwrap();
    let got = next(&mut stream).await;
    assert_eq!(got.event.meta.encrypted, Some(true));
    assert_eq!(got.event.data, json!({"pin": 1234}), "opened by the client");

    let request = stream.send("echo", json!({"ping": [1, 2]})).await.unwrap();
    let echo = next(&mut stream).await;
    assert_eq!(echo.event.meta.name, "echo");
    assert_eq!(echo.event.meta.request_uuid, Some(request));
    assert_eq!(echo.event.meta.session_uuid, Some(session));
    assert_eq!(echo.event.data, json!({"ping": [1, 2]}));

    let sealed_request = stream.direct_event("echo", json!({"sealed": true}), true).unwrap();
    stream.send_event(&sealed_request).await.unwrap();
    let echo = next(&mut stream).await;
    assert_eq!(echo.event.meta.request_uuid, Some(sealed_request.meta.uuid));
    assert_eq!(echo.event.meta.encrypted, Some(true), "a sealed request gets a sealed answer");
    assert_eq!(echo.event.data, json!({"sealed": true}));
}

#[tokio::test]
async fn a_resent_direct_event_is_handled_once() {
    let server = TestServer::start().await;
    let front = registered(&server).await;
    let session = SessionUuid::new_v4();
    let mut stream = front.connect(session, None).await.unwrap();
    let event = stream.direct_event("echo", json!("once"), false).unwrap();
    stream.send_event(&event).await.unwrap();
    stream.send_event(&event).await.unwrap();
    assert_eq!(next(&mut stream).await.event.meta.request_uuid, Some(event.meta.uuid));
    let marker = server
        .hub()
        .publish_to_session(front.uuid(), session, "marker", json!(null), Default::default())
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await.event.meta.uuid, marker.uuid, "no second echo");
}

#[tokio::test]
async fn the_stream_has_sse_headers_and_starts_with_the_authenticate_frame() {
    let server = TestServer::start().await;
    let front = registered(&server).await;
    let url =
        server.url(&format!("{}/{}/{}", paths::STREAM_OPEN, front.uuid(), SessionUuid::new_v4()));
    let mut response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "text/event-stream");
    assert_eq!(header("cache-control"), "no-cache");
    assert_eq!(header("x-accel-buffering"), "no");
    let first = within(response.chunk()).await.unwrap().unwrap();
    let text = std::str::from_utf8(&first).unwrap();
    let prefix = format!("event: {AUTHENTICATE_EVENT}\ndata: {{\"backUuid\":");
    assert!(text.starts_with(&prefix), "{text}");
    assert!(text.contains("\"backKey\":") && text.contains("\"streamUuidEnc\":"), "{text}");
    assert!(text.ends_with("}\n\n"), "{text}");
}

#[tokio::test]
async fn graceful_shutdown_ends_open_streams() {
    let server = TestServer::start().await;
    let front = registered(&server).await;
    let mut active = front.connect(SessionUuid::new_v4(), None).await.unwrap();
    let mut pending = front.open(SessionUuid::new_v4(), None).await.unwrap().into_stream();
    // `stop` fails if `serve` does not return within five seconds.
    server.stop().await;
    assert!(within(active.next_event()).await.unwrap().is_none());
    assert!(within(pending.next_event()).await.unwrap().is_none());
}
