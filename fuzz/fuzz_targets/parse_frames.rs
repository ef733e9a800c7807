//! Client and server frame parsers: never panic; a frame that parses re-encodes and parses
//! back to the same value. See `ackstorm::server::fuzzing::parse_frames`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ackstorm::server::fuzzing::parse_frames(data));
