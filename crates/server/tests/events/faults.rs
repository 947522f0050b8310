//! Faults under load: the `server` binary on the embedded store, killed with SIGKILL while
//! events flow to 200 streams, restarted on the same data directory; and streams that never
//! read while 10,000 events are published.

use std::collections::HashSet;

use loadgen::{Client, Front, Stream};
use protocol::{EventUuid, SessionUuid};
use serde_json::json;
use tokio::task::JoinSet;

use crate::util::{Process, within};

const STREAMS: usize = 200;
/// The server API's key in the slow-reader test.
const API_KEY: &str = "fault-test-key-0123456789";
/// Broadcasts sent before the kill and after the restart.
const BURST: usize = 150;

/// What one tab received: `(id, the direct event it answers)` in arrival order.
type Seen = Vec<(i64, Option<EventUuid>)>;

/// Reads `tab` until the stream ends (the server died) or the broadcast answering `until`
/// arrives.
async fn read(mut tab: Stream, until: Option<EventUuid>) -> (SessionUuid, String, Seen) {
    let mut seen = Vec::new();
    // Until the connection is cut (SIGKILL) or ends.
    while let Ok(Some(got)) = tab.next_event().await {
        let answers = got.event.meta.request_uuid;
        seen.push((got.id.expect("every event has an id"), answers));
        if until.is_some() && answers == until {
            break;
        }
    }
    (tab.session(), tab.last_event_id().to_owned(), seen)
}

/// Sends `n` broadcasts from `tab`, as fast as they are answered; the ones acknowledged.
async fn broadcast(tab: &Stream, n: usize) -> Vec<EventUuid> {
    let mut acked = Vec::new();
    for i in 0..n {
        match tab.send("broadcast", json!(i)).await {
            Ok(uuid) => acked.push(uuid),
            Err(_) => break,
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_a_killed_server_restarted_on_its_data_dir_loses_and_repeats_nothing() {
    let args = ["--max-streams-per-front", "1000", "--registrations-per-sec", "0"];
    let server = Process::start(&args).await;
    let mut front = Front::generate(&Client::new(&server.url));
    front.register().await.unwrap();
    let (uuid, keys) = (front.uuid(), front.keys().clone());

    let mut readers = JoinSet::new();
    for _ in 0..STREAMS {
        let tab = front.connect(SessionUuid::new_v4(), None).await.unwrap();
        readers.spawn(read(tab, None));
    }
    // The sender does not read its own stream: its 150 small frames fit the socket buffers,
    // so it is not cut off as too slow (which would end its session, and its sending).
    let sender = front.connect(SessionUuid::new_v4(), None).await.unwrap();
    let mut acked = broadcast(&sender, BURST).await;
    assert_eq!(acked.len(), BURST, "the server answered every broadcast before the kill");

    // SIGKILL while the fan-out is still being written, then the same data directory again.
    let server = server.restart().await;
    let before: Vec<(SessionUuid, String, Seen)> = within(readers.join_all()).await;

    let front = Front::from_parts(&Client::new(&server.url), uuid, keys);
    let mut readers = JoinSet::new();
    let marker = EventUuid::new_v4();
    let mut resumed = Vec::new();
    for (session, last, _) in &before {
        resumed.push((*session, front.connect(*session, Some(last)).await.unwrap()));
    }
    let sender = front.connect(sender.session(), Some(sender.last_event_id())).await.unwrap();
    for (_, tab) in resumed {
        readers.spawn(read(tab, Some(marker)));
    }
    acked.extend(broadcast(&sender, BURST).await);
    assert_eq!(acked.len(), 2 * BURST, "the restarted server answered every broadcast");
    let mut end = sender.direct_event("broadcast", json!("end"), false).unwrap();
    end.meta.uuid = marker;
    end.meta.stamp = sender.peer().unwrap().stamp(&marker, end.meta.published);
    sender.send_event(&end).await.unwrap();
    acked.push(marker);
    let resumed: Vec<(SessionUuid, String, Seen)> =
        tokio::time::timeout(std::time::Duration::from_secs(120), readers.join_all())
            .await
            .expect("every resumed tab got the marker");

    for (session, _, first) in &before {
        let (_, _, second) = resumed.iter().find(|(s, _, _)| s == session).unwrap();
        let all: Vec<&(i64, Option<EventUuid>)> = first.iter().chain(second).collect();
        assert!(
            all.windows(2).all(|w| w[0].0 < w[1].0),
            "tab {session}: ids not strictly increasing (a repeat or a reorder)"
        );
        let got: HashSet<EventUuid> = all.iter().filter_map(|(_, answers)| *answers).collect();
        let missing = acked.iter().filter(|uuid| !got.contains(uuid)).count();
        assert_eq!(missing, 0, "tab {session}: {missing} acknowledged events never arrived");
    }
}

/// Regression: streams that never read pinned all that was sent to them (ten such streams held
/// +222 MiB after a large replay). A client that does not read holds at most its own share: its
/// queue of frames (`--stream-buffer`), a replay page (`--replay-page-bytes`) and the
/// connection's write buffer, then it is cut off as too slow, while a stream that reads gets
/// every event as it is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_never_read_hold_only_their_share_and_delay_no_one() {
    const SLOW: usize = 100;
    const EVENTS: usize = 10_000;
    /// Published at once, then awaited at the stream that reads.
    const BATCH: usize = 10;
    /// The `x`s of each event: 10,000 of them are 20 MiB for each stream, 2 GiB for the slow
    /// ones if they pinned what they were sent.
    const BODY: usize = 2 * 1024;
    const STREAM_BUFFER: usize = 64;
    const REPLAY_PAGE_BYTES: usize = 256 * 1024;
    // Events come from the application's backend, through the server API.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, format!("{API_KEY}\n")).unwrap();
    let key_file = key_file.display().to_string();
    let (stream_buffer, replay_page) = (STREAM_BUFFER.to_string(), REPLAY_PAGE_BYTES.to_string());
    let args = [
        "--max-streams-per-front",
        "1000",
        "--registrations-per-sec",
        "0",
        "--api-key-file",
        &key_file,
        "--stream-buffer",
        &stream_buffer,
        "--replay-page-bytes",
        &replay_page,
    ];
    let server = Process::start(&args).await;
    let mut front = Front::generate(&Client::new(&server.url));
    front.register().await.unwrap();
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        // Connected and activated, then never read again.
        slow.push(front.connect(SessionUuid::new_v4(), None).await.unwrap());
    }
    let fast = front.connect(SessionUuid::new_v4(), None).await.unwrap();
    let (ids_tx, mut ids) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(read_ids(fast, EVENTS, ids_tx));
    let before = server.rss();

    let http = reqwest::Client::new();
    let publish = |n: usize| {
        let body = json!({
            "frontUuid": front.uuid(),
            "name": "load",
            "data": [n, "x".repeat(BODY)],
        });
        let request = http
            .post(format!("{}{}", server.url, protocol::paths::API_PUBLISH))
            .header(protocol::api::API_KEY_HEADER, API_KEY)
            .json(&body)
            .send();
        async move {
            let answer: serde_json::Value = request.await.unwrap().json().await.unwrap();
            answer["id"].as_i64().expect("the event's id")
        }
    };
    for batch in 0..EVENTS / BATCH {
        let mut sent =
            futures_util::future::join_all((0..BATCH).map(|i| publish(batch * BATCH + i))).await;
        sent.sort_unstable();
        // No delay: the stream that reads has the whole batch before the next one goes out,
        // whatever the slow streams hold (a fan-out that waited for them would stall here).
        let mut got = Vec::with_capacity(BATCH);
        within(async {
            while got.len() < BATCH {
                got.push(ids.recv().await.expect("the reading stream goes on"));
            }
        })
        .await;
        assert_eq!(got, sent, "batch {batch}: the reading stream got every event once, in order");
    }
    let grown = server.rss().saturating_sub(before);
    // A slow stream's share, from the configured caps: its queue of frames (an event's frame
    // is its body and at most 1 KiB of envelope and SSE framing), a replay page, and hyper's
    // write buffer (its default maximum, 8 KiB + 400 KiB). The kernel's socket buffers are not
    // the process's memory. Everything else (the events themselves) is shared or gone.
    let frame = BODY + 1024;
    let share = STREAM_BUFFER * frame + REPLAY_PAGE_BYTES + 8 * 1024 + 400 * 1024;
    eprintln!(
        "server RSS grew {} KiB for {SLOW} streams that never read (their caps: {} KiB)",
        grown / 1024,
        SLOW * share / 1024
    );
    assert!(grown < (SLOW * share) as u64, "RSS grew {grown} bytes, more than {SLOW} shares");
    within(reader).await.unwrap();
    drop(slow);
}

/// Reads `n` events of `tab` and hands over their ids as they arrive.
async fn read_ids(mut tab: Stream, n: usize, ids: tokio::sync::mpsc::UnboundedSender<i64>) {
    for read in 0..n {
        match tab.next_event().await {
            Ok(Some(got)) => ids.send(got.id.expect("every event has an id")).unwrap(),
            other => panic!("the reading stream ended after {read} events: {other:?}"),
        }
    }
}
