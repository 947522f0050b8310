//! Regression tests of the token endpoints' audited weaknesses: one-time tokens that name
//! other keys of the enterprise Redis, two refresh cookies, and a refresh-token history that
//! grew with every rotation.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::COOKIE;
use server::tokens::store::{REFRESH_HISTORY, SessionData, TokenHash};

use super::every_store;
use super::harness::{
    Auth, Backend, ENTERPRISE_PREFIX, SPONSOR, SUBSCRIBER, expect_error, redis_session_key,
    refresh_cookie,
};

const DASHBOARD: &str = "CanAccessDashboard";

every_store!(
    one_time_tokens_of_another_shape_are_refused_before_any_store_is_asked,
    two_refresh_cookies_are_ambiguous_and_nothing_is_rotated,
    a_session_keeps_only_its_last_refresh_token_hashes_and_still_detects_recent_reuse,
    a_refresh_token_without_a_session_tag_refreshes_on_the_embedded_store_only,
);

async fn one_time_tokens_of_another_shape_are_refused_before_any_store_is_asked(backend: Backend) {
    let auth = Auth::start(backend).await;
    for token in [
        "short".to_owned(),
        "session:42:0123456789abcdef".to_owned(),
        "has spaces 0123456789abcdef".to_owned(),
        "dots.and/slashes+0123456789".to_owned(),
        "x".repeat(513),
    ] {
        expect_error(auth.authenticate(&token).await, StatusCode::UNAUTHORIZED, "invalid_token")
            .await;
    }
    expect_error(auth.authenticate("").await, StatusCode::BAD_REQUEST, "invalid_request").await;
}

/// The enterprise Redis holds more than one-time tokens. Before, `authenticate` ran `GETDEL`
/// on whatever key the caller named (answering 503 and logging an ERROR): any string key under
/// the prefix could be deleted by anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_cannot_delete_keys_of_the_enterprise_redis_that_are_no_one_time_tokens() {
    let auth = Auth::start(Backend::redis().await).await;
    let Backend::Redis(redis) = &auth.backend else { unreachable!() };
    let mut conn = redis.connection().await;
    let key = |name: &str| format!("{ENTERPRISE_PREFIX}{name}");
    let strings = [
        ("someonesPlainValue01", "precious"),
        ("someonesJsonValue001", r#"{"userId": "u", "other": true}"#),
        ("someonesJsonArray001", r#"["userId", "sponsorId"]"#),
        (
            "claimsWithBadFields1",
            r#"{"userId": "u", "sponsorId": "s", "subscriberId": "b", "permissions": [1],
               "validUntil": "2099-01-01T00:00:00.000Z"}"#,
        ),
        ("someonesNumber000001", "42"),
    ];
    for (name, value) in strings {
        redis::cmd("SET").arg(key(name)).arg(value).query_async::<()>(&mut conn).await.unwrap();
    }
    redis::cmd("HSET")
        .arg(key("someonesHashKey00001"))
        .arg("field")
        .arg("value")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::cmd("RPUSH")
        .arg(key("someonesListKey00001"))
        .arg("item")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    let names = strings.iter().map(|(name, _)| *name);
    for name in names.chain(["someonesHashKey00001", "someonesListKey00001"]) {
        expect_error(auth.authenticate(name).await, StatusCode::UNAUTHORIZED, "invalid_token")
            .await;
    }
    for (name, value) in strings {
        let kept: Option<String> =
            redis::cmd("GET").arg(key(name)).query_async(&mut conn).await.unwrap();
        assert_eq!(kept.as_deref(), Some(value), "{name} was deleted");
    }
    for name in ["someonesHashKey00001", "someonesListKey00001"] {
        let exists: i64 = redis::cmd("EXISTS").arg(key(name)).query_async(&mut conn).await.unwrap();
        assert_eq!(exists, 1, "{name} was deleted");
    }
    // A real one-time token is still taken, once.
    let token = auth.one_time_token(&[DASHBOARD], Duration::from_secs(3600)).await;
    assert_eq!(auth.authenticate(&token).await.status(), StatusCode::OK);
    expect_error(auth.authenticate(&token).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

/// A sibling subdomain can plant a `refreshToken` cookie for the parent domain; the browser
/// sends both. Before, the first one won: the planted token chose the session, or an empty one
/// logged the user out.
async fn two_refresh_cookies_are_ambiguous_and_nothing_is_rotated(backend: Backend) {
    let auth = Auth::start(backend).await;
    let victim = auth.login(&[DASHBOARD]).await;
    let planted = "theAttackersOwnRefreshToken";
    let cookies = [
        vec![format!("refreshToken={planted}; refreshToken={}", victim.refresh)],
        vec![format!("refreshToken=; refreshToken={}", victim.refresh)],
        vec![format!("refreshToken={}", victim.refresh), format!("refreshToken={planted}")],
        vec![format!("refreshToken={}; refreshToken={}", victim.refresh, victim.refresh)],
    ];
    for headers in cookies {
        let mut request = auth
            .http
            .post(auth.url("/api/auth/refresh"))
            .header("origin", auth.origin())
            .header("sec-fetch-site", "same-origin");
        for header in &headers {
            request = request.header(COOKIE, header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(refresh_cookie(&response), None, "{headers:?}");
        expect_error(response, StatusCode::UNAUTHORIZED, "ambiguous_cookie").await;
    }
    // Nothing was rotated: the victim's token is still the current one, past any grace window.
    auth.advance(Duration::from_secs(60));
    let response = auth.refresh(&victim.refresh).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(refresh_cookie(&response).is_some(), "the victim's token rotates normally");
}

/// Before, every rotation appended to the session's list of hashes and the index, for the
/// whole life of the session: each rotation rewrote a longer list.
async fn a_session_keeps_only_its_last_refresh_token_hashes_and_still_detects_recent_reuse(
    backend: Backend,
) {
    let auth = Auth::start(backend).await;
    let login = auth.login(&[DASHBOARD]).await;
    let mut tokens = vec![login.refresh];
    for _ in 0..(REFRESH_HISTORY * 2 + 3) {
        let response = auth.refresh(tokens.last().unwrap()).await;
        assert_eq!(response.status(), StatusCode::OK);
        tokens.push(refresh_cookie(&response).unwrap());
    }
    assert_eq!(stored_history(&auth).await, REFRESH_HISTORY);

    // A token from before the history is unknown; it does not revoke the session …
    auth.advance(Duration::from_secs(60));
    expect_error(auth.refresh(&tokens[0]).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // … but a recently replaced one still is reuse, and does.
    let recent = &tokens[tokens.len() - 3];
    expect_error(auth.refresh(recent).await, StatusCode::UNAUTHORIZED, "refresh_reused").await;
    let current = tokens.last().unwrap();
    expect_error(auth.refresh(current).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_eq!(stored_history(&auth).await, 0, "the revoked session left nothing behind");
}

/// The refresh-token hashes the store keeps for the session: its history (the embedded store
/// has one index entry per hash of it, Redis keeps them in the session's hash alone).
async fn stored_history(auth: &Auth) -> usize {
    match &auth.backend {
        Backend::Embedded => {
            let session_key = format!("RT:{SPONSOR}:{SUBSCRIBER}");
            let conn = rusqlite::Connection::open(auth.server.state.config.db_path()).unwrap();
            let hashes: Option<usize> = conn
                .query_row(
                    "SELECT length(hashes) FROM token_session WHERE key = ?1",
                    [&session_key],
                    |r| r.get(0),
                )
                .ok();
            let index: usize =
                conn.query_row("SELECT count(*) FROM token_refresh", [], |r| r.get(0)).unwrap();
            let hashes = hashes.unwrap_or(0) / 32;
            assert_eq!(index, hashes, "one index entry per hash of the history");
            hashes
        }
        Backend::Redis(_) | Backend::Cluster(_) => {
            let mut conn = auth.backend.redis_conn().await.unwrap();
            let hashes: Option<String> = redis::cmd("HGET")
                .arg(redis_session_key())
                .arg("hashes")
                .query_async(&mut conn)
                .await
                .unwrap();
            hashes.unwrap_or_default().split_whitespace().count()
        }
    }
}

/// Refresh tokens made before they carried their session's tag (`<tag>.<random>`) name no
/// Redis key: on Redis they are unknown; the embedded store finds them by hash as before, so
/// an upgrade logs no one out there, and the session goes on with untagged tokens.
async fn a_refresh_token_without_a_session_tag_refreshes_on_the_embedded_store_only(
    backend: Backend,
) {
    let auth = Auth::start(backend).await;
    let now = auth.clock.now();
    let session = SessionData {
        user_id: "u".to_owned(),
        sponsor_id: SPONSOR.to_owned(),
        subscriber_id: SUBSCRIBER.to_owned(),
        permissions: vec![DASHBOARD.to_owned()],
        valid_until: now.plus_millis(3_600_000),
    };
    let legacy = "x".repeat(86);
    auth.tokens().sessions().create(&session, TokenHash::of(&legacy), now).await.unwrap();
    let response = auth.refresh(&legacy).await;
    match &auth.backend {
        Backend::Embedded => {
            assert_eq!(response.status(), StatusCode::OK);
            let next = refresh_cookie(&response).unwrap();
            assert!(!next.contains('.'), "{next}: the session's tokens stay untagged");
            assert_eq!(auth.refresh(&next).await.status(), StatusCode::OK);
        }
        Backend::Redis(_) | Backend::Cluster(_) => {
            expect_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
        }
    }
}
