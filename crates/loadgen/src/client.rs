//! The client: a front (UUID and key pair) that registers, opens reverse streams for its
//! sessions, answers the `authenticate` challenge and sends direct events.
//!
//! Each step is its own call, so tests can stop half-way (open without activating, activate
//! twice, activate for another front) and see what the server answers.

use std::collections::VecDeque;
use std::fmt;

use protocol::messages::{
    ActivateRequest, AuthenticateChallenge, EVENTS_LOST_EVENT, FrontBid, RegisterRequest,
};
use protocol::sse::{SseItem, SseParser};
use protocol::{
    ChallengeError, DirectDraft, DirectEvent, ErrorBody, ErrorCode, EventUuid, FrontUuid, KeyPair,
    OpenError, Peer, ReverseEvent, SessionUuid, StreamUuid, Timestamp, paths,
};
use serde::Serialize;
use serde_json::Value;

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The request did not complete.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error body.
    #[error("{status}: {body:?}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The `{"error", "message"}` body.
        body: ErrorBody,
    },
    /// The server answered something this client does not understand.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A sealed value did not open.
    #[error("sealed value: {0}")]
    Open(#[from] OpenError),
}

impl From<ChallengeError> for ClientError {
    fn from(e: ChallengeError) -> Self {
        match e {
            ChallengeError::Open(e) => Self::Open(e),
            other => Self::Protocol(other.to_string()),
        }
    }
}

impl ClientError {
    /// The error code, if the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { body, .. } => body.code(),
            _ => None,
        }
    }

    /// The HTTP status, if the server answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A server to talk to: its base URL (`http://host:port`) and an HTTP client.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The client that opens streams, if not `http` (see [`Client::with_stream_http`]).
    streams: Option<reqwest::Client>,
    base: String,
}

impl Client {
    /// A client of the server at `base` with default HTTP settings.
    pub fn new(base: impl Into<String>) -> Self {
        Self::with_http(reqwest::Client::new(), base)
    }

    /// A client that uses `http` (to share its connection pool).
    pub fn with_http(http: reqwest::Client, base: impl Into<String>) -> Self {
        let mut base = base.into();
        while base.ends_with('/') {
            base.pop();
        }
        Self { http, streams: None, base }
    }

    /// Opens streams through `http` instead (for example, a client without a connection pool,
    /// so that every stream has its own fresh connection).
    pub fn with_stream_http(mut self, http: reqwest::Client) -> Self {
        self.streams = Some(http);
        self
    }

    /// The URL of `path` on the server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn stream_http(&self) -> &reqwest::Client {
        self.streams.as_ref().unwrap_or(&self.http)
    }

    /// POSTs `body` as JSON to `path` and reads a JSON answer, or the error body.
    pub async fn post_json<B: Serialize + ?Sized, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let response = self.http.post(self.url(path)).json(body).send().await?;
        read_json(response).await
    }

    /// Activates a stream: `POST /web-event-stream-act` → `true`.
    pub async fn activate(&self, front: FrontUuid, stream: StreamUuid) -> Result<(), ClientError> {
        let request = ActivateRequest { front_uuid: front, stream_uuid: stream };
        match self.post_json::<_, bool>(paths::STREAM_ACTIVATE, &request).await? {
            true => Ok(()),
            false => Err(ClientError::Protocol("activation answered false".into())),
        }
    }
}

/// Reads a JSON answer, or turns an error status into [`ClientError::Api`].
pub async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, ClientError> {
    let response = check(response).await?;
    let bytes = response.bytes().await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Protocol(format!("unexpected answer: {e}")))
}

/// Passes a success through; turns an error status into [`ClientError::Api`].
async fn check(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let bytes = response.bytes().await?;
    let body = serde_json::from_slice(&bytes)
        .map_err(|_| ClientError::Protocol(format!("{status} without an error body: {bytes:?}")))?;
    Err(ClientError::Api { status: status.as_u16(), body })
}

/// A front: a UUID and a key pair, and the `frontBid` once registered.
#[derive(Clone)]
pub struct Front {
    client: Client,
    uuid: FrontUuid,
    keys: KeyPair,
    bid: Option<FrontBid>,
}

impl fmt::Debug for Front {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Front").field("uuid", &self.uuid).field("bid", &self.bid).finish()
    }
}

impl Front {
    /// A new front with a fresh UUID and key pair.
    pub fn generate(client: &Client) -> Self {
        Self::from_parts(client, FrontUuid::new_v4(), KeyPair::generate())
    }

    /// A front with a known identity (as restored from IndexedDB).
    pub fn from_parts(client: &Client, uuid: FrontUuid, keys: KeyPair) -> Self {
        Self { client: client.clone(), uuid, keys, bid: None }
    }

    /// The same front (identity and `frontBid`) talking through `client`: another instance of
    /// a cluster, where any instance serves any of the front's requests.
    pub fn with_client(&self, client: &Client) -> Self {
        Self { client: client.clone(), ..self.clone() }
    }

    /// The front's UUID.
    pub fn uuid(&self) -> FrontUuid {
        self.uuid
    }

    /// The front's keys.
    pub fn keys(&self) -> &KeyPair {
        &self.keys
    }

    /// The `frontBid`, once registered.
    pub fn bid(&self) -> Option<FrontBid> {
        self.bid
    }

    /// The client it talks through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Registers the front: `POST /web-event-front-reg/{frontUuid}` → `frontBid`.
    pub async fn register(&mut self) -> Result<FrontBid, ClientError> {
        let request = RegisterRequest { public_key: self.keys.public, front_uuid: self.uuid };
        let path = format!("{}/{}", paths::REGISTER, self.uuid);
        let bid = self.client.post_json(&path, &request).await?;
        self.bid = Some(bid);
        Ok(bid)
    }

    /// Opens a reverse stream for `session` and reads its `authenticate` challenge, without
    /// activating it. `last_event_id` goes in the `Last-Event-ID` header.
    pub async fn open(
        &self,
        session: SessionUuid,
        last_event_id: Option<&str>,
    ) -> Result<PendingStream, ClientError> {
        let mut request = self.client.stream_http().get(self.stream_url(session));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        self.open_with(session, request, last_event_id).await
    }

    /// Like [`Front::open`], with the last event id in the `lastEventId` query parameter, as
    /// clients that cannot set headers (`EventSource`) send it.
    pub async fn open_with_query(
        &self,
        session: SessionUuid,
        last_event_id: &str,
    ) -> Result<PendingStream, ClientError> {
        // Event ids are decimal integers here; anything else is sent as given.
        let url = format!("{}?lastEventId={last_event_id}", self.stream_url(session));
        let request = self.client.stream_http().get(url);
        self.open_with(session, request, Some(last_event_id)).await
    }

    /// Like [`Front::open`], asking for every event of the front (`?scope=front`), as the tab
    /// that holds the stream for the others does; see [`Stream::front_scope`] for the answer.
    pub async fn open_front_scoped(
        &self,
        session: SessionUuid,
        last_event_id: Option<&str>,
    ) -> Result<PendingStream, ClientError> {
        let url = format!("{}?{}", self.stream_url(session), paths::STREAM_SCOPE_FRONT_QUERY);
        let mut request = self.client.stream_http().get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        self.open_with(session, request, last_event_id).await
    }

    /// The URL of the stream-open endpoint for `session`.
    pub fn stream_url(&self, session: SessionUuid) -> String {
        self.client.url(&format!("{}/{}/{}", paths::STREAM_OPEN, self.uuid, session))
    }

    async fn open_with(
        &self,
        session: SessionUuid,
        request: reqwest::RequestBuilder,
        resumed_from: Option<&str>,
    ) -> Result<PendingStream, ClientError> {
        let response = check(request.send().await?).await?;
        let front_scope = response
            .headers()
            .get(paths::STREAM_SCOPE_HEADER)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"front"));
        let mut stream = Stream {
            client: self.client.clone(),
            front: self.uuid,
            session,
            front_scope,
            peer: None,
            reader: SseReader::new(response),
            heartbeats: 0,
            events_lost: 0,
            resumed_from: resumed_from.unwrap_or_default().to_owned(),
        };
        let first = match stream.next_item().await? {
            Some(SseItem::Event(event)) => event,
            other => {
                return Err(ClientError::Protocol(format!("expected authenticate, got {other:?}")));
            }
        };
        let challenge = AuthenticateChallenge::from_frame(&first)?;
        let peer = challenge.peer(&self.keys.secret);
        let stream_uuid = challenge.answer(self.uuid, &peer)?.stream_uuid;
        stream.peer = Some(peer);
        Ok(PendingStream { stream, challenge, stream_uuid })
    }

    /// The whole handshake for `session`: open, answer the challenge, activate.
    pub async fn connect(
        &self,
        session: SessionUuid,
        last_event_id: Option<&str>,
    ) -> Result<Stream, ClientError> {
        self.open(session, last_event_id).await?.activate().await
    }
}

/// An open stream whose challenge was opened but not answered yet.
#[derive(Debug)]
pub struct PendingStream {
    stream: Stream,
    challenge: AuthenticateChallenge,
    stream_uuid: StreamUuid,
}

impl PendingStream {
    /// The stream UUID, opened from `streamUuidEnc`.
    pub fn stream_uuid(&self) -> StreamUuid {
        self.stream_uuid
    }

    /// The challenge as received.
    pub fn challenge(&self) -> &AuthenticateChallenge {
        &self.challenge
    }

    /// Answers the challenge: `POST /web-event-stream-act`.
    pub async fn activate(self) -> Result<Stream, ClientError> {
        self.stream.client.activate(self.stream.front, self.stream_uuid).await?;
        Ok(self.stream)
    }

    /// The stream without activating it (to watch it time out).
    pub fn into_stream(self) -> Stream {
        self.stream
    }
}

/// An event received on a reverse stream.
#[derive(Debug, Clone)]
pub struct Received {
    /// The SSE `id:`, as a number.
    pub id: Option<i64>,
    /// The event, its `data` opened if it was sealed.
    pub event: ReverseEvent,
}

/// Reads the frames of any Server-Sent Events answer, as they arrive: the one reader of
/// [`Stream`], and what `loadgen peer` reads another server's event stream with, so both
/// sides are received by the same code.
#[derive(Debug)]
pub struct SseReader {
    /// `None` once the stream ended.
    response: Option<reqwest::Response>,
    parser: SseParser,
    queue: VecDeque<SseItem>,
}

impl SseReader {
    /// A reader of `response`'s body.
    pub fn new(response: reqwest::Response) -> Self {
        Self { response: Some(response), parser: SseParser::new(), queue: VecDeque::new() }
    }

    /// The next frame (event or comment); `None` when the server ended the stream.
    pub async fn next_item(&mut self) -> Result<Option<SseItem>, ClientError> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Ok(Some(item));
            }
            let Some(response) = self.response.as_mut() else { return Ok(None) };
            match response.chunk().await? {
                Some(chunk) => self.queue.extend(self.parser.feed(&chunk)),
                None => self.response = None,
            }
        }
    }
}

/// A reverse stream, and the session it belongs to.
pub struct Stream {
    client: Client,
    front: FrontUuid,
    session: SessionUuid,
    /// The backend said the stream carries every event of the front.
    front_scope: bool,
    /// The shared key of this front and the back; set once the challenge is read.
    peer: Option<Peer>,
    reader: SseReader,
    heartbeats: u64,
    events_lost: u64,
    /// The `Last-Event-ID` this stream was opened with: still the one to resume from until an
    /// event with an id arrives.
    resumed_from: String,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("front", &self.front)
            .field("session", &self.session)
            .field("last_event_id", &self.last_event_id())
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// The session (tab) of the stream.
    pub fn session(&self) -> SessionUuid {
        self.session
    }

    /// The front of the stream.
    pub fn front(&self) -> FrontUuid {
        self.front
    }

    /// The id of the last event received, to send as `Last-Event-ID` when reconnecting; before
    /// the first, the one the stream was opened with. As `EventSource`'s last event ID buffer,
    /// it carries over a reconnection that ends before an event arrives: resuming without it
    /// would ask for what was never delivered instead of what came after it.
    pub fn last_event_id(&self) -> &str {
        match self.reader.parser.last_event_id() {
            "" => &self.resumed_from,
            id => id,
        }
    }

    /// The last `retry:` hint the server gave (milliseconds), as `EventSource` would wait
    /// before reconnecting.
    pub fn retry(&self) -> Option<u64> {
        self.reader.parser.retry()
    }

    /// Heartbeat comments seen so far.
    pub fn heartbeats(&self) -> u64 {
        self.heartbeats
    }

    /// The shared key of this front and the back (to check stamps).
    pub fn peer(&self) -> Option<&Peer> {
        self.peer.as_ref()
    }

    fn shared(&self) -> Result<&Peer, ClientError> {
        self.peer.as_ref().ok_or_else(|| ClientError::Protocol("no challenge read yet".into()))
    }

    /// The next frame (event or comment); `None` when the server ended the stream.
    pub async fn next_item(&mut self) -> Result<Option<SseItem>, ClientError> {
        let item = self.reader.next_item().await?;
        if matches!(item, Some(SseItem::Comment(_))) {
            self.heartbeats += 1;
        }
        Ok(item)
    }

    /// The frame reader alone, for a caller that only times frames (`loadgen peer` reads its
    /// streams and nchan's subscribers through the same [`SseReader`]).
    pub fn into_reader(self) -> SseReader {
        self.reader
    }

    /// How many `events_lost` notices the stream gave (it could not resume exactly).
    pub fn events_lost(&self) -> u64 {
        self.events_lost
    }

    /// The next event, skipping heartbeats and `events_lost` notices (counted, see
    /// [`Stream::events_lost`]); `None` when the server ended the stream.
    pub async fn next_event(&mut self) -> Result<Option<Received>, ClientError> {
        loop {
            let event = match self.next_item().await? {
                None => return Ok(None),
                Some(SseItem::Comment(_)) => continue,
                Some(SseItem::Event(event)) => event,
            };
            if event.event.as_deref() == Some(EVENTS_LOST_EVENT) {
                self.events_lost += 1;
                continue;
            }
            let mut parsed: ReverseEvent = serde_json::from_str(&event.data)
                .map_err(|e| ClientError::Protocol(format!("event data: {e}")))?;
            if parsed.meta.encrypted == Some(true) {
                parsed.data = self.shared()?.open_event_data(&parsed.data)?;
            }
            let id = event.id.as_deref().and_then(|id| id.parse().ok());
            return Ok(Some(Received { id, event: parsed }));
        }
    }

    /// A stamped direct event from this session, published now; `data` sealed if `encrypted`.
    pub fn direct_event(
        &self,
        name: &str,
        data: Value,
        encrypted: bool,
    ) -> Result<DirectEvent, ClientError> {
        let mut draft = DirectDraft::new(name, Timestamp::now(), self.front, self.session, data);
        draft.encrypted = encrypted;
        Ok(draft.build(self.shared()?))
    }

    /// Sends a direct event: `POST /web-event-direct/{name}` → `true`.
    pub async fn send_event(&self, event: &DirectEvent) -> Result<(), ClientError> {
        let path = format!("{}/{}", paths::DIRECT, event.meta.name);
        match self.client.post_json::<_, bool>(&path, event).await? {
            true => Ok(()),
            false => Err(ClientError::Protocol("direct event answered false".into())),
        }
    }

    /// Whether the backend answered the open with `X-Web-Event-Scope: front`.
    pub fn front_scope(&self) -> bool {
        self.front_scope
    }

    /// Builds and sends a direct event; returns its `meta.uuid`.
    pub async fn send(&self, name: &str, data: Value) -> Result<EventUuid, ClientError> {
        let event = self.direct_event(name, data, false)?;
        self.send_event(&event).await?;
        Ok(event.meta.uuid)
    }
}
