//! The one IndexedDB layer of both modules: opening a database at a version with its upgrade,
//! and get / add / put / delete / get-all-by-index, each awaited in Rust. Written against the
//! global `indexedDB`, so it runs in a page and in the service worker alike. The identity
//! (`crate::identity`) and the page's offline queue (`page::queue`) are built on it; their
//! records and schema versions are in [`crate::records`].

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    EventTarget, IdbDatabase, IdbFactory, IdbObjectStore, IdbRequest, IdbTransaction,
    IdbTransactionMode,
};

use crate::web::describe;

/// A database: its name, its version, and what brings an older one (or none) up to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Database {
    /// The database's name.
    pub(crate) name: &'static str,
    /// Its version; raising it runs `upgrade` in the next open.
    pub(crate) version: u32,
    /// Creates what is missing (`versionchange` transaction); on an error the store stays
    /// missing and the first operation on it fails with `NotFoundError`.
    pub(crate) upgrade: fn(&IdbDatabase) -> Result<(), JsValue>,
}

/// An IndexedDB operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IdbError {
    /// This scope has no IndexedDB (some private modes, some embedded browsers).
    #[error("{0}")]
    Unavailable(String),
    /// IndexedDB refused an operation.
    #[error("{0}")]
    Failed(String),
}

/// An open connection. It is not closed on drop: a caller that caches it keeps it, one that
/// does not calls [`Db::close`] (or holds it in a guard that does).
#[derive(Debug, Clone)]
pub(crate) struct Db(IdbDatabase);

/// How [`Db::write`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// Only if there is no record under the key yet.
    Add,
    /// Whatever is there.
    Put,
}

impl Db {
    /// Opens `database`, upgrading it first when it is older (or new).
    pub(crate) async fn open(database: &Database) -> Result<Self, IdbError> {
        let factory = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("indexedDB"))
            .ok()
            .and_then(|f| f.dyn_into::<IdbFactory>().ok())
            .ok_or_else(|| IdbError::Unavailable("no indexedDB in this scope".to_owned()))?;
        let request = factory
            .open_with_u32(database.name, database.version)
            .map_err(|e| IdbError::Unavailable(describe(&e)))?;
        let upgrade_fn = database.upgrade;
        let upgrade = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
            let db = event
                .target()
                .and_then(|t| t.dyn_into::<IdbRequest>().ok())
                .and_then(|r| r.result().ok())
                .and_then(|db| db.dyn_into::<IdbDatabase>().ok());
            if let Some(db) = db {
                // A failed creation leaves the store missing: the open succeeds and the first
                // operation on the store fails with `NotFoundError`, which says what is wrong.
                let _ = upgrade_fn(&db);
            }
        });
        request.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        let opened = next_event(&request, "success", &["error"]).await;
        request.set_onupgradeneeded(None);
        drop(upgrade);
        opened.map_err(|()| request_error("open", &request))?;
        let db = request.result().map_err(failed)?.dyn_into::<IdbDatabase>().map_err(failed)?;
        Ok(Self(db))
    }

    /// The connection, for what this layer does not wrap (`onversionchange`).
    #[cfg(feature = "page")] // the offline queue's
    pub(crate) fn raw(&self) -> &IdbDatabase {
        &self.0
    }

    /// Closes the connection (pending transactions still complete).
    pub(crate) fn close(&self) {
        self.0.close();
    }

    fn store(
        &self,
        store: &str,
        mode: IdbTransactionMode,
    ) -> Result<(IdbTransaction, IdbObjectStore), IdbError> {
        let tx = self.0.transaction_with_str_and_mode(store, mode).map_err(failed)?;
        let object_store = tx.object_store(store).map_err(failed)?;
        Ok((tx, object_store))
    }

    /// The value under `key`, if there is one.
    pub(crate) async fn get(
        &self,
        store: &str,
        key: &JsValue,
    ) -> Result<Option<JsValue>, IdbError> {
        let (_tx, object_store) = self.store(store, IdbTransactionMode::Readonly)?;
        let request = object_store.get(key).map_err(failed)?;
        let value = wait(&request, "get").await?;
        Ok((!value.is_undefined() && !value.is_null()).then_some(value))
    }

    /// Every value of `index` under `key`, in primary-key order.
    #[cfg(feature = "page")] // the offline queue's
    pub(crate) async fn get_all(
        &self,
        store: &str,
        index: &str,
        key: &JsValue,
    ) -> Result<Vec<JsValue>, IdbError> {
        let (_tx, object_store) = self.store(store, IdbTransactionMode::Readonly)?;
        let index = object_store.index(index).map_err(failed)?;
        let request = index.get_all_with_key(key).map_err(failed)?;
        let values = wait(&request, "getAll").await?;
        Ok(js_sys::Array::from(&values).iter().collect())
    }

    /// Writes `value` under `key` and waits until the transaction is durable; `Ok(false)` when
    /// [`Write::Add`] found a record there.
    pub(crate) async fn write(
        &self,
        store: &str,
        value: &JsValue,
        key: &JsValue,
        mode: Write,
    ) -> Result<bool, IdbError> {
        let (tx, object_store) = self.store(store, IdbTransactionMode::Readwrite)?;
        let request = match mode {
            Write::Add => object_store.add_with_key(value, key),
            Write::Put => object_store.put_with_key(value, key),
        }
        .map_err(failed)?;
        self.written(&tx, &request, mode).await
    }

    /// Adds `value` to a store with in-line, generated keys and waits until it is durable.
    #[cfg(feature = "page")] // the offline queue's
    pub(crate) async fn add(&self, store: &str, value: &JsValue) -> Result<(), IdbError> {
        let (tx, object_store) = self.store(store, IdbTransactionMode::Readwrite)?;
        let request = object_store.add(value).map_err(failed)?;
        self.written(&tx, &request, Write::Put).await.map(drop)
    }

    async fn written(
        &self,
        tx: &IdbTransaction,
        request: &IdbRequest,
        mode: Write,
    ) -> Result<bool, IdbError> {
        // Waiting for the transaction, not the request: the write is durable only at `complete`.
        if next_event(tx, "complete", &["abort"]).await.is_ok() {
            return Ok(true);
        }
        let error = request.error().ok().flatten();
        if mode == Write::Add && error.as_ref().is_some_and(|e| e.name() == "ConstraintError") {
            return Ok(false);
        }
        let reason = error.or_else(|| tx.error()).map(|e| e.message());
        Err(IdbError::Failed(format!("write aborted: {}", reason.unwrap_or_default())))
    }

    /// Deletes the record under `key` and waits until the transaction is durable.
    #[cfg(feature = "page")] // the offline queue's
    pub(crate) async fn delete(&self, store: &str, key: &JsValue) -> Result<(), IdbError> {
        let (tx, object_store) = self.store(store, IdbTransactionMode::Readwrite)?;
        object_store.delete(key).map_err(failed)?;
        next_event(&tx, "complete", &["abort"]).await.map_err(|()| {
            let reason = tx.error().map(|e| e.message()).unwrap_or_default();
            IdbError::Failed(format!("delete aborted: {reason}"))
        })
    }
}

/// Waits for `request` and returns its result.
async fn wait(request: &IdbRequest, what: &str) -> Result<JsValue, IdbError> {
    next_event(request, "success", &["error"]).await.map_err(|()| request_error(what, request))?;
    request.result().map_err(failed)
}

/// Waits for `target` to fire `ok` (`Ok`) or one of `fail` (`Err`).
async fn next_event(target: &EventTarget, ok: &str, fail: &[&str]) -> Result<(), ()> {
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

fn failed(err: JsValue) -> IdbError {
    IdbError::Failed(describe(&err))
}

fn request_error(what: &str, request: &IdbRequest) -> IdbError {
    let reason = request.error().ok().flatten().map(|e| format!("{}: {}", e.name(), e.message()));
    IdbError::Failed(format!("{what} failed: {}", reason.unwrap_or_default()))
}
