//! The TOML tree read into the raw structs with **every** unknown key and value of the wrong
//! type gathered, each under its key path, where serde alone stops at the first.
//!
//! [`Lenient`] is a serde deserializer over a `toml::Value` tree that keeps its key path. A
//! struct tells it its field names (`deserialize_struct`), so it leaves unknown keys out and
//! names them, with the nearest valid key as a suggestion; it checks each value's type itself
//! and words the mismatch (`expected an integer, got "ten"`). A derived visitor cannot skip a
//! field after an error, so a wrong type still ends a pass: [`read`] runs passes until one
//! succeeds, each leaving out the keys that failed before. Every raw field is optional (or has
//! a default), so a key left out reads as absent; there is one pass more than wrong types.
//!
//! It must not judge values (ranges, units, combinations): that is [`super::check`]'s job,
//! which is told the keys left out here so it does not complain about them twice.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// (key path, what is wrong).
pub(super) type Problem = (String, String);

/// What [`read`] made of a tree.
pub(super) struct Read<T> {
    /// The raw structs without the problem keys; `None` when no pass could get through.
    pub(super) raw: Option<T>,
    /// Unknown keys and wrong types, in the order the tree was walked.
    pub(super) problems: Vec<Problem>,
    /// Keys whose values were left out for a wrong type (absent in `raw`).
    pub(super) left_out: Vec<String>,
}

/// Reads `tree` into `T`, gathering every unknown key and every wrong type.
pub(super) fn read<T: DeserializeOwned>(tree: &toml::Table) -> Read<T> {
    let root = toml::Value::Table(tree.clone());
    let mut left_out: Vec<LeftOut> = Vec::new();
    loop {
        let state = State {
            left_out: &left_out,
            problems: RefCell::new(Vec::new()),
        };
        let result = T::deserialize(Lenient {
            value: &root,
            path: String::new(),
            state: &state,
        });
        let mut problems = state.problems.into_inner();
        let keys = || left_out.iter().map(|l| l.key.clone()).collect();
        match result {
            Ok(raw) => {
                return Read {
                    raw: Some(raw),
                    problems,
                    left_out: keys(),
                };
            }
            Err(e) => {
                let path = e.path.unwrap_or_default();
                let key = owning_key(&path).to_string();
                if key.is_empty() || left_out.iter().any(|l| l.key == key) {
                    // Leaving the key out did not help (not expected with optional raw
                    // fields): report what is known rather than loop.
                    problems.push((path, e.message));
                    return Read {
                        raw: None,
                        problems,
                        left_out: keys(),
                    };
                }
                left_out.push(LeftOut {
                    key,
                    problem: (path, e.message),
                });
            }
        }
    }
}

/// The key a problem at `path` belongs to: `slo.checks[1]` -> `slo.checks` (array elements
/// cannot be left out without shifting the ones after them).
fn owning_key(path: &str) -> &str {
    let mut p = path;
    while p.ends_with(']') {
        match p.rfind('[') {
            Some(i) => p = &p[..i],
            None => break,
        }
    }
    p
}

/// What is wrong with an unknown key: the nearest of the `valid` keys when one is close
/// (Jaro-Winkler >= 0.8, which catches dropped, doubled and swapped letters, case and `-` for
/// `_`, and not unrelated words), else the list of valid keys.
pub(super) fn unknown_key(key: &str, valid: &[&str]) -> String {
    let nearest = valid
        .iter()
        .map(|v| (strsim::jaro_winkler(&key.to_ascii_lowercase(), v), *v))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match nearest {
        Some((_, v)) => format!("unknown key, did you mean `{v}`?"),
        None => {
            let list: Vec<String> = valid.iter().map(|v| format!("`{v}`")).collect();
            format!("unknown key (valid here: {})", list.join(", "))
        }
    }
}

struct LeftOut {
    key: String,
    problem: Problem,
}

struct State<'a> {
    left_out: &'a [LeftOut],
    problems: RefCell<Vec<Problem>>,
}

/// A problem, and where (set by the innermost deserializer that knows it).
#[derive(Debug)]
struct Error {
    path: Option<String>,
    message: String,
}

impl Error {
    fn at(mut self, path: &str) -> Error {
        self.path.get_or_insert_with(|| path.to_string());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error {
            path: None,
            message: msg.to_string(),
        }
    }
}

/// A value as a problem shows it: scalars as written, containers by kind.
fn shown(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => format!("{f:?}"),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => "an array".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

struct Lenient<'a> {
    value: &'a toml::Value,
    path: String,
    state: &'a State<'a>,
}

impl<'a> Lenient<'a> {
    fn wrong(&self, expected: &str) -> Error {
        Error {
            path: Some(self.path.clone()),
            message: format!("expected {expected}, got {}", shown(self.value)),
        }
    }

    fn unsigned(&self, max: u64) -> Result<u64, Error> {
        match self.value {
            toml::Value::Integer(i) if *i >= 0 && *i as u64 <= max => Ok(*i as u64),
            toml::Value::Integer(_) if max == u64::MAX => Err(self.wrong("an integer >= 0")),
            toml::Value::Integer(_) => Err(self.wrong(&format!("an integer from 0 to {max}"))),
            _ => Err(self.wrong("an integer")),
        }
    }

    fn table(&self) -> Result<&'a toml::Table, Error> {
        self.value.as_table().ok_or_else(|| self.wrong("a table"))
    }

    /// The entries of a table, for a struct with these `fields` or (`None`) for a map.
    fn entries(&self, fields: Option<&'static [&'static str]>) -> Result<Entries<'a>, Error> {
        Ok(Entries {
            entries: self.table()?.iter(),
            fields,
            path: self.path.clone(),
            next: None,
            state: self.state,
        })
    }
}

macro_rules! unsigned {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let v = self.unsigned(<$ty>::MAX as u64)?;
            visitor.visit_u64(v).map_err(|e: Error| e.at(&self.path))
        }
    )*};
}

impl<'de, 'a> de::Deserializer<'de> for Lenient<'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let path = self.path.clone();
        match self.value {
            toml::Value::String(s) => visitor.visit_str(s),
            toml::Value::Integer(i) => visitor.visit_i64(*i),
            toml::Value::Float(f) => visitor.visit_f64(*f),
            toml::Value::Boolean(b) => visitor.visit_bool(*b),
            toml::Value::Datetime(d) => visitor.visit_string(d.to_string()),
            toml::Value::Array(_) => return self.deserialize_seq(visitor),
            toml::Value::Table(_) => return self.deserialize_map(visitor),
        }
        .map_err(|e: Error| e.at(&path))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            toml::Value::Boolean(b) => visitor.visit_bool(*b),
            _ => Err(self.wrong("true or false")),
        }
    }

    unsigned!(deserialize_u8: u8, deserialize_u16: u16, deserialize_u32: u32, deserialize_u64: u64);

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            toml::Value::Integer(i) => visitor.visit_i64(*i).map_err(|e: Error| e.at(&self.path)),
            _ => Err(self.wrong("an integer")),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            toml::Value::Float(f) => visitor.visit_f64(*f),
            toml::Value::Integer(i) => visitor.visit_f64(*i as f64),
            _ => Err(self.wrong("a number")),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            toml::Value::String(s) => visitor.visit_str(s).map_err(|e: Error| e.at(&self.path)),
            _ => Err(self.wrong("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // A key that is present has a value: absent keys never get here.
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let Some(items) = self.value.as_array() else {
            return Err(self.wrong("an array"));
        };
        let elements = Elements {
            items: items.iter().enumerate(),
            path: self.path.clone(),
            state: self.state,
        };
        visitor.visit_seq(elements).map_err(|e: Error| e.at(&self.path))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let entries = self.entries(None)?;
        visitor.visit_map(entries).map_err(|e: Error| e.at(&self.path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let entries = self.entries(Some(fields))?;
        visitor.visit_map(entries).map_err(|e: Error| e.at(&self.path))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i128 char bytes byte_buf unit unit_struct tuple_struct enum identifier
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
}

/// A table's entries as a serde map. Unknown keys (for a struct) and keys left out by an
/// earlier pass are skipped, their problems noted as the walk passes them.
struct Entries<'a> {
    entries: toml::map::Iter<'a, String, toml::Value>,
    fields: Option<&'static [&'static str]>,
    path: String,
    next: Option<(&'a toml::Value, String)>,
    state: &'a State<'a>,
}

impl<'de, 'a> MapAccess<'de> for Entries<'a> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        for (key, value) in self.entries.by_ref() {
            let path = child(&self.path, key);
            let mut problems = self.state.problems.borrow_mut();
            if let Some(fields) = self.fields
                && !fields.contains(&key.as_str())
            {
                problems.push((path, unknown_key(key, fields)));
                continue;
            }
            let before = problems.len();
            problems.extend(
                self.state
                    .left_out
                    .iter()
                    .filter(|l| l.key == path)
                    .map(|l| l.problem.clone()),
            );
            if problems.len() > before {
                continue;
            }
            drop(problems);
            let k = seed
                .deserialize(IntoDeserializer::<Error>::into_deserializer(key.as_str()))
                .map_err(|e: Error| e.at(&path))?;
            self.next = Some((value, path));
            return Ok(Some(k));
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let (value, path) = self.next.take().expect("serde asks for a value after its key");
        let state = self.state;
        seed.deserialize(Lenient {
            value,
            path: path.clone(),
            state,
        })
        .map_err(|e: Error| e.at(&path))
    }
}

struct Elements<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, toml::Value>>,
    path: String,
    state: &'a State<'a>,
}

impl<'de, 'a> SeqAccess<'de> for Elements<'a> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>, Error> {
        let Some((i, value)) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{i}]", self.path);
        seed.deserialize(Lenient {
            value,
            path: path.clone(),
            state: self.state,
        })
        .map(Some)
        .map_err(|e: Error| e.at(&path))
    }
}
