//! The one-time-token login (seed 002): login, 200 and 403, the refresh ahead of expiry, the 401
//! that refreshes and retries, the end of the session, logout, a used token, a new tab.
//!
//! The devserver's access tokens live a few seconds, so refreshes happen within a test.

use std::cell::RefCell;
use std::rc::Rc;

use browser::page::{Auth, AuthOptions};
use protocol::paths;
use wasm_bindgen_test::wasm_bindgen_test;
use web_sys::Request;

use super::util::{self, server};

/// Options that record `on_expired` instead of leaving the page.
fn options(base: &str, token: Option<String>) -> (AuthOptions, Rc<RefCell<Vec<String>>>) {
    let expired = Rc::new(RefCell::new(Vec::new()));
    let record = expired.clone();
    let options = AuthOptions {
        base: base.to_owned(),
        token,
        on_expired: Some(Rc::new(move |reason: &str| record.borrow_mut().push(reason.to_owned()))),
        ..AuthOptions::default()
    };
    (options, expired)
}

async fn status(auth: &Auth, url: &str) -> u16 {
    let request = Request::new_with_str(url).expect("a request");
    auth.fetch(request).await.expect("an answer").status()
}

#[wasm_bindgen_test]
async fn login_gives_200_and_403_by_permission_and_logout_ends_it() {
    let base = server!();
    let token = util::mint(base, "alice", &["CanAccessDashboard"], 3_600).await;
    let (options, expired) = options(base, Some(token));
    let auth = util::start(options).await;
    assert!(auth.logged_in(), "login failed: {:?}", auth.error());
    assert_eq!(auth.permissions(), vec!["CanAccessDashboard".to_owned()]);
    let info = auth.info().expect("info");
    assert_eq!(info.user_id.as_deref(), Some("alice"));
    assert_eq!(info.claims.map(|c| c.user_id).as_deref(), Some("alice"));

    assert_eq!(status(&auth, &format!("{base}/api/dashboard")).await, 200);
    assert_eq!(status(&auth, &format!("{base}/api/reports")).await, 403);

    auth.logout().await.expect("logs out");
    assert!(!auth.logged_in());
    assert_eq!(auth.refresh().await, Ok(false), "the session is gone at the server");
    assert_eq!(status(&auth, &format!("{base}/api/dashboard")).await, 401);
    assert!(expired.borrow().is_empty(), "logging out oneself is not an expiry");
    auth.close();
}

#[wasm_bindgen_test]
async fn the_access_token_is_refreshed_before_it_expires() {
    let base = server!();
    let token = util::mint(base, "alice", &["CanAccessDashboard"], 3_600).await;
    let refreshes = util::FetchLog::install(paths::AUTH_REFRESH);
    let auth = util::start(options(base, Some(token)).0).await;
    let first = auth.access_token().expect("a token");
    let info = auth.info().expect("info");
    let expires = info.access_expires_at.millis() as f64;
    let claims = info.claims.expect("claims");
    let lifetime_ms = ((claims.exp - claims.iat) * 1000) as f64;
    // The devserver's access tokens live 5 s; the margin (default 60 s) is capped at half of it.
    let refreshed = util::wait_for(10_000, || auth.access_token().is_some_and(|t| t != first));
    assert!(refreshed.await, "no refresh ahead of expiry");
    let sent = refreshes.times();
    refreshes.remove();
    assert_eq!(sent.len(), 1, "one refresh gave the new token: {sent:?}");
    // When it went out, not when it came back: the answer's time is the network's.
    assert!(sent[0] < expires, "refreshed at {}, the old token expired at {expires}", sent[0]);
    let due = expires - lifetime_ms / 2.0;
    // A timer never fires early; 50 ms for the two clock readings that `due` comes from.
    assert!(sent[0] >= due - 50.0, "refreshed at {}, not due before {due}", sent[0]);
    assert_eq!(status(&auth, &format!("{base}/api/dashboard")).await, 200);
    auth.logout().await.expect("logs out");
    auth.close();
}

#[wasm_bindgen_test]
async fn a_401_refreshes_once_and_retries() {
    let base = server!();
    let token = util::mint(base, "alice", &["CanAccessDashboard"], 3_600).await;
    let (mut options, expired) = options(base, Some(token));
    options.auto_refresh = false;
    let auth = util::start(options).await;
    let first = auth.access_token().expect("a token");
    // The server's clock moves past the access token's expiry (5 s), as for a tab that slept.
    util::clock_ahead(base, 60).await;
    let stale = Request::new_with_str(&format!("{base}/api/dashboard")).expect("a request");
    stale.headers().set("Authorization", &format!("Bearer {first}")).expect("a header");
    assert_eq!(util::fetch_status(&stale).await, 401, "the old token is expired at the server");

    let refreshes = util::FetchLog::install(paths::AUTH_REFRESH);
    assert_eq!(status(&auth, &format!("{base}/api/dashboard")).await, 200, "retried");
    assert_eq!(refreshes.count(), 1, "one refresh for the 401");
    let second = auth.access_token().expect("a token");
    assert_ne!(second, first, "refreshed on the 401");
    // The retry carried the new token, which the next request uses without a refresh.
    assert_eq!(status(&auth, &format!("{base}/api/dashboard")).await, 200);
    assert_eq!(refreshes.count(), 1, "no refresh for a good token");
    refreshes.remove();
    assert_eq!(auth.access_token(), Some(second));
    assert!(expired.borrow().is_empty());
    util::clock_ahead(base, 0).await;
    auth.logout().await.expect("logs out");
    auth.close();
}

/// A holder of the refresh lock that never lets go (a frozen tab, another library's deadlock)
/// cannot freeze the refresh: after the lock timeout the tab refreshes without the lock.
#[wasm_bindgen_test]
async fn a_refresh_lock_that_is_never_released_does_not_freeze_the_refresh() {
    let base = server!();
    let token = util::mint(base, "alice", &["CanAccessDashboard"], 3_600).await;
    let (mut options, _) = options(base, Some(token));
    options.auto_refresh = false;
    options.lock_timeout_ms = 300.0;
    let auth = util::start(options).await;
    let first = auth.access_token().expect("a token");
    let stuck = util::StuckLock::hold("websession-refresh").await;
    assert_eq!(auth.refresh().await, Ok(true), "refreshed without the lock");
    assert_ne!(auth.access_token(), Some(first));
    assert_eq!(status(&auth, &format!("{base}/api/dashboard")).await, 200);
    stuck.release();
    auth.logout().await.expect("logs out");
    auth.close();
}

/// A logged-out visitor costs no failing request (a red line in the console): without the
/// readable marker cookie the client knows there is no session and does not try a refresh.
#[wasm_bindgen_test]
async fn a_logged_out_visitor_makes_no_refresh_request() {
    let base = server!();
    let token = util::mint(base, "alice", &["CanAccessDashboard"], 3_600).await;
    let auth = util::start(options(base, Some(token)).0).await;
    let marker = || {
        let document = js_sys::Reflect::get(&js_sys::global(), &"document".into()).expect("doc");
        let cookies = js_sys::Reflect::get(&document, &"cookie".into()).expect("cookies");
        cookies.as_string().unwrap_or_default().contains("websessionLoggedIn=1")
    };
    assert!(marker(), "the login set the readable marker");
    auth.logout().await.expect("logs out");
    auth.close();
    assert!(!marker(), "the logout cleared it");

    let refreshes = util::FetchLog::install(paths::AUTH_REFRESH);
    let (options, expired) = options(base, None);
    let visitor = util::start(options).await;
    assert!(!visitor.logged_in());
    assert_eq!(refreshes.count(), 0, "a refresh request was made for a logged-out visitor");
    refreshes.remove();
    assert_eq!(visitor.error(), None);
    assert!(expired.borrow().is_empty());
    visitor.close();
}

#[wasm_bindgen_test]
async fn the_end_of_the_session_calls_on_expired() {
    let base = server!();
    // The server's clock runs an hour behind, so the session it starts ends (by the browser's
    // clock) a second after the mint, while the server lets the login in for an hour: no
    // race between the login and the end of the session, whatever the machine's load.
    util::clock_ahead(base, -3_599).await;
    let token = util::mint(base, "bob", &["CanAccessDashboard"], 3_600).await;
    let (mut options, expired) = options(base, Some(token));
    // No refresh, which would also notice the end (from the answer's `sessionExpiresAt`): the
    // tab's own timer is what this tests.
    options.auto_refresh = false;
    let auth = util::start(options).await;
    assert!(auth.logged_in(), "login failed: {:?}", auth.error());
    assert!(util::wait_for(8_000, || !expired.borrow().is_empty()).await, "no expiry");
    assert_eq!(*expired.borrow(), vec!["session_expired".to_owned()]);
    assert!(!auth.logged_in());
    // Past the session's end by the server's clock too, the server refuses to refresh it.
    util::clock_ahead(base, 60).await;
    assert_eq!(auth.refresh().await, Ok(false), "the server agrees");
    util::clock_ahead(base, 0).await;
    auth.close();
}

#[wasm_bindgen_test]
async fn a_used_token_is_refused_and_a_new_tab_takes_the_cookie() {
    let base = server!();
    let token = util::mint(base, "alice", &["CanAccessDashboard"], 3_600).await;
    let first = util::start(options(base, Some(token.clone())).0).await;
    assert!(first.logged_in());
    first.close();

    let again = util::start(options(base, Some(token)).0).await;
    assert!(!again.logged_in());
    assert_eq!(again.error().map(|e| e.code().to_owned()).as_deref(), Some("invalid_token"));
    again.close();

    // A tab opened later has no token in its address: it refreshes with the cookie.
    let tab = util::start(options(base, None).0).await;
    assert!(tab.logged_in(), "{:?}", tab.error());
    assert_eq!(status(&tab, &format!("{base}/api/dashboard")).await, 200);
    tab.logout().await.expect("logs out");
    tab.close();
}

#[wasm_bindgen_test]
async fn tabs_share_one_access_token_one_refresh_and_the_logout() {
    let base = server!();
    let token = util::mint(base, "alice", &["CanAccessDashboard"], 3_600).await;
    let (mut options_a, _) = options(base, Some(token));
    options_a.auto_refresh = false;
    let a = util::start(options_a).await;
    // A second tab without a token takes the first tab's access token: no refresh needed.
    let (mut options_b, expired_b) = options(base, None);
    options_b.auto_refresh = false;
    let b = util::start(options_b).await;
    assert_eq!(b.access_token(), a.access_token());
    // One tab refreshes; the other adopts the new token instead of refreshing too.
    assert_eq!(a.refresh().await, Ok(true));
    let fresh = a.access_token();
    assert!(util::wait_for(2_000, || b.access_token() == fresh).await, "b kept the old token");
    // A logout in one tab ends the login in the others.
    a.logout().await.expect("logs out");
    assert!(util::wait_for(2_000, || !b.logged_in()).await);
    assert_eq!(*expired_b.borrow(), vec!["logout".to_owned()]);
}

/// `auth.fetch` sends the bearer only to the backend's origin and the listed ones: the same
/// server under another origin (`localhost` for `127.0.0.1`) gets a plain request, answers
/// `401`, and that `401` neither refreshes nor ends the session.
#[wasm_bindgen_test]
async fn the_bearer_goes_only_to_the_backend_and_the_listed_origins() {
    let base = server!();
    let elsewhere = base.replacen("127.0.0.1", "localhost", 1);
    assert_ne!(elsewhere, base, "the test bed listens on 127.0.0.1: {base}");
    let token = util::mint(base, "alice", &["CanAccessDashboard"], 3_600).await;
    let (options, expired) = options(base, Some(token));
    let auth = util::start(options).await;
    assert!(auth.logged_in(), "login failed: {:?}", auth.error());
    let first = auth.access_token();
    assert_eq!(status(&auth, &format!("{base}/api/dashboard")).await, 200);
    assert_eq!(status(&auth, &format!("{elsewhere}/api/dashboard")).await, 401, "a bearer leaked");
    assert_eq!(auth.access_token(), first, "a 401 from another origin refreshes nothing");
    assert!(auth.logged_in() && expired.borrow().is_empty(), "nor ends the session");

    // Listed, the other origin gets it (this tab takes the login of the first).
    let (mut listed, _) = self::options(base, None);
    listed.bearer_origins = vec![elsewhere.clone()];
    let tab = util::start(listed).await;
    assert!(tab.logged_in(), "{:?}", tab.error());
    assert_eq!(status(&tab, &format!("{elsewhere}/api/dashboard")).await, 200);
    tab.close();
    auth.logout().await.expect("logs out");
    auth.close();
}
