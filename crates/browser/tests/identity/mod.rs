//! The front identity in IndexedDB (in whichever scope the binary runs: page or worker) and its
//! registration on the backend.

use browser::identity::{self, DB_NAME, IdentityError};
use futures_util::future::join_all;
use protocol::KeyPair;
use protocol::messages::Identity;
use wasm_bindgen::JsCast as _;
use wasm_bindgen_test::wasm_bindgen_test;

use crate::support;

/// Deletes the package's database, so a test starts with no identity.
async fn delete_database() {
    let factory: web_sys::IdbFactory = js_sys::Reflect::get(&js_sys::global(), &"indexedDB".into())
        .expect("indexedDB")
        .unchecked_into();
    let request = factory.delete_database(DB_NAME).expect("deleteDatabase");
    let done = js_sys::Promise::new(&mut |resolve, reject| {
        request.set_onsuccess(Some(&resolve));
        request.set_onerror(Some(&reject));
    });
    wasm_bindgen_futures::JsFuture::from(done).await.expect("database deleted");
}

#[wasm_bindgen_test]
async fn identity_is_created_once_even_when_several_create_it_at_once() {
    delete_database().await;
    let all = join_all((0..5).map(|_| identity::load_or_create())).await;
    let first = all[0].clone().expect("identity");
    for other in &all {
        let other = other.as_ref().expect("identity");
        assert_eq!(other.front_uuid, first.front_uuid);
        assert_eq!(other.front_keys.public, first.front_keys.public);
    }
    assert!(first.front_keys.is_consistent());
    assert_eq!(first.front_bid, None);
    let loaded = identity::load().await.expect("load").expect("stored");
    assert_eq!(loaded.front_uuid, first.front_uuid);
}

#[wasm_bindgen_test]
async fn a_record_whose_keys_do_not_match_is_corrupt_and_can_be_replaced() {
    delete_database().await;
    let good = identity::load_or_create().await.expect("identity");
    let other = KeyPair::generate();
    let broken = Identity {
        front_keys: KeyPair { public: other.public, secret: good.front_keys.secret.clone() },
        ..good.clone()
    };
    identity::save(&broken).await.expect("saved");
    assert!(matches!(identity::load_or_create().await, Err(IdentityError::Corrupt(_))));
    let fresh = identity::replace_corrupt().await.expect("replaced");
    assert_ne!(fresh.front_uuid, good.front_uuid);
    let loaded = identity::load_or_create().await.expect("identity");
    assert_eq!(loaded.front_uuid, fresh.front_uuid);
}

#[wasm_bindgen_test]
async fn registration_stores_the_front_bid_and_repeats_it() {
    delete_database().await;
    let mut identity = identity::load_or_create().await.expect("identity");
    let bid = identity::register(support::devserver(), &mut identity).await.expect("registered");
    assert_eq!(identity.front_bid, Some(bid));
    let stored = identity::load().await.expect("load").expect("stored");
    assert_eq!(stored.front_bid, Some(bid));
    let again = identity::register(support::devserver(), &mut identity).await.expect("registered");
    assert_eq!(again, bid, "same UUID and key, same frontBid");
}
