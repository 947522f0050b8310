//! The handshake and the reverse stream: activation, targeted and front-wide events, sealed data.

use browser::page::StreamState;
use serde_json::json;
use wasm_bindgen_test::wasm_bindgen_test;

use super::util::{self, Inbox, server};

#[wasm_bindgen_test]
async fn handshake_reaches_active() {
    let base = server!();
    let front = util::connect(util::options(base)).await;
    assert_eq!(front.state(), StreamState::Active);
    assert!(front.front_bid().is_some(), "the front was registered");
    // The identity is the origin's: a second front in the same page has the same UUID.
    let second = util::connect(util::options(base)).await;
    assert_eq!(second.front_uuid(), front.front_uuid());
    assert_ne!(second.session_uuid(), front.session_uuid());
    second.close();
    front.close();
    assert_eq!(front.state(), StreamState::Closed);
}

#[wasm_bindgen_test]
async fn targeted_events_reach_one_tab_and_broadcasts_every_tab() {
    let base = server!();
    let a = util::connect(util::options(base)).await;
    let b = util::connect(util::options(base)).await;
    let (inbox_a, inbox_b) = (Inbox::of(&a), Inbox::of(&b));
    let front = a.front_uuid();
    util::emit(base, front, Some(a.session_uuid()), "to-a", json!({"n": 1}), false).await;
    util::emit(base, front, None, "to-all", json!({"n": 2}), false).await;
    assert!(inbox_a.wait(5_000, |e| e.len() == 2).await, "a got {:?}", inbox_a.events());
    assert!(inbox_b.wait(5_000, |e| !e.is_empty()).await, "b got {:?}", inbox_b.events());
    util::mark(base, front, &[&inbox_a, &inbox_b]).await;
    assert_eq!(inbox_a.data("to-a"), vec![json!({"n": 1})]);
    assert_eq!(inbox_a.data("to-all"), vec![json!({"n": 2})]);
    assert_eq!(inbox_b.data("to-a"), Vec::<serde_json::Value>::new(), "not b's event");
    assert_eq!(inbox_b.data("to-all"), vec![json!({"n": 2})]);
    assert_eq!(inbox_a.without_markers().len(), 2, "{:?}", inbox_a.events());
    assert_eq!(inbox_b.without_markers().len(), 1, "{:?}", inbox_b.events());
    let targeted = &inbox_a.events()[0];
    assert_eq!(targeted.meta.session_uuid, Some(a.session_uuid()));
    assert_eq!(targeted.meta.front_uuid, Some(front));
    a.close();
    b.close();
}

#[wasm_bindgen_test]
async fn named_listeners_get_only_their_events() {
    let base = server!();
    let front = util::connect(util::options(base)).await;
    let pings = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = pings.clone();
    front.on(Some("ping"), move |event| seen.borrow_mut().push(event.data.clone()));
    let all = Inbox::of(&front);
    let (f, s) = (front.front_uuid(), Some(front.session_uuid()));
    util::emit(base, f, s, "pong", json!(0), false).await;
    util::emit(base, f, s, "ping", json!(1), false).await;
    assert!(all.wait(5_000, |e| e.len() == 2).await);
    assert_eq!(*pings.borrow(), vec![json!(1)]);
    front.close();
}

#[wasm_bindgen_test]
async fn encrypted_data_arrives_decrypted() {
    let base = server!();
    let front = util::connect(util::options(base)).await;
    let inbox = Inbox::of(&front);
    let data = json!({"secret": "héllo ✓", "list": [1, 2, 3]});
    util::emit(base, front.front_uuid(), Some(front.session_uuid()), "sealed", data.clone(), true)
        .await;
    assert!(inbox.wait(5_000, |e| !e.is_empty()).await);
    let event = &inbox.events()[0];
    assert_eq!(event.meta.encrypted, Some(true));
    assert_eq!(event.data, data);
    front.close();
}
