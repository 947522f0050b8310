//! The front's connection state as one state machine: the stream's [`StreamState`], this tab's
//! [`Role`] in sharing it, and the facts that decide transitions (ever active, how many
//! activations, whether the backend honours the front scope, whether the leader was heard).
//!
//! [`Machine::apply`] is a pure function of the machine and an [`Input`]; it says what changed
//! and what the caller must do ([`Effects`]), and the caller (`Inner::apply` in `mod.rs`) does
//! it: tell the listeners, post the state to the followers, flush the queue. Nothing else
//! writes these fields, so the rules below are the whole story, and the tests at the end pin
//! them on the host.

use super::options::{Role, StreamState};

/// What happened to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Input {
    /// The tab shares the stream: it starts as a follower and waits for the stream lock.
    Share,
    /// The connection loop waits (offline, back-off) or starts a connection: `connecting`
    /// before the first activation, `reconnecting` after.
    Waiting,
    /// The stream's answer arrived; `front_scope` when the backend honoured the front scope.
    Opened { front_scope: bool },
    /// The `authenticate` challenge was answered and accepted: events flow.
    Activated,
    /// A follower heard the leader's state.
    LeaderState(StreamState),
    /// A follower got the stream lock: it leads now.
    Elected,
    /// A follower stops waiting for a leader and opens a stream of its own.
    GoSolo,
    /// The front closes.
    Close,
}

/// What the caller does after a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Effects {
    /// The input was taken (false: it does not apply in this state and changed nothing).
    pub(super) accepted: bool,
    /// The stream state changed from `.0` to `.1`: tell the state listeners.
    pub(super) changed: Option<(StreamState, StreamState)>,
    /// The leader's state changed: post it to the followers.
    pub(super) post_state: bool,
    /// The backend has no front scope (found out now): tell the followers to go solo.
    pub(super) announce_solo: bool,
    /// The stream became active: send what waits in the queue.
    pub(super) flush: bool,
    /// The tab now runs the connection loop (elected, or solo).
    pub(super) run: bool,
}

/// The connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Machine {
    state: StreamState,
    role: Role,
    ever_active: bool,
    activations: u64,
    /// The leader's stream carries the whole front: relay it.
    relaying: bool,
    /// The backend has no front scope (the leader found out): followers go solo.
    no_front_scope: bool,
    /// A follower heard the leader's state since it last looked: the leader is alive.
    heard_leader: bool,
}

impl Default for Machine {
    fn default() -> Self {
        Self {
            state: StreamState::Connecting,
            role: Role::Solo,
            ever_active: false,
            activations: 0,
            relaying: false,
            no_front_scope: false,
            heard_leader: false,
        }
    }
}

impl Machine {
    /// Applies `input`; the effects say what the caller must do.
    pub(super) fn apply(&mut self, input: Input) -> Effects {
        if self.state == StreamState::Closed {
            return Effects::default();
        }
        match input {
            Input::Share if self.role == Role::Solo && self.activations == 0 => {
                self.role = Role::Follower;
                Effects { accepted: true, ..Effects::default() }
            }
            Input::Waiting => self.set_state(self.waiting_state()),
            Input::Opened { front_scope } => {
                let mut announce_solo = false;
                if self.role == Role::Leader {
                    self.relaying = front_scope;
                    announce_solo = !front_scope && !self.no_front_scope;
                    self.no_front_scope |= !front_scope;
                }
                Effects { announce_solo, ..self.set_state(StreamState::Authenticating) }
            }
            Input::Activated => self.set_state(StreamState::Active),
            Input::LeaderState(state) if self.role == Role::Follower => {
                self.heard_leader = true;
                Effects { accepted: true, ..self.set_state(state) }
            }
            Input::Elected if self.role == Role::Follower => {
                self.role = Role::Leader;
                Effects { accepted: true, run: true, ..Effects::default() }
            }
            Input::GoSolo if self.role == Role::Follower => {
                self.role = Role::Solo;
                Effects { accepted: true, run: true, ..Effects::default() }
            }
            Input::Close => {
                let previous = std::mem::replace(&mut self.state, StreamState::Closed);
                Effects {
                    accepted: true,
                    changed: Some((previous, self.state)),
                    ..Effects::default()
                }
            }
            Input::Share | Input::LeaderState(_) | Input::Elected | Input::GoSolo => {
                Effects::default()
            }
        }
    }

    fn set_state(&mut self, state: StreamState) -> Effects {
        let previous = self.state;
        if previous == state || state == StreamState::Closed {
            // Closing is `Input::Close`, which the caller pairs with its teardown; a leader's
            // `closed` heard by a follower does not close the follower.
            return Effects { accepted: previous == state, ..Effects::default() };
        }
        self.state = state;
        let active = state == StreamState::Active;
        if active {
            self.ever_active = true;
            self.activations += 1;
        }
        Effects {
            accepted: true,
            changed: Some((previous, state)),
            post_state: self.role == Role::Leader,
            flush: active,
            ..Effects::default()
        }
    }

    /// `connecting` before the first activation, `reconnecting` after.
    fn waiting_state(&self) -> StreamState {
        if self.ever_active { StreamState::Reconnecting } else { StreamState::Connecting }
    }

    /// The stream's state.
    pub(super) fn state(&self) -> StreamState {
        self.state
    }

    /// Whether the front closed.
    pub(super) fn is_closed(&self) -> bool {
        self.state == StreamState::Closed
    }

    /// This tab's role as the machine holds it (a leader stays a leader without front scope).
    pub(super) fn role(&self) -> Role {
        self.role
    }

    /// This tab's role as the page sees it: a leader whose backend has no front scope holds
    /// the lock, but the stream is its own.
    pub(super) fn public_role(&self) -> Role {
        match self.role {
            Role::Leader if self.no_front_scope => Role::Solo,
            role => role,
        }
    }

    /// How many times the stream became active; a change tells the loop a connection worked.
    pub(super) fn activations(&self) -> u64 {
        self.activations
    }

    /// Whether this tab leads a stream that carries the whole front (so it relays events).
    pub(super) fn relays(&self) -> bool {
        self.role == Role::Leader && self.relaying
    }

    /// Whether the backend has no front scope, so the followers must go solo.
    pub(super) fn no_front_scope(&self) -> bool {
        self.no_front_scope
    }

    /// Whether the leader was heard since the last look; the look resets it.
    pub(super) fn take_heard_leader(&mut self) -> bool {
        std::mem::replace(&mut self.heard_leader, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(effects: Effects) -> Option<(StreamState, StreamState)> {
        effects.changed
    }

    #[test]
    fn a_solo_tab_connects_activates_and_reconnects() {
        let mut m = Machine::default();
        // Waiting before the first activation stays `connecting`: no change to announce.
        assert_eq!(changed(m.apply(Input::Waiting)), None);
        let opened = m.apply(Input::Opened { front_scope: true });
        assert_eq!(opened.changed, Some((StreamState::Connecting, StreamState::Authenticating)));
        assert!(!opened.post_state, "a solo tab has nobody to tell");
        assert!(!opened.announce_solo);
        let active = m.apply(Input::Activated);
        assert_eq!(active.changed, Some((StreamState::Authenticating, StreamState::Active)));
        assert!(active.flush, "activation sends the queue");
        assert_eq!(m.activations(), 1);
        // Lost after having been active: `reconnecting`, not `connecting`.
        let lost = m.apply(Input::Waiting);
        assert_eq!(lost.changed, Some((StreamState::Active, StreamState::Reconnecting)));
        assert!(!lost.flush);
        m.apply(Input::Opened { front_scope: true });
        m.apply(Input::Activated);
        assert_eq!(m.activations(), 2);
    }

    #[test]
    fn closed_is_final() {
        let mut m = Machine::default();
        m.apply(Input::Activated);
        let close = m.apply(Input::Close);
        assert_eq!(close.changed, Some((StreamState::Active, StreamState::Closed)));
        assert!(m.is_closed());
        for input in [
            Input::Waiting,
            Input::Activated,
            Input::Opened { front_scope: true },
            Input::Close,
            Input::Share,
        ] {
            assert_eq!(m.apply(input), Effects::default(), "{input:?} after close");
        }
        assert_eq!(m.state(), StreamState::Closed);
    }

    #[test]
    fn a_follower_mirrors_the_leader_and_takes_over_once() {
        let mut m = Machine::default();
        assert!(m.apply(Input::Share).accepted);
        assert_eq!(m.role(), Role::Follower);
        let heard = m.apply(Input::LeaderState(StreamState::Active));
        assert_eq!(heard.changed, Some((StreamState::Connecting, StreamState::Active)));
        assert!(!heard.post_state, "a follower does not post states");
        assert!(m.take_heard_leader());
        assert!(!m.take_heard_leader(), "the look resets it");
        let elected = m.apply(Input::Elected);
        assert!(elected.accepted && elected.run);
        assert_eq!(m.role(), Role::Leader);
        // Elected twice, or a leader told to go solo: nothing happens.
        assert!(!m.apply(Input::Elected).accepted);
        assert!(!m.apply(Input::GoSolo).accepted);
        // A leader ignores states from another leader.
        assert!(!m.apply(Input::LeaderState(StreamState::Reconnecting)).accepted);
        assert_eq!(m.state(), StreamState::Active);
    }

    #[test]
    fn a_leader_posts_every_state_and_relays_with_front_scope() {
        let mut m = Machine::default();
        m.apply(Input::Share);
        m.apply(Input::Elected);
        let opened = m.apply(Input::Opened { front_scope: true });
        assert!(opened.post_state && !opened.announce_solo);
        assert!(m.relays());
        assert!(m.apply(Input::Activated).post_state);
        assert_eq!(m.public_role(), Role::Leader);
    }

    /// A backend without the front scope: the leader tells the followers once, and shows as
    /// solo, since its stream carries only its own session.
    #[test]
    fn a_leader_without_front_scope_announces_solo_once() {
        let mut m = Machine::default();
        m.apply(Input::Share);
        m.apply(Input::Elected);
        assert!(m.apply(Input::Opened { front_scope: false }).announce_solo);
        assert!(!m.relays());
        assert!(m.no_front_scope());
        assert_eq!((m.role(), m.public_role()), (Role::Leader, Role::Solo));
        m.apply(Input::Waiting);
        assert!(!m.apply(Input::Opened { front_scope: false }).announce_solo, "only once");
    }

    #[test]
    fn a_follower_that_goes_solo_runs_its_own_loop() {
        let mut m = Machine::default();
        m.apply(Input::Share);
        let solo = m.apply(Input::GoSolo);
        assert!(solo.accepted && solo.run);
        assert_eq!(m.role(), Role::Solo);
        assert!(!m.apply(Input::Elected).accepted, "a solo tab is not elected");
        // Opening a solo stream does not relay, even with front scope.
        m.apply(Input::Opened { front_scope: true });
        assert!(!m.relays());
    }
}
