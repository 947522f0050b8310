//! Front registration, reverse streams (SSE) with the crypto handshake, and direct events.
//!
//! Placeholder: the service arrives with its own issue; this module fixes the seams that
//! `app.rs` and `main.rs` use.

use axum::Router;

use crate::config::Config;
use crate::db::Db;

/// Settings of the reverse streams.
#[derive(Debug, Clone, Default)]
pub struct EventsConfig {}

/// Command-line flags for [`EventsConfig`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EventsArgs {}

impl From<EventsArgs> for EventsConfig {
    fn from(_: EventsArgs) -> Self {
        Self {}
    }
}

/// The event service's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Events {}

impl Events {
    /// Opens the service on the shared store.
    pub async fn open(_config: &Config, _db: Db) -> anyhow::Result<Self> {
        Ok(Self {})
    }

    /// Ends every open stream (graceful shutdown).
    pub fn shutdown(&self) {}
}

/// The event endpoints.
pub fn router(_events: Events) -> Router {
    Router::new()
}
