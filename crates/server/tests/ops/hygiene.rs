//! Request hygiene: every answer carries an `x-request-id` (the client's own, or a new one),
//! secrets in headers never reach the trace, and a handler that panics answers 500 JSON.

use protocol::SessionUuid;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE};
use serde_json::json;

use crate::events::registered;
use crate::util::{Process, TestServer, within};

#[tokio::test]
async fn every_answer_carries_a_request_id_and_echoes_the_clients() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let made = http.get(server.url("/healthz")).send().await.unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap();
    assert!(id.parse::<SessionUuid>().is_ok(), "a new UUID: {id}");

    let echoed = http.get(server.url("/nothing-here")).header("x-request-id", "abc-123");
    let echoed = echoed.send().await.unwrap();
    assert_eq!(echoed.status(), StatusCode::NOT_FOUND);
    assert_eq!(echoed.headers()["x-request-id"], "abc-123", "errors carry it too");
}

// The server binary, as operators run it with request tracing on: the trace is read from its
// output, where no other test's tracing can interfere.
#[tokio::test]
async fn authorization_cookies_and_the_api_key_are_sensitive_in_traces() {
    let mut server = Process::start_logging(&[], "warn,tower_http=debug").await;
    let url = server.url.clone();
    let answer = reqwest::Client::new()
        .post(format!("{url}/api/auth/refresh"))
        .header(AUTHORIZATION, "Bearer secret-bearer-value")
        .header(COOKIE, "refreshToken=secret-cookie-value")
        .header("x-api-key", "secret-api-key")
        .header("x-visible", "visible-value")
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_client_error());
    // The request's span (with its headers) is on every line the trace writes for it; read up
    // to the line of its response.
    let mut log = String::new();
    within(async {
        loop {
            let line = server.next_output_line().await.expect("the server traced the request");
            log.push_str(&line);
            log.push('\n');
            if line.contains("visible-value") && line.contains("finished processing request") {
                return;
            }
        }
    })
    .await;
    server.kill();
    assert!(log.contains("Sensitive"), "{log}");
    for secret in ["secret-bearer-value", "secret-cookie-value", "secret-api-key"] {
        assert!(!log.contains(secret), "{secret} leaked into the trace: {log}");
    }
}

#[tokio::test]
async fn a_panicking_handler_answers_500_json_and_the_server_goes_on() {
    let server = TestServer::start().await;
    server.state.events.handle("boom", |_event, _hub| async move {
        panic!("a handler bug");
    });
    let front = registered(&server).await;
    let stream = front.open(SessionUuid::new_v4(), None).await.unwrap().activate().await.unwrap();
    let event = stream.direct_event("boom", json!({}), false).unwrap();
    let answer = reqwest::Client::new()
        .post(server.url("/web-event-direct/boom"))
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "internal");
    assert_eq!(stream.send("echo", json!({"after": "the panic"})).await.map(|_| ()).ok(), Some(()));
}
