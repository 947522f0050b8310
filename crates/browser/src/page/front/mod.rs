//! The front: identity, registration, the reverse stream with its handshake, reconnects, events
//! in both directions, and the sharing of one stream between the tabs of a front.
//!
//! # Sharing one stream between tabs
//!
//! Browsers open at most six HTTP/1.1 connections per origin, and every open reverse stream holds
//! one, so a seventh tab with its own stream would stall. When the browser has Web Locks and
//! `BroadcastChannel`, the tabs of a front elect a leader with the lock
//! `websession-stream:{frontUuid}` (the browser hands it to a waiting tab when the holder closes
//! or crashes). The leader opens the stream with `?scope=front`; a backend that honours it
//! answers with `X-Web-Event-Scope: front` and sends every event of the front on that stream,
//! the other tabs' targeted ones included. The leader relays each event (decrypted) and each
//! state change on the channel `websession-front:{frontUuid}`; every tab keeps the events meant
//! for it (`meta.sessionUuid` absent or its own). A backend without front scope makes the leader
//! tell the others to open their own streams, as without sharing.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use futures_util::future::{Either, select};
use protocol::event::ReverseEvent;
use protocol::messages::{FrontBid, Identity};
use protocol::{EventUuid, FrontUuid, Peer, SessionUuid};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::AbortController;

use super::error::PageError;
use super::js;
use super::locks::{self, Channel, HeldLock};
use super::session::{self, Seen};
use crate::identity;
use crate::records::{self, Record};
use crate::web;

mod connection;
mod direct;
mod machine;
mod options;
mod relay;

pub use options::{Delivery, FrontOptions, RequestOptions, Role, SendOptions, StreamState};

use machine::{Effects, Input, Machine};
use relay::{Back, Relay};

/// How many event UUIDs a tab remembers to drop duplicates.
const SEEN_CAPACITY: usize = 2048;

type StateFn = Rc<dyn Fn(StreamState, StreamState)>;
/// An event listener on the global scope, removed when the front closes.
type DomListener = (&'static str, Closure<dyn FnMut()>);
type EventFn = Rc<dyn Fn(&ReverseEvent)>;
type ErrorFn = Rc<dyn Fn(&PageError)>;

#[derive(Default)]
struct Listeners {
    next: u64,
    state: Vec<(u64, StateFn)>,
    events: Vec<(u64, Option<String>, EventFn)>,
    errors: Vec<(u64, ErrorFn)>,
}

/// A listener registration; [`Subscription::cancel`] removes the listener. Dropping it does not.
#[derive(Debug, Clone)]
pub struct Subscription {
    id: u64,
    inner: Weak<Inner>,
}

impl Subscription {
    /// Removes the listener (calling it twice is harmless).
    pub fn cancel(&self) {
        if let Some(inner) = self.inner.upgrade() {
            let mut l = inner.listeners.borrow_mut();
            l.state.retain(|(id, _)| *id != self.id);
            l.events.retain(|(id, _, _)| *id != self.id);
            l.errors.retain(|(id, _)| *id != self.id);
        }
    }
}

/// A connected front. Cheap to clone; clones share the stream.
#[derive(Clone)]
pub struct Front {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front")
            .field("front_uuid", &self.inner.front_uuid.get())
            .field("session_uuid", &self.inner.session)
            .field("state", &self.inner.machine.get().state())
            .field("role", &self.inner.machine.get().role())
            .finish()
    }
}

struct Inner {
    options: FrontOptions,
    /// The identity's UUID; replaced, with the identity, after a `front_key_conflict`.
    front_uuid: Cell<FrontUuid>,
    session: SessionUuid,
    identity: RefCell<Identity>,
    back: RefCell<Option<(Back, Rc<Peer>)>>,
    /// The connection's state: stream state, role and what decides their transitions.
    machine: Cell<Machine>,
    last_event_id: RefCell<Option<String>>,
    seen: RefCell<Seen>,
    listeners: RefCell<Listeners>,
    /// Errors reported while nobody listened (before the first `on_error`), kept for it.
    unheard: RefCell<Vec<PageError>>,
    pending: RefCell<HashMap<EventUuid, oneshot::Sender<ReverseEvent>>>,
    wakers: RefCell<Vec<oneshot::Sender<()>>>,
    /// Aborts the open stream (offline, kick, close).
    stream_abort: RefCell<Option<AbortController>>,
    /// Aborts lock waits when the front closes.
    closing: AbortController,
    /// Aborts the wait for leadership (close, or the switch to a stream of one's own).
    election: AbortController,
    channel: RefCell<Option<Channel>>,
    held_locks: RefCell<Vec<HeldLock>>,
    dom_listeners: RefCell<Vec<DomListener>>,
    /// This tab queued events that may still wait, so new ones queue behind them.
    queue_waiting: Cell<bool>,
    flushing: Cell<bool>,
    flush_again: Cell<bool>,
    /// Sends waiting for the running flush, so they do not overtake the queue.
    flush_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    last_kick: Cell<f64>,
    fatal: RefCell<Option<PageError>>,
}

fn lock_name(kind: &str, uuid: &impl std::fmt::Display) -> String {
    format!("websession-{kind}:{uuid}")
}

fn online() -> bool {
    let navigator = js::get(&js::global(), "navigator");
    js::get_bool(&navigator, "onLine").unwrap_or(true)
}

/// Errors kept for a later `on_error` subscriber; older ones beyond this are dropped.
const MAX_UNHEARD: usize = 16;

/// Reads the front identity, replacing a corrupt record with a new identity; then also says
/// what was wrong with the old one, for `on_error`.
async fn load_identity() -> Result<(Identity, Option<PageError>), PageError> {
    match identity::load_or_create().await {
        Ok(identity) => Ok((identity, None)),
        Err(identity::IdentityError::Corrupt(why)) => {
            let identity = identity::replace_corrupt()
                .await
                .map_err(|e| PageError::Identity(e.to_string()))?;
            let notice = PageError::Identity(format!(
                "the stored front identity was corrupt ({why}); it was replaced by a new one, \
                 which registers as a new front"
            ));
            Ok((identity, Some(notice)))
        }
        Err(e) => Err(PageError::Identity(e.to_string())),
    }
}

impl Front {
    /// Opens the front and resolves once the stream is active. Fails when the identity cannot
    /// be read or stored. A `front_key_conflict` (another key registered this UUID first) is
    /// not fatal: the front takes a new identity and reports it through `on_error`.
    pub async fn connect(options: FrontOptions) -> Result<Self, PageError> {
        let front = Self::open(options).await?;
        front.ready().await?;
        Ok(front)
    }

    /// Reads (or creates) the identity and starts connecting without waiting for the stream:
    /// a page loaded offline gets a front that queues direct events and connects later.
    pub async fn open(options: FrontOptions) -> Result<Self, PageError> {
        let (identity, replaced) = load_identity().await?;
        let explicit = options.session_uuid;
        let mut session = explicit.unwrap_or_else(session::tab_session);
        let mut held = Vec::new();
        if locks::supported() {
            // One live tab per session UUID: a duplicated tab finds the lock taken.
            match locks::acquire(&lock_name("session", &session), true, None, None).await? {
                Some(lock) => held.push(lock),
                None if explicit.is_some() => {
                    return Err(PageError::InvalidArgument(format!(
                        "session {session} is in use by another front"
                    )));
                }
                None => {
                    session = session::new_tab_session();
                    if let Some(lock) =
                        locks::acquire(&lock_name("session", &session), true, None, None).await?
                    {
                        held.push(lock);
                    }
                }
            }
        }
        let controller =
            || AbortController::new().map_err(|_| PageError::Unsupported("AbortController"));
        let last_event_id = if explicit.is_none() { session::stored_last_event_id() } else { None };
        let inner = Rc::new(Inner {
            front_uuid: Cell::new(identity.front_uuid),
            session,
            identity: RefCell::new(identity),
            back: RefCell::new(None),
            machine: Cell::new(Machine::default()),
            last_event_id: RefCell::new(last_event_id),
            seen: RefCell::new(Seen::new(SEEN_CAPACITY)),
            listeners: RefCell::default(),
            unheard: RefCell::default(),
            pending: RefCell::default(),
            wakers: RefCell::default(),
            stream_abort: RefCell::new(None),
            closing: controller()?,
            election: controller()?,
            channel: RefCell::new(None),
            held_locks: RefCell::new(held),
            dom_listeners: RefCell::default(),
            queue_waiting: Cell::new(true),
            flushing: Cell::new(false),
            flush_again: Cell::new(false),
            flush_waiters: RefCell::default(),
            last_kick: Cell::new(0.0),
            fatal: RefCell::new(None),
            options,
        });
        inner.listen_to_network();
        if let Some(notice) = replaced {
            js::warn(&format!("websession: {notice}"));
            inner.report(&notice);
        }
        let channel = if inner.options.share && locks::supported() {
            let weak = Rc::downgrade(&inner);
            let name = format!("{}:{}", Relay::SCHEMA.channel(), inner.front_uuid.get());
            Channel::open(&name, move |text| {
                if let Some(inner) = weak.upgrade() {
                    inner.on_relay(&text);
                }
            })
            .ok()
        } else {
            None
        };
        if let Some(channel) = channel {
            inner.apply(Input::Share);
            channel.post(&records::encode(&Relay::Hello));
            *inner.channel.borrow_mut() = Some(channel);
            spawn_local(Inner::elect(inner.clone()));
        } else {
            spawn_local(Inner::run(inner.clone()));
        }
        Ok(Self { inner })
    }

    /// Resolves when the stream is active; fails if the front closes first.
    pub async fn ready(&self) -> Result<(), PageError> {
        loop {
            match self.inner.machine.get().state() {
                StreamState::Active => return Ok(()),
                StreamState::Closed => {
                    return Err(self.inner.fatal.borrow().clone().unwrap_or(PageError::Closed));
                }
                _ => {}
            }
            let (tx, rx) = oneshot::channel::<()>();
            let tx = RefCell::new(Some(tx));
            let sub = self.on_state(move |_, _| {
                if let Some(tx) = tx.borrow_mut().take() {
                    let _ = tx.send(());
                }
            });
            let _ = rx.await;
            sub.cancel();
        }
    }

    /// The front's UUID.
    pub fn front_uuid(&self) -> FrontUuid {
        self.inner.front_uuid.get()
    }

    /// The backend's number for the front, once registered.
    pub fn front_bid(&self) -> Option<FrontBid> {
        self.inner.identity.borrow().front_bid
    }

    /// This tab's session UUID.
    pub fn session_uuid(&self) -> SessionUuid {
        self.inner.session
    }

    /// The stream's state.
    pub fn state(&self) -> StreamState {
        self.inner.machine.get().state()
    }

    /// This tab's part in sharing the stream.
    pub fn role(&self) -> Role {
        self.inner.machine.get().public_role()
    }

    /// The id of the last event received, sent as `Last-Event-ID` when the stream reopens.
    pub fn last_event_id(&self) -> Option<String> {
        self.inner.last_event_id.borrow().clone()
    }

    /// Calls `f(state, previous)` on every state change.
    pub fn on_state(&self, f: impl Fn(StreamState, StreamState) + 'static) -> Subscription {
        let mut l = self.inner.listeners.borrow_mut();
        l.next += 1;
        let id = l.next;
        l.state.push((id, Rc::new(f)));
        Subscription { id, inner: Rc::downgrade(&self.inner) }
    }

    /// Calls `f` for every event for this tab named `name`, or for every event when `None`.
    pub fn on(&self, name: Option<&str>, f: impl Fn(&ReverseEvent) + 'static) -> Subscription {
        let mut l = self.inner.listeners.borrow_mut();
        l.next += 1;
        let id = l.next;
        l.events.push((id, name.map(str::to_owned), Rc::new(f)));
        Subscription { id, inner: Rc::downgrade(&self.inner) }
    }

    /// Calls `f` for errors the front handles by itself (a corrupt stored identity it
    /// replaced, a lost connection before it reconnects, a queued event dropped because the
    /// backend refused it). Errors from before the first subscriber reach that subscriber
    /// (in a microtask after this call).
    pub fn on_error(&self, f: impl Fn(&PageError) + 'static) -> Subscription {
        let f: ErrorFn = Rc::new(f);
        let id = {
            let mut l = self.inner.listeners.borrow_mut();
            l.next += 1;
            let id = l.next;
            l.errors.push((id, f.clone()));
            id
        };
        let unheard = std::mem::take(&mut *self.inner.unheard.borrow_mut());
        if !unheard.is_empty() {
            spawn_local(async move { unheard.iter().for_each(|e| f(e)) });
        }
        Subscription { id, inner: Rc::downgrade(&self.inner) }
    }

    /// Sends a direct event, or queues it when the front is offline, the stream is not active,
    /// or the backend cannot be reached (network error, 5xx). A 4xx rejects.
    pub async fn send(
        &self,
        name: &str,
        data: protocol::json::Value,
        options: SendOptions,
    ) -> Result<Delivery, PageError> {
        let event = self.inner.outgoing(name, data, options.expires_in_ms, options.encrypted)?;
        self.inner.send_outgoing(event).await
    }

    /// Sends a direct event and resolves with the reverse event whose `meta.requestUuid` is
    /// this event's UUID.
    pub async fn request(
        &self,
        name: &str,
        data: protocol::json::Value,
        options: RequestOptions,
    ) -> Result<ReverseEvent, PageError> {
        let event = self.inner.outgoing(name, data, options.expires_in_ms, options.encrypted)?;
        let uuid = event.uuid;
        let (tx, rx) = oneshot::channel();
        self.inner.pending.borrow_mut().insert(uuid, tx);
        let inner = self.inner.clone();
        let _forget = scopeguard(move || {
            inner.pending.borrow_mut().remove(&uuid);
        });
        self.inner.send_outgoing(event).await?;
        let timeout = options.timeout_ms.unwrap_or(self.inner.options.request_timeout_ms);
        match select(rx, Box::pin(web::sleep(timeout))).await {
            Either::Left((Ok(reply), _)) => Ok(reply),
            Either::Left((Err(_), _)) => Err(PageError::Closed),
            Either::Right(_) => Err(PageError::Timeout(timeout as u32)),
        }
    }

    /// Closes the stream, gives up leadership (another tab takes over) and stops reconnecting.
    pub fn close(&self) {
        self.inner.close();
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

impl Inner {
    fn is_closed(&self) -> bool {
        self.machine.get().is_closed()
    }

    fn role(&self) -> Role {
        self.machine.get().role()
    }

    /// Feeds `input` to the state machine and does what it asks: tell the followers, tell the
    /// state listeners, send the queue. The caller does [`Effects::run`].
    fn apply(self: &Rc<Self>, input: Input) -> Effects {
        let mut machine = self.machine.get();
        let effects = machine.apply(input);
        self.machine.set(machine);
        if effects.announce_solo {
            self.post(&Relay::Solo);
        }
        if effects.post_state {
            self.post_state();
        }
        if let Some((previous, state)) = effects.changed {
            self.notify_state(state, previous);
        }
        if effects.flush {
            self.schedule_flush();
        }
        effects
    }

    /// Whether a follower heard the leader since it last looked; the look resets it.
    fn take_heard_leader(&self) -> bool {
        let mut machine = self.machine.get();
        let heard = machine.take_heard_leader();
        self.machine.set(machine);
        heard
    }

    fn notify_state(&self, state: StreamState, previous: StreamState) {
        let listeners: Vec<StateFn> =
            self.listeners.borrow().state.iter().map(|(_, f)| f.clone()).collect();
        for f in listeners {
            f(state, previous);
        }
    }

    fn report(&self, error: &PageError) {
        let listeners: Vec<ErrorFn> =
            self.listeners.borrow().errors.iter().map(|(_, f)| f.clone()).collect();
        if listeners.is_empty() {
            let mut unheard = self.unheard.borrow_mut();
            if unheard.len() == MAX_UNHEARD {
                unheard.remove(0);
            }
            unheard.push(error.clone());
        }
        for f in listeners {
            f(error);
        }
    }

    /// Wakes the connection loop from its back-off wait.
    fn wake(&self) {
        for tx in self.wakers.borrow_mut().drain(..) {
            let _ = tx.send(());
        }
    }

    /// Waits until woken or, with `ms`, until that time has passed.
    async fn wait(&self, ms: Option<f64>) {
        let (tx, rx) = oneshot::channel();
        self.wakers.borrow_mut().push(tx);
        match ms {
            Some(ms) => {
                let _ = select(rx, Box::pin(web::sleep(ms))).await;
            }
            None => {
                let _ = rx.await;
            }
        }
    }

    fn abort_stream(&self) {
        if let Some(abort) = self.stream_abort.borrow_mut().take() {
            abort.abort();
        }
    }

    /// Reconnects now: the backend lost our session or front (a restart, a wiped store).
    fn kick(&self) {
        match self.role() {
            Role::Follower => self.post(&Relay::Kick),
            Role::Leader | Role::Solo => {
                let now = js::now_ms();
                if now - self.last_kick.get() > 2_000.0 {
                    self.last_kick.set(now);
                    self.abort_stream();
                    self.wake();
                }
            }
        }
    }

    fn listen_to_network(self: &Rc<Self>) {
        let target: web_sys::EventTarget = js::global().unchecked_into();
        let mut listeners = self.dom_listeners.borrow_mut();
        let weak = Rc::downgrade(self);
        let on_online = Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = weak.upgrade() {
                inner.wake();
            }
        });
        let weak = Rc::downgrade(self);
        let on_offline = Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = weak.upgrade()
                && inner.role() != Role::Follower
            {
                inner.abort_stream();
            }
        });
        for (name, closure) in [("online", on_online), ("offline", on_offline)] {
            let _ = target.add_event_listener_with_callback(name, closure.as_ref().unchecked_ref());
            listeners.push((name, closure));
        }
    }

    fn close(self: &Rc<Self>) {
        if self.is_closed() {
            return;
        }
        if self.machine.get().relays() {
            // The followers wait for the next leader, which resumes from the last event id.
            self.post(&Relay::State {
                state: StreamState::Reconnecting,
                back: None,
                front_bid: None,
                last_event_id: self.last_event_id.borrow().clone(),
            });
        }
        // Notified after the teardown, so a listener sees the front closed through and through.
        let mut machine = self.machine.get();
        let closing = machine.apply(Input::Close);
        self.machine.set(machine);
        self.closing.abort();
        self.election.abort();
        self.abort_stream();
        self.wake();
        self.pending.borrow_mut().clear();
        self.channel.borrow_mut().take();
        self.held_locks.borrow_mut().clear();
        let target: web_sys::EventTarget = js::global().unchecked_into();
        for (name, closure) in self.dom_listeners.borrow_mut().drain(..) {
            let _ =
                target.remove_event_listener_with_callback(name, closure.as_ref().unchecked_ref());
        }
        if let Some((previous, state)) = closing.changed {
            self.notify_state(state, previous);
        }
    }

    fn fail(self: &Rc<Self>, error: PageError) {
        self.report(&error);
        *self.fatal.borrow_mut() = Some(error);
        self.close();
    }
}
