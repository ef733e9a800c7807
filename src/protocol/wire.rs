//! A direct JSON writer for frames: the hot-path encoder of both directions.
//!
//! serde_json escapes every key and string byte by byte; frames have fixed ASCII keys and
//! mostly id-like values, so writing keys verbatim and copying strings that need no escaping
//! saves about two thirds of the encoding work (see `benches/protocol.rs`). Strings that do
//! need escaping go through serde_json, so there is one escaping implementation. The derived
//! `Serialize` impls of the frame types stay the reference: a unit test checks that this
//! writer produces the same JSON for every frame variant.

use serde::Serialize;

/// Builds one JSON object into a buffer.
pub(crate) struct ObjectWriter {
    buf: Vec<u8>,
}

/// True when `s` holds a byte JSON must escape. Folds without short-circuit so that the
/// compiler vectorizes it: strings are short and almost never need escaping.
fn needs_escape(s: &str) -> bool {
    s.bytes()
        .fold(false, |acc, b| acc | (b < 0x20) | (b == b'"') | (b == b'\\'))
}

impl ObjectWriter {
    /// Starts `{"op":"<op>"`.
    pub(crate) fn new(op: &str, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(b"{\"op\":\"");
        buf.extend_from_slice(op.as_bytes());
        buf.push(b'"');
        ObjectWriter { buf }
    }

    fn key(&mut self, key: &str) {
        self.buf.extend_from_slice(b",\"");
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    fn string(&mut self, s: &str) {
        if needs_escape(s) {
            serde_json::to_writer(&mut self.buf, s).expect("a str always serializes");
        } else {
            self.buf.push(b'"');
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.push(b'"');
        }
    }

    /// `,"key":"value"` (escaped as needed).
    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        self.string(value);
        self
    }

    /// `,"key":"value"` when present.
    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.str(key, v);
        }
        self
    }

    /// `,"key":N`.
    pub(crate) fn num(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        self.buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// `,"key":"N"`: a server id as a decimal string.
    pub(crate) fn id(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        self.buf.push(b'"');
        self.buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self.buf.push(b'"');
        self
    }

    /// `,"key":N` when present.
    pub(crate) fn opt_num(&mut self, key: &str, value: Option<u64>) -> &mut Self {
        if let Some(v) = value {
            self.num(key, v);
        }
        self
    }

    /// `,"key":{"ID":N}`: a one-entry map keyed by a server id.
    pub(crate) fn id_count(&mut self, key: &str, id: u64, count: u64) -> &mut Self {
        self.key(key);
        self.buf.extend_from_slice(b"{\"");
        self.buf.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
        self.buf.extend_from_slice(b"\":");
        self.buf.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
        self.buf.push(b'}');
        self
    }

    /// `,"key":true|false` when present.
    pub(crate) fn opt_bool(&mut self, key: &str, value: Option<bool>) -> &mut Self {
        if let Some(v) = value {
            self.bool(key, v);
        }
        self
    }

    /// `,"key":true|false`.
    pub(crate) fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.buf.extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    /// `,"key":["a","b"]`.
    pub(crate) fn str_list<S: AsRef<str>>(&mut self, key: &str, values: &[S]) -> &mut Self {
        self.key(key);
        self.buf.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            self.string(v.as_ref());
        }
        self.buf.push(b']');
        self
    }

    /// `,"key":<serde JSON of value>` for the rare, structured payloads.
    pub(crate) fn serde<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> &mut Self {
        self.key(key);
        serde_json::to_writer(&mut self.buf, value).expect("payloads serialize");
        self
    }

    /// Closes the object and returns the text.
    pub(crate) fn finish(&mut self) -> String {
        self.buf.push(b'}');
        let buf = std::mem::take(&mut self.buf);
        // Keys are ASCII literals; values are &str copied whole or serialized by serde_json.
        String::from_utf8(buf).expect("the writer only appends UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_only_what_needs_it() {
        let text = ObjectWriter::new("x", 16)
            .str("plain", "abc-1.2_Z")
            .str("quote", "a\"b\\c\n\u{1}é☃")
            .opt_str("absent", None)
            .num("n", 42)
            .id("mid", 7)
            .bool("b", false)
            .str_list("l", &["p", "q\"r"])
            .finish();
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["op"], "x");
        assert_eq!(v["plain"], "abc-1.2_Z");
        assert_eq!(v["quote"], "a\"b\\c\n\u{1}é☃");
        assert!(v.get("absent").is_none());
        assert_eq!(v["n"], 42);
        assert_eq!(v["mid"], "7");
        assert_eq!(v["b"], false);
        assert_eq!(v["l"], serde_json::json!(["p", "q\"r"]));
    }
}
