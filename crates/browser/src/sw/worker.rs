//! The running worker: its settings and session, created once per worker start, and what each
//! event of the shim does with them. Everything here touches `ServiceWorkerGlobalScope`.

use std::cell::{Cell, OnceCell};
use std::rc::Rc;
use std::time::Duration;

use protocol::tokens::SwMessage;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Client, ClientQueryOptions, ClientType, Headers, ResponseInit, ServiceWorkerGlobalScope,
};

use super::chain::{ChainConfig, Http};
use super::session::Session;
use super::settings::{Settings, UpdateMode};
use crate::identity::{self, IdentityError};
use crate::net::{self, Credentials, HttpRequest, HttpResponse, NetError};
use crate::web::describe;

#[wasm_bindgen]
extern "C" {
    /// `performance.now()`, in a page or a worker.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// The chain's HTTP client in the browser: [`net::send`], with the user's cookies for the venue.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchHttp;

impl Http for FetchHttp {
    async fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        cookies: bool,
        timeout: Duration,
    ) -> Result<HttpResponse, NetError> {
        let credentials = if cookies { Credentials::Include } else { Credentials::SameOrigin };
        net::send(&HttpRequest { headers, credentials, ..HttpRequest::get(url, timeout) }).await
    }
}

/// One start of the worker: what it was configured with and the tokens it holds.
pub(crate) struct Worker {
    settings: Settings,
    server: String,
    session: Session<FetchHttp>,
    /// Milliseconds from the shim's first line to the end of [`start`]; `None` until then.
    ready_ms: Cell<Option<f64>>,
}

thread_local! {
    static WORKER: OnceCell<Rc<Worker>> = const { OnceCell::new() };
}

fn scope() -> ServiceWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// The worker of this start; made from the registration URL's query alone when [`start`] has
/// not run (it always has when the shim waits for `ready`).
pub(crate) fn worker() -> Rc<Worker> {
    WORKER.with(|cell| cell.get_or_init(|| Rc::new(Worker::new(settings_from_query()))).clone())
}

fn settings_from_query() -> Settings {
    let mut settings = Settings::default();
    report(&settings.apply_query(&scope().location().search()));
    settings
}

fn report(problems: &[String]) {
    for problem in problems {
        warn(&format!("setting ignored: {problem}"));
    }
}

pub(crate) fn warn(text: &str) {
    web_sys::console::warn_1(&JsValue::from_str(&format!("websession worker: {text}")));
}

impl Worker {
    fn new(settings: Settings) -> Self {
        let origin = scope().location().origin();
        let config = ChainConfig::new(&settings, &origin);
        let server = config.endpoints.server.clone();
        let session = Session::new(FetchHttp, config);
        session.on_failure(|failure| {
            warn(&format!(
                "token chain failed at {:?}: {} ({})",
                failure.stage, failure.code, failure.detail
            ));
            let message = SwMessage::SessionError(failure.to_session_error());
            wasm_bindgen_futures::spawn_local(async move { post_to_tabs(&message).await });
        });
        // The tabs keep copies of the answers (`sessionTokens()`'s warm calls): they drop them
        // when the worker's tokens are dropped or become another user's.
        session.on_change(|| {
            wasm_bindgen_futures::spawn_local(async {
                post_to_tabs(&SwMessage::SessionChanged).await;
            });
        });
        Self { settings, server, session, ready_ms: Cell::new(None) }
    }

    /// The session behind `/uc/session/vtx`.
    pub(crate) fn session(&self) -> &Session<FetchHttp> {
        &self.session
    }
}

/// Reads the settings (the query, then the `config` file under it) and makes the worker.
pub(crate) async fn start(started_at: f64) {
    if WORKER.with(|cell| cell.get().is_some()) {
        return;
    }
    let mut settings = Settings::default();
    let query = scope().location().search();
    let mut problems = settings.apply_query(&query);
    if let Some(config_url) = settings.config_url.clone() {
        match fetch_settings(&config_url, settings.hop_timeout).await {
            Ok(json) => {
                let mut from_file = Settings::default();
                problems.extend(from_file.apply_json(&json));
                // The query wins: apply it again over the file's values.
                from_file.apply_query(&query);
                settings = from_file;
            }
            Err(err) => problems.push(format!("config {config_url}: {err}")),
        }
    }
    report(&problems);
    let worker = WORKER.with(|cell| cell.get_or_init(|| Rc::new(Worker::new(settings))).clone());
    worker.ready_ms.set(Some(performance_now() - started_at));
}

async fn fetch_settings(url: &str, timeout: Duration) -> Result<String, String> {
    let base = scope().location().href();
    let url = web_sys::Url::new_with_base(url, &base).map_err(|e| describe(&e))?.href();
    let response = net::send(&HttpRequest::get(&url, timeout)).await.map_err(|e| e.to_string())?;
    if !response.is_success() {
        return Err(format!("answered {}", response.status));
    }
    Ok(response.body)
}

/// `install`: the front identity exists and is registered if the backend answers; then, with
/// `update=immediate`, skip waiting. Never fails: a worker must install while the backend is down.
pub(crate) async fn install() {
    let worker = worker();
    match ensure_identity().await {
        Ok(mut identity) if identity.front_bid.is_none() => {
            if let Err(err) = identity::register(&worker.server, &mut identity).await {
                warn(&format!("front registration deferred: {err}"));
            }
        }
        Ok(_) => {}
        Err(err) => warn(&format!("front identity unavailable: {err}")),
    }
    if worker.settings.update == UpdateMode::Immediate {
        skip_waiting().await;
    }
}

async fn ensure_identity() -> Result<protocol::messages::Identity, IdentityError> {
    match identity::load_or_create().await {
        Err(IdentityError::Corrupt(reason)) => {
            warn(&format!("replacing a corrupt front identity: {reason}"));
            identity::replace_corrupt().await
        }
        other => other,
    }
}

/// `activate`: control the open tabs and tell them which version took over.
pub(crate) async fn activate() {
    if let Err(err) = JsFuture::from(scope().clients().claim()).await {
        warn(&format!("clients.claim() failed: {}", describe(&err)));
    }
    post_to_tabs(&SwMessage::SwActivated { version: crate::version() }).await;
}

/// A `message` from a page.
pub(crate) async fn message(data: JsValue) {
    let text = js_sys::JSON::stringify(&data).ok().and_then(|s| s.as_string()).unwrap_or_default();
    match protocol::json::from_str::<SwMessage>(&text) {
        Ok(SwMessage::SessionClear) => worker().session().clear(),
        Ok(SwMessage::SkipWaiting) => skip_waiting().await,
        // Messages for the pages, or for someone else on the same channel.
        Ok(
            SwMessage::SwActivated { .. } | SwMessage::SessionError(_) | SwMessage::SessionChanged,
        )
        | Err(_) => {}
    }
}

/// A navigation passes by (never answered by the worker): with `update=navigation`, this is
/// when a waiting new version takes over.
pub(crate) fn navigate() {
    if worker().settings.update != UpdateMode::Navigation {
        return;
    }
    if let Some(waiting) = scope().registration().waiting()
        && let Ok(message) = to_js(&SwMessage::SkipWaiting)
    {
        let _ = waiting.post_message(&message);
    }
}

/// `GET /uc/session/vtx`: the tokens, or the error body with its status. Every answer carries
/// `Server-Timing` with how long the worker took to start and this answer took.
pub(crate) async fn session_response() -> Result<web_sys::Response, JsValue> {
    let worker = worker();
    let begin = performance_now();
    let (status, body) = match worker.session().tokens().await {
        Ok(tokens) => (200, protocol::json::to_string(&tokens)),
        Err(failure) => (failure.status(), protocol::json::to_string(&failure.to_session_error())),
    };
    let body = body.map_err(|e| JsValue::from_str(&e.to_string()))?;
    let headers = Headers::new()?;
    headers.set("Content-Type", "application/json")?;
    headers.set("Cache-Control", "no-store")?;
    let mut timing = format!("sw-answer;dur={}", millis(performance_now() - begin));
    if let Some(ready) = worker.ready_ms.get() {
        timing = format!("sw-ready;dur={}, {timing}", millis(ready));
    }
    headers.set("Server-Timing", &timing)?;
    let init = ResponseInit::new();
    init.set_status(status);
    init.set_headers(&headers);
    web_sys::Response::new_with_opt_str_and_init(Some(&body), &init)
}

/// `ms` with two decimals, by integer arithmetic: `format!("{:.2}")` on a float would add the
/// float-formatting machinery to the package.
fn millis(ms: f64) -> String {
    #[allow(clippy::cast_possible_truncation)] // durations of a worker are far inside i64
    let hundredths = (ms.max(0.0) * 100.0).round() as i64;
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

async fn skip_waiting() {
    let outcome = match scope().skip_waiting() {
        Ok(promise) => JsFuture::from(promise).await.map(|_| ()),
        Err(err) => Err(err),
    };
    if let Err(err) = outcome {
        warn(&format!("skipWaiting() failed: {}", describe(&err)));
    }
}

/// Posts `message` to every window of the origin, controlled or not.
pub(crate) async fn post_to_tabs(message: &SwMessage) {
    let Ok(message) = to_js(message) else { return };
    let options = ClientQueryOptions::new();
    options.set_type(ClientType::Window);
    options.set_include_uncontrolled(true);
    let clients = match JsFuture::from(scope().clients().match_all_with_options(&options)).await {
        Ok(clients) => js_sys::Array::from(&clients),
        Err(err) => return warn(&format!("clients.matchAll() failed: {}", describe(&err))),
    };
    for client in clients.iter() {
        if let Err(err) = client.unchecked_into::<Client>().post_message(&message) {
            warn(&format!("postMessage failed: {}", describe(&err)));
        }
    }
}

/// A wire message as the plain object a page receives.
fn to_js(message: &SwMessage) -> Result<JsValue, JsValue> {
    let json = protocol::json::to_string(message).map_err(|e| JsValue::from_str(&e.to_string()))?;
    js_sys::JSON::parse(&json)
}
