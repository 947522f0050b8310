//! The page's side of the service worker: `GET /uc/session/vtx` answered by the worker, and the
//! worker's messages to the tabs (`session-error`, `sw-activated`).

use protocol::paths;
use protocol::tokens::{SessionError, SessionTokens, SwMessage};
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, ServiceWorkerContainer};

use super::error::PageError;
use super::http::{self, Call};
use super::js;

/// How long [`session_tokens`] waits for a worker to take control of a freshly loaded page.
const CONTROL_WAIT_MS: f64 = 5_000.0;

fn container() -> Option<ServiceWorkerContainer> {
    let navigator = js::get(&js::global(), "navigator");
    let container = js::get(&navigator, "serviceWorker");
    if container.is_object() { Some(container.unchecked_into()) } else { None }
}

/// Waits until a service worker controls the page (the first load of a page registers the
/// worker, which then claims it), for at most `ms`.
async fn controlled(container: &ServiceWorkerContainer, ms: f64) -> bool {
    let deadline = js::now_ms() + ms;
    while container.controller().is_none() {
        if js::now_ms() >= deadline {
            return false;
        }
        js::sleep(50.0).await;
    }
    true
}

/// Asks the worker for the session tokens: the EID JWT and the venue JWT, or the worker's
/// typed error ([`PageError::Session`] with the failed stage).
pub async fn session_tokens() -> Result<SessionTokens, PageError> {
    let container = container().ok_or(PageError::Unsupported("service workers"))?;
    if !controlled(&container, CONTROL_WAIT_MS).await {
        return Err(PageError::NoServiceWorker);
    }
    let response = Call::get(paths::SESSION_VTX).send().await?;
    let status = response.status();
    let body = http::text(&response).await?;
    if response.ok() {
        return serde_json::from_str(&body).map_err(|e| PageError::BadResponse {
            what: "/uc/session/vtx",
            detail: e.to_string(),
        });
    }
    match serde_json::from_str::<SessionError>(&body) {
        Ok(error) => Err(PageError::Session(error)),
        Err(_) => Err(PageError::from_answer(status, &body)),
    }
}

/// A subscription to the worker's messages; dropping it removes the listener.
pub struct WorkerMessages {
    container: ServiceWorkerContainer,
    listener: Closure<dyn FnMut(MessageEvent)>,
}

impl std::fmt::Debug for WorkerMessages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerMessages(..)")
    }
}

impl WorkerMessages {
    /// Calls `f` with every message from the worker that is a [`SwMessage`].
    pub fn listen(f: impl Fn(SwMessage) + 'static) -> Result<Self, PageError> {
        let container = container().ok_or(PageError::Unsupported("service workers"))?;
        let listener = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(message) = parse_message(&event.data()) {
                f(message);
            }
        });
        container
            .add_event_listener_with_callback("message", listener.as_ref().unchecked_ref())
            .map_err(|e| PageError::InvalidArgument(js::describe(&e)))?;
        // Messages wait in the client's queue until the page starts it (or the document has
        // loaded); a module script may run before that.
        if let Some(start) = js::get_function(&container, "startMessages") {
            let _ = start.call0(&container);
        }
        Ok(Self { container, listener })
    }
}

impl Drop for WorkerMessages {
    fn drop(&mut self) {
        let _ = self
            .container
            .remove_event_listener_with_callback("message", self.listener.as_ref().unchecked_ref());
    }
}

/// A worker message by its `type`. Read field by field rather than through serde's internally
/// tagged enums, which buffer the whole value and cost the package several kilobytes.
fn parse_message(data: &JsValue) -> Option<SwMessage> {
    match js::get_string(data, "type")?.as_str() {
        "sw-activated" => {
            Some(SwMessage::SwActivated { version: js::get_string(data, "version")? })
        }
        "session-error" => js::from_js::<SessionError>(data).ok().map(SwMessage::SessionError),
        "session-clear" => Some(SwMessage::SessionClear),
        "skip-waiting" => Some(SwMessage::SkipWaiting),
        _ => None,
    }
}

/// Tells the worker to drop its cached tokens (logout).
pub fn clear_worker_session() {
    if let Some(worker) = container().and_then(|c| c.controller()) {
        let _ = worker.post_message(&js::to_js(&SwMessage::SessionClear));
    }
}
