//! Helpers of the token tests: a `redis-server` (or a three-node Redis Cluster) per test on
//! free ports, the store backends, a server with an injected clock, a venue stand-in, and HTTP
//! calls of the login endpoints.

#![allow(dead_code)]

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, TokenData, Validation};
use protocol::tokens::{OneTimeTokenClaims, VenueClaims};
use protocol::{ErrorBody, Timestamp};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use serde::de::DeserializeOwned;
use server::Config;
use server::redis_link::{self, RedisConn, RedisTarget};
use server::tokens::{
    EnterpriseStoreConfig, ManualClock, SessionStoreConfig, Tokens, VenueKeySource,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use venue_standin::VenueStandin;

use crate::util::TestServer;

/// A `redis-server` on a free port, killed when dropped; without persistence unless it was
/// started with [`RedisServer::start_persistent`].
pub(crate) struct RedisServer {
    child: Option<Child>,
    /// `redis://127.0.0.1:PORT`.
    pub(crate) url: String,
    port: u16,
    /// Where a persistent server keeps its append-only file.
    dir: Option<tempfile::TempDir>,
}

impl RedisServer {
    pub(crate) async fn start() -> Self {
        Self::start_in(None).await
    }

    /// A server that keeps what it was given across [`RedisServer::stop`] and
    /// [`RedisServer::restart`], as production Redis does (append-only file, fsync always).
    pub(crate) async fn start_persistent() -> Self {
        Self::start_in(Some(tempfile::tempdir().unwrap())).await
    }

    async fn start_in(mut dir: Option<tempfile::TempDir>) -> Self {
        // The port is free when we look; another process may take it before redis binds it,
        // so a redis that exits at once is retried on another port.
        for _ in 0..20 {
            let port = free_port();
            let url = format!("redis://127.0.0.1:{port}");
            let mut server = Self { child: None, url, port, dir };
            if server.spawn().await {
                return server;
            }
            dir = server.dir.take();
        }
        panic!("could not start redis-server");
    }

    /// Starts the process on this server's port; `false` if it did not come up.
    async fn spawn(&mut self) -> bool {
        let mut command = redis_server(self.port);
        match &self.dir {
            Some(dir) => command.args(["--dir", &dir.path().display().to_string()]).args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ]),
            None => command.args(["--appendonly", "no"]),
        };
        self.child = launch(command, &self.url).await;
        self.child.is_some()
    }

    /// Where the server is, as the server under test is configured.
    pub(crate) fn target(&self) -> RedisTarget {
        RedisTarget::Single(self.url.clone())
    }

    /// Kills the process (as a crash would).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (and, if persistent, with what it kept).
    pub(crate) async fn restart(&mut self) {
        self.stop();
        assert!(self.spawn().await, "redis-server did not come back on port {}", self.port);
    }

    /// A connection for looking at what the server stored.
    pub(crate) async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

/// `redis-server` on `port` of the loopback, without snapshots.
fn redis_server(port: u16) -> Command {
    let mut command = Command::new("redis-server");
    command.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""]);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    command
}

/// Runs `command` and waits until the server at `url` answers; `None` (the process killed) if
/// it exits or does not answer within 5 s.
async fn launch(mut command: Command, url: &str) -> Option<Child> {
    let mut child = command.spawn().expect("redis-server must be on PATH");
    for _ in 0..250 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if ping(url).await {
            return Some(child);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A free port of the loopback (free when we look: a process may take it before ours binds).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Redis Cluster of three masters (no replicas) on free ports, each in a temporary directory,
/// its 16384 slots spread by `redis-cli --cluster create`; killed when dropped.
pub(crate) struct RedisCluster {
    nodes: Vec<Child>,
    /// `redis://127.0.0.1:PORT` of each node.
    pub(crate) urls: Vec<String>,
    /// The nodes' cluster configuration files.
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub(crate) async fn start() -> Self {
        // A node whose port (or cluster-bus port) was taken meanwhile does not come up: the
        // whole cluster is tried again on other ports.
        for _ in 0..10 {
            if let Some(cluster) = Self::try_start().await {
                return cluster;
            }
        }
        panic!("could not start a Redis Cluster");
    }

    async fn try_start() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Self { nodes: Vec::new(), urls: Vec::new(), _dir: dir };
        let mut addresses = Vec::new();
        for _ in 0..3 {
            let (port, bus) = (free_port(), free_port());
            let url = format!("redis://127.0.0.1:{port}");
            let dir = cluster._dir.path();
            let mut command = redis_server(port);
            // The bus port is given: the default, port + 10000, may not exist for a high port.
            command.args(["--cluster-enabled", "yes", "--cluster-port", &bus.to_string()]).args([
                "--cluster-config-file",
                &dir.join(format!("nodes-{port}.conf")).display().to_string(),
                "--dir",
                &dir.display().to_string(),
                "--appendonly",
                "no",
            ]);
            cluster.nodes.push(launch(command, &url).await?);
            cluster.urls.push(url);
            addresses.push(format!("127.0.0.1:{port}"));
        }
        let created = tokio::task::spawn_blocking(move || {
            Command::new("redis-cli")
                .arg("--cluster")
                .arg("create")
                .args(&addresses)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("redis-cli (Debian package redis-tools) must be on PATH")
        })
        .await
        .unwrap();
        if !created.success() {
            return None;
        }
        // Every node must know every slot's owner before a client trusts its map.
        for _ in 0..500 {
            let mut ok = 0;
            for url in &cluster.urls {
                if cluster_info(url).await.is_some_and(|info| info.contains("cluster_state:ok")) {
                    ok += 1;
                }
            }
            if ok == cluster.urls.len() {
                return Some(cluster);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Where the cluster is, as the server under test is configured.
    pub(crate) fn target(&self) -> RedisTarget {
        RedisTarget::Cluster(self.urls.clone())
    }

    /// A connection to each node, for looking at what the server stored.
    pub(crate) async fn node_connections(&self) -> Vec<redis::aio::MultiplexedConnection> {
        let mut conns = Vec::new();
        for url in &self.urls {
            let client = redis::Client::open(url.as_str()).unwrap();
            conns.push(client.get_multiplexed_async_connection().await.unwrap());
        }
        conns
    }
}

async fn cluster_info(url: &str) -> Option<String> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    redis::cmd("CLUSTER").arg("INFO").query_async(&mut conn).await.ok()
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else { return false };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return false };
    redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where the server under test keeps sessions and one-time tokens.
pub(crate) enum Backend {
    /// The embedded SQLite store.
    Embedded,
    /// A Redis of its own: sessions without prefix, one-time tokens under `enterprise:`.
    Redis(RedisServer),
    /// A Redis Cluster of its own, used as [`Backend::Redis`] uses its Redis.
    Cluster(RedisCluster),
}

/// The enterprise key prefix of the Redis backend.
pub(crate) const ENTERPRISE_PREFIX: &str = "enterprise:";

impl Backend {
    pub(crate) fn embedded() -> Self {
        Self::Embedded
    }

    pub(crate) async fn redis() -> Self {
        Self::Redis(RedisServer::start().await)
    }

    pub(crate) async fn cluster() -> Self {
        Self::Cluster(RedisCluster::start().await)
    }

    /// The Redis or Redis Cluster of this backend.
    pub(crate) fn redis_target(&self) -> Option<RedisTarget> {
        match self {
            Self::Embedded => None,
            Self::Redis(redis) => Some(redis.target()),
            Self::Cluster(cluster) => Some(cluster.target()),
        }
    }

    /// A connection to the backend's Redis or Redis Cluster, for looking at what it stored.
    pub(crate) async fn redis_conn(&self) -> Option<RedisConn> {
        let target = self.redis_target()?;
        Some(redis_link::connect(&target, Duration::from_secs(5)).await.unwrap())
    }

    fn configure(&self, config: &mut Config) {
        let Some(target) = self.redis_target() else { return };
        config.tokens.session_store = SessionStoreConfig::Redis { target: target.clone() };
        config.tokens.enterprise_store =
            EnterpriseStoreConfig::Redis { target, key_prefix: ENTERPRISE_PREFIX.to_owned() };
    }
}

/// The seed's example identity.
pub(crate) const USER: &str = "user123";
pub(crate) const SPONSOR: &str = "sponsor456";
pub(crate) const SUBSCRIBER: &str = "sub789";

/// The Redis key of the session of [`SPONSOR`] and [`SUBSCRIBER`].
pub(crate) fn redis_session_key() -> String {
    let tag = server::tokens::store::SessionTag::of(SPONSOR, SUBSCRIBER);
    format!("websession:{{s:{}}}", tag.to_hex())
}

/// A server with an injected clock, on one backend.
pub(crate) struct Auth {
    pub(crate) server: TestServer,
    pub(crate) clock: ManualClock,
    pub(crate) backend: Backend,
    pub(crate) http: reqwest::Client,
}

/// What a login gave.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub(crate) access: String,
    pub(crate) refresh: String,
    pub(crate) body: serde_json::Value,
}

impl Auth {
    pub(crate) async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    pub(crate) async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let clock = ManualClock::starting_now();
        let injected = clock.clone();
        let server = TestServer::start_with(|config| {
            config.tokens.clock = std::sync::Arc::new(injected);
            backend.configure(config);
            tweak(config);
        })
        .await;
        Self { server, clock, backend, http: reqwest::Client::new() }
    }

    pub(crate) fn tokens(&self) -> &Tokens {
        &self.server.state.tokens
    }

    pub(crate) fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// This server's origin, as a browser page on it would send in `Origin`.
    pub(crate) fn origin(&self) -> &str {
        &self.server.url
    }

    pub(crate) fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Puts a one-time token for the seed's identity into the enterprise store.
    pub(crate) async fn one_time_token(&self, permissions: &[&str], valid_for: Duration) -> String {
        let now = self.clock.now();
        let claims = OneTimeTokenClaims {
            user_id: USER.to_owned(),
            sponsor_id: SPONSOR.to_owned(),
            subscriber_id: SUBSCRIBER.to_owned(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            valid_until: now.plus_millis(i64::try_from(valid_for.as_millis()).unwrap()),
        };
        let token = format!("ott-{}", protocol::ids::random_uuid());
        self.tokens().enterprise().put(&token, &claims, now).await.unwrap();
        token
    }

    pub(crate) async fn authenticate(&self, token: &str) -> reqwest::Response {
        self.http
            .post(self.url("/api/auth/authenticate"))
            .json(&serde_json::json!({ "token": token }))
            .send()
            .await
            .unwrap()
    }

    /// A login with `permissions` for four hours.
    pub(crate) async fn login(&self, permissions: &[&str]) -> Login {
        self.login_for(permissions, Duration::from_secs(4 * 3600)).await
    }

    pub(crate) async fn login_for(&self, permissions: &[&str], valid_for: Duration) -> Login {
        let token = self.one_time_token(permissions, valid_for).await;
        let response = self.authenticate(&token).await;
        assert_eq!(response.status(), StatusCode::OK);
        let refresh = refresh_cookie(&response).expect("a refresh cookie");
        let body: serde_json::Value = response.json().await.unwrap();
        let access = body["accessToken"].as_str().unwrap().to_owned();
        Login { access, refresh, body }
    }

    /// `POST /api/auth/refresh` with the cookie, as the page on this origin sends it.
    pub(crate) async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.http
            .post(self.url("/api/auth/refresh"))
            .header(COOKIE, format!("refreshToken={refresh_token}"))
            .header("origin", self.origin())
            .header("sec-fetch-site", "same-origin")
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn logout(
        &self,
        refresh: Option<&str>,
        access: Option<&str>,
    ) -> reqwest::Response {
        let mut request =
            self.http.post(self.url("/api/auth/logout")).header("origin", self.origin());
        if let Some(refresh) = refresh {
            request = request.header(COOKIE, format!("refreshToken={refresh}"));
        }
        if let Some(access) = access {
            request = request.header(AUTHORIZATION, format!("Bearer {access}"));
        }
        request.send().await.unwrap()
    }

    pub(crate) async fn get(&self, path: &str, bearer: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(self.url(path));
        if let Some(bearer) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {bearer}"));
        }
        request.send().await.unwrap()
    }

    /// The server's public key, from its JWKS.
    pub(crate) async fn server_key(&self) -> (String, DecodingKey) {
        let jwks: JwkSet = self
            .http
            .get(self.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(jwks.keys.len(), 1);
        let jwk = &jwks.keys[0];
        (jwk.common.key_id.clone().unwrap(), DecodingKey::from_jwk(jwk).unwrap())
    }
}

/// The `refreshToken` value a response sets, if it sets one.
pub(crate) fn refresh_cookie(response: &reqwest::Response) -> Option<String> {
    set_cookie(response).and_then(|c| {
        let (pair, _) = c.split_once(';').unwrap_or((c.as_str(), ""));
        pair.strip_prefix("refreshToken=").map(str::to_owned)
    })
}

/// The whole `Set-Cookie` header of the refresh cookie, if there is one.
pub(crate) fn set_cookie(response: &reqwest::Response) -> Option<String> {
    named_set_cookie(response, "refreshToken=")
}

/// The whole `Set-Cookie` header of the readable session marker, if there is one.
pub(crate) fn marker_cookie(response: &reqwest::Response) -> Option<String> {
    named_set_cookie(response, "websessionLoggedIn=")
}

fn named_set_cookie(response: &reqwest::Response, prefix: &str) -> Option<String> {
    let all: Vec<_> = response.headers().get_all(SET_COOKIE).iter().collect();
    assert!(all.len() <= 2, "the refresh cookie and the marker at most: {all:?}");
    let named: Vec<_> =
        all.iter().map(|v| v.to_str().unwrap()).filter(|v| v.starts_with(prefix)).collect();
    assert!(named.len() <= 1, "one {prefix} at most: {all:?}");
    named.first().map(|v| (*v).to_owned())
}

/// Asserts the app's error body with `status` and `code`, and returns its message.
pub(crate) async fn expect_error(
    response: reqwest::Response,
    status: StatusCode,
    code: &str,
) -> String {
    assert_eq!(response.status(), status);
    let body: ErrorBody = response.json().await.unwrap();
    assert_eq!(body.error, code, "{body:?}");
    body.message
}

/// Decodes a JWT this server signed, checking the signature only.
pub(crate) fn decode<T: DeserializeOwned>(token: &str, key: &DecodingKey) -> TokenData<T> {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    jsonwebtoken::decode(token, key, &validation).unwrap()
}

/// A venue stand-in on a free port, stopped when dropped.
pub(crate) struct Venue {
    pub(crate) url: String,
    pub(crate) standin: VenueStandin,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Venue {
    pub(crate) async fn start() -> Self {
        Self::start_with(venue_standin::Config::default()).await
    }

    pub(crate) async fn start_with(config: venue_standin::Config) -> Self {
        let standin = VenueStandin::new(config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(venue_standin::run(listener, standin.clone(), async {
            let _ = stopped.await;
        }));
        Self { url, standin, stop: Some(stop), task: Some(task) }
    }

    pub(crate) fn jwks_url(&self) -> String {
        format!("{}{}", self.url, venue_standin::DEFAULT_JWKS_PATH)
    }

    /// How often the JWKS was fetched.
    pub(crate) fn jwks_fetches(&self) -> u64 {
        self.standin.counter(venue_standin::DEFAULT_JWKS_PATH)
    }

    /// Claims as the stand-in issues them for `alice` now, to change before signing.
    pub(crate) fn claims(&self) -> VenueClaims {
        let now = Timestamp::now().seconds();
        VenueClaims {
            sub: "alice".to_owned(),
            iss: venue_standin::DEFAULT_ISSUER.to_owned(),
            aud: venue_standin::DEFAULT_AUDIENCE.to_owned(),
            exp: now + 3600,
            iat: now,
            nbf: None,
            ecoid: Some("eco-alice-0001".to_owned()),
        }
    }

    pub(crate) fn sign(&self, claims: &VenueClaims) -> String {
        self.standin.sign_claims(claims).unwrap()
    }
}

impl Drop for Venue {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A token server whose venue keys are the stand-in's JWKS URL.
pub(crate) async fn vtx_server(venue: &Venue) -> Auth {
    let url = venue.jwks_url();
    Auth::start_with(Backend::embedded(), move |config| {
        config.tokens.venue_keys = VenueKeySource::Url(url);
    })
    .await
}

/// `GET /vtx/token` with `jwt` as the bearer.
pub(crate) async fn exchange(auth: &Auth, jwt: &str) -> reqwest::Response {
    auth.get("/vtx/token", Some(jwt)).await
}
