//! The browser half of the one-time-token login (seed 002): the token from the address, the
//! access token in memory only, one refresh for all tabs, the bearer on the app's requests, and
//! the end of the session.
//!
//! The refresh token never reaches script: it lives in the server's `HttpOnly` cookie (path
//! `/api/auth`). Tabs share the access token over `BroadcastChannel("websession-auth")` (in
//! memory, same origin) and refresh under the Web Lock `websession-refresh`, so that when
//! several tabs find the token due at once, one refreshes and the others take its answer.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use protocol::tokens::{AccessClaims, AuthenticateRequest, LoginResponse, RefreshResponse};
use protocol::{Timestamp, paths};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{Request, Response};

use super::error::PageError;
use super::http;
use super::js;
use super::locks::{self, Channel};
use super::tokens;
use crate::net::{self, Credentials, HttpRequest};
use crate::records::{self, AuthRelay, Login, Record};
use crate::web::{self, Timeout};

const REFRESH_LOCK: &str = "websession-refresh";
/// How long a starting tab waits for another tab to share its access token.
const ASK_TABS_MS: f64 = 150.0;
/// After a refresh failed for a network reason, try again this much later.
const RETRY_MS: f64 = 10_000.0;

/// What [`AuthOptions::on_expired`] is called with: the reason code.
pub type ExpiredFn = Rc<dyn Fn(&str)>;

/// Settings of [`Auth::start`]; `Default` gives the documented defaults.
#[derive(Clone)]
pub struct AuthOptions {
    /// The backend's origin, or empty for the page's own.
    pub base: String,
    /// The one-time token; `None` reads (and removes) `?token=` from the address.
    pub token: Option<String>,
    /// The query parameter that carries the one-time token. Default `token`.
    pub token_param: String,
    /// Where the default `on_expired` goes. Default `/login`.
    pub login_path: String,
    /// Refresh this long before the access token expires (at most half its lifetime).
    /// Default 60 000 ms.
    pub refresh_margin_ms: f64,
    /// Refresh ahead of expiry. Off, the access token is refreshed only when an answer is
    /// `401` (a tab that sleeps makes no requests). Default `true`.
    pub auto_refresh: bool,
    /// Called with a reason code when the login session ends (`session_expired`,
    /// `refresh_reused`, `invalid_token`, `logout` from another tab...). Default: go to
    /// `login_path`.
    pub on_expired: Option<ExpiredFn>,
    /// Origins besides the backend's (`base`, or the page's) to which [`Auth::fetch`] sends the
    /// bearer. A request to any other origin is a plain fetch: the access token never leaves
    /// for a third party because a URL was built wrong. Default none.
    pub bearer_origins: Vec<String>,
    /// How long a refresh waits for the Web Lock `websession-refresh` before it refreshes
    /// without it, so that a tab that holds the lock and never lets go cannot freeze the
    /// refresh of every tab (the backend's grace window covers two refreshes at once). `0`
    /// waits for ever. Default 10 000 ms.
    pub lock_timeout_ms: f64,
}

impl std::fmt::Debug for AuthOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthOptions")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .field("token_param", &self.token_param)
            .field("login_path", &self.login_path)
            .field("refresh_margin_ms", &self.refresh_margin_ms)
            .field("auto_refresh", &self.auto_refresh)
            .field("bearer_origins", &self.bearer_origins)
            .field("lock_timeout_ms", &self.lock_timeout_ms)
            .finish_non_exhaustive()
    }
}

impl Default for AuthOptions {
    fn default() -> Self {
        Self {
            base: String::new(),
            token: None,
            token_param: "token".to_owned(),
            login_path: "/login".to_owned(),
            refresh_margin_ms: 60_000.0,
            auto_refresh: true,
            on_expired: None,
            bearer_origins: Vec::new(),
            lock_timeout_ms: locks::DEFAULT_LOCK_TIMEOUT_MS,
        }
    }
}

/// What the page knows about the login (never the tokens themselves).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginInfo {
    /// The user, from the access token's claims.
    pub user_id: Option<String>,
    /// The sponsor.
    pub sponsor_id: String,
    /// The subscriber.
    pub subscriber_id: String,
    /// What the user may do.
    pub permissions: Vec<String>,
    /// When the current access token expires.
    pub access_expires_at: Timestamp,
    /// When the login session ends.
    pub session_expires_at: Timestamp,
    /// The access token's claims, decoded (not verified: the server verifies).
    pub claims: Option<AccessClaims>,
}

/// The claims of a JWT, decoded without verification.
fn decode_claims(jwt: &str) -> Option<AccessClaims> {
    // From text, as all JSON of the package is read (one copy of the parser in the wasm).
    protocol::json::from_str(&protocol::tokens::jwt_payload(jwt).ok()?).ok()
}

impl Login {
    fn new(
        access_token: String,
        expires_in: i64,
        session_expires_at: Timestamp,
        permissions: Vec<String>,
        ids: Option<(String, String)>,
    ) -> Self {
        let claims = decode_claims(&access_token);
        let (sponsor_id, subscriber_id) = ids
            .or_else(|| claims.as_ref().map(|c| (c.sponsor_id.clone(), c.subscriber_id.clone())))
            .unwrap_or_default();
        let lifetime_ms = (expires_in.max(0) as f64) * 1000.0;
        let info = LoginInfo {
            user_id: claims.as_ref().map(|c| c.user_id.clone()),
            sponsor_id,
            subscriber_id,
            permissions,
            access_expires_at: Timestamp::now().plus_millis(lifetime_ms as i64),
            session_expires_at,
            claims,
        };
        Self { access_token, lifetime_ms, info }
    }
}

/// How a refresh ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refreshed {
    /// A fresh access token is in memory (this tab's or another's).
    Fresh,
    /// The server refused: the session is over (the code says why).
    Refused(String),
}

type ChangeFn = Rc<dyn Fn(Option<&LoginInfo>)>;

struct Inner {
    options: AuthOptions,
    login: RefCell<Option<Login>>,
    refresh_timer: RefCell<Option<Timeout>>,
    expiry_timer: RefCell<Option<Timeout>>,
    channel: RefCell<Option<Channel>>,
    listeners: RefCell<Vec<(u64, ChangeFn)>>,
    next_id: Cell<u64>,
    error: RefCell<Option<PageError>>,
    /// Counts the ends of logins (logout, expiry), so that a refresh answered after the end
    /// does not bring the login back.
    endings: Cell<u64>,
}

/// The login client. Cheap to clone; clones share the login.
#[derive(Clone)]
pub struct Auth {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("login", &self.inner.login.borrow()).finish_non_exhaustive()
    }
}

/// Takes `?{param}=` out of the address bar (so the one-time token is neither bookmarked nor
/// sent as a referrer) and returns it.
fn take_token_from_address(param: &str) -> Option<String> {
    let global = js::global();
    let href = js::get_string(&js::get(&global, "location"), "href")?;
    let url = web_sys::Url::new(&href).ok()?;
    let params = url.search_params();
    let token = params.get(param).filter(|t| !t.is_empty())?;
    params.delete(param);
    let history = js::get(&global, "history");
    if let Some(replace) = js::get_function(&history, "replaceState") {
        let _ = replace.call3(
            &history,
            &js::get(&history, "state"),
            &JsValue::from_str(""),
            &JsValue::from_str(&url.href()),
        );
    }
    Some(token)
}

fn go_to(path: &str) {
    let location = js::get(&js::global(), "location");
    if let Some(assign) = js::get_function(&location, "assign") {
        let _ = assign.call1(&location, &JsValue::from_str(path));
    }
}

impl Auth {
    /// Logs in with the one-time token (the option, or `?token=` from the address, which is
    /// removed), or else picks up the login of another tab or of the refresh cookie. Resolves
    /// in every case; [`Auth::logged_in`] and [`Auth::error`] tell how it went.
    pub async fn start(options: AuthOptions) -> Result<Self, PageError> {
        let inner = Rc::new(Inner {
            options,
            login: RefCell::new(None),
            refresh_timer: RefCell::new(None),
            expiry_timer: RefCell::new(None),
            channel: RefCell::new(None),
            listeners: RefCell::default(),
            next_id: Cell::new(0),
            error: RefCell::new(None),
            endings: Cell::new(0),
        });
        let weak = Rc::downgrade(&inner);
        if let Ok(channel) = Channel::open(&AuthRelay::SCHEMA.channel(), move |text| {
            if let Some(inner) = weak.upgrade() {
                inner.on_relay(&text);
            }
        }) {
            *inner.channel.borrow_mut() = Some(channel);
        }
        let token = inner
            .options
            .token
            .clone()
            .or_else(|| take_token_from_address(&inner.options.token_param));
        if let Some(token) = token {
            if let Err(e) = inner.login_with(&token).await {
                *inner.error.borrow_mut() = Some(e);
            }
        } else {
            inner.post(&AuthRelay::Query);
            let deadline = js::now_ms() + ASK_TABS_MS;
            while inner.login.borrow().is_none() && js::now_ms() < deadline {
                web::sleep(10.0).await;
            }
            // A visitor who never logged in (or whose session ended) has no marker cookie: no
            // refresh request, which the browser would log in red as a failed request.
            if inner.login.borrow().is_none()
                && !known_logged_out(&inner.options.base)
                && let Err(e) = inner.refresh(None).await
            {
                *inner.error.borrow_mut() = Some(e);
            }
        }
        Ok(Self { inner })
    }

    /// Whether an access token is in memory.
    pub fn logged_in(&self) -> bool {
        self.inner.login.borrow().is_some()
    }

    /// The login, if any.
    pub fn info(&self) -> Option<LoginInfo> {
        self.inner.login.borrow().as_ref().map(|l| l.info.clone())
    }

    /// The permissions of the login (empty when logged out).
    pub fn permissions(&self) -> Vec<String> {
        self.inner.login.borrow().as_ref().map(|l| l.info.permissions.clone()).unwrap_or_default()
    }

    /// The access token, for the app's own transports (WebSocket, EventSource). Memory only.
    pub fn access_token(&self) -> Option<String> {
        self.inner.login.borrow().as_ref().map(|l| l.access_token.clone())
    }

    /// Why the login in [`Auth::start`] failed, if it did (a used or expired one-time token).
    pub fn error(&self) -> Option<PageError> {
        self.inner.error.borrow().clone()
    }

    /// Calls `f` with the login after every change, and with `None` when it ends.
    pub fn on_change(&self, f: impl Fn(Option<&LoginInfo>) + 'static) -> AuthSubscription {
        let id = self.inner.next_id.get() + 1;
        self.inner.next_id.set(id);
        self.inner.listeners.borrow_mut().push((id, Rc::new(f)));
        AuthSubscription { id, inner: Rc::downgrade(&self.inner) }
    }

    /// Refreshes the access token now. `Ok(false)` when the server says the session is over
    /// (then `on_expired` has run).
    pub async fn refresh(&self) -> Result<bool, PageError> {
        let seen = self.access_token();
        match self.inner.refresh(seen).await? {
            Refreshed::Fresh => Ok(true),
            Refreshed::Refused(code) => {
                self.inner.expire(&code, false);
                Ok(false)
            }
        }
    }

    /// Sends `request` with `Authorization: Bearer <access token>`. On `401` refreshes once
    /// and sends it again; if the refresh is refused, the session is over (`on_expired`) and
    /// the `401` answer is returned. A request to an origin other than the backend's and
    /// [`AuthOptions::bearer_origins`] is sent as it is: no bearer, no refresh on `401`.
    pub async fn fetch(&self, request: Request) -> Result<Response, PageError> {
        if !self.inner.sends_bearer_to(&request.url()) {
            return Ok(net::fetch(&request).await?);
        }
        let retry = request.clone().map_err(|e| PageError::InvalidArgument(web::describe(&e)))?;
        let seen = self.access_token();
        if let Some(token) = &seen {
            set_bearer(&request, token)?;
        }
        let response = net::fetch(&request).await?;
        if response.status() != 401 {
            return Ok(response);
        }
        match self.inner.refresh(seen.clone()).await {
            Ok(Refreshed::Fresh) => {}
            Ok(Refreshed::Refused(code)) => {
                if seen.is_some() {
                    self.inner.expire(&code, false);
                }
                return Ok(response);
            }
            Err(_) => return Ok(response),
        }
        let Some(token) = self.access_token() else { return Ok(response) };
        set_bearer(&retry, &token)?;
        Ok(net::fetch(&retry).await?)
    }

    /// Logs out at the server (the session and the cookie go), forgets the access token in
    /// every tab and tells the service worker to drop its tokens.
    pub async fn logout(&self) -> Result<(), PageError> {
        let token = self.access_token();
        let url = http::join(&self.inner.options.base, paths::AUTH_LOGOUT);
        let call = HttpRequest {
            bearer: token.as_deref(),
            credentials: Credentials::Include,
            ..http::post(&url, None)
        };
        let result = http::open(&call).await;
        self.inner.clear();
        self.inner.notify(None);
        self.inner.post(&AuthRelay::Logout);
        tokens::clear_worker_session();
        result.map(|_| ())
    }

    /// Stops the timers and leaves the channel; the login stays in memory of other tabs.
    pub fn close(&self) {
        self.inner.refresh_timer.borrow_mut().take();
        self.inner.expiry_timer.borrow_mut().take();
        self.inner.channel.borrow_mut().take();
        self.inner.listeners.borrow_mut().clear();
    }
}

/// A listener registration of [`Auth::on_change`].
#[derive(Debug, Clone)]
pub struct AuthSubscription {
    id: u64,
    inner: Weak<Inner>,
}

impl AuthSubscription {
    /// Removes the listener.
    pub fn cancel(&self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.listeners.borrow_mut().retain(|(id, _)| *id != self.id);
        }
    }
}

fn set_bearer(request: &Request, token: &str) -> Result<(), PageError> {
    request
        .headers()
        .set("Authorization", &format!("Bearer {token}"))
        .map_err(|e| PageError::InvalidArgument(web::describe(&e)))
}

/// Whether the page knows without a request that there is no login session: the backend is on
/// this page's host (cookies ignore the port), so its readable marker cookie
/// (`websessionLoggedIn`, set and cleared with the refresh cookie) would be visible here, and
/// it is not. A backend on another host cannot be seen this way: then the refresh is tried.
fn known_logged_out(base: &str) -> bool {
    let global = js::global();
    let Some(cookies) = js::get_string(&js::get(&global, "document"), "cookie") else {
        return false;
    };
    let href = js::get_string(&js::get(&global, "location"), "href").unwrap_or_default();
    let host = |url: &str| web_sys::Url::new_with_base(url, &href).ok().map(|u| u.hostname());
    let same_host = base.is_empty() || host(base).is_some_and(|h| Some(h) == host(&href));
    same_host
        && !cookies.split(';').any(|pair| {
            pair.trim().split_once('=').is_some_and(|(name, value)| {
                name == paths::SESSION_MARKER_COOKIE && !value.is_empty()
            })
        })
}

/// The origin of `url`, resolved against the page's address (`None` for a URL that does not
/// parse; `"null"` for opaque ones such as `data:`, which match no backend).
fn origin_of(url: &str) -> Option<String> {
    let href = js::get_string(&js::get(&js::global(), "location"), "href")?;
    web_sys::Url::new_with_base(url, &href).ok().map(|u| u.origin())
}

impl Inner {
    /// Whether [`Auth::fetch`] may send the bearer to `url`: the backend's origin (`base`, or
    /// the page's own) or one of `bearer_origins`.
    fn sends_bearer_to(&self, url: &str) -> bool {
        let Some(target) = origin_of(url).filter(|o| o != "null") else { return false };
        let backend = origin_of(&http::join(&self.options.base, "/"));
        backend.as_deref() == Some(target.as_str())
            || self.options.bearer_origins.iter().any(|o| origin_of(o).as_deref() == Some(&target))
    }

    fn post(&self, message: &AuthRelay) {
        if let Some(channel) = self.channel.borrow().as_ref() {
            channel.post(&records::encode(message));
        }
    }

    fn notify(&self, info: Option<&LoginInfo>) {
        let listeners: Vec<ChangeFn> =
            self.listeners.borrow().iter().map(|(_, f)| f.clone()).collect();
        for f in listeners {
            f(info);
        }
    }

    fn current_token(&self) -> Option<String> {
        self.login.borrow().as_ref().map(|l| l.access_token.clone())
    }

    async fn login_with(self: &Rc<Self>, token: &str) -> Result<(), PageError> {
        let url = http::join(&self.options.base, paths::AUTH_AUTHENTICATE);
        let body = http::to_json(&AuthenticateRequest { token: token.to_owned() });
        let call =
            HttpRequest { credentials: Credentials::Include, ..http::post(&url, Some(&body)) };
        let answer: LoginResponse = http::json(&call, "login").await?;
        let login = Login::new(
            answer.access_token,
            answer.expires_in,
            answer.session_expires_at,
            answer.permissions,
            Some((answer.sponsor_id, answer.subscriber_id)),
        );
        self.adopt(login, true);
        Ok(())
    }

    /// Refreshes unless the access token changed since the caller saw `seen` (another tab or
    /// call refreshed meanwhile). One tab at a time, under the Web Lock.
    async fn refresh(self: &Rc<Self>, seen: Option<String>) -> Result<Refreshed, PageError> {
        let _lock = if locks::supported() {
            match locks::acquire(REFRESH_LOCK, false, None, Some(self.options.lock_timeout_ms))
                .await
            {
                Ok(lock) => lock,
                // A holder that never lets go: refresh without the lock rather than never.
                Err(PageError::Timeout(ms)) => {
                    js::warn(&format!(
                        "websession: the Web Lock {REFRESH_LOCK} was not granted within {ms} ms; \
                         refreshing without it"
                    ));
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let current = self.current_token();
        if current.is_some() && current != seen {
            return Ok(Refreshed::Fresh);
        }
        let url = http::join(&self.options.base, paths::AUTH_REFRESH);
        let call = HttpRequest { credentials: Credentials::Include, ..http::post(&url, None) };
        let endings = self.endings.get();
        match http::json::<RefreshResponse>(&call, "refresh").await {
            // The login ended (logout, expiry) while the answer was on its way: keep it ended.
            Ok(_) if self.endings.get() != endings => Ok(Refreshed::Refused("ended".to_owned())),
            Ok(answer) if answer.session_expires_at <= Timestamp::now() => {
                Ok(Refreshed::Refused("session_expired".to_owned()))
            }
            Ok(answer) => {
                let ids = self
                    .login
                    .borrow()
                    .as_ref()
                    .map(|l| (l.info.sponsor_id.clone(), l.info.subscriber_id.clone()));
                let login = Login::new(
                    answer.access_token,
                    answer.expires_in,
                    answer.session_expires_at,
                    answer.permissions,
                    ids,
                );
                self.adopt(login, true);
                Ok(Refreshed::Fresh)
            }
            Err(PageError::Http { status, code, .. }) if (400..500).contains(&status) => {
                Ok(Refreshed::Refused(code))
            }
            Err(e) => Err(e),
        }
    }

    /// Makes `login` the current one: timers, listeners, and the other tabs when `share`.
    fn adopt(self: &Rc<Self>, login: Login, share: bool) {
        self.schedule(&login);
        let info = login.info.clone();
        *self.login.borrow_mut() = Some(login.clone());
        if share {
            self.post(&AuthRelay::Token { login: Box::new(login) });
        }
        self.notify(Some(&info));
    }

    fn schedule(self: &Rc<Self>, login: &Login) {
        let now = js::now_ms();
        let margin = self.options.refresh_margin_ms.min(login.lifetime_ms / 2.0);
        let due = login.info.access_expires_at.millis() as f64 - margin - now;
        let weak = Rc::downgrade(self);
        *self.refresh_timer.borrow_mut() = self.options.auto_refresh.then(|| {
            Timeout::new(due, move || {
                if let Some(inner) = weak.upgrade() {
                    spawn_local(inner.refresh_when_due());
                }
            })
        });
        let weak = Rc::downgrade(self);
        let end = login.info.session_expires_at.millis() as f64 - now;
        *self.expiry_timer.borrow_mut() = Some(Timeout::new(end, move || {
            if let Some(inner) = weak.upgrade() {
                inner.expire("session_expired", false);
            }
        }));
    }

    async fn refresh_when_due(self: Rc<Self>) {
        let seen = self.current_token();
        match self.refresh(seen).await {
            Ok(Refreshed::Fresh) => {}
            Ok(Refreshed::Refused(code)) => self.expire(&code, false),
            Err(_) => {
                // The server is out of reach: try again, while the access token lasts.
                let weak = Rc::downgrade(&self);
                *self.refresh_timer.borrow_mut() = Some(Timeout::new(RETRY_MS, move || {
                    if let Some(inner) = weak.upgrade() {
                        spawn_local(inner.refresh_when_due());
                    }
                }));
            }
        }
    }

    fn clear(&self) {
        self.endings.set(self.endings.get() + 1);
        self.login.borrow_mut().take();
        self.refresh_timer.borrow_mut().take();
        self.expiry_timer.borrow_mut().take();
    }

    /// The session is over: forget it, tell the other tabs (unless they told us) and the app.
    fn expire(&self, reason: &str, from_other_tab: bool) {
        if self.login.borrow().is_none() {
            return;
        }
        self.clear();
        self.notify(None);
        if !from_other_tab {
            self.post(&AuthRelay::Expired { reason: reason.to_owned() });
        }
        match &self.options.on_expired {
            Some(f) => f(reason),
            None => go_to(&self.options.login_path),
        }
    }

    fn on_relay(self: &Rc<Self>, text: &str) {
        let Ok(message) = records::decode::<AuthRelay>(text) else { return };
        match message {
            AuthRelay::Query => {
                let login = self.login.borrow().clone();
                // A token about to expire is no help: the asking tab would refresh at once.
                if let Some(login) = login
                    && login.info.access_expires_at.millis() as f64
                        > js::now_ms() + (login.lifetime_ms / 4.0).min(5_000.0)
                {
                    self.post(&AuthRelay::Token { login: Box::new(login) });
                }
            }
            AuthRelay::Token { login } => {
                let live = login.info.session_expires_at > Timestamp::now();
                let newer = live
                    && self.login.borrow().as_ref().is_none_or(|mine| {
                        login.info.access_expires_at >= mine.info.access_expires_at
                            && login.access_token != mine.access_token
                    });
                if newer {
                    self.adopt(*login, false);
                }
            }
            AuthRelay::Logout => self.expire("logout", true),
            AuthRelay::Expired { reason } => self.expire(&reason, true),
        }
    }
}
