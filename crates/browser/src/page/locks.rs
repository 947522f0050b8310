//! Web Locks (`navigator.locks`) and `BroadcastChannel`: how the tabs of one origin agree on who
//! holds the reverse stream, who refreshes the access token and who flushes the offline queue.
//!
//! web-sys keeps the Web Locks API behind `web_sys_unstable_apis`, so the two calls used here
//! are bound directly.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Object, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, BroadcastChannel, MessageEvent};

use super::error::PageError;
use super::js;

#[wasm_bindgen]
extern "C" {
    type LockManager;
    #[wasm_bindgen(method, js_name = request)]
    fn request(this: &LockManager, name: &str, options: &Object, callback: &Function) -> Promise;
}

fn manager() -> Option<LockManager> {
    let navigator = js::get(&js::global(), "navigator");
    let locks = js::get(&navigator, "locks");
    if locks.is_object() { Some(locks.unchecked_into()) } else { None }
}

/// Whether this browser has Web Locks.
pub(crate) fn supported() -> bool {
    manager().is_some()
}

/// A granted lock; dropping it releases the lock.
pub(crate) struct HeldLock {
    release: Option<Function>,
}

impl std::fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldLock(..)")
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }
}

/// Releases the lock if the acquisition is given up before it completes.
struct Pending {
    cancelled: Rc<Cell<bool>>,
    release: Rc<RefCell<Option<Function>>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.cancelled.set(true);
        if let Some(release) = self.release.borrow_mut().take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }
}

/// How long a tab waits for a lock that another context holds before it goes on without it:
/// a holder that never lets go (a frozen tab, a bug, another library's deadlock) must not
/// freeze the refresh, the queue or the stream of every tab of the origin.
pub(crate) const DEFAULT_LOCK_TIMEOUT_MS: f64 = 10_000.0;

/// Waits for the exclusive lock `name`. With `if_available`, answers `None` at once when another
/// holder has it. `signal` abandons the wait ([`PageError::Closed`]); after `timeout_ms` (when
/// positive) the wait ends with [`PageError::Timeout`], and the lock request leaves the queue.
pub(crate) async fn acquire(
    name: &str,
    if_available: bool,
    signal: Option<&AbortSignal>,
    timeout_ms: Option<f64>,
) -> Result<Option<HeldLock>, PageError> {
    let manager = manager().ok_or(PageError::Unsupported("Web Locks (navigator.locks)"))?;
    let timeout = timeout_ms.filter(|ms| *ms > 0.0 && !if_available).and_then(timeout_signal);
    let signal = match (signal, &timeout) {
        (Some(signal), Some(timeout)) => Some(any_signal(signal, timeout)),
        (Some(signal), None) => Some(signal.clone()),
        (None, timeout) => timeout.clone(),
    };
    let signal = signal.as_ref();
    let release: Rc<RefCell<Option<Function>>> = Rc::default();
    let hold = {
        let release = release.clone();
        Promise::new(&mut |resolve, _| *release.borrow_mut() = Some(resolve))
    };
    let options = Object::new();
    if if_available {
        js::set(&options, "ifAvailable", &JsValue::TRUE);
    }
    if let Some(signal) = signal {
        js::set(&options, "signal", signal);
    }
    let pending = Pending { cancelled: Rc::default(), release };
    let granted = {
        let cancelled = pending.cancelled.clone();
        Promise::new(&mut |resolve, reject| {
            let hold = hold.clone();
            let cancelled = cancelled.clone();
            let callback = Closure::once_into_js(move |lock: JsValue| -> JsValue {
                if cancelled.get() || lock.is_null() {
                    let _ = resolve.call1(&JsValue::NULL, &JsValue::FALSE);
                    return Promise::resolve(&JsValue::UNDEFINED).into();
                }
                let _ = resolve.call1(&JsValue::NULL, &JsValue::TRUE);
                hold.into()
            });
            let requested = manager.request(name, &options, callback.unchecked_ref());
            if let Some(catch) = js::get_function(&requested, "catch") {
                let _ = catch.call1(&requested, &reject);
            }
        })
    };
    match JsFuture::from(granted).await {
        Ok(held) if held.is_truthy() => {
            // The callback ran, so dropping `pending` now only finds the slot empty.
            let release = pending.release.borrow_mut().take();
            Ok(Some(HeldLock { release }))
        }
        Ok(_) => Ok(None),
        Err(e) if js::get_string(&e, "name").as_deref() == Some("TimeoutError") => {
            // Whole milliseconds, as the signal counted them.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Err(PageError::Timeout(timeout_ms.unwrap_or_default().ceil() as u32))
        }
        Err(e) if js::get_string(&e, "name").as_deref() == Some("AbortError") => {
            Err(PageError::Closed)
        }
        Err(e) => Err(PageError::Storage(format!("Web Locks: {}", crate::web::describe(&e)))),
    }
}

/// The `AbortSignal` class and its static method `name` (read with `Reflect`: [`js::get`] reads
/// objects only, and a class is a function).
fn abort_signal_static(name: &str) -> Option<(JsValue, Function)> {
    let class = js::get(&js::global(), "AbortSignal");
    let method = js_sys::Reflect::get(&class, &JsValue::from_str(name)).ok()?;
    method.dyn_into::<Function>().ok().map(|method| (class, method))
}

/// `AbortSignal.timeout(ms)`: aborts with a `TimeoutError`, and leaves nothing to clean up.
fn timeout_signal(ms: f64) -> Option<AbortSignal> {
    let (class, timeout) = abort_signal_static("timeout")?;
    // Whole milliseconds, at least one; the API takes an unsigned long.
    let ms = JsValue::from_f64(ms.ceil().clamp(1.0, f64::from(u32::MAX)));
    timeout.call1(&class, &ms).ok().map(JsCast::unchecked_into)
}

/// `AbortSignal.any([a, b])`, which keeps the first reason (`AbortError` for a close,
/// `TimeoutError` for the timeout); `a` alone where the browser lacks it.
fn any_signal(a: &AbortSignal, b: &AbortSignal) -> AbortSignal {
    let signals = js_sys::Array::of2(a, b);
    abort_signal_static("any")
        .and_then(|(class, any)| any.call1(&class, &signals).ok())
        .map_or_else(|| a.clone(), JsCast::unchecked_into)
}

/// A `BroadcastChannel` whose messages (JSON text) go to a Rust callback. Closed when dropped.
pub(crate) struct Channel {
    channel: BroadcastChannel,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Channel({})", self.channel.name())
    }
}

impl Channel {
    /// Opens the channel `name`; `on_message` gets every text message other contexts post.
    pub(crate) fn open(
        name: &str,
        on_message: impl Fn(String) + 'static,
    ) -> Result<Self, PageError> {
        let channel =
            BroadcastChannel::new(name).map_err(|_| PageError::Unsupported("BroadcastChannel"))?;
        let closure = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(text) = event.data().as_string() {
                on_message(text);
            }
        });
        channel.set_onmessage(Some(closure.as_ref().unchecked_ref()));
        Ok(Self { channel, _on_message: closure })
    }

    /// Posts `text` to every other context on the channel (not to this one).
    pub(crate) fn post(&self, text: &str) {
        if let Err(e) = self.channel.post_message(&JsValue::from_str(text)) {
            js::warn(&format!("BroadcastChannel.postMessage failed: {}", crate::web::describe(&e)));
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}
