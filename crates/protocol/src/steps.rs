//! The protocol steps every party takes the same way, written once: answering the
//! `authenticate` challenge, building a stamped (and optionally sealed) direct event, and
//! sealing and opening event data.
//!
//! The page client (wasm), the Rust client (`loadgen`) and the server each used to spell these
//! out themselves; a change to the stamp or to the double-JSON of sealed data now happens here
//! and nowhere else.

use crate::json::Value;

use crate::error::OpenError;
use crate::event::{DirectEvent, DirectMeta};
use crate::ids::{EventUuid, FrontUuid, SessionUuid};
use crate::keys::SecretKey;
use crate::messages::{AUTHENTICATE_EVENT, ActivateRequest, AuthenticateChallenge};
use crate::sealed::{Peer, Sealed};
use crate::sse::SseEvent;
use crate::time::Timestamp;

/// Why the first frame of a reverse stream is not a challenge this front can answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The first frame is another event.
    #[error("the first event is {0:?}, not `authenticate`")]
    NotAuthenticate(Option<String>),
    /// The frame's data is not an [`AuthenticateChallenge`].
    #[error("authenticate: {0}")]
    Malformed(String),
    /// `streamUuidEnc` does not open with the front's key and the back's.
    #[error("the challenge does not open with this front's key: {0}")]
    Open(#[from] OpenError),
}

impl AuthenticateChallenge {
    /// Reads the challenge from the first frame of a reverse stream.
    pub fn from_frame(frame: &SseEvent) -> Result<Self, ChallengeError> {
        if frame.event.as_deref() != Some(AUTHENTICATE_EVENT) {
            return Err(ChallengeError::NotAuthenticate(frame.event.clone()));
        }
        crate::json::from_str(&frame.data).map_err(|e| ChallengeError::Malformed(e.to_string()))
    }

    /// The front's side of the pair of keys: its secret and the back's public key.
    pub fn peer(&self, front_secret: &SecretKey) -> Peer {
        Peer::new(&self.back_key, front_secret)
    }

    /// Opens `streamUuidEnc` with `peer` (see [`AuthenticateChallenge::peer`]): the body of
    /// `POST /web-event-stream-act` that proves the front holds its key.
    pub fn answer(
        &self,
        front_uuid: FrontUuid,
        peer: &Peer,
    ) -> Result<ActivateRequest, ChallengeError> {
        let stream_uuid = peer.open(&self.stream_uuid_enc)?;
        Ok(ActivateRequest { front_uuid, stream_uuid })
    }
}

impl Peer {
    /// The `data` of an event with `meta.encrypted`: the sealed JSON text of `data`, as a
    /// base64 string (see [`Peer::seal_data`]).
    pub fn seal_event_data(&self, data: &Value) -> Value {
        Value::String(self.seal_data(data).to_base64())
    }

    /// Opens the `data` of an event with `meta.encrypted`, which must be a sealed string.
    pub fn open_event_data(&self, data: &Value) -> Result<Value, OpenError> {
        let sealed: Sealed = data.as_str().ok_or(OpenError::NotSealed)?.parse()?;
        self.open_data(&sealed)
    }
}

/// A direct event before it is stamped: what the sender decides. [`DirectDraft::build`] adds the
/// stamp and seals the data when asked.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectDraft {
    /// The event's name.
    pub name: String,
    /// The event's UUID.
    pub uuid: EventUuid,
    /// When it was created; the stamp covers it.
    pub published: Timestamp,
    /// When it expires; `None` leaves the 60 s default to the backend.
    pub expired: Option<Timestamp>,
    /// The sending front.
    pub front_uuid: FrontUuid,
    /// The sending tab.
    pub session_uuid: SessionUuid,
    /// The event this one answers.
    pub request_uuid: Option<EventUuid>,
    /// The payload, in the clear.
    pub data: Value,
    /// Whether to seal `data` for the back.
    pub encrypted: bool,
}

impl DirectDraft {
    /// A draft named `name` with a fresh UUID, published `published`, with no expiry, no request
    /// and data in the clear.
    pub fn new(
        name: impl Into<String>,
        published: Timestamp,
        front_uuid: FrontUuid,
        session_uuid: SessionUuid,
        data: Value,
    ) -> Self {
        Self {
            name: name.into(),
            uuid: EventUuid::new_v4(),
            published,
            expired: None,
            front_uuid,
            session_uuid,
            request_uuid: None,
            data,
            encrypted: false,
        }
    }

    /// The event as it goes on the wire: stamped with `peer` (front secret, back public key),
    /// `data` sealed when `encrypted`.
    pub fn build(self, peer: &Peer) -> DirectEvent {
        let data = if self.encrypted { peer.seal_event_data(&self.data) } else { self.data };
        let meta = DirectMeta {
            stamp: peer.stamp(&self.uuid, self.published),
            name: self.name,
            uuid: self.uuid,
            published: self.published,
            expired: self.expired,
            front_uuid: self.front_uuid,
            session_uuid: self.session_uuid,
            encrypted: self.encrypted.then_some(true),
            request_uuid: self.request_uuid,
        };
        DirectEvent { data, meta }
    }
}
