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
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    EventTarget, IdbDatabase, IdbFactory, IdbRequest, IdbTransaction, IdbTransactionMode,
};

use crate::net::{self, HttpRequest, NetError};
use crate::web::describe;

/// The IndexedDB database of the package.
pub const DB_NAME: &str = "websession";
/// Its version; bump it (and extend `upgrade`) to add object stores.
pub const DB_VERSION: u32 = 1;
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
    let db = Db::open().await?;
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
    let db = Db::open().await?;
    db.get().await?.map(|value| parse(&value)).transpose()
}

/// Stores `identity`, replacing what is there.
pub async fn save(identity: &Identity) -> Result<(), IdentityError> {
    Db::open().await?.write(identity, Write::Put).await.map(|_| ())
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
    let identity: Identity =
        serde_json::from_str(&text).map_err(|e| IdentityError::Corrupt(e.to_string()))?;
    if !identity.front_keys.is_consistent() {
        return Err(IdentityError::Corrupt(
            "the public key does not belong to the secret key".to_owned(),
        ));
    }
    Ok(identity)
}

enum Write {
    /// Only if there is no record yet.
    Add,
    /// Whatever is there.
    Put,
}

/// An open connection, closed when dropped.
struct Db(IdbDatabase);

impl Drop for Db {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Db {
    async fn open() -> Result<Self, IdentityError> {
        let factory = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("indexedDB"))
            .ok()
            .and_then(|f| f.dyn_into::<IdbFactory>().ok())
            .ok_or_else(|| IdentityError::Unavailable("no indexedDB in this scope".to_owned()))?;
        let request = factory.open_with_u32(DB_NAME, DB_VERSION).map_err(unavailable)?;
        let upgrade = Closure::<dyn FnMut(web_sys::Event)>::new(|event: web_sys::Event| {
            let db = event
                .target()
                .and_then(|t| t.dyn_into::<IdbRequest>().ok())
                .and_then(|r| r.result().ok())
                .and_then(|db| db.dyn_into::<IdbDatabase>().ok());
            if let Some(db) = db
                && !db.object_store_names().contains(STORE)
            {
                // An error here aborts the upgrade, and the open fails with it.
                let _ = db.create_object_store(STORE);
            }
        });
        request.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        let opened = next_event(&request, "success", &["error"]).await;
        request.set_onupgradeneeded(None);
        drop(upgrade);
        opened.map_err(|()| storage_error("open", &request))?;
        let db = request.result().map_err(storage)?.dyn_into::<IdbDatabase>().map_err(storage)?;
        Ok(Self(db))
    }

    async fn get(&self) -> Result<Option<JsValue>, IdentityError> {
        let tx = self.0.transaction_with_str(STORE).map_err(storage)?;
        let request = tx.object_store(STORE).map_err(storage)?.get(&key()).map_err(storage)?;
        next_event(&request, "success", &["error"])
            .await
            .map_err(|()| storage_error("get", &request))?;
        let value = request.result().map_err(storage)?;
        Ok((!value.is_undefined() && !value.is_null()).then_some(value))
    }

    /// Writes `identity`; `Ok(false)` when [`Write::Add`] found a record already there.
    async fn write(&self, identity: &Identity, mode: Write) -> Result<bool, IdentityError> {
        let json =
            serde_json::to_string(identity).map_err(|e| IdentityError::Storage(e.to_string()))?;
        let value = js_sys::JSON::parse(&json).map_err(storage)?;
        let tx: IdbTransaction = self
            .0
            .transaction_with_str_and_mode(STORE, IdbTransactionMode::Readwrite)
            .map_err(storage)?;
        let store = tx.object_store(STORE).map_err(storage)?;
        let request = match mode {
            Write::Add => store.add_with_key(&value, &key()),
            Write::Put => store.put_with_key(&value, &key()),
        }
        .map_err(storage)?;
        // Waiting for the transaction, not the request: the write is durable only at `complete`.
        if next_event(&tx, "complete", &["abort"]).await.is_ok() {
            return Ok(true);
        }
        let constraint =
            request.error().ok().flatten().is_some_and(|e| e.name() == "ConstraintError");
        if matches!(mode, Write::Add) && constraint {
            return Ok(false);
        }
        let reason = request.error().ok().flatten().or_else(|| tx.error()).map(|e| e.message());
        Err(IdentityError::Storage(format!("write aborted: {}", reason.unwrap_or_default())))
    }
}

fn key() -> JsValue {
    JsValue::from_str(IDENTITY_KEY)
}

/// Waits for `target` to fire `ok` (`Ok`) or one of `fail` (`Err`).
pub(crate) async fn next_event(target: &EventTarget, ok: &str, fail: &[&str]) -> Result<(), ()> {
    let mut settle = None;
    let promise = js_sys::Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
    let Some((resolve, reject)) = settle else { return Err(()) };
    let on_ok = Closure::<dyn FnMut()>::new(move || {
        let _ = resolve.call0(&JsValue::NULL);
    });
    let on_fail = Closure::<dyn FnMut()>::new(move || {
        let _ = reject.call0(&JsValue::NULL);
    });
    let listen = |name: &str, f: &Closure<dyn FnMut()>| {
        let _ = target.add_event_listener_with_callback(name, f.as_ref().unchecked_ref());
    };
    listen(ok, &on_ok);
    fail.iter().for_each(|name| listen(name, &on_fail));
    let outcome = JsFuture::from(promise).await;
    let _ = target.remove_event_listener_with_callback(ok, on_ok.as_ref().unchecked_ref());
    for name in fail {
        let _ = target.remove_event_listener_with_callback(name, on_fail.as_ref().unchecked_ref());
    }
    outcome.map(|_| ()).map_err(|_| ())
}

fn unavailable(err: JsValue) -> IdentityError {
    IdentityError::Unavailable(describe(&err))
}

fn storage(err: JsValue) -> IdentityError {
    IdentityError::Storage(describe(&err))
}

fn storage_error(what: &str, request: &IdbRequest) -> IdentityError {
    let reason = request.error().ok().flatten().map(|e| format!("{}: {}", e.name(), e.message()));
    IdentityError::Storage(format!("{what} failed: {}", reason.unwrap_or_default()))
}
