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

/// Objects with at most this many members are checked for duplicate names by comparing with
/// each earlier name (no allocation, fastest for the few members real headers and claims have);
/// past it a hash set takes over, so the check stays linear in the member count.
const SCAN_LIMIT: usize = 16;

/// The member names of one object seen so far, for duplicate detection in linear time.
struct Names<'de> {
    few: Vec<Cow<'de, str>>,
    many: Option<std::collections::HashSet<Cow<'de, str>, foldhash::quality::RandomState>>,
}

impl<'de> Names<'de> {
    fn new() -> Self {
        Names {
            few: Vec::new(),
            many: None,
        }
    }

    /// Records `key`; false when the object already had it.
    fn insert(&mut self, key: Cow<'de, str>) -> bool {
        if let Some(set) = &mut self.many {
            return set.insert(key);
        }
        if self.few.contains(&key) {
            return false;
        }
        self.few.push(key);
        if self.few.len() > SCAN_LIMIT {
            // A randomly seeded hash: names chosen to collide cannot be precomputed.
            let mut set = std::collections::HashSet::with_capacity_and_hasher(
                4 * SCAN_LIMIT,
                foldhash::quality::RandomState::default(),
            );
            set.extend(self.few.drain(..));
            self.many = Some(set);
        }
        true
    }
}

/// Counts the members of every object and the elements of every array in one document against
/// a limit.
struct Budget {
    left: std::cell::Cell<usize>,
    max: usize,
}

impl Budget {
    fn new(max: usize) -> Self {
        Budget {
            left: std::cell::Cell::new(max),
            max,
        }
    }

    fn take<E: de::Error>(&self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(n) => {
                self.left.set(n);
                Ok(())
            }
            None => Err(E::custom(format_args!(
                "more than {} members and array elements (at every depth)",
                self.max
            ))),
        }
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
    /// `&str` (UTF-8 checked once, by the caller) spares a UTF-8 check per member. Linear in
    /// the size of `text`, whatever its shape.
    pub fn parse(text: &'a str, max_depth: usize) -> Result<Members<'a>, String> {
        Members::parse_bounded(text, max_depth, usize::MAX)
    }

    /// [`Members::parse`], refusing more than `max_members` members and array elements in all
    /// (at every depth), as soon as the one too many is read.
    pub fn parse_bounded(
        text: &'a str,
        max_depth: usize,
        max_members: usize,
    ) -> Result<Members<'a>, String> {
        /// Collects the members; checks their names and the budget unless `checked`.
        struct Top<'b> {
            budget: &'b Budget,
            checked: bool,
        }
        impl<'de> Visitor<'de> for Top<'_> {
            type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut list: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::with_capacity(16);
                // Duplicates: the list itself is scanned while it is short (no second
                // allocation on the verify path), a randomly seeded set past SCAN_LIMIT.
                let mut many: Option<
                    std::collections::HashSet<Cow<'de, str>, foldhash::quality::RandomState>,
                > = None;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    if !self.checked {
                        self.budget.take()?;
                        let duplicate = match &mut many {
                            Some(set) => !set.insert(key.clone()),
                            None if list.iter().any(|(k, _)| *k == key) => true,
                            None => {
                                if list.len() >= SCAN_LIMIT {
                                    let mut set =
                                        std::collections::HashSet::with_capacity_and_hasher(
                                            4 * SCAN_LIMIT,
                                            foldhash::quality::RandomState::default(),
                                        );
                                    set.extend(list.iter().map(|(k, _)| k.clone()));
                                    set.insert(key.clone());
                                    many = Some(set);
                                }
                                false
                            }
                        };
                        if duplicate {
                            return Err(de::Error::custom(format_args!(
                                "duplicate member name {key:?}"
                            )));
                        }
                    }
                    list.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(list)
            }
        }
        let budget = Budget::new(max_members);
        // With a budget, every rule is checked first, in one walk that stops at the first
        // member or element over it: reading the raw members first would read all of an
        // oversized value before the walk could refuse it.
        // A text of at most 2 x max_members bytes cannot hold that many (each member or element
        // takes two bytes at least, with its separator, plus the braces): the walk is skipped
        // for it (typical token headers), and the budget still holds on the path below.
        let checked = max_members != usize::MAX && text.len() > 2 * max_members;
        if checked {
            check(text, 1, max_depth, &budget)?;
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let top = Top {
            budget: &budget,
            checked,
        };
        let list = de::Deserializer::deserialize_map(&mut de, top).map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        if !checked {
            for (_, raw) in &list {
                if matches!(raw.get().as_bytes().first(), Some(b'{' | b'[')) {
                    check(raw.get(), 2, max_depth, &budget)?;
                }
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

/// Walks a value that sits at `depth` checking duplicates, depth and the budget, building
/// nothing.
fn check(text: &str, depth: usize, max_depth: usize, budget: &Budget) -> Result<(), String> {
    #[derive(Clone, Copy)]
    struct Check<'b> {
        depth: usize,
        max_depth: usize,
        budget: &'b Budget,
    }
    impl Check<'_> {
        fn nested<E: de::Error>(self) -> Result<Self, E> {
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
    impl<'de> DeserializeSeed<'de> for Check<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Check<'_> {
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
            // Each element counts, so that the budget bounds the work however the value is
            // shaped.
            while seq.next_element_seed(inner)?.is_some() {
                self.budget.take()?;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let inner = self.nested()?;
            let mut names = Names::new();
            while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                self.budget.take()?;
                if !names.insert(key.clone()) {
                    return Err(de::Error::custom(format_args!(
                        "duplicate member name {key:?}"
                    )));
                }
                map.next_value_seed(inner)?;
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    Check {
        depth,
        max_depth,
        budget,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
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
        // The same rules with a budget, which counts members and elements at every depth.
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":1,"b":1}}"#,
            r#"{"a":[[[1]]]}"#,
            r#"[1]"#,
            r#"{} x"#,
            r#"{"a":1,"b":2,"c":3,"d":4}"#,
            r#"{"a":[1,2,3]}"#,
            r#"{"a":{"b":{"c":{}}},"d":1}"#,
        ] {
            assert!(Members::parse_bounded(bad, 3, 3).is_err(), "{bad}");
        }
        let m = Members::parse_bounded(r#"{"a":[1,{"b":2}]}"#, 3, 4).unwrap();
        assert_eq!(m.get("a").unwrap().get(), r#"[1,{"b":2}]"#);
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
