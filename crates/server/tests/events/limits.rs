//! The bounds on what a client can make the event service keep or do (issue: "Hardening"),
//! each pinned by a regression test named after the weakness it closes.

use std::time::Duration;

use loadgen::{ClientError, Front};
use protocol::{ErrorCode, SessionUuid, Timestamp, paths};
use serde_json::json;

use super::registered;
use crate::util::TestServer;

fn code<T: std::fmt::Debug>(result: &Result<T, ClientError>) -> Option<ErrorCode> {
    result.as_ref().err().and_then(ClientError::code)
}

/// Regression: a direct event stamped `published` = 2001-01-01 was accepted and handled, and a
/// captured event could be sent again with other data once its dedupe record was swept.
#[tokio::test]
async fn a_direct_event_published_outside_the_window_is_a_stale_event() {
    let server = TestServer::start().await;
    let front = registered(&server).await;
    let tab = front.connect(SessionUuid::new_v4(), None).await.unwrap();
    let peer = tab.peer().unwrap();
    let path = format!("{}/echo", paths::DIRECT);
    for published in [
        Timestamp::from_millis(978_307_200_000),
        Timestamp::now().plus_millis(-6 * 60 * 1000),
        Timestamp::now().plus_millis(6 * 60 * 1000),
    ] {
        let mut event = tab.direct_event("echo", json!("captured"), false).unwrap();
        event.meta.published = published;
        event.meta.stamp = peer.stamp(&event.meta.uuid, published);
        let sent = server.client().post_json::<_, bool>(&path, &event).await;
        assert_eq!(code(&sent), Some(ErrorCode::StaleEvent), "published {published}: {sent:?}");
        assert_eq!(sent.unwrap_err().status(), Some(403));
    }
    // Within the window (a front whose clock is a little off) it is accepted.
    let mut event = tab.direct_event("echo", json!("fresh"), false).unwrap();
    event.meta.published = Timestamp::now().plus_millis(-60 * 1000);
    event.meta.stamp = peer.stamp(&event.meta.uuid, event.meta.published);
    assert!(server.client().post_json::<_, bool>(&path, &event).await.unwrap());
}

/// Regression: `expired: "9999-12-31T23:59:59.999Z"` made a direct event's dedupe record
/// permanent.
#[tokio::test]
async fn a_direct_event_expiring_beyond_the_maximum_is_an_invalid_event() {
    let server = TestServer::start().await;
    let front = registered(&server).await;
    let tab = front.connect(SessionUuid::new_v4(), None).await.unwrap();
    let path = format!("{}/echo", paths::DIRECT);
    let mut event = tab.direct_event("echo", json!(1), false).unwrap();
    event.meta.expired = Some("9999-12-31T23:59:59.999Z".parse().unwrap());
    let sent = server.client().post_json::<_, bool>(&path, &event).await;
    assert_eq!(code(&sent), Some(ErrorCode::InvalidEvent), "{sent:?}");
    assert_eq!(sent.unwrap_err().status(), Some(400));
    let mut event = tab.direct_event("echo", json!(2), false).unwrap();
    event.meta.expired = Some(Timestamp::now().plus_millis(23 * 3600 * 1000));
    assert!(server.client().post_json::<_, bool>(&path, &event).await.unwrap(), "a day is fine");
}

/// Regression: one front opened 50 activated streams.
#[tokio::test]
async fn a_front_gets_at_most_its_limit_of_active_streams() {
    let server = TestServer::start_with(|config| config.events.max_streams_per_front = 2).await;
    let front = registered(&server).await;
    let (one, two) = (SessionUuid::new_v4(), SessionUuid::new_v4());
    let first = front.connect(one, None).await.unwrap();
    let _second = front.connect(two, None).await.unwrap();
    let third = front.connect(SessionUuid::new_v4(), None).await;
    assert_eq!(code(&third), Some(ErrorCode::TooManyStreams), "{third:?}");
    assert_eq!(third.unwrap_err().status(), Some(429));
    // A tab that reconnects replaces its own stream: that is not one more.
    let again = front.connect(one, None).await.expect("a replacement is not one more");
    drop((first, again));
    // Once a tab has gone (recorded as its connection closes), another may come.
    let mut tries = 0;
    loop {
        match front.connect(SessionUuid::new_v4(), None).await {
            Ok(_) => break,
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::TooManyStreams), "{e}"),
        }
        tries += 1;
        assert!(tries < 250, "the closed stream never made room");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Regression: 100 registrations in 0.1 s from one address were all accepted.
#[tokio::test]
async fn registrations_from_one_address_are_rate_limited() {
    let server = TestServer::start_with(|config| {
        config.events.registrations_per_sec = Some(0.5);
        config.events.registration_burst = 3;
        config.events.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let client = server.client();
    for _ in 0..3 {
        Front::generate(&client).register().await.expect("within the burst");
    }
    let limited = Front::generate(&client).register().await;
    assert_eq!(code(&limited), Some(ErrorCode::RateLimited), "{limited:?}");
    // The answer says when to come back.
    let uuid = protocol::FrontUuid::new_v4();
    let body = json!({"frontUuid": uuid, "publicKey": protocol::KeyPair::generate().public});
    let response = reqwest::Client::new()
        .post(server.url(&format!("{}/{uuid}", paths::REGISTER)))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    // Behind the trusted proxy, each client address has a bucket of its own.
    let forwarded = reqwest::Client::new()
        .post(server.url(&format!("{}/{uuid}", paths::REGISTER)))
        .header("x-forwarded-for", "203.0.113.7")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 200, "another client behind the proxy");
}
