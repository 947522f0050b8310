//! Settings of the token services ([`TokensConfig`], public fields with defaults) and the
//! command-line flags that fill them ([`TokensArgs`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::clock::{Clock, SystemClock};
use crate::redis_link::RedisTarget;

/// The default `iss` venue JWTs must have (the venue stand-in's).
pub const DEFAULT_VENUE_ISSUER: &str = "urn:venue-standin";
/// The default `aud` venue JWTs must have: this token exchange.
pub const DEFAULT_VENUE_AUDIENCE: &str = "urn:vtx";
/// The default `iss` of the JWTs this server signs (EID and access tokens).
pub const DEFAULT_ISSUER: &str = "urn:vtx";
/// The default `aud` of EID JWTs.
pub const DEFAULT_EID_AUDIENCE: &str = "urn:ecs";
/// The signing key's file name in the data directory, unless configured.
pub const DEFAULT_KEY_FILE: &str = "eid-signing-key.pem";

/// Where the venue's public keys come from.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum VenueKeySource {
    /// None configured: `/vtx/token` answers `503` saying so.
    #[default]
    None,
    /// A JWKS URL, fetched at first use and cached (refetched on an unknown `kid`).
    Url(String),
    /// A local file: a JWKS, or one Ed25519 or P-256 public key in PEM (which then takes any
    /// `kid`).
    File(PathBuf),
    /// A JWKS given inline (tests, embedding applications).
    Jwks(serde_json::Value),
}

/// Where login sessions and refresh-token hashes are kept.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum SessionStoreConfig {
    /// The embedded SQLite store in the data directory (one instance).
    #[default]
    Embedded,
    /// A Redis server or Redis Cluster (several instances share it).
    Redis {
        /// Where it is.
        target: RedisTarget,
    },
}

/// Where the enterprise system leaves one-time tokens (seed 002's "Enterprise Redis Cache").
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum EnterpriseStoreConfig {
    /// The embedded store (for trying the flow with `server mint-token`).
    #[default]
    Embedded,
    /// The enterprise Redis (a server, or a Redis Cluster): the claims JSON under
    /// `{key_prefix}{token}`.
    Redis {
        /// Where it is (`--enterprise-redis-url` names one server).
        target: RedisTarget,
        /// Prepended to the token to make the key (seed 002 uses none).
        key_prefix: String,
    },
}

// `Debug` by hand: a Redis URL may carry a password, and configurations end up in logs.
impl std::fmt::Debug for SessionStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => f.write_str("Embedded"),
            Self::Redis { target } => f.debug_struct("Redis").field("target", target).finish(),
        }
    }
}

impl std::fmt::Debug for EnterpriseStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => f.write_str("Embedded"),
            Self::Redis { target, key_prefix } => f
                .debug_struct("Redis")
                .field("target", target)
                .field("key_prefix", key_prefix)
                .finish(),
        }
    }
}

/// `url` fit for logs and error messages: the password of `redis://user:password@host` becomes
/// `***` (`redis://user:***@host`), and so does a `pass=` or `password=` query parameter (the
/// form `redis+unix://` URLs take).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL we can take apart: say nothing of it rather than risk a password.
        return "<unparsable URL>".to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _))
                        if name.eq_ignore_ascii_case("pass")
                            || name.eq_ignore_ascii_case("password") =>
                    {
                        format!("{name}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Everything the token services need.
#[derive(Debug, Clone)]
pub struct TokensConfig {
    /// The venue's public keys.
    pub venue_keys: VenueKeySource,
    /// The `iss` a venue JWT must have.
    pub venue_issuer: String,
    /// The `aud` a venue JWT must have.
    pub venue_audience: String,
    /// Clock skew allowed on a venue JWT's `nbf` and `iat`.
    pub venue_leeway: Duration,
    /// The `iss` of EID and access JWTs.
    pub issuer: String,
    /// The `aud` of EID JWTs.
    pub eid_audience: String,
    /// EID lifetime; never past the venue JWT's `exp`.
    pub eid_ttl: Duration,
    /// The signing key file; `None`: `<data-dir>/eid-signing-key.pem`, made on first start.
    pub signing_key_file: Option<PathBuf>,
    /// Access-token lifetime; never past the session's `validUntil`.
    pub access_ttl: Duration,
    /// How long a just-replaced refresh token still refreshes (two tabs refreshing at once).
    pub refresh_grace: Duration,
    /// Sessions.
    pub session_store: SessionStoreConfig,
    /// One-time tokens.
    pub enterprise_store: EnterpriseStoreConfig,
    /// Also put the refresh token in the login and refresh bodies, as seed 002 did. Off: the
    /// `HttpOnly` cookie keeps it out of reach of page scripts.
    pub refresh_token_in_body: bool,
    /// Origins, besides this server's own and its CORS origins, whose pages may refresh and log
    /// out. An entry ending in `:*` allows any port (`http://127.0.0.1:*`, for test pages).
    pub trusted_origins: Vec<super::OriginPattern>,
    /// The time source (tests inject a [`super::ManualClock`]).
    pub clock: Arc<dyn Clock>,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            venue_keys: VenueKeySource::None,
            venue_issuer: DEFAULT_VENUE_ISSUER.to_owned(),
            venue_audience: DEFAULT_VENUE_AUDIENCE.to_owned(),
            venue_leeway: Duration::from_secs(30),
            issuer: DEFAULT_ISSUER.to_owned(),
            eid_audience: DEFAULT_EID_AUDIENCE.to_owned(),
            eid_ttl: Duration::from_secs(15 * 60),
            signing_key_file: None,
            access_ttl: Duration::from_secs(15 * 60),
            refresh_grace: Duration::from_secs(10),
            session_store: SessionStoreConfig::Embedded,
            enterprise_store: EnterpriseStoreConfig::Embedded,
            refresh_token_in_body: false,
            trusted_origins: Vec::new(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Command-line flags of the token services.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Token services")]
pub struct TokensArgs {
    /// Venue JWKS URL (fetched and cached; fetched again on an unknown `kid`).
    #[arg(
        long,
        env = "VTX_VENUE_JWKS_URL",
        value_name = "URL",
        conflicts_with = "venue_jwks_file"
    )]
    pub venue_jwks_url: Option<String>,
    /// Venue keys from a local file: a JWKS, or an Ed25519 / P-256 public key PEM.
    #[arg(long, env = "VTX_VENUE_JWKS_FILE", value_name = "PATH")]
    pub venue_jwks_file: Option<PathBuf>,
    /// The `iss` venue JWTs must have.
    #[arg(long, default_value = DEFAULT_VENUE_ISSUER, env = "VTX_VENUE_ISSUER")]
    pub venue_issuer: String,
    /// The `aud` venue JWTs must have.
    #[arg(long, default_value = DEFAULT_VENUE_AUDIENCE, env = "VTX_VENUE_AUDIENCE")]
    pub venue_audience: String,
    /// Clock skew allowed on a venue JWT's `nbf`/`iat`, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub venue_leeway_secs: u64,
    /// The `iss` of the EID and access JWTs this server signs.
    #[arg(long, default_value = DEFAULT_ISSUER, env = "VTX_EID_ISSUER")]
    pub eid_issuer: String,
    /// The `aud` of EID JWTs.
    #[arg(long, default_value = DEFAULT_EID_AUDIENCE, env = "VTX_EID_AUDIENCE")]
    pub eid_audience: String,
    /// EID JWT lifetime in seconds (never past the venue JWT's `exp`).
    #[arg(long, default_value_t = 900, value_name = "SECS")]
    pub eid_ttl_secs: u64,
    /// Sign with this one Ed25519 key (PKCS#8 PEM), fixed: `server keys rotate` does not apply
    /// to it (to change it, replace the file and restart, which ends the tokens it signed).
    /// Without it, the rotating key ring in Redis (with --redis-url) or in
    /// <data-dir>/eid-signing-keys.json, which starts from <data-dir>/eid-signing-key.pem, made
    /// on first start.
    #[arg(long, env = "VTX_EID_KEY_FILE", value_name = "PATH")]
    pub eid_key_file: Option<PathBuf>,
    /// Access JWT lifetime in seconds (never past the session's `validUntil`).
    #[arg(long, default_value_t = 900, value_name = "SECS")]
    pub access_ttl_secs: u64,
    /// Seconds a replaced refresh token still works (two tabs refreshing at once); used after
    /// that, it revokes the session.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub refresh_grace_secs: u64,
    /// Read one-time tokens from this (enterprise) Redis instead of the embedded store.
    #[arg(
        long,
        env = "ENTERPRISE_REDIS_URL",
        value_name = "URL",
        global = true,
        hide_env_values = true
    )]
    pub enterprise_redis_url: Option<String>,
    /// Key prefix of one-time tokens in the enterprise Redis.
    #[arg(
        long,
        env = "ENTERPRISE_KEY_PREFIX",
        default_value = "",
        value_name = "PREFIX",
        global = true
    )]
    pub enterprise_key_prefix: String,
    /// Also return the refresh token in the JSON body (seed 002 compatibility; less safe).
    #[arg(long)]
    pub refresh_token_in_body: bool,
}

impl From<TokensArgs> for TokensConfig {
    fn from(args: TokensArgs) -> Self {
        let venue_keys = match (args.venue_jwks_url, args.venue_jwks_file) {
            (Some(url), _) => VenueKeySource::Url(url),
            (None, Some(path)) => VenueKeySource::File(path),
            (None, None) => VenueKeySource::None,
        };
        let enterprise_store = match args.enterprise_redis_url {
            Some(url) => {
                let target = RedisTarget::Single(url);
                EnterpriseStoreConfig::Redis { target, key_prefix: args.enterprise_key_prefix }
            }
            None => EnterpriseStoreConfig::Embedded,
        };
        Self {
            venue_keys,
            venue_issuer: args.venue_issuer,
            venue_audience: args.venue_audience,
            venue_leeway: Duration::from_secs(args.venue_leeway_secs),
            issuer: args.eid_issuer,
            eid_audience: args.eid_audience,
            eid_ttl: Duration::from_secs(args.eid_ttl_secs),
            signing_key_file: args.eid_key_file,
            access_ttl: Duration::from_secs(args.access_ttl_secs),
            refresh_grace: Duration::from_secs(args.refresh_grace_secs),
            session_store: SessionStoreConfig::Embedded,
            enterprise_store,
            refresh_token_in_body: args.refresh_token_in_body,
            trusted_origins: Vec::new(),
            clock: Arc::new(SystemClock),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_passwords_are_redacted() {
        for (url, shown) in [
            ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
            ("redis://:s3cret@host", "redis://:***@host"),
            ("rediss://user:p%40ss@host:6380", "rediss://user:***@host:6380"),
            ("redis://user:with@at@host/1", "redis://user:***@host/1"),
            ("redis://host:6379", "redis://host:6379"),
            ("redis://user@host", "redis://user@host"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=s3cret",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            ("unix:///run/redis.sock?password=s3cret", "unix:///run/redis.sock?password=***"),
            ("s3cret", "<unparsable URL>"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
        let config = EnterpriseStoreConfig::Redis {
            target: RedisTarget::Single("redis://u:s3cret@h".to_owned()),
            key_prefix: String::new(),
        };
        assert!(!format!("{config:?}").contains("s3cret"));
        let config = SessionStoreConfig::Redis {
            target: RedisTarget::Single("redis://u:s3cret@h".to_owned()),
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
