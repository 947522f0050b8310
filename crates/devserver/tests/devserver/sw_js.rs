//! The real `/sw.js` in headless Chromium: a page on the development server registers it and
//! fetches `/uc/session/vtx`; the venue stand-in and the VTX counter show what the worker did.

use devserver::webdriver::{Browser, ChromeDriver};
use serde_json::{Value, json};
use venue_standin::{AUTHORIZE_PATH, DASHBOARD_PATH};

use crate::util::{Running, start, test_site};

/// A page of a fresh development server, controlled by `/sw.js`, in a fresh browser profile.
struct Page {
    browser: Browser,
    server: Running,
    // Dropped after `browser`: the driver outlives the session it serves.
    _driver: ChromeDriver,
    site: tempfile::TempDir,
}

/// Registers the worker (module type, default settings: everything on this origin) and waits
/// until it controls the page and has said `sw-activated`. Messages from the worker are
/// collected in `window.messages`.
const REGISTER: &str = r#"
    window.messages = [];
    navigator.serviceWorker.addEventListener('message', (e) => window.messages.push(e.data));
    const controlled = new Promise((resolve) =>
        navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true }));
    await navigator.serviceWorker.register(arguments[0], { type: 'module' });
    await controlled;
    for (let i = 0; i < 250 && !window.messages.some((m) => m.type === 'sw-activated'); i++) {
        await new Promise((r) => setTimeout(r, 20));
    }
    return window.messages;
"#;

/// `fetch(path)` → `{status, body, timing}`.
const FETCH: &str = r#"
    const response = await fetch(arguments[0]);
    const text = await response.text();
    let body = text;
    try { body = JSON.parse(text); } catch (_) {}
    return { status: response.status, body, timing: response.headers.get('server-timing') };
"#;

/// The front identity record in IndexedDB, as the worker's install left it.
const IDENTITY: &str = r#"
    const request = (r) => new Promise((resolve, reject) => {
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error);
    });
    const db = await request(indexedDB.open('websession'));
    const value = await request(
        db.transaction('singleton').objectStore('singleton').get('@teqfw/web-event/identity'));
    db.close();
    return value;
"#;

impl Page {
    async fn open() -> Self {
        Self::open_with("/sw.js").await
    }

    /// Registers the worker from `script` (`/sw.js` with the settings in its query).
    async fn open_with(script: &str) -> Self {
        let site = test_site();
        let server = start(|c| c.server.static_dir = Some(site.path().to_owned())).await;
        let driver = ChromeDriver::start().unwrap();
        let browser = Browser::new(&driver).await.unwrap();
        browser.goto(&format!("{}/blank.html", server.url)).await.unwrap();
        let messages = browser.run(REGISTER, &[json!(script)]).await.unwrap();
        let activated = messages.as_array().unwrap().iter().find(|m| m["type"] == "sw-activated");
        assert_eq!(
            activated.map(|m| &m["version"]),
            Some(&json!(env!("CARGO_PKG_VERSION"))),
            "the worker says which version took over: {messages}"
        );
        Page { browser, server, _driver: driver, site }
    }

    async fn login(&self, user: &str) {
        let script = "const r = await fetch('/Account/Login', \
                      { method: 'POST', body: new URLSearchParams({ username: arguments[0] }) }); \
                      return r.status;";
        assert_eq!(self.browser.run(script, &[json!(user)]).await.unwrap(), json!(200));
    }

    async fn fetch(&self, path: &str) -> Value {
        self.browser.run(FETCH, &[json!(path)]).await.unwrap()
    }

    /// Requests at `[/Dashboard, /Auth/Authorize, /vtx/token]` since the last reset.
    fn counters(&self) -> [u64; 3] {
        let standin = self.server.dev.standin();
        [
            standin.counter(DASHBOARD_PATH),
            standin.counter(AUTHORIZE_PATH),
            self.server.dev.vtx().requests(),
        ]
    }

    async fn close(self) {
        drop(self.browser);
        self.server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sw_js_answers_cold_then_warm_and_leaves_other_requests_alone() {
    let page = Page::open().await;
    page.login("alice").await;
    page.server.dev.reset();

    let cold = page.fetch("/uc/session/vtx").await;
    assert_eq!(cold["status"], 200, "{cold}");
    for field in ["eidJwt", "venueJwt", "eidExpiresAt", "venueExpiresAt"] {
        assert!(cold["body"][field].is_string(), "{field} in {cold}");
    }
    assert!(cold["timing"].as_str().unwrap().contains("sw-answer;dur="), "{cold}");
    let identity = page.browser.run(IDENTITY, &[]).await.unwrap();
    assert!(identity["frontUuid"].is_string() && identity["frontKeys"]["secret"].is_string());
    assert!(identity["frontBid"].is_i64(), "registered at install: {identity}");
    assert_eq!(page.counters(), [1, 1, 1]);

    let warm = page.fetch("/uc/session/vtx").await;
    assert_eq!(warm["body"], cold["body"]);
    assert_eq!(
        page.counters(),
        [2, 1, 1],
        "the warm answer comes from the worker's memory once the dashboard confirms the session"
    );

    // Not ours: the network answers (no Server-Timing from the worker).
    for path in ["/uc/session/vtx/other", "/web-event-stream-open/x/y", "/blank.html"] {
        let answer = page.fetch(path).await;
        assert!(answer["timing"].is_null(), "{path} was answered by the worker: {answer}");
    }
    page.close().await;
}

/// The tokens are for the scripts of the origin's pages: opening `/uc/session/vtx` as a page (a
/// link, a typed address) or loading it as an image goes to the network, and the worker runs
/// no chain for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn navigations_and_subresources_to_the_session_path_are_not_answered_by_the_worker() {
    let page = Page::open().await;
    page.login("alice").await;
    page.server.dev.reset();

    let image = "const img = new Image(); \
                 const done = new Promise((r) => { img.onload = () => r('load'); img.onerror = () => r('error'); }); \
                 img.src = '/uc/session/vtx?as=image'; return await done;";
    assert_eq!(page.browser.run(image, &[]).await.unwrap(), "error");
    assert_eq!(page.counters(), [0, 0, 0], "an <img> made the worker run the chain");

    page.browser.goto(&format!("{}/uc/session/vtx", page.server.url)).await.unwrap();
    let text = page.browser.run("return document.body ? document.body.innerText : '';", &[]);
    let text = text.await.unwrap();
    assert!(!text.as_str().unwrap_or_default().contains("eidJwt"), "the worker answered: {text}");
    assert_eq!(page.counters(), [0, 0, 0], "a navigation made the worker run the chain");
    // A script's fetch from a page of the origin is still answered.
    page.browser.goto(&format!("{}/blank.html", page.server.url)).await.unwrap();
    let answer = page.fetch("/uc/session/vtx").await;
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(page.counters(), [1, 1, 1]);
    page.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_parallel_fetches_run_the_chain_once() {
    let page = Page::open().await;
    page.login("alice").await;
    page.server.dev.reset();
    let script = "const all = await Promise.all(Array.from({ length: 10 }, () => \
                  fetch('/uc/session/vtx').then(async (r) => [r.status, (await r.json()).eidJwt]))); \
                  return all;";
    let answers = page.browser.run(script, &[]).await.unwrap();
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 10);
    assert!(answers.iter().all(|a| a[0] == 200 && a[1] == answers[0][1]), "{answers:?}");
    assert_eq!(page.counters(), [1, 1, 1], "one dashboard, one authorize, one VTX request");
    page.close().await;
}

/// The worker never hands one venue user's tokens to another: alice's warm tokens are not
/// bob's answer after bob signs in on the same browser, nor anyone's after a sign-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_venue_user_never_gets_the_previous_users_tokens() {
    let page = Page::open().await;
    page.login("alice").await;
    let alice = page.fetch("/uc/session/vtx").await;
    assert_eq!(alice["status"], 200, "{alice}");

    page.login("bob").await;
    let bob = page.fetch("/uc/session/vtx").await;
    assert_eq!((&bob["status"], &bob["body"]["error"]), (&json!(403), &json!("not_provisioned")));
    assert!(bob["body"]["eidJwt"].is_null(), "bob got alice's tokens: {bob}");

    page.login("alice").await;
    assert_eq!(page.fetch("/uc/session/vtx").await["status"], 200);
    page.browser
        .run("await fetch('/Account/Logout', { method: 'POST' }); return 1;", &[])
        .await
        .unwrap();
    let out = page.fetch("/uc/session/vtx").await;
    assert_eq!(
        (&out["status"], &out["body"]["error"]),
        (&json!(401), &json!("venue_session_expired"))
    );
    page.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_receives_the_session_error() {
    let page = Page::open().await;
    // Nobody logged in at the venue: the dashboard sends the worker to the login page.
    let answer = page.fetch("/uc/session/vtx").await;
    assert_eq!(answer["status"], 401, "{answer}");
    let expected = json!({
        "error": "venue_session_expired",
        "message": "Venue session expired",
        "stage": "xsrf",
    });
    assert_eq!(answer["body"], expected);
    let script = "for (let i = 0; i < 250; i++) { \
                    const m = window.messages.find((m) => m.type === 'session-error'); \
                    if (m) return m; \
                    await new Promise((r) => setTimeout(r, 20)); } \
                  return null;";
    let message = page.browser.run(script, &[]).await.unwrap();
    let mut want = expected;
    want["type"] = json!("session-error");
    assert_eq!(message, want);
    page.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_survives_a_backend_that_is_down() {
    // Nothing listens on port 1: registration fails, the install must not.
    let page = Page::open_with("/sw.js?serverUrl=http://127.0.0.1:1").await;
    let identity = page.browser.run(IDENTITY, &[]).await.unwrap();
    assert!(identity["frontUuid"].is_string(), "the identity exists: {identity}");
    assert!(identity.get("frontBid").is_none(), "not registered: {identity}");
    page.close().await;
}

/// Makes the next update check find a new version of `/sw.js` (one byte more).
///
/// The file's time moves two seconds on as well. The update check revalidates with
/// `If-Modified-Since`, and `Last-Modified` has whole seconds: a write within the second of the
/// first fetch was answered 304, so the browser never saw the new version (a CI flake of
/// `a_skip_waiting_message_promotes_the_waiting_version`).
fn new_version(page: &Page) {
    let path = page.site.path().join("sw.js");
    let mut script = std::fs::read_to_string(&path).unwrap();
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    script.push_str("\n// a new version\n");
    std::fs::write(&path, script).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(before + std::time::Duration::from_secs(2)).unwrap();
}

/// `registration.update()`, then waits until the new version is active (`"active"`) or, when
/// `arguments[0]` is `"waiting"`, installed and waiting (`"waiting"`). Events decide, not a time
/// window; after ten seconds it returns what it saw.
const UPDATE: &str = r#"
    const want = arguments[0];
    const registration = await navigator.serviceWorker.getRegistration();
    const before = registration.active;
    await registration.update();
    for (let i = 0; i < 500; i++) {
        if (want === 'waiting' && registration.waiting && registration.waiting.state === 'installed') {
            return 'waiting';
        }
        if (registration.active !== before && registration.active.state === 'activated') {
            return 'active';
        }
        await new Promise((r) => setTimeout(r, 20));
    }
    return { waiting: registration.waiting && registration.waiting.state,
             active: registration.active && registration.active.state };
"#;

/// Waits until the waiting version has taken over: `[no waiting worker, the active one's state]`.
const PROMOTED: &str = "const registration = await navigator.serviceWorker.getRegistration(); \
                        for (let i = 0; i < 500 && (registration.waiting || \
                             registration.active.state !== 'activated'); i++) \
                          await new Promise((r) => setTimeout(r, 20)); \
                        return [registration.waiting === null, \
                                registration.active && registration.active.state];";

/// Whether a version is still waiting after `arguments[0]` ms.
const STILL_WAITING: &str = "await new Promise((r) => setTimeout(r, arguments[0])); \
                             const registration = await navigator.serviceWorker.getRegistration(); \
                             return registration.waiting !== null;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_takes_over_at_once_by_default() {
    let page = Page::open().await;
    new_version(&page);
    assert_eq!(page.browser.run(UPDATE, &[json!("active")]).await.unwrap(), "active");
    let script = "for (let i = 0; i < 500; i++) { \
                    if (window.messages.filter((m) => m.type === 'sw-activated').length === 2) return true; \
                    await new Promise((r) => setTimeout(r, 20)); } \
                  return window.messages;";
    assert_eq!(page.browser.run(script, &[]).await.unwrap(), json!(true), "the tab hears of it");
    page.close().await;
}

/// A new version with `update=navigation`, installed and waiting.
async fn waiting_version() -> Page {
    let page = Page::open_with("/sw.js?update=navigation").await;
    new_version(&page);
    assert_eq!(page.browser.run(UPDATE, &[json!("waiting")]).await.unwrap(), "waiting");
    // It stays so. A version that skipped waiting would be active within milliseconds of being
    // installed; a second is many times that. (A wrong build could only pass here, not fail a
    // right one: the window decides nothing for a version that does wait.)
    let still = page.browser.run(STILL_WAITING, &[json!(1_000)]).await.unwrap();
    assert_eq!(still, json!(true), "the new version did not wait");
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_update_navigation_a_new_version_waits_for_the_next_navigation() {
    let page = waiting_version().await;
    page.browser.goto(&format!("{}/blank.html", page.server.url)).await.unwrap();
    let state = page.browser.run(PROMOTED, &[]).await.unwrap();
    assert_eq!(state, json!([true, "activated"]), "the navigation promoted the waiting version");
    page.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skip_waiting_message_promotes_the_waiting_version() {
    let page = waiting_version().await;
    // Through the real message path: the page posts to the waiting worker, the shim hands the
    // message to the wasm package. No navigation.
    let script = "const registration = await navigator.serviceWorker.getRegistration(); \
                  registration.waiting.postMessage({ type: 'skip-waiting' }); return true;";
    page.browser.run(script, &[]).await.unwrap();
    let state = page.browser.run(PROMOTED, &[]).await.unwrap();
    assert_eq!(state, json!([true, "activated"]), "the message promoted the waiting version");
    page.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_clear_message_drops_the_workers_tokens() {
    let page = Page::open().await;
    page.login("alice").await;
    page.server.dev.reset();
    assert_eq!(page.fetch("/uc/session/vtx").await["status"], 200);
    assert_eq!(page.fetch("/uc/session/vtx").await["status"], 200);
    assert_eq!(page.counters(), [2, 1, 1], "the second answer came from the worker's memory");
    // Through the real message path. The shim runs the message and the fetch after it in the
    // order they arrived (both wait for the same start), so the fetch sees the cleared session.
    let script = "navigator.serviceWorker.controller.postMessage({ type: 'session-clear' }); \
                  return true;";
    page.browser.run(script, &[]).await.unwrap();
    let again = page.fetch("/uc/session/vtx").await;
    assert_eq!(again["status"], 200, "{again}");
    assert_eq!(page.counters(), [3, 2, 2], "the whole chain ran again");
    page.close().await;
}
