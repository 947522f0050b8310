#![no_main]
//! Fuzz target `sse_parser`: the body is `protocol::fuzzing::sse_parser`, which the corpus replay in the tests runs too.

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzzing::sse_parser(data));
