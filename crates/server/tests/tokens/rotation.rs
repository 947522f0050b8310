//! Signing-key rotation (issue 13): `server keys rotate` adds a key to the ring while everyone
//! stays logged in; the replaced key verifies its tokens until they expire, then retires. On the
//! embedded store (the ring in the data directory) and on Redis (the ring shared there), under
//! the injected clock.

use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use reqwest::StatusCode;
use server::tokens::{KEY_RELOAD_EVERY, RETIRE_LEEWAY, rotate_signing_key};

use super::every_store;
use super::harness::{Auth, Backend, expect_error, refresh_cookie};

/// The default access-token (and EID) lifetime the test server runs with.
const TOKEN_TTL: Duration = Duration::from_secs(900);

/// A server whose signing keys live where the backend keeps shared state: the data directory,
/// or the Redis (`--redis-url`, `--redis-cluster-url`).
async fn start(backend: Backend) -> Auth {
    let redis = backend.redis_target();
    Auth::start_with(backend, |config| config.redis = redis).await
}

/// The `kid`s of the JWKS, in its order.
async fn jwks_kids(auth: &Auth) -> Vec<String> {
    let response = auth.http.get(auth.url("/.well-known/jwks.json")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let jwks: JwkSet = response.json().await.unwrap();
    jwks.keys.iter().map(|k| k.common.key_id.clone().unwrap()).collect()
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// Refreshes with `cookie`: the new access token, and the new cookie.
async fn refresh(auth: &Auth, cookie: &str) -> (String, String) {
    let response = auth.refresh(cookie).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = refresh_cookie(&response).unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    (body["accessToken"].as_str().unwrap().to_owned(), cookie)
}

async fn reports(auth: &Auth, access: &str) -> reqwest::Response {
    auth.get("/api/reports", Some(access)).await
}

/// The first key is the single key a server made before rings existed (the upgrade path): a
/// rotation keeps it as the retiring key, so the login made before the rotation goes on.
async fn a_rotated_key_logs_no_one_out_and_retires_after_its_last_token(backend: Backend) {
    let auth = start(backend).await;
    let login = auth.login(&["CanViewReports"]).await;
    let first = kid(&login.access);
    assert_eq!(jwks_kids(&auth).await, [first.as_str()]);

    let rotated = rotate_signing_key(auth.server.config()).await.unwrap();
    auth.tokens().reload_keys().await;
    assert_ne!(rotated.kid, first);
    let retires = TOKEN_TTL + KEY_RELOAD_EVERY + RETIRE_LEEWAY;
    assert_eq!(rotated.retiring, [(first.clone(), auth.clock.now().plus_millis(ms(retires)))]);
    assert_eq!(jwks_kids(&auth).await, [rotated.kid.clone(), first.clone()], "both keys published");

    // The token of the old key still works, until its own expiry; refresh works throughout and
    // hands out tokens of the new key.
    assert_eq!(reports(&auth, &login.access).await.status(), StatusCode::OK);
    auth.advance(Duration::from_secs(600));
    let (second, cookie) = refresh(&auth, &login.refresh).await;
    assert_eq!(kid(&second), rotated.kid, "a new token carries the new kid");
    assert_eq!(reports(&auth, &login.access).await.status(), StatusCode::OK);
    assert_eq!(reports(&auth, &second).await.status(), StatusCode::OK);
    auth.advance(TOKEN_TTL - Duration::from_secs(600));
    expect_error(reports(&auth, &login.access).await, StatusCode::UNAUTHORIZED, "token_expired")
        .await;
    let (third, cookie) = refresh(&auth, &cookie).await;
    assert_eq!(kid(&third), rotated.kid);

    // Until it retires, the old key stays published (verifiers may hold its tokens); then it
    // leaves the JWKS and verifies nothing more.
    auth.advance(retires - TOKEN_TTL - Duration::from_millis(1));
    assert_eq!(jwks_kids(&auth).await, [rotated.kid.clone(), first.clone()]);
    auth.advance(Duration::from_millis(1));
    assert_eq!(jwks_kids(&auth).await, [rotated.kid.as_str()], "the retired key left the JWKS");
    let message = expect_error(
        reports(&auth, &login.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert!(message.contains("retired"), "{message}");
    assert_eq!(reports(&auth, &third).await.status(), StatusCode::OK);
    let (fourth, _) = refresh(&auth, &cookie).await;
    assert_eq!(kid(&fourth), rotated.kid);

    // The next rotation drops the retired key from the stored ring for good.
    let again = rotate_signing_key(auth.server.config()).await.unwrap();
    auth.tokens().reload_keys().await;
    assert_eq!(again.retiring.iter().map(|(kid, _)| kid).collect::<Vec<_>>(), [&rotated.kid]);
    assert_eq!(jwks_kids(&auth).await, [again.kid.clone(), rotated.kid.clone()]);
    assert_eq!(reports(&auth, &fourth).await.status(), StatusCode::OK);
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap()
}

every_store!(a_rotated_key_logs_no_one_out_and_retires_after_its_last_token);

/// Two instances on one Redis: one rotates and signs with the new key at once; the other,
/// which has not re-read the ring yet, takes the new `kid` as a reason to read it, so the token
/// works on every instance without waiting for the periodic reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_meets_an_unknown_kid_rereads_the_shared_ring() {
    let redis = super::harness::RedisServer::start().await;
    let target = redis.target();
    let first = start(Backend::Redis(redis)).await;
    // The same settings (the same Redis, the same clock), its own data directory.
    let other = Auth::start_with(Backend::embedded(), |config| {
        let own = config.data_dir.clone();
        *config = first.server.config().clone();
        config.data_dir = own;
        assert_eq!(config.redis, Some(target));
    })
    .await;
    let login = first.login(&["CanViewReports"]).await;
    assert_eq!(reports(&other, &login.access).await.status(), StatusCode::OK);

    let rotated = rotate_signing_key(first.server.config()).await.unwrap();
    first.tokens().reload_keys().await;
    let (fresh, _) = refresh(&first, &login.refresh).await;
    assert_eq!(kid(&fresh), rotated.kid);
    assert_eq!(other.tokens().signing_key().kid(), kid(&login.access), "not re-read yet");
    assert_eq!(reports(&other, &fresh).await.status(), StatusCode::OK);
    assert_eq!(other.tokens().signing_key().kid(), rotated.kid, "re-read on the unknown kid");
    assert_eq!(reports(&other, &login.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_fixed_key_file_is_not_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = server::Config::new(dir.path());
    config.tokens.signing_key_file = Some(dir.path().join("fixed.pem"));
    let err = rotate_signing_key(&config).await.unwrap_err().to_string();
    assert!(err.contains("--eid-key-file"), "{err}");
    assert!(!dir.path().join(server::tokens::RING_FILE).exists());
}
