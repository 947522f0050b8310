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
