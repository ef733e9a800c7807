//! Bounds of the reference server's options, one place for both ways they arrive: `serve`'s
//! flags and a profile's `target.server` keys (a child-process server gets those as flags). A
//! value outside them is refused with the flag or key named: absurd values used to panic deep
//! in the server (a token wait or a throttle interval past `Duration`'s range, an instant past
//! the clock's, a semaphore past its permits) or leave a server that serves nobody.

use std::ops::RangeInclusive;
use std::time::Duration;

/// Rate limit and throttle, frames per second, when not 0 (off). The slowest is one frame
/// per 1000 s.
pub const RATE: RangeInclusive<f64> = 0.001..=1e9;
/// `--delay-ms`: at most an hour per frame.
pub const DELAY_MS: RangeInclusive<u64> = 0..=3_600_000;
/// Timeouts: above zero, at most a day.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// `--ack-validity-secs`: a second to ten years.
pub const ACK_VALIDITY_SECS: RangeInclusive<u64> = 1..=10 * 365 * 24 * 3600;
/// Group size limits: the owner and one more, up to a million.
pub const GROUP_MEMBERS: RangeInclusive<u64> = 2..=1_000_000;
/// Offline messages kept per inbox (0 keeps none).
pub const OFFLINE: RangeInclusive<u64> = 0..=1_000_000;
/// `--max-frame-bytes`: room for a login frame, up to 64 MiB.
pub const FRAME_BYTES: RangeInclusive<u64> = 1024..=64 * 1024 * 1024;
/// `--max-connections`.
pub const CONNECTIONS: RangeInclusive<u64> = 1..=10_000_000;
/// `--threads`.
pub const THREADS: RangeInclusive<u64> = 1..=1024;
/// `--max-handshake-bytes`: room for an upgrade request, up to 1 MiB.
pub const HANDSHAKE_BYTES: RangeInclusive<u64> = 8192..=1024 * 1024;
/// Byte caps of the store (offline inboxes, message records): up to a TiB.
pub const STORE_BYTES: RangeInclusive<u64> = 0..=1 << 40;
/// Per-user and total counts (devices, groups, conversations, remembered ids).
pub const COUNT: RangeInclusive<u64> = 1..=100_000_000;
