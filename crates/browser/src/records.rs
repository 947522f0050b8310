//! Every record the package keeps or passes around inside the browser, in one place with its
//! schema version: the messages between tabs on a `BroadcastChannel` and the values stored in
//! IndexedDB. (Messages to and from the service worker are wire types: `protocol::tokens`.)
//!
//! A record's version is implied by where it lives: the channel's name or the database's
//! version. A change to a record's JSON that an older reader cannot take bumps its
//! [`Schema::version`], which renames the channel (`{name}` for version 1, `{name}.v{N}` after)
//! or upgrades the database, so that two versions of the package in two tabs never read each
//! other's records. Changes that old readers ignore (a new optional field) keep the version.
//! The tests below pin each record's JSON, so a change that needs a new version fails them.
//!
//! JSON passes through [`encode`] and [`decode`] only.

use protocol::messages::Identity;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where a kind of record lives and at which version of its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Schema {
    /// The channel's name (or its prefix, before `:{frontUuid}`), or the database's name.
    pub(crate) name: &'static str,
    /// The schema version.
    pub(crate) version: u32,
}

impl Schema {
    // Only the page's records travel on channels.
    #[cfg(feature = "page")]
    /// The channel name of this schema: `name`, with `.v{version}` after version 1.
    pub(crate) fn channel(&self) -> String {
        match self.version {
            1 => self.name.to_owned(),
            v => format!("{}.v{v}", self.name),
        }
    }
}

/// A record kept or passed around in the browser.
pub(crate) trait Record: Serialize + DeserializeOwned {
    /// Where records of this type live.
    const SCHEMA: Schema;
}

/// The record's JSON text (plain data: cannot fail).
pub(crate) fn encode<R: Record>(record: &R) -> String {
    protocol::json::to_string(record).unwrap_or_default()
}

/// A record from its JSON text; the error is the parser's sentence.
pub(crate) fn decode<R: Record>(text: &str) -> Result<R, String> {
    protocol::json::from_str(text).map_err(|e| e.to_string())
}

/// The record as a plain JavaScript value (what IndexedDB stores), through its JSON.
pub(crate) fn to_js<R: Record>(record: &R) -> wasm_bindgen::JsValue {
    js_sys::JSON::parse(&encode(record)).unwrap_or(wasm_bindgen::JsValue::NULL)
}

/// A record from a plain JavaScript value, through its JSON (the queue reads its records so).
#[cfg(feature = "page")]
pub(crate) fn from_js<R: Record>(value: &wasm_bindgen::JsValue) -> Result<R, String> {
    let text = js_sys::JSON::stringify(value).map_err(|e| crate::web::describe(&e))?;
    decode(&text.as_string().unwrap_or_default())
}

/// The front identity in IndexedDB: database `websession`, object store `singleton`, key
/// `@teqfw/web-event/identity` (`protocol::storage::IDENTITY_KEY`), the TeqFW front's shape
/// `{"frontBid"?, "frontKeys": {"public", "secret"}, "frontUuid"}`.
impl Record for Identity {
    const SCHEMA: Schema = Schema { name: "websession", version: 1 };
}

#[cfg(feature = "page")]
pub(crate) use page::*;

#[cfg(feature = "page")]
mod page {
    use protocol::event::ReverseEvent;
    use protocol::messages::FrontBid;
    use protocol::{BackUuid, EventUuid, FrontUuid, PublicKey, Timestamp};
    use serde::{Deserialize, Serialize};

    use super::{Record, Schema};
    use crate::page::auth::LoginInfo;
    use crate::page::front::StreamState;

    /// The back as the `authenticate` challenge introduced it.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct Back {
        pub(crate) back_uuid: BackUuid,
        pub(crate) back_key: PublicKey,
    }

    /// Messages between the tabs of a front on `websession-front:{frontUuid}`. Externally
    /// tagged (`{"event": {…}}`): serde reads that without buffering the value first.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub(crate) enum Relay {
        /// A tab started and wants the leader's state.
        Hello,
        /// The leader's stream state.
        #[serde(rename_all = "camelCase")]
        State {
            state: StreamState,
            back: Option<Back>,
            front_bid: Option<FrontBid>,
            last_event_id: Option<String>,
        },
        /// An event from the leader's stream, decrypted.
        Event { id: Option<String>, event: ReverseEvent },
        /// The backend does not share streams: every tab opens its own.
        Solo,
        /// A follower's direct event found the session or front unknown: reconnect now.
        Kick,
    }

    impl Record for Relay {
        const SCHEMA: Schema = Schema { name: "websession-front", version: 1 };
    }

    /// A login as the tabs share it: the access token with what the page knows about it.
    #[derive(Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct Login {
        pub(crate) access_token: String,
        pub(crate) lifetime_ms: f64,
        pub(crate) info: LoginInfo,
    }

    impl std::fmt::Debug for Login {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Login").field("info", &self.info).finish_non_exhaustive()
        }
    }

    /// Messages between the tabs on `websession-auth` (externally tagged, like [`Relay`]).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub(crate) enum AuthRelay {
        /// A starting tab asks for the current access token.
        Query,
        /// The current login (after a login or a refresh).
        Token { login: Box<Login> },
        /// A tab logged out.
        Logout,
        /// The session ended.
        Expired { reason: String },
    }

    impl Record for AuthRelay {
        const SCHEMA: Schema = Schema { name: "websession-auth", version: 1 };
    }

    /// A direct event waiting in the offline queue: database `websession-queue`, object store
    /// `queue` (auto-incremented in-line key `seq`, index `byFront` on `frontUuid`). Session,
    /// stamp and encryption are added when it is sent, with the sending tab's session and the
    /// back key of that moment.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct Outgoing {
        pub(crate) front_uuid: FrontUuid,
        pub(crate) name: String,
        pub(crate) data: protocol::json::Value,
        pub(crate) uuid: EventUuid,
        pub(crate) published: Timestamp,
        pub(crate) expired: Timestamp,
        #[serde(default)]
        pub(crate) encrypted: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub(crate) request_uuid: Option<EventUuid>,
    }

    impl Record for Outgoing {
        const SCHEMA: Schema = Schema { name: "websession-queue", version: 1 };
    }
}

#[cfg(test)]
mod tests {
    use protocol::KeyPair;
    use protocol::messages::{FrontBid, Identity};
    use serde_json::{Value, json};

    use super::*;

    const FRONT: &str = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b";

    /// `record`'s JSON is exactly `expected`, and it reads back as itself.
    #[cfg(feature = "page")]
    fn round_trip<R: Record + PartialEq + std::fmt::Debug>(record: &R, expected: Value) {
        let text = encode(record);
        assert_eq!(serde_json::from_str::<Value>(&text).expect("JSON"), expected);
        assert_eq!(&decode::<R>(&text).expect("reads back"), record);
    }

    #[test]
    fn the_stored_identity_keeps_the_teqfw_shape() {
        let keys = KeyPair::generate();
        let identity = Identity {
            front_bid: Some(FrontBid(7)),
            front_keys: keys.clone(),
            front_uuid: FRONT.parse().expect("uuid"),
        };
        let text = encode(&identity);
        let value: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            value,
            json!({
                "frontBid": 7,
                "frontKeys": {"public": keys.public.to_string(), "secret": value["frontKeys"]["secret"]},
                "frontUuid": FRONT,
            })
        );
        let read: Identity = decode(&text).expect("reads back");
        assert_eq!((read.front_bid, read.front_uuid), (identity.front_bid, identity.front_uuid));
        assert!(read.front_keys.is_consistent());
        assert_eq!(Identity::SCHEMA, Schema { name: "websession", version: 1 });
    }

    #[cfg(feature = "page")]
    #[test]
    fn a_new_schema_version_gets_a_channel_of_its_own() {
        let v1 = Schema { name: "websession-auth", version: 1 };
        let v2 = Schema { version: 2, ..v1 };
        assert_eq!(v1.channel(), "websession-auth");
        assert_eq!(v2.channel(), "websession-auth.v2");
    }

    #[cfg(feature = "page")]
    #[test]
    fn a_record_from_another_schema_is_refused_not_misread() {
        // A message of the front's channel is not one of the auth channel's.
        assert!(decode::<AuthRelay>(&encode(&Relay::Hello)).is_err());
        assert!(decode::<Relay>(r#"{"state": {"state": "sleeping"}}"#).is_err());
    }

    #[cfg(feature = "page")]
    mod page {
        use protocol::event::{EventMeta, ReverseEvent};
        use protocol::{EventUuid, Timestamp};
        use serde_json::json;

        use super::round_trip;
        use super::*;
        use crate::page::auth::LoginInfo;
        use crate::page::front::StreamState;

        const BACK: &str = "11111111-2222-4333-8444-555555555555";
        const KEY: &str = "yP7Kgb4ZbN8sreq/E8SQPXYy3OSVWqaLbl2a3vVOJhY=";
        const EVENT: &str = "a063fee7-1bdc-45fe-9e4b-76caf87485fa";
        const PUBLISHED: &str = "2022-12-23T05:13:47.927Z";

        #[test]
        fn front_relay_messages_keep_their_json() {
            round_trip(&Relay::Hello, json!("hello"));
            round_trip(&Relay::Solo, json!("solo"));
            round_trip(&Relay::Kick, json!("kick"));
            let state = Relay::State {
                state: StreamState::Active,
                back: Some(Back {
                    back_uuid: BACK.parse().expect("uuid"),
                    back_key: KEY.parse().expect("key"),
                }),
                front_bid: Some(FrontBid(3)),
                last_event_id: Some("42".to_owned()),
            };
            round_trip(
                &state,
                json!({"state": {
                    "state": "active",
                    "back": {"backUuid": BACK, "backKey": KEY},
                    "frontBid": 3,
                    "lastEventId": "42",
                }}),
            );
            let empty = Relay::State {
                state: StreamState::Reconnecting,
                back: None,
                front_bid: None,
                last_event_id: None,
            };
            round_trip(
                &empty,
                json!({"state": {
                    "state": "reconnecting", "back": null, "frontBid": null, "lastEventId": null,
                }}),
            );
            let mut meta = EventMeta::new("chat", PUBLISHED.parse::<Timestamp>().expect("time"));
            meta.uuid = EVENT.parse::<EventUuid>().expect("uuid");
            let event = Relay::Event {
                id: Some("7".to_owned()),
                event: ReverseEvent { data: json!({"n": 1}), meta },
            };
            round_trip(
                &event,
                json!({"event": {
                    "id": "7",
                    "event": {
                        "data": {"n": 1},
                        "meta": {"name": "chat", "uuid": EVENT, "published": PUBLISHED},
                    },
                }}),
            );
        }

        #[test]
        fn auth_relay_messages_keep_their_json() {
            round_trip(&AuthRelay::Query, json!("query"));
            round_trip(&AuthRelay::Logout, json!("logout"));
            round_trip(
                &AuthRelay::Expired { reason: "session_expired".to_owned() },
                json!({"expired": {"reason": "session_expired"}}),
            );
            let published = PUBLISHED.parse::<Timestamp>().expect("time");
            let login = Login {
                access_token: "a.b.c".to_owned(),
                lifetime_ms: 300_000.0,
                info: LoginInfo {
                    user_id: Some("alice".to_owned()),
                    sponsor_id: "s-1".to_owned(),
                    subscriber_id: "u-1".to_owned(),
                    permissions: vec!["CanViewReports".to_owned()],
                    access_expires_at: published,
                    session_expires_at: published,
                    claims: None,
                },
            };
            round_trip(
                &AuthRelay::Token { login: Box::new(login) },
                json!({"token": {"login": {
                    "accessToken": "a.b.c",
                    "lifetimeMs": 300_000.0,
                    "info": {
                        "userId": "alice",
                        "sponsorId": "s-1",
                        "subscriberId": "u-1",
                        "permissions": ["CanViewReports"],
                        "accessExpiresAt": PUBLISHED,
                        "sessionExpiresAt": PUBLISHED,
                        "claims": null,
                    },
                }}}),
            );
            assert_eq!(AuthRelay::SCHEMA.channel(), "websession-auth");
        }

        #[test]
        fn a_queued_event_keeps_its_json_and_reads_older_records() {
            let published = PUBLISHED.parse::<Timestamp>().expect("time");
            let queued = Outgoing {
                front_uuid: FRONT.parse().expect("uuid"),
                name: "chat".to_owned(),
                data: json!({"text": "hi"}),
                uuid: EVENT.parse().expect("uuid"),
                published,
                expired: published.plus_millis(60_000),
                encrypted: false,
                request_uuid: None,
            };
            round_trip(
                &queued,
                json!({
                    "frontUuid": FRONT,
                    "name": "chat",
                    "data": {"text": "hi"},
                    "uuid": EVENT,
                    "published": PUBLISHED,
                    "expired": "2022-12-23T05:14:47.927Z",
                    "encrypted": false,
                }),
            );
            // A record without `encrypted` (and with the store's key `seq`) still reads.
            let older = json!({
                "frontUuid": FRONT, "name": "chat", "data": null, "uuid": EVENT,
                "published": PUBLISHED, "expired": PUBLISHED, "seq": 4,
            });
            let read: Outgoing = decode(&older.to_string()).expect("reads an older record");
            assert!(!read.encrypted);
            assert_eq!(Outgoing::SCHEMA, Schema { name: "websession-queue", version: 1 });
        }
    }
}
