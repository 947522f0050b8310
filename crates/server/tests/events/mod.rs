//! The event service: registration, reverse streams with the crypto handshake, delivery
//! without loss across reconnects and restarts, direct events, and every error code. All over
//! real HTTP on `127.0.0.1:0` with the Rust client of `loadgen`, except the timing tests, which
//! drive the router in process under paused Tokio time.

mod cluster;
mod delivery;
mod errors;
mod faults;
mod handshake;
mod limits;
mod restart;
mod store;
mod timing;

use std::time::Duration;

use loadgen::{Front, Received, Stream};
use server::events::PublishOptions;

use crate::util::{TestServer, within};

/// A registered front of `server`.
pub(crate) async fn registered(server: &TestServer) -> Front {
    let mut front = Front::generate(&server.client());
    front.register().await.unwrap();
    front
}

/// The next event of `stream`; fails if the stream ends or nothing comes within five seconds.
pub(crate) async fn next(stream: &mut Stream) -> Received {
    within(stream.next_event()).await.unwrap().expect("the stream ended")
}

/// Options for events that must survive the test (the default TTL is a minute).
pub(crate) fn long_lived() -> PublishOptions {
    PublishOptions { expires_in: Some(Duration::from_secs(3600)), ..PublishOptions::default() }
}
