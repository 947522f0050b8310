//! The HTTP/1.1 server under the router, and the limits every request meets before a handler
//! sees it: how long its header and its body may take to arrive, and how large a body it may
//! declare.
//!
//! `axum::serve` has no read timeouts: a client that sends half a header keeps its connection
//! (and a file descriptor, and a task) for good. This is `axum::serve`'s loop with hyper's
//! `header_read_timeout` set: hyper closes a connection whose request header is not complete
//! within it, and, because hyper waits for the next request's header the same way, a
//! keep-alive connection that stays idle that long. A response that is being written (a
//! reverse stream that lasts hours) is not waiting for a header, so it is not cut.
//!
//! A reverse stream does not stay with hyper at all: its response is marked detachable, and
//! the loop takes the socket back before hyper writes a byte of it (see `detach.rs`).

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tower::ServiceExt as _;

use crate::detach::{self, Detachable, Detached};
use crate::error::{MAX_BODY_BYTES, RequestError};

/// How long a client may take to send a request's header (and how long a keep-alive connection
/// may sit idle), unless configured: hyper's own default, and nginx's `client_header_timeout`
/// order of magnitude.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send a whole request body (at most `MAX_BODY_BYTES`), unless
/// configured. A deadline for the whole body, not a gap between reads: a client that trickles
/// one byte a second would otherwise hold a handler for 18 hours.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The listener's accept backlog unless configured: room for a reconnect storm (every client of
/// an instance that restarted comes back at once). With Linux's old default of 128, connects
/// beyond it are dropped and their clients retry only after a 1 s SYN timeout; nginx uses 511.
/// The kernel caps it at `net.core.somaxconn` (4096 on current kernels).
pub const DEFAULT_LISTEN_BACKLOG: u32 = 1024;

/// Binds a listener on `addr` with room for `backlog` connections waiting to be accepted
/// (`TcpListener::bind` leaves it at a fixed 128 on Linux; this makes it a setting).
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does on Unix: a restarted server can bind while old connections
    // of the previous one linger in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves `router` on `listener` with `header_read_timeout` until `shutdown` resolves, then
/// stops accepting, lets each connection finish its current exchange, and returns when all
/// are closed. (Open reverse streams are ended by the caller, so that this does not wait for
/// clients that never hang up.)
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // Dropping `stop_rx` tells the accept loop and every connection to stop.
    let (stop_tx, stop_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(stop_rx);
    });
    // Each connection holds a `closed_rx`; `closed_tx.closed()` resolves when all are gone.
    let (closed_tx, closed_rx) = watch::channel(());
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    // Events are small frames that must leave at once, not wait for Nagle's
                    // algorithm to fill a segment (or for the peer's delayed ACK).
                    if let Err(err) = accepted.0.set_nodelay(true) {
                        tracing::debug!(error = %err, "TCP_NODELAY not set");
                    }
                    accepted
                }
                Err(err) => {
                    accept_failed(&err).await;
                    continue;
                }
            },
            () = stop_tx.closed() => break,
        };
        let connection = Accepted { stream, remote, router: router.clone(), header_read_timeout };
        tokio::spawn(connection.run(stop_tx.clone(), closed_rx.clone()));
    }
    drop(closed_rx);
    drop(listener);
    closed_tx.closed().await;
}

/// One accepted connection, not yet served.
struct Accepted {
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    header_read_timeout: Duration,
}

impl Accepted {
    /// Serves the connection until the peer closes it or, once `stop` is closed, until its
    /// current exchange is done; drops `closed` then. A [`detachable`](crate::detach) response
    /// (a reverse stream) takes the socket from hyper and goes on in a task of its own.
    async fn run(self, stop: watch::Sender<()>, closed: watch::Receiver<()>) {
        let Self { stream, remote, router, header_read_timeout } = self;
        // At most one response detaches: hyper's connection ends with it.
        let (detach_tx, mut detach_rx) = mpsc::channel::<Detached>(1);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            // What `into_make_service_with_connect_info` would give handlers.
            request.extensions_mut().insert(ConnectInfo(remote));
            // Chunked framing needs HTTP/1.1; a HEAD response has no body to write.
            let may_detach =
                request.method() == Method::GET && request.version() == Version::HTTP_11;
            respond(router.clone(), request, may_detach.then(|| detach_tx.clone()))
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
        let mut connection = builder.serve_connection(TokioIo::new(stream), service);
        let mut stopping = false;
        let detached = loop {
            tokio::select! {
                result = &mut connection => {
                    if let Err(err) = result {
                        // Timeouts and peers that vanish mid-request end here: their business.
                        tracing::debug!(%remote, error = %err, "connection ended with an error");
                    }
                    break None;
                }
                Some(detached) = detach_rx.recv() => break Some(detached),
                () = stop.closed(), if !stopping => {
                    stopping = true;
                    Pin::new(&mut connection).graceful_shutdown();
                }
            }
        };
        if let Some(detached) = detached {
            // hyper has read the request and written nothing of its response: the socket is
            // the stream's now. Its own task is much smaller than this one, which ends here
            // and frees hyper's buffers with it.
            let stream = connection.into_parts().io.into_inner();
            let (head, body) = detached.encode();
            tokio::spawn(async move {
                detach::write_detached(stream, head, body).await;
                drop(closed);
            });
        }
    }
}

/// The router's response to `request`; a [`Detachable`] one is handed to the connection's
/// loop through `detach` instead of being returned to hyper, if the request allows it.
async fn respond(
    router: Router,
    request: hyper::Request<hyper::body::Incoming>,
    detach: Option<mpsc::Sender<Detached>>,
) -> Result<Response, Infallible> {
    let Ok(response) = router.oneshot(request).await;
    let (Some(detach), Some(detachable)) = (detach, response.extensions().get::<Detachable>())
    else {
        return Ok(response);
    };
    let Some(body) = detachable.take() else { return Ok(response) };
    let (head, attached) = response.into_parts();
    drop(attached);
    // The connection's loop takes the socket and drops hyper's connection, and this future
    // with it, before hyper writes a byte of this response.
    match detach.try_send(Detached { head, body }) {
        Ok(()) => std::future::pending().await,
        Err(err) => {
            let Detached { head, body } = err.into_inner();
            Ok(Response::from_parts(head, body))
        }
    }
}

/// Like `axum::serve`: a connection error (the peer left before we took it) is nothing; running
/// out of file descriptors is worth a line and a pause, not a busy loop.
async fn accept_failed(err: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(err.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::warn!(error = %err, "accepting a connection failed; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The request limits, as a middleware of the whole router (`from_fn_with_state`, with the body
/// read timeout as state):
/// - a `Content-Length` over [`MAX_BODY_BYTES`] is refused at once with `413 body_too_large`,
///   before a byte of the body is read (the extractors' limit would only find out after reading
///   64 KiB, and a client that declared 10 GB and sends nothing would never get there);
/// - the body must arrive within the timeout; after it, reading it fails and the extractors
///   answer `408 request_timeout`.
pub(crate) async fn limit_request(
    State(body_read_timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return RequestError::BodyTooLarge.into_response();
    }
    let request = request.map(|body| Body::new(DeadlineBody::new(body, body_read_timeout)));
    next.run(request).await
}

/// A request body did not arrive within the body read timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the server's body read timeout")]
pub(crate) struct BodyReadTimeout;

/// Whether `err`, or an error it wraps, is a [`BodyReadTimeout`] (the extractors' rejections
/// wrap the body's error in a few layers).
pub(crate) fn is_body_read_timeout(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<BodyReadTimeout>() {
            return true;
        }
        next = err.source();
    }
    false
}

/// A body that fails with [`BodyReadTimeout`] once `timeout` has passed since it was first read.
struct DeadlineBody {
    inner: Body,
    timeout: Duration,
    /// Set at the first poll: a body nobody reads costs no timer.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Body, timeout: Duration) -> Self {
        Self { inner, timeout, deadline: None }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let timeout = this.timeout;
        let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        // What has arrived is taken even at the deadline.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyReadTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
