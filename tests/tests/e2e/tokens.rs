//! Seed 000: the demo page gets its tokens from `/uc/session/vtx`, answered by `/sw.js` through
//! the venue stand-in and the VTX exchange, and shows each failure of the chain in words; warm
//! `sessionTokens()` calls come from the page's copy of the worker's answer, which a change of
//! the venue user (seen by the worker in any tab) or a logout takes away.

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};

use crate::harness::{App, DEADLINE, Server, poll, serial};

const SCENARIO: &str = "seed 000: tokens through the service worker";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_tokens_through_the_service_worker() -> anyhow::Result<()> {
    let _turn = serial().await;
    let server = Server::start("seed-000", |_| {}).await?;
    let app = App::start(&server, SCENARIO, "seed-000-tokens").await?;
    let result = steps(&server, &app).await;
    app.finish(result).await?;
    drop(app);
    server.stop().await
}

async fn steps(server: &Server, app: &App) -> anyhow::Result<()> {
    app.step("the demo page is controlled by /sw.js");
    app.open("/").await?;
    app.wait_exact("#sw-controller", "yes").await?;

    app.step("alice signs in at the venue and gets an EID JWT");
    sign_in(app, "alice").await?;
    let shown = fetch_tokens(app).await?;
    ensure!(
        shown.contains("200: tokens acquired")
            && shown.contains(r#""sub": "alice""#)
            && shown.contains(r#""ecoid": "eco-alice-0001""#)
            && shown.contains(r#""aud": "urn:ecs""#),
        "the page shows no EID claims of alice: {shown}"
    );
    app.shot("alice-eid-claims").await?;

    app.step("the venue cookie is cleared");
    let cookie = server.dev.standin().config().cookie_name.clone();
    app.browser.delete_cookie(&cookie).await?;
    forget_tokens(app).await?;
    let shown = fetch_tokens(app).await?;
    ensure!(
        shown.contains("Venue session expired")
            && shown.contains("venue_session_expired, stage xsrf"),
        "after the cookie was cleared the page shows: {shown}"
    );
    app.wait_text("#sw-messages", "session-error: venue_session_expired").await?;
    app.shot("venue-session-expired").await?;

    app.step("bob, not provisioned, signs in");
    sign_in(app, "bob").await?;
    forget_tokens(app).await?;
    let shown = fetch_tokens(app).await?;
    ensure!(
        shown.contains("Venue user is not provisioned for ECS")
            && shown.contains("not_provisioned"),
        "for bob the page shows: {shown}"
    );
    app.shot("bob-not-provisioned").await?;

    app.step("the venue is down");
    sign_in(app, "alice").await?;
    server.venue_faults(json!({ "dashboard": "fail", "authorize": "fail" })).await?;
    forget_tokens(app).await?;
    let shown = fetch_tokens(app).await?;
    ensure!(
        shown.contains("Token acquisition failed")
            && shown.contains("token_acquisition_failed, stage xsrf"),
        "with the venue down the page shows: {shown}"
    );
    app.shot("venue-down").await?;

    app.step("the venue is back: the next click gets tokens");
    server.venue_faults(json!({ "dashboard": "ok", "authorize": "ok" })).await?;
    let shown = fetch_tokens(app).await?;
    ensure!(shown.contains(r#""sub": "alice""#), "with the venue back the page shows: {shown}");
    Ok(())
}

/// Follows the page's "Venue sign-in" link, signs in as `user` and comes back to the demo.
async fn sign_in(app: &App, user: &str) -> anyhow::Result<()> {
    app.click("#tokens-card a.button").await?;
    app.fill("input[name=username]", user).await?;
    app.click("button[type=submit]").await?;
    app.wait_exact("#sw-controller", "yes").await?;
    Ok(())
}

/// Clicks "Fetch tokens" and waits for the answer; the text of the result.
async fn fetch_tokens(app: &App) -> anyhow::Result<String> {
    app.click("#tokens-fetch").await?;
    app.wait_for("#tokens-result", "an answer", crate::harness::DEADLINE, |text| {
        !text.is_empty() && !text.contains("Asking the worker")
    })
    .await
}

/// The user leaves the app idle and comes back to it: the browser stops the service worker after
/// half a minute of idleness (its tokens, memory only, are gone, and the next request runs the
/// chain again), and the user comes back by loading the app, whose new page has no copy of the
/// tokens either. (An app page left open would keep answering its copy until the tokens near
/// their expiry: the venue's `HttpOnly` session cookie cannot be watched without asking the
/// venue, which is what a warm call saves; see `page/tokens.rs`.)
async fn forget_tokens(app: &App) -> anyhow::Result<()> {
    app.browser.cdp("ServiceWorker.enable", json!({})).await?;
    app.browser.cdp("ServiceWorker.stopAllWorkers", json!({})).await?;
    app.open("/").await?;
    app.wait_exact("#sw-controller", "yes").await?;
    Ok(())
}

const SCENARIO_WARM: &str = "warm sessionTokens() from the page's copy";

/// `sessionTokens(arguments[0])` through the page's own module (the same instance as the demo's,
/// so the same copy): `{ok: true, eidJwt, sub}` or `{ok: false, code}`. Also counts the
/// worker's `session-changed` messages in `window.sessionChanges` from the first call on.
const SESSION_TOKENS: &str = r#"
    const m = await import('/pkg/websession.js');
    if (window.sessionChanges === undefined) {
        window.sessionChanges = 0;
        navigator.serviceWorker.addEventListener('message', (e) => {
            if (e.data && e.data.type === 'session-changed') window.sessionChanges++;
        });
    }
    try {
        const t = await m.sessionTokens(arguments[0]);
        const sub = JSON.parse(atob(t.venueJwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).sub;
        return { ok: true, eidJwt: t.eidJwt, sub };
    } catch (e) {
        return { ok: false, code: e.code };
    }
"#;

/// Pins the page's copy of the tokens: warm calls cost no request to the worker (counted at the
/// venue's dashboard, which the worker asks on every answer), and once the worker has dropped
/// its tokens (another venue user signed in, a venue sign-out, both in another tab; a logout in
/// this one), this page never answers the old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_session_tokens_skip_the_worker_and_never_outlive_a_change_of_user()
-> anyhow::Result<()> {
    let _turn = serial().await;
    let server = Server::start("warm-tokens", |_| {}).await?;
    let app = App::start(&server, SCENARIO_WARM, "warm-tokens").await?;
    let result = warm_steps(&server, &app).await;
    app.finish(result).await?;
    drop(app);
    server.stop().await
}

async fn warm_steps(server: &Server, app: &App) -> anyhow::Result<()> {
    let dashboards = || server.dev.standin().counter("/Dashboard");
    app.step("alice signs in; a call asks the worker, twenty more answer from the copy");
    app.open("/").await?;
    app.wait_exact("#sw-controller", "yes").await?;
    sign_in(app, "alice").await?;
    let one = app.browser.window().await?;
    let first = warm_up(app).await?;
    ensure!(first["ok"] == json!(true) && first["sub"] == "alice", "alice's first call: {first}");
    let before = dashboards();
    for _ in 0..20 {
        let warm = tokens(app, json!({})).await?;
        ensure!(warm["eidJwt"] == first["eidJwt"], "a warm call answered {warm}");
    }
    ensure!(dashboards() == before, "warm calls reached the worker");
    let fresh = tokens(app, json!({ "fresh": true })).await?;
    ensure!(fresh["ok"] == json!(true), "fresh: {fresh}");
    ensure!(dashboards() == before + 1, "`fresh: true` did not reach the worker");

    app.step("bob signs in at the venue in another tab, whose first call reaches the worker");
    let two = app.browser.new_tab().await?;
    app.switch(&two, "tab 2").await?;
    app.open("/").await?;
    app.wait_exact("#sw-controller", "yes").await?;
    sign_in(app, "bob").await?;
    let bob = tokens(app, json!({})).await?;
    ensure!(bob["code"] == "not_provisioned", "bob's call in tab 2: {bob}");

    app.step("tab 1 is told, and never answers alice's tokens again");
    app.switch(&one, "tab 1").await?;
    changes_reach(app, 2).await?;
    let after = tokens(app, json!({})).await?;
    ensure!(after["code"] == "not_provisioned", "tab 1 after bob signed in: {after}");

    app.step("alice again, then a venue sign-out in tab 2");
    app.switch(&two, "tab 2").await?;
    sign_in(app, "alice").await?;
    ensure!(tokens(app, json!({})).await?["sub"] == "alice");
    app.switch(&one, "tab 1").await?;
    changes_reach(app, 3).await?;
    let again = tokens(app, json!({})).await?;
    ensure!(again["sub"] == "alice", "tab 1 with alice back: {again}");
    app.switch(&two, "tab 2").await?;
    app.open("/Account/Logout").await?;
    app.open("/").await?;
    app.wait_exact("#sw-controller", "yes").await?;
    let out = tokens(app, json!({})).await?;
    ensure!(out["code"] == "venue_session_expired", "tab 2 after the sign-out: {out}");
    app.switch(&one, "tab 1").await?;
    changes_reach(app, 4).await?;
    let after = tokens(app, json!({})).await?;
    ensure!(after["code"] == "venue_session_expired", "tab 1 after the sign-out: {after}");

    app.step("a logout in this page drops its copy at once");
    sign_in(app, "alice").await?;
    ensure!(warm_up(app).await?["sub"] == "alice");
    let before = dashboards();
    ensure!(tokens(app, json!({})).await?["sub"] == "alice");
    ensure!(dashboards() == before, "the copy is warm before the logout");
    let logout = "const m = await import('/pkg/websession.js');                   const auth = await m.Auth.start({ onExpired: () => {} });                   try { await auth.logout(); } catch (_) {} return 1;";
    app.script(logout, &[]).await?;
    let next = tokens(app, json!({})).await?;
    ensure!(next["ok"] == json!(true), "after the logout: {next}");
    ensure!(dashboards() > before, "the call after the logout was answered from the copy");
    Ok(())
}

/// `sessionTokens(options)` in the current tab ([`SESSION_TOKENS`]).
async fn tokens(app: &App, options: Value) -> anyhow::Result<Value> {
    app.script(SESSION_TOKENS, &[options]).await.context("sessionTokens()")
}

/// The first call of a page that comes back (or of a tab whose call makes the worker take a new
/// venue JWT): it asks the worker, which then posts `session-changed` to every tab, the asking
/// one too (whose copy it may drop: the worker cannot tell who asked), so the call after that
/// message asks once more and keeps the answer. Its answer.
async fn warm_up(app: &App) -> anyhow::Result<Value> {
    tokens(app, json!({})).await?;
    changes_reach(app, 1).await?;
    tokens(app, json!({})).await
}

/// Waits until the current tab has counted `n` `session-changed` messages since its first
/// [`tokens`] call.
async fn changes_reach(app: &App, n: u64) -> anyhow::Result<()> {
    let what = format!("{n} session-changed messages");
    poll(&what, DEADLINE, || async {
        let seen = app.script("return window.sessionChanges;", &[]).await?;
        Ok(if seen.as_u64().is_some_and(|s| s >= n) { Ok(()) } else { Err(seen.to_string()) })
    })
    .await
}
