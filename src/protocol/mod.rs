//! The receipts wire protocol (v1) as typed Rust: every frame of `PROTOCOL.md`, parsed from and
//! encoded to JSON text.
//!
//! This module is pure: no sockets, no clocks, no server state. The reference server parses
//! [`client::Request`]s and encodes [`server::Outgoing`] frames; the native driver does the
//! reverse. Both directions are here so that the two sides cannot drift apart.
//!
//! Hot-path parsing goes through one flat, borrowed struct per direction (single pass, no
//! intermediate `serde_json::Value`); only a frame that fails is parsed again to find its `req`
//! and name the offending field.

pub mod client;
mod error;
pub mod server;
pub mod token;
mod wire;

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use client::{ClientFrame, Request};
pub use error::ProtocolError;
pub use server::{Outgoing, ServerFrame};

/// Longest user, device or group id the protocol accepts.
pub const MAX_ID_LEN: usize = 64;

/// The error codes of `PROTOCOL.md`, spelled as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed JSON, unknown op, missing or wrong field, or a meaningless frame.
    BadRequest,
    /// Bad token, or a first frame that is not `login`.
    Unauthorized,
    /// The caller has no right to what the frame names.
    Forbidden,
    /// The message or group the frame names does not exist.
    NotFound,
    /// The frame is over the size limit (the connection is then closed).
    TooLarge,
    /// The connection's token bucket is empty; the frame was not processed.
    RateLimited,
    /// Group read receipts are disabled on this server.
    GroupAckNotOpen,
    /// The message has no group receipts, is too old, or its group is over the size limit.
    GroupAckMsgNotFound,
    /// The server failed; the client did nothing wrong.
    Internal,
}

impl ErrorCode {
    /// Every code, in a stable order (metrics label sets, tests).
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::GroupAckNotOpen,
        ErrorCode::GroupAckMsgNotFound,
        ErrorCode::Internal,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::GroupAckNotOpen => "group_ack_not_open",
            ErrorCode::GroupAckMsgNotFound => "group_ack_msg_not_found",
            ErrorCode::Internal => "internal",
        }
    }

    /// Position in [`ErrorCode::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One-to-one or group conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChatType {
    /// `to` names a user.
    #[serde(rename = "singleChat")]
    Single,
    /// `to` names a group.
    #[serde(rename = "groupChat")]
    Group,
}

impl ChatType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatType::Single => "singleChat",
            ChatType::Group => "groupChat",
        }
    }

    fn parse(s: &str) -> Option<ChatType> {
        match s {
            "singleChat" => Some(ChatType::Single),
            "groupChat" => Some(ChatType::Group),
            _ => None,
        }
    }
}

/// True when `id` is a valid user, device or group id: `[A-Za-z0-9_.-]{1,64}`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Parses a server-assigned id (a decimal u64 string).
pub fn parse_mid(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A string that borrows from the frame text when it holds no escapes.
///
/// serde only borrows a `Cow<str>` when it is the field's own type, not inside an `Option`;
/// this newtype makes `Option<Str>` borrow too.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub(crate) struct Str<'a>(#[serde(borrow)] pub(crate) Cow<'a, str>);

/// Serde helpers: server ids travel as decimal strings.
pub(crate) mod mid_str {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mid: &u64, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = itoa::Buffer::new();
        s.serialize_str(buf.format(*mid))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = <super::Str<'de>>::deserialize(d)?;
        super::parse_mid(&s.0).ok_or_else(|| serde::de::Error::custom("expected a decimal id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_documented_alphabet() {
        assert!(is_valid_id("alice"));
        assert!(is_valid_id("A-z_0.9"));
        assert!(is_valid_id(&"x".repeat(64)));
        assert!(!is_valid_id(&"x".repeat(65)));
        assert!(!is_valid_id(""));
        for bad in ["a b", "a/b", "é", "a:b", "a\"b", "a\nb"] {
            assert!(!is_valid_id(bad), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn mids_are_decimal_u64() {
        assert_eq!(parse_mid("0"), Some(0));
        assert_eq!(parse_mid("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_mid("18446744073709551616"), None);
        assert_eq!(parse_mid("-1"), None);
        assert_eq!(parse_mid("+1"), None);
        assert_eq!(parse_mid("1e3"), None);
        assert_eq!(parse_mid(""), None);
    }

    #[test]
    fn error_codes_index_their_table() {
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.index(), i);
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
