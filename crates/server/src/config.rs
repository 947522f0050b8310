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
    /// The Redis that instances of a cluster share (`redis://[user:password@]host:port/db`).
    /// When set, everything the instances must agree on lives there: fronts, streams, sessions
    /// and events, the back's identity, login sessions and the signing key (unless a key file is
    /// given); nothing the cluster needs stays in the data directory. `None`: the embedded store.
    pub redis_url: Option<String>,
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
            redis_url: None,
            events: events::EventsConfig::default(),
            tokens: tokens::TokensConfig::default(),
        }
    }

    /// Keeps all shared state in the Redis at `url` (see [`Config::redis_url`]).
    pub fn with_redis(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.tokens.session_store = tokens::SessionStoreConfig::Redis { url: url.clone() };
        self.redis_url = Some(url);
        self
    }

    /// The embedded store's database file in `data_dir` (the server and `mint-token` share it).
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("server.sqlite3")
    }
}

/// `url` with its password replaced by `***`, for logs and errors: a Redis URL may carry one.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
    let Some((userinfo, host)) = authority.rsplit_once('@') else { return url.to_owned() };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    let mut shown = format!("{scheme}://{user}:***@{host}");
    if let Some(path) = path {
        shown.push('/');
        shown.push_str(path);
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn passwords_in_redis_urls_never_reach_the_log() {
        assert_eq!(redacted_url("redis://:s3cret@db:6379/2"), "redis://:***@db:6379/2");
        assert_eq!(redacted_url("redis://app:s3cret@db"), "redis://app:***@db");
        assert_eq!(redacted_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redacted_url("rediss://u:p@h:1/0?x=1"), "rediss://u:***@h:1/0?x=1");
    }
}
