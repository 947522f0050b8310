//! Sharing the stream between tabs: leadership by Web Lock, relaying on the channel.

use std::rc::Rc;

use protocol::Peer;
use wasm_bindgen_futures::spawn_local;

use super::machine::Input;
use super::{Inner, Role, lock_name};
use crate::page::error::PageError;
use crate::page::locks::{self, HeldLock};
use crate::records;

pub(super) use crate::records::{Back, Relay};

impl Inner {
    pub(super) fn post(&self, message: &Relay) {
        if let Some(channel) = self.channel.borrow().as_ref() {
            channel.post(&records::encode(message));
        }
    }

    pub(super) fn post_state(&self) {
        if self.machine.get().no_front_scope() {
            self.post(&Relay::Solo);
            return;
        }
        self.post(&Relay::State {
            state: self.machine.get().state(),
            back: self.back.borrow().as_ref().map(|(back, _)| back.clone()),
            front_bid: self.identity.borrow().front_bid,
            last_event_id: self.last_event_id.borrow().clone(),
        });
    }

    pub(super) async fn elect(self: Rc<Self>) {
        let name = lock_name("stream", &self.front_uuid.get());
        let signal = self.election.signal();
        // The `Hello` of `open` asks the leader for its state; every timeout asks again.
        loop {
            let timeout = Some(self.options.lock_timeout_ms);
            match locks::acquire(&name, false, Some(&signal), timeout).await {
                Err(PageError::Timeout(_)) if self.is_closed() => return,
                // The leader answered since the last look: alive, keep following.
                Err(PageError::Timeout(_)) if self.take_heard_leader() => {
                    self.post(&Relay::Hello);
                }
                // A holder that said nothing for a whole timeout (frozen, or not a front at
                // all): a stream of this tab's own rather than none.
                Err(PageError::Timeout(_)) => {
                    self.go_solo();
                    return;
                }
                other => return self.elected(other).await,
            }
        }
    }

    async fn elected(self: Rc<Self>, result: Result<Option<HeldLock>, PageError>) {
        match result {
            Ok(Some(lock)) if self.apply(Input::Elected).run => {
                self.held_locks.borrow_mut().push(lock);
                Self::run(self).await;
            }
            Ok(_) | Err(PageError::Closed) => {}
            Err(e) => {
                self.report(&e);
                self.go_solo();
            }
        }
    }

    /// Stops waiting for the leader and opens a stream of this tab's own.
    pub(super) fn go_solo(self: &Rc<Self>) {
        if !self.apply(Input::GoSolo).run {
            return;
        }
        self.election.abort();
        spawn_local(Self::run(self.clone()));
    }

    pub(super) fn on_relay(self: &Rc<Self>, text: &str) {
        let Ok(message) = records::decode::<Relay>(text) else {
            return;
        };
        match (self.role(), message) {
            (Role::Leader, Relay::Hello) => self.post_state(),
            (Role::Leader, Relay::Kick) => self.kick(),
            (Role::Follower, Relay::State { state, back, front_bid, last_event_id }) => {
                if let Some(back) = back {
                    self.set_back(back);
                }
                if front_bid.is_some() {
                    self.identity.borrow_mut().front_bid = front_bid;
                }
                if let Some(id) = last_event_id {
                    self.note_event_id(&id);
                }
                self.apply(Input::LeaderState(state));
            }
            (Role::Follower, Relay::Event { id, event }) => {
                if let Some(id) = id {
                    self.note_event_id(&id);
                }
                self.receive(event, true, None);
            }
            (Role::Follower, Relay::Solo) => self.go_solo(),
            _ => {}
        }
    }

    pub(super) fn set_back(&self, back: Back) {
        let same = self.back.borrow().as_ref().is_some_and(|(b, _)| *b == back);
        if !same {
            let peer = Peer::new(&back.back_key, &self.identity.borrow().front_keys.secret);
            *self.back.borrow_mut() = Some((back, Rc::new(peer)));
        }
    }

    pub(super) fn peer(&self) -> Option<Rc<Peer>> {
        self.back.borrow().as_ref().map(|(_, peer)| peer.clone())
    }
}
