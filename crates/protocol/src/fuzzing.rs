//! The bodies of the fuzz targets of this crate, shared by `fuzz/` (cargo-fuzz, nightly) and the
//! corpus replay in the host tests (stable), so a crash found once stays fixed without either
//! copy drifting.
//!
//! Each function takes the fuzzer's raw bytes and panics only when an invariant breaks: parsing
//! never panics, whatever the input, and what parses encodes to something that parses back to
//! the same value.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ErrorBody;
use crate::event::{DirectEvent, ReverseEvent};
use crate::keys::{KeyPair, SecretKey};
use crate::messages::{
    ActivateRequest, AuthenticateChallenge, FrontBid, Identity, RegisterRequest,
};
use crate::sse::{self, SseItem, SseParser};
use crate::tokens::{
    AccessClaims, AuthenticateRequest, AuthorizeResponse, ChainStage, EidClaims, LoginResponse,
    MessageBody, OAuthErrorBody, OneTimeTokenClaims, ProtectedResource, RefreshResponse,
    SessionError, SessionTokens, SwMessage, TokenExchangeRequest, TokenExchangeResponse,
    VenueClaims,
};
use crate::{ErrorCode, EventUuid, Peer, PublicKey, Sealed, Timestamp};

/// The SSE parser: the same bytes fed whole and fed in chunks split anywhere (the split points
/// come from the input's first bytes) give the same items and the same state; every event it
/// yields, encoded again, parses back to itself.
pub fn sse_parser(data: &[u8]) {
    let Some((&[limit, a, b, c], body)) = data.split_first_chunk::<4>() else {
        return;
    };
    // A small line limit now and then, so that dropping over-long lines is exercised too.
    let max_line = if limit & 1 == 0 { sse::DEFAULT_MAX_LINE } else { usize::from(limit >> 1) };
    let mut whole = SseParser::with_max_line(max_line);
    let expected = whole.feed(body);

    let mut split = SseParser::with_max_line(max_line);
    let mut items = Vec::new();
    let steps = [a, b, c];
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        // Chunk lengths 1..=15 from the split bytes' nibbles in turn; a zero nibble feeds an
        // empty chunk first (which must change nothing), then one byte.
        let mut step = usize::from(steps[i % 3] >> (4 * (i / 3 % 2)) & 0x0f);
        if step == 0 {
            split.feed_into(&[], &mut items);
            step = 1;
        }
        let (chunk, tail) = rest.split_at(step.min(rest.len()));
        split.feed_into(chunk, &mut items);
        rest = tail;
        i += 1;
    }
    assert_eq!(items, expected, "chunked parse differs from the whole");
    assert_eq!(split.last_event_id(), whole.last_event_id());
    assert_eq!(split.retry(), whole.retry());
    assert_eq!(split.dropped_lines(), whole.dropped_lines());

    for item in expected {
        match item {
            SseItem::Event(event) => {
                let mut again = SseParser::new();
                let items = again.feed(sse::encode(&event).as_bytes());
                assert_eq!(items, [SseItem::Event(event)], "encode → parse round trip");
            }
            SseItem::Comment(text) => {
                let mut again = SseParser::new();
                let items = again.feed(sse::comment(&text).as_bytes());
                assert_eq!(items, [SseItem::Comment(text)], "comment round trip");
            }
        }
    }
}

/// The sealed box: any text either is not a sealed value or is one whose wire form reads back
/// as itself; opening any bytes fails cleanly; what one side seals the other opens.
pub fn sealed_open(data: &[u8]) {
    let (front, back) = peers();
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(sealed) = text.parse::<Sealed>() {
            assert_eq!(sealed.to_base64().parse::<Sealed>().as_ref(), Ok(&sealed));
            let _ = back.open_bytes(&sealed);
        }
        if let Ok(sealed) = serde_json::from_str::<Sealed>(text) {
            let _ = back.open::<serde_json::Value>(&sealed);
            let _ = back.open_data(&sealed);
            let _ = back.verify_stamp(
                &sealed,
                &EventUuid::from_uuid(uuid::Uuid::nil()),
                Timestamp::from_millis(0),
            );
        }
        let nonce = nonce_of(data);
        let sealed = front.seal_with_nonce(text, nonce);
        assert_eq!(back.open::<String>(&sealed).as_deref(), Ok(text), "seal → open round trip");
        let value = serde_json::Value::String(text.to_owned());
        assert_eq!(back.open_data(&front.seal_data(&value)).as_ref(), Ok(&value));
    }
    if let Ok(sealed) = Sealed::from_bytes(data.to_vec()) {
        // Forging a tag is not something a fuzzer does: every input must fail to open.
        assert!(back.open_bytes(&sealed).is_err(), "unsealed bytes opened");
        assert!(back.open::<serde_json::Value>(&sealed).is_err());
    }
}

/// A front's and a back's view of one pair of fixed keys, computed once (two X25519s per
/// input would be most of each execution).
fn peers() -> &'static (Peer, Peer) {
    static PEERS: std::sync::OnceLock<(Peer, Peer)> = std::sync::OnceLock::new();
    PEERS.get_or_init(|| {
        let front = KeyPair::from_secret(SecretKey::from_bytes([1; 32]));
        let back = KeyPair::from_secret(SecretKey::from_bytes([2; 32]));
        (Peer::new(&back.public, &front.secret), Peer::new(&front.public, &back.secret))
    })
}

fn nonce_of(data: &[u8]) -> [u8; 24] {
    let mut nonce = [0; 24];
    for (n, b) in nonce.iter_mut().zip(data) {
        *n = *b;
    }
    nonce
}

/// Every wire body's JSON: parsing any bytes as any wire type never panics, and a value that
/// parses encodes to JSON that parses back to the same value.
pub fn wire_json(data: &[u8]) {
    round_trip::<RegisterRequest>(data);
    round_trip::<FrontBid>(data);
    round_trip::<AuthenticateChallenge>(data);
    round_trip::<ActivateRequest>(data);
    round_trip::<ReverseEvent>(data);
    round_trip::<DirectEvent>(data);
    round_trip::<ErrorBody>(data);
    round_trip::<ErrorCode>(data);
    round_trip::<SessionTokens>(data);
    round_trip::<ChainStage>(data);
    round_trip::<SessionError>(data);
    round_trip::<SwMessage>(data);
    round_trip::<AuthorizeResponse>(data);
    round_trip::<VenueClaims>(data);
    round_trip::<EidClaims>(data);
    round_trip::<TokenExchangeRequest>(data);
    round_trip::<TokenExchangeResponse>(data);
    round_trip::<OAuthErrorBody>(data);
    round_trip::<OneTimeTokenClaims>(data);
    round_trip::<AuthenticateRequest>(data);
    round_trip::<LoginResponse>(data);
    round_trip::<RefreshResponse>(data);
    round_trip::<MessageBody>(data);
    round_trip::<AccessClaims>(data);
    round_trip::<ProtectedResource>(data);
    round_trip::<PublicKey>(data);
    round_trip::<Sealed>(data);
    round_trip::<Timestamp>(data);
    round_trip::<EventUuid>(data);
    // `Identity` and `KeyPair` hold a secret key, which has no `PartialEq`: compare their JSON.
    json_round_trip::<Identity>(data);
    json_round_trip::<KeyPair>(data);
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(data) {
        // A known code reads back as its own spelling.
        if let Some(code) = body.code() {
            assert_eq!(code.as_str(), body.error);
        }
    }
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let json = serde_json::to_string(&value).expect("a parsed wire value serialises");
    let again: T = serde_json::from_str(&json).expect("a wire value's JSON parses back");
    // serde_json's default float parsing may be one unit in the last place off, so a payload
    // (`data`) with floats may differ after the trip; everything typed must not.
    if again != value && !json_has_float(&json) {
        panic!("round trip changed the value:\n  {value:?}\n  {again:?}");
    }
}

fn json_round_trip<T: Serialize + DeserializeOwned>(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let json = serde_json::to_string(&value).expect("a parsed wire value serialises");
    let again: T = serde_json::from_str(&json).expect("a wire value's JSON parses back");
    let json_again = serde_json::to_string(&again).expect("a parsed wire value serialises");
    assert_eq!(json, json_again, "round trip changed the value");
}

fn json_has_float(json: &str) -> bool {
    fn walk(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Number(n) => n.is_f64(),
            serde_json::Value::Array(items) => items.iter().any(walk),
            serde_json::Value::Object(map) => map.values().any(walk),
            _ => false,
        }
    }
    serde_json::from_str(json).is_ok_and(|v| walk(&v))
}

/// The resume position of a stream open (`Last-Event-ID` header, or `lastEventId` in the
/// query): never negative, and a position read back from its own decimal spelling is itself.
/// The input is `header` and `query` separated by the first NUL (no NUL: header only).
pub fn last_event_id(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (header, query) = match text.split_once('\0') {
        Some((h, q)) => (Some(h), Some(q)),
        None => (Some(&text[..]), None),
    };
    for (header, query) in [(header, query), (None, query), (header, None), (None, header)] {
        if let Some(id) = sse::resume_id(header, query) {
            assert!(id >= 0, "negative resume id {id}");
            let spelled = id.to_string();
            assert_eq!(sse::resume_id(Some(&spelled), None), Some(id));
            assert_eq!(sse::resume_id(None, Some(&format!("lastEventId={spelled}"))), Some(id));
        }
    }
}

/// Runs `target` on every file of `fuzz/corpus/<name>/` (the checked-in corpus: seeds and
/// every input a fuzzer run kept, crashes it found included) and returns how many there were.
/// The tests of each crate call it for their targets, on stable and without libFuzzer, so that
/// an input that once broke an invariant keeps being tried. A failure names the file.
#[cfg(not(target_arch = "wasm32"))]
pub fn replay(name: &str, target: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(name);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("the corpus {} cannot be read: {err}", dir.display()));
    let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.retain(|path| path.is_file());
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    for path in &files {
        let data = std::fs::read(path)
            .unwrap_or_else(|err| panic!("{} cannot be read: {err}", path.display()));
        if std::panic::catch_unwind(|| target(&data)).is_err() {
            panic!("fuzz target {name} fails on {}", path.display());
        }
    }
    files.len()
}
