//! Bodies of the front-identity and reverse-stream endpoints, and the stored identity record.

use serde::{Deserialize, Serialize};

use crate::ids::{BackUuid, FrontUuid, StreamUuid};
use crate::keys::{KeyPair, PublicKey};
use crate::sealed::Sealed;

/// The SSE `event:` name of the first frame of a reverse stream.
pub const AUTHENTICATE_EVENT: &str = "authenticate";

/// The name of the frame a stream sends when it cannot resume exactly: the client's
/// `Last-Event-ID` is not from this backend's store (it was reset), so events sent before may
/// be lost. Its data is an [`crate::ErrorBody`] with the code `events_lost`; the stream goes on
/// with what the store has.
pub const EVENTS_LOST_EVENT: &str = "events_lost";

/// `POST /web-event-front-reg/{frontUuid}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "publicKey": "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
    "frontUuid": "0d5c4f3e-6a8b-4c1d-9e2f-3a4b5c6d7e8f"
})))]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// The front's public key.
    pub public_key: PublicKey,
    /// Must equal the path's `{frontUuid}`.
    pub front_uuid: FrontUuid,
}

/// The backend's integer key of a front; the registration answer is this bare JSON integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct FrontBid(pub i64);

/// The `data` of the `authenticate` frame: who the back is, and the stream UUID sealed for the
/// front's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuthenticateChallenge {
    /// The backend's UUID.
    pub back_uuid: BackUuid,
    /// The backend's public key.
    pub back_key: PublicKey,
    /// `seal(streamUuid)` for the front.
    pub stream_uuid_enc: Sealed,
}

/// `POST /web-event-stream-act` body: the front proves it could open the challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ActivateRequest {
    /// The front that opened the stream.
    pub front_uuid: FrontUuid,
    /// The opened `streamUuidEnc`.
    pub stream_uuid: StreamUuid,
}

/// The front identity stored in IndexedDB under [`crate::storage::IDENTITY_KEY`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// Set once the backend accepted the registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front_bid: Option<FrontBid>,
    /// The front's key pair.
    pub front_keys: KeyPair,
    /// The front's UUID.
    pub front_uuid: FrontUuid,
}
