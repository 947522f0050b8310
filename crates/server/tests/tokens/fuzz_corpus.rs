//! The checked-in fuzz corpora of the token parsers (`fuzz/corpus/{cookie,venue_jwks,venue_jwt}`),
//! replayed on stable without libFuzzer, so that an input that once broke an invariant keeps
//! being tried.

use protocol::fuzzing::replay;
use server::tokens::fuzzing::{cookie, venue_jwks, venue_jwt};

#[test]
fn the_fuzz_corpora_of_the_token_parsers_still_pass() {
    for (name, target) in
        [("cookie", cookie as fn(&[u8])), ("venue_jwks", venue_jwks), ("venue_jwt", venue_jwt)]
    {
        assert!(replay(name, target) > 0);
    }
}
