//! The front identity (UUID + X25519 key pair) in IndexedDB, shared by the page client and the
//! service worker, and its registration on the backend.
//!
//! The record lives in database [`DB_NAME`], object store [`STORE`], under
//! [`protocol::storage::IDENTITY_KEY`], as the JSON object of [`Identity`]
//! (`{"frontBid"?, "frontKeys": {"public", "secret"}, "frontUuid"}`), the TeqFW front's shape.
//!
//! Creation is race-free across tabs and the worker: a new identity is written with `add`, which
//! fails when a record exists, and whoever loses the race reads the winner's record. Each call
//! opens the database and closes it again, so a later version of the page client can upgrade the
//! database without waiting for an old worker to let go.

use protocol::messages::{FrontBid, Identity, RegisterRequest};
use protocol::storage::IDENTITY_KEY;
use protocol::{ErrorBody, ErrorCode, FrontUuid, KeyPair};
use wasm_bindgen::prelude::*;
use web_sys::IdbDatabase;

use crate::idb::{Database, Db, IdbError, Write};
use crate::net::{self, HttpRequest, NetError};
use crate::records::{self, Record};

/// The IndexedDB database of the package.
pub const DB_NAME: &str = Identity::SCHEMA.name;
/// Its version; bump it (in [`crate::records`], and extend `upgrade`) to add object stores.
pub const DB_VERSION: u32 = Identity::SCHEMA.version;
/// The object store of single records, the identity among them.
pub const STORE: &str = "singleton";
/// How long a registration may take.
const REGISTER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reading or writing the identity failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// This scope has no IndexedDB (some private modes, some embedded browsers).
    #[error("IndexedDB is not available: {0}")]
    Unavailable(String),
    /// IndexedDB refused an operation.
    #[error("IndexedDB failed: {0}")]
    Storage(String),
    /// The stored record does not parse, or its key pair does not match; replace it with
    /// [`replace_corrupt`] (the backend then sees a new front).
    #[error("the stored front identity is corrupt: {0}")]
    Corrupt(String),
}

/// Registration failed; the identity is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// No answer from the backend.
    #[error("registration got no answer: {0}")]
    Network(#[from] NetError),
    /// The UUID is registered with another public key.
    #[error("the front UUID is registered with another key: {}", .0.message)]
    KeyConflict(ErrorBody),
    /// Any other refusal.
    #[error("registration refused with status {status}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The error body, when it was one.
        body: Option<ErrorBody>,
    },
    /// The backend answered `2xx` with something that is not a `frontBid`.
    #[error("registration answer is not a frontBid: {0}")]
    InvalidAnswer(String),
    /// Registered, but saving the `frontBid` failed.
    #[error(transparent)]
    Storage(#[from] IdentityError),
}

/// The stored identity, or a new one stored now. A record that exists but is unusable is
/// [`IdentityError::Corrupt`]; the caller decides whether to [`replace_corrupt`] it.
pub async fn load_or_create() -> Result<Identity, IdentityError> {
    let db = Conn::open().await?;
    if let Some(value) = db.get().await? {
        return parse(&value);
    }
    let fresh = Identity {
        front_bid: None,
        front_keys: KeyPair::generate(),
        front_uuid: FrontUuid::new_v4(),
    };
    if db.write(&fresh, Write::Add).await? {
        return Ok(fresh);
    }
    // Another tab or the worker created one between our read and our write: theirs wins.
    match db.get().await? {
        Some(value) => parse(&value),
        None => {
            Err(IdentityError::Storage("the identity vanished while it was created".to_owned()))
        }
    }
}

/// The stored identity, if there is one.
pub async fn load() -> Result<Option<Identity>, IdentityError> {
    let db = Conn::open().await?;
    db.get().await?.map(|value| parse(&value)).transpose()
}

/// Stores `identity`, replacing what is there.
pub async fn save(identity: &Identity) -> Result<(), IdentityError> {
    Conn::open().await?.write(identity, Write::Put).await.map(|_| ())
}

/// Replaces the stored record (corrupt, or refused by the backend with `front_key_conflict`)
/// with a fresh, unregistered identity.
pub async fn replace_corrupt() -> Result<Identity, IdentityError> {
    let fresh = Identity {
        front_bid: None,
        front_keys: KeyPair::generate(),
        front_uuid: FrontUuid::new_v4(),
    };
    save(&fresh).await?;
    Ok(fresh)
}

/// Registers `identity` at the backend under `base_url` (`""` for the current origin):
/// `POST /web-event-front-reg/{frontUuid}`. On success stores the `frontBid` in `identity` and
/// in IndexedDB. Registering the same UUID and key again gives the same `frontBid`.
pub async fn register(base_url: &str, identity: &mut Identity) -> Result<FrontBid, RegisterError> {
    let url = format!(
        "{}{}/{}",
        base_url.trim_end_matches('/'),
        protocol::paths::REGISTER,
        identity.front_uuid
    );
    let request =
        RegisterRequest { public_key: identity.front_keys.public, front_uuid: identity.front_uuid };
    let body = net::to_json(&request);
    let response = net::send(&HttpRequest {
        timeout: Some(REGISTER_TIMEOUT),
        ..HttpRequest::post(&url, Some(&body))
    })
    .await?;
    if !response.is_success() {
        let body = response.error_body();
        return Err(match body {
            Some(body) if body.code() == Some(ErrorCode::FrontKeyConflict) => {
                RegisterError::KeyConflict(body)
            }
            body => RegisterError::Rejected { status: response.status, body },
        });
    }
    let bid: FrontBid = net::from_json(response.body.trim())
        .map_err(|_| RegisterError::InvalidAnswer(response.body.chars().take(100).collect()))?;
    identity.front_bid = Some(bid);
    save(identity).await?;
    Ok(bid)
}

/// A stored value as an [`Identity`]: a JSON object (or, from older writers, a JSON string).
fn parse(value: &JsValue) -> Result<Identity, IdentityError> {
    let text = match value.as_string() {
        Some(text) => text,
        None => js_sys::JSON::stringify(value)
            .ok()
            .and_then(|s| s.as_string())
            .ok_or_else(|| IdentityError::Corrupt("not a JSON value".to_owned()))?,
    };
    let identity: Identity = records::decode(&text).map_err(IdentityError::Corrupt)?;
    if !identity.front_keys.is_consistent() {
        return Err(IdentityError::Corrupt(
            "the public key does not belong to the secret key".to_owned(),
        ));
    }
    Ok(identity)
}

/// The identity's database: one object store of single records, created by version 1.
const DATABASE: Database = Database { name: DB_NAME, version: DB_VERSION, upgrade };

fn upgrade(db: &IdbDatabase) -> Result<(), JsValue> {
    if !db.object_store_names().contains(STORE) {
        db.create_object_store(STORE)?;
    }
    Ok(())
}

/// An open connection, closed when dropped: each call opens and closes the database, so a
/// later version of the package can upgrade it without waiting for an old worker to let go.
struct Conn(Db);

impl Drop for Conn {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Conn {
    async fn open() -> Result<Self, IdentityError> {
        Ok(Self(Db::open(&DATABASE).await?))
    }

    async fn get(&self) -> Result<Option<JsValue>, IdentityError> {
        Ok(self.0.get(STORE, &key()).await?)
    }

    /// Writes `identity`; `Ok(false)` when [`Write::Add`] found a record already there.
    async fn write(&self, identity: &Identity, mode: Write) -> Result<bool, IdentityError> {
        Ok(self.0.write(STORE, &records::to_js(identity), &key(), mode).await?)
    }
}

impl From<IdbError> for IdentityError {
    fn from(e: IdbError) -> Self {
        match e {
            IdbError::Unavailable(why) => Self::Unavailable(why),
            IdbError::Failed(why) => Self::Storage(why),
        }
    }
}

fn key() -> JsValue {
    JsValue::from_str(IDENTITY_KEY)
}
