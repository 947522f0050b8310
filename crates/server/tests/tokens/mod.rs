//! The token services over real HTTP: the VTX exchange against a venue stand-in, forged JWTs,
//! the one-time-token login with rotation, reuse detection, expiry and logout on every store
//! (the embedded one, a real `redis-server` per test and a real three-node Redis Cluster per
//! test), and the permission guard.
//!
//! Time is a [`server::tokens::ManualClock`] injected into the server: tests move it by minutes
//! or hours without sleeping.

pub(crate) mod harness;

mod cluster;
mod forged;
mod fuzz_corpus;
mod guard;
mod hardening;
mod jwks_cache;
mod login;
mod rotation;
mod vtx;

/// Runs `async fn name(backend: Backend)` once on the embedded store, once on Redis and once on
/// a Redis Cluster, as `name::embedded`, `name::redis` and `name::cluster`.
macro_rules! every_store {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embedded() {
                    super::$name(crate::tokens::harness::Backend::embedded()).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis() {
                    super::$name(crate::tokens::harness::Backend::redis().await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn cluster() {
                    super::$name(crate::tokens::harness::Backend::cluster().await).await;
                }
            }
        )*
    };
}
pub(crate) use every_store;
