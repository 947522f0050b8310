//! `GET /openapi.json`: the document describes exactly the routes the router serves (so the two
//! cannot drift), in OpenAPI 3.1, with the protocol's bounds and paths.

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use protocol::{ErrorCode, FrontUuid, SessionUuid, api, paths};
use serde_json::Value;
use tower::ServiceExt as _;

use crate::util::TestServer;

/// The document as the server serves it.
async fn document(server: &TestServer) -> Value {
    let response = reqwest::get(server.url("/openapi.json")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    response.json().await.unwrap()
}

/// Every (method, path template) the document lists.
fn operations(document: &Value) -> Vec<(Method, String)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            operations.push((method, path.clone()));
        }
    }
    operations
}

/// `template` with each `{parameter}` filled in with a value of its kind.
fn fill(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{frontUuid}" => FrontUuid::new_v4().to_string(),
            "{sessionUuid}" => SessionUuid::new_v4().to_string(),
            "{eventName}" => "echo".to_owned(),
            other => {
                assert!(
                    !other.starts_with('{'),
                    "no value for the parameter {other} of {template}"
                );
                other.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_operation_reaches_its_own_route_not_the_fallback() {
    let server = TestServer::start().await;
    let document = document(&server).await;
    // Which route answered: axum's matched path, which the fallback has none of.
    let app = server::app(server.state.clone()).layer(middleware::from_fn(
        |request: Request, next: Next| async move {
            let matched = request.extensions().get::<MatchedPath>().cloned();
            let mut response = next.run(request).await;
            if let Some(matched) = matched {
                response.extensions_mut().insert(matched);
            }
            response
        },
    ));
    let operations = operations(&document);
    assert!(operations.len() >= 17, "{operations:?}");
    for (method, template) in operations {
        let request = Request::builder()
            .method(method.clone())
            .uri(fill(&template))
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let matched = response.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
        assert_eq!(matched, Some(template.as_str()), "{method} {template} reached another route");
        assert_ne!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {template}");
    }
}

#[tokio::test]
async fn every_route_is_registered_with_its_operation_never_with_a_plain_route_call() {
    // The router's routes cannot be listed, but they can only come from the sources: every one
    // must be a `.routes(routes!(handler))` of an annotated handler, which puts it in the
    // document too. The one exception is an alias of a documented operation.
    let aliases = ["{STREAM_ACTIVATE}/{{*rest}}"];
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut plain = Vec::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                let routes = [".route(", ".route_service(", ".nest(", ".nest_service("];
                if code.starts_with("//") || !routes.iter().any(|call| code.contains(call)) {
                    continue;
                }
                if !aliases.iter().any(|alias| code.contains(alias)) {
                    plain.push(format!("{}:{}: {code}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(
        plain.is_empty(),
        "routes outside the OpenAPI document: annotate the handler with #[utoipa::path] and \
         register it with .routes(routes!(handler)) (see src/openapi.rs):\n{}",
        plain.join("\n")
    );
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_the_protocols_paths_bounds_and_error_codes() {
    let server = TestServer::start().await;
    let document = document(&server).await;
    assert_eq!(document["openapi"], "3.1.0");
    let documented: Vec<String> = operations(&document).into_iter().map(|(_, p)| p).collect();
    for path in [
        paths::REGISTER,
        paths::STREAM_OPEN,
        paths::STREAM_ACTIVATE,
        paths::DIRECT,
        paths::VTX_TOKEN,
        paths::JWKS,
        paths::AUTH_AUTHENTICATE,
        paths::AUTH_REFRESH,
        paths::AUTH_LOGOUT,
        paths::API_DASHBOARD,
        paths::API_REPORTS,
        paths::API_PUBLISH,
        paths::HEALTHZ,
        paths::READYZ,
        paths::METRICS,
    ] {
        let under = |p: &String| p == path || p.starts_with(&format!("{path}/"));
        assert!(documented.iter().any(under), "{path} is not documented");
    }
    let publish = &document["components"]["schemas"]["PublishRequest"]["properties"];
    assert_eq!(publish["name"]["maxLength"], api::MAX_EVENT_NAME_CHARS);
    assert_eq!(publish["expiresInMs"]["maximum"], api::MAX_EXPIRES_IN_MS);
    assert_eq!(publish["idempotencyKey"]["maxLength"], api::MAX_IDEMPOTENCY_KEY_CHARS);
    let codes = &document["components"]["schemas"]["ErrorCode"]["enum"];
    let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        codes.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect::<Vec<_>>(),
        all
    );
    // Each operation lists its errors with their codes; a 500 `internal` answer at least.
    for (method, template) in operations(&document) {
        let responses = &document["paths"][&template][method.as_str().to_lowercase()]["responses"];
        let codes = &responses["500"]["content"]["application/json"]["schema"];
        let text = codes.to_string();
        assert!(text.contains("\"internal\""), "{method} {template}: {text}");
    }
}

#[tokio::test]
async fn the_publish_operation_lists_the_codes_the_server_api_answers_with() {
    let server = TestServer::start().await;
    let document = document(&server).await;
    let responses = &document["paths"][paths::API_PUBLISH]["post"]["responses"];
    let codes = |status: &str| -> Vec<String> {
        let error =
            &responses[status]["content"]["application/json"]["schema"]["properties"]["error"];
        error["enum"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(codes("401"), ["invalid_api_key"]);
    assert_eq!(codes("404"), ["not_found", "front_not_registered", "session_not_found"]);
    assert_eq!(codes("409"), ["idempotency_in_progress"]);
    assert!(codes("400").contains(&"invalid_request".to_owned()));
    let security = &document["paths"][paths::API_PUBLISH]["post"]["security"];
    assert_eq!(security[0]["apiKey"], serde_json::json!([]));
    assert_eq!(document["components"]["securitySchemes"]["apiKey"]["name"], "X-API-Key");
}
