//! What the original lost: events sent while the backend is away (the offline queue), a backend
//! whose store was wiped (re-registration), and events published while the stream was down
//! (resume with `Last-Event-ID`, nothing lost, nothing twice); a corrupt stored identity, and one
//! whose UUID someone else registered first (`front_key_conflict`).

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use browser::identity;
use browser::page::{Delivery, FrontOptions, SendOptions, StreamState};
use protocol::messages::Identity;
use protocol::{KeyPair, paths};
use serde_json::json;
use wasm_bindgen_test::wasm_bindgen_test;

use super::util::{self, Inbox, server};

#[wasm_bindgen_test]
async fn queued_events_go_out_in_order_after_the_reconnect_and_expired_ones_are_dropped() {
    let base = server!();
    let front = util::connect(util::options(base)).await;
    let inbox = Inbox::of(&front);
    // The front stays away until the gate opens, however long the sends below take: the queue
    // does not depend on the length of an outage.
    let gate = util::FetchGate::closed(paths::STREAM_OPEN);
    util::restart(base, false, 300).await;
    assert!(util::wait_state(&front, StreamState::Reconnecting, 10_000).await, "stream not lost");
    let mut deliveries = Vec::new();
    for n in 1..=2 {
        deliveries.push(front.send("echo", json!(n), SendOptions::default()).await);
    }
    let short = SendOptions { expires_in_ms: Some(300.0), ..SendOptions::default() };
    deliveries.push(front.send("echo", json!("expires"), short).await);
    deliveries.push(front.send("echo", json!(3), SendOptions::default()).await);
    assert!(deliveries.iter().all(|d| *d == Ok(Delivery::Queued)), "{deliveries:?}");
    util::wait_up(base).await;
    // Past the short one's expiry (by the clock that decides it) before the queue can drain.
    util::sleep(400).await;
    gate.remove();
    assert!(util::wait_state(&front, StreamState::Active, 10_000).await, "not back");
    // The last one queued: the ones before it went out first, or were dropped.
    let last = inbox.wait(8_000, |e| e.iter().any(|e| e.data == json!(3)));
    assert!(last.await, "got {:?}", inbox.events());
    util::mark(base, front.front_uuid(), &[&inbox]).await;
    assert_eq!(inbox.data("echo"), vec![json!(1), json!(2), json!(3)]);
    // Sent now, it overtakes nothing: the queue is empty.
    assert_eq!(front.send("echo", json!(4), SendOptions::default()).await, Ok(Delivery::Sent));
    front.close();
}

#[wasm_bindgen_test]
async fn the_front_registers_again_after_the_store_is_wiped() {
    let base = server!();
    let front = util::connect(util::options(base)).await;
    util::restart(base, true, 300).await;
    assert!(util::wait_state(&front, StreamState::Reconnecting, 10_000).await, "stream not lost");
    util::wait_up(base).await;
    assert!(util::wait_state(&front, StreamState::Active, 10_000).await, "no re-registration");
    assert!(front.front_bid().is_some());
    let reply = front.request("echo", json!("after wipe"), Default::default()).await;
    assert_eq!(reply.map(|r| r.data), Ok(json!("after wipe")));
    // The stored identity kept its UUID and key and has the new frontBid: a new tab connects.
    let tab = util::connect(util::options(base)).await;
    assert_eq!(tab.front_uuid(), front.front_uuid());
    assert_eq!(tab.front_bid(), front.front_bid());
    tab.close();
    front.close();
}

#[wasm_bindgen_test]
async fn events_published_while_the_server_restarts_arrive_once_in_order() {
    let base = server!();
    let front = util::connect(util::options(base)).await;
    let inbox = Inbox::of(&front);
    let (f, s) = (front.front_uuid(), Some(front.session_uuid()));
    util::emit(base, f, s, "seq", json!(1), false).await;
    assert!(inbox.wait(5_000, |e| e.len() == 1).await);
    // The stream stays down until the gate opens, so the events below are published while it
    // is: they come by the replay (`Last-Event-ID`), not live.
    let gate = util::FetchGate::closed(paths::STREAM_OPEN);
    util::restart(base, false, 200).await;
    assert!(util::wait_state(&front, StreamState::Reconnecting, 10_000).await, "stream not lost");
    util::wait_up(base).await;
    util::emit(base, f, s, "seq", json!(2), false).await;
    util::emit(base, f, None, "seq", json!(3), false).await;
    let last = util::emit(base, f, s, "seq", json!(4), false).await;
    assert_ne!(front.state(), StreamState::Active, "the replay path is what this tests");
    gate.remove();
    assert!(util::wait_state(&front, StreamState::Active, 10_000).await, "not back");
    assert!(inbox.wait(5_000, |e| e.len() >= 4).await, "got {:?}", inbox.events());
    assert_eq!(front.last_event_id(), last["id"].as_i64().map(|id| id.to_string()));
    util::mark(base, f, &[&inbox]).await;
    assert_eq!(inbox.data("seq"), vec![json!(1), json!(2), json!(3), json!(4)]);
    let uuids: HashSet<_> = inbox.without_markers().iter().map(|e| e.meta.uuid).collect();
    assert_eq!(uuids.len(), 4);
    front.close();
}

#[wasm_bindgen_test]
async fn a_corrupt_stored_identity_is_replaced_and_reported() {
    let base = server!();
    let good = identity::load_or_create().await.expect("identity");
    // A record whose public key is not its secret key's.
    let other = KeyPair::generate();
    let broken = Identity {
        front_keys: KeyPair { public: other.public, secret: good.front_keys.secret.clone() },
        ..good.clone()
    };
    identity::save(&broken).await.expect("saved");

    let front = util::connect(util::options(base)).await;
    assert_ne!(front.front_uuid(), good.front_uuid, "a new identity replaced the corrupt one");
    // The replacement happened before anyone listened: the first listener hears of it.
    let heard = Rc::new(RefCell::new(Vec::new()));
    let record = heard.clone();
    let _sub =
        front.on_error(move |e| record.borrow_mut().push((e.code().to_owned(), e.to_string())));
    assert!(util::wait_for(2_000, || !heard.borrow().is_empty()).await, "nothing reported");
    let (code, message) = heard.borrow()[0].clone();
    assert_eq!(code, "identity_error");
    assert!(message.contains("corrupt"), "{message}");
    // And the new front works.
    let reply = front.request("echo", json!("new front"), Default::default()).await;
    assert_eq!(reply.map(|r| r.data), Ok(json!("new front")));
}

/// The backend's store was reset and someone else registered this front's UUID with another
/// key first: the tab takes a new identity, registers it and goes on, and says so in `onError`.
#[wasm_bindgen_test]
async fn a_front_key_conflict_gives_a_new_identity_instead_of_stopping() {
    let base = server!();
    let mine = Identity {
        front_bid: None,
        front_keys: KeyPair::generate(),
        front_uuid: protocol::FrontUuid::new_v4(),
    };
    let mut thief = Identity { front_keys: KeyPair::generate(), ..mine.clone() };
    identity::register(base, &mut thief).await.expect("the other key registers first");
    identity::save(&mine).await.expect("saved");

    let front = util::open(util::options(base)).await;
    let heard = Rc::new(RefCell::new(Vec::new()));
    let record = heard.clone();
    let _sub =
        front.on_error(move |e| record.borrow_mut().push((e.code().to_owned(), e.to_string())));
    assert!(util::wait_state(&front, StreamState::Active, 10_000).await, "{:?}", heard.borrow());
    assert_ne!(front.front_uuid(), mine.front_uuid, "a new identity replaced the refused one");
    assert_eq!(heard.borrow().first().map(|(code, _)| code.as_str()), Some("front_key_conflict"));
    let reply = front.request("echo", json!("new identity"), Default::default()).await;
    assert_eq!(reply.map(|r| r.data), Ok(json!("new identity")));
    // The new identity is the stored one: the next tab uses it too.
    let stored = identity::load().await.expect("loads").expect("stored");
    assert_eq!((stored.front_uuid, stored.front_bid), (front.front_uuid(), front.front_bid()));
}

#[wasm_bindgen_test]
async fn a_connection_silent_for_two_heartbeats_is_dropped_and_reopened() {
    let base = server!();
    // The backend sends a heartbeat every 15 s. This front expects one every 50 ms, so its
    // connection is silent for longer than two intervals (and the 1 s grace) soon after each
    // activation; a front with the watchdog off keeps its connection.
    let watched = util::connect(FrontOptions { heartbeat_ms: 50.0, ..util::options(base) }).await;
    let unwatched = util::connect(FrontOptions { heartbeat_ms: 0.0, ..util::options(base) }).await;
    let changes = Rc::new(RefCell::new(Vec::new()));
    let record = changes.clone();
    let _watched = watched.on_state(move |state, _| record.borrow_mut().push(state));
    let steady = Rc::new(RefCell::new(Vec::new()));
    let record = steady.clone();
    let _unwatched = unwatched.on_state(move |state, _| record.borrow_mut().push(state));
    let reopened = util::wait_for(15_000, || {
        let changes = changes.borrow();
        let lost = changes.iter().position(|s| *s == StreamState::Reconnecting);
        lost.is_some_and(|at| changes[at..].contains(&StreamState::Active))
    });
    // Copied out first: a panic holding the borrow would leave it held (no unwinding on wasm32),
    // and the listener would panic when the next test closes this front.
    let reopened = reopened.await;
    let seen = changes.borrow().clone();
    assert!(reopened, "dropped and reopened? {seen:?}");
    // Reopened, it works: an event reaches it.
    let inbox = Inbox::of(&watched);
    let (f, s) = (watched.front_uuid(), Some(watched.session_uuid()));
    util::emit(base, f, s, "after", json!(1), false).await;
    assert!(inbox.wait(10_000, |e| !e.is_empty()).await, "nothing after the reopen");
    let steady = steady.borrow().clone();
    assert!(steady.is_empty(), "the unwatched front changed: {steady:?}");
    assert_eq!(unwatched.state(), StreamState::Active);
}

#[wasm_bindgen_test]
async fn a_send_while_the_queue_drains_waits_and_goes_out_after_it() {
    let base = server!();
    let front = util::connect(util::options(base)).await;
    let inbox = Inbox::of(&front);
    let gate = util::FetchGate::closed(paths::STREAM_OPEN);
    util::restart(base, false, 200).await;
    assert!(util::wait_state(&front, StreamState::Reconnecting, 10_000).await, "stream not lost");
    for n in 1..=2 {
        assert_eq!(
            front.send("echo", json!(n), SendOptions::default()).await,
            Ok(Delivery::Queued)
        );
    }
    // At the activation the queue starts to drain; a send made from the state listener runs
    // while it does.
    let during = Rc::new(RefCell::new(None));
    let slot = during.clone();
    let sender = front.clone();
    let _sub = front.on_state(move |state, _| {
        if state == StreamState::Active && slot.borrow().is_none() {
            *slot.borrow_mut() = Some(None);
            let (sender, slot) = (sender.clone(), slot.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let result = sender.send("echo", json!(3), SendOptions::default()).await;
                *slot.borrow_mut() = Some(Some(result));
            });
        }
    });
    util::wait_up(base).await;
    gate.remove();
    let sent = util::wait_for(10_000, || during.borrow().as_ref().is_some_and(Option::is_some));
    assert!(sent.await, "the send made during the drain did not resolve");
    let result = during.borrow().clone().flatten();
    // Not queued behind the queue: sent directly, once the queue was out.
    assert_eq!(result, Some(Ok(Delivery::Sent)));
    assert!(inbox.wait(10_000, |e| e.iter().any(|e| e.data == json!(3))).await);
    util::mark(base, front.front_uuid(), &[&inbox]).await;
    assert_eq!(inbox.data("echo"), vec![json!(1), json!(2), json!(3)], "in order, once each");
    front.close();
}
