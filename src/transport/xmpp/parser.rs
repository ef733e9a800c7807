//! The inbound XML stream cut into top-level elements: bytes go in as they arrive (any split,
//! even inside a UTF-8 character or a tag), whole [`Element`] trees come out. No I/O.
//!
//! quick-xml does the XML; this module only tracks depth. Each call to [`StreamParser::next_item`]
//! reads from the start of the unconsumed bytes; when quick-xml stops at the end of the buffer
//! inside a tag, reference or element (an "unclosed" error or plain end of input), that is a
//! stanza still arriving and the bytes are kept for the next call. Anything else is a
//! [`ParseError`] and fatal to the stream (RFC 6120 `not-well-formed`).
//!
//! Framing: on TCP the stream header `<stream:stream ...>` opens one document whose children
//! are the stanzas; on WebSocket (RFC 7395) every message is one complete element, `<open/>` and
//! `<close/>` included. Both come out of the same parser as [`Item`]s.
//!
//! Namespaces are resolved the simple way XMPP needs: an element's `xmlns`, or the declaration
//! of its prefix on it or an ancestor, or its parent's namespace. Top-level elements without
//! one are in the stream's default namespace (`jabber:client` unless the header says else).

use quick_xml::Reader;
use quick_xml::errors::{Error as XmlError, IllFormedError, SyntaxError};
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use thiserror::Error;

use super::ns;

/// One element with its attributes, children and text; what a stanza is parsed into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name (`message`, `features`).
    pub name: String,
    /// Resolved namespace.
    pub ns: String,
    /// Attributes other than namespace declarations, by qualified name, in document order.
    pub attrs: Vec<(String, String)>,
    /// Child elements in order.
    pub children: Vec<Element>,
    /// Character data directly inside (references resolved; concatenated).
    pub text: String,
}

impl Element {
    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first child named `name` in namespace `ns`.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name && c.ns == ns)
    }

    /// Whether this is `name` in namespace `ns`.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }
}

/// What the stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The stream header (TCP `<stream:stream>`, WebSocket `<open/>`), without children.
    Open(Element),
    /// `</stream:stream>` (TCP) or `<close/>` (WebSocket).
    Close,
    /// A complete top-level element: a stanza, features, SASL or stream-management nonza.
    Element(Element),
}

/// Why the inbound stream cannot be parsed further (fatal to the connection).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// Bytes that are not UTF-8.
    #[error("stream is not UTF-8")]
    Utf8,
    /// XML that is not well-formed.
    #[error("not well-formed XML: {0}")]
    Xml(String),
    /// Character data between top-level elements.
    #[error("text outside any stanza: {0:?}")]
    TopLevelText(String),
    /// A DTD or an entity other than the five predefined ones (RFC 6120 forbids both).
    #[error("restricted XML: {0}")]
    Restricted(String),
    /// One element grew past the limit before it was complete.
    #[error("element larger than {0} bytes")]
    TooLarge(usize),
}

/// Room kept beyond the start of a stanza still arriving.
const KEEP: usize = 1024;

/// Incremental parser of one inbound stream.
#[derive(Debug)]
pub struct StreamParser {
    buf: Vec<u8>,
    limit: usize,
    /// Namespace of unprefixed top-level elements (from the stream header).
    default_ns: String,
    /// Prefix declarations of the stream header (`stream` -> streams namespace).
    prefixes: Vec<(String, String)>,
}

impl Default for StreamParser {
    fn default() -> Self {
        StreamParser::new(1 << 20)
    }
}

impl StreamParser {
    /// A parser that refuses elements larger than `limit` bytes.
    pub fn new(limit: usize) -> StreamParser {
        StreamParser {
            buf: Vec::new(),
            limit,
            default_ns: ns::CLIENT.to_string(),
            prefixes: vec![("stream".into(), ns::STREAMS.into())],
        }
    }

    /// Appends bytes read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer to read from the socket into, with room for at least `room` more bytes
    /// (what is appended is parsed by [`StreamParser::next_item`]). A connection reads into it
    /// directly: it has no read buffer of its own.
    pub fn read_buf(&mut self, room: usize) -> &mut Vec<u8> {
        self.buf.reserve(room);
        &mut self.buf
    }

    /// Bytes received and not yet part of a yielded item.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the buffer holds room for.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Everything complete was taken: the room that is not needed goes back to the allocator.
    /// An empty buffer is freed (an idle connection holds none: the next read allocates
    /// again); one holding the start of a stanza keeps little more than that start.
    pub fn give_back(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        } else if self.buf.capacity() > 2 * self.buf.len() + KEEP {
            self.buf.shrink_to(self.buf.len() + KEEP);
        }
    }

    /// Forgets everything: a stream restart (after STARTTLS or SASL success).
    pub fn reset(&mut self) {
        *self = StreamParser::new(self.limit);
    }

    /// The next complete item, `None` until more bytes arrive.
    pub fn next_item(&mut self) -> Result<Option<Item>, ParseError> {
        let text = match std::str::from_utf8(&self.buf) {
            Ok(s) => s,
            // A character cut by the read: parse up to it, keep its first bytes.
            Err(e) if e.error_len().is_none() => {
                std::str::from_utf8(&self.buf[..e.valid_up_to()]).expect("valid prefix")
            }
            Err(_) => return Err(ParseError::Utf8),
        };
        let (consumed, item) = parse_one(text, &self.default_ns, &self.prefixes)?;
        // TCP: the header's declarations scope every stanza (WebSocket stanzas carry theirs).
        let declared = match &item {
            Some(Item::Open(header)) if header.ns == ns::STREAMS => header_declarations(text, consumed),
            _ => Vec::new(),
        };
        self.buf.drain(..consumed);
        if item.is_none() && self.buf.len() > self.limit {
            return Err(ParseError::TooLarge(self.limit));
        }
        if item.is_none() {
            self.give_back();
        }
        for (prefix, uri) in declared {
            match prefix {
                None => self.default_ns = uri,
                Some(p) => self.prefixes.push((p, uri)),
            }
        }
        Ok(item)
    }
}

/// The namespace declarations on the header that ends at `end` (re-read: cheap, once a stream).
fn header_declarations(text: &str, end: usize) -> Vec<(Option<String>, String)> {
    let mut reader = Reader::from_str(&text[..end]);
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) | Ok(Event::Empty(start)) => return declarations(&start),
            Ok(Event::Eof) | Err(_) => return Vec::new(),
            Ok(_) => continue,
        }
    }
}

fn declarations(start: &BytesStart<'_>) -> Vec<(Option<String>, String)> {
    start
        .attributes()
        .flatten()
        .filter_map(|a| {
            let key: &str = a.key.as_ref();
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()?
                .into_owned();
            match key.strip_prefix("xmlns") {
                Some("") => Some((None, value)),
                Some(p) => p.strip_prefix(':').map(|p| (Some(p.to_string()), value)),
                None => None,
            }
        })
        .collect()
}

/// An element being built, with the prefixes it declares.
struct Open {
    element: Element,
    prefixes: Vec<(String, String)>,
}

/// Reads one item from the start of `text`; returns the bytes it used (whitespace included).
fn parse_one(text: &str, default_ns: &str, base: &[(String, String)]) -> Result<(usize, Option<Item>), ParseError> {
    let mut reader = Reader::from_str(text);
    // The stream header's end tag comes without its start (read in an earlier call).
    reader.config_mut().allow_unmatched_ends = true;
    let mut stack: Vec<Open> = Vec::new();
    let mut consumed = 0;
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) if still_arriving(&e, &text[reader.error_position() as usize..]) => return Ok((consumed, None)),
            Err(e) => return Err(ParseError::Xml(e.to_string())),
        };
        let done = match event {
            Event::Eof => return Ok((consumed, None)),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => None,
            Event::DocType(_) => return Err(ParseError::Restricted("DOCTYPE".into())),
            Event::Text(t) => {
                let t = t.xml10_content();
                match stack.last_mut() {
                    Some(open) => open.element.text.push_str(&t),
                    None if t.trim().is_empty() => {}
                    None => return Err(ParseError::TopLevelText(t.trim().chars().take(40).collect())),
                }
                None
            }
            Event::CData(t) => {
                let t = t.xml10_content();
                match stack.last_mut() {
                    Some(open) => open.element.text.push_str(&t),
                    None => return Err(ParseError::TopLevelText(t.chars().take(40).collect())),
                }
                None
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => resolve_predefined_entity(&r)
                        .ok_or_else(|| ParseError::Restricted(format!("entity &{};", &*r)))?
                        .to_string(),
                    Err(e) => return Err(ParseError::Xml(e.to_string())),
                };
                match stack.last_mut() {
                    Some(open) => open.element.text.push_str(&c),
                    None => return Err(ParseError::TopLevelText(c)),
                }
                None
            }
            Event::Start(start) => {
                let open = open_element(&start, &stack, default_ns, base)?;
                if stack.is_empty() && open.element.is("stream", ns::STREAMS) {
                    Some(Item::Open(open.element))
                } else {
                    stack.push(open);
                    None
                }
            }
            Event::Empty(start) => {
                let element = open_element(&start, &stack, default_ns, base)?.element;
                match stack.last_mut() {
                    Some(parent) => {
                        parent.element.children.push(element);
                        None
                    }
                    None if element.is("open", ns::FRAMING) => Some(Item::Open(element)),
                    None if element.is("close", ns::FRAMING) => Some(Item::Close),
                    None => Some(Item::Element(element)),
                }
            }
            Event::End(end) => match stack.pop() {
                Some(open) => match stack.last_mut() {
                    Some(parent) => {
                        parent.element.children.push(open.element);
                        None
                    }
                    None => Some(Item::Element(open.element)),
                },
                None if end.local_name().as_ref() == "stream" => Some(Item::Close),
                None => {
                    let name = end.name();
                    let name: &str = name.as_ref();
                    return Err(ParseError::Xml(format!("end tag </{name}> without a start")));
                }
            },
        };
        if stack.is_empty() {
            consumed = reader.buffer_position() as usize;
        }
        if let Some(item) = done {
            return Ok((consumed, Some(item)));
        }
    }
}

/// Whether a quick-xml error only means the input stops early (more bytes will complete it).
fn still_arriving(e: &XmlError, rest: &str) -> bool {
    match e {
        // `<!` or `<![CDA` cut short: the markup cannot be told yet.
        XmlError::Syntax(SyntaxError::InvalidBangMarkup) => rest.len() < 9 && !rest.contains('>'),
        XmlError::Syntax(_) => true,
        // `&am` at the very end; with a `<` after it the reference really is unclosed.
        XmlError::IllFormed(IllFormedError::UnclosedReference) => !rest.contains('<'),
        _ => false,
    }
}

fn open_element(
    start: &BytesStart<'_>,
    stack: &[Open],
    default_ns: &str,
    base: &[(String, String)],
) -> Result<Open, ParseError> {
    let mut prefixes = Vec::new();
    let mut own_default = None;
    for (prefix, uri) in declarations(start) {
        match prefix {
            None => own_default = Some(uri),
            Some(p) => prefixes.push((p, uri)),
        }
    }
    let qname: String = start.name().as_ref().to_string();
    let (prefix, name) = match qname.split_once(':') {
        Some((p, n)) => (Some(p), n.to_string()),
        None => (None, qname.clone()),
    };
    let ns = match prefix {
        Some(p) => prefixes
            .iter()
            .chain(stack.iter().rev().flat_map(|o| o.prefixes.iter()))
            .chain(base.iter().rev())
            .find(|(k, _)| k == p)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| ParseError::Xml(format!("undeclared prefix {p:?} on <{qname}>")))?,
        None => own_default.unwrap_or_else(|| match stack.last() {
            Some(parent) => parent.element.ns.clone(),
            None => default_ns.to_string(),
        }),
    };
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| ParseError::Xml(e.to_string()))?;
        let key: &str = attr.key.as_ref();
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| ParseError::Restricted(e.to_string()))?;
        attrs.push((key.to_string(), value.into_owned()));
    }
    Ok(Open {
        element: Element {
            name,
            ns,
            attrs,
            children: Vec::new(),
            text: String::new(),
        },
        prefixes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'>";
    const STANZAS: &str = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
        <mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features> \n\
        <message from='a@x/r' id='m&amp;1'><body>h\u{e9}llo &lt;&#x263A;&#9731;<![CDATA[<raw>]]></body>\
        <!-- note --><request xmlns='urn:xmpp:receipts'/></message>\
        <r xmlns='urn:xmpp:sm:3'/></stream:stream>";

    fn drain(p: &mut StreamParser) -> Vec<Item> {
        let mut out = Vec::new();
        while let Some(item) = p.next_item().unwrap() {
            out.push(item);
        }
        out
    }

    fn whole() -> Vec<Item> {
        let mut p = StreamParser::default();
        p.feed(format!("{HEADER}{STANZAS}").as_bytes());
        drain(&mut p)
    }

    #[test]
    fn a_whole_stream_yields_header_elements_and_close() {
        let items = whole();
        assert_eq!(items.len(), 5, "{items:#?}");
        let Item::Open(header) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(header.attr("id"), Some("s1"));
        let Item::Element(features) = &items[1] else { panic!() };
        assert!(features.is("features", ns::STREAMS));
        let mechs = features.child("mechanisms", ns::SASL).unwrap();
        assert_eq!(mechs.children[0].text, "SCRAM-SHA-1");
        let Item::Element(msg) = &items[2] else { panic!() };
        assert!(msg.is("message", ns::CLIENT));
        assert_eq!(msg.attr("id"), Some("m&1"));
        assert_eq!(
            msg.child("body", ns::CLIENT).unwrap().text,
            "h\u{e9}llo <\u{263a}\u{2603}<raw>"
        );
        assert!(msg.child("request", ns::RECEIPTS).is_some());
        let Item::Element(r) = &items[3] else { panic!() };
        assert!(r.is("r", ns::SM));
        assert_eq!(items[4], Item::Close);
    }

    /// Every split point (inside tags, references, CDATA, comments and UTF-8 characters) gives
    /// the same items as the whole stream, and nothing comes out early.
    #[test]
    fn any_split_into_two_reads_gives_the_same_items() {
        let bytes = format!("{HEADER}{STANZAS}").into_bytes();
        let expected = whole();
        for cut in 0..=bytes.len() {
            let mut p = StreamParser::default();
            p.feed(&bytes[..cut]);
            let mut items = drain(&mut p);
            p.feed(&bytes[cut..]);
            items.extend(drain(&mut p));
            assert_eq!(items, expected, "split at byte {cut}");
            assert_eq!(p.buffered(), 0);
        }
    }

    #[test]
    fn byte_by_byte_reads_give_the_same_items() {
        let bytes = format!("{HEADER}{STANZAS}").into_bytes();
        let mut p = StreamParser::default();
        let mut items = Vec::new();
        for b in &bytes {
            p.feed(std::slice::from_ref(b));
            items.extend(drain(&mut p));
        }
        assert_eq!(items, whole());
    }

    #[test]
    fn websocket_framing_opens_and_closes_with_empty_elements() {
        let mut p = StreamParser::default();
        p.feed(b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='w1' version='1.0'/>");
        p.feed(b"<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>");
        p.feed(b"<iq xmlns='jabber:client' type='result' id='b'/>");
        p.feed(b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>");
        let items = drain(&mut p);
        assert!(matches!(&items[0], Item::Open(e) if e.attr("id") == Some("w1")));
        assert!(matches!(&items[1], Item::Element(e) if e.is("features", ns::STREAMS)
            && e.child("bind", ns::BIND).is_some()));
        assert!(matches!(&items[2], Item::Element(e) if e.is("iq", ns::CLIENT)));
        assert_eq!(items[3], Item::Close);
    }

    #[test]
    fn restart_forgets_and_whitespace_keepalives_are_consumed() {
        let mut p = StreamParser::default();
        p.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>  \n ");
        assert!(matches!(p.next_item().unwrap(), Some(Item::Open(_))));
        assert_eq!(p.next_item().unwrap(), None);
        assert_eq!(p.buffered(), 0);
        p.feed(b"<proc");
        p.reset();
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_wait() {
        type Check = fn(&ParseError) -> bool;
        let cases: [(&[u8], Check); 6] = [
            (b"<a></b>", |e| matches!(e, ParseError::Xml(_))),
            (b"hello <a/>", |e| matches!(e, ParseError::TopLevelText(_))),
            (b"<a>&bogus;</a>", |e| matches!(e, ParseError::Restricted(_))),
            (b"<a>x & y</a>", |e| matches!(e, ParseError::Xml(_))),
            (b"<a>\xff</a>", |e| *e == ParseError::Utf8),
            (b"<!DOCTYPE a><a/>", |e| matches!(e, ParseError::Restricted(_))),
        ];
        for (input, check) in cases {
            let mut p = StreamParser::default();
            p.feed(input);
            let err = p.next_item().expect_err(&String::from_utf8_lossy(input));
            assert!(check(&err), "{:?}: {err:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn an_element_past_the_limit_is_refused() {
        let mut p = StreamParser::new(64);
        p.feed(b"<message><body>");
        assert_eq!(p.next_item().unwrap(), None);
        p.feed(&[b'x'; 100]);
        assert_eq!(p.next_item(), Err(ParseError::TooLarge(64)));
    }

    #[test]
    fn prefixes_resolve_through_ancestors_and_undeclared_ones_fail() {
        let mut p = StreamParser::default();
        p.feed(b"<iq xmlns:q='urn:q'><q:a><q:b/></q:a></iq>");
        let Some(Item::Element(iq)) = p.next_item().unwrap() else {
            panic!()
        };
        assert_eq!(iq.children[0].ns, "urn:q");
        assert_eq!(iq.children[0].children[0].ns, "urn:q");
        let mut p = StreamParser::default();
        p.feed(b"<x:iq/>");
        assert!(matches!(p.next_item(), Err(ParseError::Xml(_))));
    }
}
