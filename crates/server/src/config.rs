//! Server configuration: one struct with public fields, built by the binary from its flags or by
//! tests directly.

use std::path::PathBuf;

use crate::{events, tokens};

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the embedded store and the server's own keys live; created if missing.
    pub data_dir: PathBuf,
    /// Files served for paths no route takes (the web app, `/sw.js`, the browser package).
    pub static_dir: Option<PathBuf>,
    /// Origins allowed to call the API cross-origin, with credentials. Empty: same origin only.
    pub cors_origins: Vec<String>,
    /// Reverse streams and direct events.
    pub events: events::EventsConfig,
    /// Token exchange and login.
    pub tokens: tokens::TokensConfig,
}

impl Config {
    /// Defaults for everything, with the store in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            static_dir: None,
            cors_origins: Vec::new(),
            events: events::EventsConfig::default(),
            tokens: tokens::TokensConfig::default(),
        }
    }

    /// The embedded store's database file in `data_dir` (the server and `mint-token` share it).
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("server.sqlite3")
    }
}
