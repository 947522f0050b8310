//! The bodies of the fuzz targets of the token services (the refresh-token cookie, venue JWKS
//! and venue JWTs), shared by `fuzz/` (cargo-fuzz, nightly) and the corpus replay in the host
//! tests (stable). Not an API: it exists so that the private parsers are fuzzed as they are.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::Algorithm;
use protocol::tokens::VenueClaims;

use super::config::TokensConfig;
use super::cookie;
use super::keys::SigningKey;
use super::venue_keys::{VenueKey, parse_jwks, pem_key};
use super::vtx::{venue_claims, venue_header};

/// The refresh-token cookie: the input's lines are `Cookie` headers. A token found is
/// non-empty, within one cookie and unquoted, and one more `refreshToken` cookie makes the request ambiguous
/// (whoever planted the second must not choose the session).
pub fn cookie(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(header::COOKIE, value);
        }
    }
    let Ok(Some(token)) = cookie::get(&headers) else {
        return;
    };
    assert!(!token.is_empty());
    assert!(!token.contains(';'), "a token spans two cookies: {token:?}");
    // The value is trimmed, then unquoted: what a quote exposed (`"  t  "`) stays, so that the
    // token is compared as sent (it then matches no session).
    assert!(!token.starts_with('"') && !token.ends_with('"'), "the token is still quoted");
    let mut more = headers.clone();
    more.append(header::COOKIE, HeaderValue::from_static("refreshToken=planted"));
    assert_eq!(cookie::get(&more), Err(cookie::Ambiguous));
}

/// A venue JWKS (JSON) or PEM key: parsing never panics and takes only EdDSA and ES256 keys,
/// at most one per entry of `keys`.
pub fn venue_jwks(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let keys = parse_jwks(&value);
        let entries = value.get("keys").and_then(|k| k.as_array()).map_or(0, Vec::len);
        assert!(keys.len() <= entries);
        assert!(keys.iter().all(|k| matches!(k.alg, Algorithm::EdDSA | Algorithm::ES256)));
    }
    if let Some(key) = pem_key(data) {
        assert!(matches!(key.alg, Algorithm::EdDSA | Algorithm::ES256));
    }
}

/// The fixed time (seconds) at which fuzzed venue JWTs are checked.
const NOW: i64 = 1_700_000_000;

/// A venue JWT: any text either is refused or verifies against the one venue key (a fuzzer
/// does not forge Ed25519). Claims given as JSON, signed with that key, verify to themselves
/// exactly when their times are good at [`NOW`].
pub fn venue_jwt(data: &[u8]) {
    let (signer, key, config) = venue();
    let text = String::from_utf8_lossy(data);
    if let Ok(header) = venue_header(&text) {
        assert!(matches!(header.alg, Algorithm::EdDSA | Algorithm::ES256));
        if let Ok(claims) = venue_claims(&text, key, config, NOW) {
            assert_eq!(claims.iss, config.venue_issuer);
            assert_eq!(claims.aud, config.venue_audience);
            assert!(claims.exp > NOW);
        }
    }
    let Ok(mut claims) = serde_json::from_slice::<VenueClaims>(data) else {
        return;
    };
    // Issuer and audience are not what the fuzzer should spend its time guessing.
    claims.iss.clone_from(&config.venue_issuer);
    claims.aud.clone_from(&config.venue_audience);
    let Ok(token) = signer.sign("JWT", &claims) else {
        return;
    };
    let header = venue_header(&token).expect("a token we signed has a good header");
    assert_eq!(header.alg, Algorithm::EdDSA);
    let leeway = i64::try_from(config.venue_leeway.as_secs()).unwrap_or(0);
    let good_times = claims.nbf.is_none_or(|nbf| nbf <= NOW + leeway)
        && claims.iat <= NOW + leeway
        && claims.exp > NOW;
    match venue_claims(&token, key, config, NOW) {
        Ok(read) => {
            assert!(good_times, "a venue JWT with bad times verified: {claims:?}");
            assert_eq!(read, claims, "sign → verify round trip");
        }
        Err(err) => assert!(!good_times, "a good venue JWT was refused ({err}): {claims:?}"),
    }
}

/// The venue's signing key, the same key as the server reads it from a JWKS, and the config.
fn venue() -> &'static (SigningKey, VenueKey, TokensConfig) {
    static VENUE: OnceLock<(SigningKey, VenueKey, TokensConfig)> = OnceLock::new();
    VENUE.get_or_init(|| {
        let signer = SigningKey::from_secret([7; 32]).expect("a fixed Ed25519 key");
        let jwks = serde_json::to_value(signer.jwks()).expect("a JWKS serialises");
        let key = parse_jwks(&jwks).pop().expect("the server takes its own kind of key");
        (signer, key, TokensConfig::default())
    })
}
