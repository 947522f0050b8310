//! Direct events: the echo to this tab, the broadcast to every tab, `request` and its timeout,
//! errors, and the JavaScript face of the same calls.

use browser::page::bindings::{JsFront, is_web_session_error};
use browser::page::{Delivery, PageError, RequestOptions, SendOptions};
use js_sys::{Function, Reflect};
use serde_json::json;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::util::{self, Inbox, server};

#[wasm_bindgen_test]
async fn a_direct_event_is_echoed_to_this_tab() {
    let base = server!();
    let front = util::connect(util::options(base)).await;
    let other = util::connect(util::options(base)).await;
    let (mine, theirs) = (Inbox::of(&front), Inbox::of(&other));
    let sent = front.send("echo", json!({"text": "hi"}), SendOptions::default()).await;
    assert_eq!(sent, Ok(Delivery::Sent));
    assert!(mine.wait(5_000, |e| !e.is_empty()).await, "no echo");
    util::mark(base, front.front_uuid(), &[&mine, &theirs]).await;
    assert_eq!(mine.data("echo"), vec![json!({"text": "hi"})], "once");
    assert_eq!(mine.without_markers().len(), 1, "{:?}", mine.events());
    assert!(theirs.without_markers().is_empty(), "the echo is for the sender's tab only");
    front.close();
    other.close();
}

#[wasm_bindgen_test]
async fn a_broadcast_reaches_every_tab_of_the_front() {
    let base = server!();
    let a = util::connect(util::options(base)).await;
    let b = util::connect(util::options(base)).await;
    let (inbox_a, inbox_b) = (Inbox::of(&a), Inbox::of(&b));
    a.send("broadcast", json!("everyone"), SendOptions::default()).await.expect("sent");
    assert!(inbox_a.wait(5_000, |e| !e.is_empty()).await);
    assert!(inbox_b.wait(5_000, |e| !e.is_empty()).await);
    util::mark(base, a.front_uuid(), &[&inbox_a, &inbox_b]).await;
    assert_eq!(inbox_a.data("broadcast"), vec![json!("everyone")], "once");
    assert_eq!(inbox_b.data("broadcast"), vec![json!("everyone")], "once");
    a.close();
    b.close();
}

#[wasm_bindgen_test]
async fn request_resolves_with_its_answer_also_sealed() {
    let base = server!();
    let front = util::connect(util::options(base)).await;
    let reply =
        front.request("echo", json!({"q": 42}), RequestOptions::default()).await.expect("answered");
    assert_eq!(reply.data, json!({"q": 42}));
    assert!(reply.meta.request_uuid.is_some());
    assert_eq!(reply.meta.session_uuid, Some(front.session_uuid()));
    let options = RequestOptions { encrypted: true, ..RequestOptions::default() };
    let sealed = front.request("echo", json!(["sealed"]), options).await.expect("answered");
    assert_eq!(sealed.meta.encrypted, Some(true), "the answer to a sealed request is sealed");
    assert_eq!(sealed.data, json!(["sealed"]));
    front.close();
}

#[wasm_bindgen_test]
async fn request_without_an_answer_times_out() {
    let base = server!();
    let front = util::connect(util::options(base)).await;
    let options = RequestOptions { timeout_ms: Some(700.0), ..RequestOptions::default() };
    let started = js_sys::Date::now();
    let result = front.request("sink", json!(null), options).await;
    assert_eq!(result.map(|_| ()), Err(PageError::Timeout(700)));
    assert!(js_sys::Date::now() - started >= 650.0);
    front.close();
}

#[wasm_bindgen_test]
async fn a_refused_event_rejects_with_the_servers_code_and_is_not_queued() {
    let base = server!();
    let front = util::connect(util::options(base)).await;
    let refused = front.send("no-such-handler", json!(1), SendOptions::default()).await;
    let error = refused.expect_err("a 4xx rejects");
    assert_eq!((error.status(), error.code()), (Some(404), "not_found"));
    front.close();
}

fn closure_fn(f: impl FnMut(JsValue) + 'static) -> Function {
    Closure::<dyn FnMut(JsValue)>::new(f).into_js_value().unchecked_into()
}

/// Calls `object.method(...args)` as JavaScript would.
fn call(object: &JsValue, method: &str, args: &[JsValue]) -> JsValue {
    let f: Function = Reflect::get(object, &method.into()).expect("method").unchecked_into();
    f.apply(object, &args.iter().collect()).expect("call")
}

fn get(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &key.into()).expect("property")
}

#[wasm_bindgen_test]
async fn the_javascript_face_converts_values_and_errors() {
    let base = server!();
    let options = js_sys::Object::new();
    Reflect::set(&options, &"base".into(), &base.into()).expect("set");
    Reflect::set(&options, &"share".into(), &false.into()).expect("set");
    let session = protocol::SessionUuid::new_v4().to_string();
    Reflect::set(&options, &"sessionUuid".into(), &session.clone().into()).expect("set");
    let front = JsFuture::from(JsFront::connect(options.into())).await.expect("connects");
    assert_eq!(get(&front, "state").as_string().as_deref(), Some("active"));
    assert_eq!(get(&front, "sessionUuid").as_string(), Some(session));
    assert!(get(&front, "frontBid").as_f64().is_some());

    let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::<JsValue>::new()));
    let sink = got.clone();
    let listener = closure_fn(move |event| sink.borrow_mut().push(event));
    let unsubscribe: Function =
        call(&front, "on", &["echo".into(), listener.into()]).unchecked_into();
    let data = js_sys::JSON::parse(r#"{"a":[1,"two",null]}"#).expect("json");
    let sent: js_sys::Promise = call(&front, "send", &["echo".into(), data]).unchecked_into();
    assert_eq!(JsFuture::from(sent).await.expect("sent").as_string().as_deref(), Some("sent"));
    assert!(util::wait_for(5_000, || !got.borrow().is_empty()).await);
    let event = got.borrow()[0].clone();
    assert_eq!(get(&event, "name").as_string().as_deref(), Some("echo"));
    assert_eq!(get(&get(&event, "meta"), "name").as_string().as_deref(), Some("echo"));
    let text = js_sys::JSON::stringify(&get(&event, "data")).expect("stringify");
    assert_eq!(String::from(text), r#"{"a":[1,"two",null]}"#);
    unsubscribe.call0(&JsValue::NULL).expect("unsubscribes");

    let rejected: js_sys::Promise = call(&front, "send", &["".into()]).unchecked_into();
    let error = JsFuture::from(rejected).await.expect_err("an empty name is refused");
    assert!(is_web_session_error(error.clone()));
    assert_eq!(get(&error, "name").as_string().as_deref(), Some("WebSessionError"));
    assert_eq!(get(&error, "code").as_string().as_deref(), Some("invalid_argument"));
    call(&front, "close", &[]);
    assert_eq!(get(&front, "state").as_string().as_deref(), Some("closed"));
}
