//! What an XMPP connection counts in the driver's [`FrameStats`]: the names of the frames it
//! sends and receives ([`XMPP_SENT`], [`XMPP_RECEIVED`]), which name each stanza or nonza
//! falls under, and which received elements are unusable ([`ProtocolFault`]). No I/O.
//!
//! Frames are counted where they are written or parsed (login steps and the connection's
//! task); bytes where the pipe reads and writes, so a TCP read holding many stanzas (or part
//! of one) is counted once.

use super::outbound::Outbound;
use super::stanza::{Incoming, MessageType};
use crate::transport::{FrameStats, ProtocolFault};

/// Names of the frames a client sends, in counter order.
pub const XMPP_SENT: [&str; 8] = [
    "message",
    "groupchat",
    "received",
    "displayed",
    "presence",
    "iq",
    "sm",
    "stream",
];

/// Names of the frames a server sends, in counter order (`error`: any stanza of type error).
pub const XMPP_RECEIVED: [&str; 9] = [
    "message",
    "groupchat",
    "received",
    "displayed",
    "error",
    "presence",
    "iq",
    "sm",
    "stream",
];

/// Index of a sent frame's name in [`XMPP_SENT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// A one-to-one message.
    Message = 0,
    /// A groupchat message.
    GroupChat = 1,
    /// A XEP-0184 receipt.
    Received = 2,
    /// A XEP-0333 marker.
    Displayed = 3,
    /// Any presence (room joins included).
    Presence = 4,
    /// Any iq.
    Iq = 5,
    /// XEP-0198 nonzas.
    Sm = 6,
    /// Stream headers, STARTTLS, SASL, closes.
    Stream = 7,
}

/// Counters for an XMPP driver.
pub fn frame_stats() -> FrameStats {
    FrameStats::new(&XMPP_SENT, &XMPP_RECEIVED)
}

/// Counts a sent frame of `bytes`.
pub fn sent(stats: &FrameStats, kind: Sent, bytes: usize) {
    stats.sent(kind as usize, bytes);
}

/// Which name a stanza this client sends falls under.
pub fn sent_kind(stanza: &Outbound) -> Sent {
    match stanza {
        Outbound::Chat { .. } => Sent::Message,
        Outbound::GroupChat { .. } => Sent::GroupChat,
        Outbound::Received { .. } => Sent::Received,
        Outbound::Displayed { .. } => Sent::Displayed,
        Outbound::Join { .. } | Outbound::Leave { .. } | Outbound::Presence => Sent::Presence,
        Outbound::Pong { .. } | Outbound::Unsupported { .. } | Outbound::Ping { .. } => Sent::Iq,
    }
}

/// Counts a received element (its bytes were counted as read): under its name, or as an
/// [`ProtocolFault::UnknownOp`] when it is nothing a client stream carries.
pub fn received(stats: &FrameStats, incoming: &Incoming) {
    let index = match incoming {
        Incoming::Message(m) if m.kind == MessageType::Error => 4,
        Incoming::Message(m) if m.received_of.is_some() => 2,
        Incoming::Message(m) if m.displayed_of.is_some() => 3,
        Incoming::Message(m) if m.kind == MessageType::GroupChat => 1,
        Incoming::Message(_) => 0,
        Incoming::Presence(p) if p.kind.as_deref() == Some("error") => 4,
        Incoming::Presence(_) => 5,
        Incoming::Iq(iq) if iq.error.is_some() => 4,
        Incoming::Iq(_) => 6,
        Incoming::SmEnabled { .. } | Incoming::SmFailed(_) | Incoming::SmRequest | Incoming::SmAck { .. } => 7,
        Incoming::Open { .. }
        | Incoming::Close
        | Incoming::Features(_)
        | Incoming::TlsProceed
        | Incoming::TlsFailure
        | Incoming::SaslChallenge(_)
        | Incoming::SaslSuccess(_)
        | Incoming::SaslFailure(_)
        | Incoming::StreamError { .. } => 8,
        Incoming::Other { .. } => return stats.fault(ProtocolFault::UnknownOp, 0),
    };
    stats.received(index, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::xmpp::parser::StreamParser;

    #[test]
    fn elements_are_counted_under_their_names_and_unknown_ones_as_faults() {
        let stats = frame_stats();
        let mut p = StreamParser::default();
        p.feed(
            b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>\
            <message type='groupchat' from='r@c/n'><body>x</body></message>\
            <message type='chat' from='a@b'><received xmlns='urn:xmpp:receipts' id='1'/></message>\
            <message type='error' id='2'/><r xmlns='urn:xmpp:sm:3'/><bogus xmlns='urn:x'/>",
        );
        while let Some(item) = p.next_item().unwrap() {
            received(&stats, &Incoming::from_item(item));
        }
        let by: std::collections::HashMap<_, _> = stats.received_by_op().into_iter().collect();
        assert_eq!(
            (by["stream"], by["groupchat"], by["received"], by["error"], by["sm"]),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(stats.total_faults(), 1);
        sent(&stats, sent_kind(&Outbound::Presence), 10);
        assert_eq!(stats.sent_by_op()[Sent::Presence as usize], ("presence", 1));
        assert_eq!(stats.bytes_sent.load(std::sync::atomic::Ordering::Relaxed), 10);
    }
}
