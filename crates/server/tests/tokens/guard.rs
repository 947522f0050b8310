//! The permission guard on the demo routes: a good token with the permission passes, a good
//! token without it gets `403 {"message": "Access Denied"}`, anything else `401`.

use std::time::Duration;

use protocol::tokens::ProtectedResource;
use reqwest::StatusCode;

use super::harness::{Auth, Backend, SPONSOR, USER, expect_error};

#[tokio::test]
async fn each_demo_route_wants_its_permission() {
    let auth = Auth::start(Backend::embedded()).await;
    let login = auth.login(&["CanAccessDashboard"]).await;

    let response = auth.get("/api/dashboard", Some(&login.access)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: ProtectedResource = response.json().await.unwrap();
    assert_eq!(body.resource, "dashboard");
    assert_eq!(body.permission, "CanAccessDashboard");
    assert_eq!((body.user_id.as_str(), body.sponsor_id.as_str()), (USER, SPONSOR));

    let message = expect_error(
        auth.get("/api/reports", Some(&login.access)).await,
        StatusCode::FORBIDDEN,
        "access_denied",
    )
    .await;
    assert_eq!(message, "Access Denied");

    let both = auth.login(&["CanAccessDashboard", "CanViewReports"]).await;
    let response = auth.get("/api/reports", Some(&both.access)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<ProtectedResource>().await.unwrap().resource, "reports");
}

#[tokio::test]
async fn no_bearer_or_a_bad_one_is_401() {
    let auth = Auth::start(Backend::embedded()).await;
    let response = auth.get("/api/dashboard", None).await;
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    expect_error(
        auth.get("/api/dashboard", Some("garbage")).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let basic = auth
        .http
        .get(auth.url("/api/dashboard"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    expect_error(basic, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test]
async fn an_access_token_expires_after_fifteen_minutes_by_the_injected_clock() {
    let auth = Auth::start(Backend::embedded()).await;
    let login = auth.login(&["CanAccessDashboard"]).await;
    auth.advance(Duration::from_secs(15 * 60 - 1));
    assert_eq!(auth.get("/api/dashboard", Some(&login.access)).await.status(), StatusCode::OK);
    auth.advance(Duration::from_secs(1));
    expect_error(
        auth.get("/api/dashboard", Some(&login.access)).await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
    )
    .await;
}

#[tokio::test]
async fn the_guard_layer_works_on_routes_of_another_state() {
    use axum::routing::get;
    use axum::{Extension, Router};
    use protocol::tokens::AccessClaims;
    use server::tokens::RequirePermission;
    use tower::ServiceExt as _;

    #[derive(Clone)]
    struct AppOwnState(&'static str);

    let auth = Auth::start(Backend::embedded()).await;
    let login = auth.login(&["CanExport"]).await;
    let app: Router = Router::new()
        .route(
            "/export",
            get(
                |axum::extract::State(s): axum::extract::State<AppOwnState>,
                 Extension(c): Extension<AccessClaims>| async move {
                    format!("{} {}", s.0, c.user_id)
                },
            ),
        )
        .route_layer(RequirePermission::new(auth.tokens(), "CanExport"))
        .with_state(AppOwnState("export for"));
    let request = axum::http::Request::get("/export")
        .header("authorization", format!("Bearer {}", login.access))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], format!("export for {USER}").as_bytes());
}
