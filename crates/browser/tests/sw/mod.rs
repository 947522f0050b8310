//! The service worker's token chain inside a service worker, against the venue stand-in and the
//! backend running natively: the cold chain, the warm path, the three errors with their stages,
//! the retry after a VTX `401`, expiry with the margin, and the single flight.

use std::cell::Cell;
use std::rc::Rc;

use browser::sw::jwt::Jwt;
use browser::sw::{Failure, FetchHttp, Session};
use futures_util::future::join_all;
use protocol::ErrorCode;
use protocol::tokens::{ChainStage, SessionTokens};
use wasm_bindgen_test::wasm_bindgen_test;

mod util;

use self::util::{counters, fault, login, logout, reset};

async fn tokens(session: &Session<FetchHttp>) -> SessionTokens {
    session.tokens().await.unwrap_or_else(|f| panic!("expected tokens, got {f:?}"))
}

async fn failure(session: &Session<FetchHttp>) -> Failure {
    match session.tokens().await {
        Ok(tokens) => panic!("expected a failure, got {tokens:?}"),
        Err(failure) => failure,
    }
}

/// Code, stage and status, and the body the worker would answer with.
fn summary(failure: &Failure) -> (ErrorCode, ChainStage, u16) {
    let body = failure.to_session_error();
    assert_eq!((body.error.as_str(), body.stage), (failure.code.as_str(), failure.stage));
    (failure.code, failure.stage, failure.status())
}

#[wasm_bindgen_test]
async fn cold_chain_then_warm_path() {
    login("alice").await;
    reset().await;
    let session = util::session(&util::settings());

    let cold = tokens(&session).await;
    assert_eq!(counters().await, [1, 1, 1], "the cold chain calls each hop once");
    let venue = Jwt::decode(&cold.venue_jwt).expect("venue JWT");
    let eid = Jwt::decode(&cold.eid_jwt).expect("EID JWT");
    assert!(venue.has_ecoid && eid.has_ecoid, "alice is provisioned");
    assert_eq!(Some(cold.venue_expires_at.millis()), venue.expires_at_ms);
    assert_eq!(Some(cold.eid_expires_at.millis()), eid.expires_at_ms);
    assert!(cold.eid_expires_at <= cold.venue_expires_at, "the EID never outlives the venue JWT");

    let warm = tokens(&session).await;
    assert_eq!(warm, cold);
    assert_eq!(counters().await, [2, 1, 1], "the warm path only confirms the venue session");
}

#[wasm_bindgen_test]
async fn concurrent_requests_share_one_run_of_the_chain() {
    login("alice").await;
    reset().await;
    let session = util::session(&util::settings());
    let answers = join_all((0..10).map(|_| session.tokens())).await;
    assert_eq!(counters().await, [1, 1, 1]);
    let first = answers[0].clone().expect("tokens");
    assert!(answers.iter().all(|a| a.as_ref() == Ok(&first)));
}

#[wasm_bindgen_test]
async fn logged_out_user_gets_venue_session_expired_at_the_xsrf_stage() {
    logout().await;
    reset().await;
    let session = util::session(&util::settings());
    let failure = failure(&session).await;
    assert_eq!(summary(&failure), (ErrorCode::VenueSessionExpired, ChainStage::Xsrf, 401));
    assert_eq!(failure.to_session_error().message, "Venue session expired");
    // The dashboard's redirect to the login page was followed (and counted once).
    assert_eq!(counters().await, [1, 0, 0]);
}

#[wasm_bindgen_test]
async fn user_without_ecoid_is_not_provisioned() {
    login("bob").await;
    reset().await;
    let session = util::session(&util::settings());
    let failure = failure(&session).await;
    assert_eq!(summary(&failure), (ErrorCode::NotProvisioned, ChainStage::Authorize, 403));
    assert_eq!(failure.to_session_error().message, "Venue user is not provisioned for ECS");
    assert_eq!(counters().await, [1, 1, 0], "no exchange is tried");
}

#[wasm_bindgen_test]
async fn failing_hops_give_token_acquisition_failed_with_their_stage() {
    login("alice").await;
    let failed = ErrorCode::TokenAcquisitionFailed;
    for (hop, stage) in [
        ("dashboard", ChainStage::Xsrf),
        ("authorize", ChainStage::Authorize),
        ("vtx", ChainStage::Vtx),
    ] {
        reset().await;
        fault(hop, "fail").await;
        let session = util::session(&util::settings());
        let failure = failure(&session).await;
        assert_eq!(summary(&failure), (failed, stage, 502), "{hop} failing");
        assert_eq!(failure.to_session_error().message, "Token acquisition failed");
    }
    reset().await;
}

#[wasm_bindgen_test]
async fn hanging_hops_time_out_with_504() {
    login("alice").await;
    // The timeout applies to every hop, the real ones before the hanging one too: two seconds
    // are many times what a real hop takes on a busy machine, and only the hanging hop waits them.
    let settings = browser::sw::Settings {
        hop_timeout: std::time::Duration::from_secs(2),
        ..util::settings()
    };
    for (hop, stage) in [("authorize", ChainStage::Authorize), ("vtx", ChainStage::Vtx)] {
        reset().await;
        fault(hop, "hang").await;
        let session = util::session(&settings);
        let failure = failure(&session).await;
        assert_eq!(
            summary(&failure),
            (ErrorCode::TokenAcquisitionFailed, stage, 504),
            "{hop} hanging: {}",
            failure.detail
        );
    }
    // Lets the held requests go.
    reset().await;
}

#[wasm_bindgen_test]
async fn a_vtx_401_drops_the_venue_jwt_and_retries_the_chain_once() {
    login("alice").await;
    reset().await;
    fault("vtx", "unauthorized-once").await;
    let session = util::session(&util::settings());
    let answer = tokens(&session).await;
    assert_eq!(counters().await, [1, 2, 2], "one retry from the authorize hop");
    assert!(Jwt::decode(&answer.eid_jwt).is_ok());

    // A second 401, for the fresh venue JWT, is final.
    reset().await;
    fault("vtx", "unauthorized").await;
    let session = util::session(&util::settings());
    let failure = failure(&session).await;
    assert_eq!(summary(&failure), (ErrorCode::TokenAcquisitionFailed, ChainStage::Vtx, 502));
    assert_eq!(counters().await, [1, 2, 2], "retried once, not more");
    reset().await;
}

#[wasm_bindgen_test]
async fn tokens_expire_margin_seconds_before_exp() {
    login("alice").await;
    reset().await;
    let settings = util::settings();
    let margin_ms = i64::try_from(settings.margin.as_millis()).expect("margin");
    // The worker's clock, moved by the test; the servers keep real time.
    let now = Rc::new(Cell::new(js_sys::Date::now() as i64));
    let session = util::session_with_clock(&settings, {
        let now = now.clone();
        move || now.get()
    });

    let cold = tokens(&session).await;
    let eid_exp = cold.eid_expires_at.millis();
    let venue_exp = cold.venue_expires_at.millis();
    assert!(eid_exp < venue_exp - margin_ms, "the server's EID lifetime is shorter: {cold:?}");
    assert_eq!(counters().await, [1, 1, 1]);

    now.set(eid_exp - margin_ms - 1);
    assert_eq!(tokens(&session).await, cold, "just before exp - margin: still warm");
    assert_eq!(counters().await, [2, 1, 1]);

    now.set(eid_exp - margin_ms);
    let renewed = tokens(&session).await;
    assert_eq!(counters().await, [3, 1, 2], "at exp - margin the EID JWT is renewed");
    assert_eq!(renewed.venue_jwt, cold.venue_jwt, "with the cached venue JWT");
    assert_ne!(renewed.eid_jwt, cold.eid_jwt);

    now.set(venue_exp - margin_ms);
    tokens(&session).await;
    // (The stand-in's JWTs have no `jti`: a new one within the same second is the same text.)
    assert_eq!(counters().await, [4, 2, 3], "at its exp - margin the venue JWT is renewed too");
}

/// The worker never hands one venue user's tokens to another: after bob signs in where alice
/// was, bob gets his own answer, never alice's cached claims.
#[wasm_bindgen_test]
async fn another_venue_user_never_gets_the_previous_users_tokens() {
    login("alice").await;
    reset().await;
    let session = util::session(&util::settings());
    let alice = tokens(&session).await;
    assert!(Jwt::decode(&alice.venue_jwt).expect("venue JWT").has_ecoid);

    login("bob").await;
    let bob = failure(&session).await;
    assert_eq!(summary(&bob), (ErrorCode::NotProvisioned, ChainStage::Authorize, 403));

    logout().await;
    let nobody = failure(&session).await;
    assert_eq!(summary(&nobody), (ErrorCode::VenueSessionExpired, ChainStage::Xsrf, 401));
    // Three chains' dashboards and the one that bob's login was sent on to; alice's exchange
    // only: bob's answer took a venue JWT of his own.
    assert_eq!(counters().await, [4, 2, 1]);
}

#[wasm_bindgen_test]
async fn session_clear_forgets_the_tokens() {
    login("alice").await;
    reset().await;
    let session = util::session(&util::settings());
    tokens(&session).await;
    session.clear();
    tokens(&session).await;
    assert_eq!(counters().await, [2, 2, 2]);
}

#[wasm_bindgen_test]
async fn a_failed_run_is_reported_once() {
    logout().await;
    reset().await;
    let session = util::session(&util::settings());
    let reports = Rc::new(Cell::new(0));
    session.on_failure({
        let reports = reports.clone();
        move |_| reports.set(reports.get() + 1)
    });
    let answers = join_all((0..5).map(|_| session.tokens())).await;
    assert!(answers.iter().all(Result::is_err));
    assert_eq!(reports.get(), 1, "one session-error per failed run, not per request");
}
