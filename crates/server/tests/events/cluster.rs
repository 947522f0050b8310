//! Several instances on one real `redis-server` act as one backend: any instance serves any
//! request, a tab resumes exactly on another instance after the one holding its stream is
//! killed, and a Redis outage is a clear 503 that heals by itself.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use loadgen::{Client, ClientError, Front};
use protocol::{ErrorCode, SessionUuid, paths};
use serde_json::json;

use super::{long_lived, next};
use crate::tokens::harness::{RedisCluster, RedisServer};
use crate::util::{Process, TestServer, within};

async fn on_redis(redis: &RedisServer) -> TestServer {
    let url = redis.url.clone();
    TestServer::start_with(|config| *config = config.clone().with_redis(url)).await
}

/// The error code of a failed request.
fn code(result: &Result<impl std::fmt::Debug, ClientError>) -> Option<ErrorCode> {
    result.as_ref().err().and_then(ClientError::code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_redis_act_as_one_backend() {
    let mut redis = RedisServer::start_persistent().await;
    let a = on_redis(&redis).await;
    let mut b = Process::start(&["--redis-url", &redis.url]).await;
    let c = on_redis(&redis).await;
    let (uuid, mut tab) = any_instance_serves_any_request(&a, &mut b, &c).await;
    let on_a = a.client();
    let on_c = c.client();

    // Redis goes down: a request that needs it is a clear 503, not a hang.
    redis.stop();
    let started = Instant::now();
    let down = Front::generate(&on_a).register().await;
    eprintln!("redis down: answered in {:?}", started.elapsed());
    assert_eq!(code(&down), Some(ErrorCode::StoreUnavailable), "{down:?}");
    assert_eq!(down.as_ref().err().and_then(ClientError::status), Some(503));

    // Redis comes back: service resumes by itself.
    redis.restart().await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    loop {
        match Front::generate(&on_c).register().await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "not back after 30 s: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("redis back: serving again after {:?}", started.elapsed());
    let after = a.hub().publish_to_front(uuid, "after", json!(null), long_lived()).await.unwrap();
    let got = next(&mut tab).await;
    assert_eq!(got.id, Some(after.id), "the stream on C outlived the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_a_three_node_redis_cluster_act_as_one_backend() {
    let cluster = RedisCluster::start().await;
    let on_cluster = || {
        let target = cluster.target();
        TestServer::start_with(move |config| *config = config.clone().with_redis_target(target))
    };
    let a = on_cluster().await;
    let mut args = Vec::new();
    for url in &cluster.urls {
        args.extend(["--redis-cluster-url", url.as_str()]);
    }
    let mut b = Process::start(&args).await;
    let c = on_cluster().await;
    let (uuid, mut tab) = any_instance_serves_any_request(&a, &mut b, &c).await;
    // The front's keys live on one master; an event for every front, on another slot, is
    // copied into them and reaches the tab.
    let all = a.hub().publish_to_all("for-everyone", json!(null), long_lived()).await.unwrap();
    let got = next(&mut tab).await;
    assert_eq!(got.event.meta.uuid, all.uuid, "the event for every front");
    let after = a.hub().publish_to_front(uuid, "after", json!(null), long_lived()).await.unwrap();
    assert_eq!(next(&mut tab).await.id, Some(after.id), "then the front's own, in order");
}

/// A real nginx in front, configured by the repository's `deploy/nginx.conf` (its addresses and
/// paths replaced by the test's), alternating every request between two instances.
struct Nginx {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(backends: [&str; 2]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let host = |url: &str| url.trim_start_matches("http://").to_owned();
        let conf = include_str!("../../../../deploy/nginx.conf")
            .replace("127.0.0.1:8081", &host(backends[0]))
            .replace("127.0.0.1:8082", &host(backends[1]))
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
            .replace("/tmp/websession-nginx", &dir.path().join("nginx").display().to_string());
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx must be on PATH (cargo xtask install)");
        let url = format!("http://127.0.0.1:{port}");
        within(async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        Self { child, url, _dir: dir }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // With its workers: a killed master leaves them serving its port.
        loadgen::stop_tree(&mut self.child);
    }
}

/// Connects a tab through the balancer, trying again while a request meets the dead instance.
async fn reconnect(front: &Front, session: SessionUuid, last: &str) -> loadgen::Stream {
    let mut tries = 0;
    loop {
        match front.connect(session, Some(last)).await {
            Ok(stream) => return stream,
            Err(e) => {
                tries += 1;
                assert!(tries < 20, "no instance took the tab back: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_round_robin_two_tabs_lose_nothing_when_an_instance_is_killed() {
    let redis = RedisServer::start_persistent().await;
    let a = on_redis(&redis).await;
    let mut b = Process::start(&["--redis-url", &redis.url]).await;
    let nginx = Nginx::start([&a.url, &b.url]).await;
    let through = Client::new(&nginx.url);

    // Every request alternates between the instances: registration, each open, each
    // activation, each direct event.
    let mut front = Front::generate(&through);
    front.register().await.unwrap();
    let sessions = [SessionUuid::new_v4(), SessionUuid::new_v4()];
    let mut tabs = Vec::new();
    for session in sessions {
        tabs.push(front.connect(session, None).await.unwrap());
    }
    tabs[0].send("broadcast", json!("hello")).await.unwrap();
    let mut last = Vec::new();
    for tab in &mut tabs {
        let got = next(tab).await;
        assert_eq!(got.event.meta.name, "broadcast");
        last.push(got.id);
    }
    assert_eq!(last[0], last[1], "one event, both tabs");

    // One instance dies; events are published meanwhile through the other.
    b.kill();
    let mut published = Vec::new();
    for n in 0..6 {
        let hub = a.hub();
        let to = (n % 3 == 0).then_some(sessions[n % 2]);
        let event = match to {
            Some(session) => {
                hub.publish_to_session(front.uuid(), session, "meanwhile", json!(n), long_lived())
                    .await
            }
            None => hub.publish_to_front(front.uuid(), "meanwhile", json!(n), long_lived()).await,
        };
        published.push((to, event.unwrap()));
    }

    // Both tabs reconnect through nginx (a stream that was on the dead instance has ended;
    // the other is replaced): each gets every event for it, once, in order.
    drop(tabs);
    let last_id = last[0].unwrap().to_string();
    for session in sessions {
        let mut tab = reconnect(&front, session, &last_id).await;
        let mine = published.iter().filter(|(to, _)| to.is_none_or(|to| to == session));
        for (_, expected) in mine {
            let got = next(&mut tab).await;
            assert_eq!((got.id, got.event.meta.uuid), (Some(expected.id), expected.uuid));
        }
        let hub = a.hub();
        let marker =
            hub.publish_to_session(front.uuid(), session, "marker", json!(null), long_lived());
        let marker = marker.await.unwrap();
        assert_eq!(next(&mut tab).await.id, Some(marker.id), "nothing twice");
    }
}

/// Two in-process instances (`a`, `c`) and one `server` process (`b`) on one Redis act as one
/// backend: one back identity and signing key; registration, stream open, activation and direct
/// events each through a different instance; a broadcast reaching tabs on two instances; `b`
/// killed, a tab resumes on `c` with every event published meanwhile, once, in order. Returns
/// the front's UUID and that tab's stream.
async fn any_instance_serves_any_request(
    a: &TestServer,
    b: &mut Process,
    c: &TestServer,
) -> (protocol::FrontUuid, loadgen::Stream) {
    let (on_a, on_b, on_c) = (a.client(), Client::new(&b.url), c.client());

    // One back: the same identity and the same signing key everywhere.
    assert_eq!(a.state.events.back_uuid(), c.state.events.back_uuid());
    assert_eq!(a.state.events.back_key(), c.state.events.back_key());
    let jwks = |client: &Client| {
        let url = client.url(paths::JWKS);
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    assert_eq!(jwks(&on_a).await, jwks(&on_b).await, "one signing key");

    // Register on A; the same front on C is the same frontBid.
    let mut front = Front::generate(&on_a);
    let bid = front.register().await.unwrap();
    let (uuid, keys) = (front.uuid(), front.keys().clone());
    assert_eq!(Front::from_parts(&on_c, uuid, keys.clone()).register().await.unwrap(), bid);

    // Open on B, activate through C.
    let session = SessionUuid::new_v4();
    let pending = Front::from_parts(&on_b, uuid, keys.clone()).open(session, None).await.unwrap();
    on_c.activate(uuid, pending.stream_uuid()).await.unwrap();
    let mut tab = pending.into_stream();

    // A direct event sent through C is answered on the stream B holds.
    let echo = tab.direct_event("echo", json!({"n": 1}), false).unwrap();
    let path = format!("{}/echo", paths::DIRECT);
    assert!(on_c.post_json::<_, bool>(&path, &echo).await.unwrap());
    let got = next(&mut tab).await;
    assert_eq!(got.event.meta.request_uuid, Some(echo.meta.uuid), "the echo, through B");

    // A second tab on A; a broadcast sent through B reaches both.
    let other = SessionUuid::new_v4();
    let mut tab_a =
        Front::from_parts(&on_a, uuid, keys.clone()).connect(other, None).await.unwrap();
    let broadcast = tab_a.direct_event("broadcast", json!("all"), false).unwrap();
    let path = format!("{}/broadcast", paths::DIRECT);
    assert!(on_b.post_json::<_, bool>(&path, &broadcast).await.unwrap());
    let (x, y) = (next(&mut tab).await, next(&mut tab_a).await);
    assert_eq!((x.id, x.event.meta.name.as_str()), (y.id, "broadcast"), "one event, both tabs");
    let last_event_id = tab.last_event_id().to_owned();

    // B dies without a word; events go on being published meanwhile.
    b.kill();
    let mut published = Vec::new();
    for n in 0..5 {
        let hub = a.hub();
        let event = if n % 2 == 0 {
            hub.publish_to_session(uuid, session, "meanwhile", json!(n), long_lived()).await
        } else {
            hub.publish_to_front(uuid, "meanwhile", json!(n), long_lived()).await
        };
        published.push(event.unwrap());
    }
    drop(tab);

    // The tab comes back on C: every event published meanwhile, once, in order.
    let mut tab = Front::from_parts(&on_c, uuid, keys.clone())
        .connect(session, Some(&last_event_id))
        .await
        .unwrap();
    for expected in &published {
        let got = next(&mut tab).await;
        assert_eq!((got.id, got.event.meta.uuid), (Some(expected.id), expected.uuid));
    }
    let marker = a.hub().publish_to_front(uuid, "marker", json!(null), long_lived()).await;
    let marker = marker.unwrap();
    assert_eq!(next(&mut tab).await.id, Some(marker.id), "nothing twice, then live");
    (uuid, tab)
}
