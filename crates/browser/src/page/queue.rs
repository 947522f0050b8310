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

use protocol::FrontUuid;
use wasm_bindgen::prelude::*;
use web_sys::{IdbDatabase, IdbIndexParameters, IdbObjectStoreParameters};

use super::error::PageError;
use super::js;
use crate::idb::{Database, Db, IdbError};
use crate::records::{self, Record};

const STORE: &str = "queue";
const BY_FRONT: &str = "byFront";

pub(crate) use crate::records::Outgoing;

/// A queued event with its key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Queued {
    pub(crate) seq: f64,
    pub(crate) event: Outgoing,
}

/// The queue's database: version 1 creates the store and its index.
const DATABASE: Database =
    Database { name: Outgoing::SCHEMA.name, version: Outgoing::SCHEMA.version, upgrade };

fn upgrade(db: &IdbDatabase) -> Result<(), JsValue> {
    if db.object_store_names().contains(STORE) {
        return Ok(());
    }
    let params = IdbObjectStoreParameters::new();
    params.set_auto_increment(true);
    params.set_key_path(&JsValue::from_str("seq"));
    let store = db.create_object_store_with_optional_parameters(STORE, &params)?;
    let index = IdbIndexParameters::new();
    index.set_unique(false);
    store.create_index_with_str_and_optional_parameters(BY_FRONT, "frontUuid", &index)?;
    Ok(())
}

thread_local! {
    static DB: RefCell<Option<Db>> = const { RefCell::new(None) };
}

impl From<IdbError> for PageError {
    fn from(e: IdbError) -> Self {
        match e {
            IdbError::Unavailable(_) => PageError::Unsupported("IndexedDB"),
            IdbError::Failed(why) => PageError::Storage(why),
        }
    }
}

/// The connection of this tab, opened once and kept.
async fn open() -> Result<Db, PageError> {
    if let Some(db) = DB.with(|db| db.borrow().clone()) {
        return Ok(db);
    }
    let db = Db::open(&DATABASE).await?;
    // Another tab may one day open a newer version: close ours then, and reopen next time.
    let on_version_change = Closure::<dyn FnMut()>::new(|| {
        if let Some(db) = DB.with(|db| db.borrow_mut().take()) {
            db.close();
        }
    });
    db.raw().set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
    on_version_change.forget();
    DB.with(|slot| *slot.borrow_mut() = Some(db.clone()));
    Ok(db)
}

/// Appends an event to the queue.
pub(crate) async fn push(event: &Outgoing) -> Result<(), PageError> {
    let db = open().await?;
    Ok(db.add(STORE, &records::to_js(event)).await?)
}

/// The events queued for `front`, oldest first.
pub(crate) async fn list(front: FrontUuid) -> Result<Vec<Queued>, PageError> {
    let db = open().await?;
    let records = db.get_all(STORE, BY_FRONT, &JsValue::from_str(&front.to_string())).await?;
    let mut out = Vec::new();
    for record in records {
        // The record is the event with its key `seq` added; serde ignores the extra field.
        let seq = js::get_f64(&record, "seq");
        match (seq, records::from_js::<Outgoing>(&record)) {
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
    open().await?.delete(STORE, &JsValue::from_f64(seq)).await?;
    Ok(())
}
