//! The Redis engine (placeholder while it is written).

use super::StoreError;

/// The Redis engine.
#[derive(Debug)]
pub struct RedisEngine;

impl RedisEngine {
    /// Connects.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Err(StoreError::Unavailable(format!("not yet: {}", crate::config::redacted_url(url))))
    }
}
