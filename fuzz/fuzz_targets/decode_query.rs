#![no_main]

// The invariants live with the regression test, which replays every saved
// input on stable: collector/tests/fuzz_regressions.rs.
#[allow(dead_code)]
#[path = "../../collector/tests/fuzz_invariants/mod.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::check_query(data));
