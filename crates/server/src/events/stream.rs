//! The body of one reverse stream: the `authenticate` challenge, then (once activated) the
//! kept events after the client's `Last-Event-ID`, then live events and heartbeats.
//!
//! The body is a hand-written `http_body::Body` rather than a task per stream: an idle stream
//! is just this struct, its channel and its registry entry, which keeps memory per stream low.
//! Once activated it reads the kept events it missed a page at a time (bounded in count and
//! bytes), the next page only when its writer (`detach.rs`, or hyper) asks for more, so a slow
//! reader holds one page at most. Live events queued meanwhile follow; those the replay carried
//! already are skipped by id.
//! Dropping the body (the client went away, or its writer is done) removes the stream from the
//! registry and tells the store, which starts its session's idle time if it was current.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use protocol::messages::EVENTS_LOST_EVENT;
use protocol::messages::FrontBid;
use protocol::sse::{self, SseEvent};
use protocol::{ErrorBody, ErrorCode, SessionUuid, StreamUuid};
use tokio::time::Sleep;

use super::Inner;
use super::registry::{Frame, FrameRx};
use super::store::{ReplayPage, ReplayRequest, Since, StoreError};

/// Kept events read from the store per page while replaying (the page's bytes are capped by
/// `EventsConfig::replay_page_bytes`).
const REPLAY_PAGE: usize = 256;
/// Frames joined into one chunk while draining the queue, to save writes.
const MAX_CHUNK: usize = 32 * 1024;

static HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// Encodes an event frame: `id: N` then `data: …`, inside one block.
pub(crate) fn event_frame(id: i64, body: &str, out: &mut String) {
    sse::encode_into(&SseEvent::data(body).with_id(id.to_string()), out);
}

/// Where a stream's replay stands.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    since: Since,
    /// The highest event id written: live events at or below it came in the replay already.
    last_sent: i64,
    /// The client was told that events were lost (once per stream).
    told_lost: bool,
    /// No page was read yet.
    first: bool,
}

impl Cursor {
    /// A replay after `last_event_id`, or of what was never delivered if there is none.
    fn new(last_event_id: Option<i64>) -> Self {
        let since = last_event_id.map_or(Since::Undelivered(0), Since::Id);
        Self { since, last_sent: last_event_id.unwrap_or(0), told_lost: false, first: true }
    }

    /// Takes a page read from the store; returns its encoded events.
    fn advance(&mut self, page: &ReplayPage) -> Option<Bytes> {
        metrics::counter!("websession_replay_events_total").increment(page.events.len() as u64);
        self.first = false;
        let mut out = String::new();
        if page.reset {
            // The client's id was not from this store's sequence (the store was reset): it
            // starts over from what was never delivered.
            self.last_sent = 0;
        }
        if (page.reset || page.lost) && !std::mem::replace(&mut self.told_lost, true) {
            // No silent gap: the client is told, then gets what the store still has.
            let message = if page.reset {
                "the store does not know this Last-Event-ID (it was reset): events sent before \
                 may be lost; the stream goes on with what was never delivered"
            } else {
                "events after this Last-Event-ID were trimmed from the store (its per-front \
                 cap): some are lost; the stream goes on with what is kept"
            };
            let notice = ErrorBody::new(ErrorCode::EventsLost, message);
            let notice = serde_json::to_string(&notice).unwrap_or_default();
            sse::encode_into(&SseEvent::data(notice).with_event(EVENTS_LOST_EVENT), &mut out);
        }
        self.since = page.next;
        let Some(last) = page.events.last().map(|e| e.id) else {
            return (!out.is_empty()).then(|| Bytes::from(out));
        };
        for event in &page.events {
            event_frame(event.id, &event.body, &mut out);
        }
        self.last_sent = self.last_sent.max(last);
        Some(Bytes::from(out))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the activation; ends at the deadline.
    Pending,
    /// Sending kept events from the store, a page at a time.
    Replay,
    /// Sending what the channel brings.
    Live,
    Done,
}

/// Removes the stream from the registry and the store when the body ends or is dropped,
/// whichever is first.
#[derive(Debug)]
struct Guard {
    inner: Arc<Inner>,
    stream: StreamUuid,
    released: bool,
}

impl Guard {
    fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        if let Some(ended) = self.inner.registry.remove(self.stream) {
            self.inner.record_end(ended);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.release();
    }
}

type ReplayFuture = Pin<Box<dyn Future<Output = Result<ReplayPage, StoreError>> + Send>>;

/// One reverse stream's response body.
pub(crate) struct SseBody {
    phase: Phase,
    hello: Option<Bytes>,
    rx: FrameRx,
    /// The activation deadline; dropped once activated, so that idle streams hold no timer.
    deadline: Option<Pin<Box<Sleep>>>,
    front: FrontBid,
    /// Its session; `None` for a front-scoped stream, which replays every session's events.
    session: Option<SessionUuid>,
    cursor: Cursor,
    /// The page being read while replaying.
    replay: Option<ReplayFuture>,
    guard: Guard,
}

impl std::fmt::Debug for SseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseBody").field("phase", &self.phase).finish_non_exhaustive()
    }
}

/// What a stream was opened with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamSpec {
    pub(crate) stream: StreamUuid,
    pub(crate) front: FrontBid,
    pub(crate) session: SessionUuid,
    pub(crate) last_event_id: Option<i64>,
    pub(crate) front_scope: bool,
}

impl SseBody {
    /// The body of a stream just opened; its first frame is set with [`Self::with_hello`].
    pub(crate) fn new(inner: Arc<Inner>, spec: StreamSpec, rx: FrameRx) -> Self {
        let deadline = Box::pin(tokio::time::sleep(inner.config.activation_timeout));
        Self {
            phase: Phase::Pending,
            hello: None,
            rx,
            deadline: Some(deadline),
            front: spec.front,
            session: (!spec.front_scope).then_some(spec.session),
            cursor: Cursor::new(spec.last_event_id),
            replay: None,
            guard: Guard { inner, stream: spec.stream, released: false },
        }
    }

    /// Sends `hello` (the `authenticate` frame) first.
    pub(crate) fn with_hello(mut self, hello: Bytes) -> Self {
        self.hello = Some(hello);
        self
    }

    /// Polls the read of the next page of kept events; `Ready(None)` once the replay is
    /// complete.
    fn poll_replay(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StoreError>> {
        let inner = &self.guard.inner;
        let future = self.replay.get_or_insert_with(|| {
            let request = ReplayRequest {
                front: self.front,
                session: self.session,
                since: self.cursor.since,
                now: inner.clock.now(),
                max_events: REPLAY_PAGE,
                max_bytes: inner.config.replay_page_bytes,
                first: self.cursor.first,
            };
            let store = inner.store.clone();
            Box::pin(async move { store.replay(request).await })
        });
        let page = match future.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(page) => page,
        };
        self.replay = None;
        let page = page?;
        if page.done {
            self.phase = Phase::Live;
        }
        Poll::Ready(Ok(self.cursor.advance(&page)))
    }

    /// The `retry:` hint among the frames left in a closed channel, if any.
    fn take_retry(&mut self) -> Option<Bytes> {
        let mut retry = None;
        while let Ok(frame) = self.rx.try_recv() {
            if let Frame::Retry(bytes) = &*frame {
                retry = Some(bytes.clone());
            }
        }
        retry
    }

    /// Drains what the channel holds into one chunk.
    fn poll_live(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut chunk = Chunk::default();
        while chunk.len() < MAX_CHUNK {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(frame)) => match &*frame {
                    Frame::Event { id, bytes, first } if *id > self.cursor.last_sent => {
                        if let Some(first) = first {
                            first.written();
                        }
                        self.cursor.last_sent = *id;
                        chunk.push(bytes.clone());
                    }
                    Frame::Heartbeat => chunk.push(Bytes::from_static(HEARTBEAT)),
                    Frame::Retry(bytes) => chunk.push(bytes.clone()),
                    Frame::Event { .. } | Frame::Activated => {}
                },
                Poll::Ready(None) => {
                    self.phase = Phase::Done;
                    break;
                }
                Poll::Pending => break,
            }
        }
        match chunk.into_bytes() {
            Some(bytes) => Poll::Ready(Some(bytes)),
            None if self.phase == Phase::Done => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

/// Frames joined for one write; a single frame is passed on without copying.
#[derive(Default)]
struct Chunk {
    single: Option<Bytes>,
    joined: Vec<u8>,
}

impl Chunk {
    fn len(&self) -> usize {
        self.single.as_ref().map_or(0, Bytes::len) + self.joined.len()
    }

    fn push(&mut self, bytes: Bytes) {
        match self.single.take() {
            None if self.joined.is_empty() => self.single = Some(bytes),
            first => {
                if let Some(first) = first {
                    self.joined.extend_from_slice(&first);
                }
                self.joined.extend_from_slice(&bytes);
            }
        }
    }

    fn into_bytes(self) -> Option<Bytes> {
        match self.single {
            Some(bytes) => Some(bytes),
            None if self.joined.is_empty() => None,
            None => Some(Bytes::from(self.joined)),
        }
    }
}

type PollFrame = Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>>;

fn data(bytes: Bytes) -> PollFrame {
    Poll::Ready(Some(Ok(http_body::Frame::data(bytes))))
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> PollFrame {
        let this = self.get_mut();
        if let Some(hello) = this.hello.take() {
            return data(hello);
        }
        loop {
            match this.phase {
                Phase::Done => {
                    // Out of the registry now, not when its writer gets round to dropping the
                    // body: a timed-out stream must not be activated in between.
                    this.guard.release();
                    return Poll::Ready(None);
                }
                Phase::Pending => match this.rx.poll_recv(cx) {
                    Poll::Ready(Some(frame)) => match &*frame {
                        Frame::Activated => {
                            this.deadline = None;
                            this.phase = Phase::Replay;
                        }
                        Frame::Heartbeat => return data(Bytes::from_static(HEARTBEAT)),
                        Frame::Retry(bytes) => return data(bytes.clone()),
                        // Events go to active streams, after their activation.
                        Frame::Event { .. } => {}
                    },
                    Poll::Ready(None) => this.phase = Phase::Done,
                    Poll::Pending => {
                        let expired =
                            this.deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready());
                        if !expired {
                            return Poll::Pending;
                        }
                        tracing::debug!(stream = %this.guard.stream, "not activated in time");
                        this.phase = Phase::Done;
                    }
                },
                // Replaced, disconnected or drained meanwhile: no use reading more. Live events
                // queued meanwhile are not sent (the replay has not reached them: sending them
                // would leave a gap before the client's `Last-Event-ID`), a `retry:` hint is.
                Phase::Replay if this.replay.is_none() && this.rx.is_closed() => {
                    this.phase = Phase::Done;
                    if let Some(retry) = this.take_retry() {
                        return data(retry);
                    }
                }
                Phase::Replay => match this.poll_replay(cx) {
                    Poll::Ready(Ok(Some(bytes))) => return data(bytes),
                    Poll::Ready(Ok(None)) => {}
                    Poll::Ready(Err(e)) => {
                        // Its client reconnects with `Last-Event-ID` and loses nothing.
                        tracing::warn!(error = %e, "could not read kept events; ending the stream");
                        this.phase = Phase::Done;
                    }
                    Poll::Pending => return Poll::Pending,
                },
                Phase::Live => match this.poll_live(cx) {
                    Poll::Ready(Some(bytes)) => return data(bytes),
                    Poll::Ready(None) => {}
                    Poll::Pending => return Poll::Pending,
                },
            }
        }
    }
}
