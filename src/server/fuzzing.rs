//! The logic of the fuzz targets in `fuzz/`, shared with `cargo test`.
//!
//! Each target is a function of raw bytes that panics on a finding:
//! - [`parse_frames`]: the client and the server frame parsers never panic, and a frame that
//!   parses re-encodes to text that parses back to the same value (and to the JSON that the
//!   derived `Serialize` writes, which pins the direct writer of `protocol::wire` to serde).
//! - [`hub_sequence`]: the bytes are a short [`Script`]: a hub configuration, then logins,
//!   frames (sends, receipts, channel acks, groups, queries, raw text), writes of what was
//!   pushed, and logouts, driven through a [`Hub`] in-process. The [`Harness`] checks every
//!   reply and every push against the protocol's invariants as it goes.
//!
//! `cargo fuzz` runs both with libFuzzer (see the README); `cargo test` replays every file of
//! `fuzz/corpus/<target>/` through them, so the seeds and every saved finding stay regression
//! tests on a stable toolchain. The property test `server::hub::proptests` drives the same
//! [`Harness`] with generated [`Op`]s.
//!
//! Not an API (`#[doc(hidden)]`): nothing in the server calls it. It must stay deterministic:
//! no randomness of its own, and no decision that depends on the clock (the hub's receipt
//! validity window is left at its default of days).

use serde_json::Value;

use super::ServerConfig;
use super::store::StoreLimits;
use crate::protocol::server::StatisticLocation;
use crate::protocol::{ErrorCode, Outgoing, Request, ServerFrame};

/// Parses `data` (as UTF-8, invalid sequences replaced) as a client frame and as a server
/// frame; panics when a parser panics or a parsed frame does not round-trip.
pub fn parse_frames(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    client_round_trip(&text);
    server_round_trip(&text);
}

fn client_round_trip(text: &str) {
    let request = match Request::parse(text) {
        Ok(r) => r,
        Err(e) => {
            // Every error renders, and maps to `bad_request`.
            let _ = e.to_string();
            assert_eq!(e.code(), ErrorCode::BadRequest);
            return;
        }
    };
    let encoded = request.encode();
    let back = Request::parse(&encoded)
        .unwrap_or_else(|e| panic!("client frame {text:?} parsed, but its encoding {encoded:?} did not: {e}"));
    assert_eq!(back, request, "client frame {text:?} re-encoded as {encoded:?}");
    let direct: Value = serde_json::from_str(&encoded).expect("the writer writes JSON");
    let derived = serde_json::to_value(&request).expect("frames serialize");
    assert_eq!(direct, derived, "client frame {text:?}: the writer and serde disagree");
}

fn server_round_trip(text: &str) {
    let Ok(outgoing) = Outgoing::parse(text) else { return };
    let encoded = outgoing.encode();
    let back = Outgoing::parse(&encoded)
        .unwrap_or_else(|e| panic!("server frame {text:?} parsed, but its encoding {encoded:?} did not: {e}"));
    assert_eq!(back, outgoing, "server frame {text:?} re-encoded as {encoded:?}");
    let direct: Value = serde_json::from_str(&encoded).expect("the writer writes JSON");
    let derived = serde_json::to_value(&outgoing).expect("frames serialize");
    assert_eq!(direct, derived, "server frame {text:?}: the writer and serde disagree");
    if let ServerFrame::Statistic { location, .. } = &outgoing.frame
        && let Ok(stat) = StatisticLocation::from_json(location)
    {
        assert_eq!(StatisticLocation::from_json(&stat.to_json()).as_ref(), Ok(&stat));
    }
}

/// Runs `data` as a [`Script`] against a fresh hub; panics on a broken invariant.
pub fn hub_sequence(data: &[u8]) {
    let script = Script::from_bytes(data);
    let mut h = Harness::new(&script.setup);
    for op in &script.ops {
        h.apply(op);
    }
    let _ = h.finish();
}

/// Users of a script (all hold valid tokens).
pub const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
/// Devices a user logs in on.
pub const DEVICES: [&str; 2] = ["web", "phone"];
/// Group ids a script uses.
pub const GROUPS: [&str; 2] = ["g0", "g1"];
/// Most ops a script decoded from bytes runs ("a short sequence").
pub const MAX_OPS: usize = 64;

const SECRET: &[u8] = b"fuzz";

/// The hub's configuration, small enough that caps, evictions and limits are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// Group read receipts on.
    pub group_read_ack: bool,
    /// Every member may ask for them.
    pub group_ack_anyone: bool,
    /// Groups larger than this keep no receipts (0..=3 plus 2).
    pub group_ack_max_members: u8,
    /// Group size limit (0..=3 plus 2).
    pub group_max_members: u8,
    /// Offline messages and receipts kept per inbox (0..=3).
    pub offline_cap: u8,
    /// Messages whose metadata is kept (0..=15 plus 1): old ones are evicted.
    pub messages_cap: u8,
}

impl Setup {
    /// The setup two bytes describe (every pair is valid; receipts are on for three in four).
    pub fn from_bytes(a: u8, b: u8) -> Setup {
        Setup {
            group_read_ack: a & 3 != 3,
            group_ack_anyone: a & 2 != 0,
            group_ack_max_members: (a >> 2) & 3,
            group_max_members: (a >> 4) & 3,
            offline_cap: b & 3,
            messages_cap: b >> 4,
        }
    }

    fn config(&self) -> ServerConfig {
        ServerConfig {
            secret: SECRET.to_vec(),
            group_read_ack: self.group_read_ack,
            group_ack_anyone: self.group_ack_anyone,
            group_ack_max_members: 2 + usize::from(self.group_ack_max_members & 3),
            group_max_members: 2 + usize::from(self.group_max_members & 3),
            limits: StoreLimits {
                offline_single: usize::from(self.offline_cap & 3),
                offline_group: usize::from(self.offline_cap & 3),
                offline_receipts: usize::from(self.offline_cap & 3),
                messages: 1 + usize::from(self.messages_cap & 15),
                sent_ids: 2,
                sent_ids_max: 4,
                // Small enough that scripts reach them.
                offline_user_bytes: 4096,
                offline_total_bytes: 16 * 1024,
                message_bytes: 64 * 1024,
                conversations: 2,
                sent_ids_total: 8,
            },
            rate_limit: None,
            max_msg_bytes: 16,
            ..ServerConfig::default()
        }
    }
}

/// A conversation a frame names: `USERS[i]` or `GROUPS[i]` (indices wrap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// One-to-one with a user.
    User(u8),
    /// A group.
    Group(u8),
}

impl To {
    fn from_byte(b: u8) -> To {
        if b & 1 == 0 {
            To::User(b >> 1)
        } else {
            To::Group(b >> 1)
        }
    }

    fn chat_type(self) -> &'static str {
        match self {
            To::User(_) => "singleChat",
            To::Group(_) => "groupChat",
        }
    }

    fn id(self) -> &'static str {
        match self {
            To::User(i) => USERS[usize::from(i) % USERS.len()],
            To::Group(i) => GROUPS[usize::from(i) % GROUPS.len()],
        }
    }
}

/// A message id a frame names: below 0xF0 one of the ids the script has seen (wrapping),
/// else an id that may not exist (0, `u64::MAX`, small numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mid(pub u8);

/// One frame a logged-in connection sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `send` with client id `c<id % 4>` (repeats are duplicates); `long` is over the
    /// `msg` limit.
    Send {
        /// Client id.
        id: u8,
        /// Peer or group.
        to: To,
        /// `msgConfig.allowGroupAck`.
        ack: bool,
        /// Text over the size limit.
        long: bool,
    },
    /// `delivery`.
    Delivery {
        /// The message.
        mid: Mid,
        /// Its sender, as claimed.
        to: u8,
    },
    /// `read` (1:1 or group).
    Read {
        /// The message.
        mid: Mid,
        /// Sender or group, as claimed.
        to: To,
    },
    /// `channel`.
    Channel {
        /// Peer or group.
        to: To,
    },
    /// `createGroup`; members and admins are bit sets over [`USERS`].
    CreateGroup {
        /// Group index.
        group: u8,
        /// Members bit set.
        members: u8,
        /// Admins bit set.
        admins: u8,
    },
    /// `joinGroup`.
    Join {
        /// Group index.
        group: u8,
    },
    /// `leaveGroup`.
    Leave {
        /// Group index.
        group: u8,
    },
    /// `getGroupMsgReadUser`.
    ReadUsers {
        /// Group index.
        group: u8,
        /// The message.
        mid: Mid,
        /// Page size (0 = absent).
        limit: u8,
        /// Page key (0 = absent, else `key - 1` as text).
        key: u8,
    },
    /// `getConversations`.
    Conversations,
    /// `ping`.
    Ping,
    /// A second `login` on a logged-in connection.
    Relogin,
}

/// One step of a script. Connection indices wrap over the open connections; a step that
/// names a connection when none is open does nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A new connection of `USERS[user]` on `DEVICES[device]` logs in; `bound` > 0 bounds its
    /// queue of live pushes to that many frames (a slow consumer).
    Login {
        /// User index.
        user: u8,
        /// Device index.
        device: u8,
        /// Queue bound in frames; 0 is none.
        bound: u8,
    },
    /// A first frame the hub must refuse: a bad token, or not a `login`.
    BadLogin {
        /// User index; odd values send a `ping` instead of a login.
        user: u8,
    },
    /// A connection closes; what it did not write is taken back.
    Logout {
        /// Connection index.
        conn: u8,
    },
    /// A connection writes up to `max` queued pushes (0 = all).
    Drain {
        /// Connection index.
        conn: u8,
        /// Most pushes written.
        max: u8,
    },
    /// A connection sends a frame.
    Frame {
        /// Connection index.
        conn: u8,
        /// The frame.
        frame: Frame,
    },
    /// A connection sends raw text; the hub sees it only if it parses.
    Raw {
        /// Connection index.
        conn: u8,
        /// The text.
        text: String,
    },
}

/// A hub configuration and the ops to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The hub's configuration.
    pub setup: Setup,
    /// The steps.
    pub ops: Vec<Op>,
}

/// Reads bytes; zeros once they run out.
struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bytes<'_> {
    fn more(&self) -> bool {
        self.pos < self.data.len()
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
}

impl Script {
    /// Decodes a script: two bytes of setup, then ops of an op byte and its arguments, at
    /// most [`MAX_OPS`]. Every byte string is a valid script.
    pub fn from_bytes(data: &[u8]) -> Script {
        let mut r = Bytes { data, pos: 0 };
        let setup = Setup::from_bytes(r.byte(), r.byte());
        let mut ops = Vec::new();
        while r.more() && ops.len() < MAX_OPS {
            let op = r.byte();
            let conn = r.byte();
            let frame = |frame| Op::Frame { conn, frame };
            ops.push(match op % 18 {
                0 => Op::Login {
                    user: conn,
                    device: r.byte(),
                    bound: r.byte() % 4,
                },
                1 => Op::BadLogin { user: conn },
                2 => Op::Logout { conn },
                3 | 4 => Op::Drain {
                    conn,
                    max: r.byte() % 4,
                },
                5 | 6 => {
                    let (to, flags) = (To::from_byte(r.byte()), r.byte());
                    frame(Frame::Send {
                        id: flags % 4,
                        to,
                        ack: flags & 4 != 0,
                        long: flags & 0xF8 == 0xF8,
                    })
                }
                7 => frame(Frame::Delivery {
                    mid: Mid(r.byte()),
                    to: r.byte(),
                }),
                8 | 9 => frame(Frame::Read {
                    mid: Mid(r.byte()),
                    to: To::from_byte(r.byte()),
                }),
                10 => frame(Frame::Channel {
                    to: To::from_byte(r.byte()),
                }),
                11 => frame(Frame::CreateGroup {
                    group: r.byte(),
                    members: r.byte(),
                    admins: r.byte(),
                }),
                12 => frame(Frame::Join { group: r.byte() }),
                13 => frame(Frame::Leave { group: r.byte() }),
                14 => frame(Frame::ReadUsers {
                    group: r.byte(),
                    mid: Mid(r.byte()),
                    limit: r.byte() % 4,
                    key: r.byte() % 4,
                }),
                15 => frame(match r.byte() % 3 {
                    0 => Frame::Conversations,
                    1 => Frame::Ping,
                    _ => Frame::Relogin,
                }),
                _ => {
                    let len = usize::from(r.byte() % 128);
                    let start = r.pos.min(data.len());
                    let end = (start + len).min(data.len());
                    r.pos = end;
                    Op::Raw {
                        conn,
                        text: String::from_utf8_lossy(&data[start..end]).into_owned(),
                    }
                }
            });
        }
        Script { setup, ops }
    }
}

impl Setup {
    /// The two bytes [`Setup::from_bytes`] reads back as this setup (when `group_read_ack` is
    /// off, `group_ack_anyone` reads back as on: it has no effect then).
    pub fn to_bytes(&self) -> [u8; 2] {
        let ack = match (self.group_read_ack, self.group_ack_anyone) {
            (false, _) => 3,
            (true, true) => 2,
            (true, false) => 0,
        };
        [
            ack | (self.group_ack_max_members & 3) << 2 | (self.group_max_members & 3) << 4,
            (self.offline_cap & 3) | (self.messages_cap & 15) << 4,
        ]
    }
}

impl To {
    fn to_byte(self) -> u8 {
        match self {
            To::User(i) => i << 1,
            To::Group(i) => i << 1 | 1,
        }
    }
}

impl Script {
    /// The bytes [`Script::from_bytes`] reads back as this script (seed corpus files are
    /// written this way), for fields within the ranges it decodes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.setup.to_bytes().to_vec();
        for op in &self.ops {
            match op {
                Op::Login { user, device, bound } => out.extend([0, *user, *device, *bound]),
                Op::BadLogin { user } => out.extend([1, *user]),
                Op::Logout { conn } => out.extend([2, *conn]),
                Op::Drain { conn, max } => out.extend([3, *conn, *max]),
                Op::Frame { conn, frame } => match frame {
                    Frame::Send { id, to, ack, long } => {
                        let flags = (id % 4) | u8::from(*ack) << 2 | if *long { 0xF8 } else { 0 };
                        out.extend([5, *conn, to.to_byte(), flags]);
                    }
                    Frame::Delivery { mid, to } => out.extend([7, *conn, mid.0, *to]),
                    Frame::Read { mid, to } => out.extend([8, *conn, mid.0, to.to_byte()]),
                    Frame::Channel { to } => out.extend([10, *conn, to.to_byte()]),
                    Frame::CreateGroup { group, members, admins } => {
                        out.extend([11, *conn, *group, *members, *admins]);
                    }
                    Frame::Join { group } => out.extend([12, *conn, *group]),
                    Frame::Leave { group } => out.extend([13, *conn, *group]),
                    Frame::ReadUsers { group, mid, limit, key } => {
                        out.extend([14, *conn, *group, mid.0, *limit, *key]);
                    }
                    Frame::Conversations => out.extend([15, *conn, 0]),
                    Frame::Ping => out.extend([15, *conn, 1]),
                    Frame::Relogin => out.extend([15, *conn, 2]),
                },
                Op::Raw { conn, text } => {
                    let text = &text.as_bytes()[..text.len().min(127)];
                    out.extend([16, *conn, text.len() as u8]);
                    out.extend_from_slice(text);
                }
            }
        }
        out
    }
}

mod harness;

pub use harness::{Harness, Stats};

#[cfg(test)]
mod tests;
