//! The OpenAPI 3.1 document of the HTTP API, generated from the Rust types and served at
//! `GET /openapi.json`.
//!
//! Every handler carries a `#[utoipa::path]` annotation and is routed through
//! `utoipa_axum::routes!`, which registers the route and its operation from that one
//! annotation (path, methods, parameters, bodies, answers). We use utoipa-axum rather than one
//! `#[derive(OpenApi)]` listing the handlers because then the router and the document cannot
//! drift: a route exists in both or in neither (a tidy test refuses a plain `.route(` call,
//! and another requests every documented operation and checks that it reaches its route).
//! Adding an endpoint is one annotation and one `.routes(routes!(handler))`.
//!
//! Each operation lists its error answers with the stable codes each status can carry
//! ([`errors!`]): the schema of such an answer is the error body with `error` restricted to
//! those codes, so a client generator, a reader and schemathesis all see the same contract.
//! Request and answer bodies are the wire types of `protocol`, whose schema derives are behind
//! its `openapi` feature.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::messages::AuthenticateChallenge;
use protocol::tokens::OAuthErrorBody;
use protocol::{DirectMeta, ErrorBody, ErrorCode};
use utoipa::openapi::response::{Response as ApiResponse, ResponseBuilder};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::error_response;

/// The document's frame: what no handler annotation says.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "websession server",
        description = "Front registration, encrypted reverse streams (SSE), direct events, the \
            VTX token exchange, one-time-token login with rotating refresh tokens, the server \
            API for the application's backend, health and metrics.\n\n\
            Every error answer is `{\"error\": \"<stable_code>\", \"message\": \"...\"}` (the \
            `ErrorBody` schema; the codes are the `ErrorCode` schema); each operation lists the \
            codes each of its statuses can carry. Two answers can come from any operation: \
            `413 body_too_large` when a request declares a body over 64 KiB, and `500 internal` \
            on a bug (details in the server's log). A method a path does not take answers \
            `405 invalid_request`."
    ),
    // Besides those the operations reference: the code list, the direct event's metadata (the
    // request body is the generic `Envelope`) and the first frame of a reverse stream.
    components(schemas(ErrorBody, ErrorCode, DirectMeta, AuthenticateChallenge)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "events", description = "Front registration, reverse streams and direct events (TeqFW web-event compatible)."),
        (name = "tokens", description = "The VTX token exchange and its signing keys."),
        (name = "login", description = "One-time-token login, refresh and logout."),
        (name = "demo", description = "Demo routes behind the permission guard."),
        (name = "server-api", description = "The server API for the application's own backend, behind X-API-Key."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
    )
)]
struct Frame;

/// The security schemes the operations name: the server API's key and bearer JWTs.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            API_KEY_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The key on the first line of the server's --api-key-file.",
            ))),
        );
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

/// The name of the server API's security scheme.
pub(crate) const API_KEY_SCHEME: &str = "apiKey";
/// The name of the bearer-JWT security scheme (venue JWTs, access tokens).
pub(crate) const BEARER_SCHEME: &str = "bearer";

/// An empty router carrying the document's frame, for the routers of the services to merge into.
pub(crate) fn frame() -> OpenApiRouter {
    OpenApiRouter::with_openapi(Frame::openapi())
}

/// The serialised document, set once the whole router is assembled (the route that serves it
/// is part of what it describes).
#[derive(Clone, Debug, Default)]
pub(crate) struct Document(Arc<OnceLock<String>>);

impl Document {
    /// Fixes the document; later calls keep the first.
    pub(crate) fn set(&self, openapi: &utoipa::openapi::OpenApi) {
        // Serialising the document's own types cannot fail; an empty one would say so at once.
        let _ = self.0.set(openapi.to_json().unwrap_or_default());
    }
}

/// `GET /openapi.json`.
pub(crate) fn router(document: Document) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(openapi_json)).with_state(document)
}

/// This document: the OpenAPI 3.1 description of every endpoint of the server.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json",
            body = inline(serde_json::Value)),
        Always,
    )
)]
async fn openapi_json(State(document): State<Document>) -> Response {
    let Some(json) = document.0.get() else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "the OpenAPI document is not assembled yet",
        );
    };
    let content_type = HeaderValue::from_static("application/json");
    ([(header::CONTENT_TYPE, content_type)], json.clone()).into_response()
}

/// One event of a reverse stream, as a Server-Sent-Events reader sees it (the schema of each
/// event of the `text/event-stream` answer).
pub(crate) enum StreamEvent {}

impl PartialSchema for StreamEvent {
    fn schema() -> RefOr<Schema> {
        let string = |description: &str| {
            ObjectBuilder::new().schema_type(Type::String).description(Some(description))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "One Server-Sent Event. The first has `event: authenticate` and as `data` an \
                 `AuthenticateChallenge`; `event: events_lost` (data: an `ErrorBody` with code \
                 `events_lost`) says that a resume could not be exact; every other event has an \
                 `id` and as `data` `{\"data\", \"meta\"}`. Comments (`: heartbeat`) keep the \
                 connection alive.",
            ))
            .property("event", string("`authenticate`, `events_lost`, or absent (`message`)."))
            .property("data", string("JSON text."))
            .property("id", string("The event's id, for `Last-Event-ID`."))
            .property("retry", ObjectBuilder::new().schema_type(Type::Integer))
            .into()
    }
}

impl ToSchema for StreamEvent {}

/// `GET /.well-known/jwks.json`'s answer (RFC 7517): jsonwebtoken's `JwkSet`, described here
/// because its type is not ours.
pub(crate) enum Jwks {}

impl PartialSchema for Jwks {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let key = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("A public signing key (RFC 7517): OKP, Ed25519, EdDSA."))
            .property("kty", string())
            .required("kty")
            .property("crv", string())
            .property("x", string())
            .property("kid", string())
            .property("alg", string())
            .property("use", string());
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("keys", ArrayBuilder::new().items(key))
            .required("keys")
            .into()
    }
}

impl ToSchema for Jwks {}

/// The error answers of an operation as `(status, codes)`; with them, the two every operation
/// can give (see [`Frame`]): `413 body_too_large` and `500 internal`.
pub(crate) fn error_responses(
    errors: &[(u16, &[ErrorCode])],
) -> BTreeMap<String, RefOr<ApiResponse>> {
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    let always: [(u16, &[ErrorCode]); 2] =
        [(413, &[ErrorCode::BodyTooLarge]), (500, &[ErrorCode::Internal])];
    for (status, codes) in errors.iter().chain(always.iter()) {
        let listed = by_status.entry(*status).or_default();
        for code in *codes {
            if !listed.contains(code) {
                listed.push(*code);
            }
        }
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
            let response = ResponseBuilder::new()
                .description(describe(status, &codes))
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(error_body(&codes))).build(),
                )
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
}

/// "`code`, `code`" for a response's description.
fn describe(status: u16, codes: &[ErrorCode]) -> String {
    let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let codes: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
    format!("{reason}: {}", codes.join(", "))
}

/// The error body with `error` restricted to `codes`.
fn error_body(codes: &[ErrorCode]) -> Schema {
    let code = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(codes.iter().map(|c| c.as_str())));
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("The error body (`ErrorBody`) with the codes of this answer."))
            .property("error", code)
            .required("error")
            .property("message", ObjectBuilder::new().schema_type(Type::String))
            .required("message")
            .build(),
    )
}

/// Declares a type whose `IntoResponses` are the listed error answers, for a
/// `#[utoipa::path(responses(…))]`; `with BODY_ERRORS` adds those of a JSON request body:
///
/// ```text
/// errors! {
///     /// The errors of `POST /api/events/publish`.
///     PublishErrors with BODY_ERRORS {
///         401: InvalidApiKey;
///         404: NotFound, FrontNotRegistered;
///     }
/// }
/// ```
macro_rules! errors {
    (
        $(#[$doc:meta])* $name:ident $(with $extra:ident)?
        { $($status:literal : $($code:ident),+ ;)+ }
    ) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                #[allow(unused_mut)]
                let mut errors: Vec<(u16, &[protocol::ErrorCode])> =
                    vec![$(($status, &[$(protocol::ErrorCode::$code),+])),+];
                $(errors.extend_from_slice(&$crate::openapi::$extra);)?
                $crate::openapi::error_responses(&errors)
            }
        }
    };
}
pub(crate) use errors;

/// The answers of a request body that is not the JSON an endpoint takes (`Json` extractor):
/// `400 invalid_json` (`invalid_uuid`, `invalid_key` when a field is a malformed UUID or key),
/// `415`, `413`, `408`.
pub(crate) const BODY_ERRORS: [(u16, &[ErrorCode]); 4] = [
    (400, &[ErrorCode::InvalidJson, ErrorCode::InvalidUuid, ErrorCode::InvalidKey]),
    (408, &[ErrorCode::RequestTimeout]),
    (413, &[ErrorCode::BodyTooLarge]),
    (415, &[ErrorCode::UnsupportedMediaType]),
];

/// Only the errors every operation can give.
pub(crate) struct Always;

impl utoipa::IntoResponses for Always {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        error_responses(&[])
    }
}

/// The answers of `POST /vtx/token` besides success: RFC 6749 §5.2 error bodies, except the
/// request limits' `413` and a bug's `500`, which may also be the app's error body.
pub(crate) struct OAuthErrors;

impl utoipa::IntoResponses for OAuthErrors {
    fn responses() -> BTreeMap<String, RefOr<ApiResponse>> {
        let oauth = |codes: &[&str]| {
            let mut schema = match OAuthErrorBody::schema() {
                RefOr::T(Schema::Object(object)) => object,
                _ => ObjectBuilder::new().build(),
            };
            let code =
                ObjectBuilder::new().schema_type(Type::String).enum_values(Some(codes.to_vec()));
            schema.properties.insert("error".to_owned(), code.into());
            Schema::Object(schema)
        };
        let json = |schema: Schema| ContentBuilder::new().schema(Some(schema)).build();
        let mut responses = error_responses(&[]);
        let bad = ResponseBuilder::new()
            .description("RFC 6749 §5.2: `invalid_request` (also an invalid, expired or unprovisioned subject token), `unsupported_grant_type`.")
            .content("application/json", json(oauth(&["invalid_request", "unsupported_grant_type"])))
            .build();
        let unavailable = ResponseBuilder::new()
            .description("RFC 6749 §5.2: `temporarily_unavailable` (the venue's keys or a store).")
            .content("application/json", json(oauth(&["temporarily_unavailable"])))
            .build();
        let failed = ResponseBuilder::new()
            .description("`server_error` (RFC 6749 §5.2), or `internal` in the app's error body.")
            .content(
                "application/json",
                json(Schema::OneOf(
                    OneOfBuilder::new()
                        .item(oauth(&["server_error"]))
                        .item(error_body(&[ErrorCode::Internal]))
                        .build(),
                )),
            )
            .build();
        responses.insert("400".to_owned(), RefOr::T(bad));
        responses.insert("503".to_owned(), RefOr::T(unavailable));
        responses.insert("500".to_owned(), RefOr::T(failed));
        responses
    }
}
