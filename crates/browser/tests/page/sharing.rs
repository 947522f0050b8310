//! Eight tabs of one front: one stream for all of them (the browser allows six connections per
//! origin), targeted events still reach their tab, and the stream moves on when its tab closes.
//!
//! Eight fronts in one page behave as eight tabs here: each has its own session UUID, and the
//! Web Locks and the `BroadcastChannel` they share are the origin's, as between tabs.

use browser::page::{Role, StreamState};
use serde_json::json;
use wasm_bindgen_test::wasm_bindgen_test;

use super::util::{self, Inbox, server};

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
    for (n, inbox) in inboxes.iter().enumerate() {
        assert!(inbox.wait(5_000, |e| e.len() >= 2).await, "tab {n}: {:?}", inbox.events());
    }
    util::sleep(300).await;
    for (n, inbox) in inboxes.iter().enumerate() {
        assert_eq!(inbox.data("mine"), vec![json!(n)], "tab {n}");
        assert_eq!(inbox.data("all"), vec![json!("x")], "tab {n}");
    }
    // A follower's request is answered through the leader's stream.
    let follower = tabs.iter().find(|t| t.role() == Role::Follower).expect("a follower");
    let reply = follower.request("echo", json!("via leader"), Default::default()).await;
    assert_eq!(reply.map(|r| r.data), Ok(json!("via leader")));

    // The leader's tab closes: another takes the stream over, and nothing is lost meanwhile.
    let leader = tabs.iter().position(|t| t.role() == Role::Leader).expect("a leader");
    tabs.remove(leader).close();
    let inboxes: Vec<Inbox> = tabs.iter().map(Inbox::of).collect();
    util::emit(base, front, Some(tabs[0].session_uuid()), "after", json!(1), false).await;
    let handed_over = util::wait_for(10_000, || {
        tabs.iter().filter(|t| t.role() == Role::Leader).count() == 1
            && tabs.iter().all(|t| t.state() == StreamState::Active)
    });
    assert!(handed_over.await, "no new leader");
    assert!(
        inboxes[0].wait(10_000, |e| !e.is_empty()).await,
        "the event published during the hand-over"
    );
    assert_eq!(inboxes[0].data("after"), vec![json!(1)]);
    for tab in &tabs {
        tab.close();
    }
}
