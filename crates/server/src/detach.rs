//! Long-lived streaming responses (the reverse streams) written straight to their socket once
//! their head is ready, instead of through hyper, so that an open stream does not keep hyper's
//! per-connection state.
//!
//! hyper gives every HTTP/1.1 connection an 8 KiB read buffer and an 8 KiB write buffer, plus
//! the connection task with the dispatcher and the service's futures, for as long as the
//! connection lives. For an ordinary exchange that is a few milliseconds; for a reverse stream
//! it is hours, and an idle stream cost ~19.6 KiB that way, twice nginx-nchan's 10 KiB. A
//! handler marks a response [`detachable`]; the serve loop (`http.rs`) then takes the socket
//! back from hyper before hyper writes anything of that response, drops hyper's connection, and
//! spawns [`write_detached`]: a small task that writes the head and the body's frames
//! (chunked, with `Connection: close`), and watches the socket for the client going away.
//!
//! The connection carries nothing after such a response: a stream's body ends only when the
//! stream is replaced, cut off, drained or shut down, and its client reconnects with a new
//! request anyway. A detachable response served some other way (`Router::oneshot` in a test,
//! an HTTP/1.0 client, a `HEAD`) is an ordinary streaming response.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, Version, header};
use axum::response::Response;
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

/// Frames that are ready at once are joined into one write up to this size.
const MAX_WRITE: usize = 32 * 1024;

/// The body of a detachable response, shared by the response (which polls it when hyper
/// writes it) and the extension that lets the serve loop take it.
type Slot = Arc<Mutex<Option<Body>>>;

fn lock(slot: &Slot) -> MutexGuard<'_, Option<Body>> {
    // A body is taken or polled in single steps; a panic elsewhere leaves it whole.
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// The response extension of a detachable response: its body, for the serve loop to take.
#[derive(Clone)]
pub(crate) struct Detachable(Slot);

impl Detachable {
    /// Takes the body out (the response's own body is empty from then on).
    pub(crate) fn take(&self) -> Option<Body> {
        lock(&self.0).take()
    }
}

/// Marks a streaming response as one the serve loop may write itself.
pub(crate) fn detachable(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let slot = Arc::new(Mutex::new(Some(body)));
    parts.extensions.insert(Detachable(slot.clone()));
    Response::from_parts(parts, Body::new(Attached(slot)))
}

/// The body as hyper sees it while the response is not detached.
struct Attached(Slot);

impl http_body::Body for Attached {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match lock(&self.0).as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.0).as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.0).as_ref().map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

/// A response the serve loop took from hyper: its head, and its body.
pub(crate) struct Detached {
    pub(crate) head: axum::http::response::Parts,
    pub(crate) body: Body,
}

impl Detached {
    /// The encoded head, and the body to write after it. The head's values may share the
    /// request's bytes (an echoed request id), which share hyper's read buffer: they go here.
    pub(crate) fn encode(self) -> (Vec<u8>, Body) {
        (head(self.head.status, &self.head.headers), self.body)
    }
}

/// The HTTP/1.1 head of a detached response: its headers but the framing ones, which are
/// this writer's (chunked, and no keep-alive), and a `Date` as hyper would add.
fn head(status: StatusCode, headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(format!("{:?} {status}\r\n", Version::HTTP_11).as_bytes());
    let framing = [header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::CONNECTION];
    for (name, value) in headers.iter().filter(|(name, _)| !framing.contains(name)) {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(header::DATE) {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        out.extend_from_slice(format!("date: {date}\r\n").as_bytes());
    }
    out.extend_from_slice(b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    out
}

/// Appends `data` as one chunk of a chunked body.
fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        // An empty chunk would end the body.
        return;
    }
    out.extend_from_slice(format!("{:X}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// What the next poll of the body gave.
enum Next {
    /// Bytes to write (possibly none: a frame that was not data).
    More,
    /// The body ended; its last chunk is in the buffer.
    End,
    /// The body failed: the connection is dropped without a last chunk, so that the client
    /// sees an incomplete body rather than a clean end.
    Failed,
}

/// Appends the body's next frame to `out`.
fn take_frame(frame: Option<Result<Frame<Bytes>, axum::Error>>, out: &mut Vec<u8>) -> Next {
    match frame {
        Some(Ok(frame)) => {
            if let Ok(data) = frame.into_data() {
                chunk(out, &data);
            }
            Next::More
        }
        None => {
            out.extend_from_slice(b"0\r\n\r\n");
            Next::End
        }
        Some(Err(err)) => {
            tracing::debug!(error = %err, "a detached response body failed");
            Next::Failed
        }
    }
}

/// Writes `head`, then `body` as chunks, on `stream` until the body ends, the client goes
/// away or a write fails; then closes the connection. Its future is small (it is what an idle
/// stream's task holds): the socket, the body, and a buffer only while writing.
pub(crate) async fn write_detached(mut stream: TcpStream, head: Vec<u8>, mut body: Body) {
    let mut out = head;
    let mut next = Next::More;
    loop {
        // Everything ready now goes in one write (one segment, with TCP_NODELAY).
        while matches!(next, Next::More) && out.len() < MAX_WRITE {
            let ready = Pin::new(&mut body).poll_frame(&mut Context::from_waker(Waker::noop()));
            match ready {
                Poll::Ready(frame) => next = take_frame(frame, &mut out),
                Poll::Pending => break,
            }
        }
        if matches!(next, Next::Failed) {
            return;
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            // A fresh buffer per write: an idle stream holds none.
            out = Vec::new();
        }
        if matches!(next, Next::End) {
            let _ = stream.shutdown().await;
            return;
        }
        // `poll_read_ready`, not `readable()`: it takes the socket's read-waker slot, where
        // hyper's connection task left its waker, which would otherwise keep that finished
        // task's memory for the life of the stream.
        tokio::select! {
            frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)) => {
                next = take_frame(frame, &mut out);
            }
            ready = std::future::poll_fn(|cx| stream.poll_read_ready(cx)) => {
                if ready.is_err() || peer_left(&stream) {
                    return;
                }
            }
        }
    }
}

/// Reads what the client sent (a client of a stream sends nothing more; what it sends is
/// dropped) and says whether it closed the connection or it failed.
fn peer_left(stream: &TcpStream) -> bool {
    let mut sink = [0u8; 512];
    match stream.try_read(&mut sink) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) => err.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_replaces_the_framing_headers() {
        let mut headers = HeaderMap::new();
        let value = axum::http::HeaderValue::from_static;
        headers.insert(header::CONTENT_TYPE, value("text/event-stream"));
        headers.insert(header::CONTENT_LENGTH, value("12"));
        headers.insert(header::CONNECTION, value("keep-alive"));
        headers.insert(header::DATE, value("Mon, 30 Nov 2026 17:00:00 GMT"));
        let head = String::from_utf8_lossy(&head(StatusCode::OK, &headers)).into_owned();
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
             date: Mon, 30 Nov 2026 17:00:00 GMT\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn chunks_are_hex_sized_and_empty_data_is_skipped() {
        let mut out = Vec::new();
        chunk(&mut out, b"");
        chunk(&mut out, &[b'x'; 26]);
        assert_eq!(out, [b"1A\r\n".as_slice(), &[b'x'; 26], b"\r\n"].concat());
    }
}
