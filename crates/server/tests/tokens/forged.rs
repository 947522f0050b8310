//! Forged tokens are refused, each a real JWT: for the exchange (venue JWTs) and for the
//! permission guard (access JWTs).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, KeypairBytes};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde::Serialize;

use super::harness::{Auth, Backend, Venue, exchange, expect_error, vtx_server};

/// A fresh Ed25519 key nobody published.
fn stranger_key() -> EncodingKey {
    let der = KeypairBytes { secret_key: [0x17; 32], public_key: None }.to_pkcs8_der().unwrap();
    EncodingKey::from_ed_der(der.as_bytes())
}

fn sign(
    alg: Algorithm,
    kid: &str,
    typ: &str,
    claims: &impl Serialize,
    key: &EncodingKey,
) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    header.typ = Some(typ.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn b64(json: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).unwrap())
}

/// `header.payload.` with `alg: none`.
fn unsigned(kid: &str, typ: &str, claims: &impl Serialize) -> String {
    let header = serde_json::json!({"alg": "none", "typ": typ, "kid": kid});
    format!("{}.{}.", b64(&header), b64(&serde_json::to_value(claims).unwrap()))
}

/// `token` with its payload replaced by `claims`, the signature kept.
fn with_payload(token: &str, claims: &serde_json::Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], b64(claims), parts[2])
}

/// HMAC secrets an attacker could derive from a published Ed25519 JWK.
fn public_key_secrets(jwks: &JwkSet) -> Vec<Vec<u8>> {
    let jwk = &jwks.keys[0];
    let AlgorithmParameters::OctetKeyPair(params) = &jwk.algorithm else { panic!("not OKP") };
    vec![
        URL_SAFE_NO_PAD.decode(&params.x).unwrap(),
        params.x.as_bytes().to_vec(),
        serde_json::to_vec(jwk).unwrap(),
    ]
}

#[tokio::test]
async fn forged_venue_jwts_are_refused() {
    let venue = Venue::start().await;
    let auth = vtx_server(&venue).await;
    let kid = venue.standin.key_id().to_owned();
    let claims = venue.claims();
    // The genuine token works, so every refusal below is the forgery's doing.
    assert_eq!(exchange(&auth, &venue.sign(&claims)).await.status(), StatusCode::OK);

    let mut forged = vec![
        ("alg none", unsigned(&kid, "JWT", &claims)),
        ("alg none, signature kept", {
            let genuine = venue.sign(&claims);
            let signature = genuine.rsplit('.').next().unwrap();
            format!("{}{signature}", unsigned(&kid, "JWT", &claims))
        }),
        ("changed payload", {
            let mut other = serde_json::to_value(&claims).unwrap();
            other["ecoid"] = "eco-mallory".into();
            other["sub"] = "mallory".into();
            with_payload(&venue.sign(&claims), &other)
        }),
        (
            "another key, the venue's kid",
            sign(Algorithm::EdDSA, &kid, "JWT", &claims, &stranger_key()),
        ),
        ("wrong iss", {
            let mut c = claims.clone();
            c.iss = "urn:someone-else".to_owned();
            venue.sign(&c)
        }),
        ("wrong aud", {
            let mut c = claims.clone();
            c.aud = "urn:another-service".to_owned();
            venue.sign(&c)
        }),
    ];
    let jwks: JwkSet = serde_json::from_value(venue.standin.jwks()).unwrap();
    for (i, secret) in public_key_secrets(&jwks).into_iter().enumerate() {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = sign(alg, &kid, "JWT", &claims, &EncodingKey::from_secret(&secret));
            forged.push((
                if i == 0 { "HMAC with the public key" } else { "HMAC with the JWK text" },
                token,
            ));
        }
    }
    for (what, token) in forged {
        let response = exchange(&auth, &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        expect_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }

    let mut expired = claims.clone();
    expired.iat -= 7200;
    expired.exp = auth.clock.now().seconds() - 1;
    expect_error(
        exchange(&auth, &venue.sign(&expired)).await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
    )
    .await;

    let mut no_ecoid = claims.clone();
    no_ecoid.ecoid = None;
    let message = expect_error(
        exchange(&auth, &venue.sign(&no_ecoid)).await,
        StatusCode::FORBIDDEN,
        "not_provisioned",
    )
    .await;
    assert_eq!(message, "Venue user is not provisioned for ECS");
}

#[tokio::test]
async fn a_kid_nobody_published_is_refused_after_one_jwks_refetch() {
    let venue = Venue::start().await;
    let auth = vtx_server(&venue).await;
    let claims = venue.claims();
    assert_eq!(exchange(&auth, &venue.sign(&claims)).await.status(), StatusCode::OK);
    assert_eq!(venue.jwks_fetches(), 1);
    // Right after a fetch, an unknown kid is no reason to fetch again; a little later it is.
    let token = sign(Algorithm::EdDSA, "nobody-published-this", "JWT", &claims, &stranger_key());
    expect_error(exchange(&auth, &token).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_eq!(venue.jwks_fetches(), 1);
    auth.advance(server::tokens::VENUE_JWKS_MIN_REFETCH);

    let message =
        expect_error(exchange(&auth, &token).await, StatusCode::UNAUTHORIZED, "invalid_token")
            .await;
    assert!(message.contains("no key with kid"), "{message}");
    // The unknown kid made the server look again (the venue may have rotated its key) …
    assert_eq!(venue.jwks_fetches(), 2);
    // … but a flood of unknown kids does not make it fetch on every request.
    for i in 0..5 {
        let token = sign(Algorithm::EdDSA, &format!("kid-{i}"), "JWT", &claims, &stranger_key());
        expect_error(exchange(&auth, &token).await, StatusCode::UNAUTHORIZED, "invalid_token")
            .await;
    }
    assert_eq!(venue.jwks_fetches(), 2);
}

#[tokio::test]
async fn forged_access_tokens_are_refused_by_the_guard() {
    let auth = Auth::start(Backend::embedded()).await;
    let login = auth.login(&["CanAccessDashboard", "CanViewReports"]).await;
    assert_eq!(auth.get("/api/dashboard", Some(&login.access)).await.status(), StatusCode::OK);

    let (kid, _) = auth.server_key().await;
    let claims: serde_json::Value = {
        let payload = login.access.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    };
    let mut forged = vec![
        ("alg none", unsigned(&kid, "at+jwt", &claims)),
        ("changed payload", {
            let mut other = claims.clone();
            other["permissions"] =
                serde_json::json!(["CanAccessDashboard", "CanViewReports", "Admin"]);
            other["userId"] = "mallory".into();
            with_payload(&login.access, &other)
        }),
        ("another key, our kid", sign(Algorithm::EdDSA, &kid, "at+jwt", &claims, &stranger_key())),
    ];
    let jwks: JwkSet = auth
        .http
        .get(auth.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for secret in public_key_secrets(&jwks) {
        let token =
            sign(Algorithm::HS256, &kid, "at+jwt", &claims, &EncodingKey::from_secret(&secret));
        forged.push(("HS256 with our public key", token));
    }
    for (what, token) in forged {
        let response = auth.get("/api/dashboard", Some(&token)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        expect_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }

    auth.advance(Duration::from_secs(15 * 60));
    expect_error(
        auth.get("/api/dashboard", Some(&login.access)).await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
    )
    .await;
}

#[tokio::test]
async fn an_eid_jwt_is_not_an_access_token() {
    let venue = Venue::start().await;
    let auth = vtx_server(&venue).await;
    let answer: serde_json::Value =
        exchange(&auth, &venue.standin.issue_token("alice").unwrap()).await.json().await.unwrap();
    let eid = answer["access_token"].as_str().unwrap();
    // Same key, same issuer: the `typ` and the claims keep the two apart.
    expect_error(
        auth.get("/api/dashboard", Some(eid)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
}
