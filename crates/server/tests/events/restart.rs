//! A restart on the same data directory loses no front, no identity and no event.

use protocol::SessionUuid;
use serde_json::json;

use super::{long_lived, next};
use crate::util::{TestServer, within};

#[tokio::test]
async fn after_a_restart_the_front_keeps_its_bid_and_missed_events_arrive_once() {
    let server = TestServer::start().await;
    let mut front = loadgen::Front::generate(&server.client());
    let bid = front.register().await.unwrap();
    let back_uuid = server.state.events.back_uuid();
    let back_key = server.state.events.back_key();
    let session = SessionUuid::new_v4();
    let mut tab = front.connect(session, None).await.unwrap();
    let seen = server
        .hub()
        .publish_to_session(front.uuid(), session, "seen", json!(0), long_lived())
        .await
        .unwrap();
    assert_eq!(next(&mut tab).await.id, Some(seen.id));
    let last_event_id = tab.last_event_id().to_owned();

    // Sent while the tab was away, before the restart.
    drop(tab);
    let before = server
        .hub()
        .publish_to_session(front.uuid(), session, "before-restart", json!(1), long_lived())
        .await
        .unwrap();

    let server = server.restart().await;
    assert_eq!(server.state.events.back_uuid(), back_uuid, "the back's identity is kept");
    assert_eq!(server.state.events.back_key(), back_key);
    let hub = server.hub();
    let after_tab = hub
        .publish_to_session(front.uuid(), session, "after-restart", json!(2), long_lived())
        .await
        .expect("the session is still known");
    let after_front =
        hub.publish_to_front(front.uuid(), "to-front", json!(3), long_lived()).await.unwrap();

    let mut front =
        loadgen::Front::from_parts(&server.client(), front.uuid(), front.keys().clone());
    assert_eq!(front.register().await.unwrap(), bid, "still registered, same frontBid");
    let mut tab = front.connect(session, Some(&last_event_id)).await.unwrap();
    for expected in [before, after_tab, after_front] {
        let got = next(&mut tab).await;
        assert_eq!((got.id, got.event.meta.uuid), (Some(expected.id), expected.uuid));
    }
    let live = hub.publish_to_front(front.uuid(), "live", json!(4), long_lived()).await.unwrap();
    assert_eq!(next(&mut tab).await.id, Some(live.id), "nothing twice");
    assert_eq!(live.id, after_front.id + 1, "the sequence continues across the restart");
}

#[tokio::test]
async fn a_stream_open_during_shutdown_ends_and_the_client_can_resume_on_the_new_server() {
    let server = TestServer::start().await;
    let mut front = loadgen::Front::generate(&server.client());
    front.register().await.unwrap();
    let session = SessionUuid::new_v4();
    let mut tab = front.connect(session, None).await.unwrap();
    let first = server
        .hub()
        .publish_to_session(front.uuid(), session, "one", json!(1), long_lived())
        .await
        .unwrap();
    assert_eq!(next(&mut tab).await.id, Some(first.id));
    let server = server.restart().await;
    assert!(within(tab.next_event()).await.unwrap().is_none(), "shutdown ended the stream");

    let front = loadgen::Front::from_parts(&server.client(), front.uuid(), front.keys().clone());
    let mut tab = front.connect(session, Some(tab.last_event_id())).await.unwrap();
    let second = server
        .hub()
        .publish_to_session(front.uuid(), session, "two", json!(2), long_lived())
        .await
        .unwrap();
    assert_eq!(next(&mut tab).await.id, Some(second.id));
}
