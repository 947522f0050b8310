#![no_main]
//! Fuzz target `last_event_id`: the body is `protocol::fuzzing::last_event_id`, which the corpus replay in the tests runs too.

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzzing::last_event_id(data));
