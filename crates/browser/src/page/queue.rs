//! The offline queue of direct events, in IndexedDB, keyed by front (not by session: a tab's
//! session is not the one that will send the event after a reload or a hand-over).
//!
//! Database `websession-queue`, object store `queue` with an auto-incremented in-line key `seq`
//! and an index `byFront` on `frontUuid`. An index lists equal keys in primary-key order, so the
//! events of one front come back in the order they were queued, across tabs.
//!
//! The queue has its own database rather than a store in the identity's: the two schemas then
//! change independently, and opening one never waits (`blocked`) on a tab that holds the other
//! open at an older version.

use std::cell::RefCell;

use js_sys::Promise;
use protocol::{EventUuid, FrontUuid, Timestamp};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    IdbDatabase, IdbFactory, IdbIndexParameters, IdbObjectStoreParameters, IdbOpenDbRequest,
    IdbRequest, IdbTransactionMode,
};

use super::error::PageError;
use super::js;

const DB_NAME: &str = "websession-queue";
const DB_VERSION: u32 = 1;
const STORE: &str = "queue";
const BY_FRONT: &str = "byFront";

/// A direct event waiting to be sent. Session, stamp and encryption are added when it is sent,
/// with the sending tab's session and the back key of that moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Outgoing {
    pub(crate) front_uuid: FrontUuid,
    pub(crate) name: String,
    pub(crate) data: serde_json::Value,
    pub(crate) uuid: EventUuid,
    pub(crate) published: Timestamp,
    pub(crate) expired: Timestamp,
    #[serde(default)]
    pub(crate) encrypted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) request_uuid: Option<EventUuid>,
}

/// A queued event with its key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Queued {
    pub(crate) seq: f64,
    pub(crate) event: Outgoing,
}

thread_local! {
    static DB: RefCell<Option<IdbDatabase>> = const { RefCell::new(None) };
}

fn storage_error(what: &str, e: &JsValue) -> PageError {
    PageError::Storage(format!("{what}: {}", crate::web::describe(e)))
}

/// Waits for an IndexedDB request and returns its result.
async fn done(request: &IdbRequest) -> Result<JsValue, PageError> {
    let promise = Promise::new(&mut |resolve, reject| {
        request.set_onsuccess(Some(&resolve));
        request.set_onerror(Some(&reject));
    });
    let result = JsFuture::from(promise).await;
    request.set_onsuccess(None);
    request.set_onerror(None);
    match result {
        Ok(_) => request.result().map_err(|e| storage_error("request", &e)),
        Err(_) => {
            let error = request.error().ok().flatten().map(JsValue::from).unwrap_or_default();
            Err(storage_error("request failed", &error))
        }
    }
}

async fn open() -> Result<IdbDatabase, PageError> {
    if let Some(db) = DB.with(|db| db.borrow().clone()) {
        return Ok(db);
    }
    let factory: IdbFactory = js::get(&js::global(), "indexedDB")
        .dyn_into()
        .map_err(|_| PageError::Unsupported("IndexedDB"))?;
    let request: IdbOpenDbRequest =
        factory.open_with_u32(DB_NAME, DB_VERSION).map_err(|e| storage_error("open", &e))?;
    let upgrade = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
        let Some(request) = event.target().and_then(|t| t.dyn_into::<IdbRequest>().ok()) else {
            return;
        };
        let Ok(db) = request.result().and_then(|r| r.dyn_into::<IdbDatabase>()) else {
            return;
        };
        if db.object_store_names().contains(STORE) {
            return;
        }
        let params = IdbObjectStoreParameters::new();
        params.set_auto_increment(true);
        params.set_key_path(&JsValue::from_str("seq"));
        match db.create_object_store_with_optional_parameters(STORE, &params) {
            Ok(store) => {
                let index = IdbIndexParameters::new();
                index.set_unique(false);
                let _ = store.create_index_with_str_and_optional_parameters(
                    BY_FRONT,
                    "frontUuid",
                    &index,
                );
            }
            Err(e) => {
                js::warn(&format!("cannot create the queue store: {}", crate::web::describe(&e)))
            }
        }
    });
    request.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
    let result = done(&request).await;
    request.set_onupgradeneeded(None);
    let db: IdbDatabase = result?.dyn_into().map_err(|e| storage_error("open result", &e))?;
    // Another tab may one day open a newer version: close ours then, and reopen next time.
    let on_version_change = Closure::<dyn FnMut()>::new(|| {
        if let Some(db) = DB.with(|db| db.borrow_mut().take()) {
            db.close();
        }
    });
    db.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
    on_version_change.forget();
    DB.with(|slot| *slot.borrow_mut() = Some(db.clone()));
    Ok(db)
}

fn store(db: &IdbDatabase, mode: IdbTransactionMode) -> Result<web_sys::IdbObjectStore, PageError> {
    let tx = db
        .transaction_with_str_and_mode(STORE, mode)
        .map_err(|e| storage_error("transaction", &e))?;
    tx.object_store(STORE).map_err(|e| storage_error("store", &e))
}

/// Appends an event to the queue.
pub(crate) async fn push(event: &Outgoing) -> Result<(), PageError> {
    let db = open().await?;
    let store = store(&db, IdbTransactionMode::Readwrite)?;
    let request = store.add(&js::to_js(event)).map_err(|e| storage_error("add", &e))?;
    done(&request).await.map(|_| ())
}

/// The events queued for `front`, oldest first.
pub(crate) async fn list(front: FrontUuid) -> Result<Vec<Queued>, PageError> {
    let db = open().await?;
    let store = store(&db, IdbTransactionMode::Readonly)?;
    let index = store.index(BY_FRONT).map_err(|e| storage_error("index", &e))?;
    let request = index
        .get_all_with_key(&JsValue::from_str(&front.to_string()))
        .map_err(|e| storage_error("getAll", &e))?;
    let records = done(&request).await?;
    let mut out = Vec::new();
    for record in js_sys::Array::from(&records).iter() {
        // The record is the event with its key `seq` added; serde ignores the extra field.
        let seq = js::get_f64(&record, "seq");
        match (seq, js::from_js::<Outgoing>(&record)) {
            (Some(seq), Ok(event)) => out.push(Queued { seq, event }),
            (seq, event) => {
                // A record this version cannot read would block the queue forever: drop it.
                js::warn(&format!("dropping an unreadable queued event: {:?}", event.err()));
                if let Some(seq) = seq {
                    remove(seq).await?;
                }
            }
        }
    }
    Ok(out)
}

/// Removes the queued event `seq`.
pub(crate) async fn remove(seq: f64) -> Result<(), PageError> {
    let db = open().await?;
    let store = store(&db, IdbTransactionMode::Readwrite)?;
    let request = store.delete(&JsValue::from_f64(seq)).map_err(|e| storage_error("delete", &e))?;
    done(&request).await.map(|_| ())
}
