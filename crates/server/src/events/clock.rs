//! The service's clock: wall time at start plus Tokio's monotonic time since.
//!
//! Event timestamps, event expiry and session expiry all read this one clock. Because it
//! advances with `tokio::time`, tests drive expiry with `tokio::time::pause()` and `advance`
//! instead of sleeping, and a wall-clock step (NTP) cannot make events expire early or late.

use protocol::Timestamp;
use tokio::time::Instant;

/// Wall time anchored once, advanced by the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    wall: Timestamp,
    start: Instant,
}

impl Clock {
    /// Anchors the clock at the current wall time.
    pub(crate) fn start() -> Self {
        Self { wall: Timestamp::now(), start: Instant::now() }
    }

    /// The current time.
    pub(crate) fn now(&self) -> Timestamp {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.wall.plus_millis(elapsed)
    }
}
