//! Seed 000: the demo page gets its tokens from `/uc/session/vtx`, answered by `/sw.js` through
//! the venue stand-in and the VTX exchange, and shows each failure of the chain in words.

use anyhow::ensure;
use serde_json::json;

use crate::harness::{App, Server, serial};

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

/// Stops the service worker, as the browser does after half a minute of idleness: its tokens
/// (memory only) are gone, and the next request runs the chain again.
async fn forget_tokens(app: &App) -> anyhow::Result<()> {
    app.browser.cdp("ServiceWorker.enable", json!({})).await?;
    app.browser.cdp("ServiceWorker.stopAllWorkers", json!({})).await?;
    Ok(())
}
