#![no_main]
//! Fuzz target `wire_json`: the body is `protocol::fuzzing::wire_json`, which the corpus replay in the tests runs too.

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzzing::wire_json(data));
