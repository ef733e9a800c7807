//! Sharing strings again when the durable store rebuilds: while [`interning`] runs, every id
//! and encoded push decoded from a snapshot or the log is looked up in one table, so that a
//! user id named by thousands of records is one allocation again (as in the live store, where
//! ids are interned), and a group message waiting in many inboxes is one frame.
//!
//! Outside [`interning`] the helpers decode as plain serde would. Only decoding goes through
//! here; nothing here decides anything.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio_tungstenite::tungstenite::Utf8Bytes;

#[derive(Default)]
struct Tables {
    strs: FxHashSet<Arc<str>>,
    /// Frames by a hash of their text (frames are long: no second copy as a key).
    frames: FxHashMap<u64, Vec<Utf8Bytes>>,
}

thread_local! {
    static TABLES: RefCell<Option<Tables>> = const { RefCell::new(None) };
}

/// Runs `f` with interning on (on this thread); the tables are dropped after it.
pub(super) fn interning<R>(f: impl FnOnce() -> R) -> R {
    TABLES.with(|t| *t.borrow_mut() = Some(Tables::default()));
    let r = f();
    TABLES.with(|t| *t.borrow_mut() = None);
    r
}

/// The shared copy of `s` (a new one outside [`interning`]).
pub(super) fn arc(s: &str) -> Arc<str> {
    TABLES.with(|t| match &mut *t.borrow_mut() {
        None => Arc::from(s),
        Some(t) => match t.strs.get(s) {
            Some(a) => a.clone(),
            None => {
                let a: Arc<str> = Arc::from(s);
                t.strs.insert(a.clone());
                a
            }
        },
    })
}

/// The shared copy of frame `s`.
fn frame(s: String) -> Utf8Bytes {
    TABLES.with(|t| match &mut *t.borrow_mut() {
        None => Utf8Bytes::from(s),
        Some(t) => {
            let bucket = t.frames.entry(FxBuildHasher.hash_one(s.as_str())).or_default();
            if let Some(f) = bucket.iter().find(|f| f.as_str() == s) {
                return f.clone();
            }
            let f = Utf8Bytes::from(s);
            bucket.push(f.clone());
            f
        }
    })
}

/// A string decoded through the table.
#[derive(PartialEq, Eq, Hash)]
struct Shared(Arc<str>);

impl<'de> Deserialize<'de> for Shared {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Shared;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Shared, E> {
                Ok(Shared(arc(v)))
            }
        }
        d.deserialize_str(Text)
    }
}

/// One id (`#[serde(deserialize_with = "intern::one")]`).
pub(super) fn one<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    Shared::deserialize(d).map(|s| s.0)
}

/// A sequence of ids (`Vec`, `VecDeque`, `Arc<[_]>`).
pub(super) fn seq<'de, D, C>(d: D) -> Result<C, D::Error>
where
    D: Deserializer<'de>,
    C: FromIterator<Arc<str>>,
{
    Vec::<Shared>::deserialize(d).map(|v| v.into_iter().map(|s| s.0).collect())
}

/// A map keyed by ids.
pub(super) fn keys<'de, D, V, S>(d: D) -> Result<std::collections::HashMap<Arc<str>, V, S>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
    S: BuildHasher + Default,
{
    let m = std::collections::HashMap::<Shared, V, FxBuildHasher>::deserialize(d)?;
    Ok(m.into_iter().map(|(k, v)| (k.0, v)).collect())
}

/// A map whose values are (id, count) pairs (a queue of group read counts).
pub(super) fn id_values<'de, D, K, C>(d: D) -> Result<C, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Eq + Hash,
    C: FromIterator<(K, (Arc<str>, u64))>,
{
    let v = Vec::<(K, (Shared, u64))>::deserialize(d)?;
    Ok(v.into_iter().map(|(k, (s, n))| (k, (s.0, n))).collect())
}

/// An encoded push, as text (`#[serde(with = "intern::frame_text")]`).
pub(super) mod frame_text {
    use super::*;

    pub fn serialize<S: Serializer>(frame: &Utf8Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(frame.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Utf8Bytes, D::Error> {
        String::deserialize(d).map(super::frame)
    }
}

/// Serializes a collection of pairs as a sequence (what [`id_values`] reads back).
pub(super) fn as_pairs<'a, S, I, K, V>(items: I, s: S) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    I: IntoIterator<Item = (&'a K, &'a V)>,
    K: Serialize + 'a,
    V: Serialize + 'a,
{
    s.collect_seq(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_ids_and_frames_are_shared_while_interning() {
        let text = r#"[["alice","bob","alice"],"frame","frame"]"#;
        #[derive(Deserialize)]
        struct T(
            #[serde(deserialize_with = "seq")] Vec<Arc<str>>,
            #[serde(with = "frame_text")] Utf8Bytes,
            #[serde(with = "frame_text")] Utf8Bytes,
        );
        let t: T = interning(|| serde_json::from_str(text).unwrap());
        assert!(Arc::ptr_eq(&t.0[0], &t.0[2]));
        assert_eq!(t.1.as_str().as_ptr(), t.2.as_str().as_ptr(), "one frame");
        let t: T = serde_json::from_str(text).unwrap();
        assert!(!Arc::ptr_eq(&t.0[0], &t.0[2]), "outside interning: plain decoding");
    }
}
