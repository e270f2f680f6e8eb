#![no_main]
//! The session engine driven by a script of client lines, server lines and
//! driver outcomes (prepared, failed, late, duplicate, stale) for the
//! `Prepare`/`Connect` actions it emits; the invariants are those of the
//! model shared with the property tests (`tests/session_model`).
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/session_model/mod.rs"]
mod session_model;

fuzz_target!(|data: &[u8]| {
    session_model::run(data);
});
