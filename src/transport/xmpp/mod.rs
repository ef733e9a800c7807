//! XMPP for driving real XMPP servers (Prosody, ejabberd, any host) with the same receipts
//! workload: the protocol layer — TCP (RFC 6120, STARTTLS by policy) or WebSocket (RFC 7395,
//! subprotocol `xmpp`, `ws://` or `wss://`), SASL SCRAM-SHA-1 or PLAIN, resource binding,
//! presence, MUC, XEP-0199 pings answered, XEP-0198 stream management when offered — and the
//! [`XmppDriver`] that maps the tester's [`super::Op`]s and [`super::Inbound`]s onto it.
//!
//! The protocol layer knows JIDs and stanzas, not the tester's vocabulary; only `driver` and
//! `link` know both. Nothing here decides behaviour (when to send receipts or read markers is
//! the user actor's call), and no XML is parsed by hand (quick-xml does, in [`parser`]).
//!
//! # Layout
//! - [`parser`]: bytes as they arrive -> top-level [`parser::Element`] trees (no I/O).
//! - [`stanza`]: elements -> typed [`Incoming`] values (no I/O).
//! - [`outbound`]: [`Outbound`] stanzas and stream nonzas -> text (no I/O).
//! - [`sasl`]: PLAIN and SCRAM-SHA-1 client exchanges (no I/O).
//! - [`meter`]: frame names and what is counted under them (no I/O).
//! - [`wire`]: [`XmppTarget`] (URL resolved once, TLS from [`super::tls`]) and the pipe: TCP,
//!   TLS after STARTTLS, WebSocket.
//! - [`session`]: the connection API: [`XmppConn::connect`], [`XmppSender`], [`Event`]s.
//! - `login`: the login steps; `task`: one task per connection that writes [`Outbound`]s,
//!   reads [`Event`]s, answers pings and XEP-0198 `<r/>`.
//! - `link`: one connection's Op -> stanza and Event -> Inbound mapping (no I/O).
//! - [`driver`]: [`XmppDriver`]: connect, log in, join rooms, pump commands, stream events.
//!
//! # Mapping onto the tester's vocabulary
//! | tester | XMPP |
//! |---|---|
//! | `Op::Send` 1:1 | `<message type='chat' id=client id>` with XEP-0184 `<request/>` and XEP-0333 `<markable/>` |
//! | its `Reply::Accepted` | the XEP-0198 `<a h>` covering it; mid `sender/client id` |
//! | `Op::Send` group | `<message type='groupchat'>` to `group@muc` (`<markable/>` when receipts are asked) |
//! | its `Reply::Accepted` | the room's reflection (same id, from the own nick); mid `group/stanza-id` (XEP-0359, by the room) |
//! | `Op::Delivery` / `Op::Read` / `Op::Channel` | `<received/>` / `<displayed/>` (the newest message, for a channel ack); `Reply::Acked` on `<a h>` |
//! | `Op::Ping` | XEP-0199 ping of the server; `Reply::Pong` on its result |
//! | `Op::CreateGroup`, `Op::ReadUsers` | refused at once: `feature-not-implemented` |
//! | error stanza with a request's id | `Reply::Error` with its condition (`resource-constraint`, `policy-violation`: rate limited) |
//! | `Inbound::Message` | a message with a body (1:1 from `peer@domain`, group from `room/nick` but the own nick) |
//! | `Inbound::Delivery` / `Read` 1:1 | `<received/>` / `<displayed/>` from the peer (`live` unless XEP-0203 delayed) |
//! | `Inbound::Read` group | a `<displayed/>` in the room for an own message, once per new reader, with the count so far |
//! | `Inbound::Closed` | the end of the stream (stream error `conflict` included) |

pub mod driver;
#[cfg(test)]
mod driver_tests;
mod link;
#[cfg(test)]
mod link_tests;
mod login;
pub mod meter;
pub mod outbound;
pub mod parser;
pub mod sasl;
pub mod session;
#[cfg(test)]
mod session_tests;
pub mod stanza;
mod task;
pub mod wire;

pub use driver::{Passwords, XmppDriver, XmppDriverConfig};
pub use link::{OWN_GROUP_MESSAGES, XmppCounters};
pub use outbound::Outbound;
pub use session::{CloseReason, Event, Stamped, XmppConfig, XmppConn, XmppError, XmppSender};
pub use stanza::{Incoming, Message, MessageType, Presence};
pub use wire::{StartTlsPolicy, XmppTarget};

/// Namespaces used by the client.
pub mod ns {
    /// Stanzas.
    pub const CLIENT: &str = "jabber:client";
    /// Stream elements (`stream:features`, `stream:error`).
    pub const STREAMS: &str = "http://etherx.jabber.org/streams";
    /// Stream error conditions.
    pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
    /// Stanza error conditions.
    pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
    /// RFC 7395 framing (`<open/>`, `<close/>`).
    pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
    /// STARTTLS.
    pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
    /// SASL.
    pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
    /// Resource binding.
    pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
    /// RFC 3921 session.
    pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
    /// XEP-0198 stream management v3.
    pub const SM: &str = "urn:xmpp:sm:3";
    /// XEP-0199 ping.
    pub const PING: &str = "urn:xmpp:ping";
    /// XEP-0184 message receipts.
    pub const RECEIPTS: &str = "urn:xmpp:receipts";
    /// XEP-0333 chat markers.
    pub const MARKERS: &str = "urn:xmpp:chat-markers:0";
    /// XEP-0359 stanza ids.
    pub const SID: &str = "urn:xmpp:sid:0";
    /// XEP-0203 delayed delivery.
    pub const DELAY: &str = "urn:xmpp:delay";
    /// XEP-0045 MUC user data.
    pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
}

/// The bare part of a JID (`user@host/res` -> `user@host`).
pub fn bare(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(b, _)| b)
}

/// The resource part of a JID, if any.
pub fn resource(jid: &str) -> Option<&str> {
    jid.split_once('/').map(|(_, r)| r)
}
