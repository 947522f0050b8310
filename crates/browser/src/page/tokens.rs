//! The page's side of the service worker: `GET /uc/session/vtx` answered by the worker, the
//! page's copy of its last answer that makes warm calls free, and the worker's messages to the
//! tabs (`session-error`, `session-changed`, `sw-activated`).
//!
//! **The page's copy.** [`session_tokens`] keeps the worker's last answer in this page's memory
//! (a module-level cell: one per page, gone with a reload or a navigation) and answers a later
//! call from it, without a round trip through the worker, while both tokens stay valid for more
//! than [`TokenOptions::margin_ms`] (default [`WARM_MARGIN_MS`], the worker's own default
//! `marginSecs`, so the copy is never served when the worker would renew). The worker stays the
//! authority; the copy is dropped
//!
//! - when the worker posts `session-changed`: it dropped its tokens (a venue sign-out seen by any
//!   tab's request, a `session-clear`, a refused venue JWT) or took a venue JWT that is not its
//!   same-user renewal (another user signed in, or the first since the worker started);
//! - when this page logs out ([`clear_worker_session`], which `auth.logout()` calls), at once,
//!   before the worker is told;
//! - when the worker answers an error, and when a call asks with `fresh` (its answer replaces it).
//!
//! An answer is kept only if nothing dropped the copy while it was on its way (an epoch counts
//! the drops), so a `session-changed` that overtakes an older answer still wins.
//!
//! **The rule for venue sign-in and sign-out.** The venue's session cookie is `HttpOnly`, so
//! neither the page nor the worker can check it without asking the venue's dashboard; a warm
//! call asks nothing. The copy therefore answers what the worker answered last, until a request
//! to the worker sees a change. Sign-in and sign-out through the venue's own pages are
//! navigations: the page that comes back starts without a copy, and its first call asks the
//! worker, which tells the other tabs when the user changed. An app that signs in or out at the
//! venue *without* leaving the page (a `fetch` to the venue's login) must ask the next time with
//! `fresh: true` (or log out through `auth.logout()`).

use std::cell::RefCell;

use protocol::paths;
use protocol::tokens::{SessionError, SessionTokens, SwMessage};
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, ServiceWorkerContainer};

use super::error::PageError;
use super::http;
use super::js;
use crate::net;
use crate::web;

/// How long [`session_tokens`] waits for a worker to take control of a freshly loaded page.
const CONTROL_WAIT_MS: f64 = 5_000.0;

/// The default of [`TokenOptions::margin_ms`]: 60 s, the worker's default `marginSecs`.
pub const WARM_MARGIN_MS: f64 = 60_000.0;

/// Options of [`session_tokens`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenOptions {
    /// Ask the worker even when the page's copy is good (its answer replaces the copy).
    pub fresh: bool,
    /// The copy answers while both tokens expire more than this many milliseconds from now.
    pub margin_ms: f64,
}

impl Default for TokenOptions {
    fn default() -> Self {
        Self { fresh: false, margin_ms: WARM_MARGIN_MS }
    }
}

/// The page's copy of the worker's last answer.
#[derive(Default)]
struct Kept {
    tokens: Option<SessionTokens>,
    /// Bumped by every drop: an answer asked for under an older epoch is not kept.
    epoch: u64,
    /// The listener for `session-changed`, added before the first request to the worker (a
    /// message that finds no listener is lost); for the page's life.
    listening: Option<WorkerMessages>,
}

thread_local! {
    static COPY: RefCell<Kept> = RefCell::default();
}

/// Drops the page's copy of the tokens.
fn drop_copy() {
    COPY.with_borrow_mut(|copy| {
        copy.tokens = None;
        copy.epoch += 1;
    });
}

/// The copy, if both tokens expire more than `margin_ms` from now.
fn warm(margin_ms: f64) -> Option<SessionTokens> {
    let until = js::now_ms() + margin_ms;
    COPY.with_borrow(|copy| {
        copy.tokens
            .clone()
            .filter(|t| t.eid_expires_at.millis().min(t.venue_expires_at.millis()) as f64 > until)
    })
}

/// Whether the page hears the worker's `session-changed`; starts listening the first time.
/// Without the worker's word a copy cannot be trusted, so nothing is kept then.
fn listening() -> bool {
    if COPY.with_borrow(|copy| copy.listening.is_some()) {
        return true;
    }
    let Ok(listener) = WorkerMessages::listen(|message| {
        if message == SwMessage::SessionChanged {
            drop_copy();
        }
    }) else {
        return false;
    };
    COPY.with_borrow_mut(|copy| copy.listening = Some(listener));
    true
}

/// Keeps `tokens` unless the copy was dropped since `epoch`.
fn keep(epoch: u64, tokens: &SessionTokens) {
    COPY.with_borrow_mut(|copy| {
        if copy.epoch == epoch {
            copy.tokens = Some(tokens.clone());
        }
    });
}

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
        web::sleep(50.0).await;
    }
    true
}

/// The session tokens: the EID JWT and the venue JWT from the page's copy of the worker's last
/// answer while it is good (see the module's comment), else from the worker, or the worker's
/// typed error ([`PageError::Session`] with the failed stage).
pub async fn session_tokens(options: TokenOptions) -> Result<SessionTokens, PageError> {
    if !options.fresh
        && let Some(tokens) = warm(options.margin_ms)
    {
        return Ok(tokens);
    }
    let hears = listening();
    let epoch = COPY.with_borrow(|copy| copy.epoch);
    let answer = ask_worker().await;
    match &answer {
        Ok(tokens) if hears => keep(epoch, tokens),
        Ok(_) => {}
        Err(_) => drop_copy(),
    }
    answer
}

/// `GET /uc/session/vtx`, answered by the worker.
async fn ask_worker() -> Result<SessionTokens, PageError> {
    let container = container().ok_or(PageError::Unsupported("service workers"))?;
    if !controlled(&container, CONTROL_WAIT_MS).await {
        return Err(PageError::NoServiceWorker);
    }
    let response = net::send(&http::get(paths::SESSION_VTX)).await?;
    if response.is_success() {
        return response
            .json()
            .map_err(|detail| PageError::BadResponse { what: "/uc/session/vtx", detail });
    }
    match response.json::<SessionError>() {
        Ok(error) => Err(PageError::Session(error)),
        Err(_) => Err(PageError::from_answer(response.status, &response.body)),
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
            .map_err(|e| PageError::InvalidArgument(web::describe(&e)))?;
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
        "session-changed" => Some(SwMessage::SessionChanged),
        "skip-waiting" => Some(SwMessage::SkipWaiting),
        _ => None,
    }
}

/// Tells the worker to drop its cached tokens (logout), after dropping the page's copy.
pub fn clear_worker_session() {
    drop_copy();
    if let Some(worker) = container().and_then(|c| c.controller()) {
        let _ = worker.post_message(&js::to_js(&SwMessage::SessionClear));
    }
}
