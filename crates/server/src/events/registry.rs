//! The in-memory registry of open reverse streams: by stream UUID (for activation), by front
//! (all its active sessions) and by session (its one active stream).
//!
//! Each stream is fed through a small bounded channel of frames. The registry holds the
//! sending side; dropping it ends the stream once the frames already queued are written, which
//! is how a stream is replaced, dropped for being too slow, or ended at shutdown. The stream
//! body removes its own entry when it is dropped (see `stream.rs`), so the registry never
//! keeps a stream that hyper no longer writes.
//!
//! The registry is this instance's only state: which streams it holds and how to reach them.
//! Whether a stream is active, which stream is a session's current one, and whether a session
//! is known is the store's to say (see `store/mod.rs`); the store's feed tells the registry.
//!
//! Lock order: a store engine may hold its own lock while this registry's lock is taken (the
//! feed runs under the SQLite engine's lock, to keep each front's events in id order), never
//! the other way round.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::body::Bytes;
use protocol::messages::FrontBid;
use protocol::{FrontUuid, Peer, PublicKey, SessionUuid, StreamUuid};
use tokio::sync::mpsc;

/// The heartbeat slice a stream belongs to: random UUIDs spread evenly.
pub(crate) fn heartbeat_slice(stream: StreamUuid, slices: u32) -> u32 {
    // The remainder is below `slices`, a u32.
    #[allow(clippy::cast_possible_truncation)]
    let slice = (stream.as_uuid().as_u128() % u128::from(slices.max(1))) as u32;
    slice
}

/// What a stream's body receives.
#[derive(Debug)]
pub(crate) enum Frame {
    /// The stream was activated: replay what it missed, then go live.
    Activated,
    /// An encoded `id:`/`data:` frame; `first` if its publish began on this instance.
    Event { id: i64, bytes: Bytes, first: Option<FirstWrite> },
    /// Time for a heartbeat comment.
    Heartbeat,
    /// The encoded `retry:` hint written as a stream's last frame when the server drains.
    Retry(Bytes),
}

/// Times an event from the start of its publish to the first stream that writes it
/// (`websession_event_first_write_seconds`): how long the first subscriber waits, whatever
/// the number of the others. One per event, shared by its streams with the frame.
#[derive(Debug)]
pub(crate) struct FirstWrite {
    started: Instant,
    written: AtomicBool,
}

impl FirstWrite {
    pub(crate) fn new(started: Instant) -> Self {
        Self { started, written: AtomicBool::new(false) }
    }

    /// Records the time since the publish began, on the first call only. Called when a stream
    /// takes the frame to write it.
    pub(crate) fn written(&self) {
        if !self.written.swap(true, Ordering::Relaxed) {
            metrics::histogram!("websession_event_first_write_seconds")
                .record(self.started.elapsed());
        }
    }
}

/// The sending half of a stream's channel. Frames are behind an `Arc` so that one event sent
/// to many streams is encoded once, and so that an idle channel's preallocated block of slots
/// stays small.
pub(crate) type FrameTx = mpsc::Sender<Arc<Frame>>;
/// The receiving half, owned by the stream's body.
pub(crate) type FrameRx = mpsc::Receiver<Arc<Frame>>;

/// A registered front with its shared key, computed once while it has streams.
#[derive(Debug)]
pub(crate) struct FrontInfo {
    pub(crate) bid: FrontBid,
    pub(crate) uuid: FrontUuid,
    /// The registered key; a front's key never changes.
    pub(crate) key: PublicKey,
    pub(crate) peer: Peer,
}

/// A stream that ended, as the registry knew it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ended {
    pub(crate) front: FrontBid,
    pub(crate) session: SessionUuid,
    pub(crate) stream: StreamUuid,
}

#[derive(Debug)]
struct Slot {
    front: FrontBid,
    session: SessionUuid,
    front_scope: bool,
    /// `None` once the stream is told to end; the entry stays until its body is dropped.
    tx: Option<FrameTx>,
    active: bool,
}

#[derive(Debug)]
struct FrontEntry {
    info: Arc<FrontInfo>,
    /// Open streams of the front, pending or active; the entry goes when this drops to zero.
    streams: usize,
    /// The active stream of each session.
    sessions: HashMap<SessionUuid, StreamUuid>,
    /// The active streams that carry every event of the front (`?scope=front`).
    front_scoped: HashSet<StreamUuid>,
}

#[derive(Debug, Default)]
struct State {
    /// No stream opens any more: the server drains or shuts down.
    closed: bool,
    streams: HashMap<StreamUuid, Slot>,
    fronts: HashMap<FrontBid, FrontEntry>,
    by_uuid: HashMap<FrontUuid, FrontBid>,
    recent: HashMap<FrontUuid, Arc<FrontInfo>>,
    recent_order: VecDeque<FrontUuid>,
    /// Active streams cut off (too slow) whose bodies may live on: the store must learn now
    /// that they ended, not when a client that does not read lets hyper drop them.
    cut: Vec<Ended>,
}

impl State {
    /// Tells a stream to end: drops its sender, so its body ends after the queued frames.
    fn end(&mut self, stream: StreamUuid) {
        if let Some(slot) = self.streams.get_mut(&stream) {
            slot.tx = None;
        }
    }

    /// Ends a stream that does not keep up; an active one is listed for the store.
    fn cut_off(&mut self, stream: StreamUuid) {
        let Some(slot) = self.streams.get_mut(&stream) else { return };
        if slot.tx.take().is_some() && slot.active {
            self.cut.push(Ended { front: slot.front, session: slot.session, stream });
        }
    }
}

/// The registry; shared by the handlers, the hub and the streams.
#[derive(Debug)]
pub(crate) struct Registry {
    state: Mutex<State>,
    buffer: usize,
    /// Fronts remembered after registration or lookup, so that the stream open that follows
    /// neither reads the store nor computes the shared key again. Bounded, oldest out first
    /// (`--recent-fronts`).
    recent_fronts: usize,
}

impl Registry {
    /// An empty registry whose streams queue up to `buffer` frames and which remembers up to
    /// `recent_fronts` fronts that have no open stream.
    pub(crate) fn new(buffer: usize, recent_fronts: usize) -> Self {
        Self { state: Mutex::new(State::default()), buffer: buffer.max(1), recent_fronts }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is plain maps updated in single steps; a panic elsewhere cannot leave them
        // half-changed, so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The front's cached info: while it has open streams, or if it was seen recently.
    pub(crate) fn cached_front(&self, uuid: FrontUuid) -> Option<Arc<FrontInfo>> {
        let state = self.state();
        let open = state.by_uuid.get(&uuid).and_then(|bid| state.fronts.get(bid));
        open.map(|entry| entry.info.clone()).or_else(|| state.recent.get(&uuid).cloned())
    }

    /// Forgets a front the store no longer has (pruned, or the store was reset), so that its
    /// next registration asks the store again. Its open streams keep their entries, but are
    /// no longer found by the front's UUID.
    pub(crate) fn forget(&self, uuid: FrontUuid) {
        let mut state = self.state();
        if state.recent.remove(&uuid).is_some() {
            state.recent_order.retain(|u| *u != uuid);
        }
        state.by_uuid.remove(&uuid);
    }

    /// Remembers a front that was just registered or looked up.
    pub(crate) fn remember(&self, info: Arc<FrontInfo>) {
        let mut state = self.state();
        if state.recent.insert(info.uuid, info.clone()).is_none() {
            state.recent_order.push_back(info.uuid);
            while state.recent_order.len() > self.recent_fronts {
                if let Some(old) = state.recent_order.pop_front() {
                    state.recent.remove(&old);
                }
            }
        }
    }

    /// Registers a new pending stream for `session` (carrying every event of the front if
    /// `front_scope`). Returns its UUID, its receiver and the front's info as cached (an info
    /// computed concurrently by another request wins), or `None` after shutdown.
    pub(crate) fn open(
        &self,
        info: Arc<FrontInfo>,
        session: SessionUuid,
        front_scope: bool,
    ) -> Option<(StreamUuid, FrameRx, Arc<FrontInfo>)> {
        let (tx, rx) = mpsc::channel(self.buffer);
        let stream = StreamUuid::new_v4();
        let mut state = self.state();
        if state.closed {
            return None;
        }
        let bid = info.bid;
        let entry = match state.fronts.entry(bid) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(FrontEntry {
                info: info.clone(),
                streams: 0,
                sessions: HashMap::new(),
                front_scoped: HashSet::new(),
            }),
        };
        entry.streams += 1;
        let info = entry.info.clone();
        state.by_uuid.insert(info.uuid, bid);
        let slot = Slot { front: bid, session, front_scope, tx: Some(tx), active: false };
        state.streams.insert(stream, slot);
        Some((stream, rx, info))
    }

    /// Makes a stream this instance holds active, as the store decided: it gets its session's
    /// events from now on (and its front's, if front-scoped) and is told to replay what it
    /// missed. A previous stream of its session held here ends. `false` if the stream is gone.
    pub(crate) fn activate(&self, stream: StreamUuid) -> bool {
        let mut state = self.state();
        let state = &mut *state;
        let Some(slot) = state.streams.get_mut(&stream) else { return false };
        let Some(tx) = slot.tx.clone() else { return false };
        if slot.active {
            return true;
        }
        slot.active = true;
        let (bid, session, front_scope) = (slot.front, slot.session, slot.front_scope);
        let previous = state.fronts.get_mut(&bid).and_then(|entry| {
            if front_scope {
                entry.front_scoped.insert(stream);
            }
            entry.sessions.insert(session, stream)
        });
        if let Some(previous) = previous.filter(|p| *p != stream) {
            state.end(previous);
        }
        if tx.try_send(Arc::new(Frame::Activated)).is_err() {
            // Its client is gone already, or it is flooded with heartbeats: end it.
            state.end(stream);
        }
        true
    }

    /// Forgets a stream whose body was dropped.
    pub(crate) fn remove(&self, stream: StreamUuid) -> Option<Ended> {
        let mut state = self.state();
        let slot = state.streams.remove(&stream)?;
        if let Entry::Occupied(mut entry) = state.fronts.entry(slot.front) {
            let front = entry.get_mut();
            front.front_scoped.remove(&stream);
            if front.sessions.get(&slot.session) == Some(&stream) {
                front.sessions.remove(&slot.session);
            }
            front.streams = front.streams.saturating_sub(1);
            if front.streams == 0 {
                let uuid = entry.remove().info.uuid;
                state.by_uuid.remove(&uuid);
            }
        }
        Some(Ended { front: slot.front, session: slot.session, stream })
    }

    /// The fronts that have streams here.
    pub(crate) fn fronts(&self) -> Vec<FrontBid> {
        self.state().fronts.keys().copied().collect()
    }

    /// Appends the front's active streams (or `session`'s and the front's front-scoped ones) to
    /// `out`, each once. Only their UUIDs, read from the front's own map: cloning each stream's
    /// sender here (and dropping the clone after the send) touched every stream's channel
    /// twice more, each time a cache miss, which was most of the time to the first write of an
    /// event for 10,000 streams (`websession_event_first_write_seconds`, `loadgen peer`).
    pub(crate) fn targets(
        &self,
        front: FrontBid,
        session: Option<SessionUuid>,
        out: &mut Vec<StreamUuid>,
    ) {
        let state = self.state();
        let Some(entry) = state.fronts.get(&front) else { return };
        match session {
            Some(session) => {
                let own = entry.sessions.get(&session);
                out.extend(own);
                out.extend(entry.front_scoped.iter().filter(|s| Some(*s) != own));
            }
            // Every front-scoped stream is also its session's active stream.
            None => out.extend(entry.sessions.values()),
        }
    }

    /// Appends every active stream to `out`.
    pub(crate) fn all_targets(&self, out: &mut Vec<StreamUuid>) {
        let state = self.state();
        out.reserve(state.streams.len());
        let active = state.streams.iter().filter(|(_, slot)| slot.active && slot.tx.is_some());
        out.extend(active.map(|(stream, _)| *stream));
    }

    /// Tells one stream to end.
    pub(crate) fn end(&self, stream: StreamUuid) {
        self.state().end(stream);
    }

    /// Hands `frame` to each target still open, under the lock (callers pass a batch at a
    /// time). A stream whose queue is full is too slow: it is ended and its client reconnects
    /// with `Last-Event-ID`. Returns how many took the frame.
    pub(crate) fn send(&self, targets: &[StreamUuid], frame: &Arc<Frame>) -> usize {
        let mut sent = 0;
        let mut slow = Vec::new();
        let mut state = self.state();
        for stream in targets {
            // Gone, or told to end, since it was listed: it resumes from the store.
            let Some(tx) = state.streams.get(stream).and_then(|slot| slot.tx.as_ref()) else {
                continue;
            };
            match tx.try_send(frame.clone()) {
                Ok(()) => sent += 1,
                Err(mpsc::error::TrySendError::Full(_)) => slow.push(*stream),
                // The body is gone and removes its own entry.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        if !slow.is_empty() {
            tracing::info!(streams = slow.len(), "ending streams that do not keep up");
            metrics::counter!("websession_stream_slow_closed_total").increment(slow.len() as u64);
            for stream in slow {
                state.cut_off(stream);
            }
        }
        sent
    }

    /// The active streams cut off since the last call.
    pub(crate) fn take_cut(&self) -> Vec<Ended> {
        std::mem::take(&mut self.state().cut)
    }

    /// Queues a heartbeat on the open streams of one slice (of `slices`, by stream UUID);
    /// ends those whose queue is full. Beating one slice at a time spreads the heartbeats of
    /// many streams over their period instead of waking every stream at one instant.
    pub(crate) fn heartbeat(&self, slice: u32, slices: u32) {
        let beat = Arc::new(Frame::Heartbeat);
        let mut state = self.state();
        let full: Vec<StreamUuid> = state
            .streams
            .iter()
            .filter(|(stream, _)| heartbeat_slice(**stream, slices) == slice)
            .filter(|(_, slot)| {
                slot.tx.as_ref().is_some_and(|tx| {
                    matches!(tx.try_send(beat.clone()), Err(mpsc::error::TrySendError::Full(_)))
                })
            })
            .map(|(stream, _)| *stream)
            .collect();
        for stream in full {
            state.cut_off(stream);
        }
    }

    /// Refuses new streams from now on (the server drains) and lists the open ones, pending
    /// or active, to be ended one by one with [`Registry::end_with_retry`].
    pub(crate) fn drain(&self) -> Vec<StreamUuid> {
        let mut state = self.state();
        state.closed = true;
        state.streams.iter().filter(|(_, slot)| slot.tx.is_some()).map(|(s, _)| *s).collect()
    }

    /// Ends a stream with a last frame, `retry` (an encoded `retry:` hint), if its queue has
    /// room for it; a stream whose queue is full is ended all the same.
    pub(crate) fn end_with_retry(&self, stream: StreamUuid, retry: &Bytes) {
        let mut state = self.state();
        if let Some(tx) = state.streams.get(&stream).and_then(|slot| slot.tx.as_ref()) {
            let _ = tx.try_send(Arc::new(Frame::Retry(retry.clone())));
        }
        state.end(stream);
    }

    /// Ends every stream and refuses new ones.
    pub(crate) fn shutdown(&self) {
        let mut state = self.state();
        state.closed = true;
        for slot in state.streams.values_mut() {
            slot.tx = None;
        }
    }

    /// How many active streams carry one tab's events and how many a whole front's
    /// (`?scope=front`): (session, front).
    pub(crate) fn active_by_scope(&self) -> (usize, usize) {
        let state = self.state();
        let active = state.streams.values().filter(|slot| slot.active);
        let front = active.clone().filter(|slot| slot.front_scope).count();
        (active.count() - front, front)
    }

    /// How many streams are open: (pending, active).
    pub(crate) fn counts(&self) -> (usize, usize) {
        let state = self.state();
        let active = state.streams.values().filter(|slot| slot.active).count();
        (state.streams.len() - active, active)
    }
}

#[cfg(test)]
mod tests {
    use protocol::KeyPair;

    use super::*;

    fn front(bid: i64) -> Arc<FrontInfo> {
        let (front, back) = (KeyPair::generate(), KeyPair::generate());
        Arc::new(FrontInfo {
            bid: FrontBid(bid),
            uuid: FrontUuid::new_v4(),
            key: front.public,
            peer: Peer::new(&front.public, &back.secret),
        })
    }

    /// `--recent-fronts` bounds the fronts kept without a stream: the oldest goes first, and 0
    /// keeps none (each stream open then asks the store again).
    #[test]
    fn recent_fronts_are_bounded_by_the_setting_oldest_out_first() {
        let registry = Registry::new(4, 2);
        let fronts: Vec<_> = (1..=3).map(front).collect();
        for info in &fronts {
            registry.remember(info.clone());
        }
        let kept: Vec<_> =
            fronts.iter().map(|f| registry.cached_front(f.uuid).map(|i| i.bid)).collect();
        assert_eq!(kept, [None, Some(FrontBid(2)), Some(FrontBid(3))]);

        let none = Registry::new(4, 0);
        none.remember(fronts[0].clone());
        assert!(none.cached_front(fronts[0].uuid).is_none());
    }
}
