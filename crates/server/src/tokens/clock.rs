//! The time source of the token services. It is injected (see `TokensConfig::clock`) so that
//! tests move time forward by hours without sleeping.
//!
//! Every expiry decision of the token services reads this clock: JWT `exp`/`nbf`, the refresh
//! grace window, `validUntil`. Store TTLs (Redis `PX`, the embedded sweeper) are set *relative*
//! to it, so a clock far from the wall clock still gives the right lifetimes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use protocol::Timestamp;

/// Tells the time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    /// Milliseconds since the epoch. Atomic rather than a mutex: readers are every request.
    millis: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self { millis: Arc::new(AtomicI64::new(start.millis())) }
    }

    /// A clock standing at the current wall-clock time (so that tokens made by other parties
    /// with the real time, like the venue stand-in's, are valid at the start).
    pub fn starting_now() -> Self {
        Self::new(Timestamp::now())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.millis.fetch_add(millis(by), Ordering::SeqCst);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: Timestamp) {
        self.millis.store(to.millis(), Ordering::SeqCst);
    }

    /// The time it shows (also without the [`Clock`] trait in scope).
    pub fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        ManualClock::now(self)
    }
}

/// Milliseconds in `d`, saturating (durations come from configuration).
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::new(Timestamp::from_millis(1_000));
        let other = clock.clone();
        assert_eq!(clock.now().millis(), 1_000);
        other.advance(Duration::from_secs(2));
        assert_eq!(clock.now().millis(), 3_000);
        clock.set(Timestamp::from_millis(5));
        assert_eq!(other.now().millis(), 5);
    }
}
