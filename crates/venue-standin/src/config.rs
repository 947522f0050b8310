//! The stand-in's settings: who issues the venue JWT and for whom, its users, the cookie and CORS.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The default `iss` of venue JWTs.
pub const DEFAULT_ISSUER: &str = "urn:venue-standin";
/// The default `aud` of venue JWTs: the venue token exchange.
pub const DEFAULT_AUDIENCE: &str = "urn:vtx";
/// The default path of the venue's JWKS. It sits under `/Venue/` so that it never collides with
/// our own server's `/.well-known/jwks.json` when both are mounted on one origin.
pub const DEFAULT_JWKS_PATH: &str = "/Venue/.well-known/jwks.json";
/// The default name of the session cookie; distinct from anything our server sets.
pub const DEFAULT_COOKIE_NAME: &str = "venue_standin_session";

/// How the stand-in behaves. Build it with `Config { field: …, ..Config::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `iss` of the venue JWTs.
    pub issuer: String,
    /// `aud` of the venue JWTs.
    pub audience: String,
    /// `exp - iat` of the venue JWTs (whole seconds; default one hour).
    pub token_lifetime: Duration,
    /// Where the public JWKS is served; must start with `/`.
    pub jwks_path: String,
    /// The venue's users. Only these names can log in.
    pub users: Vec<User>,
    /// Name of the session cookie.
    pub cookie_name: String,
    /// `SameSite` attribute of the session cookie (default [`SameSite::Lax`]).
    ///
    /// `Lax` is enough for everything on one machine: `127.0.0.1:<a>` and `127.0.0.1:<b>` are
    /// different origins but the same *site* (ports do not count), so a wasm test page on another
    /// port still gets the cookie on `fetch(…, {credentials: "include"})`. Choose
    /// [`SameSite::None`] only when the page really is on another site; browsers then require
    /// `Secure`, which the stand-in adds by itself (browsers accept `Secure` cookies over plain
    /// HTTP on `localhost`/`127.0.0.1` only).
    pub cookie_same_site: SameSite,
    /// Add `Secure` to the session cookie even when `SameSite` is not `None`.
    pub cookie_secure: bool,
    /// Answer CORS requests from any origin, with credentials: the request's `Origin` is mirrored
    /// in `Access-Control-Allow-Origin`, `Access-Control-Allow-Credentials: true` is sent, and
    /// the `X-XSRF-TOKEN` and `Content-Type` request headers are allowed. For wasm-bindgen-test
    /// pages, which are served from their own origin. Off by default: the real Venue UI does not
    /// do this, and a development tool should not open itself to every page the browser visits.
    pub cors_allow_any_origin_with_credentials: bool,
    /// Serve the test-only control endpoints under [`crate::CONTROL_PREFIX`] (fault switches,
    /// counters, reset). On by default: this is a development tool.
    pub control_api: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            token_lifetime: Duration::from_secs(3600),
            jwks_path: DEFAULT_JWKS_PATH.to_owned(),
            users: vec![User::provisioned("alice", "eco-alice-0001"), User::not_provisioned("bob")],
            cookie_name: DEFAULT_COOKIE_NAME.to_owned(),
            cookie_same_site: SameSite::Lax,
            cookie_secure: false,
            cors_allow_any_origin_with_credentials: false,
            control_api: true,
        }
    }
}

impl Config {
    /// The user called `username`, if there is one.
    pub fn user(&self, username: &str) -> Option<&User> {
        self.users.iter().find(|user| user.username == username)
    }
}

/// A venue user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name, also the JWT's `sub`.
    pub username: String,
    /// The ECS identity (`ecoid` claim); `None` for users not provisioned for ECS.
    pub ecoid: Option<String>,
}

impl User {
    /// A user provisioned for ECS: their venue JWTs carry `ecoid`.
    pub fn provisioned(username: impl Into<String>, ecoid: impl Into<String>) -> Self {
        Self { username: username.into(), ecoid: Some(ecoid.into()) }
    }

    /// A user not provisioned for ECS: their venue JWTs have no `ecoid`.
    pub fn not_provisioned(username: impl Into<String>) -> Self {
        Self { username: username.into(), ecoid: None }
    }
}

/// The `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent on same-site requests only.
    Strict,
    /// Sent on same-site requests and top-level navigations (browsers' default).
    #[default]
    Lax,
    /// Sent on cross-site requests too; implies `Secure`.
    None,
}

impl SameSite {
    /// The attribute value as written in `Set-Cookie`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

impl fmt::Display for SameSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SameSite {
    type Err = String;

    /// Case-insensitive `strict`, `lax` or `none` (so the binary can take it as an argument).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "strict" => Ok(Self::Strict),
            "lax" => Ok(Self::Lax),
            "none" => Ok(Self::None),
            _ => Err(format!("unknown SameSite value {s:?}: expected strict, lax or none")),
        }
    }
}
