//! Draining on SIGTERM, with the `server` binary as operators run it: readiness fails first,
//! new streams are refused with `Retry-After`, the open streams end spread over
//! `--drain-secs`, each with a `retry:` hint, and their tabs resume on another instance losing
//! nothing; then the process exits. A second signal exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loadgen::{Client, Front, Stream};
use protocol::{SessionUuid, paths};
use serde_json::{Value, json};
use server::events::{DRAIN_RETRY_JITTER_MS, DRAIN_RETRY_MIN_MS, Published};
use tokio::sync::mpsc;

use super::status_json;
use crate::events::{long_lived, next};
use crate::tokens::harness::RedisServer;
use crate::util::{Process, TestServer, within};

const TABS: usize = 4;
const DRAIN: Duration = Duration::from_secs(2);

/// `GET /readyz` of `url`.
async fn readyz(url: &str) -> (u16, Value) {
    status_json(reqwest::get(format!("{url}{}", paths::READYZ)).await.unwrap()).await
}

/// What one tab saw on the draining instance.
struct Drained {
    stream: Stream,
    ids: Vec<i64>,
    ended: Instant,
}

/// Reads `stream` until the server ends it, telling `ended` when it does.
async fn read_until_ended(mut stream: Stream, ended: mpsc::UnboundedSender<()>) -> Drained {
    let mut ids = Vec::new();
    // Bounded: a stream that outlives the drain by far fails the test.
    let read = tokio::time::timeout(DRAIN * 10, async {
        while let Some(event) = stream.next_event().await.unwrap() {
            ids.push(event.id.unwrap());
        }
    });
    read.await.expect("the stream outlived the drain");
    let ended_at = Instant::now();
    let _ = ended.send(());
    Drained { stream, ids, ended: ended_at }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_readiness_fails_first_then_streams_end_spread_and_resume_elsewhere() {
    let redis = RedisServer::start().await;
    let drain_secs = DRAIN.as_secs().to_string();
    let mut draining =
        Process::start(&["--redis-url", &redis.url, "--drain-secs", &drain_secs]).await;
    let url = redis.url.clone();
    let staying =
        TestServer::start_with(move |config| *config = config.clone().with_redis(url)).await;

    let mut front = Front::generate(&Client::new(&draining.url));
    front.register().await.unwrap();
    let sessions: Vec<SessionUuid> = (0..TABS).map(|_| SessionUuid::new_v4()).collect();
    let mut tabs = Vec::new();
    for session in &sessions {
        tabs.push(front.connect(*session, None).await.unwrap());
    }
    let hub = staying.hub();
    let first = hub.publish_to_front(front.uuid(), "first", json!(0), long_lived()).await.unwrap();
    for tab in &mut tabs {
        assert_eq!(next(tab).await.id, Some(first.id));
    }
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel();
    let readers: Vec<_> =
        tabs.into_iter().map(|tab| tokio::spawn(read_until_ended(tab, ended_tx.clone()))).collect();

    // Published through the instance that stays, before, during and after the drain.
    let published = Arc::new(Mutex::new(vec![first]));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (published, stop, hub) = (published.clone(), stop.clone(), hub.clone());
        let front = front.uuid();
        tokio::spawn(async move {
            for n in 1.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let event = hub.publish_to_front(front, "meanwhile", json!(n), long_lived()).await;
                published.lock().unwrap().push(event.unwrap());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    assert_eq!(readyz(&draining.url).await.0, 200, "ready before the signal");
    let signalled = Instant::now();
    draining.terminate();
    // By the time any stream has ended, readiness fails, and no stream opens any more.
    within(ended_rx.recv()).await.unwrap();
    let (status, ready) = readyz(&draining.url).await;
    assert_eq!((status, ready["checks"]["draining"].as_str()), (503, Some("down")), "{ready}");
    let refused = reqwest::get(front.stream_url(SessionUuid::new_v4())).await.unwrap();
    let retry_after = refused.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = status_json(refused).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("not_ready")), "{body}");
    let retry_after: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=10).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(readyz(&staying.url).await.0, 200, "the other instance stays ready");

    let mut drained = Vec::new();
    for reader in readers {
        drained.push(within(reader).await.unwrap());
    }
    let first_end = drained.iter().map(|d| d.ended).min().unwrap();
    let last_end = drained.iter().map(|d| d.ended).max().unwrap();
    eprintln!(
        "ends after the signal: first {:?}, last {:?}",
        first_end - signalled,
        last_end - signalled
    );
    // Closes at (i + ½) · window / 4: 1.5 s from the first to the last; generous margins.
    assert!(last_end - first_end >= DRAIN / 4, "not spread: {:?}", last_end - first_end);
    assert!(last_end - signalled < DRAIN + Duration::from_secs(5), "not within the window");
    for tab in &drained {
        let retry = tab.stream.retry().expect("a retry: hint");
        let hint = DRAIN_RETRY_MIN_MS..=DRAIN_RETRY_MIN_MS + DRAIN_RETRY_JITTER_MS;
        assert!(hint.contains(&retry), "retry: {retry}");
    }
    let status = draining.exited(Duration::from_secs(10)).await;
    assert!(status.success(), "exits cleanly after the drain: {status}");

    // Each tab resumes on the instance that stays: every event once, in order.
    let staying_client = staying.client();
    let mut resumed = Vec::new();
    for tab in drained {
        let last = tab.stream.last_event_id().to_owned();
        let session = tab.stream.session();
        let stream = front.with_client(&staying_client).connect(session, Some(&last)).await;
        resumed.push((tab.ids, stream.unwrap()));
    }
    stop.store(true, Ordering::Relaxed);
    within(publisher).await.unwrap();
    let marker = hub.publish_to_front(front.uuid(), "marker", json!(null), long_lived()).await;
    let mut expected: Vec<Published> = published.lock().unwrap().clone();
    expected.push(marker.unwrap());
    let expected: Vec<i64> = expected.iter().skip(1).map(|p| p.id).collect();
    for (mut ids, mut stream) in resumed {
        while ids.len() < expected.len() {
            ids.push(next(&mut stream).await.id.unwrap());
        }
        assert_eq!(ids, expected, "every event once, in order");
    }
}

#[tokio::test]
async fn a_second_sigterm_exits_at_once() {
    let mut server = Process::start(&["--drain-secs", "600"]).await;
    let mut front = Front::generate(&Client::new(&server.url));
    front.register().await.unwrap();
    // Two tabs: the drain's first close comes only after 300 s.
    let _tabs = [
        front.connect(SessionUuid::new_v4(), None).await.unwrap(),
        front.connect(SessionUuid::new_v4(), None).await.unwrap(),
    ];
    server.terminate();
    within(async {
        while readyz(&server.url).await.0 != 503 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    server.terminate();
    let status = server.exited(Duration::from_secs(10)).await;
    assert!(!status.success(), "cut short, not a clean exit: {status}");
}
