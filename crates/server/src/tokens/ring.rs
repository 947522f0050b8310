//! The signing-key ring: the keys whose tokens may still be valid, the newest of which signs,
//! so the key can be rotated without logging anyone out (issue 13).
//!
//! Every JWT carries its key's `kid`; verification picks the key by it. `server keys rotate`
//! ([`rotate_signing_key`]) adds a new active key and gives the one before a retirement time:
//! the longest lifetime of a token the service issues ([`TokensConfig::access_ttl`],
//! [`TokensConfig::eid_ttl`]), plus [`KEY_RELOAD_EVERY`] (instances that have not re-read the
//! ring yet still sign with it), plus [`RETIRE_LEEWAY`]. A retired key verifies nothing more
//! and leaves the JWKS; the next rotation drops it from the stored ring.
//!
//! Where the ring lives:
//! - embedded store: `<data-dir>/eid-signing-keys.json` (0600, replaced by an atomic rename);
//! - Redis (`--redis-url` or `--redis-cluster-url`): the key `websession:signing-keys`, replaced
//!   by a compare-and-set script, so two rotations at once cannot lose one another's key (one
//!   key per command or script, so a Redis Cluster serves it as it is);
//! - `--eid-key-file`: that one key, fixed; rotation does not apply (the operator who brings
//!   their own key file manages it).
//!
//! Before the first rotation there is no ring, only the single key of older versions
//! (`<data-dir>/eid-signing-key.pem`, or `websession:signing-key` on Redis), made on first
//! start as before: it is the ring's only key, and the first rotation keeps it as the key
//! that retires, so the upgrade logs no one out.
//!
//! Running instances re-read the ring every [`KEY_RELOAD_EVERY`], and at once (at most once
//! per [`KEY_RELOAD_MIN_GAP`]) when a token names a `kid` they do not know.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use protocol::Timestamp;
use serde_json::{Value, json};

use super::clock::Clock;
use super::config::{DEFAULT_KEY_FILE, TokensConfig};
use super::keys::{KeyError, SigningKey};
use crate::config::Config;
use crate::redis_link::{self, RedisConn};

/// How often a running instance re-reads the ring (a rotation reaches every instance within
/// this time).
pub const KEY_RELOAD_EVERY: Duration = Duration::from_secs(10);
/// The shortest time between two reloads that an unknown `kid` causes: a flood of made-up
/// `kid`s costs at most one store read per this time.
pub const KEY_RELOAD_MIN_GAP: Duration = Duration::from_secs(1);
/// Added to a retiring key's last token lifetime (clocks of other verifiers differ a little).
pub const RETIRE_LEEWAY: Duration = Duration::from_secs(60);
/// The ring's file in the data directory (embedded store).
pub const RING_FILE: &str = "eid-signing-keys.json";
/// A Redis command of the ring that takes longer fails (a reload keeps the keys it has).
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);
/// The ring's Redis key.
const RING_KEY: &str = "websession:signing-keys";
/// The Redis key of the single key older versions share (the ring's first key until a
/// rotation).
const LEGACY_KEY: &str = "websession:signing-key";

/// One key of the ring and when it retires (`None`: the active key).
#[derive(Debug, Clone)]
struct RingKey {
    key: Arc<SigningKey>,
    retires_at: Option<Timestamp>,
}

/// The keys as last read, newest (the one that signs) first.
#[derive(Debug)]
struct Keys(Vec<RingKey>);

/// The ring as stored: each key's PEM and retirement time, oldest first.
#[derive(Debug, Clone, PartialEq)]
struct Stored(Vec<(String, Option<i64>)>);

impl Stored {
    fn parse(text: &str, origin: &str) -> Result<Self, KeyError> {
        let bad =
            |reason: &str| KeyError::Format { path: origin.to_owned(), reason: reason.into() };
        let value: Value = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
        let keys = value.get("keys").and_then(Value::as_array).ok_or_else(|| bad("no keys"))?;
        let mut stored = Vec::with_capacity(keys.len());
        for key in keys {
            let pem =
                key.get("pem").and_then(Value::as_str).ok_or_else(|| bad("a key lacks pem"))?;
            let retires = match key.get("retiresAtMs") {
                None | Some(Value::Null) => None,
                Some(ms) => Some(ms.as_i64().ok_or_else(|| bad("retiresAtMs is not a number"))?),
            };
            stored.push((pem.to_owned(), retires));
        }
        if stored.is_empty() {
            return Err(bad("the ring has no key"));
        }
        Ok(Self(stored))
    }

    fn to_text(&self) -> String {
        let keys: Vec<Value> = self
            .0
            .iter()
            .map(|(pem, retires)| match retires {
                Some(ms) => json!({ "pem": pem, "retiresAtMs": ms }),
                None => json!({ "pem": pem }),
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&json!({ "keys": keys })).unwrap_or_default();
        text.push('\n');
        text
    }

    fn keys(&self, origin: &str) -> Result<Keys, KeyError> {
        let mut keys = Vec::with_capacity(self.0.len());
        for (pem, retires) in self.0.iter().rev() {
            let key = Arc::new(SigningKey::from_pem(pem, origin)?);
            keys.push(RingKey { key, retires_at: retires.map(Timestamp::from_millis) });
        }
        Ok(Keys(keys))
    }

    /// The ring after a rotation at `now`: the retired keys dropped, the active one retiring
    /// at `retire_at`, `fresh` the new active key.
    fn rotated(&self, fresh: String, now: Timestamp, retire_at: Timestamp) -> Self {
        let mut keys: Vec<(String, Option<i64>)> = self
            .0
            .iter()
            .filter(|(_, retires)| retires.is_none_or(|ms| ms > now.millis()))
            .map(|(pem, retires)| (pem.clone(), Some(retires.unwrap_or(retire_at.millis()))))
            .collect();
        keys.push((fresh, None));
        Self(keys)
    }
}

/// Where the ring is read from.
enum Source {
    /// `--eid-key-file`, or a key handed in by an embedder: never re-read.
    Fixed,
    /// The data directory: the ring file, or else the single key file.
    Files { ring: PathBuf, legacy: PathBuf },
    /// A Redis shared by the instances.
    Redis { conn: RedisConn, shown: String },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed => f.write_str("Fixed"),
            Self::Files { ring, .. } => write!(f, "Files({})", ring.display()),
            Self::Redis { shown, .. } => write!(f, "Redis({shown})"),
        }
    }
}

/// The signing keys of this instance; cheap to share (`Arc`).
#[derive(Debug)]
pub struct KeyRing {
    source: Source,
    clock: Arc<dyn Clock>,
    /// A std lock: it is held only to clone or swap an `Arc`, never across an `.await`.
    keys: RwLock<Arc<Keys>>,
    /// When an unknown `kid` last made it reload; a tokio lock, so that requests that meet the
    /// same new `kid` at once wait for one reload instead of each making their own.
    last_forced: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl KeyRing {
    /// A ring of one key that never changes.
    pub(crate) fn fixed(key: SigningKey, clock: Arc<dyn Clock>) -> Self {
        let keys = Keys(vec![RingKey { key: Arc::new(key), retires_at: None }]);
        Self::with(Source::Fixed, keys, clock)
    }

    fn with(source: Source, keys: Keys, clock: Arc<dyn Clock>) -> Self {
        Self {
            source,
            clock,
            keys: RwLock::new(Arc::new(keys)),
            last_forced: tokio::sync::Mutex::new(None),
        }
    }

    /// The ring `config` names: `--eid-key-file`, else Redis, else the data directory.
    pub(crate) async fn open(config: &Config) -> anyhow::Result<Self> {
        let clock = config.tokens.clock.clone();
        if let Some(path) = &config.tokens.signing_key_file {
            return Ok(Self::fixed(SigningKey::load_or_create(path)?, clock));
        }
        let source = source(config).await?;
        let keys = read(&source).await?.1.keys(&origin(&source))?;
        Ok(Self::with(source, keys, clock))
    }

    fn current(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The key that signs.
    pub fn active(&self) -> Arc<SigningKey> {
        self.current().0[0].key.clone()
    }

    /// The unretired key with `kid`, as last read.
    fn find(&self, kid: &str) -> Option<Arc<SigningKey>> {
        let now = self.clock.now();
        let keys = self.current();
        let found = keys.0.iter().find(|k| k.key.kid() == kid)?;
        found.retires_at.is_none_or(|at| at > now).then(|| found.key.clone())
    }

    /// The unretired key with `kid`; one this instance does not know makes it re-read the
    /// ring first (another instance may have rotated), at most once per
    /// [`KEY_RELOAD_MIN_GAP`].
    pub(crate) async fn verifying(&self, kid: &str) -> Option<Arc<SigningKey>> {
        if let Some(key) = self.find(kid) {
            return Some(key);
        }
        if matches!(self.source, Source::Fixed) {
            return None;
        }
        {
            let mut last = self.last_forced.lock().await;
            // Another request may have reloaded while this one waited for the lock.
            if let Some(key) = self.find(kid) {
                return Some(key);
            }
            let now = tokio::time::Instant::now();
            if last.is_some_and(|at| now.duration_since(at) < KEY_RELOAD_MIN_GAP) {
                return None;
            }
            *last = Some(now);
            self.reload().await;
        }
        self.find(kid)
    }

    /// The public keys that may still have valid tokens, the active one first.
    pub fn jwks(&self) -> JwkSet {
        let now = self.clock.now();
        let keys = self.current();
        let live = keys.0.iter().filter(|k| k.retires_at.is_none_or(|at| at > now));
        JwkSet { keys: live.flat_map(|k| k.key.jwks().keys).collect() }
    }

    /// Re-reads the ring; on failure it keeps the keys it has and says so in the log (the next
    /// reload tries again).
    pub async fn reload(&self) {
        if matches!(self.source, Source::Fixed) {
            return;
        }
        let read = read(&self.source).await;
        match read.and_then(|(_, stored)| Ok(stored.keys(&origin(&self.source))?)) {
            Ok(keys) => {
                let changed = {
                    let current = self.current();
                    current.0.iter().map(|k| k.key.kid()).ne(keys.0.iter().map(|k| k.key.kid()))
                };
                if changed {
                    tracing::info!(active = keys.0[0].key.kid(), "the signing-key ring changed");
                }
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
            }
            Err(e) => tracing::warn!(error = %e, "could not re-read the signing-key ring"),
        }
    }
}

/// Re-reads `ring` every [`KEY_RELOAD_EVERY`] until aborted.
pub(crate) fn spawn_reloader(ring: Arc<KeyRing>) -> Option<tokio::task::JoinHandle<()>> {
    if matches!(ring.source, Source::Fixed) {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut every = tokio::time::interval(KEY_RELOAD_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            ring.reload().await;
        }
    }))
}

/// Where the ring of `config` lives (not `--eid-key-file`: that one does not rotate).
async fn source(config: &Config) -> anyhow::Result<Source> {
    Ok(match &config.redis {
        Some(target) => {
            let shown = target.shown();
            let conn = redis_link::connect(target, REDIS_TIMEOUT)
                .await
                .map_err(|e| anyhow::anyhow!("Redis {shown}: {e}"))?;
            Source::Redis { conn, shown }
        }
        None => Source::Files {
            ring: config.data_dir.join(RING_FILE),
            legacy: config.data_dir.join(DEFAULT_KEY_FILE),
        },
    })
}

/// The ring as stored (its text; `None` before the first rotation) and its keys: before the
/// first rotation, the single key of older versions, made if there is none yet.
async fn read(source: &Source) -> anyhow::Result<(Option<String>, Stored)> {
    match source {
        Source::Fixed => anyhow::bail!("a fixed key is not read"),
        Source::Files { ring, legacy } => {
            let origin = ring.display().to_string();
            match tokio::fs::read_to_string(ring).await {
                Ok(text) => {
                    let stored = Stored::parse(&text, &origin)?;
                    Ok((Some(text), stored))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let legacy = legacy.clone();
                    let pem = tokio::task::spawn_blocking(move || {
                        SigningKey::load_or_create(&legacy)?;
                        std::fs::read_to_string(&legacy).map_err(|source| KeyError::Io {
                            path: legacy.display().to_string(),
                            source,
                        })
                    })
                    .await??;
                    Ok((None, Stored(vec![(pem, None)])))
                }
                Err(e) => Err(KeyError::Io { path: origin, source: e }.into()),
            }
        }
        Source::Redis { conn, shown } => {
            let mut conn = conn.clone();
            let redis_err = |e: ::redis::RedisError| anyhow::anyhow!("Redis {shown}: {e}");
            let text: Option<String> = ::redis::cmd("GET")
                .arg(RING_KEY)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            if let Some(text) = text {
                let stored = Stored::parse(&text, &format!("{shown} key {RING_KEY}"))?;
                return Ok((Some(text), stored));
            }
            // The first instance to start makes the key (`SET NX`), every one reads it.
            let fresh = SigningKey::new_pem()?;
            let _: Option<String> = ::redis::cmd("SET")
                .arg(LEGACY_KEY)
                .arg(&fresh)
                .arg("NX")
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            let pem: String = ::redis::cmd("GET")
                .arg(LEGACY_KEY)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            Ok((None, Stored(vec![(pem, None)])))
        }
    }
}

/// Where `source` keeps the ring, for errors.
fn origin(source: &Source) -> String {
    match source {
        Source::Fixed => "--eid-key-file".to_owned(),
        Source::Files { ring, .. } => ring.display().to_string(),
        Source::Redis { shown, .. } => format!("{shown} key {RING_KEY}"),
    }
}

/// Sets `RING_KEY` to ARGV[2] if it holds ARGV[1] (`""`: if it does not exist); 1 if it did.
const COMPARE_AND_SET: &str = r"
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotated {
    /// The new active key's `kid`.
    pub kid: String,
    /// The keys that still verify, and when each retires.
    pub retiring: Vec<(String, Timestamp)>,
}

/// How long after a rotation the key it replaced still verifies.
pub fn retirement_delay(tokens: &TokensConfig) -> Duration {
    tokens.access_ttl.max(tokens.eid_ttl) + KEY_RELOAD_EVERY + RETIRE_LEEWAY
}

/// `server keys rotate`: adds a new active key to the ring of `config`; the key it replaces
/// retires after [`retirement_delay`]. Running instances pick it up within
/// [`KEY_RELOAD_EVERY`].
pub async fn rotate_signing_key(config: &Config) -> anyhow::Result<Rotated> {
    if config.tokens.signing_key_file.is_some() {
        anyhow::bail!(
            "the signing key is fixed by --eid-key-file: rotation does not apply (replace the \
             file and restart, or drop the flag to use the ring in --data-dir or Redis)"
        );
    }
    if config.redis.is_none() {
        // The data directory of a server that never started yet.
        config.open_db()?;
    }
    let source = source(config).await?;
    let now = config.tokens.clock.now();
    let retire_at = now.plus_millis(
        i64::try_from(retirement_delay(&config.tokens).as_millis()).unwrap_or(i64::MAX),
    );
    let fresh = SigningKey::new_pem()?;
    let mut attempts = 0;
    let stored = loop {
        let (text, stored) = read(&source).await?;
        let next = stored.rotated(fresh.clone(), now, retire_at);
        if write(&source, text.as_deref(), &next).await? {
            break next;
        }
        attempts += 1;
        anyhow::ensure!(attempts < 10, "the ring kept changing under the rotation");
    };
    let keys = stored.keys(&origin(&source))?;
    let kid = keys.0[0].key.kid().to_owned();
    let retiring =
        keys.0[1..].iter().filter_map(|k| Some((k.key.kid().to_owned(), k.retires_at?))).collect();
    tracing::info!(kid = %kid, "rotated the signing key");
    Ok(Rotated { kid, retiring })
}

/// Replaces the ring stored in `source` by `next` if it still is `was`; `false` if it changed
/// meanwhile.
async fn write(source: &Source, was: Option<&str>, next: &Stored) -> anyhow::Result<bool> {
    match source {
        Source::Fixed => anyhow::bail!("a fixed key does not rotate"),
        Source::Files { ring, .. } => {
            let (ring, text) = (ring.clone(), next.to_text());
            tokio::task::spawn_blocking(move || write_file(&ring, &text)).await??;
            Ok(true)
        }
        Source::Redis { conn, shown } => {
            let mut conn = conn.clone();
            let set: i64 = ::redis::Script::new(COMPARE_AND_SET)
                .key(RING_KEY)
                .arg(was.unwrap_or(""))
                .arg(next.to_text())
                .invoke_async(&mut conn)
                .await
                .map_err(|e| anyhow::anyhow!("Redis {shown}: {e}"))?;
            Ok(set == 1)
        }
    }
}

/// Writes `text` to `path` whole or not at all: a 0600 file beside it, synced, then renamed
/// over it, so a reader never sees half a ring and a crash leaves the old one.
fn write_file(path: &Path, text: &str) -> Result<(), KeyError> {
    use std::io::Write as _;
    let shown = path.display().to_string();
    let io = |source| KeyError::Io { path: shown.clone(), source };
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        // The rename itself is durable once the directory is synced.
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_stored_ring_reads_back_as_written() {
        let stored = Stored(vec![
            (SigningKey::new_pem().unwrap(), Some(1_700_000_000_000)),
            (SigningKey::new_pem().unwrap(), None),
        ]);
        assert_eq!(Stored::parse(&stored.to_text(), "test").unwrap(), stored);
        let keys = stored.keys("test").unwrap();
        assert_eq!(keys.0[0].retires_at, None, "the last stored key signs");
    }

    #[test]
    fn a_rotation_retires_the_active_key_and_drops_the_retired_ones() {
        let (old, active, fresh) =
            (SigningKey::new_pem().unwrap(), SigningKey::new_pem().unwrap(), "fresh".to_owned());
        let now = Timestamp::from_millis(2_000);
        let stored = Stored(vec![(old, Some(1_000)), (active.clone(), None)]);
        let next = stored.rotated(fresh.clone(), now, Timestamp::from_millis(9_000));
        assert_eq!(next, Stored(vec![(active, Some(9_000)), (fresh, None)]));
    }

    #[test]
    fn the_ring_file_is_replaced_whole_and_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RING_FILE);
        write_file(&path, "first").unwrap();
        write_file(&path, "second").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [RING_FILE], "no temporary file left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_ring_that_is_not_one_is_an_error() {
        for text in ["", "{}", r#"{"keys": []}"#, r#"{"keys": [{"pem": "x"}]}"#] {
            let parsed = Stored::parse(text, "test").and_then(|s| s.keys("test"));
            assert!(matches!(parsed, Err(KeyError::Format { .. })), "{text}");
        }
    }
}
