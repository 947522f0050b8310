//! The VTX token exchange and the one-time-token login with rotating refresh tokens.
//!
//! Placeholder: the service arrives with its own issue; this module fixes the seams that
//! `app.rs` and `main.rs` use.

use axum::Router;

use crate::config::Config;
use crate::db::Db;

/// Settings of the token services.
#[derive(Debug, Clone, Default)]
pub struct TokensConfig {}

/// Command-line flags for [`TokensConfig`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TokensArgs {}

impl From<TokensArgs> for TokensConfig {
    fn from(_: TokensArgs) -> Self {
        Self {}
    }
}

/// The token service's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tokens {}

impl Tokens {
    /// Opens the service on the shared store.
    pub async fn open(_config: &Config, _db: Db) -> anyhow::Result<Self> {
        Ok(Self {})
    }
}

/// The token endpoints.
pub fn router(_tokens: Tokens) -> Router {
    Router::new()
}
