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

fn global(name: &str) -> JsValue {
    js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str(name)).unwrap_or_default()
}

/// The devserver's URL (or the test fails: it cannot run without one). Closes what an earlier
/// (failed) test left open first, and sets the backend's token clock back.
///
/// These tests are in the binary configured to run in a page (`tests/in_page.rs`); the
/// assertion keeps one that ends up elsewhere from passing by doing nothing.
macro_rules! server {
    () => {{
        assert!(
            js_sys::Reflect::has(&js_sys::global(), &"document".into()).unwrap_or(false),
            "a page test runs in a page (tests/in_page.rs configures that)"
        );
        let base = $crate::support::devserver();
        $crate::page::util::cleanup();
        // A test that failed with the backend's token clock moved left it so.
        $crate::page::util::clock_ahead(base, 0).await;
        base
    }};
}
pub(crate) use server;

thread_local! {
    static FRONTS: RefCell<Vec<Front>> = const { RefCell::new(Vec::new()) };
    static AUTHS: RefCell<Vec<Auth>> = const { RefCell::new(Vec::new()) };
}

/// Closes every front and login a test opened. A failed test does not unwind on wasm32, so the
/// next test does this for it: a leftover stream would hold a connection and the leadership.
pub(crate) fn cleanup() {
    // Taken out before closing: a listener that panics on close must not leave these borrowed.
    FRONTS.with(|f| std::mem::take(&mut *f.borrow_mut())).iter().for_each(Front::close);
    AUTHS.with(|a| std::mem::take(&mut *a.borrow_mut())).iter().for_each(Auth::close);
    // And the page's own `fetch`, should a test have left a wrapper (see `FetchLog`) on it.
    let pristine = global(PRISTINE_FETCH);
    if pristine.is_function() {
        let _ = js_sys::Reflect::set(&js_sys::global(), &JsValue::from_str("fetch"), &pristine);
    }
}

/// Where the wrappers below keep the page's own `fetch` the first time one is put on.
const PRISTINE_FETCH: &str = "__pristineFetch";

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

/// The status of `request`, sent with the global `fetch`.
pub(crate) async fn fetch_status(request: &web_sys::Request) -> u16 {
    let fetch: js_sys::Function = global("fetch").unchecked_into();
    let promise: Promise = fetch.call1(&JsValue::NULL, request).expect("fetch").unchecked_into();
    let response: Response = JsFuture::from(promise).await.expect("an answer").unchecked_into();
    response.status()
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

/// Runs the backend's token clock `secs` ahead of the wall clock (behind if negative; `0` is the
/// wall clock), so that tokens and login sessions expire at the server without waiting
/// (`POST /__devserver/clock`). The browser's clock stays as it is.
pub(crate) async fn clock_ahead(base: &str, secs: i64) {
    let answer =
        post(base, "/__devserver/clock", &json!({"aheadSecs": secs})).await.expect("clock answers");
    assert_eq!(answer["aheadSecs"], json!(secs), "clock: {answer}");
}

/// The requests the page makes through the global `fetch` to URLs containing a path, with the
/// time each was sent. The page client looks `fetch` up on the global scope at every call, so
/// a wrapper put there sees its requests; [`FetchLog::remove`] puts the original back.
pub(crate) struct FetchLog {
    log: JsValue,
}

impl FetchLog {
    pub(crate) fn install(path: &str) -> Self {
        let install = js_sys::Function::new_with_args(
            "path",
            "globalThis.__pristineFetch ??= globalThis.fetch;
             const log = { times: [], original: globalThis.fetch };
             globalThis.fetch = function (input, init) {
                 const url = typeof input === 'string' ? input : (input && input.url) || String(input);
                 if (url.includes(path)) log.times.push(Date.now());
                 return log.original.call(globalThis, input, init);
             };
             return log;",
        );
        let log = install.call1(&JsValue::NULL, &JsValue::from_str(path)).expect("installs");
        Self { log }
    }

    /// When each request was sent (`Date.now()`), in order.
    pub(crate) fn times(&self) -> Vec<f64> {
        let times =
            js_sys::Reflect::get(&self.log, &JsValue::from_str("times")).unwrap_or_default();
        js_sys::Array::from(&times).iter().filter_map(|t| t.as_f64()).collect()
    }

    pub(crate) fn count(&self) -> usize {
        self.times().len()
    }

    /// Puts the original `fetch` back.
    pub(crate) fn remove(self) {
        let original =
            js_sys::Reflect::get(&self.log, &JsValue::from_str("original")).unwrap_or_default();
        let _ = js_sys::Reflect::set(&js_sys::global(), &JsValue::from_str("fetch"), &original);
    }
}

/// Holds the page's requests to URLs containing a path: while closed, the global `fetch` fails
/// them as the network would (a rejected promise), so a test keeps a front from reconnecting for
/// as long as it needs instead of racing a timed outage. [`FetchGate::remove`] puts the original
/// `fetch` back.
pub(crate) struct FetchGate {
    gate: JsValue,
}

impl FetchGate {
    /// A gate on `path`, closed.
    pub(crate) fn closed(path: &str) -> Self {
        let install = js_sys::Function::new_with_args(
            "path",
            "globalThis.__pristineFetch ??= globalThis.fetch;
             const gate = { closed: true, original: globalThis.fetch };
             globalThis.fetch = function (input, init) {
                 const url = typeof input === 'string' ? input : (input && input.url) || String(input);
                 if (gate.closed && url.includes(path)) {
                     return Promise.reject(new TypeError('held by the test (FetchGate)'));
                 }
                 return gate.original.call(globalThis, input, init);
             };
             return gate;",
        );
        let gate = install.call1(&JsValue::NULL, &JsValue::from_str(path)).expect("installs");
        Self { gate }
    }

    /// Lets requests through again and puts the original `fetch` back.
    pub(crate) fn remove(self) {
        let _ = js_sys::Reflect::set(&self.gate, &JsValue::from_str("closed"), &JsValue::FALSE);
        let original =
            js_sys::Reflect::get(&self.gate, &JsValue::from_str("original")).unwrap_or_default();
        let _ = js_sys::Reflect::set(&js_sys::global(), &JsValue::from_str("fetch"), &original);
    }
}

/// Makes the backend look like one that does not share streams (an older one): the global
/// `fetch` drops `?scope=front` from stream-open requests, so the real backend answers a stream
/// of the tab's own session without the scope header, as such a backend would. Records the
/// stream-open URLs. [`OldBackend::remove`] puts the original `fetch` back.
pub(crate) struct OldBackend {
    state: JsValue,
}

impl OldBackend {
    pub(crate) fn install() -> Self {
        let install = js_sys::Function::new_with_args(
            "path, query",
            "globalThis.__pristineFetch ??= globalThis.fetch;
             const state = { urls: [], original: globalThis.fetch };
             globalThis.fetch = function (input, init) {
                 const url = typeof input === 'string' ? input : (input && input.url) || String(input);
                 if (url.includes(path)) {
                     const plain = url.replace('?' + query, '').replace('&' + query, '');
                     state.urls.push(plain);
                     if (plain !== url) {
                         input = typeof input === 'string' ? plain : new Request(plain, input);
                     }
                 }
                 return state.original.call(globalThis, input, init);
             };
             return state;",
        );
        let state = install
            .call2(
                &JsValue::NULL,
                &JsValue::from_str(protocol::paths::STREAM_OPEN),
                &JsValue::from_str(protocol::paths::STREAM_SCOPE_FRONT_QUERY),
            )
            .expect("installs");
        Self { state }
    }

    /// The stream-open URLs requested so far (without the scope query).
    pub(crate) fn stream_urls(&self) -> Vec<String> {
        let urls =
            js_sys::Reflect::get(&self.state, &JsValue::from_str("urls")).unwrap_or_default();
        js_sys::Array::from(&urls).iter().filter_map(|u| u.as_string()).collect()
    }

    pub(crate) fn remove(self) {
        let original =
            js_sys::Reflect::get(&self.state, &JsValue::from_str("original")).unwrap_or_default();
        let _ = js_sys::Reflect::set(&js_sys::global(), &JsValue::from_str("fetch"), &original);
    }
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

    /// The events other than [`MARKER`]s.
    pub(crate) fn without_markers(&self) -> Vec<ReverseEvent> {
        self.0.borrow().iter().filter(|e| e.meta.name != MARKER).cloned().collect()
    }
}

/// The name of the events [`mark`] publishes.
pub(crate) const MARKER: &str = "marker";

/// Publishes a marker event to every tab of `front` and waits until each of `inboxes` has it.
/// A tab's events come in publish order (one stream, relayed in order to the tabs it serves),
/// so once the marker is in, an inbox holds all it will ever get of what was published before:
/// a check that something did not arrive (or not twice) needs no sleep.
pub(crate) async fn mark(base: &str, front: FrontUuid, inboxes: &[&Inbox]) {
    let tag = json!(protocol::ids::random_uuid().to_string());
    emit(base, front, None, MARKER, tag.clone(), false).await;
    for (n, inbox) in inboxes.iter().enumerate() {
        let marked =
            inbox.wait(10_000, |e| e.iter().any(|e| e.meta.name == MARKER && e.data == tag));
        assert!(marked.await, "inbox {n} did not get the marker: {:?}", inbox.events());
    }
}

/// A Web Lock held by a holder that never lets go of it by itself (a frozen tab, another
/// library's deadlock), until [`StuckLock::release`].
pub(crate) struct StuckLock(js_sys::Function);

impl StuckLock {
    /// Resolves once the lock `name` is held.
    pub(crate) async fn hold(name: &str) -> Self {
        let take = js_sys::Function::new_with_args(
            "name",
            "return new Promise((granted) => navigator.locks.request(name, \
             () => new Promise((release) => granted(release))));",
        );
        let promise: Promise = take
            .call1(&JsValue::NULL, &JsValue::from_str(name))
            .expect("a request")
            .unchecked_into();
        let release = JsFuture::from(promise).await.expect("the lock is granted");
        Self(release.unchecked_into())
    }

    /// Lets go of the lock.
    pub(crate) fn release(self) {
        let _ = self.0.call0(&JsValue::NULL);
    }
}
