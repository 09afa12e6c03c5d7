//! Strict JSON for JOSE headers and claims sets: duplicate member names rejected at every level
//! (RFC 7515 section 5.2 allows it and RFC 8725 recommends it), nesting depth bounded.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
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
