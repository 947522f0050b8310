#![no_main]
//! Fuzz target `venue_jwks`: the body is `server::tokens::fuzzing::venue_jwks`, which the corpus replay in the tests runs too.

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::tokens::fuzzing::venue_jwks(data));
