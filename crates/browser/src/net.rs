//! Shared fetch helpers: one request with a timeout that really cancels it (an `AbortController`),
//! the whole body read as text, and typed errors. Used by the service worker's token chain and
//! by the identity's registration; works in a page and in a worker (it uses the global `fetch`).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, RequestCredentials, RequestInit, RequestRedirect};

#[wasm_bindgen]
extern "C" {
    // The global functions, so the same code runs in a window and in a worker scope.
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(request: &web_sys::Request) -> js_sys::Promise;
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &js_sys::Function, millis: i32) -> i32;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(handle: i32);
}

/// Whether a request carries the browser's cookies for the target origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// Cookies go along only to the page's (or worker's) own origin: `fetch`'s default.
    SameOrigin,
    /// Cookies go along to any origin (which must answer CORS with credentials): the venue hops.
    Include,
}

/// One HTTP request.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// An absolute URL, or one relative to the global scope's location.
    pub url: &'a str,
    /// Extra request headers.
    pub headers: &'a [(&'a str, &'a str)],
    /// A text body (with its `Content-Type` among `headers`).
    pub body: Option<&'a str>,
    /// Cookies or not.
    pub credentials: Credentials,
    /// For the whole exchange, headers and body; the request is aborted when it runs out.
    pub timeout: Duration,
}

impl<'a> HttpRequest<'a> {
    /// A `GET` of `url` with no extra headers, same-origin credentials and `timeout`.
    pub fn get(url: &'a str, timeout: Duration) -> Self {
        Self {
            method: "GET",
            url,
            headers: &[],
            body: None,
            credentials: Credentials::SameOrigin,
            timeout,
        }
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
}

/// The request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The network failed (refused, reset, CORS, DNS) or the request could not be built.
    #[error("network error: {0}")]
    Network(String),
    /// No complete answer within the timeout; the request was aborted.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
}

/// Sends `request` and reads the whole body, or fails with [`NetError`].
pub async fn send(request: &HttpRequest<'_>) -> Result<HttpResponse, NetError> {
    let controller = AbortController::new().map_err(js_error)?;
    let init = RequestInit::new();
    init.set_method(request.method);
    init.set_redirect(RequestRedirect::Follow);
    init.set_credentials(match request.credentials {
        Credentials::SameOrigin => RequestCredentials::SameOrigin,
        Credentials::Include => RequestCredentials::Include,
    });
    init.set_signal(Some(&controller.signal()));
    if !request.headers.is_empty() {
        let headers = Headers::new().map_err(js_error)?;
        for (name, value) in request.headers {
            headers.append(name, value).map_err(js_error)?;
        }
        init.set_headers_headers(&headers);
    }
    if let Some(body) = request.body {
        init.set_body(&JsValue::from_str(body));
    }
    let req = web_sys::Request::new_with_str_and_init(request.url, &init).map_err(js_error)?;

    // The timer aborts the request; the flag tells the abort apart from other failures.
    let timed_out = Rc::new(Cell::new(false));
    let on_timeout = {
        let (timed_out, controller) = (timed_out.clone(), controller.clone());
        Closure::<dyn FnMut()>::new(move || {
            timed_out.set(true);
            controller.abort();
        })
    };
    let millis = i32::try_from(request.timeout.as_millis()).unwrap_or(i32::MAX);
    let timer = set_timeout(on_timeout.as_ref().unchecked_ref(), millis);
    let result = exchange(&req).await;
    // Cleared before `on_timeout` is dropped, so the timer never calls a freed closure.
    clear_timeout(timer);
    drop(on_timeout);
    result.map_err(|err| if timed_out.get() { NetError::Timeout(request.timeout) } else { err })
}

async fn exchange(request: &web_sys::Request) -> Result<HttpResponse, NetError> {
    let response: web_sys::Response =
        JsFuture::from(global_fetch(request)).await.map_err(js_error)?.unchecked_into();
    let text = JsFuture::from(response.text().map_err(js_error)?).await.map_err(js_error)?;
    Ok(HttpResponse {
        status: response.status(),
        url: response.url(),
        redirected: response.redirected(),
        body: text.as_string().unwrap_or_default(),
    })
}

/// A JS exception as a [`NetError::Network`], keeping its message.
fn js_error(value: JsValue) -> NetError {
    NetError::Network(describe(&value))
}

/// The message of a JS error value, for logs and error details.
pub(crate) fn describe(value: &JsValue) -> String {
    if let Some(err) = value.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}
