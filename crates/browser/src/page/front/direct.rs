//! Direct events: building, sending, queueing while the stream is down, and flushing the queue
//! in order after an activation.

use std::rc::Rc;

use futures_channel::oneshot;
use protocol::event::DEFAULT_TTL_MILLIS;
use protocol::paths;
use protocol::{DirectDraft, ErrorCode, EventUuid, FrontUuid, SessionUuid, Timestamp};
use wasm_bindgen_futures::spawn_local;

use super::{Delivery, Inner, StreamState, lock_name, online};
use crate::page::error::PageError;
use crate::page::http;
use crate::page::queue::{self, Outgoing};
use crate::page::{js, locks};

impl Inner {
    pub(super) fn outgoing(
        &self,
        name: &str,
        data: protocol::json::Value,
        expires_in_ms: Option<f64>,
        encrypted: bool,
    ) -> Result<Outgoing, PageError> {
        if name.is_empty() || name.len() > 200 {
            return Err(PageError::InvalidArgument("an event name has 1 to 200 characters".into()));
        }
        let ttl = expires_in_ms.unwrap_or(DEFAULT_TTL_MILLIS as f64);
        if ttl.is_nan() || ttl <= 0.0 {
            return Err(PageError::InvalidArgument("expiresIn must be a positive number".into()));
        }
        let published = Timestamp::now();
        Ok(Outgoing {
            front_uuid: self.front_uuid.get(),
            name: name.to_owned(),
            data,
            uuid: EventUuid::new_v4(),
            published,
            expired: published.plus_millis(ttl.min(1e15) as i64),
            encrypted,
            request_uuid: None,
        })
    }

    /// Errors after which an event waits in the queue: the network, a 5xx, and the answers that
    /// a reconnect cures (the backend forgot the front or the session, or holds another key).
    pub(super) fn queues_after(error: &PageError) -> bool {
        error.is_transient() || Self::needs_reconnect(error)
    }

    pub(super) fn needs_reconnect(error: &PageError) -> bool {
        matches!(
            error.server_code(),
            Some(ErrorCode::FrontNotRegistered | ErrorCode::SessionInactive | ErrorCode::BadStamp)
        )
    }

    pub(super) async fn send_outgoing(
        self: &Rc<Self>,
        event: Outgoing,
    ) -> Result<Delivery, PageError> {
        if self.is_closed() {
            return Err(PageError::Closed);
        }
        if self.flushing.get() {
            // Right after an activation the queue is being sent: wait for it rather than queue
            // behind it, so that a fresh event is sent (or refused) directly when it can be.
            let (tx, rx) = oneshot::channel();
            self.flush_waiters.borrow_mut().push(tx);
            let _ = rx.await;
        }
        let direct = self.machine.get().state() == StreamState::Active
            && online()
            && !self.queue_waiting.get()
            && self.peer().is_some();
        if direct {
            match self.post_direct(&event).await {
                Ok(()) => return Ok(Delivery::Sent),
                Err(e) if Self::queues_after(&e) => {
                    if Self::needs_reconnect(&e) {
                        self.kick();
                    }
                }
                Err(e) => return Err(e),
            }
        }
        queue::push(&event).await?;
        self.queue_waiting.set(true);
        if self.machine.get().state() == StreamState::Active {
            self.schedule_flush();
        }
        Ok(Delivery::Queued)
    }

    pub(super) async fn post_direct(&self, event: &Outgoing) -> Result<(), PageError> {
        let peer = self.peer().ok_or_else(|| PageError::Network("not connected yet".into()))?;
        let body = http::to_json(&draft(event, self.front_uuid.get(), self.session).build(&peer));
        let url = format!(
            "{}/{}",
            http::join(&self.options.base, paths::DIRECT),
            String::from(js_sys::encode_uri_component(&event.name))
        );
        let accepted: bool = http::json(&http::post(&url, Some(&body)), "direct event").await?;
        if accepted {
            Ok(())
        } else {
            Err(PageError::BadResponse { what: "direct event", detail: "false".into() })
        }
    }

    pub(super) fn schedule_flush(self: &Rc<Self>) {
        if self.flushing.replace(true) {
            self.flush_again.set(true);
            return;
        }
        let inner = self.clone();
        spawn_local(async move {
            loop {
                inner.flush().await;
                if !inner.flush_again.replace(false) || inner.is_closed() {
                    break;
                }
            }
            inner.flushing.set(false);
            for tx in inner.flush_waiters.borrow_mut().drain(..) {
                let _ = tx.send(());
            }
        });
    }

    /// Sends the front's queued events in order, one tab at a time (the lock), while the stream
    /// is active. Expired events and events the backend refuses (4xx) are dropped.
    pub(super) async fn flush(self: &Rc<Self>) {
        let lock = if locks::supported() {
            let signal = self.closing.signal();
            let name = lock_name("queue", &self.front_uuid.get());
            match locks::acquire(&name, false, Some(&signal), Some(self.options.lock_timeout_ms))
                .await
            {
                Ok(lock) => lock,
                // Another tab flushes (and its flush sends ours too), or a holder that never
                // lets go: this tab's sends stop waiting behind the queue and go out directly;
                // the queue is tried again at the next activation.
                Err(PageError::Timeout(_)) => {
                    self.queue_waiting.set(false);
                    return;
                }
                Err(_) => return,
            }
        } else {
            None
        };
        let entries = match queue::list(self.front_uuid.get()).await {
            Ok(entries) => entries,
            Err(e) => {
                // No IndexedDB here (some private modes): nothing can be waiting, and direct
                // sends must not line up behind a queue that cannot be read.
                self.queue_waiting.set(false);
                self.report(&e);
                return;
            }
        };
        for entry in &entries {
            if self.machine.get().state() != StreamState::Active {
                return;
            }
            if entry.event.expired <= Timestamp::now() {
                js::warn(&format!("queued event {} expired unsent", entry.event.name));
                let _ = queue::remove(entry.seq).await;
                continue;
            }
            match self.post_direct(&entry.event).await {
                Ok(()) => {
                    let _ = queue::remove(entry.seq).await;
                }
                Err(e) if Self::queues_after(&e) => {
                    if Self::needs_reconnect(&e) {
                        self.kick();
                    }
                    return;
                }
                Err(e) => {
                    let _ = queue::remove(entry.seq).await;
                    self.report(&e);
                }
            }
        }
        drop(lock);
        if matches!(queue::list(self.front_uuid.get()).await, Ok(rest) if rest.is_empty()) {
            self.queue_waiting.set(false);
        } else {
            self.flush_again.set(true);
        }
    }
}

/// The draft of a queued event sent now by `front` from the tab `session`: the stamp and the
/// sealing are added with the back key of this moment.
fn draft(event: &Outgoing, front: FrontUuid, session: SessionUuid) -> DirectDraft {
    DirectDraft {
        name: event.name.clone(),
        uuid: event.uuid,
        published: event.published,
        expired: Some(event.expired),
        front_uuid: front,
        session_uuid: session,
        request_uuid: event.request_uuid,
        data: event.data.clone(),
        encrypted: event.encrypted,
    }
}
