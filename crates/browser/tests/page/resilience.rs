//! What the original lost: events sent while the backend is away (the offline queue), a backend
//! whose store was wiped (re-registration), and events published while the stream was down
//! (resume with `Last-Event-ID`, nothing lost, nothing twice); and a corrupt stored identity.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use browser::identity;
use browser::page::{Delivery, SendOptions, StreamState};
use protocol::KeyPair;
use protocol::messages::Identity;
use serde_json::json;
use wasm_bindgen_test::wasm_bindgen_test;

use super::util::{self, Inbox, server};

#[wasm_bindgen_test]
async fn queued_events_go_out_in_order_after_the_reconnect_and_expired_ones_are_dropped() {
    let base = server!();
    let front = util::connect(util::options(base)).await;
    let inbox = Inbox::of(&front);
    util::restart(base, false, 2_500).await;
    assert!(util::wait_state(&front, StreamState::Reconnecting, 3_000).await, "stream not lost");
    let mut deliveries = Vec::new();
    for n in 1..=2 {
        deliveries.push(front.send("echo", json!(n), SendOptions::default()).await);
    }
    let short = SendOptions { expires_in_ms: Some(300.0), ..SendOptions::default() };
    deliveries.push(front.send("echo", json!("expires"), short).await);
    deliveries.push(front.send("echo", json!(3), SendOptions::default()).await);
    assert!(deliveries.iter().all(|d| *d == Ok(Delivery::Queued)), "{deliveries:?}");
    util::wait_up(base).await;
    assert!(util::wait_state(&front, StreamState::Active, 10_000).await, "not back");
    assert!(inbox.wait(8_000, |e| e.len() >= 3).await, "got {:?}", inbox.events());
    util::sleep(500).await;
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
    assert!(util::wait_state(&front, StreamState::Reconnecting, 3_000).await, "stream not lost");
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
    let mut options = util::options(base);
    // Slow first retry, so that the events below are published before the stream is back.
    options.backoff_initial_ms = 3_000.0;
    let front = util::connect(options).await;
    let inbox = Inbox::of(&front);
    let (f, s) = (front.front_uuid(), Some(front.session_uuid()));
    util::emit(base, f, s, "seq", json!(1), false).await;
    assert!(inbox.wait(5_000, |e| e.len() == 1).await);
    util::restart(base, false, 200).await;
    assert!(util::wait_state(&front, StreamState::Reconnecting, 3_000).await, "stream not lost");
    util::wait_up(base).await;
    util::emit(base, f, s, "seq", json!(2), false).await;
    util::emit(base, f, None, "seq", json!(3), false).await;
    let last = util::emit(base, f, s, "seq", json!(4), false).await;
    assert_ne!(front.state(), StreamState::Active, "the replay path is what this tests");
    assert!(util::wait_state(&front, StreamState::Active, 10_000).await, "not back");
    assert!(inbox.wait(5_000, |e| e.len() >= 4).await, "got {:?}", inbox.events());
    util::sleep(500).await;
    assert_eq!(inbox.data("seq"), vec![json!(1), json!(2), json!(3), json!(4)]);
    let uuids: HashSet<_> = inbox.events().iter().map(|e| e.meta.uuid).collect();
    assert_eq!(uuids.len(), 4);
    assert_eq!(front.last_event_id(), last["id"].as_i64().map(|id| id.to_string()));
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
