//! Settings of the event service: a struct with public fields for embedders and tests, and the
//! command-line flags that fill it.

use std::time::Duration;

/// Settings of the reverse streams and of the event store.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// A stream whose `authenticate` challenge is not answered within this time is closed.
    pub activation_timeout: Duration,
    /// How often every open stream gets a comment frame, so that proxies and browsers keep
    /// an idle connection open and a dead one is noticed. Zero turns heartbeats off.
    pub heartbeat: Duration,
    /// A session with no stream for this long is forgotten, with its undelivered tab events.
    pub session_ttl: Duration,
    /// Frames queued for one stream before it counts as too slow and is closed. Its client
    /// reconnects with `Last-Event-ID` and loses nothing, because events are stored first.
    pub stream_buffer: usize,
    /// A stream that resumes reads the events it missed in pages of at most this many bytes,
    /// the next page only once the previous one was written, so a slow reader holds about this
    /// much (plus hyper's write buffer) and building a page holds up nothing else.
    pub replay_page_bytes: usize,
}

/// The default of [`EventsConfig::replay_page_bytes`]: 256 KiB.
pub(super) const DEFAULT_REPLAY_PAGE_BYTES: usize = 256 * 1024;

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            activation_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(15),
            session_ttl: Duration::from_secs(30 * 60),
            stream_buffer: 64,
            replay_page_bytes: DEFAULT_REPLAY_PAGE_BYTES,
        }
    }
}

/// Command-line flags for [`EventsConfig`].
#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// Close a reverse stream whose `authenticate` challenge is not answered by an activation
    /// within this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub activation_timeout_secs: u64,
    /// Send a heartbeat comment frame on every open stream this often, in seconds (0: never).
    /// Keeps proxies from closing idle streams and detects clients that went away.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub heartbeat_secs: u64,
    /// Forget a session (browser tab) that has had no stream for this many seconds, together
    /// with the events still waiting for that tab.
    #[arg(long, value_name = "SECS", default_value_t = 1800,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub session_ttl_secs: u64,
    /// Frames queued for one stream before the client counts as too slow and the stream is
    /// closed (the client reconnects with Last-Event-ID and receives the rest from the store).
    #[arg(long, value_name = "FRAMES", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub stream_buffer: u64,
    /// Bytes of kept events a resuming stream reads and queues at a time (one event at least,
    /// whatever its size). Bounds what a client that does not read can pin in memory.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_REPLAY_PAGE_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1024..=16 * 1024 * 1024))]
    pub replay_page_bytes: u64,
}

impl Default for EventsArgs {
    fn default() -> Self {
        let config = EventsConfig::default();
        Self {
            activation_timeout_secs: config.activation_timeout.as_secs(),
            heartbeat_secs: config.heartbeat.as_secs(),
            session_ttl_secs: config.session_ttl.as_secs(),
            stream_buffer: config.stream_buffer as u64,
            replay_page_bytes: config.replay_page_bytes as u64,
        }
    }
}

impl From<EventsArgs> for EventsConfig {
    fn from(args: EventsArgs) -> Self {
        Self {
            activation_timeout: Duration::from_secs(args.activation_timeout_secs),
            heartbeat: Duration::from_secs(args.heartbeat_secs),
            session_ttl: Duration::from_secs(args.session_ttl_secs),
            stream_buffer: usize::try_from(args.stream_buffer).unwrap_or(64).max(1),
            replay_page_bytes: usize::try_from(args.replay_page_bytes)
                .unwrap_or(DEFAULT_REPLAY_PAGE_BYTES),
        }
    }
}
