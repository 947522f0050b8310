//! Background work: heartbeats on every open stream, and expiry of events, sessions and
//! handled-direct-event records.
//!
//! The tasks hold a `Weak` reference, so a service that is dropped without `shutdown` (as in
//! tests) does not live on in its own timers.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval_at};

use super::Inner;
use super::store::Cutoffs;

/// Starts the tasks.
pub(super) fn spawn(inner: &Arc<Inner>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if !inner.config.heartbeat.is_zero() {
        tasks.push(tokio::spawn(heartbeats(Arc::downgrade(inner), inner.config.heartbeat)));
    }
    tasks.push(tokio::spawn(expiry(Arc::downgrade(inner), sweep_period(inner.config.session_ttl))));
    tasks
}

/// Sweeping a quarter of the session TTL apart bounds how late a session is forgotten, while
/// a sweep a minute is plenty for events whose TTL is usually a minute or more.
fn sweep_period(session_ttl: Duration) -> Duration {
    (session_ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(60))
}

/// Heartbeat slices per period: with 10,000 streams, about 600 beats every second of a 15 s
/// period rather than 10,000 writes (and a registry lock held for all of them) at once.
const HEARTBEAT_SLICES: u32 = 16;

/// Every stream still gets one beat per period (the slice of its UUID comes round once per
/// period), so a client's watchdog of two periods holds; only the phase differs per stream.
async fn heartbeats(inner: Weak<Inner>, period: Duration) {
    let step = (period / HEARTBEAT_SLICES).max(Duration::from_millis(1));
    let mut ticks = interval_at(tokio::time::Instant::now() + step, step);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut slice = 0;
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.registry.heartbeat(slice, HEARTBEAT_SLICES);
        inner.record_cut();
        slice = (slice + 1) % HEARTBEAT_SLICES;
    }
}

async fn expiry(inner: Weak<Inner>, period: Duration) {
    let mut ticks = interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.sweep().await;
    }
}

impl Inner {
    /// Removes what expired by now: see "Session expiry" in ARCHITECTURE.md.
    pub(super) async fn sweep(&self) {
        let now = self.clock.now();
        let ttl = i64::try_from(self.config.session_ttl.as_millis()).unwrap_or(i64::MAX);
        let front_ttl = i64::try_from(self.config.front_idle_ttl.as_millis()).unwrap_or(i64::MAX);
        if let Some(limiter) = &self.registrations {
            // Forget the buckets of clients that are full again, so the map stays small.
            limiter.retain_recent();
        }
        let cutoffs = Cutoffs {
            now,
            idle: now.plus_millis(-ttl),
            front: now.plus_millis(front_ttl.saturating_neg()),
        };
        match self.store.sweep(cutoffs).await {
            Ok(swept) if swept.events + swept.sessions + swept.fronts > 0 => {
                let (events, sessions, fronts) = (swept.events, swept.sessions, swept.fronts);
                tracing::debug!(events, sessions, fronts, "expired");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not remove expired events"),
        }
    }
}
