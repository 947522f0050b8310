//! A Rust client of the event endpoints, built on the protocol crate, and the library half of
//! the `loadgen` load tool.
//!
//! [`client`] runs the whole handshake of seeds 001/003 (register, open the reverse stream,
//! open the sealed stream UUID, activate), reads events and sends stamped direct events. The
//! server's integration tests and the load tool both use it, so the handshake is written once.

pub mod client;
pub mod process;

pub use client::{Client, ClientError, Front, PendingStream, Received, SseReader, Stream};
pub use process::stop_tree;
