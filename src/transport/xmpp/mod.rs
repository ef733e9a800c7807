//! XMPP client protocol for driving real XMPP servers (Prosody, ejabberd) with the same
//! receipts workload: TCP (RFC 6120, STARTTLS when offered) or WebSocket (RFC 7395,
//! subprotocol `xmpp`), SASL SCRAM-SHA-1 or PLAIN, resource binding, presence, MUC, XEP-0199
//! pings answered, XEP-0198 stream management when offered.
//!
//! This module is protocol-level: it knows JIDs and stanzas, not the tester's [`super::Op`]s.
//! It must not decide behaviour (when to send receipts or read markers is the user actor's
//! call) and must not parse XML by hand (quick-xml does, in [`parser`]).
//!
//! # Layout
//! - [`parser`]: bytes as they arrive -> top-level [`parser::Element`] trees (no I/O).
//! - [`stanza`]: elements -> typed [`Incoming`] values (no I/O).
//! - [`outbound`]: [`Outbound`] stanzas and stream nonzas -> text (no I/O).
//! - [`sasl`]: PLAIN and SCRAM-SHA-1 client exchanges (no I/O).
//! - [`wire`]: the byte/message transport: TCP, TLS after STARTTLS, WebSocket.
//! - [`session`]: the connection API: [`XmppConn::connect`], [`XmppSender`], [`Event`]s.
//! - `login`: the login steps; `task`: one task per connection that writes [`Outbound`]s,
//!   reads [`Event`]s, answers pings and XEP-0198 `<r/>`.
//!
//! # Mapping onto the tester's vocabulary (proposal for the driver)
//! | tester | XMPP |
//! |---|---|
//! | `Op::Send` 1:1 | [`Outbound::Chat`] with `receipt` and `markable`; `id` = the op's client id |
//! | `Op::Send` group | [`Outbound::GroupChat`] to `group@conference.<domain>` (joined at login) |
//! | `Reply::Accepted` | XEP-0198 [`Event::SmAck`] with `h` >= the stanza's [`XmppSender::send`] number (no mid: the client id stands in) |
//! | `Op::Delivery` | [`Outbound::Received`] (XEP-0184) |
//! | `Op::Read` 1:1 / group | [`Outbound::Displayed`] with the message id / the room's stanza-id |
//! | `Op::Channel` | one [`Outbound::Displayed`] for the newest message of the conversation |
//! | `Op::Ping` / `Reply::Pong` | not needed: the server's `<r/>` and pings are answered here |
//! | `Inbound::Message` | [`Event::Message`] with a body (`delayed` = replayed) |
//! | `Inbound::Delivery` / `Read` | [`Event::Message`] whose `received_of` / `displayed_of` is set |
//! | `Inbound::Kicked` | [`Event::Closed`] with stream error `conflict` |
//! | `CreateGroup` | a [`Outbound::Join`] by each member (rooms are created on first join) |
//!
//! Server message ids (`mid: u64`) do not exist in XMPP: the driver has to map its client ids
//! (and for groups the room's XEP-0359 stanza-id) to numbers, e.g. by hashing or a table.

mod login;
pub mod outbound;
pub mod parser;
pub mod sasl;
pub mod session;
#[cfg(test)]
mod session_tests;
pub mod stanza;
mod task;
pub mod wire;

pub use outbound::Outbound;
pub use session::{CloseReason, Event, Stamped, Transport, XmppConfig, XmppConn, XmppError, XmppSender};
pub use stanza::{Incoming, Message, MessageType, Presence};
pub use wire::{StartTls, TlsTrust};

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
