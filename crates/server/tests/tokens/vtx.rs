//! The VTX exchange: a stand-in's venue JWT in, an EID JWT out, by `GET` with a bearer and by
//! the RFC 8693 form; venue keys from a JWKS URL, a JWKS file, a PEM file, ES256 keys.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use protocol::tokens::{EidClaims, OAuthErrorBody, TokenExchangeResponse};
use reqwest::StatusCode;
use reqwest::header::CACHE_CONTROL;
use server::tokens::VenueKeySource;

use super::harness::{Auth, Backend, Venue, decode, exchange, expect_error, vtx_server};

#[tokio::test]
async fn a_provisioned_venue_user_gets_an_eid_jwt_signed_by_the_published_key() {
    let venue = Venue::start().await;
    let auth = vtx_server(&venue).await;
    let venue_jwt = venue.standin.issue_token("alice").unwrap();

    let response = exchange(&auth, &venue_jwt).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let answer: TokenExchangeResponse = response.json().await.unwrap();
    assert_eq!(answer.issued_token_type, "urn:ietf:params:oauth:token-type:jwt");
    assert_eq!(answer.token_type, "Bearer");
    assert_eq!(answer.expires_in, 900);

    let (kid, key) = auth.server_key().await;
    let eid = decode::<EidClaims>(&answer.access_token, &key);
    assert_eq!(eid.header.alg, Algorithm::EdDSA);
    assert_eq!(eid.header.kid.as_deref(), Some(kid.as_str()));
    let claims = eid.claims;
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.ecoid, "eco-alice-0001");
    assert_eq!(claims.iss, "urn:vtx");
    assert_eq!(claims.aud, "urn:ecs");
    assert_eq!(claims.exp - claims.iat, 900);
    assert_eq!(claims.iat, auth.clock.now().seconds());
    assert_eq!(claims.jti.len(), 36);
}

#[tokio::test]
async fn the_eid_never_outlives_the_venue_jwt() {
    let venue = Venue::start().await;
    let auth = vtx_server(&venue).await;
    let mut claims = venue.claims();
    claims.exp = auth.clock.now().seconds() + 60;
    let response = exchange(&auth, &venue.sign(&claims)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: TokenExchangeResponse = response.json().await.unwrap();
    assert_eq!(answer.expires_in, 60);
    let (_, key) = auth.server_key().await;
    assert_eq!(decode::<EidClaims>(&answer.access_token, &key).claims.exp, claims.exp);
}

#[tokio::test]
async fn a_user_without_ecoid_is_not_provisioned() {
    let venue = Venue::start().await;
    let auth = vtx_server(&venue).await;
    let venue_jwt = venue.standin.issue_token("bob").unwrap();
    let message =
        expect_error(exchange(&auth, &venue_jwt).await, StatusCode::FORBIDDEN, "not_provisioned")
            .await;
    assert_eq!(message, "Venue user is not provisioned for ECS");
}

#[tokio::test]
async fn nbf_and_iat_get_a_small_leeway_and_no_more() {
    let venue = Venue::start().await;
    let auth = vtx_server(&venue).await;
    // The default leeway is 30 s; the injected clock stands still, so the edges are exact.
    let now = auth.clock.now().seconds();
    let with = |nbf: Option<i64>, iat: i64| {
        let mut claims = venue.claims();
        claims.nbf = nbf;
        claims.iat = iat;
        venue.sign(&claims)
    };
    for (nbf, iat) in [(Some(now + 20), now + 20), (Some(now + 30), now + 30), (None, now + 30)] {
        let status = exchange(&auth, &with(nbf, iat)).await.status();
        assert_eq!(status, StatusCode::OK, "nbf {nbf:?}, iat {iat} (now {now})");
    }
    // One second beyond the leeway, on each claim alone: the other one is fine.
    for (nbf, iat) in
        [(Some(now + 31), now), (Some(now + 120), now), (None, now + 31), (Some(now), now + 120)]
    {
        expect_error(
            exchange(&auth, &with(nbf, iat)).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }
}

#[tokio::test]
async fn a_venue_jwt_expires_by_the_injected_clock() {
    let venue = Venue::start().await;
    let auth = vtx_server(&venue).await;
    let venue_jwt = venue.standin.issue_token("alice").unwrap();
    assert_eq!(exchange(&auth, &venue_jwt).await.status(), StatusCode::OK);
    auth.advance(Duration::from_secs(3601));
    expect_error(exchange(&auth, &venue_jwt).await, StatusCode::UNAUTHORIZED, "token_expired")
        .await;
}

#[tokio::test]
async fn a_missing_or_malformed_bearer_is_401() {
    let venue = Venue::start().await;
    let auth = vtx_server(&venue).await;
    let response = auth.get("/vtx/token", None).await;
    assert!(response.headers().contains_key("www-authenticate"));
    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    expect_error(exchange(&auth, "not.a.jwt").await, StatusCode::UNAUTHORIZED, "invalid_token")
        .await;
    expect_error(
        exchange(&auth, &"x".repeat(20_000)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn without_venue_keys_the_exchange_says_what_is_missing() {
    let auth = Auth::start(Backend::embedded()).await;
    let venue = Venue::start().await;
    let venue_jwt = venue.standin.issue_token("alice").unwrap();
    let message = expect_error(
        exchange(&auth, &venue_jwt).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "internal",
    )
    .await;
    assert!(message.contains("--venue-jwks-url"), "{message}");
}

#[tokio::test]
async fn an_unreachable_jwks_url_is_503_not_a_hang_or_a_panic() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let auth = Auth::start_with(Backend::embedded(), move |config| {
        config.tokens.venue_keys =
            VenueKeySource::Url(format!("http://127.0.0.1:{port}/jwks.json"));
    })
    .await;
    let venue = Venue::start().await;
    let venue_jwt = venue.standin.issue_token("alice").unwrap();
    expect_error(exchange(&auth, &venue_jwt).await, StatusCode::SERVICE_UNAVAILABLE, "internal")
        .await;
}

#[tokio::test]
async fn the_jwks_is_fetched_once_and_cached() {
    let venue = Venue::start().await;
    let auth = vtx_server(&venue).await;
    for _ in 0..5 {
        let venue_jwt = venue.standin.issue_token("alice").unwrap();
        assert_eq!(exchange(&auth, &venue_jwt).await.status(), StatusCode::OK);
    }
    assert_eq!(venue.jwks_fetches(), 1);
}

mod rfc8693 {
    use super::*;

    async fn post(auth: &Auth, form: &[(&str, &str)]) -> reqwest::Response {
        auth.http.post(auth.url("/vtx/token")).form(form).send().await.unwrap()
    }

    async fn expect_oauth(response: reqwest::Response, status: StatusCode, error: &str) -> String {
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        let body: OAuthErrorBody = response.json().await.unwrap();
        assert_eq!(body.error, error, "{body:?}");
        body.error_description.unwrap_or_default()
    }

    const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
    const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

    #[tokio::test]
    async fn the_form_exchanges_a_venue_jwt() {
        let venue = Venue::start().await;
        let auth = vtx_server(&venue).await;
        let venue_jwt = venue.standin.issue_token("alice").unwrap();
        let form = [
            ("grant_type", GRANT),
            ("subject_token", venue_jwt.as_str()),
            ("subject_token_type", JWT),
        ];
        let response = post(&auth, &form).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        let answer: TokenExchangeResponse = response.json().await.unwrap();
        assert_eq!(answer.issued_token_type, JWT);
        let (_, key) = auth.server_key().await;
        assert_eq!(decode::<EidClaims>(&answer.access_token, &key).claims.sub, "alice");
    }

    #[tokio::test]
    async fn form_errors_use_the_oauth_codes() {
        let venue = Venue::start().await;
        let auth = vtx_server(&venue).await;
        let good = venue.standin.issue_token("alice").unwrap();
        let bob = venue.standin.issue_token("bob").unwrap();

        let form = [
            ("grant_type", "client_credentials"),
            ("subject_token", good.as_str()),
            ("subject_token_type", JWT),
        ];
        expect_oauth(post(&auth, &form).await, StatusCode::BAD_REQUEST, "unsupported_grant_type")
            .await;
        let form = [("grant_type", GRANT), ("subject_token_type", JWT)];
        expect_oauth(post(&auth, &form).await, StatusCode::BAD_REQUEST, "invalid_request").await;
        let form = [
            ("grant_type", GRANT),
            ("subject_token", good.as_str()),
            ("subject_token_type", "urn:x"),
        ];
        expect_oauth(post(&auth, &form).await, StatusCode::BAD_REQUEST, "invalid_request").await;
        let form = [
            ("grant_type", GRANT),
            ("grant_type", GRANT),
            ("subject_token", good.as_str()),
            ("subject_token_type", JWT),
        ];
        expect_oauth(post(&auth, &form).await, StatusCode::BAD_REQUEST, "invalid_request").await;
        let form =
            [("grant_type", GRANT), ("subject_token", bob.as_str()), ("subject_token_type", JWT)];
        let text =
            expect_oauth(post(&auth, &form).await, StatusCode::BAD_REQUEST, "invalid_request")
                .await;
        assert_eq!(text, "Venue user is not provisioned for ECS");
        let form =
            [("grant_type", GRANT), ("subject_token", "forged"), ("subject_token_type", JWT)];
        expect_oauth(post(&auth, &form).await, StatusCode::BAD_REQUEST, "invalid_request").await;
        let json = auth
            .http
            .post(auth.url("/vtx/token"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        expect_oauth(json, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

mod key_sources {
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use p256::pkcs8::EncodePrivateKey as _;

    use super::*;

    async fn server_with(source: VenueKeySource) -> Auth {
        Auth::start_with(Backend::embedded(), move |config| config.tokens.venue_keys = source).await
    }

    #[tokio::test]
    async fn a_local_jwks_file_works() {
        let venue = Venue::start().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("venue-jwks.json");
        std::fs::write(&path, serde_json::to_vec(&venue.standin.jwks()).unwrap()).unwrap();
        let auth = server_with(VenueKeySource::File(path)).await;
        let venue_jwt = venue.standin.issue_token("alice").unwrap();
        assert_eq!(exchange(&auth, &venue_jwt).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_local_pem_file_works() {
        let venue = Venue::start().await;
        let jwks: JwkSet = serde_json::from_value(venue.standin.jwks()).unwrap();
        let x = match &jwks.keys[0].algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p) => p.x.clone(),
            other => panic!("{other:?}"),
        };
        let x: [u8; 32] = URL_SAFE_NO_PAD.decode(x).unwrap().try_into().unwrap();
        let pem = ed25519_dalek::VerifyingKey::from_bytes(&x)
            .unwrap()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("venue.pem");
        std::fs::write(&path, pem).unwrap();
        let auth = server_with(VenueKeySource::File(path)).await;
        let venue_jwt = venue.standin.issue_token("alice").unwrap();
        assert_eq!(exchange(&auth, &venue_jwt).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn es256_venue_keys_work() {
        let secret = p256::SecretKey::from_slice(&[0x42; 32]).unwrap();
        let der = secret.to_pkcs8_der().unwrap();
        let encoding = EncodingKey::from_ec_der(der.as_bytes());
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &secret.public_key(),
            false,
        );
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "venue-es256", "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        }]});
        let auth = server_with(VenueKeySource::Jwks(jwks)).await;
        let venue = Venue::start().await;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("venue-es256".to_owned());
        let venue_jwt = jsonwebtoken::encode(&header, &venue.claims(), &encoding).unwrap();
        assert_eq!(exchange(&auth, &venue_jwt).await.status(), StatusCode::OK);
        // The same token claiming EdDSA is refused: the key is for ES256 only.
        let mut parts = venue_jwt.splitn(2, '.');
        let _ = parts.next();
        let rest = parts.next().unwrap();
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","kid":"venue-es256"}"#);
        let relabelled = format!("{header}.{rest}");
        expect_error(exchange(&auth, &relabelled).await, StatusCode::UNAUTHORIZED, "invalid_token")
            .await;
    }

    #[test]
    fn a_key_file_that_is_neither_jwks_nor_pem_stops_the_server_from_starting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("venue.pem");
        std::fs::write(&path, "garbage").unwrap();
        let mut config = server::Config::new(dir.path());
        config.tokens.venue_keys = VenueKeySource::File(path);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let result = runtime
            .block_on(server::tokens::Tokens::open(&config, server::db::Db::in_memory().unwrap()));
        let err = result.expect_err("a bad key file is an error");
        assert!(err.to_string().contains("neither a JWKS nor"), "{err}");
    }
}
