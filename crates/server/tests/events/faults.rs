//! Faults under load: the `server` binary on the embedded store, killed with SIGKILL while
//! events flow to 200 streams, restarted on the same data directory.

use std::collections::HashSet;

use loadgen::{Client, Front, Stream};
use protocol::{EventUuid, SessionUuid};
use serde_json::json;
use tokio::task::JoinSet;

use crate::util::{Process, within};

const STREAMS: usize = 200;
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
/// queue of frames (`--stream-buffer`, shared with every other stream) and the connection's
/// write buffer, then it is cut off as too slow, while a stream that reads gets everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_never_read_hold_only_their_share_and_delay_no_one() {
    const SLOW: usize = 100;
    const EVENTS: usize = 3_000;
    // Events come from the application's backend, through the server API.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, "soak-test-key-0123456789\n").unwrap();
    let key_file = key_file.display().to_string();
    let args = [
        "--max-streams-per-front",
        "1000",
        "--registrations-per-sec",
        "0",
        "--api-key-file",
        &key_file,
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
    let reader = tokio::spawn(read_ids(fast, EVENTS + 1));
    let before = server.rss();

    // 3,000 events of 8 KiB to the whole front: 24 MiB for each stream, 2.4 GiB for the slow
    // ones if they pinned what they were sent.
    let http = reqwest::Client::new();
    let publish = |n: usize| {
        let body = json!({
            "frontUuid": front.uuid(),
            "name": "load",
            "data": [n, "x".repeat(8 * 1024)],
        });
        let request = http
            .post(format!("{}{}", server.url, protocol::paths::API_PUBLISH))
            .header(protocol::api::API_KEY_HEADER, "soak-test-key-0123456789")
            .json(&body)
            .send();
        async move {
            let answer: serde_json::Value = request.await.unwrap().json().await.unwrap();
            answer["id"].as_i64().expect("the event's id")
        }
    };
    let mut sent = Vec::new();
    for chunk in 0..EVENTS / 10 {
        let batch = (0..10).map(|i| publish(chunk * 10 + i));
        sent.extend(futures_util::future::join_all(batch).await);
    }
    let grown = server.rss().saturating_sub(before);
    // A slow stream's share: 64 queued frames of 8 KiB, and hyper's write buffer (at most
    // ~400 KiB). Everything else (the events themselves) is shared or gone.
    let share = 64 * 9 * 1024 + 400 * 1024;
    eprintln!("server RSS grew {} KiB for {SLOW} streams that never read", grown / 1024);
    assert!(grown < (SLOW * share) as u64, "RSS grew {grown} bytes, more than {SLOW} shares");

    // The stream that reads got every event, once, in order.
    let last = publish(EVENTS).await;
    sent.push(last);
    let got = within(reader).await.unwrap();
    sent.sort_unstable();
    assert_eq!(got, sent, "every event once, in order");
    drop(slow);
}

/// Reads `n` events of `tab`: their ids.
async fn read_ids(mut tab: Stream, n: usize) -> Vec<i64> {
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        match tab.next_event().await {
            Ok(Some(got)) => ids.push(got.id.expect("every event has an id")),
            other => panic!("the reading stream ended after {} events: {other:?}", ids.len()),
        }
    }
    ids
}
