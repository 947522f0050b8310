//! Metrics through the `metrics` facade, and their Prometheus exposition.
//!
//! The library only records (`metrics::counter!` and friends): where no recorder is installed
//! that costs next to nothing, and an application that embeds the server keeps the recorder
//! of its choice. The `server` binary installs the Prometheus recorder with
//! [`install_prometheus`] and serves its text at `GET /metrics` (or on `--metrics-listen`);
//! without a handle in [`crate::Config::metrics`], `/metrics` answers 404 `not_found`.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `websession_streams_active` | gauge | `scope` (`session`, `front`) | active reverse streams of this instance, sampled at each scrape |
//! | `websession_stream_opens_total` | counter | `result` (`ok` or the error code) | stream opens answered |
//! | `websession_activation_seconds` | histogram | | time to answer an activation (the store's decision, the holding instance told) |
//! | `websession_events_published_total` | counter | `target` (`session`, `front`, `all`) | events stored for delivery |
//! | `websession_events_delivered_total` | counter | | events handed to this instance's live streams (one per stream) |
//! | `websession_event_first_write_seconds` | histogram | | from the start of a publish to the first stream that writes the event, for events published through this instance and handed to its streams by the embedded store (not in a replay; on Redis they come back through pub/sub) |
//! | `websession_replay_events_total` | counter | | kept events read for streams that resume |
//! | `websession_stream_slow_closed_total` | counter | | streams ended for not keeping up (they resume losslessly) |
//! | `websession_direct_events_total` | counter | `result` | direct (front → back) events answered |
//! | `websession_refresh_total` | counter | `result` | access-token refreshes answered |
//! | `websession_vtx_total` | counter | `result` | VTX token exchanges answered |
//! | `websession_store_seconds` | histogram | `op` (the event store's operation) | event-store operations |
//!
//! `result` is `ok` for a success, else the stable error code of the answer. The reverse
//! stream's open is counted when its head is answered; no metric times a whole SSE response.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::PrometheusBuilder;
pub use metrics_exporter_prometheus::PrometheusHandle;
use protocol::messages::FrontBid;
use protocol::{ErrorCode, EventUuid, FrontUuid, PublicKey, SessionUuid, StreamUuid};
use protocol::{Timestamp, paths};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::error_response;
use crate::events::Events;
use crate::events::store::{
    ActivateRefusal, Activation, BackRecord, Cutoffs, DisconnectRefusal, EventStore, Feed,
    IdempotencyClaim, NewEvent, NodeId, OpenStream, Presence, PublishRefusal, Registration,
    ReplayPage, ReplayRequest, Served, StoreFuture, Swept,
};

/// Histogram buckets, in seconds: store round trips of a millisecond up to stalls of 10 s.
const BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder as this process's global recorder and describes the
/// metrics; returns the handle to put in [`crate::Config::metrics`]. Fails if a recorder is
/// installed already (only one per process).
pub fn install_prometheus() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new().set_buckets(BUCKETS)?.install_recorder()?;
    describe();
    let upkeep = handle.clone();
    std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        }
    })?;
    Ok(handle)
}

/// Gives the installed recorder the help text of every metric.
fn describe() {
    describe_gauge!("websession_streams_active", "Active reverse streams of this instance.");
    describe_counter!("websession_stream_opens_total", "Reverse stream opens, by result.");
    describe_histogram!(
        "websession_activation_seconds",
        metrics::Unit::Seconds,
        "Time to answer a stream activation."
    );
    describe_counter!("websession_events_published_total", "Events stored, by target.");
    describe_counter!("websession_events_delivered_total", "Events handed to live streams.");
    describe_histogram!(
        "websession_event_first_write_seconds",
        metrics::Unit::Seconds,
        "From the start of a publish to the first stream writing the event."
    );
    describe_counter!("websession_replay_events_total", "Kept events read for resuming streams.");
    describe_counter!(
        "websession_stream_slow_closed_total",
        "Streams ended for not keeping up with their events."
    );
    describe_counter!("websession_direct_events_total", "Direct events, by result.");
    describe_counter!("websession_refresh_total", "Access-token refreshes, by result.");
    describe_counter!("websession_vtx_total", "VTX token exchanges, by result.");
    describe_histogram!(
        "websession_store_seconds",
        metrics::Unit::Seconds,
        "Event store operations, by operation."
    );
}

/// Sets the gauges that are sampled rather than counted. `/metrics` calls it before each
/// render; an application with a recorder of its own calls it before rendering it.
pub fn sample(events: &Events) {
    let (session, front) = events.active_streams_by_scope();
    gauge!("websession_streams_active", "scope" => "session").set(session as f64);
    gauge!("websession_streams_active", "scope" => "front").set(front as f64);
}

#[derive(Clone)]
struct Scrape {
    handle: Option<PrometheusHandle>,
    events: Events,
}

/// `GET /metrics` alone, for the main router or a listener of its own (`--metrics-listen`).
pub fn router(handle: Option<PrometheusHandle>, events: Events) -> Router {
    routes(handle, events).split_for_parts().0
}

/// [`router`] with its OpenAPI operation.
pub(crate) fn routes(handle: Option<PrometheusHandle>, events: Events) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(scrape)).with_state(Scrape { handle, events })
}

crate::openapi::errors! {
    /// The errors of a scrape.
    ScrapeErrors {
        404: NotFound;
    }
}

/// Prometheus metrics
///
/// The Prometheus text exposition format. `404 not_found` when no Prometheus recorder is
/// installed (an embedding application with a recorder of its own) or when `--metrics-listen`
/// serves the metrics on another address.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "The metrics.", content_type = "text/plain", body = String),
        ScrapeErrors,
    )
)]
async fn scrape(State(scrape): State<Scrape>) -> Response {
    let Some(handle) = scrape.handle else {
        return error_response(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no metrics recorder is installed in this server",
        );
    };
    sample(&scrape.events);
    let text = handle.render();
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// The endpoints whose answers are counted by result.
#[derive(Clone, Copy)]
enum Counted {
    StreamOpen,
    Activation,
    Direct,
    Refresh,
    Vtx,
}

fn counted(path: &str) -> Option<Counted> {
    let under = |prefix: &str| {
        path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if under(paths::STREAM_OPEN) {
        Some(Counted::StreamOpen)
    } else if under(paths::STREAM_ACTIVATE) {
        Some(Counted::Activation)
    } else if under(paths::DIRECT) {
        Some(Counted::Direct)
    } else if path == paths::AUTH_REFRESH {
        Some(Counted::Refresh)
    } else if path == paths::VTX_TOKEN {
        Some(Counted::Vtx)
    } else {
        None
    }
}

/// Counts the answers of the endpoints in [`Counted`] by result: `ok`, or the error code that
/// [`error_response`] left in the response's extensions.
pub(crate) async fn count_results(request: Request, next: Next) -> Response {
    let Some(kind) = counted(request.uri().path()) else { return next.run(request).await };
    let started = Instant::now();
    let response = next.run(request).await;
    let result = if response.status().is_success() {
        "ok"
    } else {
        response.extensions().get::<ErrorCode>().map_or("error", |code| code.as_str())
    };
    match kind {
        Counted::StreamOpen => counter!("websession_stream_opens_total", "result" => result),
        Counted::Activation => {
            histogram!("websession_activation_seconds").record(started.elapsed().as_secs_f64());
            return response;
        }
        Counted::Direct => counter!("websession_direct_events_total", "result" => result),
        Counted::Refresh => counter!("websession_refresh_total", "result" => result),
        Counted::Vtx => counter!("websession_vtx_total", "result" => result),
    }
    .increment(1);
    response
}

/// An event store that times each operation into `websession_store_seconds{op}`.
#[derive(Debug)]
pub(crate) struct TimedStore<S>(pub(crate) S);

fn timed<'a, T: Send + 'a>(op: &'static str, future: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
    Box::pin(async move {
        let started = Instant::now();
        let result = future.await;
        histogram!("websession_store_seconds", "op" => op).record(started.elapsed().as_secs_f64());
        result
    })
}

impl<S: EventStore> EventStore for TimedStore<S> {
    fn start(&self, feed: std::sync::Arc<dyn Feed>, node: NodeId) -> StoreFuture<'_, ()> {
        self.0.start(feed, node)
    }

    fn stop(&self) -> StoreFuture<'_, ()> {
        self.0.stop()
    }

    fn back_identity(&self, fresh: BackRecord) -> StoreFuture<'_, BackRecord> {
        self.0.back_identity(fresh)
    }

    fn register(
        &self,
        front: FrontUuid,
        key: PublicKey,
        now: Timestamp,
    ) -> StoreFuture<'_, Registration> {
        timed("register", self.0.register(front, key, now))
    }

    fn front(&self, front: FrontUuid) -> StoreFuture<'_, Option<crate::events::store::FrontRow>> {
        timed("front", self.0.front(front))
    }

    fn open_stream(&self, stream: OpenStream) -> StoreFuture<'_, ()> {
        timed("open_stream", self.0.open_stream(stream))
    }

    fn activate_stream(
        &self,
        front: FrontUuid,
        stream: StreamUuid,
        max_active: usize,
        now: Timestamp,
    ) -> StoreFuture<'_, Result<Activation, ActivateRefusal>> {
        timed("activate_stream", self.0.activate_stream(front, stream, max_active, now))
    }

    fn close_stream(
        &self,
        front: FrontBid,
        session: SessionUuid,
        stream: StreamUuid,
        now: Timestamp,
    ) -> StoreFuture<'_, ()> {
        timed("close_stream", self.0.close_stream(front, session, stream, now))
    }

    fn disconnect(
        &self,
        front: FrontUuid,
        session: Option<SessionUuid>,
        now: Timestamp,
    ) -> StoreFuture<'_, Result<usize, DisconnectRefusal>> {
        timed("disconnect", self.0.disconnect(front, session, now))
    }

    fn presence(&self, front: FrontUuid, max: usize) -> StoreFuture<'_, Option<Presence>> {
        timed("presence", self.0.presence(front, max))
    }

    fn served(
        &self,
        front: FrontUuid,
        session: SessionUuid,
        now: Timestamp,
    ) -> StoreFuture<'_, Served> {
        timed("served", self.0.served(front, session, now))
    }

    fn publish(&self, event: NewEvent) -> StoreFuture<'_, Result<i64, PublishRefusal>> {
        timed("publish", self.0.publish(event))
    }

    fn replay(&self, request: ReplayRequest) -> StoreFuture<'_, ReplayPage> {
        timed("replay", self.0.replay(request))
    }

    fn claim_direct(
        &self,
        front: FrontBid,
        event: EventUuid,
        keep_until: Timestamp,
        now: Timestamp,
    ) -> StoreFuture<'_, bool> {
        timed("claim_direct", self.0.claim_direct(front, event, keep_until, now))
    }

    fn release_direct(&self, front: FrontBid, event: EventUuid) -> StoreFuture<'_, ()> {
        timed("release_direct", self.0.release_direct(front, event))
    }

    fn claim_publish(
        &self,
        front: FrontBid,
        key: String,
        keep_until: Timestamp,
        now: Timestamp,
    ) -> StoreFuture<'_, IdempotencyClaim> {
        timed("claim_publish", self.0.claim_publish(front, key, keep_until, now))
    }

    fn settle_publish(
        &self,
        front: FrontBid,
        key: String,
        id: Option<i64>,
        keep_until: Timestamp,
        now: Timestamp,
    ) -> StoreFuture<'_, ()> {
        timed("settle_publish", self.0.settle_publish(front, key, id, keep_until, now))
    }

    fn sweep(&self, cutoffs: Cutoffs) -> StoreFuture<'_, Swept> {
        timed("sweep", self.0.sweep(cutoffs))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        timed("ping", self.0.ping())
    }
}
