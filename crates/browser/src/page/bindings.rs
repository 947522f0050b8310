//! The JavaScript face of the page client: the `Front` and `Auth` classes and the worker
//! functions, with TypeScript types for every shape the package knows. JavaScript values are
//! read and checked here, once; everything behind this file is typed Rust.

use std::rc::Rc;

use js_sys::{Function, Promise};
use protocol::event::ReverseEvent;
use protocol::{EventMeta, SessionUuid};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use web_sys::Request;

use super::auth::{Auth, AuthOptions};
use super::error::{ERROR_NAME, PageError};
use super::front::{Front, FrontOptions, RequestOptions, SendOptions};
use super::js;
use super::tokens::{self, TokenOptions, WorkerMessages};

/// Written by hand for the doc comments; `ts_tidy.rs` checks it against the Rust types.
#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** The state of the reverse stream, as this tab sees it. */
export type StreamState = "connecting" | "authenticating" | "active" | "reconnecting" | "closed";
/** This tab's part in sharing one stream between the tabs of the front. */
export type StreamRole = "solo" | "leader" | "follower";
/** What happened to a direct event: accepted by the backend, or waiting in the offline queue. */
export type Delivery = "sent" | "queued";
/** Removes the listener it was returned for. */
export type Unsubscribe = () => void;

/** Options of `Front.connect` and `Front.open`. */
export interface FrontOptions {
  /** The backend's origin, e.g. `"https://api.example.com"`. Default: this page's origin. */
  base?: string;
  /** Share one stream between the tabs of this front (see the README). Default `true`. */
  share?: boolean;
  /** The backend's heartbeat interval in ms; two missed heartbeats mean a dead connection. `0` turns the watchdog off. Default 15000. */
  heartbeatMs?: number;
  /** Reconnect back-off in ms, doubled per failure with jitter. Default `{ initialMs: 500, maxMs: 30000 }`. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Default timeout of `request` in ms. Default 8000. */
  requestTimeoutMs?: number;
  /** How long to wait for a Web Lock (the queue's, the stream's leadership) before going on without it, so that a holder that never lets go cannot freeze the stream; `0` waits for ever. Default 10000. */
  lockTimeoutMs?: number;
  /** Use this session UUID instead of the tab's one from `sessionStorage` (tests, embedding). */
  sessionUuid?: string;
}

/** The metadata of a back → front event. */
export interface EventMeta {
  name: string;
  /** Unique per event; an event seen before is not delivered again. */
  uuid: string;
  /** ISO-8601 with milliseconds. */
  published: string;
  expired?: string;
  backUuid?: string;
  frontUuid?: string;
  /** The tab the event is for; absent when it is for every tab of the front. */
  sessionUuid?: string;
  stamp?: string;
  /** The data was sealed; `data` is already decrypted. */
  encrypted?: boolean;
  /** The `meta.uuid` of the direct event this one answers. */
  requestUuid?: string;
}

/** A back → front event as listeners get it. */
export interface EventMessage {
  name: string;
  data: unknown;
  meta: EventMeta;
}

/** Options of `front.send`. */
export interface SendOptions {
  /** Milliseconds until the event expires; a queued event is dropped then. Default 60000. */
  expiresIn?: number;
  /** Seal `data` with the front's and the back's keys. */
  encrypted?: boolean;
}

/** Options of `front.request`. */
export interface RequestOptions extends SendOptions {
  /** Milliseconds to wait for the answer. Default 8000 (`requestTimeoutMs`). */
  timeout?: number;
}

/** The hop of the worker's token chain that failed. */
export type ChainStage = "xsrf" | "authorize" | "vtx";

/** Every promise of the package rejects with this. Branch on `code`, not on `message`. */
export interface WebSessionError extends Error {
  name: "WebSessionError";
  /** The backend's stable code (`front_key_conflict`, `access_denied`, `not_provisioned`…) or the client's own: `network_error`, `bad_response`, `timeout`, `closed`, `identity_error`, `events_lost`, `storage_error`, `invalid_argument`, `protocol_error`, `not_logged_in`, `no_service_worker`, `unsupported`. */
  code: string;
  /** The HTTP status, when the backend answered with an error. */
  status?: number;
  /** For the worker's token errors: the hop that failed. */
  stage?: ChainStage;
}

/** The service worker's answer to `GET /uc/session/vtx`. */
export interface SessionTokens {
  eidJwt: string;
  venueJwt: string;
  /** ISO-8601. */
  eidExpiresAt: string;
  /** ISO-8601. */
  venueExpiresAt: string;
}

/** Options of `sessionTokens`. */
export interface SessionTokensOptions {
  /** Ask the service worker even when this page's copy of its last answer is good; the answer replaces the copy. Default `false`. */
  fresh?: boolean;
  /** The page's copy answers while both tokens expire more than this many ms from now. Default 60000 (the worker's default `marginSecs`). */
  marginMs?: number;
}

/** The service worker's error for `GET /uc/session/vtx`, also posted to the tabs. */
export interface SessionError {
  error: string;
  message: string;
  stage: ChainStage;
}

/** Messages between the service worker and the tabs. */
export type WorkerMessage =
  | { type: "sw-activated"; version: string }
  | ({ type: "session-error" } & SessionError)
  | { type: "session-clear" }
  | { type: "session-changed" }
  | { type: "skip-waiting" };

/** The claims of the access token (decoded, not verified: the server verifies). */
export interface AccessClaims {
  userId: string;
  sponsorId: string;
  subscriberId: string;
  permissions: string[];
  iss: string;
  iat: number;
  exp: number;
  jti: string;
}

/** What the page knows about the login. The tokens stay inside the package. */
export interface LoginInfo {
  userId: string | null;
  sponsorId: string;
  subscriberId: string;
  permissions: string[];
  /** ISO-8601: when the current access token expires. */
  accessExpiresAt: string;
  /** ISO-8601: when the login session ends. */
  sessionExpiresAt: string;
  claims: AccessClaims | null;
}

/** Why a login session ended. */
export type ExpiryReason =
  | "session_expired" | "refresh_reused" | "invalid_token" | "token_expired" | "logout" | (string & {});

/** Options of `Auth.start`. */
export interface AuthOptions {
  /** The backend's origin. Default: this page's origin. */
  base?: string;
  /** The one-time token. Default: `?token=` from the address (removed from the address bar). */
  token?: string;
  /** The query parameter of the one-time token. Default `"token"`. */
  tokenParam?: string;
  /** Where the default `onExpired` goes. Default `"/login"`. */
  loginPath?: string;
  /** Refresh this many ms before the access token expires (at most half its lifetime). Default 60000. */
  refreshMarginMs?: number;
  /** Refresh ahead of expiry; off, only when an answer is 401. Default `true`. */
  autoRefresh?: boolean;
  /** How long a refresh waits for the Web Lock `websession-refresh` before refreshing without it; `0` waits for ever. Default 10000. */
  lockTimeoutMs?: number;
  /** Called when the login session ends. Default: go to `loginPath`. */
  onExpired?: (reason: ExpiryReason) => void;
  /** Origins besides the backend's (`base`, or this page's) to which `auth.fetch` sends the bearer, e.g. `["https://files.example.com"]`. A request to any other origin is a plain `fetch`: no token, no refresh on 401. Default none. */
  bearerOrigins?: string[];
}
"#;

fn error_value(e: PageError) -> JsValue {
    e.to_js()
}

/// A `Promise` of `f`. The future is boxed so that `future_to_promise` and its glue exist once
/// in the package rather than once per method.
fn promise<T: Into<JsValue>>(
    f: impl std::future::Future<Output = Result<T, PageError>> + 'static,
) -> Promise {
    let f: std::pin::Pin<Box<dyn std::future::Future<Output = Result<JsValue, JsValue>>>> =
        Box::pin(async move { f.await.map(Into::into).map_err(error_value) });
    future_to_promise(f)
}

fn number_option(object: &JsValue, key: &str) -> Result<Option<f64>, PageError> {
    match js::get(object, key) {
        v if v.is_undefined() || v.is_null() => Ok(None),
        v => match v.as_f64() {
            Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
            _ => Err(PageError::InvalidArgument(format!("{key} must be a number ≥ 0"))),
        },
    }
}

fn front_options(value: &JsValue) -> Result<FrontOptions, PageError> {
    let mut o = FrontOptions::default();
    if value.is_undefined() || value.is_null() {
        return Ok(o);
    }
    if !value.is_object() {
        return Err(PageError::InvalidArgument("options must be an object".into()));
    }
    if let Some(base) = js::get_string(value, "base") {
        o.base = base;
    }
    if let Some(share) = js::get_bool(value, "share") {
        o.share = share;
    }
    if let Some(ms) = number_option(value, "heartbeatMs")? {
        o.heartbeat_ms = ms;
    }
    let backoff = js::get(value, "backoff");
    if let Some(ms) = number_option(&backoff, "initialMs")? {
        o.backoff_initial_ms = ms.max(1.0);
    }
    if let Some(ms) = number_option(&backoff, "maxMs")? {
        o.backoff_max_ms = ms.max(o.backoff_initial_ms);
    }
    if let Some(ms) = number_option(value, "requestTimeoutMs")? {
        o.request_timeout_ms = ms;
    }
    if let Some(ms) = number_option(value, "lockTimeoutMs")? {
        o.lock_timeout_ms = ms;
    }
    if let Some(uuid) = js::get_string(value, "sessionUuid") {
        let uuid: SessionUuid =
            uuid.parse().map_err(|e| PageError::InvalidArgument(format!("sessionUuid: {e}")))?;
        o.session_uuid = Some(uuid);
    }
    Ok(o)
}

#[derive(Serialize)]
struct EventMessage<'a> {
    name: &'a str,
    data: &'a protocol::json::Value,
    meta: &'a EventMeta,
}

fn event_message(event: &ReverseEvent) -> JsValue {
    js::to_js(&EventMessage { name: &event.meta.name, data: &event.data, meta: &event.meta })
}

/// A connected front: its identity, its reverse stream and its direct events.
#[wasm_bindgen(js_name = Front)]
pub struct JsFront {
    front: Front,
}

impl std::fmt::Debug for JsFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.front.fmt(f)
    }
}

#[wasm_bindgen(js_class = Front)]
impl JsFront {
    /// Reads or creates the front identity, registers it if needed, opens the reverse stream,
    /// answers the `authenticate` challenge and resolves once the stream is active.
    #[wasm_bindgen(unchecked_return_type = "Promise<Front>")]
    pub fn connect(
        #[wasm_bindgen(unchecked_optional_param_type = "FrontOptions")] options: JsValue,
    ) -> Promise {
        promise(async move {
            let front = Front::connect(front_options(&options)?).await?;
            Ok(JsFront { front })
        })
    }

    /// Like `connect`, but resolves as soon as the identity is read, without waiting for the
    /// stream (a page loaded offline can still queue direct events).
    #[wasm_bindgen(unchecked_return_type = "Promise<Front>")]
    pub fn open(
        #[wasm_bindgen(unchecked_optional_param_type = "FrontOptions")] options: JsValue,
    ) -> Promise {
        promise(async move {
            let front = Front::open(front_options(&options)?).await?;
            Ok(JsFront { front })
        })
    }

    /// Resolves when the stream is active; rejects if the front is closed first.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn ready(&self) -> Promise {
        let front = self.front.clone();
        promise(async move { front.ready().await.map(|()| JsValue::UNDEFINED) })
    }

    /// The front's UUID (one per origin and browser profile).
    #[wasm_bindgen(getter, js_name = frontUuid)]
    pub fn front_uuid(&self) -> String {
        self.front.front_uuid().to_string()
    }

    /// The backend's number for the front, once registered.
    #[wasm_bindgen(getter, js_name = frontBid)]
    pub fn front_bid(&self) -> Option<f64> {
        self.front.front_bid().map(|bid| bid.0 as f64)
    }

    /// This tab's session UUID.
    #[wasm_bindgen(getter, js_name = sessionUuid)]
    pub fn session_uuid(&self) -> String {
        self.front.session_uuid().to_string()
    }

    /// The stream's state.
    #[wasm_bindgen(getter, unchecked_return_type = "StreamState")]
    pub fn state(&self) -> String {
        self.front.state().as_str().to_owned()
    }

    /// This tab's part in sharing the stream.
    #[wasm_bindgen(getter, unchecked_return_type = "StreamRole")]
    pub fn role(&self) -> String {
        self.front.role().as_str().to_owned()
    }

    /// The id of the last event received (sent as `Last-Event-ID` on reconnect).
    #[wasm_bindgen(getter, js_name = lastEventId)]
    pub fn last_event_id(&self) -> Option<String> {
        self.front.last_event_id()
    }

    /// Calls `listener(state, previous)` on every state change.
    #[wasm_bindgen(js_name = onState, unchecked_return_type = "Unsubscribe")]
    pub fn on_state(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "(state: StreamState, previous: StreamState) => void"
        )]
        listener: Function,
    ) -> Function {
        let sub = self.front.on_state(move |state, previous| {
            js::call_listener(
                &listener,
                &[JsValue::from_str(state.as_str()), JsValue::from_str(previous.as_str())],
            );
        });
        js::unsubscribe_fn(move || sub.cancel())
    }

    /// Calls `listener` with every event named `name` that is for this tab.
    #[wasm_bindgen(unchecked_return_type = "Unsubscribe")]
    pub fn on(
        &self,
        name: &str,
        #[wasm_bindgen(unchecked_param_type = "(event: EventMessage) => void")] listener: Function,
    ) -> Function {
        let sub = self
            .front
            .on(Some(name), move |event| js::call_listener(&listener, &[event_message(event)]));
        js::unsubscribe_fn(move || sub.cancel())
    }

    /// Calls `listener` with every event that is for this tab.
    #[wasm_bindgen(js_name = onAny, unchecked_return_type = "Unsubscribe")]
    pub fn on_any(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(event: EventMessage) => void")] listener: Function,
    ) -> Function {
        let sub =
            self.front.on(None, move |event| js::call_listener(&listener, &[event_message(event)]));
        js::unsubscribe_fn(move || sub.cancel())
    }

    /// Calls `listener` with errors the front recovers from by itself (a lost connection, a
    /// queued event the backend refused).
    #[wasm_bindgen(js_name = onError, unchecked_return_type = "Unsubscribe")]
    pub fn on_error(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(error: WebSessionError) => void")]
        listener: Function,
    ) -> Function {
        let sub = self.front.on_error(move |error| js::call_listener(&listener, &[error.to_js()]));
        js::unsubscribe_fn(move || sub.cancel())
    }

    /// Sends a direct event (`POST /web-event-direct/{name}`), building its meta and stamp.
    /// Offline, before activation, on a network error or a 5xx it is queued in IndexedDB and
    /// sent after the next activation; a 4xx rejects.
    #[wasm_bindgen(unchecked_return_type = "Promise<Delivery>")]
    pub fn send(
        &self,
        name: String,
        #[wasm_bindgen(unchecked_optional_param_type = "unknown")] data: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "SendOptions")] options: JsValue,
    ) -> Promise {
        let front = self.front.clone();
        promise(async move {
            let data = js::to_json_value(&data).map_err(PageError::InvalidArgument)?;
            let options = SendOptions {
                expires_in_ms: number_option(&options, "expiresIn")?,
                encrypted: js::get_bool(&options, "encrypted").unwrap_or(false),
            };
            let delivery = front.send(&name, data, options).await?;
            Ok(JsValue::from_str(delivery.as_str()))
        })
    }

    /// Sends a direct event and resolves with the reverse event that answers it (its
    /// `meta.requestUuid`); rejects with code `timeout` after `timeout` ms (default 8000).
    #[wasm_bindgen(unchecked_return_type = "Promise<EventMessage>")]
    pub fn request(
        &self,
        name: String,
        #[wasm_bindgen(unchecked_optional_param_type = "unknown")] data: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "RequestOptions")] options: JsValue,
    ) -> Promise {
        let front = self.front.clone();
        promise(async move {
            let data = js::to_json_value(&data).map_err(PageError::InvalidArgument)?;
            let options = RequestOptions {
                timeout_ms: number_option(&options, "timeout")?,
                expires_in_ms: number_option(&options, "expiresIn")?,
                encrypted: js::get_bool(&options, "encrypted").unwrap_or(false),
            };
            let reply = front.request(&name, data, options).await?;
            Ok(event_message(&reply))
        })
    }

    /// Closes the stream and stops reconnecting; another tab takes the stream over.
    pub fn close(&self) {
        self.front.close();
    }
}

/// The one-time-token login with access and refresh tokens.
#[wasm_bindgen(js_name = Auth)]
pub struct JsAuth {
    auth: Auth,
}

impl std::fmt::Debug for JsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.auth.fmt(f)
    }
}

fn auth_options(value: &JsValue) -> Result<AuthOptions, PageError> {
    let mut o = AuthOptions::default();
    if value.is_undefined() || value.is_null() {
        return Ok(o);
    }
    if !value.is_object() {
        return Err(PageError::InvalidArgument("options must be an object".into()));
    }
    if let Some(base) = js::get_string(value, "base") {
        o.base = base;
    }
    o.token = js::get_string(value, "token");
    if let Some(param) = js::get_string(value, "tokenParam") {
        o.token_param = param;
    }
    if let Some(path) = js::get_string(value, "loginPath") {
        o.login_path = path;
    }
    if let Some(ms) = number_option(value, "refreshMarginMs")? {
        o.refresh_margin_ms = ms;
    }
    if let Some(auto) = js::get_bool(value, "autoRefresh") {
        o.auto_refresh = auto;
    }
    if let Some(ms) = number_option(value, "lockTimeoutMs")? {
        o.lock_timeout_ms = ms;
    }
    let origins = js::get(value, "bearerOrigins");
    if !origins.is_undefined() && !origins.is_null() {
        let bad = || PageError::InvalidArgument("bearerOrigins must be an array of origins".into());
        if !js_sys::Array::is_array(&origins) {
            return Err(bad());
        }
        for origin in js_sys::Array::from(&origins).iter() {
            let origin = origin.as_string().ok_or_else(bad)?;
            let parsed = web_sys::Url::new(&origin).map_err(|_| {
                PageError::InvalidArgument(format!("bearerOrigins: {origin:?} is not an origin"))
            })?;
            if parsed.origin() == "null" {
                return Err(PageError::InvalidArgument(format!(
                    "bearerOrigins: {origin:?} has no origin"
                )));
            }
            o.bearer_origins.push(origin);
        }
    }
    if let Some(f) = js::get_function(value, "onExpired") {
        o.on_expired =
            Some(Rc::new(move |reason: &str| js::call_listener(&f, &[JsValue::from_str(reason)])));
    }
    Ok(o)
}

#[wasm_bindgen(js_class = Auth)]
impl JsAuth {
    /// Logs in with `?token=` from the address (removed from the address bar) or
    /// `options.token`; without one, takes the login of another tab or of the refresh cookie.
    /// Always resolves: see `loggedIn` and `error`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Auth>")]
    pub fn start(
        #[wasm_bindgen(unchecked_optional_param_type = "AuthOptions")] options: JsValue,
    ) -> Promise {
        promise(async move {
            let auth = Auth::start(auth_options(&options)?).await?;
            Ok(JsAuth { auth })
        })
    }

    /// Whether an access token is in memory.
    #[wasm_bindgen(getter, js_name = loggedIn)]
    pub fn logged_in(&self) -> bool {
        self.auth.logged_in()
    }

    /// The login, or `undefined`.
    #[wasm_bindgen(getter, unchecked_return_type = "LoginInfo | undefined")]
    pub fn info(&self) -> JsValue {
        self.auth.info().map(|info| js::to_js(&info)).unwrap_or(JsValue::UNDEFINED)
    }

    /// The login's permissions (empty when logged out).
    #[wasm_bindgen(getter)]
    pub fn permissions(&self) -> Vec<String> {
        self.auth.permissions()
    }

    /// The access token (memory only), for the app's own transports.
    #[wasm_bindgen(getter, js_name = accessToken)]
    pub fn access_token(&self) -> Option<String> {
        self.auth.access_token()
    }

    /// Why the login of `start` failed, if it did.
    #[wasm_bindgen(getter, unchecked_return_type = "WebSessionError | undefined")]
    pub fn error(&self) -> JsValue {
        self.auth.error().map(|e| e.to_js()).unwrap_or(JsValue::UNDEFINED)
    }

    /// `fetch` with `Authorization: Bearer <access token>` for the backend's origin and
    /// `bearerOrigins`; on `401` refreshes once and retries. Other origins get a plain `fetch`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Response>")]
    pub fn fetch(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RequestInfo | URL")] input: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "RequestInit")] init: JsValue,
    ) -> Promise {
        let auth = self.auth.clone();
        promise(async move {
            let request = new_request(&input, &init)?;
            let response = auth.fetch(request).await?;
            Ok(JsValue::from(response))
        })
    }

    /// Refreshes the access token now; `false` when the session is over.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn refresh(&self) -> Promise {
        let auth = self.auth.clone();
        promise(async move { auth.refresh().await.map(JsValue::from_bool) })
    }

    /// Logs out everywhere: the server session, every tab's access token, the worker's tokens.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn logout(&self) -> Promise {
        let auth = self.auth.clone();
        promise(async move { auth.logout().await.map(|()| JsValue::UNDEFINED) })
    }

    /// Calls `listener` with the login after each change (`undefined` when it ends).
    #[wasm_bindgen(js_name = onChange, unchecked_return_type = "Unsubscribe")]
    pub fn on_change(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(info: LoginInfo | undefined) => void")]
        listener: Function,
    ) -> Function {
        let sub = self.auth.on_change(move |info| {
            let value = info.map(js::to_js).unwrap_or(JsValue::UNDEFINED);
            js::call_listener(&listener, &[value]);
        });
        js::unsubscribe_fn(move || sub.cancel())
    }

    /// Stops the refresh timer and the listeners of this object.
    pub fn close(&self) {
        self.auth.close();
    }
}

/// `new Request(input, init)`.
fn new_request(input: &JsValue, init: &JsValue) -> Result<Request, PageError> {
    let constructor: Function = js::get(&js::global(), "Request")
        .dyn_into()
        .map_err(|_| PageError::Unsupported("Request"))?;
    let args = js_sys::Array::of2(input, init);
    js_sys::Reflect::construct(&constructor, &args)
        .map(JsCast::unchecked_into)
        .map_err(|e| PageError::InvalidArgument(crate::web::describe(&e)))
}

/// The session tokens: this page's copy of the service worker's last answer while both tokens
/// are good for more than `marginMs`, else asked from the worker (`GET /uc/session/vtx`; always
/// with `fresh: true`). The copy is dropped when the worker says its tokens changed
/// (`session-changed`) and on `auth.logout()`. Rejects with the worker's error (`code`,
/// `stage`), or `no_service_worker` when no worker controls the page.
#[wasm_bindgen(js_name = sessionTokens, unchecked_return_type = "Promise<SessionTokens>")]
pub fn session_tokens(
    #[wasm_bindgen(unchecked_optional_param_type = "SessionTokensOptions")] options: JsValue,
) -> Promise {
    promise(async move {
        let options = token_options(&options)?;
        tokens::session_tokens(options).await.map(|t| js::to_js(&t))
    })
}

fn token_options(value: &JsValue) -> Result<TokenOptions, PageError> {
    let mut o = TokenOptions::default();
    if !value.is_object() {
        return Ok(o);
    }
    o.fresh = js::get_bool(value, "fresh").unwrap_or(false);
    if let Some(ms) = number_option(value, "marginMs")? {
        o.margin_ms = ms;
    }
    Ok(o)
}

/// Calls `listener` with every message of the service worker to this tab.
#[wasm_bindgen(js_name = onWorkerMessage, unchecked_return_type = "Unsubscribe")]
pub fn on_worker_message(
    #[wasm_bindgen(unchecked_param_type = "(message: WorkerMessage) => void")] listener: Function,
) -> Result<Function, JsValue> {
    let messages = WorkerMessages::listen(move |message| {
        js::call_listener(&listener, &[js::to_js(&message)]);
    })?;
    Ok(js::unsubscribe_fn(move || drop(messages)))
}

/// Calls `listener` when the service worker reports that acquiring the tokens failed.
#[wasm_bindgen(js_name = onSessionError, unchecked_return_type = "Unsubscribe")]
pub fn on_session_error(
    #[wasm_bindgen(unchecked_param_type = "(error: SessionError) => void")] listener: Function,
) -> Result<Function, JsValue> {
    let messages = WorkerMessages::listen(move |message| {
        if let protocol::tokens::SwMessage::SessionError(error) = message {
            js::call_listener(&listener, &[js::to_js(&error)]);
        }
    })?;
    Ok(js::unsubscribe_fn(move || drop(messages)))
}

/// Whether `value` is an error thrown by this package.
#[wasm_bindgen(js_name = isWebSessionError, unchecked_return_type = "value is WebSessionError")]
pub fn is_web_session_error(
    #[wasm_bindgen(unchecked_param_type = "unknown")] value: JsValue,
) -> bool {
    value.is_instance_of::<js_sys::Error>()
        && js::get_string(&value, "name").as_deref() == Some(ERROR_NAME)
}
