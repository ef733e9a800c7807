//! Inbound XMPP stanzas and nonzas as Rust values ([`Incoming`]), read from the
//! [`Element`]s of [`super::parser`]. No I/O, and only what a receipts load tester needs: no
//! roster, no forms. The outbound side is [`super::outbound`].
//!
//! Conversion never fails: an element this module does not know becomes [`Incoming::Other`]
//! (counted by the session, not fatal); missing attributes become `None`.

use super::ns;
use super::parser::{Element, Item};

/// A stanza or nonza received, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Stream header (`<stream:stream>` or `<open/>`).
    Open {
        /// Stream id.
        id: Option<String>,
        /// The server's domain.
        from: Option<String>,
    },
    /// The server closed the stream.
    Close,
    /// `<stream:features/>`.
    Features(Features),
    /// `<proceed/>`: start TLS now.
    TlsProceed,
    /// `<failure/>` to STARTTLS.
    TlsFailure,
    /// SASL challenge, base64 as sent (`=` or empty for no data).
    SaslChallenge(String),
    /// SASL success with its additional data, base64 as sent.
    SaslSuccess(String),
    /// SASL failure with its condition (`not-authorized`, ...).
    SaslFailure(String),
    /// XEP-0198 enabled.
    SmEnabled {
        /// Resumption id, when resumption was granted.
        id: Option<String>,
        /// Resumption granted.
        resume: bool,
    },
    /// XEP-0198 enable failed, with its condition.
    SmFailed(String),
    /// XEP-0198 `<r/>`: the server asks how many stanzas we handled.
    SmRequest,
    /// XEP-0198 `<a h=.../>`: the server handled `h` of our stanzas.
    SmAck {
        /// Stanzas handled (mod 2^32).
        h: u32,
    },
    /// `<message/>`.
    Message(Message),
    /// `<presence/>`.
    Presence(Presence),
    /// `<iq/>`.
    Iq(Iq),
    /// `<stream:error/>`: the stream is over.
    StreamError {
        /// Defined condition (`conflict`, `policy-violation`, ...).
        condition: String,
        /// Human-readable text, if any.
        text: Option<String>,
    },
    /// Anything else at top level.
    Other {
        /// Local name.
        name: String,
        /// Namespace.
        ns: String,
    },
}

/// What the server offers in `<stream:features/>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// STARTTLS offered; `Some(true)` when required.
    pub starttls: Option<bool>,
    /// SASL mechanisms offered (before authentication).
    pub mechanisms: Vec<String>,
    /// Resource binding offered (after authentication).
    pub bind: bool,
    /// RFC 3921 session establishment offered and not `<optional/>`.
    pub session_required: bool,
    /// XEP-0198 stream management (`urn:xmpp:sm:3`) offered.
    pub sm: bool,
}

/// Message `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// `normal` (or no type).
    Normal,
    /// `chat`: one-to-one.
    Chat,
    /// `groupchat`: MUC.
    GroupChat,
    /// `headline`.
    Headline,
    /// `error`: a bounce.
    Error,
}

/// A XEP-0359 stanza id and who assigned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaId {
    /// The id.
    pub id: String,
    /// The assigning entity: the user's bare JID (1:1 archive) or the room's (MUC).
    pub by: String,
}

/// A stanza error (`<error type=...><condition/></error>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    /// `cancel`, `wait`, `modify`, `auth`, `continue`.
    pub kind: String,
    /// Defined condition (`service-unavailable`, `item-not-found`, ...).
    pub condition: String,
    /// The server's `<text/>`, if any.
    pub text: Option<String>,
}

/// A received message with the parts receipts care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Sender JID (the occupant JID `room@host/nick` for groupchat).
    pub from: Option<String>,
    /// Addressee JID.
    pub to: Option<String>,
    /// The sender's id of the message.
    pub id: Option<String>,
    /// Type.
    pub kind: MessageType,
    /// Text, if any.
    pub body: Option<String>,
    /// XEP-0359 ids assigned by servers and rooms.
    pub stanza_ids: Vec<StanzaId>,
    /// XEP-0184: the sender asks for a delivery receipt.
    pub receipt_request: bool,
    /// XEP-0333: the sender wants chat markers.
    pub markable: bool,
    /// XEP-0184: this is the delivery receipt of message `id`.
    pub received_of: Option<String>,
    /// XEP-0333: this is the `displayed` marker of message `id`.
    pub displayed_of: Option<String>,
    /// XEP-0203 delay: history or offline storage, not live.
    pub delayed: bool,
    /// Set on `type='error'`.
    pub error: Option<StanzaError>,
}

impl Message {
    /// The XEP-0359 id assigned by `by` (a room's bare JID, or the user's).
    pub fn stanza_id_by(&self, by: &str) -> Option<&str> {
        self.stanza_ids.iter().find(|s| s.by == by).map(|s| s.id.as_str())
    }
}

/// MUC user data (`<x xmlns='http://jabber.org/protocol/muc#user'/>`) on a presence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MucUser {
    /// Status codes (110: this is your own presence; 201: room created).
    pub status: Vec<u16>,
    /// Affiliation of the occupant.
    pub affiliation: Option<String>,
    /// Role of the occupant.
    pub role: Option<String>,
}

/// A received presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// Sender JID.
    pub from: Option<String>,
    /// `type` (`None` = available; `unavailable`, `error`, ...).
    pub kind: Option<String>,
    /// MUC occupant data, for room presences.
    pub muc: Option<MucUser>,
    /// Set on `type='error'`.
    pub error: Option<StanzaError>,
}

impl Presence {
    /// A room's presence for this very user (status 110): the join completed.
    pub fn is_muc_self(&self) -> bool {
        self.muc.as_ref().is_some_and(|m| m.status.contains(&110))
    }
}

/// `iq` type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqType {
    /// `get`.
    Get,
    /// `set`.
    Set,
    /// `result`.
    Result,
    /// `error`.
    Error,
}

/// A received iq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iq {
    /// Sender JID (`None`: the server on the user's behalf).
    pub from: Option<String>,
    /// Id to answer with.
    pub id: String,
    /// Type.
    pub kind: IqType,
    /// The first payload child as (name, namespace).
    pub payload: Option<(String, String)>,
    /// The bound JID in a bind result.
    pub bind_jid: Option<String>,
    /// Set on `type='error'`.
    pub error: Option<StanzaError>,
}

impl Iq {
    /// A XEP-0199 ping to answer.
    pub fn is_ping(&self) -> bool {
        self.kind == IqType::Get && self.payload.as_ref().is_some_and(|(n, s)| n == "ping" && s == ns::PING)
    }
}

impl Incoming {
    /// Types a parsed item.
    pub fn from_item(item: Item) -> Incoming {
        match item {
            Item::Open(e) => Incoming::Open {
                id: e.attr("id").map(str::to_string),
                from: e.attr("from").map(str::to_string),
            },
            Item::Close => Incoming::Close,
            Item::Element(e) => Incoming::from_element(e),
        }
    }

    /// Whether XEP-0198 counts it (messages, presences and iqs; not nonzas).
    pub fn is_stanza(&self) -> bool {
        matches!(self, Incoming::Message(_) | Incoming::Presence(_) | Incoming::Iq(_))
    }

    fn from_element(e: Element) -> Incoming {
        let attr = |name: &str| e.attr(name).map(str::to_string);
        match (e.ns.as_str(), e.name.as_str()) {
            (ns::CLIENT, "message") => Incoming::Message(message(&e)),
            (ns::CLIENT, "presence") => Incoming::Presence(Presence {
                from: attr("from"),
                kind: attr("type"),
                muc: e.child("x", ns::MUC_USER).map(|x| {
                    let item = x.child("item", ns::MUC_USER);
                    MucUser {
                        status: (x.children.iter())
                            .filter(|c| c.is("status", ns::MUC_USER))
                            .filter_map(|c| c.attr("code")?.parse().ok())
                            .collect(),
                        affiliation: item.and_then(|i| i.attr("affiliation")).map(str::to_string),
                        role: item.and_then(|i| i.attr("role")).map(str::to_string),
                    }
                }),
                error: stanza_error(&e),
            }),
            (ns::CLIENT, "iq") => Incoming::Iq(Iq {
                from: attr("from"),
                id: attr("id").unwrap_or_default(),
                kind: match e.attr("type") {
                    Some("get") => IqType::Get,
                    Some("set") => IqType::Set,
                    Some("result") => IqType::Result,
                    _ => IqType::Error,
                },
                payload: (e.children.iter())
                    .find(|c| c.name != "error")
                    .map(|c| (c.name.clone(), c.ns.clone())),
                bind_jid: (e.child("bind", ns::BIND))
                    .and_then(|b| b.child("jid", ns::BIND))
                    .map(|j| j.text.trim().to_string()),
                error: stanza_error(&e),
            }),
            (ns::STREAMS, "features") => Incoming::Features(Features {
                starttls: (e.child("starttls", ns::TLS)).map(|s| s.child("required", ns::TLS).is_some()),
                mechanisms: (e.child("mechanisms", ns::SASL))
                    .map(|m| (m.children.iter()).map(|c| c.text.trim().to_string()).collect())
                    .unwrap_or_default(),
                bind: e.child("bind", ns::BIND).is_some(),
                session_required: (e.child("session", ns::SESSION))
                    .is_some_and(|s| s.child("optional", ns::SESSION).is_none()),
                sm: e.child("sm", ns::SM).is_some(),
            }),
            (ns::STREAMS, "error") => Incoming::StreamError {
                condition: first_child_in(&e, ns::STREAM_ERRORS, "text")
                    .unwrap_or_else(|| "undefined-condition".into()),
                text: e.child("text", ns::STREAM_ERRORS).map(|t| t.text.clone()),
            },
            (ns::TLS, "proceed") => Incoming::TlsProceed,
            (ns::TLS, "failure") => Incoming::TlsFailure,
            (ns::SASL, "challenge") => Incoming::SaslChallenge(e.text.trim().to_string()),
            (ns::SASL, "success") => Incoming::SaslSuccess(e.text.trim().to_string()),
            (ns::SASL, "failure") => {
                Incoming::SaslFailure(first_child_in(&e, ns::SASL, "text").unwrap_or_else(|| "not-authorized".into()))
            }
            (ns::SM, "enabled") => Incoming::SmEnabled {
                id: attr("id"),
                resume: matches!(e.attr("resume"), Some("true" | "1")),
            },
            (ns::SM, "failed") => Incoming::SmFailed(first_child_in(&e, ns::STANZAS, "text").unwrap_or_default()),
            (ns::SM, "r") => Incoming::SmRequest,
            (ns::SM, "a") => match e.attr("h").and_then(|h| h.parse().ok()) {
                Some(h) => Incoming::SmAck { h },
                None => Incoming::Other { name: e.name, ns: e.ns },
            },
            _ => Incoming::Other { name: e.name, ns: e.ns },
        }
    }
}

/// The name of the first child in `ns` that is not named `except`.
fn first_child_in(e: &Element, ns: &str, except: &str) -> Option<String> {
    (e.children.iter())
        .find(|c| c.ns == ns && c.name != except)
        .map(|c| c.name.clone())
}

fn stanza_error(e: &Element) -> Option<StanzaError> {
    if e.attr("type") != Some("error") {
        return None;
    }
    let err = e.child("error", ns::CLIENT);
    Some(StanzaError {
        kind: err.and_then(|x| x.attr("type")).unwrap_or("cancel").to_string(),
        condition: err
            .and_then(|x| first_child_in(x, ns::STANZAS, "text"))
            .unwrap_or_else(|| "undefined-condition".into()),
        text: err.and_then(|x| x.child("text", ns::STANZAS)).map(|t| t.text.clone()),
    })
}

fn message(e: &Element) -> Message {
    let id_of = |name: &str, ns: &str| e.child(name, ns).and_then(|c| c.attr("id")).map(str::to_string);
    Message {
        from: e.attr("from").map(str::to_string),
        to: e.attr("to").map(str::to_string),
        id: e.attr("id").map(str::to_string),
        kind: match e.attr("type") {
            Some("chat") => MessageType::Chat,
            Some("groupchat") => MessageType::GroupChat,
            Some("headline") => MessageType::Headline,
            Some("error") => MessageType::Error,
            _ => MessageType::Normal,
        },
        body: e.child("body", ns::CLIENT).map(|b| b.text.clone()),
        stanza_ids: (e.children.iter())
            .filter(|c| c.is("stanza-id", ns::SID))
            .filter_map(|c| {
                Some(StanzaId {
                    id: c.attr("id")?.to_string(),
                    by: c.attr("by")?.to_string(),
                })
            })
            .collect(),
        receipt_request: e.child("request", ns::RECEIPTS).is_some(),
        markable: e.child("markable", ns::MARKERS).is_some(),
        received_of: id_of("received", ns::RECEIPTS),
        displayed_of: id_of("displayed", ns::MARKERS),
        delayed: e.child("delay", ns::DELAY).is_some(),
        error: stanza_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::xmpp::parser::StreamParser;

    /// Parses a TCP stream (header added) into typed items.
    fn parse(xml: &str) -> Vec<Incoming> {
        let mut p = StreamParser::default();
        p.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x'>");
        p.feed(xml.as_bytes());
        let mut out = Vec::new();
        while let Some(item) = p.next_item().unwrap() {
            out.push(Incoming::from_item(item));
        }
        out.remove(0);
        out
    }

    fn one(xml: &str) -> Incoming {
        let mut items = parse(xml);
        assert_eq!(items.len(), 1, "{items:?}");
        items.remove(0)
    }

    #[test]
    fn features_before_and_after_authentication() {
        let pre = one(
            "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
            <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism>\
            <mechanism>PLAIN</mechanism></mechanisms></stream:features>",
        );
        assert_eq!(
            pre,
            Incoming::Features(Features {
                starttls: Some(true),
                mechanisms: vec!["SCRAM-SHA-1".into(), "PLAIN".into()],
                ..Features::default()
            })
        );
        let post = one("<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
            <session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>\
            <sm xmlns='urn:xmpp:sm:3'/><sm xmlns='urn:xmpp:sm:2'/></stream:features>");
        let Incoming::Features(f) = post else { panic!() };
        assert!(f.bind && f.sm && !f.session_required && f.starttls.is_none());
        let legacy = one("<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
            <session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></stream:features>");
        assert!(matches!(legacy, Incoming::Features(f) if f.session_required && !f.sm));
    }

    #[test]
    fn sasl_tls_and_stream_management_nonzas() {
        let items = parse(
            "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\
             <challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>cj1hYmM=</challenge>\
             <success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\
             <failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>bad</text></failure>\
             <enabled xmlns='urn:xmpp:sm:3' id='abc' resume='true' max='300'/>\
             <failed xmlns='urn:xmpp:sm:3'><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>\
             <r xmlns='urn:xmpp:sm:3'/><a xmlns='urn:xmpp:sm:3' h='4294967295'/><a xmlns='urn:xmpp:sm:3' h='x'/>",
        );
        assert_eq!(
            items,
            vec![
                Incoming::TlsProceed,
                Incoming::SaslChallenge("cj1hYmM=".into()),
                Incoming::SaslSuccess(String::new()),
                Incoming::SaslFailure("not-authorized".into()),
                Incoming::SmEnabled {
                    id: Some("abc".into()),
                    resume: true
                },
                Incoming::SmFailed("unexpected-request".into()),
                Incoming::SmRequest,
                Incoming::SmAck { h: u32::MAX },
                Incoming::Other {
                    name: "a".into(),
                    ns: ns::SM.into()
                },
            ]
        );
        assert!(!items.iter().any(Incoming::is_stanza));
    }

    #[test]
    fn one_to_one_message_with_receipt_request_marker_and_archive_id() {
        let m = one(
            "<message from='user1@localhost/r1' to='user2@localhost' id='c-1' type='chat'>\
            <body>hi &amp; bye</body><request xmlns='urn:xmpp:receipts'/>\
            <markable xmlns='urn:xmpp:chat-markers:0'/>\
            <stanza-id xmlns='urn:xmpp:sid:0' id='AB12' by='user2@localhost'/></message>",
        );
        let Incoming::Message(m) = m else { panic!("{m:?}") };
        assert_eq!(m.kind, MessageType::Chat);
        assert_eq!(m.body.as_deref(), Some("hi & bye"));
        assert_eq!(m.id.as_deref(), Some("c-1"));
        assert!(m.receipt_request && m.markable && !m.delayed);
        assert_eq!(m.stanza_id_by("user2@localhost"), Some("AB12"));
        assert_eq!(m.stanza_id_by("room@conference.localhost"), None);
        assert_eq!((m.received_of, m.displayed_of), (None, None));
    }

    #[test]
    fn receipts_markers_groupchat_and_bounces() {
        let items = parse(
            "<message from='user2@localhost/r' type='chat'><received xmlns='urn:xmpp:receipts' id='c-1'/></message>\
             <message from='user2@localhost/r' type='chat'><displayed xmlns='urn:xmpp:chat-markers:0' id='c-1'/></message>\
             <message from='room@conference.localhost/user1' type='groupchat' id='g-1'><body>all</body>\
               <stanza-id xmlns='urn:xmpp:sid:0' id='S9' by='room@conference.localhost'/>\
               <delay xmlns='urn:xmpp:delay' stamp='2024-01-01T00:00:00Z'/></message>\
             <message from='nobody@localhost' type='error' id='c-2'><error type='cancel'>\
               <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
               <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no such user</text></error></message>",
        );
        let [
            Incoming::Message(rcv),
            Incoming::Message(dsp),
            Incoming::Message(grp),
            Incoming::Message(err),
        ] = &items[..]
        else {
            panic!("{items:?}")
        };
        assert_eq!(rcv.received_of.as_deref(), Some("c-1"));
        assert_eq!(dsp.displayed_of.as_deref(), Some("c-1"));
        assert_eq!(grp.kind, MessageType::GroupChat);
        assert_eq!(grp.stanza_id_by("room@conference.localhost"), Some("S9"));
        assert!(grp.delayed);
        assert_eq!(err.kind, MessageType::Error);
        let e = err.error.as_ref().unwrap();
        assert_eq!(
            (e.kind.as_str(), e.condition.as_str(), e.text.as_deref()),
            ("cancel", "service-unavailable", Some("no such user"))
        );
    }

    #[test]
    fn muc_presences_and_iqs() {
        let items = parse(
            "<presence from='room@conference.localhost/user1'><x xmlns='http://jabber.org/protocol/muc#user'>\
               <item affiliation='owner' role='moderator'/><status code='110'/><status code='201'/></x></presence>\
             <presence from='room@conference.localhost/user2' type='unavailable'/>\
             <iq from='localhost' id='p1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>\
             <iq id='bind' type='result'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>user1@localhost/r</jid></bind></iq>\
             <iq id='q' type='error'><query xmlns='jabber:iq:version'/><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
        let Incoming::Presence(own) = &items[0] else { panic!() };
        assert!(own.is_muc_self());
        let muc = own.muc.as_ref().unwrap();
        assert_eq!(muc.status, vec![110, 201]);
        assert_eq!(muc.affiliation.as_deref(), Some("owner"));
        let Incoming::Presence(gone) = &items[1] else { panic!() };
        assert!(!gone.is_muc_self());
        assert_eq!(gone.kind.as_deref(), Some("unavailable"));
        let Incoming::Iq(ping) = &items[2] else { panic!() };
        assert!(ping.is_ping());
        assert_eq!((ping.id.as_str(), ping.from.as_deref()), ("p1", Some("localhost")));
        let Incoming::Iq(bind) = &items[3] else { panic!() };
        assert_eq!(bind.bind_jid.as_deref(), Some("user1@localhost/r"));
        assert!(!bind.is_ping());
        let Incoming::Iq(err) = &items[4] else { panic!() };
        assert_eq!(err.kind, IqType::Error);
        assert_eq!(err.payload, Some(("query".into(), "jabber:iq:version".into())));
        assert_eq!(err.error.as_ref().unwrap().condition, "item-not-found");
        assert!(items.iter().all(Incoming::is_stanza));
    }

    #[test]
    fn stream_errors_and_close() {
        let items = parse(
            "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Replaced by new connection</text></stream:error>\
             </stream:stream>",
        );
        assert_eq!(
            items,
            vec![
                Incoming::StreamError {
                    condition: "conflict".into(),
                    text: Some("Replaced by new connection".into())
                },
                Incoming::Close
            ]
        );
    }
}
