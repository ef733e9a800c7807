//! Outbound XMPP stanzas ([`Outbound`]) and stream nonzas as text. No I/O.
//!
//! Text is built with `format!` around quick-xml's escaping of every attribute value and
//! text; the shapes follow the XEPs named on each item. Stanzas omit `xmlns` on TCP (the
//! stream header declares `jabber:client`) and carry it on WebSocket, where RFC 7395 makes
//! every message its own document.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use quick_xml::escape::escape;

/// A stanza this client sends. `to` fields are JIDs; ids are the client's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A one-to-one message, optionally asking for a XEP-0184 receipt and XEP-0333 markers.
    Chat {
        /// Recipient (bare JID).
        to: String,
        /// The client's message id (comes back in receipts and markers).
        id: String,
        /// Text.
        body: String,
        /// Add `<request xmlns='urn:xmpp:receipts'/>`.
        receipt: bool,
        /// Add `<markable xmlns='urn:xmpp:chat-markers:0'/>`.
        markable: bool,
    },
    /// A message to a joined room.
    GroupChat {
        /// Room bare JID.
        room: String,
        /// The client's message id.
        id: String,
        /// Text.
        body: String,
        /// Add `<markable/>`.
        markable: bool,
    },
    /// XEP-0184 delivery receipt for message `id` from `to`.
    Received {
        /// The message's sender (full or bare JID).
        to: String,
        /// The message's id.
        id: String,
        /// This stanza's own id (an error bounce comes back with it).
        own_id: Option<String>,
    },
    /// XEP-0333 `displayed` marker: 1:1 (`id` = message id) or to a room (`id` = the room's
    /// XEP-0359 stanza-id, `groupchat` set).
    Displayed {
        /// Sender (1:1) or room bare JID.
        to: String,
        /// The marked message.
        id: String,
        /// Send as `type='groupchat'` to a room.
        groupchat: bool,
        /// This stanza's own id (an error bounce comes back with it).
        own_id: Option<String>,
    },
    /// Join room `room` as `nick` (MUC presence, no history replayed).
    Join {
        /// Room bare JID.
        room: String,
        /// Nickname.
        nick: String,
    },
    /// Leave a room.
    Leave {
        /// Room bare JID.
        room: String,
        /// Nickname used to join.
        nick: String,
    },
    /// Available presence (the initial one after login).
    Presence,
    /// XEP-0199 ping of `to` (the server's domain); the answer is an iq result with `id`.
    Ping {
        /// Whom to ping.
        to: String,
        /// The iq's id.
        id: String,
    },
    /// XEP-0199 answer to ping `id`.
    Pong {
        /// The pinger (`None`: the server).
        to: Option<String>,
        /// The ping's id.
        id: String,
    },
    /// `service-unavailable` for an iq get/set this client does not handle (RFC 6120 8.4).
    Unsupported {
        /// The requester.
        to: Option<String>,
        /// The iq's id.
        id: String,
    },
}

impl Outbound {
    /// The stanza as XML. `xmlns` is written on the element when the framing needs it
    /// (WebSocket: every stanza is its own document).
    pub fn encode(&self, ws: bool) -> String {
        let x = client_ns(ws);
        match self {
            Outbound::Chat {
                to,
                id,
                body,
                receipt,
                markable,
            } => format!(
                "<message{x} to='{}' id='{}' type='chat'><body>{}</body>{}{}</message>",
                escape(to),
                escape(id),
                escape(body),
                if *receipt {
                    "<request xmlns='urn:xmpp:receipts'/>"
                } else {
                    ""
                },
                if *markable {
                    "<markable xmlns='urn:xmpp:chat-markers:0'/>"
                } else {
                    ""
                },
            ),
            Outbound::GroupChat {
                room,
                id,
                body,
                markable,
            } => format!(
                "<message{x} to='{}' id='{}' type='groupchat'><body>{}</body>{}</message>",
                escape(room),
                escape(id),
                escape(body),
                if *markable {
                    "<markable xmlns='urn:xmpp:chat-markers:0'/>"
                } else {
                    ""
                },
            ),
            Outbound::Received { to, id, own_id } => format!(
                "<message{x} to='{}'{} type='chat'><received xmlns='urn:xmpp:receipts' id='{}'/></message>",
                escape(to),
                id_attr(own_id),
                escape(id)
            ),
            Outbound::Displayed {
                to,
                id,
                groupchat,
                own_id,
            } => format!(
                "<message{x} to='{}'{} type='{}'><displayed xmlns='urn:xmpp:chat-markers:0' id='{}'/></message>",
                escape(to),
                id_attr(own_id),
                if *groupchat { "groupchat" } else { "chat" },
                escape(id)
            ),
            Outbound::Join { room, nick } => format!(
                "<presence{x} to='{}/{}'><x xmlns='http://jabber.org/protocol/muc'>\
                 <history maxstanzas='0'/></x></presence>",
                escape(room),
                escape(nick)
            ),
            Outbound::Leave { room, nick } => {
                format!(
                    "<presence{x} to='{}/{}' type='unavailable'/>",
                    escape(room),
                    escape(nick)
                )
            }
            Outbound::Presence => format!("<presence{x}/>"),
            Outbound::Ping { to, id } => format!(
                "<iq{x} to='{}' id='{}' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
                escape(to),
                escape(id)
            ),
            Outbound::Pong { to, id } => format!("<iq{x}{} id='{}' type='result'/>", to_attr(to), escape(id)),
            Outbound::Unsupported { to, id } => format!(
                "<iq{x}{} id='{}' type='error'><error type='cancel'>\
                 <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
                to_attr(to),
                escape(id)
            ),
        }
    }
}

fn id_attr(id: &Option<String>) -> String {
    id.as_deref()
        .map(|i| format!(" id='{}'", escape(i)))
        .unwrap_or_default()
}

fn to_attr(to: &Option<String>) -> String {
    to.as_deref()
        .map(|t| format!(" to='{}'", escape(t)))
        .unwrap_or_default()
}

/// TCP stream header (RFC 6120 4.2).
pub fn stream_header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{}' version='1.0' xml:lang='en' \
         xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
        escape(domain)
    )
}

/// TCP stream close.
pub const STREAM_CLOSE: &str = "</stream:stream>";

/// WebSocket stream open (RFC 7395 3.3.1).
pub fn ws_open(domain: &str) -> String {
    format!(
        "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{}' version='1.0'/>",
        escape(domain)
    )
}

/// WebSocket stream close (RFC 7395 3.6).
pub const WS_CLOSE: &str = "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>";

/// STARTTLS request.
pub const STARTTLS: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";

/// XEP-0198 ack request.
pub const SM_REQUEST: &str = "<r xmlns='urn:xmpp:sm:3'/>";

/// SASL `<auth/>` with its initial response (`=` for an empty one).
pub fn auth(mechanism: &str, initial: &[u8]) -> String {
    format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{}'>{}</auth>",
        escape(mechanism),
        b64_or_empty(initial)
    )
}

/// SASL `<response/>`.
pub fn response(data: &[u8]) -> String {
    format!(
        "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
        b64_or_empty(data)
    )
}

fn b64_or_empty(data: &[u8]) -> String {
    if data.is_empty() { "=".into() } else { B64.encode(data) }
}

/// Resource binding request (RFC 6120 7); `ws` adds the stanza namespace (see [`Outbound::encode`]).
pub fn bind(id: &str, resource: &str, ws: bool) -> String {
    format!(
        "<iq{} type='set' id='{}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{}</resource></bind></iq>",
        client_ns(ws),
        escape(id),
        escape(resource)
    )
}

/// Legacy session establishment (RFC 3921), for servers that still require it.
pub fn session(id: &str, ws: bool) -> String {
    format!(
        "<iq{} type='set' id='{}'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
        client_ns(ws),
        escape(id)
    )
}

fn client_ns(ws: bool) -> &'static str {
    if ws { " xmlns='jabber:client'" } else { "" }
}

/// XEP-0198 enable (resumption is not asked for: a dropped connection logs in again).
pub const SM_ENABLE: &str = "<enable xmlns='urn:xmpp:sm:3'/>";

/// XEP-0198 ack of `h` handled stanzas.
pub fn sm_ack(h: u32) -> String {
    format!("<a xmlns='urn:xmpp:sm:3' h='{h}'/>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::xmpp::parser::{Item, StreamParser};
    use crate::transport::xmpp::stanza::{Incoming, MessageType};

    /// Reads back what this module wrote, as a server would (WebSocket framing: one element,
    /// no stream header, so the element must declare its own namespace).
    fn read_back(xml: &str) -> Incoming {
        let mut p = StreamParser::default();
        p.feed(xml.as_bytes());
        let item = p.next_item().unwrap().expect("one complete element");
        assert_eq!(p.next_item().unwrap(), None);
        Incoming::from_item(item)
    }

    #[test]
    fn chat_with_receipt_request_and_marker_round_trips_with_escaping() {
        let chat = Outbound::Chat {
            to: "user2@localhost".into(),
            id: "c'1".into(),
            body: "<b> & \"q\"".into(),
            receipt: true,
            markable: true,
        };
        assert_eq!(
            chat.encode(false),
            "<message to='user2@localhost' id='c&apos;1' type='chat'><body>&lt;b&gt; &amp; &quot;q&quot;</body>\
             <request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/></message>"
        );
        let Incoming::Message(m) = read_back(&chat.encode(true)) else {
            panic!()
        };
        assert_eq!(m.kind, MessageType::Chat);
        assert_eq!(m.id.as_deref(), Some("c'1"));
        assert_eq!(m.body.as_deref(), Some("<b> & \"q\""));
        assert!(m.receipt_request && m.markable);
        let plain = Outbound::Chat {
            to: "u@h".into(),
            id: "1".into(),
            body: "x".into(),
            receipt: false,
            markable: false,
        };
        let Incoming::Message(m) = read_back(&plain.encode(true)) else {
            panic!()
        };
        assert!(!m.receipt_request && !m.markable);
    }

    #[test]
    fn receipts_and_markers_reference_the_message() {
        let rcv = Outbound::Received {
            to: "user1@localhost/r".into(),
            id: "c-1".into(),
            own_id: Some("k7".into()),
        };
        let Incoming::Message(m) = read_back(&rcv.encode(true)) else {
            panic!()
        };
        assert_eq!((m.received_of.as_deref(), m.body), (Some("c-1"), None));
        assert_eq!(m.id.as_deref(), Some("k7"), "the receipt's own id");
        let dsp = Outbound::Displayed {
            to: "user1@localhost".into(),
            id: "c-1".into(),
            groupchat: false,
            own_id: None,
        };
        let Incoming::Message(m) = read_back(&dsp.encode(true)) else {
            panic!()
        };
        assert_eq!((m.displayed_of.as_deref(), m.kind), (Some("c-1"), MessageType::Chat));
        assert_eq!(m.id, None);
        let room = Outbound::Displayed {
            to: "r@conference.localhost".into(),
            id: "S9".into(),
            groupchat: true,
            own_id: None,
        };
        let Incoming::Message(m) = read_back(&room.encode(true)) else {
            panic!()
        };
        assert_eq!(
            (m.displayed_of.as_deref(), m.kind),
            (Some("S9"), MessageType::GroupChat)
        );
        let g = Outbound::GroupChat {
            room: "r@conference.localhost".into(),
            id: "g1".into(),
            body: "b".into(),
            markable: true,
        };
        let Incoming::Message(m) = read_back(&g.encode(true)) else {
            panic!()
        };
        assert_eq!(
            (m.kind, m.markable, m.to.as_deref()),
            (MessageType::GroupChat, true, Some("r@conference.localhost"))
        );
    }

    #[test]
    fn presences_and_iq_answers() {
        let join = Outbound::Join {
            room: "r@conference.localhost".into(),
            nick: "user1".into(),
        };
        assert_eq!(
            join.encode(false),
            "<presence to='r@conference.localhost/user1'><x xmlns='http://jabber.org/protocol/muc'>\
             <history maxstanzas='0'/></x></presence>"
        );
        let leave = Outbound::Leave {
            room: "r@c".into(),
            nick: "n".into(),
        };
        assert!(
            matches!(read_back(&leave.encode(true)), Incoming::Presence(p) if p.kind.as_deref() == Some("unavailable"))
        );
        assert_eq!(Outbound::Presence.encode(false), "<presence/>");
        assert_eq!(Outbound::Presence.encode(true), "<presence xmlns='jabber:client'/>");
        let pong = Outbound::Pong {
            to: Some("localhost".into()),
            id: "p1".into(),
        };
        assert_eq!(pong.encode(false), "<iq to='localhost' id='p1' type='result'/>");
        let pong = Outbound::Pong {
            to: None,
            id: "p2".into(),
        };
        assert_eq!(pong.encode(false), "<iq id='p2' type='result'/>");
        let ping = Outbound::Ping {
            to: "localhost".into(),
            id: "as-3".into(),
        };
        let Incoming::Iq(iq) = read_back(&ping.encode(true)) else {
            panic!()
        };
        assert!(iq.is_ping() && iq.id == "as-3");
        let no = Outbound::Unsupported {
            to: None,
            id: "v".into(),
        };
        let Incoming::Iq(iq) = read_back(&no.encode(true)) else {
            panic!()
        };
        assert_eq!(iq.error.unwrap().condition, "service-unavailable");
    }

    #[test]
    fn stream_nonzas() {
        assert_eq!(
            auth("SCRAM-SHA-1", b"n,,n=user,r=abc"),
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>biwsbj11c2VyLHI9YWJj</auth>"
        );
        assert_eq!(
            response(b""),
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</response>"
        );
        assert_eq!(sm_ack(7), "<a xmlns='urn:xmpp:sm:3' h='7'/>");
        let Incoming::Iq(iq) = read_back(&bind("b1", "dev<1>", true)) else {
            panic!()
        };
        assert_eq!(
            iq.payload,
            Some(("bind".into(), "urn:ietf:params:xml:ns:xmpp-bind".into()))
        );
        assert!(stream_header("localhost").contains("to='localhost'"));
        let mut p = StreamParser::default();
        p.feed(ws_open("localhost").as_bytes());
        p.feed(WS_CLOSE.as_bytes());
        assert!(matches!(p.next_item().unwrap(), Some(Item::Open(e)) if e.attr("to") == Some("localhost")));
        assert_eq!(p.next_item().unwrap(), Some(Item::Close));
    }
}
