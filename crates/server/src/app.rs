//! Assembles the services into one `Router` and serves it with graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Router, middleware};
use protocol::{ErrorCode, Timestamp};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};
use tower_http::services::ServeDir;
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};

use crate::config::Config;
use crate::error::{MAX_BODY_BYTES, error_response};
use crate::events::store::{EventStore, RedisEngine, SqliteEngine};
use crate::health::Draining;
use crate::metrics::TimedStore;
use crate::{api, events, health, http, metrics, openapi, tokens};

/// Shared state of all handlers; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Reverse streams, registration and direct events.
    pub events: events::Events,
    /// Token exchange and login.
    pub tokens: tokens::Tokens,
    /// Static files and CORS.
    pub config: Config,
    /// Set once shutdown begins: `/readyz` answers 503 from then on.
    pub draining: Draining,
}

impl AppState {
    /// Opens the stores (Redis if `config.redis` is set, else the embedded store in
    /// `config.data_dir`) and starts the services' background tasks. Each service has its own
    /// connections.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        // Made first: it creates the data directory and the database file with their modes.
        let db = config.open_db()?;
        let store: Arc<dyn EventStore> = match &config.redis {
            Some(target) => Arc::new(TimedStore(RedisEngine::connect(target).await?)),
            None => Arc::new(TimedStore(SqliteEngine::open(&config.db_path(), Timestamp::now())?)),
        };
        let events = events::Events::open(&config, store).await?;
        let tokens = tokens::Tokens::open(&config, db).await?;
        Ok(Self { events, tokens, config, draining: Draining::default() })
    }

    /// Drains: `/readyz` answers 503 and no stream opens from now on; the open streams end one by
    /// one over [`Config::drain`], each with a `retry:` hint (see [`events::Events::drain`]).
    /// Everything else is still served meanwhile.
    pub async fn drain(&self) {
        self.draining.start();
        self.events.drain(self.config.drain).await;
    }

    /// Ends the services: open streams end, background tasks and subscriptions stop. Requests
    /// still served afterwards are answered, but no stream opens.
    pub async fn shutdown(&self) {
        self.draining.start();
        self.events.shutdown().await;
        self.tokens.shutdown();
    }
}

/// The whole HTTP API (and the static files, if configured).
pub fn app(state: AppState) -> Router {
    // Every route comes with its OpenAPI operation (openapi.rs); the document describes the
    // routes assembled here, its own route included.
    let document = openapi::Document::default();
    let (router, spec) = openapi::frame()
        .merge(events::routes(state.events.clone()))
        .merge(tokens::routes(state.tokens.clone()))
        .merge(api::router(state.events.clone(), state.config.api_key.clone()))
        .merge(metrics::routes(state.config.metrics.clone(), state.events.clone()))
        .merge(health::router(state.clone()))
        .merge(openapi::router(document.clone()))
        .split_for_parts();
    document.set(&spec);
    let mut router = router
        // Here, once, after every route: axum applies it only to the routes added before it,
        // and a route without it answers a wrong method with an empty 405.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    router = match &state.config.static_dir {
        Some(dir) => {
            router.fallback_service(ServeDir::new(dir).append_index_html_on_directories(true))
        }
        None => router.fallback(not_found),
    };
    // Innermost: a handler that panics answers 500 `internal`, counted and with CORS headers,
    // instead of dropping the connection.
    router = router
        .layer(CatchPanicLayer::custom(panicked))
        .layer(middleware::from_fn(metrics::count_results));
    // Inside CORS, so that a cross-origin page can read the 413 and 408 answers too.
    router = router
        .layer(middleware::from_fn_with_state(state.config.body_read_timeout, http::limit_request));
    if !state.config.cors_origins.is_empty() {
        router = router.layer(cors(&state.config.cors_origins));
    }
    // Outermost first for a request: secrets are marked sensitive before anything sees them (a
    // sensitive header's value prints as `Sensitive`), the request gets its id, and the trace
    // span (headers included, at debug level) carries both.
    let request_id = HeaderName::from_static(REQUEST_ID);
    router
        .layer(SetSensitiveResponseHeadersLayer::new([header::SET_COOKIE]))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().include_headers(true))
                .on_response(DefaultOnResponse::new().include_headers(true)),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            HeaderName::from_static(protocol::api::API_KEY_HEADER),
        ]))
}

/// The request id header: kept when the client (or a proxy) sent one, else a new UUID; echoed
/// on the response.
const REQUEST_ID: &str = "x-request-id";

/// The answer to a handler that panicked: a bug, logged here (the panic message went to the
/// panic hook), never shown to the client.
fn panicked(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        "the server failed; details are in its log",
    )
}

async fn not_found() -> impl IntoResponse {
    error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, "nothing is at this path")
}

async fn method_not_allowed() -> impl IntoResponse {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidRequest,
        "this endpoint does not take that method",
    )
}

/// Allows the listed origins, with credentials (cookies), for the API's methods and headers.
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("last-event-id"),
            header::HeaderName::from_static(REQUEST_ID),
        ])
        // The reverse stream's answer to `?scope=front`, read by pages of other origins.
        .expose_headers([
            header::HeaderName::from_static(protocol::paths::STREAM_SCOPE_HEADER),
            header::HeaderName::from_static(REQUEST_ID),
        ])
}

/// Serves the app on `listener` until `shutdown` resolves; then drains (see
/// [`AppState::drain`]) and stops, ending the streams left, so shutdown does not wait for
/// clients that never hang up.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve(listener, AppState::open(config).await?, shutdown).await
}

/// Like [`run`], with state the caller opened (to publish through `state.events.hub()` or add
/// direct-event handlers first).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let services = state.clone();
    // The listener keeps accepting while draining, so that balancers read the 503 of
    // `/readyz` and streams that open meanwhile get their 503 rather than a refused connection.
    let shutdown = async move {
        shutdown.await;
        services.drain().await;
        services.shutdown().await;
    };
    let header_read_timeout = state.config.header_read_timeout;
    // `with_state(())` builds the routes once; a bare `Router` is re-specialised for every
    // connection, which costs each long-lived stream several KiB and the accept path CPU.
    let router = app(state).with_state(());
    http::serve(listener, router, header_read_timeout, shutdown).await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM, so that `kill` and service managers stop the server cleanly.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
