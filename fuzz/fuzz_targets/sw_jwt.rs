#![no_main]
//! Fuzz target `sw_jwt`: the body is `browser::sw::fuzzing::sw_jwt`, which the corpus replay in the tests runs too.

libfuzzer_sys::fuzz_target!(|data: &[u8]| browser::sw::fuzzing::sw_jwt(data));
