#![no_main]
//! Fuzz target `xsrf`: the body is `browser::sw::fuzzing::xsrf`, which the corpus replay in the tests runs too.

libfuzzer_sys::fuzz_target!(|data: &[u8]| browser::sw::fuzzing::xsrf(data));
