//! The venue stand-in over real HTTP: each test serves its own stand-in on `127.0.0.1:0` with
//! [`venue_standin::run`] and talks to it with reqwest, cookies and all.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use protocol::tokens::{AuthorizeResponse, VenueClaims};
use protocol::{ErrorBody, ErrorCode};
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_ORIGIN,
    LOCATION, ORIGIN, SET_COOKIE,
};
use reqwest::{Client, StatusCode, redirect};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use venue_standin::{Config, FaultMode, Hop, SameSite, VenueStandin};

/// A stand-in served on a free port, stopped when dropped.
struct Server {
    url: String,
    standin: VenueStandin,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start(config: Config) -> Self {
        let standin = VenueStandin::new(config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(venue_standin::run(listener, standin.clone(), async {
            let _ = stopped.await;
        }));
        Self { url, standin, stop: Some(stop), task: Some(task) }
    }

    async fn default() -> Self {
        Self::start(Config::default()).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Shut down and wait until `run` returned.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap().unwrap();
    }

    /// A logged-in browser: a client with a cookie jar after `POST /Account/Login`.
    async fn browser_for(&self, username: &str) -> Client {
        let client = browser();
        let response = client
            .post(self.url("/Account/Login"))
            .form(&[("username", username), ("password", "whatever")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        client
    }

    /// The XSRF token of the browser's session, scraped from the dashboard's hidden input.
    async fn xsrf(&self, client: &Client) -> String {
        let html = client.get(self.url("/Dashboard")).send().await.unwrap().text().await.unwrap();
        hidden_input_value(&html).unwrap()
    }

    /// `GET /Auth/Authorize` as the service worker sends it.
    async fn authorize(&self, client: &Client, xsrf: &str) -> reqwest::Response {
        client.get(self.url("/Auth/Authorize")).header("X-XSRF-TOKEN", xsrf).send().await.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A client that keeps cookies and shows redirects instead of following them.
fn browser() -> Client {
    Client::builder().cookie_store(true).redirect(redirect::Policy::none()).build().unwrap()
}

fn hidden_input_value(html: &str) -> Option<String> {
    let prefix = r#"<input name="__RequestVerificationToken" type="hidden" value=""#;
    let rest = &html[html.find(prefix)? + prefix.len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Verify a venue JWT the way the token exchange will: key by `kid` from the published JWKS.
async fn verify(server: &Server, token: &str, issuer: &str, audience: &str) -> VenueClaims {
    let jwks: JwkSet = reqwest::get(server.url("/Venue/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<VenueClaims>(token, &key, &validation).unwrap().claims
}

async fn error_code(response: reqwest::Response) -> Option<ErrorCode> {
    response.json::<ErrorBody>().await.unwrap().code()
}

#[tokio::test]
async fn login_sets_an_http_only_lax_session_cookie_and_goes_to_the_dashboard() {
    let server = Server::default().await;
    let response = browser()
        .post(server.url("/Account/Login"))
        .form(&[("username", "alice"), ("password", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/Dashboard");
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("venue_standin_session="), "{cookie}");
    for attribute in ["; Path=/", "; HttpOnly", "; SameSite=Lax"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn same_site_none_cookies_are_secure() {
    let config = Config { cookie_same_site: SameSite::None, ..Config::default() };
    let server = Server::start(config).await;
    let response = browser()
        .post(server.url("/Account/Login"))
        .form(&[("username", "bob")])
        .send()
        .await
        .unwrap();
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("; SameSite=None; Secure"), "{cookie}");
}

#[tokio::test]
async fn login_form_lists_the_users_and_keeps_the_return_url() {
    let server = Server::default().await;
    let response =
        browser().get(server.url("/Account/Login?ReturnUrl=%2FDashboard")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains("stand-in"));
    assert!(html.contains("<code>alice</code>") && html.contains("<code>bob</code>"));
    assert!(html.contains(r#"<input name="ReturnUrl" type="hidden" value="/Dashboard">"#));
    assert!(hidden_input_value(&html).is_none(), "the login page must not look like a dashboard");
}

#[tokio::test]
async fn login_returns_to_a_same_site_return_url() {
    let server = Server::default().await;
    let response = browser()
        .post(server.url("/Account/Login"))
        .form(&[("username", "alice"), ("ReturnUrl", "/Dashboard?tab=2")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()[LOCATION], "/Dashboard?tab=2");
}

#[tokio::test]
async fn open_redirect_return_urls_are_ignored() {
    let server = Server::default().await;
    for evil in ["https://evil.example/", "//evil.example/", "/\\evil.example/"] {
        let response = browser()
            .post(server.url("/Account/Login"))
            .form(&[("username", "alice"), ("ReturnUrl", evil)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[LOCATION], "/Dashboard", "{evil}");
    }
}

#[tokio::test]
async fn unknown_user_gets_401_and_the_form_again() {
    let server = Server::default().await;
    let response = browser()
        .post(server.url("/Account/Login"))
        .form(&[("username", "mallory"), ("password", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get(SET_COOKIE).is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("Unknown user name."));
    assert!(html.contains(r#"action="/Account/Login""#));
}

#[tokio::test]
async fn dashboard_without_session_redirects_to_the_login() {
    let server = Server::default().await;
    let response = browser().get(server.url("/Dashboard")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[LOCATION], "/Account/Login?ReturnUrl=%2FDashboard");
}

#[tokio::test]
async fn dashboard_with_session_carries_the_xsrf_token() {
    let server = Server::default().await;
    let client = server.browser_for("alice").await;
    let response = client.get(server.url("/Dashboard")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let html = response.text().await.unwrap();
    let token = hidden_input_value(&html).unwrap();
    assert!(token.len() >= 32, "{token}");
    assert!(html.contains(&format!(r#"<meta name="csrf-token" content="{token}">"#)));
    // Bound to the session: the same on the next load, different for another login.
    assert_eq!(server.xsrf(&client).await, token);
    let other = server.browser_for("alice").await;
    assert_ne!(server.xsrf(&other).await, token);
}

#[tokio::test]
async fn authorize_refuses_a_missing_or_wrong_xsrf_token_and_a_missing_session() {
    let server = Server::default().await;
    let client = server.browser_for("alice").await;
    let other = server.browser_for("bob").await;
    let others_token = server.xsrf(&other).await;

    let missing = client.get(server.url("/Auth/Authorize")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(missing).await, Some(ErrorCode::CrossSiteRequest));

    let wrong = server.authorize(&client, &others_token).await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(wrong).await, Some(ErrorCode::CrossSiteRequest));

    let no_session = server.authorize(&browser(), &others_token).await;
    assert_eq!(no_session.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(no_session).await, Some(ErrorCode::VenueSessionExpired));
}

#[tokio::test]
async fn authorize_issues_a_venue_jwt_with_ecoid_for_a_provisioned_user() {
    let config = Config {
        issuer: "urn:test-venue".to_owned(),
        audience: "urn:test-vtx".to_owned(),
        token_lifetime: Duration::from_secs(600),
        ..Config::default()
    };
    let server = Server::start(config).await;
    let client = server.browser_for("alice").await;
    let xsrf = server.xsrf(&client).await;
    let before = now();
    let response = server.authorize(&client, &xsrf).await;
    assert_eq!(response.status(), StatusCode::OK);
    let AuthorizeResponse { token } = response.json().await.unwrap();

    let claims = verify(&server, &token, "urn:test-venue", "urn:test-vtx").await;
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.ecoid.as_deref(), Some("eco-alice-0001"));
    assert!(claims.iat >= before && claims.iat <= now());
    assert_eq!(claims.exp - claims.iat, 600);
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(server.standin.key_id()));
}

#[tokio::test]
async fn a_user_not_provisioned_gets_a_venue_jwt_without_ecoid() {
    let server = Server::default().await;
    let client = server.browser_for("bob").await;
    let xsrf = server.xsrf(&client).await;
    let AuthorizeResponse { token } = server.authorize(&client, &xsrf).await.json().await.unwrap();

    let claims = verify(&server, &token, "urn:venue-standin", "urn:vtx").await;
    assert_eq!(claims.sub, "bob");
    assert_eq!(claims.ecoid, None);
    assert_eq!(claims.exp - claims.iat, 3600);
}

#[tokio::test]
async fn the_jwks_publishes_one_signing_key_at_a_configurable_path() {
    let config = Config { jwks_path: "/VenueKeys/jwks.json".to_owned(), ..Config::default() };
    let server = Server::start(config).await;
    let jwks: Value =
        reqwest::get(server.url("/VenueKeys/jwks.json")).await.unwrap().json().await.unwrap();
    assert_eq!(jwks, server.standin.jwks());
    let key = &jwks["keys"][0];
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], server.standin.key_id());
    assert!(key.get("d").is_none(), "the private key must not be published");
    let default_path = reqwest::get(server.url("/Venue/.well-known/jwks.json")).await.unwrap();
    assert_eq!(default_path.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn logout_and_expired_sessions_end_the_session() {
    let server = Server::default().await;
    let client = server.browser_for("alice").await;
    let xsrf = server.xsrf(&client).await;
    let response = client.post(server.url("/Account/Logout")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(response.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let dashboard = client.get(server.url("/Dashboard")).send().await.unwrap();
    assert_eq!(dashboard.status(), StatusCode::FOUND);
    assert_eq!(server.authorize(&client, &xsrf).await.status(), StatusCode::FORBIDDEN);

    let client = server.browser_for("alice").await;
    let xsrf = server.xsrf(&client).await;
    let expire = client.post(server.url("/__standin/sessions/expire")).send().await.unwrap();
    assert_eq!(expire.status(), StatusCode::NO_CONTENT);
    let response = server.authorize(&client, &xsrf).await;
    assert_eq!(error_code(response).await, Some(ErrorCode::VenueSessionExpired));
}

#[tokio::test]
async fn fail_switches_answer_500_until_reset() {
    let server = Server::default().await;
    let client = server.browser_for("alice").await;
    let xsrf = server.xsrf(&client).await;
    let set = client
        .post(server.url("/__standin/faults"))
        .json(&json!({"dashboard": "fail", "authorize": "fail"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        set.json::<Value>().await.unwrap(),
        json!({"dashboard": "fail", "authorize": "fail"})
    );
    assert_eq!(server.standin.faults().get(Hop::Dashboard), FaultMode::Fail);

    let dashboard = client.get(server.url("/Dashboard")).send().await.unwrap();
    assert_eq!(dashboard.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let authorize = server.authorize(&client, &xsrf).await;
    assert_eq!(authorize.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_code(authorize).await, Some(ErrorCode::Internal));

    let reset = client.post(server.url("/__standin/reset")).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(server.authorize(&client, &xsrf).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_fault_requests_change_nothing() {
    let server = Server::default().await;
    for body in [r#"{"dashboard":"fail","vtx":"fail"}"#, r#"{"dashboard":"slow"}"#, "fail"] {
        let response =
            browser().post(server.url("/__standin/faults")).body(body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        response.json::<ErrorBody>().await.unwrap();
    }
    let faults: Value =
        reqwest::get(server.url("/__standin/faults")).await.unwrap().json().await.unwrap();
    assert_eq!(faults, json!({"dashboard": "ok", "authorize": "ok"}));
}

#[tokio::test]
async fn a_hanging_hop_does_not_answer_until_cleared() {
    let server = Server::default().await;
    let client = server.browser_for("alice").await;
    let xsrf = server.xsrf(&client).await;
    server.standin.set_fault(Hop::Authorize, FaultMode::Hang);

    let timed_out = client
        .get(server.url("/Auth/Authorize"))
        .header("X-XSRF-TOKEN", &xsrf)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(timed_out.is_timeout(), "{timed_out}");
    // The dashboard hop is not affected.
    assert_eq!(server.xsrf(&client).await, xsrf);

    // A request held by the switch goes on as soon as the switch is cleared.
    let held = tokio::spawn({
        let (client, url, xsrf) = (client.clone(), server.url("/Auth/Authorize"), xsrf.clone());
        async move { client.get(url).header("X-XSRF-TOKEN", xsrf).send().await.unwrap().status() }
    });
    counted(&server, "/Auth/Authorize", 2).await;
    server.standin.faults().clear();
    let status = tokio::time::timeout(Duration::from_secs(5), held).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn shutdown_releases_hanging_requests() {
    let server = Server::default().await;
    server.standin.set_fault(Hop::Dashboard, FaultMode::Hang);
    let held = tokio::spawn(reqwest::get(server.url("/Dashboard")));
    counted(&server, "/Dashboard", 1).await;
    server.stop().await;
    let response = held.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn counters_count_requests_per_path_until_reset() {
    let server = Server::default().await;
    let client = server.browser_for("alice").await;
    let xsrf = server.xsrf(&client).await;
    server.xsrf(&client).await;
    server.authorize(&client, &xsrf).await;
    server.standin.set_fault(Hop::Authorize, FaultMode::Fail);
    server.authorize(&client, &xsrf).await;
    client.get(server.url("/nowhere")).send().await.unwrap();

    let counters: Value =
        client.get(server.url("/__standin/counters")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        counters,
        json!({"/Account/Login": 1, "/Dashboard": 2, "/Auth/Authorize": 2}),
        "failed requests count, unknown paths and the control API do not"
    );
    assert_eq!(server.standin.counter("/Dashboard"), 2);
    assert_eq!(server.standin.counter("/Venue/.well-known/jwks.json"), 0);

    server.standin.reset();
    assert_eq!(server.standin.counter("/Dashboard"), 0);
    assert_eq!(server.standin.faults().get(Hop::Authorize), FaultMode::Ok);
    let counters: Value =
        client.get(server.url("/__standin/counters")).send().await.unwrap().json().await.unwrap();
    assert_eq!(counters, json!({}));
}

#[tokio::test]
async fn cors_mirrors_the_origin_with_credentials_only_when_enabled() {
    let origin = "http://127.0.0.1:9";
    let config = Config { cors_allow_any_origin_with_credentials: true, ..Config::default() };
    let enabled = Server::start(config).await;
    let client = enabled.browser_for("alice").await;
    let xsrf = enabled.xsrf(&client).await;

    let preflight = client
        .request(reqwest::Method::OPTIONS, enabled.url("/Auth/Authorize"))
        .header(ORIGIN, origin)
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "x-xsrf-token")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], origin);
    assert_eq!(preflight.headers()[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    let allowed = preflight.headers()[ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
    assert!(allowed.to_ascii_lowercase().contains("x-xsrf-token"), "{allowed}");

    let response = client
        .get(enabled.url("/Auth/Authorize"))
        .header(ORIGIN, origin)
        .header("X-XSRF-TOKEN", &xsrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], origin);
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert_eq!(enabled.standin.counter("/Auth/Authorize"), 1, "preflights are not counted");

    let disabled = Server::default().await;
    let response =
        browser().get(disabled.url("/Dashboard")).header(ORIGIN, origin).send().await.unwrap();
    assert!(response.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    assert!(response.headers().get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
}

/// Waits until `path` has been requested `n` times (a held request is counted on arrival);
/// fails after ten seconds instead of hanging the suite.
async fn counted(server: &Server, path: &str, n: u64) {
    let reached = async {
        while server.standin.counter(path) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let waited = tokio::time::timeout(Duration::from_secs(10), reached).await;
    assert!(waited.is_ok(), "{path} requested {} times, not {n}", server.standin.counter(path));
}
