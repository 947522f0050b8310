//! The tab: its session UUID in `sessionStorage`, the last event id it saw, and the set of event
//! UUIDs it has delivered already.

use std::collections::{HashSet, VecDeque};

use protocol::storage::SESSION_UUID_KEY;
use protocol::{EventUuid, SessionUuid};
use web_sys::Storage;

use super::js;

/// `sessionStorage` key of the last reverse-stream event id this tab saw, so a reloaded tab
/// resumes where it stopped.
const LAST_EVENT_ID_KEY: &str = "@websession/lastEventId";

fn storage() -> Option<Storage> {
    let value = js::get(&js::global(), "sessionStorage");
    if value.is_object() { Some(wasm_bindgen::JsCast::unchecked_into(value)) } else { None }
}

/// This tab's session UUID: the stored one, or a new one that is stored (a new tab starts with
/// an empty `sessionStorage`). Without `sessionStorage` (a worker) every call gives a new UUID.
pub(crate) fn tab_session() -> SessionUuid {
    let stored = storage().and_then(|s| s.get_item(SESSION_UUID_KEY).ok().flatten());
    match stored.and_then(|text| text.parse().ok()) {
        Some(uuid) => uuid,
        None => new_tab_session(),
    }
}

/// A fresh session UUID for this tab, replacing the stored one. A duplicated tab inherits a copy
/// of `sessionStorage` and with it the original tab's UUID; it takes a new one this way.
pub(crate) fn new_tab_session() -> SessionUuid {
    let uuid = SessionUuid::new_v4();
    if let Some(s) = storage() {
        let _ = s.set_item(SESSION_UUID_KEY, &uuid.to_string());
    }
    uuid
}

/// The last event id this tab saw, if any.
pub(crate) fn stored_last_event_id() -> Option<String> {
    storage().and_then(|s| s.get_item(LAST_EVENT_ID_KEY).ok().flatten())
}

/// Remembers the last event id for a reload of this tab.
pub(crate) fn store_last_event_id(id: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(LAST_EVENT_ID_KEY, id);
    }
}

/// The UUIDs of the last events delivered, so an event that arrives twice (a replay after a
/// reconnect, a relay racing a resumed stream) is delivered once.
#[derive(Debug)]
pub(crate) struct Seen {
    order: VecDeque<EventUuid>,
    set: HashSet<EventUuid>,
    capacity: usize,
}

impl Seen {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { order: VecDeque::new(), set: HashSet::new(), capacity }
    }

    /// Records `uuid`; `false` when it was seen before.
    pub(crate) fn insert(&mut self, uuid: EventUuid) -> bool {
        if !self.set.insert(uuid) {
            return false;
        }
        self.order.push_back(uuid);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}
