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
    /// Streams an event is handed to before the fan-out lets their writers run: an event for
    /// more streams than this is handed over by a task, this many at a time, so the first
    /// writes leave while the rest are still being queued.
    pub fan_out_batch: usize,
    /// Fronts remembered (with their shared key) after a registration or lookup, so that the
    /// stream open that follows neither reads the store nor computes the key again. Oldest
    /// out first; 0 remembers none.
    pub recent_fronts: usize,
    /// A stream that resumes reads the events it missed in pages of at most this many bytes,
    /// the next page only once the previous one was written, so a slow reader holds about this
    /// much (plus hyper's write buffer) and building a page holds up nothing else.
    pub replay_page_bytes: usize,
    /// A direct event whose `published` is further than this from the server's clock is
    /// refused (`403 stale_event`): a captured event cannot be replayed later, and handled
    /// events are remembered at least twice this long, so within it a replay is a duplicate.
    pub direct_event_window: Duration,
    /// A direct event whose `expired` lies further ahead than this is refused
    /// (`400 invalid_event`), so no record of it is kept for longer.
    pub max_event_ttl: Duration,
    /// Active streams one front may have at once (every tab's, across instances); one more is
    /// refused with `429 too_many_streams`. Replacing a tab's stream does not count.
    pub max_streams_per_front: usize,
    /// Registrations per second one client address may make (a token bucket refilled at this
    /// rate), `None` for no limit; more answer `429 rate_limited` with `Retry-After`.
    pub registrations_per_sec: Option<f64>,
    /// How many registrations a client may make at once before the rate applies.
    pub registration_burst: u32,
    /// Take the client's address from the last `X-Forwarded-For` entry when the connection
    /// comes from one of these addresses (a load balancer in front).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// A front that has not had an active stream for this long (or never, since it registered)
    /// is deleted; it registers again through `front_not_registered` if it comes back.
    pub front_idle_ttl: Duration,
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
            fan_out_batch: 64,
            recent_fronts: 4096,
            replay_page_bytes: DEFAULT_REPLAY_PAGE_BYTES,
            direct_event_window: Duration::from_secs(5 * 60),
            max_event_ttl: Duration::from_secs(24 * 3600),
            max_streams_per_front: 32,
            registrations_per_sec: Some(10.0),
            registration_burst: 30,
            trusted_proxies: Vec::new(),
            front_idle_ttl: Duration::from_secs(30 * 24 * 3600),
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
    /// Streams an event is handed to at a time before their writers get to run. An event for
    /// more streams is fanned out in batches of this many, so that the first writes leave
    /// within a batch of the commit rather than after every stream was queued.
    #[arg(long, value_name = "STREAMS", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub fan_out_batch: u64,
    /// Fronts remembered in memory (with their shared key) after a registration or lookup, so
    /// that the stream open that follows neither reads the store nor computes the key again
    /// (about 200 bytes each; oldest out first; 0: none).
    #[arg(long, value_name = "FRONTS", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub recent_fronts: u64,
    /// Bytes of kept events a resuming stream reads and queues at a time (one event at least,
    /// whatever its size). Bounds what a client that does not read can pin in memory.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_REPLAY_PAGE_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1024..=16 * 1024 * 1024))]
    pub replay_page_bytes: u64,
    /// Refuse a direct event whose `published` is further than this many seconds from the
    /// server's clock (403 stale_event).
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub direct_event_window_secs: u64,
    /// Refuse a direct event whose `expired` lies more than this many seconds ahead
    /// (400 invalid_event).
    #[arg(long, value_name = "SECS", default_value_t = 86400,
          value_parser = clap::value_parser!(u64).range(1..=30 * 86400))]
    pub max_event_ttl_secs: u64,
    /// Active streams one front may have at once, across instances (429 too_many_streams).
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_streams_per_front: u64,
    /// Registrations per second one client address may make (0: no limit); more answer 429
    /// rate_limited with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 10.0)]
    pub registrations_per_sec: f64,
    /// Registrations a client address may make at once before the rate applies.
    #[arg(long, value_name = "N", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub registration_burst: u32,
    /// The address of a proxy in front (repeatable): for its connections the client's address
    /// is the last entry of X-Forwarded-For.
    #[arg(long = "trusted-proxy", value_name = "IP")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Delete a front that has had no active stream for this many days; it registers again if
    /// it comes back.
    #[arg(long, value_name = "DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub front_idle_days: u64,
}

impl Default for EventsArgs {
    fn default() -> Self {
        let config = EventsConfig::default();
        Self {
            activation_timeout_secs: config.activation_timeout.as_secs(),
            heartbeat_secs: config.heartbeat.as_secs(),
            session_ttl_secs: config.session_ttl.as_secs(),
            stream_buffer: config.stream_buffer as u64,
            fan_out_batch: config.fan_out_batch as u64,
            recent_fronts: config.recent_fronts as u64,
            replay_page_bytes: config.replay_page_bytes as u64,
            direct_event_window_secs: config.direct_event_window.as_secs(),
            max_event_ttl_secs: config.max_event_ttl.as_secs(),
            max_streams_per_front: config.max_streams_per_front as u64,
            registrations_per_sec: config.registrations_per_sec.unwrap_or(0.0),
            registration_burst: config.registration_burst,
            trusted_proxies: config.trusted_proxies,
            front_idle_days: config.front_idle_ttl.as_secs() / 86400,
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
            fan_out_batch: usize::try_from(args.fan_out_batch).unwrap_or(64).max(1),
            recent_fronts: usize::try_from(args.recent_fronts).unwrap_or(4096),
            replay_page_bytes: usize::try_from(args.replay_page_bytes)
                .unwrap_or(DEFAULT_REPLAY_PAGE_BYTES),
            direct_event_window: Duration::from_secs(args.direct_event_window_secs),
            max_event_ttl: Duration::from_secs(args.max_event_ttl_secs),
            max_streams_per_front: usize::try_from(args.max_streams_per_front).unwrap_or(32),
            registrations_per_sec: (args.registrations_per_sec > 0.0)
                .then_some(args.registrations_per_sec),
            registration_burst: args.registration_burst,
            trusted_proxies: args.trusted_proxies,
            front_idle_ttl: Duration::from_secs(args.front_idle_days * 86400),
        }
    }
}
