//! The connection loop of the leader (or a solo tab): registration, the stream, the
//! `authenticate` handshake, reconnects with back-off, and the delivery of events.

use std::rc::Rc;

use protocol::ErrorBody;
use protocol::event::ReverseEvent;
use protocol::messages::{AuthenticateChallenge, EVENTS_LOST_EVENT};
use protocol::paths;
use protocol::sse::{SseEvent, SseItem};
use protocol::{ErrorCode, OpenError};
use web_sys::AbortController;

use super::machine::Input;
use super::relay::{Back, Relay};
use super::{EventFn, Inner, Role, online};
use crate::identity;
use crate::page::error::PageError;
use crate::page::http;
use crate::page::stream::Stream;
use crate::page::{js, session};

impl Inner {
    /// Connects, reads, and reconnects after a lost stream until the front closes.
    pub(super) async fn run(self: Rc<Self>) {
        let mut attempt: u32 = 0;
        let mut registrations: u32 = 0;
        let mut conflicts: u32 = 0;
        while !self.is_closed() {
            if !online() {
                self.apply(Input::Waiting);
                self.wait(None).await;
                continue;
            }
            self.apply(Input::Waiting);
            let activations = self.machine.get().activations();
            let result = self.connect_once().await;
            self.stream_abort.borrow_mut().take();
            if self.is_closed() {
                break;
            }
            if self.machine.get().activations() != activations {
                attempt = 0;
                registrations = 0;
                conflicts = 0;
            }
            match result {
                Ok(()) => {}
                Err(e) if e.server_code() == Some(ErrorCode::FrontNotRegistered) => {
                    // The backend's store was reset: register the same UUID and key again. At
                    // once the first time; with back-off if it keeps forgetting us.
                    self.identity.borrow_mut().front_bid = None;
                    registrations += 1;
                    if registrations == 1 {
                        continue;
                    }
                }
                Err(e) if e.server_code() == Some(ErrorCode::FrontKeyConflict) => {
                    // The backend's store was reset and someone registered our UUID with
                    // another key first: that UUID is theirs now. A new identity, registered
                    // at once; a second conflict in a row (which a random UUID cannot cause)
                    // waits out the back-off like any other failure.
                    match self.replace_identity().await {
                        Ok(notice) => self.report(&notice),
                        Err(err) => {
                            self.fail(err);
                            break;
                        }
                    }
                    conflicts += 1;
                    if conflicts == 1 {
                        continue;
                    }
                }
                Err(e) => self.report(&e),
            }
            self.apply(Input::Waiting);
            let delay = self.backoff(attempt);
            attempt = attempt.saturating_add(1);
            self.wait(Some(delay)).await;
        }
    }

    /// Exponential back-off with "equal jitter": half the delay fixed, half random, so that
    /// tabs and clients that lost the server together do not come back together.
    pub(super) fn backoff(&self, attempt: u32) -> f64 {
        let o = &self.options;
        let base = (o.backoff_initial_ms * 2f64.powi(attempt.min(20) as i32)).min(o.backoff_max_ms);
        base / 2.0 + js::random() * base / 2.0
    }

    /// After a `front_key_conflict`: the identity another tab already put in place of ours, or
    /// a fresh one, stored and unregistered. Says what happened, as `front_key_conflict`.
    async fn replace_identity(&self) -> Result<PageError, PageError> {
        let old = self.front_uuid.get();
        let stored = identity::load().await.ok().flatten().filter(|i| i.front_uuid != old);
        let fresh = match stored {
            Some(identity) => identity,
            None => {
                identity::replace_corrupt().await.map_err(|e| PageError::Identity(e.to_string()))?
            }
        };
        let new = fresh.front_uuid;
        *self.identity.borrow_mut() = fresh;
        self.front_uuid.set(new);
        *self.last_event_id.borrow_mut() = None;
        if self.role() == Role::Leader {
            self.post_state();
        }
        Ok(PageError::Http {
            status: 409,
            code: ErrorCode::FrontKeyConflict.as_str().to_owned(),
            message: format!(
                "front {old} is registered with another key (the backend's store was reset); \
                 this browser now uses a new front identity, {new}"
            ),
        })
    }

    pub(super) async fn ensure_registered(self: &Rc<Self>) -> Result<(), PageError> {
        if self.identity.borrow().front_bid.is_some() {
            return Ok(());
        }
        let mut identity = self.identity.borrow().clone();
        let bid = identity::register(&self.options.base, &mut identity)
            .await
            .map_err(crate::page::identity_register_error)?;
        identity.front_bid = Some(bid);
        identity::save(&identity).await.map_err(|e| PageError::Identity(e.to_string()))?;
        *self.identity.borrow_mut() = identity;
        if self.role() == Role::Leader {
            self.post_state();
        }
        Ok(())
    }

    /// One connection: register if needed, open, answer the challenge, then read events until
    /// the stream ends or fails.
    pub(super) async fn connect_once(self: &Rc<Self>) -> Result<(), PageError> {
        self.ensure_registered().await?;
        let abort =
            AbortController::new().map_err(|_| PageError::Unsupported("AbortController"))?;
        *self.stream_abort.borrow_mut() = Some(abort.clone());
        let leader = self.role() == Role::Leader;
        let url = format!(
            "{}/{}/{}{}{}",
            http::join(&self.options.base, paths::STREAM_OPEN),
            self.front_uuid.get(),
            self.session,
            if leader { "?" } else { "" },
            if leader { paths::STREAM_SCOPE_FRONT_QUERY } else { "" }
        );
        let silence = if self.options.heartbeat_ms > 0.0 {
            self.options.heartbeat_ms * 2.0 + 1_000.0
        } else {
            0.0
        };
        let last_event_id = self.last_event_id.borrow().clone();
        let mut stream = Stream::open(&url, last_event_id.as_deref(), silence, abort).await?;
        self.apply(Input::Opened { front_scope: stream.front_scope });
        self.handshake(&mut stream).await?;
        self.apply(Input::Activated);
        loop {
            match stream.next().await? {
                Some(SseItem::Event(event)) => self.on_frame(event),
                Some(SseItem::Comment(_)) => {}
                None => return Ok(()),
            }
        }
    }

    pub(super) async fn handshake(self: &Rc<Self>, stream: &mut Stream) -> Result<(), PageError> {
        let first = loop {
            match stream.next().await? {
                Some(SseItem::Event(event)) => break event,
                Some(SseItem::Comment(_)) => {}
                None => {
                    return Err(PageError::Network("stream ended before `authenticate`".into()));
                }
            }
        };
        let challenge = AuthenticateChallenge::from_frame(&first)
            .map_err(|e| PageError::Protocol(e.to_string()))?;
        self.set_back(Back { back_uuid: challenge.back_uuid, back_key: challenge.back_key });
        let peer = self.peer().ok_or(PageError::Closed)?;
        let answer = challenge
            .answer(self.front_uuid.get(), &peer)
            .map_err(|e| PageError::Protocol(e.to_string()))?;
        let body = http::to_json(&answer);
        let url = http::join(&self.options.base, paths::STREAM_ACTIVATE);
        let accepted: bool = http::json(&http::post(&url, Some(&body)), "activation").await?;
        if !accepted {
            return Err(PageError::BadResponse { what: "activation", detail: "false".into() });
        }
        Ok(())
    }

    pub(super) fn note_event_id(&self, id: &str) {
        *self.last_event_id.borrow_mut() = Some(id.to_owned());
        if self.options.session_uuid.is_none() {
            session::store_last_event_id(id);
        }
    }

    pub(super) fn on_frame(self: &Rc<Self>, frame: SseEvent) {
        if frame.event.as_deref() == Some(EVENTS_LOST_EVENT) {
            // The backend could not resume exactly (its store was reset): say so, not a gap.
            let message = protocol::json::from_str::<ErrorBody>(&frame.data)
                .map_or_else(|_| frame.data.clone(), |body| body.message);
            self.report(&PageError::EventsLost(message));
            return;
        }
        // Named frames other than the default are not events of this protocol.
        if frame.event.as_deref().is_some_and(|name| name != "message") {
            return;
        }
        let event: ReverseEvent = match protocol::json::from_str(&frame.data) {
            Ok(event) => event,
            Err(e) => {
                self.report(&PageError::Protocol(format!("an event is not {{data, meta}}: {e}")));
                return;
            }
        };
        if let Some(id) = &frame.id {
            self.note_event_id(id);
        }
        self.receive(event, false, frame.id);
    }

    /// Delivers an event once: decrypts it, relays it when leading, answers a waiting request
    /// and calls the listeners when it is for this tab.
    pub(super) fn receive(
        self: &Rc<Self>,
        mut event: ReverseEvent,
        plain: bool,
        id: Option<String>,
    ) {
        if !self.seen.borrow_mut().insert(event.meta.uuid) {
            return;
        }
        if !plain && event.meta.encrypted == Some(true) {
            let opened = match self.peer() {
                Some(peer) => peer.open_event_data(&event.data),
                None => Err(OpenError::NotSealed),
            };
            match opened {
                Ok(data) => event.data = data,
                Err(e) => {
                    self.report(&PageError::Protocol(format!(
                        "event {} does not decrypt: {e}",
                        event.meta.uuid
                    )));
                    return;
                }
            }
        }
        if self.machine.get().relays() {
            self.post(&Relay::Event { id, event: event.clone() });
        }
        let waiting = event.meta.request_uuid.and_then(|r| self.pending.borrow_mut().remove(&r));
        if let Some(tx) = waiting {
            let _ = tx.send(event.clone());
        }
        if event.meta.session_uuid.is_some_and(|s| s != self.session) {
            return;
        }
        let listeners: Vec<EventFn> = self
            .listeners
            .borrow()
            .events
            .iter()
            .filter(|(_, name, _)| name.as_deref().is_none_or(|n| n == event.meta.name))
            .map(|(_, _, f)| f.clone())
            .collect();
        for f in listeners {
            f(&event);
        }
    }
}
