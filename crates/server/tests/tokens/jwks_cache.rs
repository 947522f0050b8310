//! The venue JWKS cache when the venue misbehaves: fetches stay at one per `MIN_REFETCH`
//! whatever happens, nobody waits for a hanging fetch while a key is at hand, and keys the
//! venue withdrew (or that can no longer be checked) stop being trusted in bounded time. The
//! cache ages by the injected clock; the JWKS comes from a small server the test steers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode as AxumStatus;
use axum::response::{IntoResponse, Response};
use reqwest::StatusCode;
use server::tokens::{
    VENUE_JWKS_MAX_AGE, VENUE_JWKS_MAX_STALE, VENUE_JWKS_MIN_REFETCH, VenueKeySource,
};
use tokio::sync::watch;

use super::harness::{Auth, Backend, Venue, exchange, expect_error};
use crate::util::wait_until;

/// How the test JWKS endpoint answers.
#[derive(Debug, Clone)]
enum Mode {
    Serve(serde_json::Value),
    Fail,
    /// Not at all, until the mode changes.
    Hang,
}

#[derive(Clone)]
struct Endpoint {
    mode: Arc<watch::Sender<Mode>>,
    fetches: Arc<AtomicU64>,
}

/// A JWKS endpoint on a free port; its URL and its switch.
struct Jwks {
    url: String,
    endpoint: Endpoint,
}

impl Jwks {
    async fn start(mode: Mode) -> Self {
        let endpoint = Endpoint {
            mode: Arc::new(watch::channel(mode).0),
            fetches: Arc::new(AtomicU64::new(0)),
        };
        let router = axum::Router::new()
            .route("/jwks.json", axum::routing::get(answer))
            .with_state(endpoint.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, endpoint }
    }

    fn set(&self, mode: Mode) {
        self.endpoint.mode.send_replace(mode);
    }

    fn fetches(&self) -> u64 {
        self.endpoint.fetches.load(Ordering::SeqCst)
    }
}

async fn answer(State(endpoint): State<Endpoint>) -> Response {
    endpoint.fetches.fetch_add(1, Ordering::SeqCst);
    let mut mode = endpoint.mode.subscribe();
    loop {
        let current = mode.borrow_and_update().clone();
        match current {
            Mode::Serve(jwks) => return Json(jwks).into_response(),
            Mode::Fail => return AxumStatus::INTERNAL_SERVER_ERROR.into_response(),
            Mode::Hang => {
                if mode.changed().await.is_err() {
                    return AxumStatus::SERVICE_UNAVAILABLE.into_response();
                }
            }
        }
    }
}

/// A venue stand-in that signs, the test's JWKS endpoint serving its keys, and a server that
/// trusts that endpoint.
async fn setup() -> (Venue, Jwks, Auth) {
    let venue = Venue::start().await;
    let jwks = Jwks::start(Mode::Serve(venue.standin.jwks())).await;
    let url = jwks.url.clone();
    let auth = Auth::start_with(Backend::embedded(), move |config| {
        config.tokens.venue_keys = VenueKeySource::Url(url);
    })
    .await;
    (venue, jwks, auth)
}

/// A venue JWT valid at the server's (injected) time, which these tests move by hours.
fn venue_jwt(venue: &Venue, auth: &Auth) -> String {
    let mut claims = venue.claims();
    claims.iat = auth.clock.now().seconds();
    claims.exp = claims.iat + 3600;
    venue.sign(&claims)
}

async fn exchange_status(auth: &Auth, venue: &Venue) -> StatusCode {
    exchange(auth, &venue_jwt(venue, auth)).await.status()
}

const A_BIT: Duration = Duration::from_secs(1);

/// Before, once the cache was older than `MAX_AGE` and the venue failed, every request fetched
/// the JWKS again (one at a time, up to 5 s each).
#[tokio::test]
async fn a_stale_jwks_that_cannot_be_fetched_is_tried_once_per_min_refetch_not_per_request() {
    let (venue, jwks, auth) = setup().await;
    assert_eq!(exchange_status(&auth, &venue).await, StatusCode::OK);
    assert_eq!(jwks.fetches(), 1);

    jwks.set(Mode::Fail);
    auth.advance(VENUE_JWKS_MAX_AGE + A_BIT);
    for _ in 0..10 {
        // The stale keys still serve.
        assert_eq!(exchange_status(&auth, &venue).await, StatusCode::OK);
    }
    assert_eq!(jwks.fetches(), 2, "one attempt for ten requests");

    auth.advance(VENUE_JWKS_MIN_REFETCH);
    for _ in 0..10 {
        assert_eq!(exchange_status(&auth, &venue).await, StatusCode::OK);
    }
    assert_eq!(jwks.fetches(), 3);

    jwks.set(Mode::Serve(venue.standin.jwks()));
    auth.advance(VENUE_JWKS_MIN_REFETCH);
    assert_eq!(exchange_status(&auth, &venue).await, StatusCode::OK);
    assert_eq!(jwks.fetches(), 4);
    // Fresh again: no fetch for a while.
    auth.advance(VENUE_JWKS_MIN_REFETCH);
    assert_eq!(exchange_status(&auth, &venue).await, StatusCode::OK);
    assert_eq!(jwks.fetches(), 4);
}

#[tokio::test]
async fn while_a_jwks_fetch_hangs_requests_with_a_cached_key_do_not_wait_for_it() {
    let (venue, jwks, auth) = setup().await;
    assert_eq!(exchange_status(&auth, &venue).await, StatusCode::OK);

    jwks.set(Mode::Hang);
    auth.advance(VENUE_JWKS_MAX_AGE + A_BIT);
    let (http, url, jwt) = (auth.http.clone(), auth.url("/vtx/token"), venue_jwt(&venue, &auth));
    let fetching = tokio::spawn(async move { http.get(url).bearer_auth(jwt).send().await });
    wait_until(|| jwks.fetches() == 2).await;
    for _ in 0..5 {
        assert_eq!(exchange_status(&auth, &venue).await, StatusCode::OK);
    }
    assert_eq!(jwks.fetches(), 2, "the others neither fetched nor queued behind the fetch");

    jwks.set(Mode::Serve(venue.standin.jwks()));
    assert_eq!(fetching.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_key_the_venue_withdrew_stops_being_trusted_once_the_cache_is_stale() {
    let (venue, jwks, auth) = setup().await;
    assert_eq!(exchange_status(&auth, &venue).await, StatusCode::OK);

    // The venue rotates: its JWKS no longer has the key that signs our tokens.
    let other = venue_standin::VenueStandin::new(venue_standin::Config::default()).unwrap();
    jwks.set(Mode::Serve(other.jwks()));
    auth.advance(VENUE_JWKS_MAX_AGE - A_BIT);
    assert_eq!(exchange_status(&auth, &venue).await, StatusCode::OK, "fresh: not fetched yet");
    auth.advance(A_BIT * 2);
    expect_error(
        exchange(&auth, &venue_jwt(&venue, &auth)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_eq!(jwks.fetches(), 2);
}

/// Before, keys fetched once stayed trusted for good while the venue's JWKS failed: a key the
/// venue withdrew meanwhile could not be told apart from a good one.
#[tokio::test]
async fn keys_are_not_trusted_past_max_stale_while_the_jwks_cannot_be_fetched() {
    let (venue, jwks, auth) = setup().await;
    assert_eq!(exchange_status(&auth, &venue).await, StatusCode::OK);

    jwks.set(Mode::Fail);
    auth.advance(VENUE_JWKS_MAX_STALE - A_BIT);
    assert_eq!(exchange_status(&auth, &venue).await, StatusCode::OK, "stale but usable");
    auth.advance(A_BIT * 2);
    let message = expect_error(
        exchange(&auth, &venue_jwt(&venue, &auth)).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "internal",
    )
    .await;
    assert!(message.contains("venue keys unavailable"), "{message}");
    // The attempt at MAX_STALE - 1 s was the last one: within MIN_REFETCH there is no other.
    assert_eq!(jwks.fetches(), 2);
    // Still at most one attempt per MIN_REFETCH, and trusted again once the venue answers.
    expect_error(
        exchange(&auth, &venue_jwt(&venue, &auth)).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "internal",
    )
    .await;
    assert_eq!(jwks.fetches(), 2);
    jwks.set(Mode::Serve(venue.standin.jwks()));
    auth.advance(VENUE_JWKS_MIN_REFETCH);
    assert_eq!(exchange_status(&auth, &venue).await, StatusCode::OK);
    assert_eq!(jwks.fetches(), 3);
}
