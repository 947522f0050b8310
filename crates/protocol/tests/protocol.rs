#![cfg(not(target_arch = "wasm32"))]
//! Host tests of the wire crate: the sealed box against tweetnacl's vectors, keys, UUIDs,
//! timestamps, the SSE encoder and parser, and the JSON spelling of every wire type.

use std::fmt::Debug;
use std::path::Path;

use protocol::keys::{decode_b64, encode_b64};
use protocol::{EventUuid, OpenError, ParseError, Peer, PublicKey, Sealed, SecretKey, Timestamp};
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// `fixtures/tweetnacl-box-vectors.json`, made by tweetnacl 1.0.3.
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
    json_plain: String,
    nonce: String,
    cipher_text: String,
}

impl Case {
    fn nonce(&self) -> [u8; 24] {
        let bytes = decode_b64(&self.nonce).expect("fixture nonce is base64");
        bytes.try_into().expect("fixture nonce is 24 bytes")
    }
    fn sealed(&self) -> Sealed {
        self.cipher_text.parse().expect("fixture cipher text parses")
    }
}

impl Vectors {
    fn load() -> Self {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tweetnacl-box-vectors.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).expect("fixture JSON parses into our key types")
    }
    /// The back's side: it sealed every case.
    fn back(&self) -> Peer {
        Peer::new(&self.front_public, &self.back_secret)
    }
    /// The front's side: it opens what the back sealed.
    fn front(&self) -> Peer {
        Peer::new(&self.back_public, &self.front_secret)
    }
    fn case(&self, name_part: &str) -> &Case {
        self.cases
            .iter()
            .find(|c| c.name.contains(name_part))
            .unwrap_or_else(|| panic!("no fixture case named like {name_part:?}"))
    }
}

/// The sealed value of `sealed` with byte `index` flipped.
fn flipped(sealed: &Sealed, index: usize) -> Sealed {
    let mut bytes = sealed.as_bytes().to_vec();
    bytes[index] ^= 0x01;
    Sealed::from_bytes(bytes).expect("same length as before")
}

/// Asserts that `value` serialises to exactly `expected` and that both `expected` and the
/// serialised text read back as `value`.
fn assert_json<T>(value: &T, expected: Value)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let written = serde_json::to_value(value).expect("serialises");
    assert_eq!(written, expected, "JSON spelling of {value:?}");
    let text = serde_json::to_string(value).expect("serialises");
    let back: T = serde_json::from_str(&text).expect("reads back its own JSON");
    assert_eq!(&back, value, "round trip through {text}");
    let from_expected: T = serde_json::from_value(expected).expect("reads the documented JSON");
    assert_eq!(&from_expected, value);
}

/// Asserts that serde_json refuses `json` as a `T`, with an error that mentions `reason`.
fn assert_rejects<T: DeserializeOwned + Debug>(json: Value, reason: &str) {
    let text = json.to_string();
    match serde_json::from_str::<T>(&text) {
        Ok(v) => panic!("{text} was accepted as {v:?}"),
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(reason), "error for {text} is {message:?}, wanted {reason:?}");
        }
    }
}

const FRONT_UUID: &str = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b";
const SESSION_UUID: &str = "0b1a2f3e-4d5c-4b6a-9788-a9b8c7d6e5f4";
const BACK_UUID: &str = "11111111-2222-4333-8444-555555555555";
const EVENT_UUID: &str = "a063fee7-1bdc-45fe-9e4b-76caf87485fa";
const REQUEST_UUID: &str = "2ca15d2f-ce7b-427f-b41b-ce579df3c9e1";
const PUBLISHED: &str = "2022-12-23T05:13:47.927Z";
const PUBLISHED_MILLIS: i64 = 1_671_772_427_927;

// ---------------------------------------------------------------------------------------------
// The sealed box
// ---------------------------------------------------------------------------------------------

mod sealed_box {
    use super::*;

    #[test]
    fn fixture_keys_match_their_public_halves() {
        let v = Vectors::load();
        assert_eq!(v.back_secret.public_key(), v.back_public);
        assert_eq!(v.front_secret.public_key(), v.front_public);
        assert_eq!(v.back_secret.to_base64(), "AQgPFh0kKzI5QEdOVVxjanF4f4aNlJuiqbC3vsXM09o=");
        assert_eq!(v.back_public.to_base64(), "yP7Kgb4ZbN8sreq/E8SQPXYy3OSVWqaLbl2a3vVOJhY=");
    }

    #[test]
    fn fixture_has_the_three_cases() {
        let v = Vectors::load();
        assert_eq!(v.cases.len(), 3);
        for case in &v.cases {
            // The sealed plaintext is JSON.stringify(plain): a string with its quotes.
            let json = serde_json::to_string(&case.plain).expect("a string serialises");
            assert_eq!(json, case.json_plain, "{}", case.name);
        }
    }

    #[test]
    fn seal_with_nonce_gives_tweetnacl_bytes() {
        let v = Vectors::load();
        let back = v.back();
        for case in &v.cases {
            let sealed = back.seal_with_nonce(case.plain.as_str(), case.nonce());
            assert_eq!(sealed.to_base64(), case.cipher_text, "{}", case.name);
            assert_eq!(sealed, case.sealed(), "{}", case.name);
        }
    }

    #[test]
    fn front_opens_tweetnacl_boxes() {
        let v = Vectors::load();
        let front = v.front();
        for case in &v.cases {
            let sealed = case.sealed();
            let plain: String = front.open(&sealed).expect("the front opens the back's box");
            assert_eq!(plain, case.plain, "{}", case.name);
            let bytes = front.open_bytes(&sealed).expect("opens as bytes");
            assert_eq!(bytes, case.json_plain.as_bytes(), "{}", case.name);
        }
    }

    #[test]
    fn the_box_is_symmetric() {
        // Either side's Peer opens what the other sealed, and its own seals too.
        let v = Vectors::load();
        let (back, front) = (v.back(), v.front());
        let from_front = front.seal("to the back");
        assert_eq!(back.open::<String>(&from_front).expect("back opens"), "to the back");
        let from_back = back.seal(&json!({"k": [1, 2]}));
        assert_eq!(front.open::<Value>(&from_back).expect("front opens"), json!({"k": [1, 2]}));
    }

    #[test]
    fn seal_uses_a_fresh_nonce_each_time() {
        let v = Vectors::load();
        let back = v.back();
        let (a, b) = (back.seal("same"), back.seal("same"));
        assert_ne!(a.as_bytes()[..24], b.as_bytes()[..24]);
        assert_ne!(a, b);
        // nonce (24) + tag (16) + the 6 bytes of "\"same\"".
        assert_eq!(a.as_bytes().len(), 24 + 16 + 6);
    }

    #[test]
    fn stamp_of_the_fixture_verifies() {
        let v = Vectors::load();
        let case = v.case("stamp");
        let uuid: EventUuid = case.plain[..36].parse().expect("the stamp starts with a UUID");
        let millis: i64 = case.plain[36..].parse().expect("the stamp ends with millis");
        assert_eq!(millis, PUBLISHED_MILLIS);
        let published = Timestamp::from_millis(millis);
        let stamp = case.sealed();

        assert_eq!(v.front().verify_stamp(&stamp, &uuid, published), Ok(()));
        // The sealing side holds the same shared key, so it verifies its own stamp too.
        assert_eq!(v.back().verify_stamp(&stamp, &uuid, published), Ok(()));

        let other_uuid: EventUuid = REQUEST_UUID.parse().expect("valid");
        assert_eq!(
            v.front().verify_stamp(&stamp, &other_uuid, published),
            Err(OpenError::Mismatch)
        );
        assert_eq!(
            v.front().verify_stamp(&stamp, &uuid, published.plus_millis(1)),
            Err(OpenError::Mismatch)
        );
    }

    #[test]
    fn stamp_is_uuid_then_millis() {
        let v = Vectors::load();
        let case = v.case("stamp");
        let uuid: EventUuid = case.plain[..36].parse().expect("valid");
        let published: Timestamp = PUBLISHED.parse().expect("valid");
        let stamp = v.back().stamp(&uuid, published);
        assert_eq!(v.front().open::<String>(&stamp).expect("opens"), case.plain);
        assert_eq!(v.front().verify_stamp(&stamp, &uuid, published), Ok(()));
        assert_ne!(stamp, v.back().stamp(&uuid, published), "each stamp has its own nonce");
    }

    #[test]
    fn stamp_with_an_upper_case_uuid_verifies() {
        // A front may write meta.uuid in upper case; it parses to the same UUID and its stamp
        // (sealed as written) must still verify.
        let v = Vectors::load();
        let uuid: EventUuid = EVENT_UUID.parse().expect("valid");
        let text = format!("{}{PUBLISHED_MILLIS}", EVENT_UUID.to_uppercase());
        let stamp = v.back().seal(&text);
        let published = Timestamp::from_millis(PUBLISHED_MILLIS);
        assert_eq!(v.front().verify_stamp(&stamp, &uuid, published), Ok(()));
    }

    #[test]
    fn stamp_failures_are_typed() {
        let v = Vectors::load();
        let uuid: EventUuid = EVENT_UUID.parse().expect("valid");
        let published = Timestamp::from_millis(PUBLISHED_MILLIS);
        let stamp = v.back().stamp(&uuid, published);
        // Tampered.
        assert_eq!(
            v.front().verify_stamp(&flipped(&stamp, 30), &uuid, published),
            Err(OpenError::Decrypt)
        );
        // Not a JSON string inside.
        let number = v.back().seal(&PUBLISHED_MILLIS);
        assert!(matches!(
            v.front().verify_stamp(&number, &uuid, published),
            Err(OpenError::Plaintext(_))
        ));
        // Another peer's stamp.
        let stranger = Peer::new(&v.front_public, &SecretKey::generate());
        assert_eq!(
            v.front().verify_stamp(&stranger.stamp(&uuid, published), &uuid, published),
            Err(OpenError::Decrypt)
        );
    }

    #[test]
    fn event_data_is_double_json() {
        let v = Vectors::load();
        let case = v.case("event data");
        let data = v.front().open_data(&case.sealed()).expect("opens");
        assert_eq!(data, json!({"text": "héllo ✓", "n": 42}));

        let sealed = v.back().seal_data(&data);
        let inner: String = v.front().open(&sealed).expect("the plaintext is a JSON string");
        assert_eq!(serde_json::from_str::<Value>(&inner).expect("holding JSON"), data);
        assert_eq!(v.front().open_data(&sealed).expect("opens"), data);
    }

    #[test]
    fn a_flipped_byte_anywhere_fails_to_decrypt() {
        let v = Vectors::load();
        let sealed = v.case("stream uuid").sealed();
        let len = sealed.as_bytes().len();
        for (part, index) in [
            ("nonce", 0),
            ("nonce", 23),
            ("tag", 24),
            ("tag", 39),
            ("ciphertext", 40),
            ("ciphertext", len - 1),
        ] {
            assert_eq!(
                v.front().open::<String>(&flipped(&sealed, index)),
                Err(OpenError::Decrypt),
                "flipped byte {index} in the {part}"
            );
        }
    }

    #[test]
    fn short_values_are_refused_when_parsed() {
        let v = Vectors::load();
        let bytes = v.case("stream uuid").sealed().as_bytes().to_vec();
        assert_eq!(Sealed::from_bytes(bytes[..39].to_vec()), Err(ParseError::SealedTooShort(39)));
        assert_eq!(encode_b64(&bytes[..39]).parse::<Sealed>(), Err(ParseError::SealedTooShort(39)));
        assert_eq!(encode_b64(&bytes[..10]).parse::<Sealed>(), Err(ParseError::SealedTooShort(10)));
        assert_eq!("".parse::<Sealed>(), Err(ParseError::SealedTooShort(0)));
        // Nonce and tag alone are well formed, but do not authenticate.
        let bare = Sealed::from_bytes(bytes[..40].to_vec()).expect("40 bytes are enough to parse");
        assert_eq!(v.front().open_bytes(&bare), Err(OpenError::Decrypt));
    }

    #[test]
    fn bad_base64_is_refused_when_parsed() {
        for bad in
            ["not base64!", "CxIZICcuNTxDSlFYX2ZtdHuCiZCXnqWs8KMTHQNFxbQzhVdaj6+IHkzUEJ7m-_", "abc"]
        {
            assert!(
                matches!(bad.parse::<Sealed>(), Err(ParseError::InvalidBase64(_))),
                "{bad:?} parsed"
            );
        }
    }

    #[test]
    fn the_wrong_key_fails_to_decrypt() {
        let v = Vectors::load();
        let sealed = v.case("stream uuid").sealed();
        let wrong = Peer::new(&v.back_public, &SecretKey::generate());
        assert_eq!(wrong.open::<String>(&sealed), Err(OpenError::Decrypt));
        // The back's own public key with the front's secret is another wrong pair.
        let crossed = Peer::new(&v.front_public, &v.front_secret);
        assert_eq!(crossed.open_bytes(&sealed), Err(OpenError::Decrypt));
    }

    #[test]
    fn unexpected_plaintext_is_a_plaintext_error() {
        let v = Vectors::load();
        let front = v.front();
        // A UUID string is not a number.
        let uuid_box = v.case("stream uuid").sealed();
        assert!(matches!(front.open::<u32>(&uuid_box), Err(OpenError::Plaintext(_))));
        // Nor is its text JSON, as open_data expects.
        assert!(matches!(front.open_data(&uuid_box), Err(OpenError::Plaintext(_))));
        // open_data wants a JSON string holding JSON, not the JSON itself.
        let single = v.back().seal(&json!({"n": 1}));
        assert!(matches!(front.open_data(&single), Err(OpenError::Plaintext(_))));
        // And a sealed UUID opens as a StreamUuid, its wire use.
        let stream: protocol::StreamUuid = front.open(&uuid_box).expect("a sealed UUID");
        assert_eq!(stream.to_string(), REQUEST_UUID);
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            OpenError::Decrypt.to_string(),
            "decryption failed: wrong key or tampered value"
        );
        let malformed = OpenError::from(ParseError::SealedTooShort(3));
        assert_eq!(malformed.to_string(), "sealed value too short: 3 bytes, at least 40 expected");
    }

    #[test]
    fn sealed_debug_shows_the_length_only() {
        let sealed = Vectors::load().case("stream uuid").sealed();
        assert_eq!(format!("{sealed:?}"), "Sealed(78 bytes)");
        assert_eq!(sealed.to_string(), sealed.to_base64());
    }
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

mod keys {
    use super::*;
    use protocol::KeyPair;

    const BACK_PUBLIC: &str = "yP7Kgb4ZbN8sreq/E8SQPXYy3OSVWqaLbl2a3vVOJhY=";

    #[test]
    fn a_key_is_32_bytes() {
        let key: PublicKey = BACK_PUBLIC.parse().expect("valid");
        assert_eq!(key.as_bytes().len(), 32);
        assert_eq!(key.to_string(), BACK_PUBLIC);
        assert_eq!(PublicKey::from_bytes(*key.as_bytes()), key);
        for len in [0, 31, 33, 64] {
            let text = encode_b64(&vec![7u8; len]);
            assert_eq!(text.parse::<PublicKey>(), Err(ParseError::InvalidKeyLength(len)), "{len}");
            assert!(
                matches!(text.parse::<SecretKey>(), Err(ParseError::InvalidKeyLength(n)) if n == len),
                "{len}"
            );
        }
    }

    #[test]
    fn keys_are_standard_padded_base64() {
        let unpadded = BACK_PUBLIC.trim_end_matches('=');
        let url_safe = BACK_PUBLIC.replace('/', "_");
        let with_space = format!(" {BACK_PUBLIC}");
        for bad in [unpadded, url_safe.as_str(), with_space.as_str(), "####", "yP7K=gb4"] {
            assert!(
                matches!(bad.parse::<PublicKey>(), Err(ParseError::InvalidBase64(_))),
                "{bad:?} parsed as a public key"
            );
            assert!(
                matches!(bad.parse::<SecretKey>(), Err(ParseError::InvalidBase64(_))),
                "{bad:?} parsed as a secret key"
            );
        }
    }

    #[test]
    fn generated_pairs_are_consistent_and_distinct() {
        let (a, b) = (KeyPair::generate(), KeyPair::generate());
        assert!(a.is_consistent());
        assert!(b.is_consistent());
        assert_ne!(a.public, b.public);
        assert_eq!(a.secret.public_key(), a.public);
        let mismatched = KeyPair { public: b.public, secret: a.secret.clone() };
        assert!(!mismatched.is_consistent());
    }

    #[test]
    fn secret_key_round_trips() {
        let pair = KeyPair::generate();
        let text = pair.secret.to_base64();
        let again: SecretKey = text.parse().expect("its own base64");
        assert_eq!(again.to_bytes(), pair.secret.to_bytes());
        assert_eq!(SecretKey::from_bytes(pair.secret.to_bytes()).public_key(), pair.public);
        assert_eq!(KeyPair::from_secret(again).public, pair.public);
    }

    #[test]
    fn secret_key_debug_does_not_leak() {
        let pair = KeyPair::generate();
        let b64 = pair.secret.to_base64();
        let bytes = format!("{:?}", pair.secret.to_bytes());
        for shown in [format!("{:?}", pair.secret), format!("{pair:?}"), format!("{pair:#?}")] {
            assert!(!shown.contains(&b64), "{shown}");
            assert!(!shown.contains(&bytes), "{shown}");
            assert!(!shown.contains(&b64[..8]), "{shown}");
        }
        assert_eq!(format!("{:?}", pair.secret), "SecretKey(..)");
        // The public half may be shown.
        assert!(format!("{pair:?}").contains(&pair.public.to_base64()));
    }
}

// ---------------------------------------------------------------------------------------------
// UUIDs
// ---------------------------------------------------------------------------------------------

mod uuids {
    use super::*;
    use protocol::{BackUuid, FrontUuid, SessionUuid, StreamUuid};

    #[test]
    fn hyphenated_parses_and_displays_lower_case() {
        let upper = FRONT_UUID.to_uppercase();
        let front: FrontUuid = upper.parse().expect("upper case is accepted");
        assert_eq!(front.to_string(), FRONT_UUID);
        assert_eq!(front, FRONT_UUID.parse().expect("lower case"));
        assert_eq!(format!("{front:?}"), format!("FrontUuid({FRONT_UUID})"));
        assert_eq!(serde_json::to_value(front).expect("serialises"), json!(FRONT_UUID));
    }

    #[test]
    fn other_spellings_are_refused() {
        let simple = FRONT_UUID.replace('-', "");
        let long = "a".repeat(10_000);
        let refused = [
            format!("{{{FRONT_UUID}}}"),
            format!("urn:uuid:{FRONT_UUID}"),
            simple,
            String::new(),
            "garbage".to_owned(),
            "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0g".to_owned(),
            "6f1e2d3c4-b5a-4978-8a6b-5c4d3e2f1a0b".to_owned(),
            format!("{FRONT_UUID} "),
            format!("{FRONT_UUID}0"),
            "é".repeat(18),
            long.clone(),
        ];
        for bad in &refused {
            match bad.parse::<SessionUuid>() {
                Err(ParseError::InvalidUuid(shown)) => {
                    assert!(shown.chars().count() <= 64, "the error quotes at most 64 chars");
                    assert!(bad.starts_with(&shown));
                }
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        let message = long.parse::<BackUuid>().expect_err("refused").to_string();
        assert!(message.starts_with("invalid UUID"), "{message}");
        assert!(message.len() < 120, "the message stays short: {message}");
    }

    #[test]
    fn new_v4_is_random_version_4() {
        let a = StreamUuid::new_v4();
        let b = StreamUuid::new_v4();
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.as_uuid().get_version_num(), 4);
            assert_eq!(id.as_uuid().get_variant(), uuid::Variant::RFC4122);
            assert_eq!(id.to_string().parse::<StreamUuid>(), Ok(id));
        }
        assert_eq!(protocol::ids::random_uuid().get_version_num(), 4);
    }

    /// One role's round trips: text → value → text, value → JSON → value, and a `Debug` that
    /// names the role (logs show which UUID is which).
    fn round_trips<T>(role: &str)
    where
        T: std::str::FromStr<Err = ParseError> + std::fmt::Display + Debug + PartialEq + Copy,
        T: Serialize + DeserializeOwned,
    {
        let parsed: T = FRONT_UUID.to_uppercase().parse().expect("valid");
        assert_eq!(parsed.to_string(), FRONT_UUID, "{role}: display is lower-case hyphenated");
        assert_eq!(parsed.to_string().parse::<T>(), Ok(parsed), "{role}: parse(display(x)) == x");
        assert_eq!(format!("{parsed:?}"), format!("{role}({FRONT_UUID})"));
        let json = serde_json::to_value(parsed).expect("serialises");
        assert_eq!(json, json!(FRONT_UUID), "{role}: JSON is the display string");
        assert_eq!(serde_json::from_value::<T>(json).expect("deserialises"), parsed, "{role}");
        let bad = serde_json::from_value::<T>(json!(FRONT_UUID.replace('-', "")));
        assert!(bad.is_err(), "{role}: JSON takes the hyphenated form only");
    }

    #[test]
    fn every_role_round_trips_through_text_and_json() {
        round_trips::<FrontUuid>("FrontUuid");
        round_trips::<SessionUuid>("SessionUuid");
        round_trips::<StreamUuid>("StreamUuid");
        round_trips::<BackUuid>("BackUuid");
        round_trips::<EventUuid>("EventUuid");
        // The inner UUID goes in and out unchanged.
        let inner = protocol::ids::random_uuid();
        assert_eq!(*SessionUuid::from_uuid(inner).as_uuid(), inner);
    }
}

// ---------------------------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------------------------

mod timestamps {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn iso_and_millis_agree() {
        let t: Timestamp = PUBLISHED.parse().expect("valid");
        assert_eq!(t.millis(), PUBLISHED_MILLIS);
        assert_eq!(Timestamp::from_millis(PUBLISHED_MILLIS).to_string(), PUBLISHED);
        assert_eq!(t.seconds(), 1_671_772_427);
    }

    #[test]
    fn display_has_three_fraction_digits_and_z() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (1, "1970-01-01T00:00:00.001Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (1_671_772_427_000, "2022-12-23T05:13:47.000Z"),
            (1_671_772_427_120, "2022-12-23T05:13:47.120Z"),
            (i64::MAX, "9999-12-31T23:59:59.999Z"),
            (i64::MIN, "0001-01-01T00:00:00.000Z"),
        ];
        for (millis, text) in cases {
            assert_eq!(Timestamp::from_millis(millis).to_string(), text, "{millis}");
        }
    }

    #[test]
    fn offsets_and_precision_are_parsed() {
        let same = [
            "2022-12-23T05:13:47.927Z",
            "2022-12-23T05:13:47.927+00:00",
            "2022-12-23T07:13:47.927+02:00",
            "2022-12-22T23:43:47.927-05:30",
            "2022-12-23T05:13:47.927999Z",
        ];
        for text in same {
            assert_eq!(
                text.parse::<Timestamp>().map(Timestamp::millis),
                Ok(PUBLISHED_MILLIS),
                "{text}"
            );
        }
        let whole: Timestamp = "2022-12-23T05:13:47Z".parse().expect("no fraction");
        assert_eq!(whole.millis(), 1_671_772_427_000);
    }

    #[test]
    fn garbage_is_refused() {
        let bad = [
            "",
            "yesterday",
            "2022-12-23",
            "05:13:47.927Z",
            "2022-12-23T05:13:47.927",
            "2022-13-23T05:13:47.927Z",
            "2022-12-23T25:13:47.927Z",
            "1671772427927",
            "0000-12-31T23:59:59.999Z",
        ];
        for text in bad {
            assert!(
                matches!(text.parse::<Timestamp>(), Err(ParseError::InvalidTimestamp(_))),
                "{text:?} parsed"
            );
        }
    }

    #[test]
    fn serde_is_the_iso_string() {
        let t = Timestamp::from_millis(PUBLISHED_MILLIS);
        assert_json(&t, json!(PUBLISHED));
        assert_rejects::<Timestamp>(json!(PUBLISHED_MILLIS), "invalid type");
        assert_rejects::<Timestamp>(json!("soon"), "invalid timestamp");
    }

    #[test]
    fn arithmetic_clamps() {
        let t = Timestamp::from_millis(PUBLISHED_MILLIS);
        assert_eq!(t.plus_millis(60_000).millis(), PUBLISHED_MILLIS + 60_000);
        assert_eq!(t.plus_millis(-PUBLISHED_MILLIS), Timestamp::from_millis(0));
        assert_eq!(t.plus_millis(i64::MAX), Timestamp::from_millis(i64::MAX));
        assert_eq!(Timestamp::from_millis(-1).seconds(), -1);
        assert_eq!(Timestamp::from_millis(1999).seconds(), 1);
        assert!(Timestamp::from_millis(1) > Timestamp::from_millis(0));
    }

    #[test]
    fn now_is_recent() {
        let now = Timestamp::now();
        let y2020 = "2020-01-01T00:00:00Z".parse::<Timestamp>().expect("valid");
        assert!(now > y2020, "{now}");
    }

    /// `time`'s RFC 3339 reading of `text` in milliseconds, within the years Timestamp holds:
    /// the reference for the hand-written parser.
    fn time_millis(text: &str) -> Option<i64> {
        use time::format_description::well_known::Rfc3339;
        let dt = time::OffsetDateTime::parse(text, &Rfc3339).ok()?;
        let millis = i64::try_from(dt.unix_timestamp_nanos().div_euclid(1_000_000)).ok()?;
        (-62_135_596_800_000..=253_402_300_799_999).contains(&millis).then_some(millis)
    }

    fn parsed_millis(text: &str) -> Option<i64> {
        text.parse::<Timestamp>().ok().map(Timestamp::millis)
    }

    #[test]
    fn leap_seconds_and_edges_parse_as_time_parses_them() {
        let cases = [
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5z",
            "2017-01-01T00:59:60+01:00",
            "2016-12-30T23:59:60Z",
            "2016-06-30T23:59:60-00:00",
            "2016-06-30T22:59:60-01:00",
            "2024-02-29T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2000-02-29T12:00:00Z",
            "1900-02-29T12:00:00Z",
            "0000-12-31T23:00:00-02:00",
            "0001-01-01T00:00:00+00:01",
            "9999-12-31T23:59:59.999-00:01",
            "2022-12-23 05:13:47Z",
            "2022-12-23T05:13:47.Z",
            "2022-12-23T05:13:47.1234567890123Z",
            "2022-12-23T05:13:47+24:00",
            "2022-12-23T05:13:47+23:60",
            "2022-12-23T05:13:47+0200",
            "2022-12-23T05:13:47Z ",
            "2022-12-23\u{e9}05:13:47Z",
            "+2022-12-23T05:13:47Z",
        ];
        for text in cases {
            assert_eq!(parsed_millis(text), time_millis(text), "{text}");
        }
        assert!(parsed_millis("2016-12-31T23:59:60Z").is_some(), "a leap second parses");
    }

    proptest! {
        #[test]
        fn display_matches_time(millis in -62_135_596_800_000i64..=253_402_300_799_999) {
            let format = time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            );
            let nanos = i128::from(millis) * 1_000_000;
            let dt = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).expect("in range");
            prop_assert_eq!(
                Timestamp::from_millis(millis).to_string(),
                dt.format(&format).expect("formats")
            );
        }

        /// Fields around and beyond their bounds, every separator and offset form.
        #[test]
        fn parsing_matches_time(
            (year, month, day) in (0u32..=9999, 0u32..=13, 0u32..=32),
            (hour, minute, second) in (0u32..=24, 0u32..=60, 0u32..=61),
            separator in "[Tt _]",
            fraction in "(\\.[0-9]{0,12})?",
            offset in "[Zz]|[+-][0-2][0-9]:[0-6][0-9]",
        ) {
            let text = format!(
                "{year:04}-{month:02}-{day:02}{separator}{hour:02}:{minute:02}:{second:02}\
                 {fraction}{offset}"
            );
            prop_assert_eq!(parsed_millis(&text), time_millis(&text), "{}", text);
        }

        /// Anything at all, mostly refused by both.
        #[test]
        fn parsing_arbitrary_text_matches_time(text in "[0-9T:.Zz+ -]{0,32}|\\PC{0,32}") {
            prop_assert_eq!(parsed_millis(&text), time_millis(&text), "{}", text);
        }

        #[test]
        fn display_parses_back(millis in -62_135_596_800_000i64..=253_402_300_799_999) {
            let t = Timestamp::from_millis(millis);
            prop_assert_eq!(t.millis(), millis);
            let text = t.to_string();
            prop_assert_eq!(text.len(), 24);
            prop_assert!(text.ends_with('Z'));
            prop_assert_eq!(text.parse::<Timestamp>(), Ok(t));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events
// ---------------------------------------------------------------------------------------------

mod sse {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use protocol::sse::{SseEvent, SseItem, SseParser, comment, encode};

    fn parse(bytes: &[u8]) -> Vec<SseItem> {
        SseParser::new().feed(bytes)
    }

    /// Feeds `chunks` one by one into `parser`, collecting every item.
    fn feed_chunks<'a>(
        parser: &mut SseParser,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Vec<SseItem> {
        let mut items = Vec::new();
        for chunk in chunks {
            parser.feed_into(chunk, &mut items);
        }
        items
    }

    /// `bytes` cut at `cuts` (positions may repeat, giving empty chunks).
    fn split_at_cuts<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for p in points {
            chunks.push(&bytes[start..p]);
            start = p;
        }
        chunks.push(&bytes[start..]);
        chunks
    }

    fn event(data: &str) -> SseItem {
        SseItem::Event(SseEvent::data(data))
    }

    /// What the parser reads back for `data`: every line end becomes `\n`.
    fn normalise(data: &str) -> String {
        data.replace("\r\n", "\n").replace('\r', "\n")
    }

    // --- encoder ---

    #[test]
    fn encode_writes_the_id_inside_its_block_before_data() {
        let e = SseEvent::data("{\"x\":1}").with_id("5").with_event("authenticate");
        assert_eq!(encode(&e), "event: authenticate\nid: 5\ndata: {\"x\":1}\n\n");
        let retry = SseEvent { retry: Some(3000), ..SseEvent::data("") };
        assert_eq!(encode(&retry), "retry: 3000\ndata: \n\n");
    }

    #[test]
    fn encode_splits_data_lines_and_cleans_fields() {
        let e = SseEvent::data("a\nb\r\nc\rd").with_event("na\r\nme").with_id("1\n2\u{0}3");
        assert_eq!(encode(&e), "event: name\nid: 123\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
        assert_eq!(
            parse(encode(&e).as_bytes()),
            [SseItem::Event(SseEvent::data("a\nb\nc\nd").with_event("name").with_id("123"))]
        );
    }

    #[test]
    fn comment_frames() {
        assert_eq!(comment("ping"), ": ping\n\n");
        assert_eq!(comment("a\r\nb"), ": ab\n\n");
        assert_eq!(parse(comment("ping").as_bytes()), [SseItem::Comment("ping".to_owned())]);
    }

    // --- parser ---

    #[test]
    fn multi_line_data_is_joined_by_lf() {
        let items = parse(b"data: a\ndata: b\ndata:\ndata\ndata:c\ndata:  two spaces\n\n");
        assert_eq!(items, [event("a\nb\n\n\nc\n two spaces")]);
    }

    #[test]
    fn cr_only_line_ends() {
        let items = parse(b"event: x\rid: 9\rdata: 1\rdata: 2\r\rdata: 3\r\r");
        assert_eq!(
            items,
            [SseItem::Event(SseEvent::data("1\n2").with_event("x").with_id("9")), event("3")]
        );
    }

    #[test]
    fn crlf_split_by_an_empty_chunk_is_one_line_end() {
        let mut parser = SseParser::new();
        let items = feed_chunks(
            &mut parser,
            [&b"data: a\r"[..], b"", b"\ndata: b\r", b"\n", b"\r", b"", b"\n"],
        );
        assert_eq!(items, [event("a\nb")]);
    }

    #[test]
    fn comments_are_items() {
        let items = parse(b": heartbeat\n:no space\n:\ndata: x\n: inside a block\n\n");
        assert_eq!(
            items,
            [
                SseItem::Comment("heartbeat".to_owned()),
                SseItem::Comment("no space".to_owned()),
                SseItem::Comment(String::new()),
                SseItem::Comment("inside a block".to_owned()),
                event("x"),
            ]
        );
    }

    #[test]
    fn retry_takes_digits_only() {
        let mut parser = SseParser::new();
        let items = parser.feed(
            b"retry: 12a\ndata: a\n\nretry: -5\nretry:\nretry: 1.5\nretry: 99999999999999999999999\ndata: b\n\n",
        );
        assert_eq!(items, [event("a"), event("b")]);
        assert_eq!(parser.retry(), None);

        let items = parser.feed(b"retry: 3000\ndata: c\n\ndata: d\n\n");
        let with_retry = SseEvent { retry: Some(3000), ..SseEvent::data("c") };
        assert_eq!(items, [SseItem::Event(with_retry), event("d")]);
        assert_eq!(parser.retry(), Some(3000), "the last valid retry persists");
        parser.feed(b"retry: x\n\n");
        assert_eq!(parser.retry(), Some(3000));
    }

    #[test]
    fn id_with_nul_is_ignored() {
        let mut parser = SseParser::new();
        let items = parser.feed(b"id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n");
        assert_eq!(items, [SseItem::Event(SseEvent::data("a").with_id("1")), event("b")]);
        assert_eq!(parser.last_event_id(), "1");
    }

    #[test]
    fn last_event_id_persists_until_changed() {
        let mut parser = SseParser::new();
        assert_eq!(parser.last_event_id(), "");
        parser.feed(b"id: 5\ndata: a\n\n");
        assert_eq!(parser.last_event_id(), "5");
        let items = parser.feed(b"data: b\n\n");
        assert_eq!(items, [event("b")], "an event without id: has no id of its own");
        assert_eq!(parser.last_event_id(), "5");
        // A block without data still moves the id on.
        assert_eq!(parser.feed(b"id: 6\n\n"), []);
        assert_eq!(parser.last_event_id(), "6");
        // An empty id resets it.
        parser.feed(b"id\ndata: c\n\n");
        assert_eq!(parser.last_event_id(), "");
    }

    #[test]
    fn last_event_id_moves_only_when_the_block_completes() {
        // If the connection drops inside a block, the client resumes from the previous event,
        // so the event whose block was cut off is sent again.
        let mut parser = SseParser::new();
        parser.feed(b"id: 1\ndata: a\n\n");
        assert_eq!(parser.feed(b"id: 2\ndata: b\n"), []);
        assert_eq!(parser.last_event_id(), "1");
        assert_eq!(parser.feed(b"\n"), [SseItem::Event(SseEvent::data("b").with_id("2"))]);
        assert_eq!(parser.last_event_id(), "2");
    }

    #[test]
    fn a_leading_bom_is_stripped_once() {
        let stream = b"\xEF\xBB\xBFdata: a\n\n";
        assert_eq!(parse(stream), [event("a")]);
        for cut in 1..4 {
            let mut parser = SseParser::new();
            let items = feed_chunks(&mut parser, [&stream[..cut], &stream[cut..]]);
            assert_eq!(items, [event("a")], "BOM split after byte {cut}");
        }
        let mut parser = SseParser::new();
        assert_eq!(feed_chunks(&mut parser, stream.chunks(1)), [event("a")]);
        let mut parser = SseParser::new();
        let items =
            feed_chunks(&mut parser, [&b""[..], b"\xEF", b"", b"\xBB", b"\xBFdata: a\n", b"\n"]);
        assert_eq!(items, [event("a")]);

        // Only one BOM, and only at the very start.
        assert_eq!(parse(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n"), []);
        let mut parser = SseParser::new();
        parser.feed(b"data: a\n\n");
        assert_eq!(parser.feed(b"\xEF\xBB\xBFdata: b\n\n"), []);
        // A start that only looks like a BOM is kept.
        assert_eq!(parse(b"\xEF\xBBdata: a\n\ndata: b\n\n"), [event("b")]);
    }

    #[test]
    fn a_block_without_data_dispatches_nothing() {
        assert_eq!(parse(b"event: x\nid: 3\nretry: 10\n\n"), []);
        assert_eq!(parse(b"\n\n\n"), []);
        // Its fields do not leak into the next block.
        assert_eq!(parse(b"event: x\nid: 3\n\ndata: y\n\n"), [event("y")]);
        // Unknown fields are ignored.
        assert_eq!(parse(b"foo: bar\n\nfoo: bar\ndata: z\n\n"), [event("z")]);
    }

    #[test]
    fn an_incomplete_block_is_not_dispatched() {
        assert_eq!(parse(b"data: a\n"), []);
        assert_eq!(parse(b"data: a"), []);
    }

    #[test]
    fn over_long_lines_are_dropped_and_counted() {
        let long = format!("data: {}\n", "x".repeat(100));
        let stream =
            format!("data: one\n{long}data: two\n\n{long}{long}\ndata: {}\n\n", "y".repeat(10));
        let expected = [event("one\ntwo"), event(&"y".repeat(10))];

        let mut whole = SseParser::with_max_line(16);
        assert_eq!(whole.feed(stream.as_bytes()), expected);
        assert_eq!(whole.dropped_lines(), 3);

        let mut bytewise = SseParser::with_max_line(16);
        assert_eq!(feed_chunks(&mut bytewise, stream.as_bytes().chunks(1)), expected);
        assert_eq!(bytewise.dropped_lines(), 3);

        // A line of exactly the limit is kept.
        let mut exact = SseParser::with_max_line(16);
        assert_eq!(exact.feed(b"data: 0123456789\n\n"), [event("0123456789")]);
        assert_eq!(exact.dropped_lines(), 0);
    }

    #[test]
    fn utf8_split_across_chunks() {
        let stream = "data: héllo ✓ 🦀\n\n".as_bytes();
        let mut parser = SseParser::new();
        assert_eq!(feed_chunks(&mut parser, stream.chunks(1)), [event("héllo ✓ 🦀")]);
        // Invalid UTF-8 is replaced, not fatal.
        assert_eq!(parse(b"data: \xFF\n\n"), [event("\u{FFFD}")]);
    }

    // --- properties ---

    /// Field text that can be spelled on one line.
    fn field() -> impl Strategy<Value = String> {
        "[^\r\n\0]{0,12}"
    }

    fn any_event() -> impl Strategy<Value = SseEvent> {
        let data = prop_oneof![any::<String>(), "[a-z\r\n:]{0,20}", "(\r\n|\r|\n|x| ){0,8}"];
        (
            proptest::option::of(field()),
            proptest::option::of(field()),
            data,
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(event, id, data, retry)| SseEvent { event, id, data, retry })
    }

    /// Bytes that are mostly SSE syntax, with some noise.
    fn sse_ish_bytes() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => proptest::sample::select(b"\r\n: dataeventidretry0123\xEF\xBB\xBF\0".to_vec()),
            1 => any::<u8>(),
        ];
        proptest::collection::vec(byte, 0..400)
    }

    #[derive(Debug, Clone)]
    enum Frame {
        Event(SseEvent),
        Comment(String),
    }

    fn frames() -> impl Strategy<Value = Vec<Frame>> {
        let frame = prop_oneof![
            3 => any_event().prop_map(Frame::Event),
            1 => field().prop_map(Frame::Comment),
        ];
        proptest::collection::vec(frame, 1..8)
    }

    /// The encoded stream of `frames` and the items it must read back as.
    fn encode_frames(frames: &[Frame]) -> (String, Vec<SseItem>) {
        let mut stream = String::new();
        let mut expected = Vec::new();
        for frame in frames {
            match frame {
                Frame::Event(e) => {
                    stream.push_str(&encode(e));
                    expected
                        .push(SseItem::Event(SseEvent { data: normalise(&e.data), ..e.clone() }));
                }
                Frame::Comment(text) => {
                    stream.push_str(&comment(text));
                    // `comment` writes ": text"; the parser drops that one space.
                    expected.push(SseItem::Comment(text.clone()));
                }
            }
        }
        (stream, expected)
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(e in any_event()) {
            let mut parser = SseParser::new();
            let items = parser.feed(encode(&e).as_bytes());
            let expected = SseEvent { data: normalise(&e.data), ..e.clone() };
            prop_assert_eq!(items, vec![SseItem::Event(expected)]);
            prop_assert_eq!(parser.last_event_id(), e.id.as_deref().unwrap_or(""));
            prop_assert_eq!(parser.retry(), e.retry);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in sse_ish_bytes(),
            cuts in proptest::collection::vec(any::<Index>(), 0..12),
            max_line in prop_oneof![Just(8usize), Just(64), Just(protocol::sse::DEFAULT_MAX_LINE)],
        ) {
            let mut whole = SseParser::with_max_line(max_line);
            let expected = whole.feed(&bytes);
            let mut chunked = SseParser::with_max_line(max_line);
            let items = feed_chunks(&mut chunked, split_at_cuts(&bytes, &cuts));
            prop_assert_eq!(items, expected);
            prop_assert_eq!(chunked.last_event_id(), whole.last_event_id());
            prop_assert_eq!(chunked.dropped_lines(), whole.dropped_lines());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), chunk in 1usize..40) {
            let mut parser = SseParser::with_max_line(32);
            for piece in bytes.chunks(chunk) {
                parser.feed(piece);
            }
        }

        #[test]
        fn chunking_does_not_change_the_items(
            frames in frames(),
            cuts in proptest::collection::vec(any::<Index>(), 0..16),
            line_end in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
            bom in any::<bool>(),
        ) {
            let (lf_stream, expected) = encode_frames(&frames);
            let mut stream = if bom { "\u{FEFF}".to_owned() } else { String::new() };
            stream.push_str(&lf_stream.replace('\n', line_end));
            let bytes = stream.as_bytes();

            let mut whole = SseParser::new();
            prop_assert_eq!(&whole.feed(bytes), &expected);

            let mut chunked = SseParser::new();
            prop_assert_eq!(&feed_chunks(&mut chunked, split_at_cuts(bytes, &cuts)), &expected);
            prop_assert_eq!(chunked.last_event_id(), whole.last_event_id());

            let mut bytewise = SseParser::new();
            prop_assert_eq!(&feed_chunks(&mut bytewise, bytes.chunks(1)), &expected);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON bodies
// ---------------------------------------------------------------------------------------------

mod wire {
    use super::*;
    use protocol::event::{DirectMeta, Envelope, EventMeta};
    use protocol::messages::{
        ActivateRequest, AuthenticateChallenge, FrontBid, Identity, RegisterRequest,
    };
    use protocol::{DirectEvent, FrontUuid, KeyPair, ReverseEvent};

    const KEY: &str = "FbYJk4ZN6W6KASsA1K5bKB+Rfl0Odvak2KuO0/gxqBo=";
    const SECRET: &str = "ZWxzeoGIj5adpKuyucDHztXc4+rx+P8GDRQbIikwNz4=";
    const SHORT_KEY: &str = "FbYJk4ZN6W6KASsA1K5bKB+Rfl0Odvak2KuO0/gxqA==";
    const SEALED: &str = "CxIZICcuNTxDSlFYX2ZtdHuCiZCXnqWs8KMTHQNFxbQzhVdaj6+IHkzUEJ7mYtjdORMMXuPJhTFOzpwmd/TO8zWvZCsXTwBbQPBj4lpC";

    fn p<T: std::str::FromStr>(s: &str) -> T
    where
        T::Err: Debug,
    {
        s.parse().expect("test constant parses")
    }

    // --- messages ---

    #[test]
    fn register_request() {
        let body = RegisterRequest { public_key: p(KEY), front_uuid: p(FRONT_UUID) };
        assert_json(&body, json!({"publicKey": KEY, "frontUuid": FRONT_UUID}));
        assert_rejects::<RegisterRequest>(
            json!({"publicKey": SHORT_KEY, "frontUuid": FRONT_UUID}),
            "invalid key",
        );
        assert_rejects::<RegisterRequest>(
            json!({"publicKey": "%%", "frontUuid": FRONT_UUID}),
            "invalid base64",
        );
        assert_rejects::<RegisterRequest>(
            json!({"publicKey": KEY, "frontUuid": "f00"}),
            "invalid UUID",
        );
        assert_rejects::<RegisterRequest>(json!({"publicKey": KEY}), "missing field `frontUuid`");
        assert_rejects::<RegisterRequest>(
            json!({"public_key": KEY, "frontUuid": FRONT_UUID}),
            "missing field `publicKey`",
        );
    }

    #[test]
    fn front_bid_is_a_bare_integer() {
        assert_json(&FrontBid(42), json!(42));
        assert_rejects::<FrontBid>(json!("42"), "invalid type");
    }

    #[test]
    fn authenticate_challenge() {
        let body = AuthenticateChallenge {
            back_uuid: p(BACK_UUID),
            back_key: p(KEY),
            stream_uuid_enc: p(SEALED),
        };
        assert_json(&body, json!({"backUuid": BACK_UUID, "backKey": KEY, "streamUuidEnc": SEALED}));
        assert_eq!(protocol::messages::AUTHENTICATE_EVENT, "authenticate");
        assert_rejects::<AuthenticateChallenge>(
            json!({"backUuid": BACK_UUID, "backKey": KEY, "streamUuidEnc": "AAAA"}),
            "sealed value too short",
        );
        assert_rejects::<AuthenticateChallenge>(
            json!({"backUuid": BACK_UUID, "backKey": KEY, "streamUuidEnc": "not base64"}),
            "invalid base64",
        );
        assert_rejects::<AuthenticateChallenge>(
            json!({"backUuid": BACK_UUID, "backKey": KEY}),
            "missing field `streamUuidEnc`",
        );
    }

    #[test]
    fn activate_request() {
        let body = ActivateRequest { front_uuid: p(FRONT_UUID), stream_uuid: p(REQUEST_UUID) };
        assert_json(&body, json!({"frontUuid": FRONT_UUID, "streamUuid": REQUEST_UUID}));
        assert_rejects::<ActivateRequest>(
            json!({"frontUuid": FRONT_UUID, "streamUuid": 7}),
            "invalid type",
        );
        assert_rejects::<ActivateRequest>(
            json!({"frontUuid": FRONT_UUID, "streamUuid": format!("{{{REQUEST_UUID}}}")}),
            "invalid UUID",
        );
        assert_rejects::<ActivateRequest>(
            json!({"streamUuid": REQUEST_UUID}),
            "missing field `frontUuid`",
        );
    }

    #[test]
    fn identity_record() {
        // Identity holds a secret key, so it has no PartialEq: compare its JSON.
        let stored = json!({
            "frontBid": 7,
            "frontKeys": {"public": KEY, "secret": SECRET},
            "frontUuid": FRONT_UUID,
        });
        let identity: Identity = serde_json::from_value(stored.clone()).expect("reads");
        assert_eq!(identity.front_bid, Some(FrontBid(7)));
        assert!(identity.front_keys.is_consistent());
        assert_eq!(identity.front_uuid, p::<FrontUuid>(FRONT_UUID));
        assert_eq!(serde_json::to_value(&identity).expect("writes"), stored);

        let fresh = Identity {
            front_bid: None,
            front_keys: KeyPair::from_secret(p(SECRET)),
            front_uuid: p(FRONT_UUID),
        };
        let written = serde_json::to_value(&fresh).expect("writes");
        assert_eq!(
            written,
            json!({"frontKeys": {"public": KEY, "secret": SECRET}, "frontUuid": FRONT_UUID})
        );
        let back: Identity = serde_json::from_value(written).expect("reads");
        assert_eq!(back.front_bid, None);
        assert_eq!(back.front_keys.secret.to_bytes(), fresh.front_keys.secret.to_bytes());

        assert_rejects::<Identity>(
            json!({"frontKeys": {"public": KEY, "secret": SHORT_KEY}, "frontUuid": FRONT_UUID}),
            "invalid key",
        );
        assert_rejects::<Identity>(
            json!({"frontKeys": {"public": KEY}, "frontUuid": FRONT_UUID}),
            "missing field `secret`",
        );
        assert_rejects::<Identity>(
            json!({"frontBid": 7, "frontUuid": FRONT_UUID}),
            "missing field `frontKeys`",
        );
    }

    // --- events ---

    fn full_meta() -> EventMeta {
        EventMeta {
            name: "chat-message".to_owned(),
            uuid: p(EVENT_UUID),
            published: p(PUBLISHED),
            expired: Some(p("2022-12-23T05:14:47.927Z")),
            back_uuid: Some(p(BACK_UUID)),
            front_uuid: Some(p(FRONT_UUID)),
            session_uuid: Some(p(SESSION_UUID)),
            stamp: Some(p(SEALED)),
            encrypted: Some(true),
            request_uuid: Some(p(REQUEST_UUID)),
        }
    }

    #[test]
    fn event_meta_fields_are_camel_case() {
        assert_json(
            &full_meta(),
            json!({
                "name": "chat-message",
                "uuid": EVENT_UUID,
                "published": PUBLISHED,
                "expired": "2022-12-23T05:14:47.927Z",
                "backUuid": BACK_UUID,
                "frontUuid": FRONT_UUID,
                "sessionUuid": SESSION_UUID,
                "stamp": SEALED,
                "encrypted": true,
                "requestUuid": REQUEST_UUID,
            }),
        );
    }

    #[test]
    fn event_meta_leaves_out_what_is_unset() {
        let meta = EventMeta::new("ping", p(PUBLISHED));
        assert_eq!(meta.uuid.as_uuid().get_version_num(), 4);
        let uuid = meta.uuid.to_string();
        assert_json(&meta, json!({"name": "ping", "uuid": uuid, "published": PUBLISHED}));
    }

    #[test]
    fn event_meta_rejects_malformed_values() {
        let mut bad = serde_json::to_value(full_meta()).expect("writes");
        bad["uuid"] = json!("not-a-uuid");
        assert_rejects::<EventMeta>(bad, "invalid UUID");
        let mut bad = serde_json::to_value(full_meta()).expect("writes");
        bad["published"] = json!("last tuesday");
        assert_rejects::<EventMeta>(bad, "invalid timestamp");
        let mut bad = serde_json::to_value(full_meta()).expect("writes");
        bad["sessionUuid"] = json!(SESSION_UUID.replace('-', ""));
        assert_rejects::<EventMeta>(bad, "invalid UUID");
        let mut bad = serde_json::to_value(full_meta()).expect("writes");
        bad["encrypted"] = json!("yes");
        assert_rejects::<EventMeta>(bad, "invalid type");
        assert_rejects::<EventMeta>(
            json!({"name": "x", "uuid": EVENT_UUID}),
            "missing field `published`",
        );
    }

    #[test]
    fn unknown_meta_fields_are_ignored() {
        let meta: EventMeta = serde_json::from_value(json!({
            "name": "ping", "uuid": EVENT_UUID, "published": PUBLISHED, "addedLater": 1,
        }))
        .expect("forward compatible");
        assert_eq!(meta.name, "ping");
    }

    #[test]
    fn expiry_defaults_to_sixty_seconds() {
        let mut meta = EventMeta::new("ping", p(PUBLISHED));
        assert_eq!(meta.expires_at().millis(), PUBLISHED_MILLIS + 60_000);
        meta.expired = Some(Timestamp::from_millis(PUBLISHED_MILLIS + 5));
        assert_eq!(meta.expires_at().millis(), PUBLISHED_MILLIS + 5);
    }

    fn direct_meta() -> DirectMeta {
        DirectMeta {
            name: "chat-send".to_owned(),
            uuid: p(EVENT_UUID),
            published: p(PUBLISHED),
            expired: None,
            front_uuid: p(FRONT_UUID),
            session_uuid: p(SESSION_UUID),
            stamp: p(SEALED),
            encrypted: None,
            request_uuid: None,
        }
    }

    #[test]
    fn direct_meta_requires_sender_and_stamp() {
        let expected = json!({
            "name": "chat-send",
            "uuid": EVENT_UUID,
            "published": PUBLISHED,
            "frontUuid": FRONT_UUID,
            "sessionUuid": SESSION_UUID,
            "stamp": SEALED,
        });
        assert_json(&direct_meta(), expected.clone());
        assert_eq!(direct_meta().expires_at().millis(), PUBLISHED_MILLIS + 60_000);

        let full = DirectMeta {
            expired: Some(p(PUBLISHED)),
            encrypted: Some(false),
            request_uuid: Some(p(REQUEST_UUID)),
            ..direct_meta()
        };
        let mut full_json = expected.clone();
        full_json["expired"] = json!(PUBLISHED);
        full_json["encrypted"] = json!(false);
        full_json["requestUuid"] = json!(REQUEST_UUID);
        assert_json(&full, full_json);

        for field in ["stamp", "frontUuid", "sessionUuid"] {
            let mut bad = expected.clone();
            bad.as_object_mut().expect("an object").remove(field);
            assert_rejects::<DirectMeta>(bad, &format!("missing field `{field}`"));
        }
        let mut bad = expected;
        bad["stamp"] = json!("c2hvcnQ=");
        assert_rejects::<DirectMeta>(bad, "sealed value too short");
    }

    #[test]
    fn envelopes() {
        let reverse = ReverseEvent { data: json!({"text": "hi"}), meta: full_meta() };
        let reverse_json = json!({"data": {"text": "hi"}, "meta": serde_json::to_value(full_meta()).expect("writes")});
        assert_json(&reverse, reverse_json);

        let direct = DirectEvent { data: json!(SEALED), meta: direct_meta() };
        let direct_json =
            json!({"data": SEALED, "meta": serde_json::to_value(direct_meta()).expect("writes")});
        assert_json(&direct, direct_json);

        // data may be left out: it reads as null.
        let no_data: Envelope<DirectMeta> = serde_json::from_value(
            json!({"meta": serde_json::to_value(direct_meta()).expect("writes")}),
        )
        .expect("data is optional");
        assert_eq!(no_data.data, Value::Null);

        assert_rejects::<ReverseEvent>(json!({"data": 1}), "missing field `meta`");
        assert_rejects::<DirectEvent>(
            json!({"data": 1, "meta": {"name": "x", "uuid": EVENT_UUID, "published": PUBLISHED}}),
            "missing field `frontUuid`",
        );
    }

    #[test]
    fn paths_and_storage_keys_are_the_teqfw_ones() {
        use protocol::{paths, storage};
        assert_eq!(paths::REGISTER, "/web-event-front-reg");
        assert_eq!(paths::STREAM_OPEN, "/web-event-stream-open");
        assert_eq!(paths::STREAM_ACTIVATE, "/web-event-stream-act");
        assert_eq!(paths::DIRECT, "/web-event-direct");
        assert_eq!(paths::SESSION_VTX, "/uc/session/vtx");
        assert_eq!(storage::IDENTITY_KEY, "@teqfw/web-event/identity");
        assert_eq!(storage::SESSION_UUID_KEY, "@teqfw/web-event/sessionUuid");
    }
}

// ---------------------------------------------------------------------------------------------
// Token bodies
// ---------------------------------------------------------------------------------------------

mod tokens {
    use super::*;
    use protocol::tokens::*;

    fn perms() -> Vec<String> {
        vec!["read".to_owned(), "write".to_owned()]
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("test constant parses")
    }

    /// The page and the worker read JWT claims through this one function.
    #[test]
    fn jwt_payload_is_the_middle_part_decoded_padded_or_not() {
        // {"sub":"u"} is eyJzdWIiOiJ1In0 in base64url; padded, eyJzdWIiOiJ1In0=.
        assert_eq!(jwt_payload("h.eyJzdWIiOiJ1In0.s").expect("a JWT"), r#"{"sub":"u"}"#);
        assert_eq!(jwt_payload(" h.eyJzdWIiOiJ1In0=.s\n").expect("padded"), r#"{"sub":"u"}"#);
        for (token, why) in [
            ("h.eyJzdWIiOiJ1In0", "three dot-separated parts"),
            ("h.eyJzdWIiOiJ1In0.s.x", "three dot-separated parts"),
            ("h.not base64!.s", "not base64url"),
            // 0xFF alone: not UTF-8.
            ("h._w.s", "not JSON claims"),
        ] {
            let err = jwt_payload(token).expect_err(token);
            assert!(err.contains(why), "{token}: {err}");
        }
    }

    #[test]
    fn session_tokens() {
        let body = SessionTokens {
            eid_jwt: "e.j.w".to_owned(),
            venue_jwt: "v.j.w".to_owned(),
            eid_expires_at: ts(PUBLISHED),
            venue_expires_at: ts("2022-12-23T06:00:00.000Z"),
        };
        assert_json(
            &body,
            json!({
                "eidJwt": "e.j.w",
                "venueJwt": "v.j.w",
                "eidExpiresAt": PUBLISHED,
                "venueExpiresAt": "2022-12-23T06:00:00.000Z",
            }),
        );
        assert_rejects::<SessionTokens>(
            json!({"eidJwt": "a", "venueJwt": "b", "eidExpiresAt": 5, "venueExpiresAt": PUBLISHED}),
            "invalid type",
        );
        assert_rejects::<SessionTokens>(
            json!({"eidJwt": "a", "venueJwt": "b", "eidExpiresAt": "never", "venueExpiresAt": PUBLISHED}),
            "invalid timestamp",
        );
        assert_rejects::<SessionTokens>(json!({"eidJwt": "a"}), "missing field `venueJwt`");
    }

    #[test]
    fn chain_stage_is_snake_case() {
        assert_json(&ChainStage::Xsrf, json!("xsrf"));
        assert_json(&ChainStage::Authorize, json!("authorize"));
        assert_json(&ChainStage::Vtx, json!("vtx"));
        assert_rejects::<ChainStage>(json!("Vtx"), "unknown variant");
    }

    #[test]
    fn session_error() {
        let body = SessionError {
            error: "not_provisioned".to_owned(),
            message: "no ecoid".to_owned(),
            stage: ChainStage::Authorize,
        };
        assert_json(
            &body,
            json!({"error": "not_provisioned", "message": "no ecoid", "stage": "authorize"}),
        );
        assert_rejects::<SessionError>(
            json!({"error": "x", "message": "y"}),
            "missing field `stage`",
        );
    }

    #[test]
    fn sw_messages_are_tagged_by_type() {
        assert_json(
            &SwMessage::SwActivated { version: "1.2.3".to_owned() },
            json!({"type": "sw-activated", "version": "1.2.3"}),
        );
        assert_json(
            &SwMessage::SessionError(SessionError {
                error: "venue_session_expired".to_owned(),
                message: "log in again".to_owned(),
                stage: ChainStage::Xsrf,
            }),
            json!({"type": "session-error", "error": "venue_session_expired", "message": "log in again", "stage": "xsrf"}),
        );
        assert_json(&SwMessage::SessionClear, json!({"type": "session-clear"}));
        assert_json(&SwMessage::SessionChanged, json!({"type": "session-changed"}));
        assert_json(&SwMessage::SkipWaiting, json!({"type": "skip-waiting"}));

        assert_rejects::<SwMessage>(json!({"type": "reload"}), "unknown variant `reload`");
        assert_rejects::<SwMessage>(json!({"version": "1"}), "missing field `type`");
        assert_rejects::<SwMessage>(json!({"type": "sw-activated"}), "missing field `version`");
        assert_rejects::<SwMessage>(
            json!({"type": "session-error", "error": "x", "message": "y"}),
            "missing field `stage`",
        );
    }

    #[test]
    fn authorize_response() {
        assert_json(&AuthorizeResponse { token: "a.b.c".to_owned() }, json!({"token": "a.b.c"}));
        assert_rejects::<AuthorizeResponse>(json!({"jwt": "a.b.c"}), "missing field `token`");
    }

    #[test]
    fn venue_claims() {
        let claims = VenueClaims {
            sub: "user-1".to_owned(),
            iss: "venue".to_owned(),
            aud: "vtx".to_owned(),
            exp: 1_700_000_600,
            iat: 1_700_000_000,
            nbf: Some(1_700_000_000),
            ecoid: Some("eco-1".to_owned()),
        };
        assert_json(
            &claims,
            json!({"sub": "user-1", "iss": "venue", "aud": "vtx", "exp": 1_700_000_600, "iat": 1_700_000_000,
                   "nbf": 1_700_000_000, "ecoid": "eco-1"}),
        );
        let unprovisioned = VenueClaims { nbf: None, ecoid: None, ..claims };
        assert_json(
            &unprovisioned,
            json!({"sub": "user-1", "iss": "venue", "aud": "vtx", "exp": 1_700_000_600, "iat": 1_700_000_000}),
        );
        assert_rejects::<VenueClaims>(
            json!({"sub": "u", "iss": "v", "aud": "a", "exp": "soon", "iat": 1}),
            "invalid type",
        );
    }

    #[test]
    fn eid_claims() {
        let claims = EidClaims {
            sub: "user-1".to_owned(),
            ecoid: "eco-1".to_owned(),
            iss: "server".to_owned(),
            aud: "app".to_owned(),
            iat: 1,
            exp: 2,
            jti: "j-1".to_owned(),
        };
        assert_json(
            &claims,
            json!({"sub": "user-1", "ecoid": "eco-1", "iss": "server", "aud": "app", "iat": 1, "exp": 2, "jti": "j-1"}),
        );
        assert_rejects::<EidClaims>(
            json!({"sub": "u", "iss": "s", "aud": "a", "iat": 1, "exp": 2, "jti": "j"}),
            "missing field `ecoid`",
        );
    }

    #[test]
    fn token_exchange_is_rfc_8693_snake_case() {
        let request = TokenExchangeRequest {
            grant_type: GRANT_TYPE_TOKEN_EXCHANGE.to_owned(),
            subject_token: "v.j.w".to_owned(),
            subject_token_type: TOKEN_TYPE_JWT.to_owned(),
        };
        assert_json(
            &request,
            json!({
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": "v.j.w",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            }),
        );
        assert_rejects::<TokenExchangeRequest>(
            json!({"grantType": GRANT_TYPE_TOKEN_EXCHANGE, "subject_token": "t", "subject_token_type": TOKEN_TYPE_JWT}),
            "missing field `grant_type`",
        );

        let response = TokenExchangeResponse {
            access_token: "e.j.w".to_owned(),
            issued_token_type: TOKEN_TYPE_JWT.to_owned(),
            token_type: "Bearer".to_owned(),
            expires_in: 300,
        };
        assert_json(
            &response,
            json!({"access_token": "e.j.w", "issued_token_type": TOKEN_TYPE_JWT, "token_type": "Bearer", "expires_in": 300}),
        );
        assert_rejects::<TokenExchangeResponse>(
            json!({"access_token": "e", "issued_token_type": "t", "token_type": "Bearer", "expires_in": "300"}),
            "invalid type",
        );
    }

    #[test]
    fn oauth_error_body() {
        let body = OAuthErrorBody {
            error: "invalid_grant".to_owned(),
            error_description: Some("expired".to_owned()),
        };
        assert_json(&body, json!({"error": "invalid_grant", "error_description": "expired"}));
        let bare = OAuthErrorBody { error: "invalid_request".to_owned(), error_description: None };
        assert_json(&bare, json!({"error": "invalid_request"}));
        assert_rejects::<OAuthErrorBody>(
            json!({"error_description": "x"}),
            "missing field `error`",
        );
    }

    #[test]
    fn one_time_token_claims() {
        let claims = OneTimeTokenClaims {
            user_id: "u1".to_owned(),
            sponsor_id: "s1".to_owned(),
            subscriber_id: "sub1".to_owned(),
            permissions: perms(),
            valid_until: ts(PUBLISHED),
        };
        assert_json(
            &claims,
            json!({"userId": "u1", "sponsorId": "s1", "subscriberId": "sub1", "permissions": ["read", "write"],
                   "validUntil": PUBLISHED}),
        );
        assert_rejects::<OneTimeTokenClaims>(
            json!({"userId": "u1", "sponsorId": "s1", "subscriberId": "sub1", "permissions": "read", "validUntil": PUBLISHED}),
            "invalid type",
        );
    }

    #[test]
    fn login_bodies() {
        assert_json(&AuthenticateRequest { token: "ott".to_owned() }, json!({"token": "ott"}));
        assert_rejects::<AuthenticateRequest>(json!({}), "missing field `token`");

        let login = LoginResponse {
            access_token: "a.j.w".to_owned(),
            refresh_token: None,
            expires_in: 900,
            session_expires_at: ts(PUBLISHED),
            permissions: perms(),
            sponsor_id: "s1".to_owned(),
            subscriber_id: "sub1".to_owned(),
        };
        let login_json = json!({"accessToken": "a.j.w", "expiresIn": 900, "sessionExpiresAt": PUBLISHED,
                                "permissions": ["read", "write"], "sponsorId": "s1", "subscriberId": "sub1"});
        assert_json(&login, login_json.clone());
        let mut compat_json = login_json;
        compat_json["refreshToken"] = json!("r-1");
        assert_json(&LoginResponse { refresh_token: Some("r-1".to_owned()), ..login }, compat_json);
        assert_rejects::<LoginResponse>(
            json!({"accessToken": "a", "expiresIn": 1}),
            "missing field `sessionExpiresAt`",
        );

        let refresh = RefreshResponse {
            access_token: "a2".to_owned(),
            refresh_token: Some("r-2".to_owned()),
            expires_in: 900,
            session_expires_at: ts(PUBLISHED),
            permissions: vec![],
        };
        assert_json(
            &refresh,
            json!({"accessToken": "a2", "refreshToken": "r-2", "expiresIn": 900, "sessionExpiresAt": PUBLISHED,
                   "permissions": []}),
        );
        assert_rejects::<RefreshResponse>(
            json!({"accessToken": "a2", "expiresIn": 900, "sessionExpiresAt": "tomorrow", "permissions": []}),
            "invalid timestamp",
        );

        assert_json(
            &MessageBody { message: "logged out".to_owned() },
            json!({"message": "logged out"}),
        );
        assert_rejects::<MessageBody>(json!({"msg": "x"}), "missing field `message`");
    }

    #[test]
    fn access_claims() {
        let claims = AccessClaims {
            user_id: "u1".to_owned(),
            sponsor_id: "s1".to_owned(),
            subscriber_id: "sub1".to_owned(),
            permissions: perms(),
            iss: "server".to_owned(),
            iat: 10,
            exp: 20,
            jti: "j".to_owned(),
        };
        assert_json(
            &claims,
            json!({"userId": "u1", "sponsorId": "s1", "subscriberId": "sub1", "permissions": ["read", "write"],
                   "iss": "server", "iat": 10, "exp": 20, "jti": "j"}),
        );
        assert_rejects::<AccessClaims>(
            json!({"user_id": "u1", "sponsorId": "s1", "subscriberId": "sub1", "permissions": [], "iss": "s",
                   "iat": 1, "exp": 2, "jti": "j"}),
            "missing field `userId`",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Error bodies
// ---------------------------------------------------------------------------------------------

mod errors {
    use super::*;
    use protocol::{ErrorBody, ErrorCode};
    use std::collections::HashSet;

    #[test]
    fn every_code_round_trips_through_an_error_body() {
        for code in ErrorCode::ALL {
            let body = ErrorBody::new(code, "a sentence");
            assert_eq!(body.code(), Some(code));
            assert_json(&body, json!({"error": code.as_str(), "message": "a sentence"}));
        }
    }

    #[test]
    fn as_str_is_the_serde_spelling() {
        for code in ErrorCode::ALL {
            assert_json(&code, json!(code.as_str()));
            assert_eq!(code.to_string(), code.as_str());
            let s = code.as_str();
            assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{s} is snake_case");
        }
        let distinct: HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(distinct.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn known_spellings() {
        // A few codes that clients branch on, spelled out.
        assert_eq!(ErrorCode::FrontNotRegistered.as_str(), "front_not_registered");
        assert_eq!(ErrorCode::FrontKeyConflict.as_str(), "front_key_conflict");
        assert_eq!(ErrorCode::BadStamp.as_str(), "bad_stamp");
        assert_eq!(ErrorCode::RefreshReused.as_str(), "refresh_reused");
        assert_eq!(ErrorCode::UnsupportedMediaType.as_str(), "unsupported_media_type");
    }

    #[test]
    fn unknown_codes_still_read() {
        let body: ErrorBody =
            serde_json::from_value(json!({"error": "added_later", "message": "m"}))
                .expect("forward compatible");
        assert_eq!(body.code(), None);
        assert_eq!(body.error, "added_later");
        assert_rejects::<ErrorCode>(json!("added_later"), "unknown variant");
        assert_rejects::<ErrorBody>(json!({"error": 5, "message": "m"}), "invalid type");
        assert_rejects::<ErrorBody>(json!({"error": "internal"}), "missing field `message`");
    }
}

// ---------------------------------------------------------------------------------------------
// Protocol steps (`protocol::steps`): what the page client, loadgen and the server share
// ---------------------------------------------------------------------------------------------

mod steps {
    use protocol::messages::{AUTHENTICATE_EVENT, AuthenticateChallenge};
    use protocol::sse::SseEvent;
    use protocol::{ChallengeError, DirectDraft, FrontUuid, SessionUuid, StreamUuid};

    use super::*;

    fn challenge(v: &Vectors) -> AuthenticateChallenge {
        AuthenticateChallenge {
            back_uuid: BACK_UUID.parse().expect("back uuid"),
            back_key: v.back_public,
            stream_uuid_enc: v.case("stream uuid").sealed(),
        }
    }

    fn frame(event: Option<&str>, data: String) -> SseEvent {
        SseEvent { event: event.map(str::to_owned), ..SseEvent::data(data) }
    }

    #[test]
    fn the_front_answers_the_tweetnacl_challenge_with_the_stream_uuid() {
        let v = Vectors::load();
        let sent = challenge(&v);
        let text = serde_json::to_string(&sent).expect("a challenge serialises");
        let read = AuthenticateChallenge::from_frame(&frame(Some(AUTHENTICATE_EVENT), text))
            .expect("the authenticate frame reads");
        assert_eq!(read, sent);
        let front: FrontUuid = FRONT_UUID.parse().expect("front uuid");
        let answer = read.answer(front, &read.peer(&v.front_secret)).expect("the front opens it");
        let stream: StreamUuid = REQUEST_UUID.parse().expect("stream uuid");
        assert_eq!(answer.front_uuid, front);
        assert_eq!(answer.stream_uuid, stream);
        assert_json(&answer, json!({"frontUuid": FRONT_UUID, "streamUuid": REQUEST_UUID}));
    }

    #[test]
    fn a_challenge_for_another_front_key_is_refused() {
        let v = Vectors::load();
        let read = challenge(&v);
        // The back's own secret is not the front's: the box does not open.
        let wrong = read.peer(&v.back_secret);
        let front: FrontUuid = FRONT_UUID.parse().expect("front uuid");
        assert_eq!(read.answer(front, &wrong), Err(ChallengeError::Open(OpenError::Decrypt)));
    }

    #[test]
    fn a_first_frame_that_is_not_a_challenge_is_refused() {
        let other = frame(Some("message"), "{}".to_owned());
        assert_eq!(
            AuthenticateChallenge::from_frame(&other),
            Err(ChallengeError::NotAuthenticate(Some("message".to_owned())))
        );
        let unnamed = frame(None, "{}".to_owned());
        assert_eq!(
            AuthenticateChallenge::from_frame(&unnamed),
            Err(ChallengeError::NotAuthenticate(None))
        );
        let garbled = frame(Some(AUTHENTICATE_EVENT), "{\"backUuid\": 1}".to_owned());
        assert!(matches!(
            AuthenticateChallenge::from_frame(&garbled),
            Err(ChallengeError::Malformed(_))
        ));
    }

    #[test]
    fn the_front_opens_tweetnacl_event_data() {
        let v = Vectors::load();
        let case = v.case("encrypted event data");
        let data = Value::String(case.cipher_text.clone());
        let opened = v.front().open_event_data(&data).expect("the front opens the back's data");
        assert_eq!(opened, json!({"text": "héllo ✓", "n": 42}));
    }

    #[test]
    fn event_data_that_is_not_a_sealed_string_does_not_open() {
        let v = Vectors::load();
        let front = v.front();
        assert_eq!(front.open_event_data(&json!({"n": 1})), Err(OpenError::NotSealed));
        assert!(matches!(
            front.open_event_data(&json!("not base64!")),
            Err(OpenError::Malformed(ParseError::InvalidBase64(_)))
        ));
        let stamp = Value::String(v.case("stamp").cipher_text.clone());
        // A sealed string whose text is not JSON text (a stamp) is a plaintext error.
        assert!(matches!(front.open_event_data(&stamp), Err(OpenError::Plaintext(_))));
    }

    fn draft(encrypted: bool) -> DirectDraft {
        let session: SessionUuid = SESSION_UUID.parse().expect("session uuid");
        let mut draft = DirectDraft::new(
            "chat",
            Timestamp::from_millis(PUBLISHED_MILLIS),
            FRONT_UUID.parse().expect("front uuid"),
            session,
            json!({"text": "héllo ✓", "n": 42}),
        );
        draft.uuid = EVENT_UUID.parse().expect("event uuid");
        draft.encrypted = encrypted;
        draft
    }

    #[test]
    fn a_built_direct_event_carries_a_stamp_the_back_verifies() {
        let v = Vectors::load();
        let event = draft(false).build(&v.front());
        let meta = &event.meta;
        assert_eq!(v.back().verify_stamp(&meta.stamp, &meta.uuid, meta.published), Ok(()));
        // The stamp opens to the fixture's stamp text: uuid then published millis.
        let text: String = v.back().open(&meta.stamp).expect("the back opens the stamp");
        assert_eq!(text, v.case("stamp").plain);
        let mut wire = serde_json::to_value(&event).expect("serialises");
        wire["meta"]["stamp"] = json!("…");
        assert_eq!(
            wire,
            json!({
                "data": {"text": "héllo ✓", "n": 42},
                "meta": {
                    "name": "chat",
                    "uuid": EVENT_UUID,
                    "published": PUBLISHED,
                    "frontUuid": FRONT_UUID,
                    "sessionUuid": SESSION_UUID,
                    "stamp": "…",
                }
            })
        );
    }

    #[test]
    fn a_sealed_direct_event_opens_for_the_back_only() {
        let v = Vectors::load();
        let mut sealed = draft(true);
        sealed.expired = Some(Timestamp::from_millis(PUBLISHED_MILLIS + 5_000));
        sealed.request_uuid = Some(REQUEST_UUID.parse().expect("request uuid"));
        let event = sealed.build(&v.front());
        assert_eq!(event.meta.encrypted, Some(true));
        assert_eq!(event.meta.request_uuid.map(|u| u.to_string()).as_deref(), Some(REQUEST_UUID));
        assert!(event.data.is_string(), "sealed data travels as a base64 string");
        assert_eq!(v.back().open_event_data(&event.data), Ok(json!({"text": "héllo ✓", "n": 42})));
        let stranger = Peer::new(&v.front_public, &v.front_secret);
        assert_eq!(stranger.open_event_data(&event.data), Err(OpenError::Decrypt));
    }
}

// ---------------------------------------------------------------------------------------------
// Fuzz corpus replay
// ---------------------------------------------------------------------------------------------

/// Every input of the checked-in fuzz corpora of this crate's targets (`fuzz/`), crashes found
/// once included, still holds every invariant; on stable, without libFuzzer.
#[test]
fn the_fuzz_corpora_of_the_wire_still_pass() {
    use protocol::fuzzing::{last_event_id, replay, sealed_open, sse_parser, wire_json};
    for (name, target) in [
        ("sse_parser", sse_parser as fn(&[u8])),
        ("sealed_open", sealed_open),
        ("wire_json", wire_json),
        ("last_event_id", last_event_id),
    ] {
        assert!(replay(name, target) > 0);
    }
}
