//! A short script of logins, frames, writes and logouts against the hub in-process: no panic,
//! one reply per client frame, and the hub's invariants. See
//! `ackstorm::server::fuzzing::hub_sequence`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ackstorm::server::fuzzing::hub_sequence(data));
