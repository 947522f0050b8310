//! Random secrets (refresh tokens, one-time tokens) and the hash under which the stores keep
//! them: a store never holds a refresh token, only its SHA-256.

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
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        out
    }
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
    fn the_hash_is_sha256_in_hex() {
        assert_eq!(
            TokenHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
