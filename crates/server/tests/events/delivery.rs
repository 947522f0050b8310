//! Delivery to the right tabs, and without loss when no stream is open.

use protocol::SessionUuid;
use serde_json::json;
use server::events::PublishError;

use super::{long_lived, next, registered};
use crate::util::{TestServer, wait_until, within};

#[tokio::test]
async fn two_sessions_of_one_front_both_get_a_broadcast_and_only_one_a_targeted_event() {
    let server = TestServer::start().await;
    let front = registered(&server).await;
    let (one, two) = (SessionUuid::new_v4(), SessionUuid::new_v4());
    let mut tab_one = front.connect(one, None).await.unwrap();
    let mut tab_two = front.connect(two, None).await.unwrap();

    let request = tab_one.send("broadcast", json!({"hello": "everyone"})).await.unwrap();
    for tab in [&mut tab_one, &mut tab_two] {
        let got = next(tab).await;
        assert_eq!(got.event.meta.name, "broadcast");
        assert_eq!(got.event.meta.request_uuid, Some(request));
        assert_eq!(got.event.meta.session_uuid, None);
        assert_eq!(got.event.data, json!({"hello": "everyone"}));
    }

    let hub = server.hub();
    let only_two = hub
        .publish_to_session(front.uuid(), two, "only-two", json!(2), Default::default())
        .await
        .unwrap();
    let marker = hub
        .publish_to_front(front.uuid(), "marker", json!(null), Default::default())
        .await
        .unwrap();
    assert_eq!(next(&mut tab_two).await.event.meta.uuid, only_two.uuid);
    assert_eq!(next(&mut tab_two).await.event.meta.uuid, marker.uuid);
    assert_eq!(next(&mut tab_one).await.event.meta.uuid, marker.uuid, "tab one skipped only-two");
}

#[tokio::test]
async fn a_new_stream_for_a_session_replaces_the_old_one() {
    let server = TestServer::start().await;
    let front = registered(&server).await;
    let session = SessionUuid::new_v4();
    let mut old = front.connect(session, None).await.unwrap();
    let mut new = front.connect(session, None).await.unwrap();
    assert!(within(old.next_event()).await.unwrap().is_none(), "the old stream ends");
    let event = server
        .hub()
        .publish_to_session(front.uuid(), session, "hi", json!(1), Default::default())
        .await
        .unwrap();
    assert_eq!(next(&mut new).await.event.meta.uuid, event.uuid);
}

#[tokio::test]
async fn events_sent_while_a_front_has_no_stream_arrive_when_one_activates() {
    let server = TestServer::start().await;
    let front = registered(&server).await;
    let hub = server.hub();
    let first = hub.publish_to_front(front.uuid(), "queued", json!(1), long_lived()).await.unwrap();
    let second =
        hub.publish_to_front(front.uuid(), "queued", json!(2), long_lived()).await.unwrap();

    // A tab that remembers nothing (no Last-Event-ID) gets what no stream was given yet.
    let session = SessionUuid::new_v4();
    let mut tab = front.connect(session, None).await.unwrap();
    assert_eq!(next(&mut tab).await.id, Some(first.id));
    assert_eq!(next(&mut tab).await.id, Some(second.id));
    drop(tab);
    // Until the server sees the tab go, it hands events to the old stream (and they would
    // come back only with a Last-Event-ID).
    wait_until(|| server.state.events.stream_counts() == (0, 0)).await;

    // Its own events, sent while its stream is down, wait for it as well.
    let mine = hub.publish_to_session(front.uuid(), session, "mine", json!(3), long_lived());
    let mine = mine.await.unwrap();
    let mut tab = front.connect(session, None).await.unwrap();
    assert_eq!(next(&mut tab).await.id, Some(mine.id), "delivered ones are not sent again");
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_gets_every_later_event_once_header_or_query() {
    let server = TestServer::start().await;
    let front = registered(&server).await;
    let session = SessionUuid::new_v4();
    let hub = server.hub();
    let mut tab = front.connect(session, None).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        let published =
            hub.publish_to_session(front.uuid(), session, "n", json!(n), long_lived()).await;
        ids.push(published.unwrap().id);
    }
    for id in &ids {
        assert_eq!(next(&mut tab).await.id, Some(*id));
    }
    assert_eq!(tab.last_event_id(), ids[4].to_string());
    drop(tab);

    // The client lost the last three (say): it resumes after the second.
    let mut tab = front.connect(session, Some(&ids[1].to_string())).await.unwrap();
    for id in &ids[2..] {
        assert_eq!(next(&mut tab).await.id, Some(*id));
    }
    let live = hub.publish_to_front(front.uuid(), "live", json!(5), long_lived()).await.unwrap();
    assert_eq!(next(&mut tab).await.id, Some(live.id), "no duplicates before the live event");
    drop(tab);

    let pending = front.open_with_query(session, &ids[3].to_string()).await.unwrap();
    let mut tab = pending.activate().await.unwrap();
    assert_eq!(next(&mut tab).await.id, Some(ids[4]));
    assert_eq!(next(&mut tab).await.id, Some(live.id));
}

#[tokio::test]
async fn a_last_event_id_beyond_the_front_sequence_is_not_trusted() {
    // After a store reset the front registers again and starts at 1, but a browser's
    // EventSource still sends the old Last-Event-ID: it must not hide the new events.
    let server = TestServer::start().await;
    let front = registered(&server).await;
    let session = SessionUuid::new_v4();
    let hub = server.hub();
    let queued =
        hub.publish_to_front(front.uuid(), "queued", json!(1), long_lived()).await.unwrap();
    let mut tab = front.connect(session, Some("9000")).await.unwrap();
    assert_eq!(next(&mut tab).await.id, Some(queued.id));
    assert_eq!(tab.events_lost(), 1, "the stream says it could not resume exactly");
    let live = hub.publish_to_front(front.uuid(), "live", json!(2), long_lived()).await.unwrap();
    assert_eq!(next(&mut tab).await.id, Some(live.id));
    assert_eq!(tab.events_lost(), 1, "once");
}

#[tokio::test]
async fn publishing_to_an_unknown_session_or_front_fails() {
    let server = TestServer::start().await;
    let front = registered(&server).await;
    let hub = server.hub();
    let unknown = SessionUuid::new_v4();
    let error = hub
        .publish_to_session(front.uuid(), unknown, "x", json!(null), Default::default())
        .await
        .unwrap_err();
    assert!(matches!(error, server::events::PublishError::SessionNotFound(s) if s == unknown));
    let stranger = protocol::FrontUuid::new_v4();
    let error =
        hub.publish_to_front(stranger, "x", json!(null), Default::default()).await.unwrap_err();
    assert!(matches!(error, server::events::PublishError::FrontNotRegistered(f) if f == stranger));
}

#[tokio::test]
async fn publish_to_all_reaches_every_active_stream_and_resuming_ones() {
    let server = TestServer::start().await;
    let mut tabs = Vec::new();
    for _ in 0..3 {
        let front = registered(&server).await;
        tabs.push(front.connect(SessionUuid::new_v4(), None).await.unwrap());
    }
    let offline = registered(&server).await;
    let hub = server.hub();
    let published = hub.publish_to_all("news", json!("hi"), long_lived()).await.unwrap();
    let mut uuids = Vec::new();
    for tab in &mut tabs {
        let got = next(tab).await;
        assert_eq!(got.event.meta.name, "news");
        assert_eq!((got.event.meta.front_uuid, got.event.meta.stamp.as_ref()), (None, None));
        uuids.push((got.id, got.event.meta.uuid));
    }
    assert!(
        uuids.iter().all(|got| *got == (Some(published.id), published.uuid)),
        "one event: one id, one meta.uuid, handed to the three active streams"
    );

    // A fresh stream (no Last-Event-ID) does not get it; a resuming one does.
    let mut fresh = offline.connect(SessionUuid::new_v4(), None).await.unwrap();
    let marker = hub.publish_to_front(offline.uuid(), "marker", json!(null), long_lived());
    let marker = marker.await.unwrap();
    assert_eq!(next(&mut fresh).await.event.meta.uuid, marker.uuid);
    let mut resuming = offline.connect(SessionUuid::new_v4(), Some("0")).await.unwrap();
    assert_eq!(next(&mut resuming).await.event.meta.uuid, uuids[0].1);
    assert_eq!(next(&mut resuming).await.event.meta.uuid, marker.uuid);

    let sealed = server::events::PublishOptions { encrypted: true, ..Default::default() };
    let refused = hub.publish_to_all("news", json!("hi"), sealed).await;
    assert!(matches!(refused, Err(server::events::PublishError::Unsupported(_))), "{refused:?}");
}

/// The stream one tab holds for all tabs of its front (`?scope=front`, the page client's
/// sharing): it carries the events of every session of the front, live and in the replay, and
/// the sessions it serves can send direct events and be answered without a stream of their own.
#[tokio::test]
async fn a_front_scoped_stream_carries_every_session_of_its_front() {
    let server = TestServer::start().await;
    let front = registered(&server).await;
    let hub = server.hub();
    let (leader, follower, gone) =
        (SessionUuid::new_v4(), SessionUuid::new_v4(), SessionUuid::new_v4());

    // Without a front-scoped stream, a session that no stream ever served is unknown.
    let refused =
        hub.publish_to_session(front.uuid(), follower, "early", json!(0), Default::default());
    assert!(matches!(refused.await, Err(PublishError::SessionNotFound(s)) if s == follower));

    // A tab that had a stream of its own and left: its event waits, undelivered.
    let plain = front.open(gone, None).await.unwrap();
    assert!(!plain.into_stream().front_scope(), "a plain open is not front-scoped");
    let tab = front.connect(gone, None).await.unwrap();
    drop(tab);
    wait_until(|| server.state.events.stream_counts() == (0, 0)).await;
    let waiting = hub.publish_to_session(front.uuid(), gone, "waiting", json!(1), long_lived());
    let waiting = waiting.await.unwrap();

    let pending = front.open_front_scoped(leader, None).await.unwrap();
    let mut scoped = pending.activate().await.unwrap();
    assert!(scoped.front_scope(), "the backend honours ?scope=front");
    let replayed = next(&mut scoped).await;
    assert_eq!(replayed.id, Some(waiting.id), "the replay holds other sessions' events");
    assert_eq!(replayed.event.meta.session_uuid, Some(gone));

    // Live: an event for a session served by the scoped stream reaches it, addressed.
    let to_follower =
        hub.publish_to_session(front.uuid(), follower, "late", json!(2), Default::default());
    let to_follower = to_follower.await.unwrap();
    let got = next(&mut scoped).await;
    assert_eq!(got.event.meta.uuid, to_follower.uuid);
    assert_eq!(got.event.meta.session_uuid, Some(follower));

    // The follower sends its own direct event; the echo comes back for it on the scoped stream.
    let mut event = scoped.direct_event("echo", json!("from the follower"), false).unwrap();
    event.meta.session_uuid = follower;
    scoped.send_event(&event).await.unwrap();
    let echo = next(&mut scoped).await;
    assert_eq!(echo.event.meta.request_uuid, Some(event.meta.uuid));
    assert_eq!(echo.event.meta.session_uuid, Some(follower));
    assert_eq!(echo.event.data, json!("from the follower"));

    // A plain stream of another session gets only its own and the front's events.
    let other = SessionUuid::new_v4();
    let mut plain = front.connect(other, None).await.unwrap();
    hub.publish_to_session(front.uuid(), follower, "not-for-other", json!(3), Default::default())
        .await
        .unwrap();
    let marker = hub.publish_to_front(front.uuid(), "marker", json!(4), Default::default());
    let marker = marker.await.unwrap();
    assert_eq!(next(&mut plain).await.event.meta.uuid, marker.uuid);
    assert_eq!(next(&mut scoped).await.event.meta.name, "not-for-other");
    assert_eq!(next(&mut scoped).await.event.meta.uuid, marker.uuid, "each event once");
}

/// An event for more streams than `--fan-out-batch` is handed over by the fan-out task, an
/// event for one tab at once; the later one must not overtake the earlier on a stream that gets
/// both (a stream skips an id below one it has written, so overtaking would lose the earlier
/// event). Every tab gets its events complete and in id order.
#[tokio::test]
async fn events_handed_over_at_once_do_not_overtake_ones_the_fan_out_task_still_holds() {
    let server = TestServer::start_with(|config| config.events.fan_out_batch = 1).await;
    let front = registered(&server).await;
    let sessions: Vec<SessionUuid> = (0..3).map(|_| SessionUuid::new_v4()).collect();
    let mut tabs = Vec::new();
    for session in &sessions {
        tabs.push(front.connect(*session, None).await.unwrap());
    }
    let hub = server.hub();
    let mut expected: Vec<Vec<i64>> = vec![Vec::new(); sessions.len()];
    for round in 0..10 {
        let all = hub.publish_to_front(front.uuid(), "all", json!(round), Default::default());
        let all = all.await.unwrap();
        expected.iter_mut().for_each(|ids| ids.push(all.id));
        let options = Default::default();
        let one = hub.publish_to_session(front.uuid(), sessions[0], "one", json!(round), options);
        expected[0].push(one.await.unwrap().id);
    }
    for (tab, expected) in tabs.iter_mut().zip(&expected) {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            got.push(next(tab).await.id.unwrap());
        }
        assert_eq!(&got, expected);
    }
}
