//! Eight tabs of one front: one stream for all of them (the browser allows six connections per
//! origin), targeted events still reach their tab, and the stream moves on when its tab closes.
//!
//! Eight fronts in one page behave as eight tabs here: each has its own session UUID, and the
//! Web Locks and the `BroadcastChannel` they share are the origin's, as between tabs.

use browser::page::{Role, StreamState};
use serde_json::json;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

use super::util::{self, Inbox, server};

/// The stream's lock held by something that never lets go and never relays (a frozen tab):
/// after the lock timeout the tab opens a stream of its own instead of waiting for ever.
#[wasm_bindgen_test]
async fn a_stream_lock_held_by_a_silent_holder_does_not_freeze_the_stream() {
    let base = server!();
    let identity = browser::identity::load_or_create().await.expect("identity");
    let stuck = util::StuckLock::hold(&format!("websession-stream:{}", identity.front_uuid)).await;
    let options =
        browser::page::FrontOptions { share: true, lock_timeout_ms: 300.0, ..util::options(base) };
    let front = util::open(options).await;
    assert!(util::wait_state(&front, StreamState::Active, 10_000).await, "{:?}", front.state());
    assert_eq!(front.role(), Role::Solo);
    let reply = front.request("echo", json!("own stream"), Default::default()).await;
    assert_eq!(reply.map(|r| r.data), Ok(json!("own stream")));
    front.close();
    stuck.release();
}

#[wasm_bindgen_test]
async fn eight_tabs_share_one_stream_and_hand_it_over() {
    let base = server!();
    let mut tabs = Vec::new();
    for _ in 0..8 {
        let options = browser::page::FrontOptions { share: true, ..util::options(base) };
        tabs.push(util::open(options).await);
    }
    let inboxes: Vec<Inbox> = tabs.iter().map(Inbox::of).collect();
    let all_active =
        util::wait_for(15_000, || tabs.iter().all(|t| t.state() == StreamState::Active));
    assert!(
        all_active.await,
        "states and roles: {:?}",
        tabs.iter().map(|t| (t.state(), t.role())).collect::<Vec<_>>()
    );
    let leaders = tabs.iter().filter(|t| t.role() == Role::Leader).count();
    let followers = tabs.iter().filter(|t| t.role() == Role::Follower).count();
    assert_eq!((leaders, followers), (1, 7));

    let front = tabs[0].front_uuid();
    for (n, tab) in tabs.iter().enumerate() {
        util::emit(base, front, Some(tab.session_uuid()), "mine", json!(n), false).await;
    }
    util::emit(base, front, None, "all", json!("x"), false).await;
    // A marker published last: once a tab has it, it has had everything published before it
    // (one stream, relayed in order), so what it holds now is all it will get of those.
    util::emit(base, front, None, "marker", json!(0), false).await;
    for (n, inbox) in inboxes.iter().enumerate() {
        let marked = inbox.wait(5_000, |e| e.iter().any(|e| e.meta.name == "marker")).await;
        assert!(marked, "tab {n}: {:?}", inbox.events());
    }
    for (n, inbox) in inboxes.iter().enumerate() {
        assert_eq!(inbox.data("mine"), vec![json!(n)], "tab {n}");
        assert_eq!(inbox.data("all"), vec![json!("x")], "tab {n}");
    }
    // A follower's request is answered through the leader's stream.
    let follower = tabs.iter().find(|t| t.role() == Role::Follower).expect("a follower");
    let reply = follower.request("echo", json!("via leader"), Default::default()).await;
    assert_eq!(reply.map(|r| r.data), Ok(json!("via leader")));

    // The leader's tab closes: another takes the stream over, and nothing is lost or repeated
    // meanwhile. Each tab gets a numbered sequence: the first half is published while the stream
    // changes hands, the second half after; then a marker for all.
    let leader = tabs.iter().position(|t| t.role() == Role::Leader).expect("a leader");
    tabs.remove(leader).close();
    let inboxes: Vec<Inbox> = tabs.iter().map(Inbox::of).collect();
    const SEQUENCE: i64 = 6;
    let publish = |from: i64, to: i64| {
        let tabs = &tabs;
        async move {
            for k in from..to {
                for tab in tabs {
                    let data = json!({"tab": tab.session_uuid().to_string(), "k": k});
                    util::emit(base, front, Some(tab.session_uuid()), "seq", data, false).await;
                }
            }
        }
    };
    publish(0, SEQUENCE / 2).await;
    let handed_over = util::wait_for(10_000, || {
        tabs.iter().filter(|t| t.role() == Role::Leader).count() == 1
            && tabs.iter().all(|t| t.state() == StreamState::Active)
    });
    assert!(handed_over.await, "no new leader");
    publish(SEQUENCE / 2, SEQUENCE).await;
    util::emit(base, front, None, "marker", json!(1), false).await;
    for (n, inbox) in inboxes.iter().enumerate() {
        let marked = inbox.wait(10_000, |e| e.iter().any(|e| e.meta.name == "marker")).await;
        assert!(marked, "tab {n} after the hand-over: {:?}", inbox.events());
    }
    for (n, (tab, inbox)) in tabs.iter().zip(&inboxes).enumerate() {
        let mine = tab.session_uuid().to_string();
        let expected: Vec<_> = (0..SEQUENCE).map(|k| json!({"tab": mine, "k": k})).collect();
        assert_eq!(inbox.data("seq"), expected, "tab {n}: each of its events once, in order");
        assert_eq!(inbox.data("marker"), vec![json!(1)], "tab {n}");
    }
    for tab in &tabs {
        tab.close();
    }
}

#[wasm_bindgen_test]
async fn without_shared_streams_every_tab_opens_its_own() {
    let base = server!();
    let old = util::OldBackend::install();
    let mut tabs = Vec::new();
    for _ in 0..3 {
        let options = browser::page::FrontOptions { share: true, ..util::options(base) };
        tabs.push(util::open(options).await);
    }
    let inboxes: Vec<Inbox> = tabs.iter().map(Inbox::of).collect();
    // The elected tab learns it from the answer's missing scope header and tells the others;
    // then every tab is on its own, with a stream of its own session.
    let settled = util::wait_for(15_000, || {
        tabs.iter().all(|t| t.state() == StreamState::Active && t.role() == Role::Solo)
    });
    assert!(
        settled.await,
        "states and roles: {:?}",
        tabs.iter().map(|t| (t.state(), t.role())).collect::<Vec<_>>()
    );
    let urls = old.stream_urls();
    old.remove();
    for tab in &tabs {
        let session = tab.session_uuid().to_string();
        assert!(urls.iter().any(|u| u.ends_with(&session)), "no stream of {session}: {urls:?}");
    }

    let front = tabs[0].front_uuid();
    for (n, tab) in tabs.iter().enumerate() {
        util::emit(base, front, Some(tab.session_uuid()), "mine", json!(n), false).await;
    }
    util::emit(base, front, None, "all", json!("x"), false).await;
    let marked: Vec<&Inbox> = inboxes.iter().collect();
    util::mark(base, front, &marked).await;
    for (n, inbox) in inboxes.iter().enumerate() {
        assert_eq!(inbox.data("mine"), vec![json!(n)], "tab {n}: its own event, once");
        assert_eq!(inbox.data("all"), vec![json!("x")], "tab {n}: the front's event, once");
    }
    for tab in &tabs {
        tab.close();
    }
}

#[wasm_bindgen_test]
async fn an_event_delivered_once_is_dropped_when_it_comes_again() {
    let base = server!();
    let mut tabs = Vec::new();
    for _ in 0..2 {
        let options = browser::page::FrontOptions { share: true, ..util::options(base) };
        tabs.push(util::open(options).await);
    }
    let settled = util::wait_for(15_000, || {
        tabs.iter().all(|t| t.state() == StreamState::Active)
            && tabs.iter().any(|t| t.role() == Role::Follower)
    });
    assert!(settled.await, "{:?}", tabs.iter().map(|t| (t.state(), t.role())).collect::<Vec<_>>());
    let follower = tabs.iter().find(|t| t.role() == Role::Follower).expect("a follower");
    let inbox = Inbox::of(follower);
    let front = follower.front_uuid();
    util::emit(base, front, Some(follower.session_uuid()), "once", json!(1), false).await;
    assert!(inbox.wait(5_000, |e| !e.is_empty()).await, "the follower got nothing");
    let first = inbox.events()[0].clone();

    // The same event relayed again on the tabs' channel, as a new leader replaying what the old
    // one relayed would: dropped by its `meta.uuid`. Then an event with a new `meta.uuid` the
    // same way, which arrives after it (a channel keeps its order) and is delivered.
    let channel =
        web_sys::BroadcastChannel::new(&format!("websession-front:{front}")).expect("a channel");
    let relay = |event: &protocol::event::ReverseEvent| {
        JsValue::from_str(&json!({"event": {"id": null, "event": event}}).to_string())
    };
    channel.post_message(&relay(&first)).expect("posted");
    let mut fresh = first.clone();
    fresh.meta.uuid = protocol::EventUuid::new_v4();
    fresh.data = json!(2);
    channel.post_message(&relay(&fresh)).expect("posted");
    assert!(inbox.wait(5_000, |e| e.iter().any(|e| e.data == json!(2))).await, "no fresh event");
    channel.close();
    assert_eq!(inbox.data("once"), vec![json!(1), json!(2)], "the repeated event was delivered");
    for tab in &tabs {
        tab.close();
    }
}
