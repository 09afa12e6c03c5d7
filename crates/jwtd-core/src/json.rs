//! Strict JSON for JOSE headers and claims sets: duplicate member names rejected at every level
//! (RFC 7515 section 5.2 allows it and RFC 8725 recommends it), nesting depth bounded.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// Parses `bytes` as one JSON object, refusing duplicate member names and nesting deeper than
/// `max_depth` (the top-level object is depth 1).
pub fn parse_object(bytes: &[u8], max_depth: usize) -> Result<Map<String, Value>, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict {
        depth: 1,
        max_depth,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("expected a JSON object".into()),
    }
}

#[derive(Clone, Copy)]
struct Strict {
    depth: usize,
    max_depth: usize,
}

impl Strict {
    /// Called on entering a container at `self.depth`; returns the seed for its members.
    fn nested<E: de::Error>(self) -> Result<Strict, E> {
        if self.depth > self.max_depth {
            return Err(E::custom(format_args!(
                "JSON nested deeper than {} levels",
                self.max_depth
            )));
        }
        Ok(Strict {
            depth: self.depth + 1,
            max_depth: self.max_depth,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(inner)?;
            if let Some(key) = duplicate(&mut out, key, value) {
                return Err(de::Error::custom(format_args!(
                    "duplicate member name {key:?}"
                )));
            }
        }
        Ok(Value::Object(out))
    }
}

/// Inserts, returning the key back when it was already present.
fn duplicate(map: &mut Map<String, Value>, key: String, value: Value) -> Option<String> {
    use serde_json::map::Entry;
    match map.entry(key) {
        Entry::Vacant(v) => {
            v.insert(value);
            None
        }
        Entry::Occupied(o) => Some(o.key().clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_rejected_at_any_depth() {
        assert!(parse_object(br#"{"a":1,"a":2}"#, 8).is_err());
        assert!(parse_object(br#"{"a":{"b":1,"b":1}}"#, 8).is_err());
        assert!(parse_object(br#"{"a":[{"b":1,"b":1}]}"#, 8).is_err());
        // Escaped spelling of the same name is the same name.
        assert!(parse_object(br#"{"a":1,"\u0061":2}"#, 8).is_err());
        assert!(parse_object(br#"{"a":1,"b":2}"#, 8).is_ok());
    }

    #[test]
    fn depth_bounded() {
        assert!(parse_object(br#"{"a":[[1]]}"#, 3).is_ok());
        assert!(parse_object(br#"{"a":[[[1]]]}"#, 3).is_err());
        assert!(parse_object(br#"[1]"#, 3).is_err());
        assert!(parse_object(br#"{} x"#, 3).is_err());
    }
}

/// A string that borrows from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The members of one JSON object, kept as raw JSON text: the verify path's zero-copy view.
/// Building it checks every strictness rule (no duplicate member names at any depth, depth
/// bounded) without allocating a value tree.
pub struct Members<'a> {
    list: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Members<'a> {
    /// Parses `text` as one JSON object under the same rules as [`parse_object`]. Taking
    /// `&str` (UTF-8 checked once, by the caller) spares a UTF-8 check per member.
    pub fn parse(text: &'a str, max_depth: usize) -> Result<Members<'a>, String> {
        struct Top;
        impl<'de> Visitor<'de> for Top {
            type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut list: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::with_capacity(16);
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    if list.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format_args!(
                            "duplicate member name {key:?}"
                        )));
                    }
                    list.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(list)
            }
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let list = de::Deserializer::deserialize_map(&mut de, Top).map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        for (_, raw) in &list {
            if matches!(raw.get().as_bytes().first(), Some(b'{' | b'[')) {
                check_nested(raw.get(), max_depth)?;
            }
        }
        Ok(Members { list })
    }

    /// The raw JSON of the member named `name`.
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.list.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    /// True when the object has this member.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Walks a nested value (which sits at depth 2) checking duplicates and depth, building nothing.
fn check_nested(text: &str, max_depth: usize) -> Result<(), String> {
    #[derive(Clone, Copy)]
    struct Check {
        depth: usize,
        max_depth: usize,
    }
    impl Check {
        fn nested<E: de::Error>(self) -> Result<Check, E> {
            if self.depth > self.max_depth {
                return Err(E::custom(format_args!(
                    "JSON nested deeper than {} levels",
                    self.max_depth
                )));
            }
            Ok(Check {
                depth: self.depth + 1,
                ..self
            })
        }
    }
    impl<'de> DeserializeSeed<'de> for Check {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Check {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_borrowed_str<E>(self, _: &'de str) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let inner = self.nested()?;
            while seq.next_element_seed(inner)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let inner = self.nested()?;
            let mut keys: Vec<Cow<'de, str>> = Vec::new();
            while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                if keys.contains(&key) {
                    return Err(de::Error::custom(format_args!(
                        "duplicate member name {key:?}"
                    )));
                }
                map.next_value_seed(inner)?;
                keys.push(key);
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    Check {
        depth: 2,
        max_depth,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod member_tests {
    use super::*;

    #[test]
    fn members_apply_the_same_rules() {
        let ok = br#"{"a":1,"b":{"c":[1,{"d":2}]},"e\u0066":"x"}"#;
        let m = Members::parse(std::str::from_utf8(ok).unwrap(), 8).unwrap();
        assert_eq!(m.get("ef").unwrap().get(), "\"x\"");
        assert_eq!(m.get("b").unwrap().get(), r#"{"c":[1,{"d":2}]}"#);
        for bad in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"a":1,"\u0061":2}"#,
            br#"{"a":{"b":1,"b":1}}"#,
            br#"{"a":[{"b":1,"b":1}]}"#,
            br#"[1]"#,
            br#"{} x"#,
        ] {
            let text = std::str::from_utf8(bad).unwrap();
            assert!(Members::parse(text, 8).is_err(), "{text}");
            assert!(parse_object(bad, 8).is_err());
        }
        assert!(Members::parse(r#"{"a":[[1]]}"#, 3).is_ok());
        assert!(Members::parse(r#"{"a":[[[1]]]}"#, 3).is_err());
    }
}

/// The string a raw JSON value holds, borrowed when it has no escapes; `None` if not a string.
pub fn as_str(raw: &str) -> Option<Cow<'_, str>> {
    let b = raw.as_bytes();
    if b.len() >= 2 && b[0] == b'"' && b[b.len() - 1] == b'"' && !b.contains(&b'\\') {
        return Some(Cow::Borrowed(&raw[1..raw.len() - 1]));
    }
    serde_json::from_str::<Key<'_>>(raw).ok().map(|k| k.0)
}

/// The strings of a raw JSON array of strings; `None` if it is not one.
pub fn as_str_list(raw: &str) -> Option<Vec<Cow<'_, str>>> {
    serde_json::from_str::<Vec<Key<'_>>>(raw)
        .ok()
        .map(|v| v.into_iter().map(|k| k.0).collect())
}

/// Parses an already validated raw JSON value.
pub fn value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or(Value::Null)
}
