//! A wrong method gets the error body, on every route, whoever defined it.

use protocol::{ErrorBody, ErrorCode, FrontUuid, paths};
use reqwest::{Method, StatusCode};

use crate::util::TestServer;

#[tokio::test]
async fn a_wrong_method_answers_405_with_the_error_body_on_every_route_not_an_empty_body() {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let front = FrontUuid::new_v4();
    let register = format!("{}/{front}", paths::REGISTER);
    for (method, path) in [
        (Method::GET, paths::AUTH_REFRESH),
        (Method::GET, paths::AUTH_AUTHENTICATE),
        (Method::GET, paths::AUTH_LOGOUT),
        (Method::PUT, paths::VTX_TOKEN),
        (Method::POST, paths::JWKS),
        (Method::POST, paths::API_DASHBOARD),
        (Method::DELETE, register.as_str()),
    ] {
        let response = http.request(method.clone(), server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(response.headers().contains_key("allow"), "{method} {path}: Allow is kept");
        let text = response.text().await.unwrap();
        let body: ErrorBody = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{method} {path} answered {text:?}: {err}"));
        assert_eq!(body.code(), Some(ErrorCode::InvalidRequest), "{method} {path}");
        assert!(!body.message.is_empty());
    }
}
