//! Reads the claims the worker needs (`exp`, `ecoid`) from a JWT's payload, without verifying
//! the signature: the worker only decides when to renew a token and whether to try the exchange;
//! the server that receives the token verifies it.

use protocol::json::Value;

/// A token and what the worker read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwt {
    /// The compact JWT.
    pub token: String,
    /// `exp` in milliseconds since the epoch; `None` for a token without `exp`, which is used
    /// for the request at hand but never cached.
    pub expires_at_ms: Option<i64>,
    /// Whether it has a non-empty `ecoid` claim.
    pub has_ecoid: bool,
    /// Whose token it is: the `sub` and `ecoid` claims as sent (`None` when both are missing).
    /// The worker keeps a cached pair only for a venue JWT of the same user.
    pub user: Option<String>,
}

impl Jwt {
    /// Decodes `token`'s payload; the text says why a token is not a JWT.
    pub fn decode(token: &str) -> Result<Self, String> {
        let token = token.trim();
        let text = protocol::tokens::jwt_payload(token)?;
        let not_claims = |e: &dyn std::fmt::Display| format!("JWT payload is not JSON claims: {e}");
        // A map read from text, its claims taken out by hand: a struct would also be read from a
        // JSON array, and every other JSON of the worker is read from text into its own types
        // (one copy of the parser in the wasm, no second deserialiser for `Value`).
        let claims: protocol::json::Map<String, Value> =
            protocol::json::from_str(&text).map_err(|e| not_claims(&e))?;
        let claim = |name: &str| claims.get(name).filter(|v| !v.is_null());
        let exp = match claim("exp") {
            None => None,
            Some(exp) => Some(exp.as_f64().ok_or_else(|| not_claims(&"`exp` is not a number"))?),
        };
        let user = match (claim("sub"), claim("ecoid")) {
            (None, None) => None,
            // `["sub","ecoid"]`, written without building a `Value` first.
            (sub, ecoid) => protocol::json::to_string(&(sub, ecoid)).ok(),
        };
        let has_ecoid = match claim("ecoid") {
            None => false,
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(_) => true,
        };
        #[allow(clippy::cast_possible_truncation)] // `exp` seconds in f64 are far inside i64 range
        let expires_at_ms = exp.filter(|e| e.is_finite()).map(|exp| (exp * 1000.0) as i64);
        Ok(Self { token: token.to_owned(), expires_at_ms, has_ecoid, user })
    }

    /// Whether the token is still good at `now_ms`, counting it expired `margin_ms` before `exp`.
    pub fn is_fresh(&self, now_ms: i64, margin_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|exp| now_ms < exp.saturating_sub(margin_ms))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    /// An unsigned JWT with these claims (the worker never checks signatures).
    pub(crate) fn jwt(claims: &serde_json::Value) -> String {
        let part = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.sig", part(&serde_json::json!({"alg": "EdDSA"})), part(claims))
    }

    #[test]
    fn reads_exp_and_ecoid() {
        let token = jwt(&serde_json::json!({"sub": "alice", "exp": 1_700_000_000, "ecoid": "e-1"}));
        let decoded = Jwt::decode(&token).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded.expires_at_ms, Some(1_700_000_000_000));
        assert!(decoded.has_ecoid);
        assert_eq!(decoded.token, token);
        assert_eq!(decoded.user.as_deref(), Some(r#"["alice","e-1"]"#));
        let anonymous = Jwt::decode(&jwt(&serde_json::json!({"exp": 1}))).expect("decodes");
        assert_eq!(anonymous.user, None, "a token without `sub` and `ecoid` is nobody's");
    }

    #[test]
    fn missing_null_or_empty_ecoid_is_no_ecoid() {
        for claims in [
            serde_json::json!({"exp": 1}),
            serde_json::json!({"exp": 1, "ecoid": null}),
            serde_json::json!({"exp": 1, "ecoid": " "}),
        ] {
            // The token decodes (a decoding error would also be "no ecoid" to a careless check).
            let decoded = Jwt::decode(&jwt(&claims)).unwrap_or_else(|e| panic!("{claims}: {e}"));
            assert!(!decoded.has_ecoid, "{claims}");
            assert_eq!(decoded.expires_at_ms, Some(1_000), "{claims}");
        }
        let numeric = Jwt::decode(&jwt(&serde_json::json!({"ecoid": 7}))).expect("decodes");
        assert!(numeric.has_ecoid);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for token in ["", "abc", "a.b", "a.b.c.d", "a.!!!.c", "a.bm90IGpzb24.c", "a.WzFd.c"] {
            assert!(Jwt::decode(token).is_err(), "{token}");
        }
    }

    #[test]
    fn freshness_counts_the_margin() {
        let j =
            Jwt { token: String::new(), expires_at_ms: Some(100_000), has_ecoid: true, user: None };
        assert!(j.is_fresh(39_999, 60_000));
        assert!(!j.is_fresh(40_000, 60_000));
        assert!(j.is_fresh(99_999, 0));
        assert!(!Jwt { expires_at_ms: None, ..j }.is_fresh(0, 0));
    }
}
