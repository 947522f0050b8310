//! The permission guard for application routes, and the two demo routes it guards.
//!
//! [`RequirePermission`] is a tower layer, so it works on routes of any state type:
//!
//! ```no_run
//! # fn demo(tokens: server::tokens::Tokens) -> axum::Router {
//! use axum::{Extension, Router, routing::get};
//! use protocol::tokens::AccessClaims;
//! use server::tokens::RequirePermission;
//!
//! async fn reports(Extension(claims): Extension<AccessClaims>) -> String {
//!     format!("reports for {}", claims.user_id)
//! }
//! Router::new()
//!     .route("/api/reports", get(reports))
//!     .route_layer(RequirePermission::new(&tokens, "CanViewReports"))
//! # }
//! ```
//!
//! No bearer, a bad or an expired access token: `401` (`invalid_token` / `token_expired`). A
//! good token without the permission: `403 {"error": "access_denied", "message": "Access
//! Denied"}`. Otherwise the request goes on with the token's [`AccessClaims`] in its extensions.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Extension;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use protocol::tokens::{AccessClaims, ProtectedResource};
use tower::{Layer, Service};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Tokens;
use super::access::AccessTokens;
use super::error::TokenError;
use super::vtx::bearer;
use crate::openapi::errors;

/// A layer that lets a request through only with an access token that grants `permission`.
#[derive(Debug, Clone)]
pub struct RequirePermission {
    access: AccessTokens,
    permission: Arc<str>,
}

impl RequirePermission {
    /// Requires `permission` (e.g. `"CanViewReports"`) of the access tokens `tokens` issues.
    pub fn new(tokens: &Tokens, permission: impl Into<Arc<str>>) -> Self {
        Self { access: tokens.inner.access.clone(), permission: permission.into() }
    }

    /// `token`: the request's bearer token (owned: a request is not `Sync`, so no reference to
    /// it may be held across the key ring's `.await`).
    async fn check(&self, token: Option<String>) -> Result<AccessClaims, TokenError> {
        let token = token.ok_or_else(|| {
            TokenError::InvalidToken(
                "send the access token as Authorization: Bearer <JWT>".to_owned(),
            )
        })?;
        let claims = self.access.verify(&token).await?;
        if claims.permissions.iter().any(|p| **p == *self.permission) {
            Ok(claims)
        } else {
            Err(TokenError::AccessDenied)
        }
    }
}

impl<S> Layer<S> for RequirePermission {
    type Service = RequirePermissionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequirePermissionService { guard: self.clone(), inner }
    }
}

/// The service [`RequirePermission`] wraps around a route.
#[derive(Debug, Clone)]
pub struct RequirePermissionService<S> {
    guard: RequirePermission,
    inner: S,
}

impl<S> Service<Request> for RequirePermissionService<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The service that was polled ready is the one that must be called; a fresh clone
        // stays behind for the next request (tower's usual dance).
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        let token = bearer(request.headers()).map(str::to_owned);
        Box::pin(async move {
            match guard.check(token).await {
                Ok(claims) => {
                    request.extensions_mut().insert(claims);
                    ready.call(request).await
                }
                Err(err) => Ok(err.into_response()),
            }
        })
    }
}

/// `GET /api/dashboard` (CanAccessDashboard) and `GET /api/reports` (CanViewReports).
pub(crate) fn demo_routes(tokens: &Tokens) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(dashboard))
        .route_layer(RequirePermission::new(tokens, "CanAccessDashboard"))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(reports))
                .route_layer(RequirePermission::new(tokens, "CanViewReports")),
        )
}

errors! {
    /// The errors of a route behind the permission guard.
    GuardErrors {
        401: InvalidToken, TokenExpired;
        403: AccessDenied;
    }
}

/// A demo route behind the `CanAccessDashboard` permission
#[utoipa::path(
    get,
    path = "/api/dashboard",
    tag = "demo",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The resource and who asked for it.", body = ProtectedResource),
        GuardErrors,
    )
)]
async fn dashboard(Extension(claims): Extension<AccessClaims>) -> axum::Json<ProtectedResource> {
    axum::Json(resource("dashboard", "CanAccessDashboard", claims))
}

/// A demo route behind the `CanViewReports` permission
#[utoipa::path(
    get,
    path = "/api/reports",
    tag = "demo",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The resource and who asked for it.", body = ProtectedResource),
        GuardErrors,
    )
)]
async fn reports(Extension(claims): Extension<AccessClaims>) -> axum::Json<ProtectedResource> {
    axum::Json(resource("reports", "CanViewReports", claims))
}

fn resource(name: &str, permission: &str, claims: AccessClaims) -> ProtectedResource {
    ProtectedResource {
        resource: name.to_owned(),
        permission: permission.to_owned(),
        user_id: claims.user_id,
        sponsor_id: claims.sponsor_id,
        subscriber_id: claims.subscriber_id,
    }
}
