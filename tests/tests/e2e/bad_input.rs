//! Bad input from a browser's point of view: a tampered login token, a corrupted front identity
//! in IndexedDB and a forged stamp sent with `fetch`. Each gets a clear answer, and the app
//! carries on.

use anyhow::ensure;
use serde_json::json;

use crate::harness::{App, Server, serial};

const SCENARIO: &str = "bad input from the browser";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_the_app_recovers() -> anyhow::Result<()> {
    let _turn = serial().await;
    let server = Server::start("bad-input", |_| {}).await?;
    let app = App::start(&server, SCENARIO, "bad-input").await?;
    let result = steps(&server, &app).await;
    app.finish(result).await?;
    drop(app);
    server.stop().await
}

/// Posts a direct event for this tab's session whose stamp is not a seal of the back's: the
/// status and the error body.
const FORGED_STAMP: &str = r#"
    const [frontUuid, sessionUuid] = arguments;
    const published = new Date().toISOString();
    const forged = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(72))));
    const meta = { name: 'echo', uuid: crypto.randomUUID(), published, frontUuid, sessionUuid,
                   stamp: forged };
    const response = await fetch('/web-event-direct/echo', {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ data: { text: 'forged' }, meta }) });
    let body = await response.text();
    try { body = JSON.parse(body); } catch (_) {}
    return { status: response.status, body };
"#;

/// Overwrites the front identity in IndexedDB with a record that is no identity.
const CORRUPT_IDENTITY: &str = r#"
    const request = (r) => new Promise((resolve, reject) => {
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error);
    });
    const db = await request(indexedDB.open('websession'));
    const store = db.transaction('singleton', 'readwrite').objectStore('singleton');
    await request(store.put({ frontUuid: 'not-a-uuid', frontKeys: { public: '%%%', secret: 42 } },
                            '@teqfw/web-event/identity'));
    db.close();
"#;

async fn steps(server: &Server, app: &App) -> anyhow::Result<()> {
    app.step("a tampered ?token= is refused");
    let link = server.login_link("alice", &["CanAccessDashboard"]).await?;
    let (base, token) = link.split_once("token=").unwrap_or((&link, ""));
    ensure!(token.len() > 8, "the login link has no token: {link}");
    let mut tampered: Vec<char> = token.chars().collect();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    app.open(&format!("{base}token={tampered}")).await?;
    let state = app.wait_text("#login-state", "Login failed").await?;
    ensure!(
        state.contains("invalid_token") && state.contains("Not logged in"),
        "after a tampered token the page shows: {state}"
    );
    app.shot("tampered-token").await?;

    app.step("the untampered link still logs in");
    app.open(&link).await?;
    app.wait_text("#login-state", "alice").await?;

    app.step("a forged stamp is refused");
    app.wait_exact("#stream-state", "active").await?;
    let front = app.read("#front-uuid").await?;
    let session = app.read("#session-uuid").await?;
    let answer = app.script(FORGED_STAMP, &[json!(front), json!(session)]).await?;
    ensure!(
        answer["status"] == 403 && answer["body"]["error"] == "bad_stamp",
        "a forged stamp was answered {answer}"
    );
    let message = answer["body"]["message"].as_str().unwrap_or_default();
    ensure!(message.len() > 10, "the refusal of a forged stamp says too little: {answer}");
    app.fill("#direct-text", "echo after the forged stamp").await?;
    app.click("#echo-button").await?;
    app.wait_text("#direct-result", "Echoed back").await?;
    app.wait_text("#events", "echo after the forged stamp").await?;
    app.shot("echo-after-a-forged-stamp").await?;

    app.step("a corrupted identity is reported and replaced on the next load");
    app.script(CORRUPT_IDENTITY, &[]).await?;
    app.browser.refresh().await?;
    app.wait_exact("#stream-state", "active").await?;
    app.wait_text("#timeline", "identity was corrupt").await?;
    let replaced = app.read("#front-uuid").await?;
    ensure!(
        replaced != front && replaced.len() == 36 && replaced.matches('-').count() == 4,
        "after the corruption the page shows the front {replaced:?} (before: {front})"
    );
    server.emit(&replaced, None, "to-the-new-front").await?;
    app.wait_text("#events", "to-the-new-front").await?;
    app.fill("#direct-text", "echo after the corruption").await?;
    app.click("#echo-button").await?;
    app.wait_text("#direct-result", "Echoed back").await?;
    app.shot("identity-replaced").await?;
    Ok(())
}
