#![no_main]
//! Fuzz target `cookie`: the body is `server::tokens::fuzzing::cookie`, which the corpus replay in the tests runs too.

libfuzzer_sys::fuzz_target!(|data: &[u8]| server::tokens::fuzzing::cookie(data));
