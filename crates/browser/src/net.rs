//! The one fetch wrapper of both modules: a request built in one place, sent with the global
//! `fetch` (a window's or a worker's), an optional timeout that really cancels it (an
//! `AbortController`), the body read as text, JSON in and out, and typed errors. The page
//! client, the identity's registration and the service worker's token chain all go through it.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use protocol::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
#[cfg(feature = "page")]
use web_sys::RequestCache;
use web_sys::{
    AbortController, AbortSignal, Headers, RequestCredentials, RequestInit, RequestRedirect,
    Response,
};

use crate::web::{JsError, Timeout};

#[wasm_bindgen]
extern "C" {
    // The global function, so the same code runs in a window and in a worker scope.
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(request: &web_sys::Request) -> js_sys::Promise;
}

/// Whether a request carries the browser's cookies for the target origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// Cookies go along only to the page's (or worker's) own origin: `fetch`'s default.
    SameOrigin,
    /// Cookies go along to any origin (which must answer CORS with credentials): the venue hops
    /// and the refresh cookie of a backend on another origin.
    Include,
}

/// One HTTP request. The fields only the page client sets (bearer, `Last-Event-ID`, no-store,
/// an abort signal) exist only in its module, so the worker's wasm carries none of their code.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// An absolute URL, or one relative to the global scope's location.
    pub url: &'a str,
    /// Extra request headers.
    pub headers: &'a [(&'a str, &'a str)],
    /// A text body, with its `Content-Type` among `headers` (`text/plain` needs no CORS
    /// preflight).
    pub body: Option<&'a str>,
    /// A JSON body, sent with `Content-Type: application/json`; wins over `body`.
    pub json: Option<&'a str>,
    /// `Authorization: Bearer …`.
    #[cfg(feature = "page")]
    pub bearer: Option<&'a str>,
    /// `Last-Event-ID` (a reverse stream's resume point).
    #[cfg(feature = "page")]
    pub last_event_id: Option<&'a str>,
    /// Cookies or not.
    pub credentials: Credentials,
    /// `cache: "no-store"`: the answer is neither taken from nor put in the HTTP cache.
    #[cfg(feature = "page")]
    pub no_store: bool,
    /// For the whole exchange, headers and body ([`send`] only); the request is aborted when
    /// it runs out.
    pub timeout: Option<Duration>,
    /// Aborts the request, and the body of a streamed answer ([`open`]).
    #[cfg(feature = "page")]
    pub signal: Option<&'a AbortSignal>,
}

impl<'a> HttpRequest<'a> {
    /// A `GET` of `url` with no extra headers, same-origin credentials and `timeout`.
    pub fn get(url: &'a str, timeout: Duration) -> Self {
        Self { timeout: Some(timeout), ..Self::to(url) }
    }

    /// A `GET` of `url` with no timeout and nothing else set.
    pub fn to(url: &'a str) -> Self {
        Self {
            method: "GET",
            url,
            headers: &[],
            body: None,
            json: None,
            #[cfg(feature = "page")]
            bearer: None,
            #[cfg(feature = "page")]
            last_event_id: None,
            credentials: Credentials::SameOrigin,
            #[cfg(feature = "page")]
            no_store: false,
            timeout: None,
            #[cfg(feature = "page")]
            signal: None,
        }
    }

    /// A `POST` of `url` with an optional JSON body and no timeout.
    pub fn post(url: &'a str, json: Option<&'a str>) -> Self {
        Self { method: "POST", json, ..Self::to(url) }
    }

    fn build(&self, signal: Option<&AbortSignal>) -> Result<web_sys::Request, NetError> {
        let invalid = |e: JsValue| NetError::InvalidRequest(JsError::from(e).to_string());
        let init = RequestInit::new();
        init.set_method(self.method);
        init.set_redirect(RequestRedirect::Follow);
        #[cfg(feature = "page")]
        if self.no_store {
            init.set_cache(RequestCache::NoStore);
        }
        init.set_credentials(match self.credentials {
            Credentials::SameOrigin => RequestCredentials::SameOrigin,
            Credentials::Include => RequestCredentials::Include,
        });
        #[cfg(feature = "page")]
        let signal = signal.or(self.signal);
        init.set_signal(signal);
        let headers = Headers::new().map_err(invalid)?;
        for (name, value) in self.headers {
            headers.append(name, value).map_err(invalid)?;
        }
        if let Some(body) = self.json {
            headers.set("Content-Type", "application/json").map_err(invalid)?;
            init.set_body(&JsValue::from_str(body));
        } else if let Some(body) = self.body {
            init.set_body(&JsValue::from_str(body));
        }
        #[cfg(feature = "page")]
        if let Some(token) = self.bearer {
            headers.set("Authorization", &format!("Bearer {token}")).map_err(invalid)?;
        }
        #[cfg(feature = "page")]
        if let Some(id) = self.last_event_id {
            headers.set("Last-Event-ID", id).map_err(invalid)?;
        }
        init.set_headers_headers(&headers);
        web_sys::Request::new_with_str_and_init(self.url, &init).map_err(invalid)
    }
}

/// An answer, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code of the final response (after redirects).
    pub status: u16,
    /// The URL of the final response.
    pub url: String,
    /// Whether redirects were followed to get here.
    pub redirected: bool,
    /// The body, decoded as UTF-8.
    pub body: String,
}

impl HttpResponse {
    /// `2xx`.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        from_json(&self.body)
    }

    /// The body as the backend's one error body, if it is one.
    pub fn error_body(&self) -> Option<ErrorBody> {
        from_json(&self.body).ok()
    }
}

/// The request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The network failed (refused, reset, CORS, DNS, aborted).
    #[error("network error: {0}")]
    Network(String),
    /// No complete answer within the timeout; the request was aborted.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The request could not be built (a malformed URL or header).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl From<JsError> for NetError {
    fn from(e: JsError) -> Self {
        Self::Network(e.to_string())
    }
}

/// Sends `request` and reads the whole body, or fails with [`NetError`]; with a timeout, the
/// request is aborted when it runs out.
pub async fn send(request: &HttpRequest<'_>) -> Result<HttpResponse, NetError> {
    // One path with and without a timeout: the controller and the timer exist only with one.
    let controller = match request.timeout {
        Some(_) => Some(AbortController::new().map_err(JsError::from)?),
        None => None,
    };
    let req = request.build(controller.as_ref().map(|c| c.signal()).as_ref())?;
    // The timer aborts the request; the flag tells the abort apart from other failures. The
    // timer is cleared when `_timer` drops, whichever way the exchange ends.
    let timed_out = Rc::new(Cell::new(false));
    let _timer = match (request.timeout, controller) {
        (Some(timeout), Some(controller)) => {
            let timed_out = timed_out.clone();
            Some(Timeout::new(timeout.as_secs_f64() * 1000.0, move || {
                timed_out.set(true);
                controller.abort();
            }))
        }
        _ => None,
    };
    let result = exchange(&req).await;
    result.map_err(|err| match request.timeout {
        Some(timeout) if timed_out.get() => NetError::Timeout(timeout),
        _ => err,
    })
}

/// The request and its whole body, in one future (one state machine in the wasm, not three).
async fn exchange(request: &web_sys::Request) -> Result<HttpResponse, NetError> {
    let response: Response =
        JsFuture::from(global_fetch(request)).await.map_err(JsError::from)?.unchecked_into();
    let text = JsFuture::from(response.text().map_err(JsError::from)?).await;
    Ok(HttpResponse {
        status: response.status(),
        url: response.url(),
        redirected: response.redirected(),
        body: text.map_err(JsError::from)?.as_string().unwrap_or_default(),
    })
}

/// Starts `request` and returns the answer as soon as its headers are in, its body unread (a
/// reverse stream); `request.signal` aborts it, `request.timeout` is not used.
#[cfg(feature = "page")]
pub async fn open(request: &HttpRequest<'_>) -> Result<Response, NetError> {
    fetch(&request.build(None)?).await
}

/// `fetch(request)` of a request built elsewhere (`auth.fetch` of the page's own `Request`);
/// a rejected fetch (offline, CORS, abort) is [`NetError::Network`].
#[cfg(feature = "page")]
pub async fn fetch(request: &web_sys::Request) -> Result<Response, NetError> {
    let response = JsFuture::from(global_fetch(request)).await.map_err(JsError::from)?;
    response.dyn_into::<Response>().map_err(|_| NetError::Network("fetch gave no Response".into()))
}

/// The whole body as text.
#[cfg(feature = "page")]
pub async fn text(response: &Response) -> Result<String, NetError> {
    let text = JsFuture::from(response.text().map_err(JsError::from)?).await;
    Ok(text.map_err(JsError::from)?.as_string().unwrap_or_default())
}

/// `base` + `path`, where `base` is an origin (with or without a trailing slash) or empty for
/// the global scope's own origin.
pub fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// A value as JSON text (plain data: cannot fail).
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    protocol::json::to_string(value).unwrap_or_default()
}

/// JSON text parsed as `T`; the error is the parser's sentence.
pub fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    protocol::json::from_str(text).map_err(|e| e.to_string())
}
