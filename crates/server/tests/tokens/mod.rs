//! The token services over real HTTP: the VTX exchange against a venue stand-in, forged JWTs,
//! the one-time-token login with rotation, reuse detection, expiry and logout on both stores
//! (the embedded one and a real `redis-server` per test), and the permission guard.
//!
//! Time is a [`server::tokens::ManualClock`] injected into the server: tests move it by minutes
//! or hours without sleeping.

pub(crate) mod harness;

mod forged;
mod fuzz_corpus;
mod guard;
mod hardening;
mod jwks_cache;
mod login;
mod rotation;
mod vtx;

/// Runs `async fn name(backend: Backend)` once on the embedded store and once on Redis, as
/// `name::embedded` and `name::redis`.
macro_rules! both_stores {
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
            }
        )*
    };
}
pub(crate) use both_stores;
