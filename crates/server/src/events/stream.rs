//! The body of one reverse stream: the `authenticate` challenge, then (once activated) the
//! kept events after the client's `Last-Event-ID`, then live events and heartbeats.
//!
//! The body is a hand-written `http_body::Body` rather than a task per stream: an idle stream
//! is just this struct, its channel and its registry entry, which keeps memory per stream low.
//! Dropping the body (the client went away, or hyper is done) removes the stream from the
//! registry and, if it was its session's active stream, starts the session's idle time.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Bytes;
use protocol::messages::FrontBid;
use protocol::sse::{self, SseEvent};
use protocol::{SessionUuid, StreamUuid, Timestamp};
use tokio::time::Sleep;

use rusqlite::Connection;

use super::Inner;
use super::registry::{Frame, FrameRx};
use super::store::{self, Since};

/// Kept events read from the store per query while replaying.
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
pub(crate) struct Cursor {
    since: Since,
    /// The highest event id written: live events at or below it came in the replay already.
    last_sent: i64,
    /// Replay the events of every session of the front (a `?scope=front` stream).
    front_scope: bool,
}

impl Cursor {
    /// A replay after `last_event_id`, or of what was never delivered if there is none; of
    /// every session's events if `front_scope`.
    pub(crate) fn new(last_event_id: Option<i64>, front_scope: bool) -> Self {
        let since = last_event_id.map_or(Since::Undelivered(0), Since::Id);
        Self { since, last_sent: last_event_id.unwrap_or(0), front_scope }
    }

    /// Reads and encodes the next page of kept events; `true` once the replay is complete.
    /// Run it under the database lock.
    pub(crate) fn next_page(
        &mut self,
        conn: &Connection,
        front: FrontBid,
        session: SessionUuid,
        now: Timestamp,
    ) -> rusqlite::Result<(Option<Bytes>, bool)> {
        let asked = self.since;
        let session = (!self.front_scope).then_some(session);
        let events = store::backlog(conn, front, session, &mut self.since, now, REPLAY_PAGE)?;
        if self.since != asked {
            // The client's id was not from this store's sequence: nothing was seen yet.
            self.last_sent = 0;
        }
        let done = events.len() < REPLAY_PAGE;
        let Some(last) = events.last().map(|e| e.id) else { return Ok((None, done)) };
        let mut out = String::new();
        for event in &events {
            event_frame(event.id, &event.body, &mut out);
        }
        self.since = match self.since {
            Since::Id(_) => Since::Id(last),
            Since::Undelivered(_) => Since::Undelivered(last),
        };
        self.last_sent = self.last_sent.max(last);
        Ok((Some(Bytes::from(out)), done))
    }
}

/// The first page of a replay, read by the activation under the same lock that made the stream
/// active, and handed to the stream as its activation.
#[derive(Debug)]
pub(crate) struct FirstPage {
    pub(crate) chunk: Option<Bytes>,
    pub(crate) cursor: Cursor,
    pub(crate) done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the activation; ends at the deadline.
    Pending,
    /// Sending kept events from the store, a page per poll (after the first).
    Replay,
    /// Sending what the channel brings.
    Live,
    Done,
}

/// Removes the stream from the registry when the body ends or is dropped, whichever is first.
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
        let Some(ended) = self.inner.registry.remove(self.stream) else { return };
        if ended.was_current {
            let now = self.inner.clock.now();
            if let Err(e) =
                self.inner.store.session_idle(ended.front, ended.session, self.stream, now)
            {
                tracing::error!(error = %e, "could not record the end of a stream");
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.release();
    }
}

/// One reverse stream's response body.
#[derive(Debug)]
pub(crate) struct SseBody {
    phase: Phase,
    hello: Option<Bytes>,
    rx: FrameRx,
    /// The activation deadline; dropped once activated, so that idle streams hold no timer.
    deadline: Option<Pin<Box<Sleep>>>,
    front: FrontBid,
    session: SessionUuid,
    /// Where the replay stands; set by the activation.
    cursor: Cursor,
    guard: Guard,
}

impl SseBody {
    /// A body that first sends `hello` (the `authenticate` frame).
    pub(crate) fn new(
        inner: Arc<Inner>,
        stream: StreamUuid,
        front: FrontBid,
        session: SessionUuid,
        rx: FrameRx,
        hello: Bytes,
    ) -> Self {
        let deadline = Box::pin(tokio::time::sleep(inner.config.activation_timeout));
        Self {
            phase: Phase::Pending,
            hello: Some(hello),
            rx,
            deadline: Some(deadline),
            front,
            session,
            cursor: Cursor::new(None, false),
            guard: Guard { inner, stream, released: false },
        }
    }

    /// Reads the next page of kept events; `None` once the replay is complete.
    fn replay_page(&mut self) -> Result<Option<Bytes>, rusqlite::Error> {
        let inner = &self.guard.inner;
        let now = inner.clock.now();
        let (front, session, cursor) = (self.front, self.session, &mut self.cursor);
        let (chunk, done) =
            inner.store.db().with(|conn| cursor.next_page(conn, front, session, now))?;
        if done {
            self.phase = Phase::Live;
        }
        Ok(chunk)
    }

    /// Drains what the channel holds into one chunk.
    fn poll_live(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut chunk = Chunk::default();
        while chunk.len() < MAX_CHUNK {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(frame)) => match &*frame {
                    Frame::Event { id, bytes } if *id > self.cursor.last_sent => {
                        self.cursor.last_sent = *id;
                        chunk.push(bytes.clone());
                    }
                    Frame::Heartbeat => chunk.push(Bytes::from_static(HEARTBEAT)),
                    Frame::Event { .. } | Frame::Activated(_) => {}
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
                    // Out of the registry now, not when hyper gets round to dropping the body:
                    // a timed-out stream must not be activated in between.
                    this.guard.release();
                    return Poll::Ready(None);
                }
                Phase::Pending => match this.rx.poll_recv(cx) {
                    Poll::Ready(Some(frame)) => match &*frame {
                        Frame::Activated(first) => {
                            this.deadline = None;
                            this.cursor = first.cursor;
                            this.phase = if first.done { Phase::Live } else { Phase::Replay };
                            if let Some(chunk) = &first.chunk {
                                return data(chunk.clone());
                            }
                        }
                        Frame::Heartbeat => return data(Bytes::from_static(HEARTBEAT)),
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
                Phase::Replay => match this.replay_page() {
                    Ok(Some(bytes)) => return data(bytes),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "could not read kept events; ending the stream");
                        this.phase = Phase::Done;
                    }
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
