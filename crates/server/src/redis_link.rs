//! The one way the server reaches Redis: a standalone server or a Redis Cluster, behind one
//! connection type that both Redis stores (events, tokens) and the signing-key ring use.
//!
//! On a cluster every command goes to the node that owns its key's slot, so each script and
//! each pipeline must touch keys of one slot only (the stores give the keys of one front or
//! one login session a common hash tag, `{…}`, for that). Classic `PUBLISH` reaches every node
//! of a cluster, so one pub/sub connection to any node ([`subscriber`]) hears all of them.

use std::fmt;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSub};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use ::redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use crate::tokens::redact_url;

/// Attempts of a command before it fails (after a reconnection each), as the event engine has
/// always used: with [`MAX_RETRY_DELAY`] a request that needs a Redis that is down fails
/// within its timeout instead of waiting for a long backoff.
const RETRIES: usize = 2;
/// The longest wait between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);
/// How long [`subscriber`] waits for one node before it tries the next seed.
const SUBSCRIBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the shared state lives.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis server (`redis://[user:password@]host:port/db`).
    Single(String),
    /// A Redis Cluster, by some of its nodes (seeds; the client learns the others from them).
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// The URLs fit for logs and errors (passwords redacted), comma-separated.
    pub fn shown(&self) -> String {
        match self {
            Self::Single(url) => redact_url(url),
            Self::Cluster(urls) => {
                let shown: Vec<String> = urls.iter().map(|u| redact_url(u)).collect();
                format!("cluster {}", shown.join(","))
            }
        }
    }
}

// By hand: a URL may carry a password, and configurations end up in logs.
impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Single(url) => f.debug_tuple("Single").field(&redact_url(url)).finish(),
            Self::Cluster(urls) => f
                .debug_tuple("Cluster")
                .field(&urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// One connection (multiplexed, reconnecting by itself), cheap to clone.
#[derive(Clone)]
pub struct RedisConn(Inner);

#[derive(Clone)]
enum Inner {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Inner::Single(_) => "RedisConn(single)",
            Inner::Cluster(_) => "RedisConn(cluster)",
        })
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Inner::Single(conn) => conn.req_packed_command(cmd),
            Inner::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Inner::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Single(conn) => conn.get_db(),
            Inner::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Connects to `target`; fails now if it does not answer (a misconfigured server does not
/// start). Every command then fails after `timeout` instead of hanging, and so does every
/// (re)connection attempt.
pub async fn connect(target: &RedisTarget, timeout: Duration) -> Result<RedisConn, RedisError> {
    match target {
        RedisTarget::Single(url) => {
            let config = ConnectionManagerConfig::new()
                .set_response_timeout(Some(timeout))
                .set_connection_timeout(Some(timeout))
                .set_number_of_retries(RETRIES)
                .set_max_delay(MAX_RETRY_DELAY);
            let conn =
                ConnectionManager::new_with_config(Client::open(url.as_str())?, config).await?;
            Ok(RedisConn(Inner::Single(conn)))
        }
        RedisTarget::Cluster(urls) => {
            let client = ClusterClient::builder(urls.iter().map(String::as_str))
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(u32::try_from(RETRIES).unwrap_or(u32::MAX))
                .max_retry_wait(u64::try_from(MAX_RETRY_DELAY.as_millis()).unwrap_or(u64::MAX))
                .build()?;
            Ok(RedisConn(Inner::Cluster(client.get_async_connection().await?)))
        }
    }
}

/// A pub/sub connection that receives every classic `PUBLISH` of the deployment: the server
/// itself, or on a cluster the first seed node that answers (a cluster forwards classic
/// `PUBLISH` to all its nodes).
pub async fn subscriber(target: &RedisTarget) -> Result<PubSub, RedisError> {
    let urls = match target {
        RedisTarget::Single(url) => std::slice::from_ref(url),
        RedisTarget::Cluster(urls) => urls.as_slice(),
    };
    let mut last = None;
    for url in urls {
        let attempt = async { Client::open(url.as_str())?.get_async_pubsub().await };
        match tokio::time::timeout(SUBSCRIBE_CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(pubsub)) => return Ok(pubsub),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{} did not answer", redact_url(url)),
                )));
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        RedisError::from(std::io::Error::new(std::io::ErrorKind::InvalidInput, "no Redis URL"))
    }))
}

/// The `maxmemory-policy` of each server that holds data: the server itself, or every master
/// of a cluster (each with its address). Fails if a server refuses `CONFIG GET` (managed
/// services may).
pub async fn maxmemory_policies(conn: &mut RedisConn) -> RedisResult<Vec<(String, String)>> {
    let mut cmd = ::redis::cmd("CONFIG");
    cmd.arg("GET").arg("maxmemory-policy");
    match &mut conn.0 {
        Inner::Single(conn) => {
            let pair: Vec<String> = cmd.query_async(conn).await?;
            Ok(pair.get(1).map(|p| ("the server".to_owned(), p.clone())).into_iter().collect())
        }
        Inner::Cluster(conn) => {
            let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            // Without a way to combine them, the client answers a map: node → its reply.
            let Value::Map(replies) = conn.route_command(cmd, all).await? else {
                return Err(RedisError::from((
                    ::redis::ErrorKind::UnexpectedReturnType,
                    "CONFIG GET on all masters did not answer a map",
                )));
            };
            let mut policies = Vec::with_capacity(replies.len());
            for (node, reply) in replies {
                let node: String = ::redis::from_redis_value(node)?;
                let pair: Vec<String> = ::redis::from_redis_value(reply)?;
                if let Some(policy) = pair.get(1) {
                    policies.push((node, policy.clone()));
                }
            }
            Ok(policies)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_show_and_debug_without_passwords() {
        let single = RedisTarget::Single("redis://u:s3cret@h:6379".to_owned());
        let cluster = RedisTarget::Cluster(vec![
            "redis://:s3cret@a:7000".to_owned(),
            "redis://:s3cret@b:7001".to_owned(),
        ]);
        assert_eq!(single.shown(), "redis://u:***@h:6379");
        assert_eq!(cluster.shown(), "cluster redis://:***@a:7000,redis://:***@b:7001");
        for target in [single, cluster] {
            assert!(!format!("{target:?}").contains("s3cret"), "{target:?}");
        }
    }
}
