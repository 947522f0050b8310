//! The package's TypeScript declarations (`TS_TYPES` in `bindings.rs`, written by hand for their
//! doc comments) checked against the Rust types they describe, so that the two cannot drift: a
//! field renamed, added or made optional on one side fails here.
//!
//! Shapes the package hands out are compared with their serde form (every key, and which keys
//! are optional or nullable); shapes it reads (the options objects) with the keys the reading
//! code in `bindings.rs` asks for; string unions with every variant's name.
#![allow(clippy::unwrap_used)] // a test: a broken expectation panics with its place

use std::collections::BTreeSet;

use protocol::event::EventMeta;
use protocol::tokens::{AccessClaims, ChainStage, SessionError, SessionTokens, SwMessage};
use protocol::{BackUuid, EventUuid, FrontUuid, KeyPair, Peer, SessionUuid, Timestamp};
use serde::Serialize;
use serde_json::Value;

use super::auth::LoginInfo;
use super::error::PageError;
use super::front::{Delivery, Role, StreamState};

/// The source of `bindings.rs`: the declarations, and the reading code for the options' keys.
const BINDINGS: &str = include_str!("bindings.rs");

/// `TS_TYPES`, read from the source: on the host, wasm-bindgen's custom section is no constant.
static TS_TYPES: std::sync::LazyLock<&str> = std::sync::LazyLock::new(|| {
    let start = "const TS_TYPES: &'static str = r#\"";
    let at = BINDINGS.find(start).expect("bindings.rs defines TS_TYPES") + start.len();
    &BINDINGS[at..at + BINDINGS[at..].find("\"#;").expect("TS_TYPES ends")]
});

/// A field of a declared interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Field {
    name: String,
    /// Declared `name?:`.
    optional: bool,
    /// Its type admits `null`.
    nullable: bool,
}

/// The body of `export interface <name> … { … }` (top-level lines only).
fn interface(name: &str) -> Vec<Field> {
    let start = TS_TYPES
        .find(&format!("export interface {name} "))
        .unwrap_or_else(|| panic!("TS_TYPES declares no interface {name}"));
    let body = &TS_TYPES[start..];
    let body = &body[body.find('{').expect("an interface has a body") + 1..];
    let body = &body[..body.find("\n}").expect("an interface ends with `}` on its own line")];
    let mut fields = Vec::new();
    for line in body.lines().map(str::trim) {
        if line.starts_with("/**") || line.starts_with('*') || line.is_empty() {
            continue;
        }
        let (head, ty) =
            line.split_once(':').unwrap_or_else(|| panic!("{name}: odd line {line:?}"));
        let optional = head.ends_with('?');
        let name = head.trim_end_matches('?').to_owned();
        let nullable = ty.split('|').any(|t| t.trim().trim_end_matches(';') == "null");
        fields.push(Field { name, optional, nullable });
    }
    fields.sort();
    fields
}

/// The quoted strings of `export type <name> = "a" | "b" …;`.
fn union(name: &str) -> BTreeSet<String> {
    let start = TS_TYPES
        .find(&format!("export type {name} ="))
        .unwrap_or_else(|| panic!("TS_TYPES declares no type {name}"));
    let decl = &TS_TYPES[start..];
    let decl = &decl[..decl.find(';').expect("a type alias ends with `;`")];
    decl.split('"').skip(1).step_by(2).map(str::to_owned).collect()
}

/// The `type` tags of the tagged union `export type <name> = | { type: "a"; … } | …;`, which
/// ends at the first blank line.
fn tags(name: &str) -> BTreeSet<String> {
    let start = TS_TYPES
        .find(&format!("export type {name} ="))
        .unwrap_or_else(|| panic!("TS_TYPES declares no type {name}"));
    let decl = &TS_TYPES[start..];
    let decl = &decl[..decl.find("\n\n").unwrap_or(decl.len())];
    let needle = "type: \"";
    decl.match_indices(needle)
        .map(|(i, _)| {
            let rest = &decl[i + needle.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

/// The fields a value's serde form has: all of them from `full` (every option set), which are
/// optional (absent) and nullable (`null`) from `bare` (every option unset).
fn fields_of(full: &impl Serialize, bare: &impl Serialize) -> Vec<Field> {
    let (Value::Object(full), Value::Object(bare)) =
        (serde_json::to_value(full).unwrap(), serde_json::to_value(bare).unwrap())
    else {
        panic!("not an object");
    };
    let mut fields: Vec<Field> = full
        .keys()
        .map(|k| Field {
            name: k.clone(),
            optional: !bare.contains_key(k),
            nullable: bare.get(k).is_some_and(Value::is_null),
        })
        .collect();
    fields.sort();
    fields
}

/// The keys the code between `start` and the end of its function reads from the JS value named
/// `from` (`js::get_string(value, "base")`, `number_option(&options, "timeout")`, …).
fn keys_read(start: &str, from: &str) -> BTreeSet<String> {
    let at = BINDINGS.find(start).unwrap_or_else(|| panic!("bindings.rs has no {start:?}"));
    let body = &BINDINGS[at..];
    // The function ends at the first `}` line indented as its `fn` line.
    let line_start = BINDINGS[..at].rfind('\n').map_or(0, |i| i + 1);
    let indent = &BINDINGS[line_start..at];
    let indent = &indent[..indent.len() - indent.trim_start().len()];
    let end = format!("\n{indent}}}\n");
    let body = &body[..body.find(&end).unwrap_or(body.len())];
    let needle = format!("({from}, \"");
    body.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &body[i + needle.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

fn names(fields: &[Field]) -> BTreeSet<String> {
    fields.iter().map(|f| f.name.clone()).collect()
}

fn optional(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn now() -> Timestamp {
    "2026-11-30T12:00:00.000Z".parse().unwrap()
}

#[test]
fn event_meta_is_declared_as_serde_writes_it() {
    let bare = EventMeta::new("echo", now());
    let pair = KeyPair::generate();
    let full = EventMeta {
        expired: Some(now()),
        back_uuid: Some(BackUuid::new_v4()),
        front_uuid: Some(FrontUuid::new_v4()),
        session_uuid: Some(SessionUuid::new_v4()),
        stamp: Some(Peer::new(&pair.public, &pair.secret).seal("stamp")),
        encrypted: Some(true),
        request_uuid: Some(EventUuid::new_v4()),
        ..bare.clone()
    };
    assert_eq!(interface("EventMeta"), fields_of(&full, &bare));
}

#[test]
fn the_worker_answers_are_declared_as_serde_writes_them() {
    let tokens = SessionTokens {
        eid_jwt: "e".into(),
        venue_jwt: "v".into(),
        eid_expires_at: now(),
        venue_expires_at: now(),
    };
    assert_eq!(interface("SessionTokens"), fields_of(&tokens, &tokens));
    let error = SessionError { error: "x".into(), message: "m".into(), stage: ChainStage::Vtx };
    assert_eq!(interface("SessionError"), fields_of(&error, &error));
}

#[test]
fn the_login_is_declared_as_serde_writes_it() {
    let claims = AccessClaims {
        user_id: "u".into(),
        sponsor_id: "s".into(),
        subscriber_id: "b".into(),
        permissions: vec![],
        iss: "i".into(),
        iat: 1,
        exp: 2,
        jti: "j".into(),
    };
    assert_eq!(interface("AccessClaims"), fields_of(&claims, &claims));
    let bare = LoginInfo {
        user_id: None,
        sponsor_id: "s".into(),
        subscriber_id: "b".into(),
        permissions: vec![],
        access_expires_at: now(),
        session_expires_at: now(),
        claims: None,
    };
    let full = LoginInfo { user_id: Some("u".into()), claims: Some(claims), ..bare.clone() };
    assert_eq!(interface("LoginInfo"), fields_of(&full, &bare));
}

#[test]
fn string_unions_name_every_variant() {
    // Exhaustive matches: a new variant stops the build here until it is listed below.
    let states = [
        StreamState::Connecting,
        StreamState::Authenticating,
        StreamState::Active,
        StreamState::Reconnecting,
        StreamState::Closed,
    ];
    for s in states {
        match s {
            StreamState::Connecting
            | StreamState::Authenticating
            | StreamState::Active
            | StreamState::Reconnecting
            | StreamState::Closed => {}
        }
    }
    let serde_names: BTreeSet<String> =
        states.iter().map(|s| serde_json::to_value(s).unwrap().as_str().unwrap().into()).collect();
    let js_names: BTreeSet<String> = states.iter().map(|s| s.as_str().to_owned()).collect();
    assert_eq!(serde_names, js_names);
    assert_eq!(union("StreamState"), js_names);

    let roles = [Role::Solo, Role::Leader, Role::Follower];
    for r in roles {
        match r {
            Role::Solo | Role::Leader | Role::Follower => {}
        }
    }
    assert_eq!(union("StreamRole"), roles.iter().map(|r| r.as_str().to_owned()).collect());

    let deliveries = [Delivery::Sent, Delivery::Queued];
    for d in deliveries {
        match d {
            Delivery::Sent | Delivery::Queued => {}
        }
    }
    assert_eq!(union("Delivery"), deliveries.iter().map(|d| d.as_str().to_owned()).collect());

    let stages = [ChainStage::Xsrf, ChainStage::Authorize, ChainStage::Vtx];
    for s in stages {
        match s {
            ChainStage::Xsrf | ChainStage::Authorize | ChainStage::Vtx => {}
        }
    }
    let stages: BTreeSet<String> =
        stages.iter().map(|s| serde_json::to_value(s).unwrap().as_str().unwrap().into()).collect();
    assert_eq!(union("ChainStage"), stages);
}

#[test]
fn worker_messages_are_declared_with_the_types_serde_writes() {
    let messages = [
        SwMessage::SwActivated { version: "1".into() },
        SwMessage::SessionError(SessionError {
            error: "x".into(),
            message: "m".into(),
            stage: ChainStage::Xsrf,
        }),
        SwMessage::SessionClear,
        SwMessage::SessionChanged,
        SwMessage::SkipWaiting,
    ];
    for m in &messages {
        match m {
            SwMessage::SwActivated { .. }
            | SwMessage::SessionError(_)
            | SwMessage::SessionClear
            | SwMessage::SessionChanged
            | SwMessage::SkipWaiting => {}
        }
    }
    let types: BTreeSet<String> = messages
        .iter()
        .map(|m| serde_json::to_value(m).unwrap()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tags("WorkerMessage"), types);
    let Value::Object(activated) = serde_json::to_value(&messages[0]).unwrap() else { panic!() };
    assert_eq!(activated.keys().collect::<Vec<_>>(), ["type", "version"]);
}

#[test]
fn the_options_declared_are_the_options_read() {
    let front = interface("FrontOptions");
    assert!(front.iter().all(|f| f.optional), "every option of FrontOptions is optional");
    assert_eq!(names(&front), keys_read("fn front_options(", "value"));
    assert_eq!(
        keys_read("fn front_options(", "&backoff"),
        optional(&["initialMs", "maxMs"]),
        "FrontOptions.backoff declares {{ initialMs?, maxMs? }}"
    );
    assert!(TS_TYPES.contains("backoff?: { initialMs?: number; maxMs?: number };"));

    let auth = interface("AuthOptions");
    assert!(auth.iter().all(|f| f.optional), "every option of AuthOptions is optional");
    assert_eq!(names(&auth), keys_read("fn auth_options(", "value"));

    let tokens = interface("SessionTokensOptions");
    assert!(tokens.iter().all(|f| f.optional), "every option of SessionTokensOptions is optional");
    assert_eq!(names(&tokens), keys_read("fn token_options(", "value"));

    let send = interface("SendOptions");
    assert_eq!(names(&send), keys_read("pub fn send(", "&options"));
    // `RequestOptions extends SendOptions`.
    let request: BTreeSet<String> =
        names(&interface("RequestOptions")).union(&names(&send)).cloned().collect();
    assert_eq!(request, keys_read("pub fn request(", "&options"));
}

#[test]
fn the_error_codes_of_the_client_are_the_ones_declared() {
    let doc = TS_TYPES
        .lines()
        .find(|l| l.contains("or the client's own:"))
        .expect("WebSessionError.code lists the client's codes");
    let doc = &doc[doc.find("or the client's own:").unwrap()..];
    let declared: BTreeSet<String> = doc.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    let own = [
        PageError::Network(String::new()),
        PageError::BadResponse { what: "", detail: String::new() },
        PageError::Timeout(0),
        PageError::Closed,
        PageError::Identity(String::new()),
        PageError::EventsLost(String::new()),
        PageError::Storage(String::new()),
        PageError::InvalidArgument(String::new()),
        PageError::Protocol(String::new()),
        PageError::NotLoggedIn,
        PageError::NoServiceWorker,
        PageError::Unsupported(""),
    ];
    for e in &own {
        // Exhaustive: a new variant stops the build here until it is listed above (or, for one
        // that carries the server's code, below).
        match e {
            PageError::Http { .. } | PageError::Session(_) => unreachable!("the server's codes"),
            PageError::Network(_)
            | PageError::BadResponse { .. }
            | PageError::Timeout(_)
            | PageError::Closed
            | PageError::Identity(_)
            | PageError::EventsLost(_)
            | PageError::Storage(_)
            | PageError::InvalidArgument(_)
            | PageError::Protocol(_)
            | PageError::NotLoggedIn
            | PageError::NoServiceWorker
            | PageError::Unsupported(_) => {}
        }
    }
    assert_eq!(declared, own.iter().map(|e| e.code().to_owned()).collect());
}
