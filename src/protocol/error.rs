//! Why a frame could not be parsed, and which protocol error code that maps to.

use thiserror::Error;

use super::ErrorCode;

/// A frame that could not be turned into a typed request or push.
///
/// Every variant maps to `bad_request` on the wire ([`ProtocolError::code`]); the variants keep
/// apart what went wrong so that the error message can say it, naming the field and value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// Not JSON, or JSON but not an object.
    #[error("frame is not a JSON object: {reason}")]
    BadJson {
        /// What the JSON parser said.
        reason: String,
    },
    /// A JSON object without a string `req`.
    #[error("frame has no string \"req\"")]
    MissingReq,
    /// A JSON object without a string `op`.
    #[error("frame has no string \"op\"")]
    MissingOp {
        /// The frame's `req`, when readable.
        req: Option<String>,
    },
    /// `op` names no frame of the protocol.
    #[error("unknown op {op:?}")]
    UnknownOp {
        /// The frame's `req`, when readable.
        req: Option<String>,
        /// The op that was sent.
        op: String,
    },
    /// A field the op requires is absent (or null).
    #[error("{op}: missing field {field:?}")]
    MissingField {
        /// The frame's `req`.
        req: Option<String>,
        /// The op of the frame.
        op: &'static str,
        /// The field that is missing, as spelled on the wire.
        field: &'static str,
    },
    /// A field is present but its type or value is wrong.
    #[error("{op}: field {field:?} {reason}")]
    InvalidField {
        /// The frame's `req`, when readable.
        req: Option<String>,
        /// The op of the frame, when known.
        op: String,
        /// The field, as spelled on the wire (a path such as `members[2]` for arrays).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ProtocolError {
    /// The wire error code: every parse failure is a `bad_request`.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::BadRequest
    }

    /// The frame's `req` when it could be read, so that the error can echo it.
    pub fn req(&self) -> Option<&str> {
        match self {
            ProtocolError::BadJson { .. } | ProtocolError::MissingReq => None,
            ProtocolError::MissingOp { req }
            | ProtocolError::UnknownOp { req, .. }
            | ProtocolError::MissingField { req, .. }
            | ProtocolError::InvalidField { req, .. } => req.as_deref(),
        }
    }
}
