#![cfg(target_arch = "wasm32")]
//! The wire crate inside a browser: the crypto, the random sources, the clock and the SSE parser
//! as they run on wasm32.
//!
//! The driver runs this binary twice, in a page (`WASM_BINDGEN_USE_BROWSER=1`) and in a service
//! worker (`WASM_BINDGEN_USE_SERVICE_WORKER=1`), so nothing here configures where it runs.

use protocol::sse::{SseEvent, SseItem, SseParser, encode};
use protocol::{EventUuid, FrontUuid, OpenError, Peer, PublicKey, Sealed, SecretKey, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use wasm_bindgen_test::*;

const VECTORS: &str = include_str!("fixtures/tweetnacl-box-vectors.json");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vectors {
    back_secret: SecretKey,
    back_public: PublicKey,
    front_secret: SecretKey,
    front_public: PublicKey,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    name: String,
    plain: String,
    nonce: String,
    cipher_text: String,
}

impl Case {
    fn nonce(&self) -> [u8; 24] {
        let bytes = protocol::keys::decode_b64(&self.nonce).expect("fixture nonce is base64");
        bytes.try_into().expect("fixture nonce is 24 bytes")
    }
    fn sealed(&self) -> Sealed {
        self.cipher_text.parse().expect("fixture cipher text parses")
    }
}

fn vectors() -> Vectors {
    serde_json::from_str(VECTORS).expect("fixture JSON parses into our key types")
}

impl Vectors {
    fn back(&self) -> Peer {
        Peer::new(&self.front_public, &self.back_secret)
    }
    fn front(&self) -> Peer {
        Peer::new(&self.back_public, &self.front_secret)
    }
    fn case(&self, name_part: &str) -> &Case {
        self.cases.iter().find(|c| c.name.contains(name_part)).expect("fixture case exists")
    }
}

/// The sealed-box vectors depend on it: in the wasm, `protocol::json` writes a string as the
/// same text as serde_json on the host (escapes of quotes, backslashes, control characters).
#[wasm_bindgen_test]
fn json_writes_strings_as_serde_json_does() {
    let text = "a\"b\\c\n\t\u{1}\u{1f}\u{7f}é✓\u{2028}\u{1F600}";
    let written = protocol::json::to_string(text).expect("a string is written");
    assert_eq!(written, "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f\u{7f}é✓\u{2028}\u{1F600}\"");
    assert_eq!(protocol::json::from_str::<String>(&written).expect("parses"), text);
}

/// `protocol::json` in the wasm (`JSON.parse`/`JSON.stringify` with serde-wasm-bindgen): any
/// JSON round-trips through `Value`, `None` is written as `null` (as serde_json does, where
/// `JSON.stringify` would drop an `undefined` field), text that is not JSON is an error.
#[wasm_bindgen_test]
fn json_round_trips_values_and_refuses_what_is_not_json() {
    use protocol::json;
    let text = r#"{"a":[1,"x",null,true,-7,2.5],"b":{"c":{"d":[]}},"big":9007199254740991}"#;
    let value: Value = json::from_str(text).expect("parses");
    assert_eq!(value["a"][4], json!(-7));
    assert_eq!(value["big"], json!(9_007_199_254_740_991_u64));
    let again: Value = json::from_slice(&json::to_vec(&value).expect("writes")).expect("parses");
    assert_eq!(again, value);
    #[derive(serde::Serialize)]
    struct Absent {
        none: Option<u8>,
    }
    assert_eq!(json::to_string(&Absent { none: None }).expect("writes"), r#"{"none":null}"#);
    assert!(json::from_str::<Value>("{").is_err());
    assert!(json::from_str::<Value>("[1] x").is_err());
    assert!(json::from_slice::<Value>(b"\"\xff\"").is_err());
    assert!(json::from_str::<u8>("300").is_err());
}

/// The wasm's reader of `JSON.parse` values reads what serde_json reads and refuses what it
/// refuses, for the shapes the wire types use; but a struct from an array of its fields, which
/// serde_json accepts and the wire never sends, is refused.
#[wasm_bindgen_test]
fn json_reads_the_shapes_serde_json_reads() {
    use protocol::json::from_str;
    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct S {
        n: u64,
        f: f64,
        text: String,
        maybe: Option<i32>,
        list: Vec<u8>,
        pair: (String, bool),
        kind: Kind,
        #[serde(default)]
        data: Value,
    }
    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "camelCase")]
    enum Kind {
        Plain,
        Wrapped(u8),
    }
    let text = r#"{"n":1700000000000,"f":2,"text":"é","maybe":null,"list":[1,2],
        "pair":["a",true],"kind":"plain","data":{"x":[1.5,-2]}}"#;
    let s: S = from_str(text).expect("reads");
    assert_eq!((s.n, s.f, s.maybe, s.kind), (1_700_000_000_000, 2.0, None, Kind::Plain));
    assert_eq!((s.text.as_str(), s.list, s.pair), ("é", vec![1, 2], ("a".to_owned(), true)));
    assert_eq!(s.data, json!({"x": [1.5, -2]}));
    assert_eq!(from_str::<Kind>(r#"{"wrapped":7}"#).expect("reads"), Kind::Wrapped(7));
    assert_eq!(from_str::<Option<u8>>("3").expect("reads"), Some(3));

    // Refused, as serde_json refuses them.
    let refused = |text: &str| assert!(from_str::<S>(text).is_err(), "{text}");
    refused(r#"{"n":1.5,"f":2,"text":"","maybe":null,"list":[],"pair":["a",true],"kind":"plain"}"#);
    refused(r#"{"n":-1,"f":2,"text":"","maybe":null,"list":[],"pair":["a",true],"kind":"plain"}"#);
    refused(r#"{"n":1,"f":2,"text":"","maybe":null,"list":[],"pair":["a",true,1],"kind":"plain"}"#);
    refused(r#"{"n":1,"f":2,"text":"","maybe":null,"list":[],"pair":["a",true],"kind":"other"}"#);
    refused(r#"{"n":1,"f":2,"text":1,"maybe":null,"list":[],"pair":["a",true],"kind":"plain"}"#);
    refused(
        r#"{"n":1,"f":2,"text":"","maybe":null,"list":[],"pair":["a",true],"kind":"plain","x":1}"#,
    );
    refused(r#"{"f":2,"text":"","maybe":null,"list":[],"pair":["a",true],"kind":"plain"}"#);
    // A struct is read from an object only, not from an array of its fields.
    refused(r#"[1,2,"",null,[],["a",true],"plain",null]"#);
    assert!(from_str::<u8>("256").is_err());
    assert!(from_str::<String>("null").is_err());
}

#[wasm_bindgen_test]
fn seal_with_nonce_gives_tweetnacl_bytes() {
    let v = vectors();
    assert_eq!(v.cases.len(), 3);
    for case in &v.cases {
        let sealed = v.back().seal_with_nonce(case.plain.as_str(), case.nonce());
        assert_eq!(sealed.to_base64(), case.cipher_text, "{}", case.name);
    }
}

#[wasm_bindgen_test]
fn front_opens_tweetnacl_boxes() {
    let v = vectors();
    for case in &v.cases {
        let plain: String = v.front().open(&case.sealed()).expect("opens");
        assert_eq!(plain, case.plain, "{}", case.name);
    }
    let data = v.front().open_data(&v.case("event data").sealed()).expect("opens");
    assert_eq!(data, json!({"text": "héllo ✓", "n": 42}));
}

#[wasm_bindgen_test]
fn random_nonce_seal_then_open() {
    let v = vectors();
    let value = json!({"text": "héllo ✓", "list": [1, 2, 3]});
    let (a, b) = (v.back().seal(&value), v.back().seal(&value));
    assert_ne!(a, b, "each seal draws a fresh nonce");
    assert_eq!(v.front().open::<Value>(&a).expect("opens"), value);
    assert_eq!(v.front().open::<Value>(&b).expect("opens"), value);

    // A freshly generated pair on this platform talks to the fixture's back.
    let mine = SecretKey::generate();
    let to_back = Peer::new(&v.back_public, &mine).seal_data(&value);
    let back_view = Peer::new(&mine.public_key(), &v.back_secret);
    assert_eq!(back_view.open_data(&to_back).expect("opens"), value);
    let stranger = Peer::new(&v.back_public, &SecretKey::generate());
    assert_eq!(stranger.open_data(&to_back), Err(OpenError::Decrypt));
}

#[wasm_bindgen_test]
fn stamp_verifies() {
    let v = vectors();
    let case = v.case("stamp");
    let uuid: EventUuid = case.plain[..36].parse().expect("a UUID");
    let published = Timestamp::from_millis(case.plain[36..].parse().expect("millis"));
    let stamp = case.sealed();
    assert_eq!(v.front().verify_stamp(&stamp, &uuid, published), Ok(()));
    assert_eq!(
        v.front().verify_stamp(&stamp, &uuid, published.plus_millis(1)),
        Err(OpenError::Mismatch)
    );
    assert_eq!(
        v.front().verify_stamp(&stamp, &EventUuid::new_v4(), published),
        Err(OpenError::Mismatch)
    );

    let now = Timestamp::now();
    let fresh = v.front().stamp(&uuid, now);
    assert_eq!(v.back().verify_stamp(&fresh, &uuid, now), Ok(()));
}

#[wasm_bindgen_test]
fn sse_parser_on_a_chunked_stream() {
    let events = [
        SseEvent::data("{\"backUuid\":\"b\"}").with_event("authenticate"),
        SseEvent::data("line one\nline two").with_id("1"),
        SseEvent::data("héllo ✓").with_id("2"),
    ];
    let mut stream = String::from("\u{FEFF}");
    for e in &events {
        stream.push_str(&encode(e));
        stream.push_str(&protocol::sse::comment("heartbeat"));
    }
    let stream = stream.replace('\n', "\r\n");
    let expected: Vec<SseItem> = events
        .iter()
        .flat_map(|e| [SseItem::Event(e.clone()), SseItem::Comment("heartbeat".to_owned())])
        .collect();

    for size in [1, 2, 3, 7, 64, stream.len()] {
        let mut parser = SseParser::new();
        let mut items = Vec::new();
        for chunk in stream.as_bytes().chunks(size) {
            parser.feed_into(chunk, &mut items);
        }
        assert_eq!(items, expected, "chunks of {size} bytes");
        assert_eq!(parser.last_event_id(), "2");
    }
}

#[wasm_bindgen_test]
fn clock_is_sane() {
    let now = Timestamp::now();
    let y2020: Timestamp = "2020-01-01T00:00:00.000Z".parse().expect("valid");
    assert!(now > y2020, "now is {now}");
    let text = now.to_string();
    assert_eq!(text.parse::<Timestamp>(), Ok(now));
}

#[wasm_bindgen_test]
fn front_uuids_are_random_v4() {
    let (a, b) = (FrontUuid::new_v4(), FrontUuid::new_v4());
    assert_ne!(a, b);
    assert_eq!(a.as_uuid().get_version_num(), 4);
    assert_eq!(a.to_string().parse::<FrontUuid>(), Ok(a));
}
