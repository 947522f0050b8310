//! Seed 002: the one-time login link, permissions, the refresh of short-lived access tokens,
//! logout, a replayed refresh token revoking the session, and the end of the session's validity: once on the embedded store and
//! once with the sessions and the one-time tokens in a real `redis-server`.

use std::cell::RefCell;
use std::time::Duration;

use anyhow::{Context, ensure};
use server::redis_link::RedisTarget;
use server::tokens::{EnterpriseStoreConfig, SessionStoreConfig};

use crate::harness::{App, DEADLINE, Redis, Server, poll, serial};

/// Short lifetimes, so that the page refreshes every two seconds or so.
const ACCESS_TTL: Duration = Duration::from_secs(4);
const REFRESH_GRACE: Duration = Duration::from_secs(1);
/// Seconds a login session of the expiry step is valid (`validUntil`): many times what opening
/// the link and logging in take, since the server's clock, not waiting, ends it.
const SESSION_SECS: u64 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_login_on_the_embedded_store() -> anyhow::Result<()> {
    let _turn = serial().await;
    let scenario = "seed 002: login (embedded store)";
    let server = Server::start("seed-002-embedded", |config| {
        config.server.tokens.access_ttl = ACCESS_TTL;
        config.server.tokens.refresh_grace = REFRESH_GRACE;
    })
    .await?;
    let app = App::start(&server, scenario, "seed-002-login-embedded").await?;
    let result = steps(&server, &app, None).await;
    app.finish(result).await?;
    drop(app);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_login_on_redis() -> anyhow::Result<()> {
    let _turn = serial().await;
    let scenario = "seed 002: login (Redis store)";
    let redis = Redis::start().await?;
    let url = redis.url();
    let server = Server::start("seed-002-redis", |config| {
        config.server.tokens.access_ttl = ACCESS_TTL;
        config.server.tokens.refresh_grace = REFRESH_GRACE;
        let target = RedisTarget::Single(url);
        config.server.tokens.session_store = SessionStoreConfig::Redis { target: target.clone() };
        // The one-time tokens too, as the enterprise system would leave them.
        config.server.tokens.enterprise_store =
            EnterpriseStoreConfig::Redis { target, key_prefix: "e2e-ott:".to_owned() };
    })
    .await?;
    let app = App::start(&server, scenario, "seed-002-login-redis").await?;
    let result = steps(&server, &app, Some(&redis)).await;
    app.finish(result).await?;
    drop(app);
    server.stop().await?;
    drop(redis);
    Ok(())
}

async fn steps(server: &Server, app: &App, redis: Option<&Redis>) -> anyhow::Result<()> {
    app.step("alice opens a one-time login link");
    let link = server.login_link("alice", &["CanAccessDashboard"]).await?;
    if let Some(redis) = redis {
        let keys = redis.keys().await?;
        ensure!(keys == 1, "the one-time token is not (alone) in Redis: DBSIZE {keys}");
    }
    app.open(&link).await?;
    let state = app.wait_text("#login-state", "alice").await?;
    ensure!(state.contains("CanAccessDashboard"), "the login shows: {state}");
    let address = app.browser.current_url().await?;
    ensure!(!address.contains("token="), "the token stays in the address bar: {address}");
    let (first, http_only) = cookie(app).await?.context("no refresh cookie after the login")?;
    ensure!(http_only, "the refresh cookie is readable by page scripts");
    if let Some(redis) = redis {
        let keys = redis.keys().await?;
        ensure!(keys > 0, "the login session is not in Redis (DBSIZE {keys})");
    }
    app.shot("logged-in").await?;

    app.step("the dashboard answers 200, the reports 403");
    api(app, "#api-dashboard", "200 OK /api/dashboard").await?;
    api(app, "#api-reports", "403 Forbidden /api/reports").await?;
    app.shot("reports-forbidden").await?;

    app.step("the access token is refreshed and the user stays in");
    let rotated = rotations(app, &first, 2).await?;
    let state_now = app.read("#login-state").await?;
    ensure!(state_now.contains("alice"), "after the refreshes the login shows: {state_now}");
    ensure!(state_now != state, "the access token's expiry shown did not change: {state_now}");
    api(app, "#api-dashboard", "200 OK /api/dashboard").await?;

    app.step("logout clears the cookie and the tokens");
    app.click("#auth-logout").await?;
    app.wait_text("#api-result", "Logged out").await?;
    app.wait_text("#login-state", "Not logged in").await?;
    poll("the refresh cookie to be gone", DEADLINE, || async {
        Ok(match cookie(app).await? {
            None => Ok(()),
            Some((value, _)) => Err(format!("refreshToken={value}")),
        })
    })
    .await?;
    let (status, _) = server.replay_refresh(&rotated).await?;
    ensure!(status == 401, "the last refresh token still refreshes after logout: {status}");
    app.browser.refresh().await?;
    app.wait_text("#login-state", "Not logged in").await?;
    app.shot("logged-out").await?;

    app.step("a replayed refresh token revokes the session");
    let link = server.login_link("alice", &["CanAccessDashboard"]).await?;
    app.open(&link).await?;
    app.wait_text("#login-state", "alice").await?;
    let (old, _) = cookie(app).await?.context("no refresh cookie after the second login")?;
    // Two rotations: the first replacement of `old` is older than the grace window.
    rotations(app, &old, 2).await?;
    let (status, code) = server.replay_refresh(&old).await?;
    ensure!(
        status == 401 && code == "refresh_reused",
        "replaying the old refresh token answered {status} {code:?}"
    );
    // The replay revoked the whole session, so the tab's own (current) refresh token is refused
    // at its next refresh: it ends up on the login page, saying why.
    let reason = app.wait_text("#reason", "no longer valid").await?;
    let address = app.browser.current_url().await?;
    ensure!(
        address.contains("/login/?reason=invalid_token"),
        "after the revocation the tab is at {address} ({reason})"
    );
    let (status, code) = server.replay_refresh(&old).await?;
    ensure!(status == 401, "the replayed token refreshes again: {status} {code}");
    app.shot("session-revoked").await?;

    app.step("past the session's validity the app goes to /login");
    let link = server.login_link_valid_for("alice", &["CanAccessDashboard"], SESSION_SECS).await?;
    app.open(&link).await?;
    app.wait_text("#login-state", "alice").await?;
    // The server's token clock moves past the session's end (not so far that the venue's JWTs
    // expire too): the page's next refresh, due every two seconds or so, is refused.
    let ahead = i64::try_from(2 * SESSION_SECS)?;
    server.dev.clock().set_ahead(ahead);
    let reason = app.wait_text("#reason", "Your session has ended").await;
    server.dev.clock().set_ahead(0);
    let reason = reason?;
    let address = app.browser.current_url().await?;
    ensure!(
        address.contains("/login/?reason=session_expired"),
        "after the session's validity the tab is at {address} ({reason})"
    );
    app.shot("session-expired").await?;
    Ok(())
}

/// Clicks an API button and waits for `expected` in the result.
pub(crate) async fn api(app: &App, button: &str, expected: &str) -> anyhow::Result<()> {
    app.click(button).await?;
    app.wait_text("#api-result", expected).await.map(drop)
}

/// The refresh cookie (value, `HttpOnly`).
pub(crate) async fn cookie(app: &App) -> anyhow::Result<Option<(String, bool)>> {
    app.refresh_cookie().await
}

/// Waits until the refresh cookie has changed `times` times from `from`, while the page stays
/// logged in; the last value.
pub(crate) async fn rotations(app: &App, from: &str, times: usize) -> anyhow::Result<String> {
    let seen = RefCell::new(vec![from.to_owned()]);
    let what = format!("{times} refreshes of the access token (a new refresh cookie each)");
    poll(&what, DEADLINE, || async {
        // A cookie that vanished is a lost login, not one more rotation.
        let Some((current, _)) = cookie(app).await? else {
            anyhow::bail!("the refresh cookie vanished after {:?}", seen.borrow());
        };
        let mut seen = seen.borrow_mut();
        if seen.last() != Some(&current) {
            seen.push(current);
        }
        Ok(match seen.len() > times {
            true => Ok(seen.last().cloned().unwrap_or_default()),
            false => Err(format!("{} cookie values so far: {seen:?}", seen.len())),
        })
    })
    .await
}
