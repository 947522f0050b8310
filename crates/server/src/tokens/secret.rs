//! Random secrets (refresh tokens, one-time tokens) and the hash under which the stores keep
//! them: a store never holds a refresh token, only its SHA-256.
//!
//! A refresh token is `<session tag>.<random>`: the [`SessionTag`] (32 hex digits) names the
//! login session's Redis keys, so that a Redis Cluster routes a refresh to the node that holds
//! the session without any lookup elsewhere; the 64 random bytes (base64url) are the secret.
//! Clients treat the token as opaque.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use super::error::TokenError;

/// Random bytes in a refresh token (seed 002: "random 64-byte string").
pub(crate) const REFRESH_TOKEN_BYTES: usize = 64;
/// Random bytes in a one-time token made by `mint-token`.
pub(crate) const ONE_TIME_TOKEN_BYTES: usize = 32;
/// Longest token text accepted from a client; anything longer is refused before it is hashed
/// or sent to a store.
pub(crate) const MAX_TOKEN_CHARS: usize = 512;

/// Shortest one-time token accepted: 16 base64url characters are 96 bits, the least a token that
/// anyone may try to guess should carry (`mint-token` makes 43).
pub(crate) const MIN_ONE_TIME_TOKEN_CHARS: usize = 16;

/// Whether `token` has the shape of a one-time token: [`MIN_ONE_TIME_TOKEN_CHARS`] to
/// [`MAX_TOKEN_CHARS`] characters of the base64url alphabet (`A–Z a–z 0–9 - _`), as
/// [`random_token`] makes them and as a UUID is spelled.
///
/// The enterprise Redis keeps one-time tokens as keys of their own, next to whatever else lives
/// there: a token is checked before it becomes part of a key, so that a caller cannot name
/// keys of other shapes (`session:42`, `a b`, …) at all.
pub(crate) fn is_one_time_token_shaped(token: &str) -> bool {
    (MIN_ONE_TIME_TOKEN_CHARS..=MAX_TOKEN_CHARS).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `bytes` random bytes from the operating system, base64url without padding.
pub(crate) fn random_token(bytes: usize) -> Result<String, TokenError> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf)
        .map_err(|err| TokenError::Internal(format!("no random bytes: {err}")))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// SHA-256 of a token's text.
///
/// A fast hash is right here (not a password hash): refresh tokens carry 512 random bits, so
/// there is nothing to brute-force; the hash only keeps a leaked store from being a list of
/// live credentials.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// From the 32 bytes a store kept.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, as Redis keys spell it.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Names a login session's records without its identifiers: the first 16 bytes of the
/// SHA-256 of its key ([`super::store::session_key`]). It is part of every refresh token of
/// the session and of the session's Redis key, whose hash tag it is. 128 bits, so two
/// sessions never share one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionTag([u8; 16]);

impl SessionTag {
    /// The tag of the session under `RT:{sponsor_id}:{subscriber_id}`.
    pub fn of(sponsor_id: &str, subscriber_id: &str) -> Self {
        let digest = Sha256::digest(super::store::session_key(sponsor_id, subscriber_id));
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&digest[..16]);
        Self(tag)
    }

    /// 32 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Reads [`SessionTag::to_hex`]'s form (lower case only, so each tag has one spelling).
    pub fn from_hex(text: &str) -> Option<Self> {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let text = text.as_bytes();
        if text.len() != 32 {
            return None;
        }
        let mut tag = [0u8; 16];
        for (byte, pair) in tag.iter_mut().zip(text.chunks_exact(2)) {
            *byte = (digit(pair[0])? << 4) | digit(pair[1])?;
        }
        Some(Self(tag))
    }
}

impl fmt::Debug for SessionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionTag({})", self.to_hex())
    }
}

/// What the stores need of a presented refresh token: its hash, and the tag of the session it
/// names (`None` for a token without one, as versions before the tag made them: the embedded
/// store still finds those by their hash; Redis does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshKey {
    /// The hash of the whole token.
    pub hash: TokenHash,
    /// The session tag the token starts with.
    pub tag: Option<SessionTag>,
}

impl RefreshKey {
    /// The key of `token` (any text: one that is no token of ours finds no session).
    pub fn of(token: &str) -> Self {
        let tag = token.split_once('.').and_then(|(tag, _)| SessionTag::from_hex(tag));
        Self { hash: TokenHash::of(token), tag }
    }
}

/// A new refresh token of the session tagged `tag`: `<tag>.<random>` (without a tag, the
/// untagged form of older versions, so such a session keeps working on the embedded store).
pub(crate) fn new_refresh_token(tag: Option<SessionTag>) -> Result<String, TokenError> {
    let secret = random_token(REFRESH_TOKEN_BYTES)?;
    Ok(match tag {
        Some(tag) => format!("{}.{secret}", tag.to_hex()),
        None => secret,
    })
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_64_random_bytes_in_base64url() {
        let a = random_token(REFRESH_TOKEN_BYTES).ok();
        let b = random_token(REFRESH_TOKEN_BYTES).ok();
        assert_ne!(a, b);
        let a = a.unwrap_or_default();
        assert_eq!(a.len(), 86);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn one_time_tokens_are_base64url_of_a_bounded_length() {
        let minted = random_token(ONE_TIME_TOKEN_BYTES).unwrap_or_default();
        assert!(is_one_time_token_shaped(&minted), "{minted}");
        assert!(is_one_time_token_shaped("ott-6f1c2b1e-8a3d-4c5e-9f00-0123456789ab"));
        assert!(is_one_time_token_shaped(&"a".repeat(MAX_TOKEN_CHARS)));
        for bad in [
            "",
            "short",
            "session:42:abcdefghijkl",
            "with space abcdefghijkl",
            "dots.are.not.base64url",
            "plus+and/slash=padding==",
            "unicodé-abcdefghijklmnop",
        ] {
            assert!(!is_one_time_token_shaped(bad), "{bad}");
        }
        assert!(!is_one_time_token_shaped(&"a".repeat(MAX_TOKEN_CHARS + 1)));
    }

    #[test]
    fn refresh_tokens_carry_their_session_tag_and_read_back() {
        let tag = SessionTag::of("sponsor456", "sub789");
        assert_ne!(tag, SessionTag::of("sponsor456", "sub780"));
        assert_eq!(SessionTag::from_hex(&tag.to_hex()), Some(tag));
        let token = new_refresh_token(Some(tag)).unwrap_or_default();
        assert_eq!(token.len(), 32 + 1 + 86, "{token}");
        assert_eq!(
            RefreshKey::of(&token),
            RefreshKey { hash: TokenHash::of(&token), tag: Some(tag) }
        );
        let legacy = new_refresh_token(None).unwrap_or_default();
        assert_eq!(RefreshKey::of(&legacy).tag, None);
        let upper = format!("{}.x", tag.to_hex().to_uppercase());
        for untagged in ["", ".", "abc.def", &upper, &format!("{}0.x", tag.to_hex())] {
            assert_eq!(RefreshKey::of(untagged).tag, None, "{untagged}");
        }
    }

    #[test]
    fn the_hash_is_sha256_in_hex() {
        assert_eq!(
            TokenHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
