//! The one-time-token login, refresh rotation with reuse detection, expiry and logout, each on
//! the embedded store and on Redis.

use std::time::Duration;

use protocol::tokens::{AccessClaims, LoginResponse, RefreshResponse};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, COOKIE};
use server::tokens::{MintTokenArgs, mint_token};

use super::every_store;
use super::harness::{
    Auth, Backend, SPONSOR, SUBSCRIBER, USER, decode, expect_error, marker_cookie, refresh_cookie,
    set_cookie,
};

const DASHBOARD: &str = "CanAccessDashboard";
const GRACE: Duration = Duration::from_secs(10);

every_store!(
    login_answers_like_the_seed_and_sets_an_http_only_cookie,
    a_one_time_token_works_once,
    a_hundred_concurrent_logins_with_one_token_give_exactly_one_session,
    expired_and_unknown_one_time_tokens_are_refused,
    refresh_rotates_the_refresh_token,
    two_tabs_refreshing_at_once_both_succeed_and_one_cookie_is_set,
    reuse_inside_the_grace_window_answers_without_rotating,
    reuse_after_the_grace_window_revokes_the_session,
    a_token_from_two_rotations_ago_revokes_the_session,
    the_session_expires_at_valid_until,
    access_tokens_never_outlive_the_session,
    logout_deletes_the_session_and_clears_the_cookie,
    the_readable_session_marker_lives_and_dies_with_the_refresh_cookie,
    logout_with_the_bearer_alone_deletes_the_session,
    cross_site_refresh_and_logout_are_refused,
    a_refresh_without_the_cookie_is_session_expired,
    a_new_login_for_the_same_sponsor_and_subscriber_replaces_the_session,
    the_compatibility_setting_puts_the_refresh_token_in_the_body,
    mint_token_writes_a_working_login_link,
);

async fn login_answers_like_the_seed_and_sets_an_http_only_cookie(backend: Backend) {
    let auth = Auth::start(backend).await;
    let token = auth.one_time_token(&[DASHBOARD], Duration::from_secs(4 * 3600)).await;
    let response = auth.authenticate(&token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let cookie = set_cookie(&response).unwrap();
    let refresh = refresh_cookie(&response).unwrap();
    // The session's tag (32 hex digits), a dot, 64 random bytes in base64url.
    let (tag, secret) = refresh.split_once('.').unwrap();
    let expected = server::tokens::store::SessionTag::of(SPONSOR, SUBSCRIBER).to_hex();
    assert_eq!(tag, expected, "{refresh}");
    assert_eq!(secret.len(), 86, "64 random bytes in base64url");
    assert_eq!(
        cookie,
        format!(
            "refreshToken={refresh}; HttpOnly; Secure; SameSite=Strict; Path=/api/auth; Max-Age=14400"
        )
    );
    let raw: serde_json::Value = response.json().await.unwrap();
    assert!(raw.get("refreshToken").is_none(), "the refresh token stays out of the body: {raw}");
    let body: LoginResponse = serde_json::from_value(raw).unwrap();
    assert_eq!(body.expires_in, 900);
    assert_eq!(body.permissions, [DASHBOARD]);
    assert_eq!(body.sponsor_id, SPONSOR);
    assert_eq!(body.subscriber_id, SUBSCRIBER);
    assert_eq!(body.session_expires_at, auth.clock.now().plus_millis(4 * 3600 * 1000));

    let (_, key) = auth.server_key().await;
    let access = decode::<AccessClaims>(&body.access_token, &key);
    assert_eq!(access.header.typ.as_deref(), Some("at+jwt"));
    let claims = access.claims;
    assert_eq!((claims.user_id.as_str(), claims.sponsor_id.as_str()), (USER, SPONSOR));
    assert_eq!(claims.subscriber_id, SUBSCRIBER);
    assert_eq!(claims.permissions, [DASHBOARD]);
    assert_eq!(claims.exp - claims.iat, 900);
}

async fn a_one_time_token_works_once(backend: Backend) {
    let auth = Auth::start(backend).await;
    let token = auth.one_time_token(&[DASHBOARD], Duration::from_secs(3600)).await;
    assert_eq!(auth.authenticate(&token).await.status(), StatusCode::OK);
    expect_error(auth.authenticate(&token).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

async fn a_hundred_concurrent_logins_with_one_token_give_exactly_one_session(backend: Backend) {
    let auth = Auth::start(backend).await;
    let token = auth.one_time_token(&[DASHBOARD], Duration::from_secs(3600)).await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (http, url, token) =
            (auth.http.clone(), auth.url("/api/auth/authenticate"), token.clone());
        calls.spawn(async move {
            let body = serde_json::json!({ "token": token });
            http.post(url).json(&body).send().await.unwrap().status()
        });
    }
    let statuses = calls.join_all().await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    assert_eq!((ok, refused), (1, 99));
}

async fn expired_and_unknown_one_time_tokens_are_refused(backend: Backend) {
    let auth = Auth::start(backend).await;
    let token = auth.one_time_token(&[DASHBOARD], Duration::from_secs(60)).await;
    auth.advance(Duration::from_secs(61));
    expect_error(auth.authenticate(&token).await, StatusCode::UNAUTHORIZED, "token_expired").await;
    expect_error(
        auth.authenticate("never-issued").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    expect_error(auth.authenticate("").await, StatusCode::BAD_REQUEST, "invalid_request").await;
    let bad_json = auth
        .http
        .post(auth.url("/api/auth/authenticate"))
        .header("content-type", "application/json")
        .body("{\"tok")
        .send()
        .await
        .unwrap();
    expect_error(bad_json, StatusCode::BAD_REQUEST, "invalid_json").await;
}

async fn refresh_rotates_the_refresh_token(backend: Backend) {
    let auth = Auth::start(backend).await;
    let login = auth.login(&[DASHBOARD]).await;
    auth.advance(Duration::from_secs(14 * 60));

    let response = auth.refresh(&login.refresh).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let second = refresh_cookie(&response).unwrap();
    assert_ne!(second, login.refresh);
    let body: RefreshResponse = response.json().await.unwrap();
    assert_ne!(body.access_token, login.access);
    assert!(body.refresh_token.is_none());
    assert_eq!(body.expires_in, 900);
    assert_eq!(body.permissions, [DASHBOARD]);
    assert_eq!(auth.get("/api/dashboard", Some(&body.access_token)).await.status(), StatusCode::OK);

    auth.advance(Duration::from_secs(14 * 60));
    let response = auth.refresh(&second).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_ne!(refresh_cookie(&response).unwrap(), second);
}

async fn two_tabs_refreshing_at_once_both_succeed_and_one_cookie_is_set(backend: Backend) {
    let auth = Auth::start(backend).await;
    let login = auth.login(&[DASHBOARD]).await;
    let (a, b) = tokio::join!(auth.refresh(&login.refresh), auth.refresh(&login.refresh));
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    let cookies: Vec<String> = [&a, &b].iter().filter_map(|r| refresh_cookie(r)).collect();
    assert_eq!(cookies.len(), 1, "only the request that rotated sets the cookie");
    // The cookie that was set is the session's current token.
    auth.advance(GRACE * 2);
    assert_eq!(auth.refresh(&cookies[0]).await.status(), StatusCode::OK);
}

async fn reuse_inside_the_grace_window_answers_without_rotating(backend: Backend) {
    let auth = Auth::start(backend).await;
    let login = auth.login(&[DASHBOARD]).await;
    let second = refresh_cookie(&auth.refresh(&login.refresh).await).unwrap();

    auth.advance(GRACE);
    let late = auth.refresh(&login.refresh).await;
    assert_eq!(late.status(), StatusCode::OK);
    assert_eq!(set_cookie(&late), None, "the cookie the first refresh set stays");
    let body: RefreshResponse = late.json().await.unwrap();
    assert_eq!(auth.get("/api/dashboard", Some(&body.access_token)).await.status(), StatusCode::OK);

    // The session is intact: the current token still rotates.
    let response = auth.refresh(&second).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(refresh_cookie(&response).is_some());
}

async fn reuse_after_the_grace_window_revokes_the_session(backend: Backend) {
    let auth = Auth::start(backend).await;
    let login = auth.login(&[DASHBOARD]).await;
    let second = refresh_cookie(&auth.refresh(&login.refresh).await).unwrap();

    auth.advance(GRACE + Duration::from_millis(1));
    expect_error(auth.refresh(&login.refresh).await, StatusCode::UNAUTHORIZED, "refresh_reused")
        .await;
    // Whoever holds the current token is out too: the session is gone.
    expect_error(auth.refresh(&second).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

async fn a_token_from_two_rotations_ago_revokes_the_session(backend: Backend) {
    let auth = Auth::start(backend).await;
    let login = auth.login(&[DASHBOARD]).await;
    let second = refresh_cookie(&auth.refresh(&login.refresh).await).unwrap();
    let third = refresh_cookie(&auth.refresh(&second).await).unwrap();
    // Still inside the grace window of the last rotation, but the first token is older than
    // the previous one: no grace for it.
    expect_error(auth.refresh(&login.refresh).await, StatusCode::UNAUTHORIZED, "refresh_reused")
        .await;
    expect_error(auth.refresh(&third).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

async fn the_session_expires_at_valid_until(backend: Backend) {
    let auth = Auth::start(backend).await;
    let login = auth.login_for(&[DASHBOARD], Duration::from_secs(3600)).await;
    auth.advance(Duration::from_secs(59 * 60));
    let response = auth.refresh(&login.refresh).await;
    assert_eq!(response.status(), StatusCode::OK);
    let current = refresh_cookie(&response).unwrap();

    auth.advance(Duration::from_secs(60));
    let message =
        expect_error(auth.refresh(&current).await, StatusCode::UNAUTHORIZED, "session_expired")
            .await;
    assert_eq!(message, "Session has expired");
    // Asked again (the session record is gone now), the answer is the same.
    let message =
        expect_error(auth.refresh(&current).await, StatusCode::UNAUTHORIZED, "session_expired")
            .await;
    assert_eq!(message, "Session has expired");
}

async fn access_tokens_never_outlive_the_session(backend: Backend) {
    let auth = Auth::start(backend).await;
    let login = auth.login_for(&[DASHBOARD], Duration::from_secs(3600)).await;
    auth.advance(Duration::from_secs(55 * 60));
    let body: RefreshResponse = auth.refresh(&login.refresh).await.json().await.unwrap();
    assert_eq!(body.expires_in, 5 * 60);
}

async fn logout_deletes_the_session_and_clears_the_cookie(backend: Backend) {
    let auth = Auth::start(backend).await;
    let login = auth.login(&[DASHBOARD]).await;
    let second = refresh_cookie(&auth.refresh(&login.refresh).await).unwrap();

    let response = auth.logout(Some(&second), Some(&login.access)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = set_cookie(&response).unwrap();
    assert!(cookie.starts_with("refreshToken=;"), "{cookie}");
    assert!(cookie.contains("Max-Age=0") && cookie.contains("Path=/api/auth"), "{cookie}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"message": "Logged out successfully"}));

    expect_error(auth.refresh(&second).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // The earlier token is gone with the session too: no "reuse", just unknown.
    expect_error(auth.refresh(&login.refresh).await, StatusCode::UNAUTHORIZED, "invalid_token")
        .await;
    // Logging out again is harmless.
    assert_eq!(auth.logout(Some(&second), None).await.status(), StatusCode::OK);
}

/// The page learns that there is no session from a cookie it can read, without a refresh
/// request that fails: the marker is set with every refresh cookie and cleared with it.
async fn the_readable_session_marker_lives_and_dies_with_the_refresh_cookie(backend: Backend) {
    let auth = Auth::start(backend).await;
    let token = auth.one_time_token(&[DASHBOARD], Duration::from_secs(4 * 3600)).await;
    let response = auth.authenticate(&token).await;
    let marker = "websessionLoggedIn=1; Secure; SameSite=Strict; Path=/; Max-Age=14400";
    assert_eq!(marker_cookie(&response).as_deref(), Some(marker));
    let first = refresh_cookie(&response).unwrap();
    let rotated = auth.refresh(&first).await;
    assert_eq!(marker_cookie(&rotated).as_deref(), Some(marker), "renewed with the rotation");
    let second = refresh_cookie(&rotated).unwrap();

    let cleared = |response: &reqwest::Response| {
        let (cookie, marker) = (set_cookie(response), marker_cookie(response));
        cookie.is_some_and(|c| c.starts_with("refreshToken=;") && c.contains("Max-Age=0"))
            && marker
                .is_some_and(|m| m.starts_with("websessionLoggedIn=;") && m.contains("Max-Age=0"))
    };
    // A refresh the server refuses for good (here: a reused token) ends both.
    auth.advance(GRACE + Duration::from_millis(1));
    let refused = auth.refresh(&first).await;
    assert!(cleared(&refused), "{:?}", refused.headers());
    expect_error(refused, StatusCode::UNAUTHORIZED, "refresh_reused").await;
    let gone = auth.refresh(&second).await;
    assert!(cleared(&gone), "{:?}", gone.headers());

    // And so does a logout.
    let login = auth.login(&[DASHBOARD]).await;
    let response = auth.logout(Some(&login.refresh), Some(&login.access)).await;
    assert!(cleared(&response), "{:?}", response.headers());
}

async fn logout_with_the_bearer_alone_deletes_the_session(backend: Backend) {
    let auth = Auth::start(backend).await;
    let login = auth.login(&[DASHBOARD]).await;
    assert_eq!(auth.logout(None, Some(&login.access)).await.status(), StatusCode::OK);
    expect_error(auth.refresh(&login.refresh).await, StatusCode::UNAUTHORIZED, "invalid_token")
        .await;
}

async fn cross_site_refresh_and_logout_are_refused(backend: Backend) {
    let auth = Auth::start(backend).await;
    let login = auth.login(&[DASHBOARD]).await;
    for path in ["/api/auth/refresh", "/api/auth/logout"] {
        let evil = auth
            .http
            .post(auth.url(path))
            .header(COOKIE, format!("refreshToken={}", login.refresh))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        expect_error(evil, StatusCode::FORBIDDEN, "cross_site_request").await;
        let cross = auth
            .http
            .post(auth.url(path))
            .header(COOKIE, format!("refreshToken={}", login.refresh))
            .header("sec-fetch-site", "cross-site")
            .send()
            .await
            .unwrap();
        expect_error(cross, StatusCode::FORBIDDEN, "cross_site_request").await;
    }
    // Nothing happened to the session.
    assert_eq!(auth.refresh(&login.refresh).await.status(), StatusCode::OK);
}

async fn a_refresh_without_the_cookie_is_session_expired(backend: Backend) {
    let auth = Auth::start(backend).await;
    let response = auth.http.post(auth.url("/api/auth/refresh")).send().await.unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "session_expired").await;
    expect_error(auth.refresh("made-up").await, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

async fn a_new_login_for_the_same_sponsor_and_subscriber_replaces_the_session(backend: Backend) {
    let auth = Auth::start(backend).await;
    let first = auth.login(&[DASHBOARD]).await;
    let second = auth.login(&[DASHBOARD, "CanViewReports"]).await;
    expect_error(auth.refresh(&first.refresh).await, StatusCode::UNAUTHORIZED, "invalid_token")
        .await;
    let body: RefreshResponse = auth.refresh(&second.refresh).await.json().await.unwrap();
    assert_eq!(body.permissions, [DASHBOARD, "CanViewReports"]);
}

async fn the_compatibility_setting_puts_the_refresh_token_in_the_body(backend: Backend) {
    let auth = Auth::start_with(backend, |config| config.tokens.refresh_token_in_body = true).await;
    let login = auth.login(&[DASHBOARD]).await;
    assert_eq!(login.body["refreshToken"].as_str(), Some(login.refresh.as_str()));
    let response = auth.refresh(&login.refresh).await;
    let cookie = refresh_cookie(&response).unwrap();
    let body: RefreshResponse = response.json().await.unwrap();
    assert_eq!(body.refresh_token, Some(cookie));
}

async fn mint_token_writes_a_working_login_link(backend: Backend) {
    let auth = Auth::start(backend).await;
    // The server's own configuration: its data directory, or its enterprise Redis and prefix.
    let config = auth.server.state.config.clone();
    let args = MintTokenArgs {
        user: "newcomer".to_owned(),
        sponsor: "s1".to_owned(),
        subscriber: "b1".to_owned(),
        permissions: vec![DASHBOARD.to_owned()],
        valid_for: Duration::from_secs(4 * 3600),
        base_url: auth.origin().to_owned(),
    };
    let minted = mint_token(&config, &args).await.unwrap();
    assert_eq!(minted.login_url, format!("{}/auth?token={}", auth.origin(), minted.token));
    let response = auth.authenticate(&minted.token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: LoginResponse = response.json().await.unwrap();
    assert_eq!((body.sponsor_id.as_str(), body.subscriber_id.as_str()), ("s1", "b1"));
}

mod redis_layout {
    use redis::AsyncCommands as _;
    use sha2::Digest as _;

    use super::*;
    use crate::tokens::harness::redis_session_key;

    /// One key per login session, named by the tag its refresh tokens start with; hashes of
    /// the tokens in it, never the tokens; a TTL to `validUntil` plus the expiry notice.
    #[tokio::test]
    async fn redis_keeps_hashes_not_tokens_in_one_key_per_session() {
        let auth = Auth::start(Backend::redis().await).await;
        let Backend::Redis(redis) = &auth.backend else { unreachable!() };
        let login = auth.login_for(&[DASHBOARD], Duration::from_secs(3600)).await;
        let second = refresh_cookie(&auth.refresh(&login.refresh).await).unwrap();
        let session_key = redis_session_key();
        let tag = &session_key["websession:{s:".len()..session_key.len() - 1];
        for token in [&login.refresh, &second] {
            assert!(token.starts_with(&format!("{tag}.")), "{token} names its session");
        }

        assert_eq!(auth.logout(None, None).await.status(), StatusCode::OK);

        let mut conn = redis.connection().await;
        // The server looked sessions up by key: no `KEYS` or `SCAN` ever reached Redis.
        let stats: String =
            redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.unwrap();
        assert!(stats.contains("cmdstat_evalsha") || stats.contains("cmdstat_eval"), "{stats}");
        assert!(!stats.contains("cmdstat_keys") && !stats.contains("cmdstat_scan"), "{stats}");
        // A test may list keys; the server never does.
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
        assert_eq!(keys, std::slice::from_ref(&session_key), "one key per session");
        let hashes: String = conn.hget(&session_key, "hashes").await.unwrap();
        for token in [&login.refresh, &second] {
            assert!(hashes.contains(&hex(&sha2::Sha256::digest(token.as_bytes()))), "{hashes}");
            let dump: Vec<u8> =
                redis::cmd("DUMP").arg(&session_key).query_async(&mut conn).await.unwrap();
            assert!(!String::from_utf8_lossy(&dump).contains(token.as_str()), "holds a token");
        }
        let ttl: i64 = conn.pttl(&session_key).await.unwrap();
        let notice = 24 * 3_600_000;
        assert!((notice + 3_590_000..=notice + 3_600_000).contains(&ttl), "{ttl}");
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
