//! Access JWTs of the one-time-token login (seed 002): issued by login and refresh, checked by
//! the permission guard and by logout.
//!
//! They are signed with the server's Ed25519 key (not HS256 as in the seed, so that other
//! services can verify them from `/.well-known/jwks.json` without holding a secret), carry
//! `typ: at+jwt` (RFC 9068) so that an EID JWT from the same key is never taken for one, and
//! are checked against the injected clock with no leeway: this server made them. Each names its
//! key by `kid`; the key ring picks the key that verifies it, so tokens of a key being rotated
//! out stay valid until they expire.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode};
use protocol::tokens::AccessClaims;

use super::clock::Clock;
use super::error::TokenError;
use super::keys::ALGORITHM;
use super::ring::KeyRing;
use super::store::SessionData;

/// The JWT `typ` of access tokens.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// Longest bearer token accepted; longer ones are refused before any parsing.
const MAX_JWT_CHARS: usize = 8 * 1024;

/// Issues and verifies access tokens; cheap to clone.
#[derive(Debug, Clone)]
pub struct AccessTokens {
    keys: Arc<KeyRing>,
    issuer: Arc<str>,
    ttl: Duration,
    clock: Arc<dyn Clock>,
}

impl AccessTokens {
    pub(crate) fn new(
        keys: Arc<KeyRing>,
        issuer: &str,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { keys, issuer: issuer.into(), ttl, clock }
    }

    /// A signed access token for `session`, and its lifetime in seconds. It expires after the
    /// configured lifetime or at the end of the session, whichever comes first.
    pub fn issue(&self, session: &SessionData) -> Result<(String, i64), TokenError> {
        let now = self.clock.now().seconds();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let exp = now.saturating_add(ttl).min(session.valid_until.seconds());
        let claims = AccessClaims {
            user_id: session.user_id.clone(),
            sponsor_id: session.sponsor_id.clone(),
            subscriber_id: session.subscriber_id.clone(),
            permissions: session.permissions.clone(),
            iss: self.issuer.to_string(),
            iat: now,
            exp,
            jti: protocol::ids::random_uuid().to_string(),
        };
        let token = self.keys.active().sign(ACCESS_TOKEN_TYPE, &claims)?;
        Ok((token, exp.saturating_sub(now)))
    }

    /// The claims of a genuine, unexpired access token of this server, signed by a key of its
    /// ring that has not retired.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_JWT_CHARS {
            return Err(TokenError::InvalidToken("the access token is too long".to_owned()));
        }
        // The algorithm is pinned to the key's, so `alg: none` and HS256-with-the-public-key
        // are refused before any signature check; times are checked below with our clock.
        let mut validation = Validation::new(ALGORITHM);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| TokenError::InvalidToken(describe(err.kind())))?;
        let signed_by = "signed by no key of this server (or by a retired one)";
        let kid = header.kid.ok_or_else(|| TokenError::InvalidToken(signed_by.to_owned()))?;
        let key = self
            .keys
            .verifying(&kid)
            .await
            .ok_or_else(|| TokenError::InvalidToken(signed_by.to_owned()))?;
        let data = decode::<AccessClaims>(token, key.decoding(), &validation)
            .map_err(|err| TokenError::InvalidToken(describe(err.kind())))?;
        if data.header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(TokenError::InvalidToken("not an access token".to_owned()));
        }
        let claims = data.claims;
        if *claims.iss != *self.issuer {
            return Err(TokenError::InvalidToken("issued by someone else".to_owned()));
        }
        if claims.exp <= self.clock.now().seconds() {
            return Err(TokenError::TokenExpired("The access token has expired"));
        }
        Ok(claims)
    }
}

/// A short reason for a JWT that did not verify.
pub(crate) fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::InvalidSignature => "the signature does not verify",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the algorithm is not the one of the key"
        }
        ErrorKind::Json(_) => "the claims are not the expected ones",
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => "not a JWT",
        _ => "the token does not verify",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use protocol::Timestamp;

    use super::*;
    use crate::tokens::clock::ManualClock;
    use crate::tokens::keys::SigningKey;

    fn session(valid_until: Timestamp) -> SessionData {
        SessionData {
            user_id: "u".to_owned(),
            sponsor_id: "s".to_owned(),
            subscriber_id: "b".to_owned(),
            permissions: vec!["CanViewReports".to_owned()],
            valid_until,
        }
    }

    fn ring(clock: &ManualClock) -> Arc<KeyRing> {
        Arc::new(KeyRing::fixed(SigningKey::generate().unwrap(), Arc::new(clock.clone())))
    }

    fn tokens(keys: &Arc<KeyRing>, issuer: &str, clock: &ManualClock) -> AccessTokens {
        AccessTokens::new(keys.clone(), issuer, Duration::from_secs(900), Arc::new(clock.clone()))
    }

    #[tokio::test]
    async fn issued_tokens_verify_until_they_expire() {
        let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
        let access = tokens(&ring(&clock), "urn:vtx", &clock);
        let (token, expires_in) =
            access.issue(&session(clock.now().plus_millis(3_600_000))).unwrap();
        assert_eq!(expires_in, 900);
        assert_eq!(access.verify(&token).await.unwrap().permissions, ["CanViewReports"]);
        clock.advance(Duration::from_secs(900));
        assert!(matches!(access.verify(&token).await, Err(TokenError::TokenExpired(_))));
    }

    #[tokio::test]
    async fn tokens_of_another_issuer_or_type_from_the_same_key_are_refused() {
        let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
        let keys = ring(&clock);
        let ours = tokens(&keys, "urn:vtx", &clock);
        let theirs = tokens(&keys, "urn:elsewhere", &clock);
        let (token, _) = theirs.issue(&session(clock.now().plus_millis(3_600_000))).unwrap();
        assert!(matches!(ours.verify(&token).await, Err(TokenError::InvalidToken(_))));

        let (token, _) = ours.issue(&session(clock.now().plus_millis(3_600_000))).unwrap();
        let claims = ours.verify(&token).await.unwrap();
        let eid_typed = keys.active().sign("JWT", &claims).unwrap();
        assert!(matches!(ours.verify(&eid_typed).await, Err(TokenError::InvalidToken(_))));
    }
}
