//! The venue token exchange (seed 000): a venue JWT in, an EID JWT signed by this server out.
//!
//! - `GET /vtx/token` with `Authorization: Bearer <venue JWT>`: errors in the app's error body;
//! - `POST /vtx/token`, the RFC 8693 form (`grant_type=urn:ietf:params:oauth:grant-type:
//!   token-exchange`, `subject_token`, `subject_token_type`): errors as RFC 6749 §5.2 says;
//! - `GET /.well-known/jwks.json`: the server's public key.
//!
//! Both forms answer RFC 8693's `{"access_token", "issued_token_type", "token_type",
//! "expires_in"}`, with `Cache-Control: no-store`.

use std::collections::HashSet;

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, Header, Validation, decode, decode_header};
use protocol::tokens::{
    EidClaims, GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPE_JWT, TokenExchangeRequest,
    TokenExchangeResponse, VenueClaims,
};

use super::Tokens;
use super::access::describe;
use super::config::TokensConfig;
use super::error::{OAuthError, TokenError, no_store, oauth_error};
use super::venue_keys::VenueKey;
use crate::openapi::{Always, Jwks, OAuthErrors, errors};

/// Longest venue JWT accepted; anything longer is refused before parsing.
const MAX_JWT_CHARS: usize = 16 * 1024;
/// The JWT `typ` of EID tokens.
pub const EID_TOKEN_TYPE: &str = "JWT";

impl Tokens {
    /// Verifies `venue_jwt` and issues an EID JWT for it.
    pub async fn exchange(&self, venue_jwt: &str) -> Result<TokenExchangeResponse, TokenError> {
        let venue = self.verify_venue_jwt(venue_jwt).await?;
        let ecoid = venue.ecoid.filter(|e| !e.is_empty()).ok_or(TokenError::NotProvisioned)?;
        let inner = &self.inner;
        let now = inner.clock.now().seconds();
        let ttl = i64::try_from(inner.config.eid_ttl.as_secs()).unwrap_or(i64::MAX);
        let exp = now.saturating_add(ttl).min(venue.exp);
        let claims = EidClaims {
            sub: venue.sub,
            ecoid,
            iss: inner.config.issuer.clone(),
            aud: inner.config.eid_audience.clone(),
            iat: now,
            exp,
            jti: protocol::ids::random_uuid().to_string(),
        };
        let access_token = inner.keys.active().sign(EID_TOKEN_TYPE, &claims)?;
        Ok(TokenExchangeResponse {
            access_token,
            issued_token_type: TOKEN_TYPE_JWT.to_owned(),
            token_type: "Bearer".to_owned(),
            expires_in: exp - now,
        })
    }

    /// The claims of a genuine, current venue JWT for this exchange.
    async fn verify_venue_jwt(&self, token: &str) -> Result<VenueClaims, TokenError> {
        let header = venue_header(token)?;
        let key = self.inner.venue_keys.find(header.kid.as_deref(), header.alg).await?;
        venue_claims(token, &key, &self.inner.config, self.inner.clock.now().seconds())
    }
}

/// The header of a venue JWT, refused before any key is looked up when the token is too long,
/// not a JWT, or signed with an algorithm the venue does not use.
pub(crate) fn venue_header(token: &str) -> Result<Header, TokenError> {
    if token.len() > MAX_JWT_CHARS {
        return Err(TokenError::InvalidToken("the venue JWT is too long".to_owned()));
    }
    let header =
        decode_header(token).map_err(|err| TokenError::InvalidToken(describe(err.kind())))?;
    // Only the asymmetric algorithms the venue uses: this refuses `none` (which does not
    // even parse as an `Algorithm`) and every HMAC variant, whatever key it names.
    if !matches!(header.alg, Algorithm::EdDSA | Algorithm::ES256) {
        return Err(TokenError::InvalidToken(format!(
            "algorithm {:?} is not accepted",
            header.alg
        )));
    }
    Ok(header)
}

/// The claims of `token`, verified with `key` and checked against `config` at `now` (seconds).
pub(crate) fn venue_claims(
    token: &str,
    key: &VenueKey,
    config: &TokensConfig,
    now: i64,
) -> Result<VenueClaims, TokenError> {
    let mut validation = Validation::new(key.alg);
    // Times are checked below against the injected clock, `iss`/`aud` with our own
    // messages; jsonwebtoken checks only the signature and the algorithm.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    let claims = decode::<VenueClaims>(token, &key.key, &validation)
        .map_err(|err| TokenError::InvalidToken(describe(err.kind())))?
        .claims;
    if claims.iss != config.venue_issuer {
        return Err(TokenError::InvalidToken("the venue JWT has another issuer".to_owned()));
    }
    if claims.aud != config.venue_audience {
        return Err(TokenError::InvalidToken("the venue JWT is for another audience".to_owned()));
    }
    let leeway = i64::try_from(config.venue_leeway.as_secs()).unwrap_or(0);
    if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway))
        || claims.iat > now.saturating_add(leeway)
    {
        return Err(TokenError::InvalidToken("the venue JWT is not valid yet".to_owned()));
    }
    // No leeway on `exp`: the EID may not outlive the venue JWT, so a venue JWT at or past
    // its `exp` could only give an EID that is born expired.
    if claims.exp <= now {
        return Err(TokenError::TokenExpired("The venue JWT has expired"));
    }
    Ok(claims)
}

errors! {
    /// The errors of the bearer form of the exchange.
    ExchangeErrors {
        401: InvalidToken, TokenExpired;
        403: NotProvisioned;
        503: Internal;
    }
}

/// Exchange a venue JWT (bearer) for an EID JWT
///
/// The venue JWT comes as `Authorization: Bearer <JWT>`; it must be signed by one of the
/// venue's keys (EdDSA or ES256), for this server's venue issuer and audience, current, and
/// carry an `ecoid` (else `403 not_provisioned`). The EID JWT expires with the venue JWT at the
/// latest. `503 internal` when the venue's keys cannot be had. Answers carry
/// `Cache-Control: no-store`.
#[utoipa::path(
    get,
    path = "/vtx/token",
    tag = "tokens",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The EID JWT (RFC 8693 answer).", body = TokenExchangeResponse),
        ExchangeErrors,
    )
)]
pub(crate) async fn get_token(
    State(tokens): State<Tokens>,
    headers: HeaderMap,
) -> Result<Response, TokenError> {
    let jwt = bearer(&headers).ok_or_else(|| {
        TokenError::InvalidToken("send the venue JWT as Authorization: Bearer <JWT>".to_owned())
    })?;
    let answer = tokens.exchange(jwt).await?;
    let mut response = axum::Json(answer).into_response();
    no_store(&mut response);
    Ok(response)
}

/// Exchange a venue JWT for an EID JWT (RFC 8693)
///
/// The RFC 8693 form: `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`,
/// `subject_token` (the venue JWT), `subject_token_type=urn:ietf:params:oauth:token-type:jwt`,
/// optionally `requested_token_type` (the same type). Errors are RFC 6749 §5.2 bodies.
#[utoipa::path(
    post,
    path = "/vtx/token",
    tag = "tokens",
    request_body(content = TokenExchangeRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The EID JWT.", body = TokenExchangeResponse),
        OAuthErrors,
    )
)]
pub(crate) async fn post_token(
    State(tokens): State<Tokens>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let Ok(Form(pairs)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected an application/x-www-form-urlencoded body",
        );
    };
    // RFC 6749 §3.2: parameters must not repeat.
    let mut seen = HashSet::new();
    if let Some((name, _)) = pairs.iter().find(|(name, _)| !seen.insert(name.as_str())) {
        let text = format!("parameter {name:?} appears more than once");
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &text);
    }
    let param = |name: &str| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    match param("grant_type") {
        Some(GRANT_TYPE_TOKEN_EXCHANGE) => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only urn:ietf:params:oauth:grant-type:token-exchange is supported",
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is missing",
            );
        }
    }
    let Some(subject_token) = param("subject_token").filter(|t| !t.is_empty()) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "subject_token is missing");
    };
    if param("subject_token_type") != Some(TOKEN_TYPE_JWT) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "subject_token_type must be urn:ietf:params:oauth:token-type:jwt",
        );
    }
    if param("requested_token_type").is_some_and(|t| t != TOKEN_TYPE_JWT) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "only urn:ietf:params:oauth:token-type:jwt can be issued",
        );
    }
    match tokens.exchange(subject_token).await {
        Ok(answer) => {
            let mut response = axum::Json(answer).into_response();
            no_store(&mut response);
            response
        }
        Err(err) => OAuthError(err).into_response(),
    }
}

/// The server's public signing keys
///
/// The JWKS with which EID and access JWTs verify (`Cache-Control: public, max-age=300`).
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "tokens",
    responses(
        (status = 200, description = "The JWKS (RFC 7517).", body = Jwks),
        Always,
    )
)]
pub(crate) async fn jwks(State(tokens): State<Tokens>) -> Response {
    let set: JwkSet = tokens.inner.keys.jwks();
    let mut response = axum::Json(set).into_response();
    // Verifiers may cache it a while; a rotated key gets a new `kid`, which makes them fetch.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

/// The token of an `Authorization: Bearer …` header (scheme case-insensitive).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
