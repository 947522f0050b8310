//! The worker's session: the tokens in memory, the order of the chain (seed 000's diagram), the
//! retry after a VTX `401`, and the single flight that makes any number of concurrent requests
//! share one run of the chain.
//!
//! Whose tokens: the worker cannot read the venue's `HttpOnly` session cookie, so it cannot see a
//! sign-out or another user's sign-in. Every request therefore starts with the dashboard scrape,
//! the one hop that says which venue session the browser has now, and the cached tokens are
//! answered only when they belong to it:
//!
//! - the dashboard sends the worker to the login page (signed out): the cache is dropped and the
//!   answer is `venue_session_expired`;
//! - the XSRF token is the one the cached venue JWT came with: the same session (the venue keeps
//!   one token per session), so the cached pair is answered (one request, no exchange);
//! - a different XSRF token (a new session, or a venue that renders a new token each time): a
//!   new venue JWT is fetched, and the cached pair is kept only when that JWT names the same user
//!   (`sub` and `ecoid`); otherwise both cached tokens are dropped before anything is answered.
//!
//! So one venue user's tokens never reach another, at the price of one dashboard request per
//! warm answer (a few milliseconds on the venue's own origin); a cookie marker would be cheaper
//! but the venue's cookie is `HttpOnly` and the worker sees no `Cookie` header.
//!
//! Pages keep a copy of the last answer (`page/tokens.rs`), so the session also reports every
//! change of its tokens ([`Session::on_change`], posted to the tabs as `session-changed`): when
//! it drops them, and when it takes a venue JWT that is not a renewal of its cached same-user
//! one (another user's, or the first since the worker started: a restarted worker cannot tell
//! whose copies the pages hold). A same-user renewal is no change: the copies are still that
//! user's, and each expires on its own.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::FutureExt as _;
use futures_util::future::{LocalBoxFuture, Shared};
use protocol::tokens::{ChainStage, SessionTokens};
use protocol::{ErrorCode, Timestamp};

use super::chain::{self, ChainConfig, ExchangeError, Failure, Http};
use super::jwt::Jwt;

/// The token source behind `/uc/session/vtx`. Cheap to clone; clones share the tokens.
pub struct Session<H> {
    inner: Rc<Inner<H>>,
}

impl<H> Clone for Session<H> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<H> std::fmt::Debug for Session<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.state.borrow();
        f.debug_struct("Session")
            .field("config", &self.inner.config)
            .field("venue_cached", &state.venue.is_some())
            .field("xsrf_cached", &state.xsrf.is_some())
            .field("eid_cached", &state.eid.is_some())
            .field("in_flight", &state.flight.is_some())
            .finish_non_exhaustive()
    }
}

type Outcome = Result<SessionTokens, Failure>;
type FailureHook = Box<dyn Fn(&Failure)>;
type ChangeHook = Box<dyn Fn()>;
type Flight = Shared<LocalBoxFuture<'static, Outcome>>;

struct Inner<H> {
    http: H,
    config: ChainConfig,
    /// Milliseconds since the epoch; a function so that tests can move time.
    clock: Box<dyn Fn() -> i64>,
    /// Called once per failed run of the chain (not once per waiting request): the worker posts
    /// `session-error` to the tabs from here.
    on_failure: RefCell<Option<FailureHook>>,
    /// Called whenever the tokens are dropped or become another user's: the worker posts
    /// `session-changed` to the tabs from here, so that they drop their copies.
    on_change: RefCell<Option<ChangeHook>>,
    /// A `RefCell` that is never borrowed across an `.await`.
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    venue: Option<Jwt>,
    /// The dashboard's XSRF token that `venue` was fetched with or last confirmed by: the marker
    /// of the venue session the cached tokens belong to.
    xsrf: Option<String>,
    /// The EID JWT and the venue JWT it was exchanged from: an EID JWT is reused only with the
    /// venue JWT it belongs to, so the answer's two tokens always match.
    eid: Option<(Jwt, String)>,
    /// Bumped by [`Session::clear`]: a run that started before a clear answers its waiters but
    /// caches nothing.
    generation: u64,
    /// The run in progress, with its number.
    flight: Option<(u64, Flight)>,
    flights: u64,
}

impl<H: Http + 'static> Session<H> {
    /// A session with no tokens yet, on the real clock (`Date.now()`).
    pub fn new(http: H, config: ChainConfig) -> Self {
        Self::with_clock(http, config, || js_sys::Date::now() as i64)
    }

    /// A session on `clock` (milliseconds since the epoch).
    pub fn with_clock(http: H, config: ChainConfig, clock: impl Fn() -> i64 + 'static) -> Self {
        let inner = Inner {
            http,
            config,
            clock: Box::new(clock),
            on_failure: RefCell::new(None),
            on_change: RefCell::new(None),
            state: RefCell::new(State::default()),
        };
        Self { inner: Rc::new(inner) }
    }

    /// Calls `hook` once for every run of the chain that fails.
    pub fn on_failure(&self, hook: impl Fn(&Failure) + 'static) {
        *self.inner.on_failure.borrow_mut() = Some(Box::new(hook));
    }

    /// Calls `hook` whenever the tokens are dropped (sign-out, [`Session::clear`], a refused
    /// venue JWT) or replaced by a venue JWT that is not a renewal of the cached same-user one.
    pub fn on_change(&self, hook: impl Fn() + 'static) {
        *self.inner.on_change.borrow_mut() = Some(Box::new(hook));
    }

    /// The chain's settings.
    pub fn config(&self) -> &ChainConfig {
        &self.inner.config
    }

    /// Fresh tokens for the browser's current venue session: from the run of the chain in
    /// progress, or from a new run that later callers share. A run answers from memory when the
    /// venue session is the one the cached tokens belong to (see the module's comment).
    pub async fn tokens(&self) -> Result<SessionTokens, Failure> {
        let flight = {
            let mut state = self.inner.state.borrow_mut();
            match &state.flight {
                Some((_, flight)) => flight.clone(),
                None => {
                    state.flights += 1;
                    let (id, generation) = (state.flights, state.generation);
                    let inner = self.inner.clone();
                    let flight = async move {
                        let outcome = inner.run(generation).await;
                        inner.finish(id, &outcome);
                        outcome
                    }
                    .boxed_local()
                    .shared();
                    state.flight = Some((id, flight.clone()));
                    flight
                }
            }
        };
        flight.await
    }

    /// Forgets every token (logout); a run in progress answers its waiters but caches nothing,
    /// and the next request starts a new run.
    pub fn clear(&self) {
        {
            let mut state = self.inner.state.borrow_mut();
            state.forget();
            state.flight = None;
            state.generation += 1;
        }
        self.inner.changed();
    }
}

impl State {
    /// Drops every token and the session marker.
    fn forget(&mut self) {
        self.venue = None;
        self.xsrf = None;
        self.eid = None;
    }
}

impl<H: Http> Inner<H> {
    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Reports a change of the tokens (never with `state` borrowed: the hook may ask again).
    fn changed(&self) {
        if let Some(hook) = self.on_change.borrow().as_ref() {
            hook();
        }
    }

    fn margin_ms(&self) -> i64 {
        i64::try_from(self.config.margin.as_millis()).unwrap_or(i64::MAX)
    }

    fn fresh_venue(&self, state: &State) -> Option<Jwt> {
        state.venue.clone().filter(|v| v.is_fresh(self.now(), self.margin_ms()))
    }

    fn fresh_eid(&self, state: &State, venue: &Jwt) -> Option<Jwt> {
        let (eid, from) = state.eid.as_ref()?;
        (*from == venue.token && eid.is_fresh(self.now(), self.margin_ms())).then(|| eid.clone())
    }

    /// Stores into the cache unless a clear happened since the run began.
    fn store(&self, generation: u64, update: impl FnOnce(&mut State)) {
        let mut state = self.state.borrow_mut();
        if state.generation == generation {
            update(&mut state);
        }
    }

    /// One run of the chain, as in the seed's diagram; a venue session that is gone or
    /// another user's drops the cache first.
    async fn run(&self, generation: u64) -> Outcome {
        let outcome = self.chain(generation).await;
        if let Err(failure) = &outcome
            && failure.code == ErrorCode::VenueSessionExpired
        {
            self.store(generation, State::forget);
            self.changed();
        }
        outcome
    }

    async fn chain(&self, generation: u64) -> Outcome {
        // Always asked: the dashboard is what tells one venue session from the next.
        let xsrf = chain::xsrf_token(&self.http, &self.config).await?;
        let mut retried = false;
        loop {
            let cached = {
                let state = self.state.borrow();
                let same_session = state.xsrf.as_deref() == Some(xsrf.as_str());
                same_session.then(|| self.fresh_venue(&state)).flatten()
            };
            let venue = match cached {
                Some(venue) => venue,
                None => {
                    let fetched = chain::venue_jwt(&self.http, &self.config, &xsrf).await?;
                    let mut venue = fetched.clone();
                    // Conservative: also a change when a clear made the store skip this run.
                    let mut changed = true;
                    self.store(generation, |s| {
                        let kept = s.venue.as_ref().filter(|old| {
                            old.user.is_some()
                                && old.user == fetched.user
                                && old.is_fresh(self.now(), self.margin_ms())
                        });
                        match kept {
                            // The same user in a new session (or a venue that renders a new
                            // XSRF token each time): the cached pair is still theirs.
                            Some(old) => {
                                venue = old.clone();
                                changed = false;
                            }
                            // A renewal of the same user's expired venue JWT changes nobody's
                            // tokens; anything else may (see the module's comment).
                            None if s.venue.as_ref().is_some_and(|old| {
                                old.user.is_some() && old.user == fetched.user
                            }) =>
                            {
                                changed = false;
                                s.eid = None;
                                s.venue = Some(fetched);
                            }
                            None => {
                                s.eid = None;
                                s.venue = Some(fetched);
                            }
                        }
                        s.xsrf = Some(xsrf.clone());
                    });
                    if changed {
                        self.changed();
                    }
                    venue
                }
            };
            if !venue.has_ecoid {
                return Err(Failure::not_provisioned(
                    ChainStage::Authorize,
                    "venue JWT has no ecoid",
                ));
            }
            let cached = self.fresh_eid(&self.state.borrow(), &venue);
            let eid = match cached {
                Some(eid) => eid,
                None => match chain::exchange(&self.http, &self.config, &venue, self.now()).await {
                    Ok(eid) => {
                        self.store(generation, |s| {
                            s.eid = Some((eid.clone(), venue.token.clone()))
                        });
                        eid
                    }
                    Err(ExchangeError::Unauthorized(detail)) => {
                        // The venue JWT may have been revoked or signed by a rotated key: get a
                        // new one and try once more.
                        self.store(generation, State::forget);
                        self.changed();
                        if retried {
                            return Err(Failure::acquisition_failed(
                                ChainStage::Vtx,
                                format!("VTX refused a fresh venue JWT: {detail}"),
                            ));
                        }
                        retried = true;
                        continue;
                    }
                    Err(ExchangeError::Failed(failure)) => return Err(failure),
                },
            };
            return Ok(tokens(&eid, &venue, self.now()));
        }
    }

    /// The end of run `id`: no longer in flight; a failure is reported once.
    fn finish(&self, id: u64, outcome: &Outcome) {
        {
            let mut state = self.state.borrow_mut();
            if state.flight.as_ref().is_some_and(|(current, _)| *current == id) {
                state.flight = None;
            }
        }
        if let (Err(failure), Some(hook)) = (outcome, self.on_failure.borrow().as_ref()) {
            hook(failure);
        }
    }
}

fn tokens(eid: &Jwt, venue: &Jwt, now_ms: i64) -> SessionTokens {
    let at = |jwt: &Jwt| Timestamp::from_millis(jwt.expires_at_ms.unwrap_or(now_ms));
    SessionTokens {
        eid_jwt: eid.token.clone(),
        venue_jwt: venue.token.clone(),
        eid_expires_at: at(eid),
        venue_expires_at: at(venue),
    }
}

// Host only: `futures-executor` is a host dev-dependency (the browser has its own executor).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::cell::Cell;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use futures_util::future::join_all;
    use protocol::ErrorCode;
    use serde_json::json;

    use super::*;
    use crate::net::{HttpResponse, NetError};
    use crate::sw::jwt::tests::jwt;
    use crate::sw::settings::Settings;

    const NOW: i64 = 1_800_000_000_000;

    /// What a fake hop answers.
    #[derive(Clone)]
    enum Answer {
        Normal,
        Status(u16, &'static str),
        Redirect(&'static str, &'static str),
        Net(NetError),
        Body(String),
    }

    /// The venue and VTX in memory: counts calls, answers from switches, and yields once per
    /// call so that concurrent callers really overlap.
    struct Fake {
        clock: Rc<Cell<i64>>,
        calls: RefCell<Vec<&'static str>>,
        dashboard: RefCell<Answer>,
        authorize: RefCell<Answer>,
        vtx: RefCell<Answer>,
        vtx_401s: Cell<u32>,
        ecoid: Cell<bool>,
        /// The venue session: its XSRF token and its user.
        xsrf: RefCell<&'static str>,
        user: Cell<&'static str>,
        seen_headers: RefCell<Vec<String>>,
    }

    impl Http for Rc<Fake> {
        async fn get(
            &self,
            url: &str,
            headers: &[(&str, &str)],
            cookies: bool,
            timeout: Duration,
        ) -> Result<HttpResponse, NetError> {
            Yield(20).await;
            let hop = ["/Dashboard", "/Auth/Authorize", "/vtx/token"]
                .into_iter()
                .find(|p| url.ends_with(p))
                .unwrap();
            self.calls.borrow_mut().push(hop);
            for (name, value) in headers {
                self.seen_headers.borrow_mut().push(format!("{hop} {name}: {value}"));
            }
            assert_eq!(cookies, hop != "/vtx/token", "cookies go to the venue only");
            assert_eq!(timeout, Duration::from_millis(500));
            let now_s = self.clock.get() / 1000;
            let answer = match hop {
                "/Dashboard" => self.dashboard.borrow().clone(),
                "/Auth/Authorize" => self.authorize.borrow().clone(),
                _ if self.vtx_401s.get() > 0 => {
                    self.vtx_401s.set(self.vtx_401s.get() - 1);
                    Answer::Status(401, r#"{"error":"invalid_token","message":"no"}"#)
                }
                _ => self.vtx.borrow().clone(),
            };
            let ok = |body: String| HttpResponse {
                status: 200,
                url: url.to_owned(),
                redirected: false,
                body,
            };
            Ok(match answer {
                Answer::Normal => match hop {
                    "/Dashboard" => ok(format!(
                        r#"<input name="__RequestVerificationToken" value="{}">"#,
                        self.xsrf.borrow()
                    )),
                    "/Auth/Authorize" => {
                        let n = self.calls.borrow().len();
                        let mut claims = json!({"sub": self.user.get(), "exp": now_s + 3600, "n": n});
                        if self.ecoid.get() {
                            claims["ecoid"] = json!("eco-1");
                        }
                        ok(json!({"token": jwt(&claims)}).to_string())
                    }
                    _ => ok(json!({
                        "access_token": jwt(&json!({"sub": "alice", "exp": now_s + 600, "n": self.calls.borrow().len()})),
                        "issued_token_type": "urn:ietf:params:oauth:token-type:jwt",
                        "token_type": "Bearer",
                        "expires_in": 600,
                    })
                    .to_string()),
                },
                Answer::Status(status, body) => {
                    HttpResponse { status, url: url.to_owned(), redirected: false, body: body.to_owned() }
                }
                Answer::Redirect(to, body) => {
                    HttpResponse { status: 200, url: to.to_owned(), redirected: true, body: body.to_owned() }
                }
                Answer::Net(err) => return Err(err),
                Answer::Body(body) => ok(body),
            })
        }
    }

    /// Pending `n` times, then ready: lets the executor poll the other joined futures, each of
    /// which polls a shared run once more, so a hop outlasts the first poll of every waiter.
    struct Yield(u32);

    impl Future for Yield {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 == 0 {
                return Poll::Ready(());
            }
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn setup() -> (Session<Rc<Fake>>, Rc<Fake>) {
        let clock = Rc::new(Cell::new(NOW));
        let fake = Rc::new(Fake {
            clock: clock.clone(),
            calls: RefCell::default(),
            dashboard: RefCell::new(Answer::Normal),
            authorize: RefCell::new(Answer::Normal),
            vtx: RefCell::new(Answer::Normal),
            vtx_401s: Cell::new(0),
            ecoid: Cell::new(true),
            xsrf: RefCell::new("x-1"),
            user: Cell::new("alice"),
            seen_headers: RefCell::default(),
        });
        let settings = Settings { hop_timeout: Duration::from_millis(500), ..Settings::default() };
        let config = ChainConfig::new(&settings, "https://app.example");
        let session = Session::with_clock(fake.clone(), config, move || clock.get());
        (session, fake)
    }

    fn counts(fake: &Fake) -> [usize; 3] {
        let calls = fake.calls.borrow();
        ["/Dashboard", "/Auth/Authorize", "/vtx/token"]
            .map(|hop| calls.iter().filter(|c| **c == hop).count())
    }

    fn get(session: &Session<Rc<Fake>>) -> Outcome {
        futures_executor::block_on(session.tokens())
    }

    fn failure(outcome: Outcome) -> (ErrorCode, ChainStage, u16) {
        let failure = outcome.unwrap_err();
        (failure.code, failure.stage, failure.status())
    }

    #[test]
    fn cold_chain_then_warm_answers_from_memory() {
        let (session, fake) = setup();
        let cold = get(&session).unwrap();
        assert_eq!(counts(&fake), [1, 1, 1]);
        assert_eq!(
            *fake.seen_headers.borrow(),
            vec![
                "/Auth/Authorize X-XSRF-TOKEN: x-1".to_owned(),
                format!("/vtx/token Authorization: Bearer {}", cold.venue_jwt),
            ]
        );
        assert_eq!(cold.venue_expires_at.millis(), NOW + 3_600_000);
        assert_eq!(cold.eid_expires_at.millis(), NOW + 600_000);
        let warm = get(&session).unwrap();
        assert_eq!(warm, cold);
        assert_eq!(counts(&fake), [2, 1, 1], "the dashboard confirms the session, no more");
    }

    #[test]
    fn concurrent_requests_share_one_run() {
        let (session, fake) = setup();
        let all = futures_executor::block_on(join_all((0..10).map(|_| session.tokens())));
        assert_eq!(counts(&fake), [1, 1, 1]);
        assert!(all.windows(2).all(|w| w[0].as_ref().unwrap() == w[1].as_ref().unwrap()));
    }

    #[test]
    fn a_failed_run_is_reported_once_to_all_its_waiters() {
        let (session, fake) = setup();
        let reports = Rc::new(Cell::new(0));
        session.on_failure({
            let reports = reports.clone();
            move |_| reports.set(reports.get() + 1)
        });
        *fake.dashboard.borrow_mut() = Answer::Status(500, "oops");
        let all = futures_executor::block_on(join_all((0..3).map(|_| session.tokens())));
        assert!(all.iter().all(Result::is_err));
        assert_eq!((reports.get(), counts(&fake)), (1, [1, 0, 0]));
        // The next request runs the chain again rather than replaying the failure.
        *fake.dashboard.borrow_mut() = Answer::Normal;
        assert!(get(&session).is_ok());
        assert_eq!(counts(&fake), [2, 1, 1]);
    }

    #[test]
    fn expiry_counts_the_margin() {
        let (session, fake) = setup();
        let cold = get(&session).unwrap();
        let eid_exp = cold.eid_expires_at.millis();
        // One millisecond before `exp - margin` the EID JWT is still good …
        fake.clock.set(eid_exp - 60_000 - 1);
        assert_eq!(get(&session).unwrap(), cold);
        assert_eq!(counts(&fake), [2, 1, 1]);
        // … at `exp - margin` it is not: only the exchange runs again.
        fake.clock.set(eid_exp - 60_000);
        let renewed = get(&session).unwrap();
        assert_eq!((counts(&fake), renewed.venue_jwt == cold.venue_jwt), ([3, 1, 2], true));
        assert_ne!(renewed.eid_jwt, cold.eid_jwt);
        // The venue JWT expires the same way, and takes a new EID JWT with it.
        fake.clock.set(cold.venue_expires_at.millis() - 60_000);
        let next = get(&session).unwrap();
        assert_eq!(counts(&fake), [4, 2, 3]);
        assert_ne!(next.venue_jwt, cold.venue_jwt);
    }

    #[test]
    fn a_vtx_401_drops_the_venue_jwt_and_retries_once() {
        let (session, fake) = setup();
        fake.vtx_401s.set(1);
        assert!(get(&session).is_ok());
        assert_eq!(counts(&fake), [1, 2, 2]);

        let (session, fake) = setup();
        fake.vtx_401s.set(5);
        assert_eq!(
            failure(get(&session)),
            (ErrorCode::TokenAcquisitionFailed, ChainStage::Vtx, 502)
        );
        assert_eq!(counts(&fake), [1, 2, 2]);
    }

    #[test]
    fn a_vtx_401_with_a_cached_venue_jwt_fetches_a_new_one() {
        let (session, fake) = setup();
        let cold = get(&session).unwrap();
        fake.clock.set(cold.eid_expires_at.millis());
        fake.vtx_401s.set(1);
        assert!(get(&session).is_ok());
        assert_eq!(counts(&fake), [2, 2, 3]);
    }

    #[test]
    fn users_without_ecoid_are_not_provisioned_and_cost_no_further_requests() {
        let (session, fake) = setup();
        fake.ecoid.set(false);
        assert_eq!(failure(get(&session)), (ErrorCode::NotProvisioned, ChainStage::Authorize, 403));
        assert_eq!(failure(get(&session)), (ErrorCode::NotProvisioned, ChainStage::Authorize, 403));
        assert_eq!(counts(&fake), [2, 1, 0]);
    }

    #[test]
    fn each_hop_maps_its_failures() {
        let login =
            r#"<form><input name="__RequestVerificationToken" value="login-page-token"></form>"#;
        let timeout = NetError::Timeout(Duration::from_millis(500));
        let expired = ErrorCode::VenueSessionExpired;
        let failed = ErrorCode::TokenAcquisitionFailed;
        let cases: Vec<(&str, Answer, (ErrorCode, ChainStage, u16))> = vec![
            (
                "dashboard",
                Answer::Redirect("https://app.example/Account/Login?ReturnUrl=%2FDashboard", login),
                (expired, ChainStage::Xsrf, 401),
            ),
            ("dashboard", Answer::Status(401, ""), (expired, ChainStage::Xsrf, 401)),
            (
                "dashboard",
                Answer::Body("<p>no token</p>".to_owned()),
                (expired, ChainStage::Xsrf, 401),
            ),
            ("dashboard", Answer::Status(500, ""), (failed, ChainStage::Xsrf, 502)),
            ("dashboard", Answer::Net(timeout.clone()), (failed, ChainStage::Xsrf, 504)),
            (
                "dashboard",
                Answer::Net(NetError::Network("refused".into())),
                (failed, ChainStage::Xsrf, 502),
            ),
            (
                "authorize",
                Answer::Status(403, r#"{"error":"venue_session_expired"}"#),
                (expired, ChainStage::Authorize, 401),
            ),
            ("authorize", Answer::Status(503, ""), (failed, ChainStage::Authorize, 502)),
            ("authorize", Answer::Net(timeout.clone()), (failed, ChainStage::Authorize, 504)),
            ("authorize", Answer::Body("<html>".to_owned()), (failed, ChainStage::Authorize, 502)),
            (
                "authorize",
                Answer::Body(r#"{"jwt": "x"}"#.to_owned()),
                (failed, ChainStage::Authorize, 502),
            ),
            ("vtx", Answer::Status(500, ""), (failed, ChainStage::Vtx, 502)),
            (
                "vtx",
                Answer::Status(400, r#"{"error":"invalid_request"}"#),
                (failed, ChainStage::Vtx, 502),
            ),
            (
                "vtx",
                Answer::Status(403, r#"{"error":"not_provisioned","message":"x"}"#),
                (ErrorCode::NotProvisioned, ChainStage::Vtx, 403),
            ),
            ("vtx", Answer::Net(timeout), (failed, ChainStage::Vtx, 504)),
            ("vtx", Answer::Body("{}".to_owned()), (failed, ChainStage::Vtx, 502)),
        ];
        for (hop, answer, expected) in cases {
            let (session, fake) = setup();
            let switch = match hop {
                "dashboard" => &fake.dashboard,
                "authorize" => &fake.authorize,
                _ => &fake.vtx,
            };
            *switch.borrow_mut() = answer;
            assert_eq!(failure(get(&session)), expected, "{hop} {:?}", counts(&fake));
        }
    }

    #[test]
    fn a_bare_or_quoted_jwt_from_authorize_is_accepted() {
        for quote in ["", "\""] {
            let (session, fake) = setup();
            let token = jwt(&json!({"sub": "a", "exp": NOW / 1000 + 100, "ecoid": "e"}));
            *fake.authorize.borrow_mut() = Answer::Body(format!("{quote}{token}{quote}\n"));
            assert_eq!(get(&session).unwrap().venue_jwt, token);
        }
    }

    #[test]
    fn another_venue_user_never_gets_the_cached_tokens() {
        let (session, fake) = setup();
        let alice = get(&session).unwrap();
        // Bob signs in on the same browser: a new venue session, a user without `ecoid`.
        *fake.xsrf.borrow_mut() = "x-bob";
        fake.user.set("bob");
        fake.ecoid.set(false);
        assert_eq!(failure(get(&session)), (ErrorCode::NotProvisioned, ChainStage::Authorize, 403));
        assert_eq!(counts(&fake), [2, 2, 1]);
        // Alice again, in yet another session: none of her old tokens were kept.
        *fake.xsrf.borrow_mut() = "x-alice-2";
        fake.user.set("alice");
        fake.ecoid.set(true);
        let again = get(&session).unwrap();
        assert_eq!(counts(&fake), [3, 3, 2]);
        assert_ne!(again.eid_jwt, alice.eid_jwt);
    }

    #[test]
    fn a_venue_sign_out_drops_the_cached_tokens() {
        let (session, fake) = setup();
        let first = get(&session).unwrap();
        *fake.dashboard.borrow_mut() =
            Answer::Redirect("https://app.example/Account/Login?ReturnUrl=%2FDashboard", "");
        assert_eq!(failure(get(&session)), (ErrorCode::VenueSessionExpired, ChainStage::Xsrf, 401));
        // Even a venue that gave the next session the same XSRF token gets a new chain.
        *fake.dashboard.borrow_mut() = Answer::Normal;
        let second = get(&session).unwrap();
        assert_eq!(counts(&fake), [3, 2, 2]);
        assert_ne!(second.eid_jwt, first.eid_jwt);
    }

    #[test]
    fn the_same_user_in_a_new_venue_session_keeps_the_cached_tokens() {
        let (session, fake) = setup();
        let first = get(&session).unwrap();
        *fake.xsrf.borrow_mut() = "x-2";
        assert_eq!(get(&session).unwrap(), first);
        assert_eq!(counts(&fake), [2, 2, 1], "a new venue JWT names the user; no exchange");
        assert_eq!(get(&session).unwrap(), first);
        assert_eq!(counts(&fake), [3, 2, 1], "the new session is confirmed by its XSRF token");
    }

    /// The tabs keep copies of the answers: every change of whose tokens the worker holds is
    /// reported (so the worker posts `session-changed`), warm answers and same-user renewals
    /// are not.
    #[test]
    fn a_change_of_the_tokens_is_reported_and_a_renewal_is_not() {
        let (session, fake) = setup();
        let changes = Rc::new(Cell::new(0));
        session.on_change({
            let changes = changes.clone();
            move || changes.set(changes.get() + 1)
        });
        let first = get(&session).unwrap();
        assert_eq!(
            changes.get(),
            1,
            "the first pair since the start: whose copies the tabs hold is unknown"
        );
        get(&session).unwrap();
        assert_eq!(changes.get(), 1, "a warm answer changes nothing");
        fake.clock.set(first.venue_expires_at.millis() - 60_000);
        let renewed = get(&session).unwrap();
        assert_ne!(renewed.venue_jwt, first.venue_jwt);
        assert_eq!(changes.get(), 1, "the same user's venue JWT renewed");
        *fake.xsrf.borrow_mut() = "x-2";
        get(&session).unwrap();
        assert_eq!(changes.get(), 1, "the same user in a new venue session");

        *fake.xsrf.borrow_mut() = "x-bob";
        fake.user.set("bob");
        get(&session).unwrap();
        assert_eq!(changes.get(), 2, "another user signed in");
        *fake.dashboard.borrow_mut() = Answer::Redirect("https://app.example/Account/Login", "");
        assert!(get(&session).is_err());
        assert_eq!(changes.get(), 3, "signed out at the venue");
        *fake.dashboard.borrow_mut() = Answer::Normal;
        get(&session).unwrap();
        session.clear();
        assert_eq!(changes.get(), 5, "a new pair after the sign-out, then a clear");
        get(&session).unwrap();
        fake.vtx_401s.set(1);
        fake.clock.set(fake.clock.get() + 3_600_000);
        get(&session).unwrap();
        assert!(changes.get() >= 7, "a VTX 401 drops the tokens: {}", changes.get());
    }

    #[test]
    fn clear_forgets_the_tokens() {
        let (session, fake) = setup();
        let first = get(&session).unwrap();
        session.clear();
        let second = get(&session).unwrap();
        assert_eq!(counts(&fake), [2, 2, 2]);
        assert_ne!(first.venue_jwt, second.venue_jwt);
    }

    #[test]
    fn a_clear_during_a_run_keeps_its_tokens_out_of_memory() {
        let (session, fake) = setup();
        let run = session.tokens();
        let cleared = async {
            Yield(1).await;
            session.clear();
        };
        let (outcome, ()) = futures_executor::block_on(futures_util::future::join(run, cleared));
        assert!(outcome.is_ok());
        assert!(get(&session).is_ok());
        assert_eq!(counts(&fake), [2, 2, 2]);
    }
}
