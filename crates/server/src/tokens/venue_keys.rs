//! The venue's public keys, against which venue JWTs are verified: a JWKS fetched from a URL and
//! cached, or a local JWKS or PEM file read at start.
//!
//! A fetched JWKS is **fresh** for [`MAX_AGE`], then **stale** but still used up to
//! [`MAX_STALE`] after the last successful fetch, and after that not trusted at all (`503`
//! until a fetch succeeds): a key the venue withdrew stops working at most [`MAX_AGE`] (plus
//! [`MIN_REFETCH`]) after it left the JWKS while the venue answers, and at most [`MAX_STALE`]
//! after the last good fetch while it does not. The JWKS is fetched again when a request finds
//! it stale, or finds no key for its `kid`; whatever the cause, **at most one fetch per
//! [`MIN_REFETCH`]** is made, one at a time (single flight). A request whose key is in a stale
//! cache never waits for a fetch another request is making: it uses the stale key. So a venue
//! that fails or hangs costs one fetch (up to `FETCH_TIMEOUT`) per [`MIN_REFETCH`], not one
//! per request.
//!
//! Only `EdDSA` (Ed25519) and `ES256` (P-256) keys are taken. Symmetric (`oct`) keys are never
//! taken, so a JWKS cannot turn on HMAC, and every key is checked for the right length here,
//! because jsonwebtoken slices key bytes without checking them.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use protocol::Timestamp;

use super::clock::{Clock, millis};
use super::config::VenueKeySource;
use super::error::TokenError;

/// The JWKS is fetched at most this often, whatever the reason (an unknown `kid`, a stale or
/// empty cache, failing fetches): a stream of forged `kid`s, or a venue that is down, must not
/// turn the server into a load generator against the venue or make every request wait for it.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// A fetched JWKS is used for this long, then fetched again at the next use (keys the venue
/// withdrew stop working within this time while the venue answers). If that fetch fails, the
/// old keys stay in use, up to [`MAX_STALE`].
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// Keys fetched longer ago than this are not used, even if no fetch has succeeded since: the
/// server can no longer tell whether the venue withdrew them. Six times [`MAX_AGE`]: an hour of
/// venue outage is survived, a withdrawn key does not live on for good.
pub const MAX_STALE: Duration = Duration::from_secs(3600);
/// How long a JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS larger than this is refused.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// One venue key.
#[derive(Clone)]
pub(crate) struct VenueKey {
    kid: Option<String>,
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
}

impl std::fmt::Debug for VenueKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VenueKey").field("kid", &self.kid).field("alg", &self.alg).finish()
    }
}

#[derive(Debug)]
enum Source {
    None,
    /// A file or an inline JWKS: the keys never change.
    Fixed,
    Url {
        url: String,
        client: reqwest::Client,
    },
}

#[derive(Debug, Default)]
struct Cache {
    keys: Vec<VenueKey>,
    fetched_at: Option<Timestamp>,
    last_attempt: Option<Timestamp>,
    /// Why the last fetch failed, if it did (for the `503` once no keys are usable).
    last_error: Option<String>,
}

impl Cache {
    /// Whether the keys were fetched less than [`MAX_AGE`] before `now`.
    fn fresh(&self, now: Timestamp) -> bool {
        self.fetched_at.is_some_and(|at| now.millis() - at.millis() < millis(MAX_AGE))
    }

    /// Whether the keys were fetched less than [`MAX_STALE`] before `now`.
    fn usable(&self, now: Timestamp) -> bool {
        self.fetched_at.is_some_and(|at| now.millis() - at.millis() < millis(MAX_STALE))
    }

    /// Whether the last fetch attempt was at least [`MIN_REFETCH`] before `now`.
    fn rested(&self, now: Timestamp) -> bool {
        self.last_attempt.is_none_or(|at| now.millis() - at.millis() >= millis(MIN_REFETCH))
    }
}

/// The venue keys and where they come from.
#[derive(Debug)]
pub(crate) struct VenueKeys {
    source: Source,
    /// A `std` lock: it is held only to copy a key out, never across an `.await`.
    cache: RwLock<Cache>,
    /// Single flight: one JWKS fetch at a time; the others wait for it and use its result.
    fetching: tokio::sync::Mutex<()>,
    /// The injected clock: cache age and the refetch limit follow it like every other expiry.
    clock: Arc<dyn Clock>,
}

impl VenueKeys {
    /// Reads a file source now (a bad file is an error at start); a URL is fetched at first use,
    /// so the server starts even when the venue does not answer yet.
    pub(crate) fn open(source: &VenueKeySource, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let (source, keys) = match source {
            VenueKeySource::None => (Source::None, Vec::new()),
            VenueKeySource::Jwks(value) => (Source::Fixed, parse_jwks(value)),
            VenueKeySource::File(path) => (Source::Fixed, read_file(path)?),
            VenueKeySource::Url(url) => {
                if url.starts_with("https://") && !cfg!(feature = "venue-jwks-https") {
                    anyhow::bail!(
                        "venue JWKS URL {url} is https, but this server was built without the \
                         `venue-jwks-https` feature"
                    );
                }
                reqwest::Url::parse(url)
                    .map_err(|err| anyhow::anyhow!("venue JWKS URL {url:?}: {err}"))?;
                let client = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build()?;
                (Source::Url { url: url.clone(), client }, Vec::new())
            }
        };
        if matches!(source, Source::Fixed) && keys.is_empty() {
            anyhow::bail!("the venue key source has no EdDSA or ES256 signing key");
        }
        Ok(Self {
            source,
            cache: RwLock::new(Cache { keys, ..Cache::default() }),
            fetching: tokio::sync::Mutex::new(()),
            clock,
        })
    }

    /// The key for a JWT with header `kid` and `alg`.
    pub(crate) async fn find(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<VenueKey, TokenError> {
        let key = match &self.source {
            Source::None => {
                return Err(TokenError::VenueKeysUnavailable(
                    "no venue keys are configured".to_owned(),
                ));
            }
            Source::Fixed => self.lookup(kid)?,
            Source::Url { url, client } => self.url_lookup(kid, url, client).await?,
        };
        let key = key.ok_or_else(|| {
            TokenError::InvalidToken(match kid {
                Some(kid) => format!("the venue publishes no key with kid {:?}", short(kid)),
                None => "the token has no kid and the venue has several keys".to_owned(),
            })
        })?;
        if key.alg != alg {
            return Err(TokenError::InvalidToken(format!(
                "the token says {alg:?} but the venue key is for {:?}",
                key.alg
            )));
        }
        Ok(key)
    }

    fn lookup(&self, kid: Option<&str>) -> Result<Option<VenueKey>, TokenError> {
        let cache = self.cache.read().map_err(|_| poisoned())?;
        Ok(select(&cache.keys, kid))
    }

    /// The key for `kid` from the URL's JWKS, fetching it as the module documentation says.
    async fn url_lookup(
        &self,
        kid: Option<&str>,
        url: &str,
        client: &reqwest::Client,
    ) -> Result<Option<VenueKey>, TokenError> {
        let now = self.clock.now();
        let (found, fresh, rested) = {
            let cache = self.cache.read().map_err(|_| poisoned())?;
            let found = if cache.usable(now) { select(&cache.keys, kid) } else { None };
            (found, cache.fresh(now), cache.rested(now))
        };
        match found {
            Some(key) if fresh => Ok(Some(key)),
            Some(key) => {
                // Stale: refresh in passing, unless another request is at it already, in which
                // case this one goes on with the key it has rather than wait.
                if rested && let Ok(_flight) = self.fetching.try_lock() {
                    self.refetch(url, client).await?;
                    return self.usable_lookup(kid);
                }
                Ok(Some(key))
            }
            None => {
                // No key to go on with: wait for the fetch in flight, or make one.
                let _flight = self.fetching.lock().await;
                self.refetch(url, client).await?;
                self.usable_lookup(kid)
            }
        }
    }

    /// Fetches the JWKS unless a fetch was attempted less than [`MIN_REFETCH`] ago. Call it
    /// holding `fetching`. A failure is recorded, not returned: the caller decides whether the
    /// keys it has are still good enough.
    async fn refetch(&self, url: &str, client: &reqwest::Client) -> Result<(), TokenError> {
        let now = self.clock.now();
        {
            let mut cache = self.cache.write().map_err(|_| poisoned())?;
            if !cache.rested(now) {
                return Ok(());
            }
            cache.last_attempt = Some(now);
        }
        let fetched = fetch(client, url).await;
        let mut cache = self.cache.write().map_err(|_| poisoned())?;
        match fetched {
            Ok(keys) => {
                tracing::info!(url, keys = keys.len(), "fetched the venue JWKS");
                cache.keys = keys;
                cache.fetched_at = Some(now);
                cache.last_error = None;
            }
            Err(reason) => {
                // Once per MIN_REFETCH at most, like the fetches.
                tracing::warn!(url, %reason, "venue JWKS fetch failed");
                cache.last_error = Some(reason);
            }
        }
        Ok(())
    }

    /// The key for `kid` among keys young enough to trust; an error if there are none.
    fn usable_lookup(&self, kid: Option<&str>) -> Result<Option<VenueKey>, TokenError> {
        let now = self.clock.now();
        let cache = self.cache.read().map_err(|_| poisoned())?;
        if cache.usable(now) {
            return Ok(select(&cache.keys, kid));
        }
        let reason = cache.last_error.clone().unwrap_or_else(|| "not fetched yet".to_owned());
        Err(TokenError::VenueKeysUnavailable(match cache.fetched_at {
            Some(_) => format!(
                "the venue JWKS was last fetched more than {} s ago and cannot be fetched now \
                 ({reason})",
                MAX_STALE.as_secs()
            ),
            None => reason,
        }))
    }
}

fn poisoned() -> TokenError {
    TokenError::Internal("venue key cache lock poisoned".to_owned())
}

/// The key named `kid`; a set of one key without a `kid` (a PEM file) takes any token.
fn select(keys: &[VenueKey], kid: Option<&str>) -> Option<VenueKey> {
    if let Some(kid) = kid
        && let Some(key) = keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    {
        return Some(key.clone());
    }
    match keys {
        [only] if only.kid.is_none() || kid.is_none() => Some(only.clone()),
        _ => None,
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<VenueKey>, String> {
    let response = client.get(url).send().await.map_err(|err| format!("GET {url}: {err}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url}: status {status}"));
    }
    let body = response.bytes().await.map_err(|err| format!("GET {url}: {err}"))?;
    if body.len() > MAX_JWKS_BYTES {
        return Err(format!("GET {url}: the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|err| format!("GET {url}: not JSON: {err}"))?;
    let keys = parse_jwks(&value);
    if keys.is_empty() {
        return Err(format!("GET {url}: no EdDSA or ES256 signing key in the JWKS"));
    }
    Ok(keys)
}

fn read_file(path: &Path) -> anyhow::Result<Vec<VenueKey>> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| anyhow::anyhow!("venue key file {}: {err}", path.display()))?;
    if text.trim_start().starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|err| anyhow::anyhow!("venue JWKS file {}: {err}", path.display()))?;
        return Ok(parse_jwks(&value));
    }
    let key = pem_key(text.as_bytes()).ok_or_else(|| {
        anyhow::anyhow!(
            "venue key file {} is neither a JWKS nor an Ed25519 / P-256 public key PEM",
            path.display()
        )
    })?;
    Ok(vec![key])
}

pub(crate) fn pem_key(pem: &[u8]) -> Option<VenueKey> {
    if let Ok(key) = DecodingKey::from_ed_pem(pem)
        && key.try_get_as_bytes().is_ok_and(|b| b.len() == 32)
    {
        return Some(VenueKey { kid: None, alg: Algorithm::EdDSA, key });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem)
        // An uncompressed P-256 point; P-384 and others are not taken.
        && key.try_get_as_bytes().is_ok_and(|b| b.len() == 65)
    {
        return Some(VenueKey { kid: None, alg: Algorithm::ES256, key });
    }
    None
}

/// The usable keys of a JWKS. Keys are parsed one by one, so one key of a kind this server does
/// not know (RSA, a newer curve) does not hide the others.
pub(crate) fn parse_jwks(value: &serde_json::Value) -> Vec<VenueKey> {
    let Some(keys) = value.get("keys").and_then(|k| k.as_array()) else {
        tracing::warn!("venue JWKS has no \"keys\" array");
        return Vec::new();
    };
    keys.iter()
        .filter_map(|value| {
            let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
            let key = jwk_key(&jwk);
            if key.is_none() {
                tracing::debug!(kid = ?jwk.common.key_id, "skipping a venue JWK that is not an EdDSA or ES256 signing key");
            }
            key
        })
        .collect()
}

fn jwk_key(jwk: &Jwk) -> Option<VenueKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_)))
    {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            (decoded_len(&p.x) == Some(32)).then_some(Algorithm::EdDSA)?
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            (decoded_len(&p.x) == Some(32) && decoded_len(&p.y) == Some(32))
                .then_some(Algorithm::ES256)?
        }
        _ => return None,
    };
    // A JWK's `alg`, when present, must agree with its key type.
    let agrees = match jwk.common.key_algorithm {
        None => true,
        Some(KeyAlgorithm::EdDSA) => alg == Algorithm::EdDSA,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(_) => false,
    };
    if !agrees {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VenueKey { kid: jwk.common.key_id.clone(), alg, key })
}

fn decoded_len(b64: &str) -> Option<usize> {
    URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')).ok().map(|b| b.len())
}

/// Keeps attacker-chosen `kid`s short in messages and logs.
fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_ed25519_and_p256_signing_keys_of_the_right_length_are_taken() {
        let x32 = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let x31 = URL_SAFE_NO_PAD.encode([7u8; 31]);
        let jwks = json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": x32, "kid": "ed"},
            {"kty": "OKP", "crv": "Ed25519", "x": x31, "kid": "short"},
            {"kty": "EC", "crv": "P-256", "x": x32, "y": x32, "kid": "ec", "alg": "ES256"},
            {"kty": "EC", "crv": "P-256", "x": x32, "y": x32, "kid": "liar", "alg": "EdDSA"},
            {"kty": "oct", "k": x32, "kid": "hmac"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
            {"kty": "OKP", "crv": "Ed25519", "x": x32, "kid": "enc", "use": "enc"},
            {"kty": "whatever", "kid": "future"}
        ]});
        let keys = parse_jwks(&jwks);
        let kids: Vec<_> = keys.iter().map(|k| k.kid.clone().unwrap_or_default()).collect();
        assert_eq!(kids, ["ed", "ec"]);
        assert_eq!(keys[0].alg, Algorithm::EdDSA);
        assert_eq!(keys[1].alg, Algorithm::ES256);
    }

    #[test]
    fn a_kid_selects_its_key_and_a_lone_anonymous_key_takes_any() {
        let x = URL_SAFE_NO_PAD.encode([9u8; 32]);
        let two = parse_jwks(&json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "a"},
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "b"}
        ]}));
        assert!(select(&two, Some("b")).is_some());
        assert!(select(&two, Some("c")).is_none());
        assert!(select(&two, None).is_none());
        let anonymous = parse_jwks(&json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]}));
        assert!(select(&anonymous, Some("anything")).is_some());
        assert!(select(&anonymous, None).is_some());
    }
}
