//! One reverse-stream connection: `fetch` with a streamed body read into the protocol crate's
//! [`SseParser`], with a watchdog that declares the connection dead after two missed heartbeats.
//!
//! `fetch` rather than `EventSource`: it sends `Last-Event-ID` as a header, it sees heartbeat
//! comments (which `EventSource` hides), and it lets the client choose when to reconnect.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use protocol::sse::{SseItem, SseParser};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, ReadableStreamDefaultReader};

use super::error::PageError;
use super::http;
use super::js;
use crate::net::{self, HttpRequest};
use crate::web::{self, Timeout};

/// The response header with which the backend says that a stream opened with
/// `?scope=front` carries every event of the front (see the package README).
pub(crate) const SCOPE_HEADER: &str = protocol::paths::STREAM_SCOPE_HEADER;

/// An open reverse stream.
pub(crate) struct Stream {
    reader: ReadableStreamDefaultReader,
    abort: AbortController,
    parser: SseParser,
    items: VecDeque<SseItem>,
    /// The connection is dead after this long without a byte; 0 disables the watchdog.
    silence_ms: f64,
    /// The backend honoured `?scope=front`.
    pub(crate) front_scope: bool,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("front_scope", &self.front_scope).finish_non_exhaustive()
    }
}

impl Stream {
    /// Opens `url` and waits for the answer's headers. An error status is the server's
    /// [`PageError::Http`] (`front_not_registered` among them).
    pub(crate) async fn open(
        url: &str,
        last_event_id: Option<&str>,
        silence_ms: f64,
        abort: AbortController,
    ) -> Result<Self, PageError> {
        let signal = abort.signal();
        let call = HttpRequest { last_event_id, signal: Some(&signal), ..http::get(url) };
        // The watchdog covers the wait for the headers too: a server that accepts the
        // connection and never answers is as dead as one that stops sending heartbeats.
        let response = {
            let abort = abort.clone();
            let _watchdog =
                (silence_ms > 0.0).then(|| Timeout::new(silence_ms, move || abort.abort()));
            http::open(&call).await?
        };
        let status = response.status();
        if !response.ok() {
            let body = net::text(&response).await.unwrap_or_default();
            return Err(PageError::from_answer(status, &body));
        }
        let headers = response.headers();
        let content_type = headers.get("content-type").ok().flatten().unwrap_or_default();
        if !content_type.starts_with("text/event-stream") {
            abort.abort();
            return Err(PageError::Protocol(format!(
                "stream answered {content_type:?}, not text/event-stream"
            )));
        }
        let front_scope = headers
            .get(SCOPE_HEADER)
            .ok()
            .flatten()
            .is_some_and(|v| v.eq_ignore_ascii_case("front"));
        let body = response
            .body()
            .ok_or_else(|| PageError::Protocol("stream answer has no body".into()))?;
        let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
        Ok(Self {
            reader,
            abort,
            parser: SseParser::new(),
            items: VecDeque::new(),
            silence_ms,
            front_scope,
        })
    }

    /// The next event or comment; `Ok(None)` when the server ended the stream. A connection
    /// silent for longer than the watchdog allows is [`PageError::Timeout`].
    pub(crate) async fn next(&mut self) -> Result<Option<SseItem>, PageError> {
        loop {
            if let Some(item) = self.items.pop_front() {
                return Ok(Some(item));
            }
            let dead = Rc::new(Cell::new(false));
            let watchdog = (self.silence_ms > 0.0).then(|| {
                let (dead, abort) = (dead.clone(), self.abort.clone());
                Timeout::new(self.silence_ms, move || {
                    dead.set(true);
                    abort.abort();
                })
            });
            let result = JsFuture::from(self.reader.read()).await;
            drop(watchdog);
            let chunk = match result {
                Ok(chunk) => chunk,
                Err(_) if dead.get() => return Err(PageError::Timeout(self.silence_ms as u32)),
                Err(e) => return Err(PageError::Network(web::describe(&e))),
            };
            if js::get_bool(&chunk, "done") == Some(true) {
                return Ok(None);
            }
            let value = js::get(&chunk, "value");
            if let Some(bytes) = value.dyn_ref::<js_sys::Uint8Array>() {
                let bytes = bytes.to_vec();
                let mut items = Vec::new();
                self.parser.feed_into(&bytes, &mut items);
                self.items.extend(items);
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.abort.abort();
    }
}
