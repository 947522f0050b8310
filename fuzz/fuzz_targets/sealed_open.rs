#![no_main]
//! Fuzz target `sealed_open`: the body is `protocol::fuzzing::sealed_open`, which the corpus replay in the tests runs too.

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzzing::sealed_open(data));
