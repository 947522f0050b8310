//! Test-only fault switches per hop of the token chain (answer normally, fail with 500, or hang)
//! and the per-path request counters that let tests see how often a hop was called.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// A hop of the token chain that the stand-in serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hop {
    /// `GET /Dashboard`, where the service worker scrapes the XSRF token.
    Dashboard,
    /// `GET /Auth/Authorize`, where it gets the venue JWT.
    Authorize,
}

impl Hop {
    /// Every hop, in chain order.
    pub const ALL: [Hop; 2] = [Hop::Dashboard, Hop::Authorize];

    /// The name used by the control API: `dashboard` or `authorize`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dashboard => "dashboard",
            Self::Authorize => "authorize",
        }
    }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Hop {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|hop| hop.as_str() == s)
            .ok_or_else(|| format!("unknown hop {s:?}: expected dashboard or authorize"))
    }
}

/// How a hop answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultMode {
    /// Normally.
    #[default]
    Ok,
    /// `500` with an `internal` error body.
    Fail,
    /// Not at all, until the switch is changed, the faults are reset, or the server shuts down.
    Hang,
}

impl FaultMode {
    /// The name used by the control API: `ok`, `fail` or `hang`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Fail => "fail",
            Self::Hang => "hang",
        }
    }
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FaultMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ok" => Ok(Self::Ok),
            "fail" => Ok(Self::Fail),
            "hang" => Ok(Self::Hang),
            _ => Err(format!("unknown fault mode {s:?}: expected ok, fail or hang")),
        }
    }
}

/// What a handler should do after [`Faults::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Answer normally.
    Proceed,
    /// Answer `500`.
    Fail,
    /// The server is shutting down and released a hanging request: answer `503`.
    Released,
}

#[derive(Debug, Clone, Copy, Default)]
struct FaultState {
    dashboard: FaultMode,
    authorize: FaultMode,
    /// Bumped to wake every hanging request (graceful shutdown would otherwise wait for them
    /// forever). A counter rather than a flag, so a stand-in can be served again afterwards.
    releases: u64,
}

impl FaultState {
    fn mode(&self, hop: Hop) -> FaultMode {
        match hop {
            Hop::Dashboard => self.dashboard,
            Hop::Authorize => self.authorize,
        }
    }
}

/// A handle on the fault switches; clones share them.
#[derive(Debug, Clone)]
pub struct Faults {
    /// A watch channel and not a mutex, so that hanging requests wait for a change without
    /// polling and wake as soon as a test flips the switch.
    state: Arc<watch::Sender<FaultState>>,
}

impl Default for Faults {
    /// Every hop [`FaultMode::Ok`].
    fn default() -> Self {
        Self { state: Arc::new(watch::channel(FaultState::default()).0) }
    }
}

impl Faults {
    /// Make `hop` answer in `mode` from the next request on; leaving `Hang` releases the
    /// requests that hang there.
    pub fn set(&self, hop: Hop, mode: FaultMode) {
        self.state.send_modify(|state| match hop {
            Hop::Dashboard => state.dashboard = mode,
            Hop::Authorize => state.authorize = mode,
        });
    }

    /// The current mode of `hop`.
    pub fn get(&self, hop: Hop) -> FaultMode {
        self.state.borrow().mode(hop)
    }

    /// Every hop back to [`FaultMode::Ok`].
    pub fn clear(&self) {
        self.state.send_modify(|state| {
            state.dashboard = FaultMode::Ok;
            state.authorize = FaultMode::Ok;
        });
    }

    /// Wake every request that hangs now; they answer `503`.
    pub(crate) fn release_hangs(&self) {
        self.state.send_modify(|state| state.releases += 1);
    }

    /// Apply the switch of `hop` to one request: waits while it is `Hang`.
    pub(crate) async fn apply(&self, hop: Hop) -> Verdict {
        let mut rx = self.state.subscribe();
        let releases = rx.borrow().releases;
        // `wait_for` checks the current value first, so a switch flipped between `subscribe`
        // and here is not missed. It fails only when the sender is gone, and `self` holds it.
        let state = match rx
            .wait_for(|state| state.mode(hop) != FaultMode::Hang || state.releases != releases)
            .await
        {
            Ok(state) => *state,
            Err(_) => return Verdict::Released,
        };
        match state.mode(hop) {
            FaultMode::Ok => Verdict::Proceed,
            FaultMode::Fail => Verdict::Fail,
            FaultMode::Hang => Verdict::Released,
        }
    }
}

/// Requests received per path; clones share the counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    /// A std mutex, not a tokio one: it is held for one map update and never across an await.
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Counters {
    pub(crate) fn increment(&self, path: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry(path.to_owned()).or_default() += 1;
    }

    pub(crate) fn get(&self, path: &str) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(path).copied().unwrap_or(0)
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn clear(&self) {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}
