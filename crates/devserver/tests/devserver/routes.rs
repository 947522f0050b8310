//! The development server's routes over real HTTP: one origin for the venue stand-in, the
//! backend and the site; CORS for test origins; the VTX switch and counter; controls only when
//! asked for.

use devserver::{OriginPattern, VtxMode};
use reqwest::StatusCode;
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN, AUTHORIZATION, ORIGIN,
};
use serde_json::{Value, json};

use crate::util::start;

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[tokio::test]
async fn one_origin_serves_the_venue_the_backend_and_the_site() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("sw.js"), "// shim").unwrap();
    let server = start(|c| c.server.static_dir = Some(site.path().to_owned())).await;
    let http = client();
    let get = |path: &str| http.get(format!("{}{path}", server.url)).send();

    let dashboard = get("/Dashboard").await.unwrap();
    assert_eq!(dashboard.status(), StatusCode::FOUND, "the stand-in sends strangers to its login");
    let sw = get("/sw.js").await.unwrap();
    assert_eq!(sw.status(), StatusCode::OK);
    assert!(sw.headers()["content-type"].to_str().unwrap().contains("javascript"));
    let vtx = get("/vtx/token").await.unwrap();
    assert_eq!(vtx.status(), StatusCode::UNAUTHORIZED, "the backend wants a venue JWT");
    let jwks = get(venue_standin::DEFAULT_JWKS_PATH).await.unwrap().json::<Value>().await.unwrap();
    assert!(jwks["keys"].is_array());
    server.stop().await;
}

#[tokio::test]
async fn the_backend_exchanges_the_stand_ins_venue_jwts() {
    let server = start(|_| {}).await;
    let token = server.dev.standin().issue_token("alice").unwrap();
    let answer = client()
        .get(format!("{}/vtx/token", server.url))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(server.dev.vtx().requests(), 1);
    server.stop().await;
}

#[tokio::test]
async fn cors_answers_matching_origins_with_credentials_only() {
    let server = start(|c| {
        c.cors_origins = vec!["http://127.0.0.1:*".parse::<OriginPattern>().unwrap()];
    })
    .await;
    let http = client();
    let preflight = |origin: &'static str, path: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{}{path}", server.url))
            .header(ORIGIN, origin)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization, x-xsrf-token")
            .send()
    };
    for path in ["/vtx/token", "/Auth/Authorize"] {
        let ok = preflight("http://127.0.0.1:40123", path).await.unwrap();
        assert_eq!(ok.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "http://127.0.0.1:40123", "{path}");
        assert_eq!(ok.headers()[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        let refused = preflight("http://evil.example", path).await.unwrap();
        assert!(refused.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "{path}");
    }
    assert_eq!(server.dev.vtx().requests(), 0, "preflights are not counted");
    server.stop().await;
}

#[tokio::test]
async fn the_vtx_switch_and_counter_work_over_http() {
    let server = start(|c| c.test_controls = true).await;
    let http = client();
    let token = server.dev.standin().issue_token("alice").unwrap();
    let exchange = || {
        http.get(format!("{}/vtx/token", server.url))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
    };
    let set = http
        .post(format!("{}/__devserver/faults", server.url))
        .header("Content-Type", "text/plain")
        .body(r#"{"vtx": "unauthorized-once"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set.json::<Value>().await.unwrap(), json!({"vtx": "unauthorized-once"}));
    assert_eq!(exchange().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(exchange().await.unwrap().status(), StatusCode::OK);
    let counters: Value = http
        .get(format!("{}/__devserver/counters", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters, json!({"/vtx/token": 2}));

    let bad =
        http.post(format!("{}/__devserver/faults", server.url)).body(r#"{"vtx": "slow"}"#).send();
    assert_eq!(bad.await.unwrap().status(), StatusCode::BAD_REQUEST);

    server.dev.vtx().set_mode(VtxMode::Fail);
    server.dev.standin().set_fault(venue_standin::Hop::Dashboard, venue_standin::FaultMode::Fail);
    let reset = http.post(format!("{}/__devserver/reset", server.url)).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::NO_CONTENT);
    assert_eq!(server.dev.vtx().mode(), VtxMode::Ok);
    assert_eq!(server.dev.vtx().requests(), 0);
    assert_eq!(
        server.dev.standin().faults().get(venue_standin::Hop::Dashboard),
        venue_standin::FaultMode::Ok
    );
    server.stop().await;
}

#[tokio::test]
async fn control_apis_exist_only_when_asked_for() {
    let server = start(|_| {}).await;
    let http = client();
    for path in ["/__devserver/counters", "/__standin/counters"] {
        let answer = http.get(format!("{}{path}", server.url)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_held_requests() {
    let server = start(|_| {}).await;
    server.dev.vtx().set_mode(VtxMode::Hang);
    let url = format!("{}/vtx/token", server.url);
    let held = tokio::spawn(async move { client().get(url).send().await.map(|r| r.status()) });
    // Held: it reached the switch (counted) and has no answer.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.dev.vtx().requests() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the request never reached /vtx/token");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!held.is_finished(), "a hang switch answered: {:?}", held.await);
    tokio::time::timeout(std::time::Duration::from_secs(10), server.stop()).await.unwrap();
    // Let go at shutdown: the switch goes back to normal, so the backend answers it (no venue
    // JWT: 401) before the server stops, instead of the shutdown waiting for it for ever.
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), held).await;
    let status = answer.expect("not left hanging").unwrap().expect("an answer");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Registers a fresh front over HTTP; returns its UUID.
async fn register_front(http: &reqwest::Client, url: &str) -> protocol::FrontUuid {
    let front = protocol::FrontUuid::new_v4();
    let key = protocol::KeyPair::generate().public;
    let answer = http
        .post(format!("{url}/web-event-front-reg/{front}"))
        .json(&json!({ "publicKey": key, "frontUuid": front }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    front
}

async fn control(http: &reqwest::Client, url: &str, path: &str, body: Value) -> reqwest::Response {
    http.post(format!("{url}/__devserver/{path}")).body(body.to_string()).send().await.unwrap()
}

#[tokio::test]
async fn emit_and_mint_reach_the_backend() {
    let server = start(|c| c.test_controls = true).await;
    let http = client();
    let front = register_front(&http, &server.url).await;
    let emit = json!({ "frontUuid": front, "name": "hello", "data": {"n": 1} });
    let published: Value = control(&http, &server.url, "emit", emit).await.json().await.unwrap();
    assert!(published["id"].is_i64() && published["uuid"].is_string(), "{published}");
    let unknown = json!({ "frontUuid": protocol::FrontUuid::new_v4(), "name": "x", "data": 1 });
    assert!(control(&http, &server.url, "emit", unknown).await.status().is_client_error());

    let minted =
        control(&http, &server.url, "mint", json!({ "user": "carol", "validForSecs": 60 }));
    let minted: Value = minted.await.json().await.unwrap();
    let token = minted["token"].as_str().unwrap();
    let login = http
        .post(format!("{}{}", server.url, protocol::paths::AUTH_AUTHENTICATE))
        .header("Origin", &server.url)
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK, "{:?}", login.text().await);
    server.stop().await;
}

#[tokio::test]
async fn restart_takes_the_backend_down_and_back_with_or_without_its_store() {
    let server = start(|c| c.test_controls = true).await;
    let http = client();
    let front = register_front(&http, &server.url).await;
    let emit = json!({ "frontUuid": front, "name": "n", "data": 1 });
    let wait_up = || async {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            let answer = control(&http, &server.url, "emit", emit.clone()).await;
            if answer.status() != StatusCode::SERVICE_UNAVAILABLE {
                return answer.status();
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the backend did not come back");
    };

    // Down for two seconds: the backend is down from before the answer, and the one request
    // below takes milliseconds, so the 503 does not depend on the machine's load.
    let answer = control(&http, &server.url, "restart", json!({ "downMs": 2_000 })).await;
    assert_eq!(answer.json::<Value>().await.unwrap(), json!({ "restarting": true }));
    let down = http.get(format!("{}/vtx/token", server.url)).send().await.unwrap();
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(server.dev.standin().issue_token("alice").is_ok(), "the stand-in stays up");
    assert_eq!(wait_up().await, StatusCode::OK, "the front survived a plain restart");

    control(&http, &server.url, "restart", json!({ "wipe": true, "downMs": 50 })).await;
    assert!(wait_up().await.is_client_error(), "a wiped store forgot the front");
    server.stop().await;
}
