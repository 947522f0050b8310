//! The shared web layer (`browser::web`, `browser::net`) where it runs: in a page and in a
//! service worker, which has no `Window`. The timer must cancel on drop in both, and a thrown
//! value must read the same in both.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use browser::net::{self, HttpRequest, NetError};
use browser::web::{self, JsError, Timeout};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

use crate::support::devserver;

#[wasm_bindgen_test]
async fn a_dropped_timeout_never_fires_and_a_kept_one_fires_once() {
    let (dropped, kept) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    let cancelled = {
        let dropped = dropped.clone();
        Timeout::new(5.0, move || dropped.set(dropped.get() + 1))
    };
    let _kept = {
        let kept = kept.clone();
        Timeout::new(5.0, move || kept.set(kept.get() + 1))
    };
    drop(cancelled);
    web::sleep(40.0).await;
    assert_eq!(dropped.get(), 0, "a dropped timer was cleared");
    assert_eq!(kept.get(), 1, "a kept timer fired exactly once");
}

#[wasm_bindgen_test]
async fn sleep_waits_at_least_its_delay() {
    let start = js_sys::Date::now();
    web::sleep(30.0).await;
    assert!(js_sys::Date::now() - start >= 25.0);
}

#[wasm_bindgen_test]
fn thrown_values_read_with_their_stable_name() {
    let type_error: JsValue = js_sys::TypeError::new("bad thing").into();
    let read = JsError::from(&type_error);
    assert_eq!((read.name.as_str(), read.message.as_str()), ("TypeError", "bad thing"));
    assert_eq!(read.to_string(), "TypeError: bad thing");
    let thrown_text = JsError::from(JsValue::from_str("plain text"));
    assert_eq!((thrown_text.name.as_str(), thrown_text.to_string().as_str()), ("", "plain text"));
    let abort = web_sys::DomException::new_with_message_and_name("stopped", "AbortError")
        .expect("a DOMException");
    let abort = JsError::from(JsValue::from(abort));
    assert!(abort.is_abort(), "{abort:?}");
    assert_eq!(abort.to_string(), "AbortError: stopped");
}

#[wasm_bindgen_test]
async fn a_request_that_cannot_be_built_is_an_invalid_request() {
    let answer = net::send(&HttpRequest::get("http://[::1", Duration::from_secs(1))).await;
    assert!(matches!(answer, Err(NetError::InvalidRequest(_))), "{answer:?}");
}

#[wasm_bindgen_test]
async fn send_reads_an_answer_whatever_its_status() {
    // A guarded route without a bearer: the backend's error body with 401.
    let url = format!("{}{}", devserver(), protocol::paths::API_DASHBOARD);
    let answer = net::send(&HttpRequest::get(&url, Duration::from_secs(10)))
        .await
        .expect("the devserver answers");
    assert_eq!(answer.status, 401);
    assert!(!answer.is_success());
    assert!(answer.error_body().is_some(), "{answer:?}");
}
