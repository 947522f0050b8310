//! The server on a real three-node Redis Cluster (`--redis-cluster-url`): login and rotation
//! with everything shared there, and what `redis_link` promises of a cluster (every master's
//! eviction policy checked, classic pub/sub heard from any node).

use std::time::Duration;

use futures_util::StreamExt as _;
use reqwest::StatusCode;
use server::events::store::RedisEngine;
use server::redis_link;

use super::harness::{Auth, Backend, RedisCluster, redis_session_key, refresh_cookie};

/// `Config::with_redis_cluster`: sessions, one-time tokens, the signing-key ring and the event
/// engine all on the cluster; a login and two rotations work, and the session is one key on
/// the one node that owns its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_a_redis_cluster_serves_login_and_refresh_rotation() {
    let cluster = RedisCluster::start().await;
    let urls = cluster.urls.clone();
    let auth = Auth::start_with(Backend::Cluster(cluster), |config| {
        *config = config.clone().with_redis_cluster(urls);
    })
    .await;
    let ready = auth.http.get(auth.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    let login = auth.login(&["CanAccessDashboard"]).await;
    let response = auth.refresh(&login.refresh).await;
    assert_eq!(response.status(), StatusCode::OK);
    let second = refresh_cookie(&response).unwrap();
    assert_ne!(second, login.refresh);
    let response = auth.refresh(&second).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(refresh_cookie(&response).is_some());

    let Backend::Cluster(cluster) = &auth.backend else { unreachable!() };
    let mut holders = 0;
    for mut node in cluster.node_connections().await {
        // A node that does not own the slot answers MOVED, not 0.
        let exists: Result<i64, _> =
            redis::cmd("EXISTS").arg(redis_session_key()).query_async(&mut node).await;
        holders += usize::from(exists == Ok(1));
    }
    assert_eq!(holders, 1, "one node holds the session");
    let mut conn = auth.backend.redis_conn().await.unwrap();
    let ring: Option<String> =
        redis::cmd("GET").arg("websession:signing-key").query_async(&mut conn).await.unwrap();
    assert!(ring.is_some(), "the signing key is shared through the cluster");
}

/// Any master that may evict keys would silently drop what another node keeps: the engine
/// refuses the cluster and names that master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_engine_refuses_a_cluster_with_a_master_that_may_evict_keys() {
    let cluster = RedisCluster::start().await;
    let target = cluster.target();
    assert!(RedisEngine::connect(&target).await.is_ok());
    let mut nodes = cluster.node_connections().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut nodes[2])
        .await
        .unwrap();
    let refused = RedisEngine::connect(&target).await.unwrap_err().to_string();
    let node = cluster.urls[2].trim_start_matches("redis://");
    assert!(refused.contains("allkeys-lru") && refused.contains(node), "{refused}");
}

/// Classic `PUBLISH` reaches every node of a cluster: the subscriber made on the first seed
/// hears what is published on another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_hears_what_any_node_of_the_cluster_publishes() {
    let cluster = RedisCluster::start().await;
    let mut pubsub = redis_link::subscriber(&cluster.target()).await.unwrap();
    pubsub.subscribe("ws:test").await.unwrap();
    let mut messages = pubsub.on_message();
    let mut nodes = cluster.node_connections().await;
    // Published until heard: the subscription may take a moment to reach the other nodes.
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let _: i64 = redis::cmd("PUBLISH")
                .arg("ws:test")
                .arg("hi")
                .query_async(&mut nodes[2])
                .await
                .unwrap();
            if let Ok(Some(message)) =
                tokio::time::timeout(Duration::from_millis(100), messages.next()).await
            {
                return message.get_payload::<String>().unwrap();
            }
        }
    })
    .await;
    assert_eq!(heard.ok().as_deref(), Some("hi"));
}
