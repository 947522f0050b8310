//! Helpers of the page tests: the devserver's URL and test controls, waiting, collecting events.

use std::cell::RefCell;
use std::rc::Rc;

use browser::page::{Auth, AuthOptions, Front, FrontOptions, StreamState};
use js_sys::Promise;
use protocol::event::ReverseEvent;
use protocol::{FrontUuid, SessionUuid};
use serde_json::{Value, json};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestInit, Response};

/// The devserver, or `None` when the driver did not start one (the tests then pass vacuously,
/// saying so on the console).
pub(crate) fn base() -> Option<&'static str> {
    option_env!("WEBSESSION_DEVSERVER_URL").map(|b| b.trim_end_matches('/'))
}

fn global(name: &str) -> JsValue {
    js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str(name)).unwrap_or_default()
}

/// Whether the test runs in a page (the page client needs `document`, `sessionStorage`...).
pub(crate) fn in_page() -> bool {
    global("document").is_object()
}

/// The devserver's URL, or returns from the test when there is none or this is not a page.
/// Closes what an earlier (failed) test left open first.
macro_rules! server {
    () => {
        match ($crate::page::util::base(), $crate::page::util::in_page()) {
            (Some(base), true) => {
                $crate::page::util::cleanup();
                base
            }
            (None, _) => {
                wasm_bindgen_test::console_log!("skipped: WEBSESSION_DEVSERVER_URL is not set");
                return;
            }
            (_, false) => return,
        }
    };
}
pub(crate) use server;

thread_local! {
    static FRONTS: RefCell<Vec<Front>> = const { RefCell::new(Vec::new()) };
    static AUTHS: RefCell<Vec<Auth>> = const { RefCell::new(Vec::new()) };
}

/// Closes every front and login a test opened. A failed test does not unwind on wasm32, so the
/// next test does this for it: a leftover stream would hold a connection and the leadership.
pub(crate) fn cleanup() {
    FRONTS.with(|f| f.borrow_mut().drain(..).for_each(|front| front.close()));
    AUTHS.with(|a| a.borrow_mut().drain(..).for_each(|auth| auth.close()));
}

/// Opens a front without waiting for its stream; closed by the next [`cleanup`].
pub(crate) async fn open(options: FrontOptions) -> Front {
    let front = Front::open(options).await.expect("opens");
    FRONTS.with(|f| f.borrow_mut().push(front.clone()));
    front
}

/// Connects a front; closed by the next [`cleanup`].
pub(crate) async fn connect(options: FrontOptions) -> Front {
    let front = open(options).await;
    front.ready().await.expect("the stream becomes active");
    front
}

/// Starts a login client; closed by the next [`cleanup`].
pub(crate) async fn start(options: AuthOptions) -> Auth {
    let auth = Auth::start(options).await.expect("starts");
    AUTHS.with(|a| a.borrow_mut().push(auth.clone()));
    auth
}

/// Options for a test front: its own session, no sharing unless asked, quick reconnects.
pub(crate) fn options(base: &str) -> FrontOptions {
    FrontOptions {
        base: base.to_owned(),
        share: false,
        session_uuid: Some(SessionUuid::new_v4()),
        backoff_initial_ms: 200.0,
        backoff_max_ms: 2_000.0,
        ..FrontOptions::default()
    }
}

/// Resolves after `ms` milliseconds.
pub(crate) async fn sleep(ms: i32) {
    let set_timeout: js_sys::Function = global("setTimeout").unchecked_into();
    let promise = Promise::new(&mut |resolve, _| {
        let _ = set_timeout.call2(&JsValue::NULL, &resolve, &JsValue::from(ms));
    });
    let _ = JsFuture::from(promise).await;
}

/// Polls `ready` every 20 ms for at most `ms`; whether it became true.
pub(crate) async fn wait_for(ms: i32, ready: impl Fn() -> bool) -> bool {
    let mut waited = 0;
    while !ready() {
        if waited >= ms {
            return false;
        }
        sleep(20).await;
        waited += 20;
    }
    true
}

/// Waits until `front` is in `state`.
pub(crate) async fn wait_state(front: &Front, state: StreamState, ms: i32) -> bool {
    wait_for(ms, || front.state() == state).await
}

/// `POST {base}{path}` with a JSON body; the JSON answer (or the error as a string value).
pub(crate) async fn post(base: &str, path: &str, body: &Value) -> Result<Value, String> {
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(&body.to_string()));
    let headers = web_sys::Headers::new().map_err(|e| format!("{e:?}"))?;
    headers.set("Content-Type", "application/json").map_err(|e| format!("{e:?}"))?;
    init.set_headers(&headers);
    let fetch: js_sys::Function = global("fetch").unchecked_into();
    let url = JsValue::from_str(&format!("{base}{path}"));
    let promise: Promise =
        fetch.call2(&JsValue::NULL, &url, &init).map_err(|e| format!("{e:?}"))?.unchecked_into();
    let response: Response =
        JsFuture::from(promise).await.map_err(|e| format!("{e:?}"))?.unchecked_into();
    let text = JsFuture::from(response.text().map_err(|e| format!("{e:?}"))?)
        .await
        .map_err(|e| format!("{e:?}"))?
        .as_string()
        .unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
}

/// Publishes a reverse event through the devserver (`POST /__devserver/emit`).
pub(crate) async fn emit(
    base: &str,
    front: FrontUuid,
    session: Option<SessionUuid>,
    name: &str,
    data: Value,
    encrypted: bool,
) -> Value {
    let body = json!({
        "frontUuid": front,
        "sessionUuid": session,
        "name": name,
        "data": data,
        "encrypted": encrypted,
    });
    let answer = post(base, "/__devserver/emit", &body).await.expect("emit answers");
    assert!(answer.get("error").is_none(), "emit failed: {answer}");
    answer
}

/// Asks the devserver to restart the backend (`POST /__devserver/restart`) on the same port, on a
/// wiped store if asked, staying down for `down_ms`. Returns at once; see [`wait_up`].
pub(crate) async fn restart(base: &str, wipe: bool, down_ms: u64) {
    post(base, "/__devserver/restart", &json!({"wipe": wipe, "downMs": down_ms}))
        .await
        .expect("restart answers");
}

/// Waits until the backend answers again after a restart.
pub(crate) async fn wait_up(base: &str) {
    for _ in 0..300 {
        if post(base, "/__devserver/mint", &json!({"user": "ping", "validForSecs": 1}))
            .await
            .is_ok()
        {
            return;
        }
        sleep(50).await;
    }
    panic!("the devserver did not come back after a restart");
}

/// A one-time login token (`POST /__devserver/mint`).
pub(crate) async fn mint(
    base: &str,
    user: &str,
    permissions: &[&str],
    valid_for_secs: u64,
) -> String {
    let body = json!({"user": user, "permissions": permissions, "validForSecs": valid_for_secs});
    let answer = post(base, "/__devserver/mint", &body).await.expect("mint answers");
    answer["token"].as_str().unwrap_or_else(|| panic!("mint failed: {answer}")).to_owned()
}

/// Collects the events a front delivers.
#[derive(Clone, Default)]
pub(crate) struct Inbox(Rc<RefCell<Vec<ReverseEvent>>>);

impl Inbox {
    /// Listens to every event of `front`.
    pub(crate) fn of(front: &Front) -> Self {
        let inbox = Self::default();
        let events = inbox.0.clone();
        front.on(None, move |event| events.borrow_mut().push(event.clone()));
        inbox
    }

    pub(crate) fn events(&self) -> Vec<ReverseEvent> {
        self.0.borrow().clone()
    }

    /// The `data` of the events named `name`, in arrival order.
    pub(crate) fn data(&self, name: &str) -> Vec<Value> {
        self.0.borrow().iter().filter(|e| e.meta.name == name).map(|e| e.data.clone()).collect()
    }

    pub(crate) async fn wait(&self, ms: i32, ready: impl Fn(&[ReverseEvent]) -> bool) -> bool {
        let events = self.0.clone();
        wait_for(ms, move || ready(&events.borrow())).await
    }
}
