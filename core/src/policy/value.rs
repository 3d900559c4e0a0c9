//! The untyped form of a document between its text and the typed model: a JSON value whose
//! strings borrow from the text when they can (no escape to decode), so reading a
//! 100,000-principal allowlist allocates one list of references, not 100,000 strings.
//!
//! It reads and prints exactly like the `serde_json::Value` of the same text: the same
//! parser (`serde_json`, so the same syntax errors), duplicate mapping keys rejected as the
//! first one repeats, mapping keys in sorted order, numbers kept as [`serde_json::Number`],
//! and [`Json::to_json_string`] the compact JSON that `Value::to_string` writes.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use serde_json::{Number, Value};

/// A JSON value whose strings may borrow from the text it was read from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    /// Boxed: numbers are rare in a document, and unboxed they make every value 24 bytes
    /// instead of 16 on wasm32 (100,000 principals are 100,000 values).
    Number(Box<Number>),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// A mapping, keys in sorted order (as `serde_json::Map` keeps them).
pub(crate) type Object<'a> = BTreeMap<Cow<'a, str>, Json<'a>>;

impl Json<'_> {
    /// Compact JSON, as `serde_json::Value::to_string` writes the same value.
    pub(crate) fn to_json_string(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// What kind of value this is, for messages (`a string`, `an object`, …).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json_string())
    }
}

/// A `serde_json::Value` (what the YAML reader and the public value functions produce),
/// its strings moved, not copied.
impl From<Value> for Json<'static> {
    fn from(v: Value) -> Self {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(b),
            Value::Number(n) => Json::Number(Box::new(n)),
            Value::String(s) => Json::String(Cow::Owned(s)),
            Value::Array(items) => Json::Array(items.into_iter().map(Json::from).collect()),
            Value::Object(map) => Json::Object(
                map.into_iter()
                    .map(|(k, v)| (Cow::Owned(k), Json::from(v)))
                    .collect(),
            ),
        }
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(v) => s.serialize_str(v),
            Json::Array(items) => s.collect_seq(items),
            Json::Object(map) => s.collect_map(map),
        }
    }
}

impl From<Json<'_>> for Value {
    fn from(v: Json<'_>) -> Self {
        match v {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Number(n) => Value::Number(*n),
            Json::String(s) => Value::String(s.into_owned()),
            Json::Array(items) => Value::Array(items.into_iter().map(Value::from).collect()),
            Json::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k.into_owned(), Value::from(v)))
                    .collect(),
            ),
        }
    }
}

/// Reads JSON text into a [`Json`] borrowing its strings, duplicate keys rejected. The text's
/// size and depth are checked before, by the scan that also counts every list's elements
/// (`lengths`, see `shape::json_lists`): each list is allocated at its final length, so no
/// list is copied to grow, and none has slack.
pub(crate) fn from_json_text(text: &str, lengths: Vec<u32>) -> Result<Json<'_>, serde_json::Error> {
    let lengths = ListLengths {
        lengths,
        next: Cell::new(0),
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let value = ValueSeed::new(&lengths).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Reads YAML text into a [`Json`], duplicate keys rejected. The text's size, depth and
/// aliases are checked before (see `shape`).
pub(crate) fn from_yaml_text(text: &str) -> Result<Json<'_>, serde_yaml::Error> {
    let lengths = ListLengths::default();
    ValueSeed::new(&lengths).deserialize(serde_yaml::Deserializer::from_str(text))
}

/// The list lengths of `shape::json_lists`, handed out one by one as the parser opens the lists.
#[derive(Default)]
struct ListLengths {
    lengths: Vec<u32>,
    next: Cell<usize>,
}

impl ListLengths {
    /// The length of the next list, 0 when unknown.
    fn next(&self) -> usize {
        let i = self.next.get();
        self.next.set(i + 1);
        self.lengths.get(i).map_or(0, |n| *n as usize)
    }
}

/// Deserializes one value; strings the input lends for `'a` are borrowed.
struct ValueSeed<'a, 'l> {
    lengths: &'l ListLengths,
    borrow: PhantomData<&'a ()>,
}

impl<'l> ValueSeed<'_, 'l> {
    fn new(lengths: &'l ListLengths) -> Self {
        ValueSeed {
            lengths,
            borrow: PhantomData,
        }
    }
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for ValueSeed<'a, '_> {
    type Value = Json<'a>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json<'a>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for ValueSeed<'a, '_> {
    type Value = Json<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML/JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json<'a>, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json<'a>, E> {
        Ok(Json::Number(Box::new(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json<'a>, E> {
        Ok(Json::Number(Box::new(v.into())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json<'a>, E> {
        Ok(Number::from_f64(v).map_or(Json::Null, |n| Json::Number(Box::new(n))))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'a>, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json<'a>, E> {
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Json<'a>, E> {
        Ok(Json::String(Cow::Owned(v)))
    }
    fn visit_none<E>(self) -> Result<Json<'a>, E> {
        Ok(Json::Null)
    }
    fn visit_unit<E>(self) -> Result<Json<'a>, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json<'a>, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'a>, A::Error> {
        let mut out = Vec::with_capacity(self.lengths.next());
        while let Some(v) = seq.next_element_seed(ValueSeed::new(self.lengths))? {
            out.push(v);
        }
        Ok(Json::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'a>, A::Error> {
        let mut out = Object::new();
        while let Some(key) = map.next_key_seed(KeySeed(PhantomData))? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let v = map.next_value_seed(ValueSeed::new(self.lengths))?;
            out.insert(key, v);
        }
        Ok(Json::Object(out))
    }
}

/// Deserializes a mapping key, borrowed when the input lends it.
struct KeySeed<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for KeySeed<'a> {
    type Value = Cow<'a, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'a, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for KeySeed<'a> {
    type Value = Cow<'a, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'a, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'a, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Cow<'a, str>, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every list's length, depth uncapped (as `shape::json_lists` counts them).
    fn lengths(bytes: &[u8]) -> Vec<u32> {
        super::super::shape::list_lengths(bytes, usize::MAX).unwrap_or_default()
    }

    /// The text parsed as the policy parser does, list lengths counted first.
    fn json(text: &str) -> Result<Json<'_>, serde_json::Error> {
        from_json_text(text, lengths(text.as_bytes()))
    }

    /// The reference: the document read as a `serde_json::Value` (what it went through
    /// before this type), duplicate keys rejected by a plain visitor.
    struct Reference(Value);

    impl<'de> de::Deserialize<'de> for Reference {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(RefVisitor).map(Reference)
        }
    }

    struct RefVisitor;

    impl<'de> Visitor<'de> for RefVisitor {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a YAML/JSON value")
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
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            de::Deserialize::deserialize(d).map(|r: Reference| r.0)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(Reference(v)) = seq.next_element()? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                }
                let Reference(v) = map.next_value()?;
                out.insert(key, v);
            }
            Ok(Value::Object(out))
        }
    }

    fn reference(text: &str) -> Result<String, String> {
        serde_json::from_str::<Reference>(text)
            .map(|v| v.0.to_string())
            .map_err(|e| e.to_string())
    }

    fn borrowed(text: &str) -> Result<String, String> {
        json(text)
            .map(|v| v.to_json_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_and_prints_like_serde_json_value() {
        let cases = [
            r#"{"b": 1, "a": [true, false, null], "c": {"z": "x", "y": -2}}"#,
            r#""plain""#,
            r#""esc\"aped\\ \u00e9 \ud83d\ude00 \n\t/""#,
            r#"{"k\u0065y": "v", "key2": "\u0000"}"#,
            "[1, -1, 1.5, 1e300, 18446744073709551615, -9223372036854775808, 0.0, -0.0]",
            "[]",
            "{}",
            "  [ [ [ ] ] ]  ",
            r#"{"a": {"a": 1}, "b": {"a": 2}}"#,
            // Errors: the same message, position included.
            r#"{"a": 1, "a": 2}"#,
            r#"{"b": 1, "a": 2, "b": {"c": 3}}"#,
            r#"{"a": {"x": 1, "y": 2, "x": 3}}"#,
            r#"{"k\u0065y": 1, "key": 2}"#,
            r#"{"a": 1,}"#,
            "[1, 2",
            r#"{"a": 1} trailing"#,
            r#""\ud800""#,
            "1e999",
            "",
            "nul",
            r#"{1: 2}"#,
        ];
        for text in cases {
            assert_eq!(borrowed(text), reference(text), "{text}");
        }
        assert_eq!(
            borrowed(r#"{"a": 1, "a": 2}"#),
            Err("duplicate key `a` at line 1 column 12".into())
        );
    }

    #[test]
    fn list_lengths_count_each_lists_own_values_in_opening_order() {
        let cases: &[(&str, &[u32])] = &[
            ("[]", &[0]),
            ("[ ]", &[0]),
            ("[1]", &[1]),
            ("[1, 2, 3]", &[3]),
            ("[[], [1, 2], [[3]]]", &[3, 0, 2, 1, 1]),
            (r#"{"a": [1, {"b": [2, 3], "c": 4}], "d": []}"#, &[2, 2, 0]),
            // Brackets, commas and escaped quotes inside strings are not structure.
            (r#"["a,b", "[", "]", "\"]", "\\", "x\",y"]"#, &[6]),
            (r#"["\u005d", ",,"]"#, &[2]),
            (" \n\t[\n1\n,\r\n2\n]\n", &[2]),
            // Not JSON: hints only, never more than the values spelled out.
            ("[,,,]", &[0]),
            ("[1,,2]", &[2]),
            ("[1, 2", &[0]),
            ("]]][1]", &[1]),
            (r#"["open"#, &[0]),
        ];
        for (text, want) in cases {
            assert_eq!(lengths(text.as_bytes()), *want, "{text}");
        }
        // Deep nesting: one length per level.
        let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        let mut want = vec![1u32; 40];
        assert_eq!(lengths(deep.as_bytes()), want);
        want.clear();
        assert_eq!(lengths(b"{\"a\": 1}"), want);
    }

    #[test]
    fn lists_are_allocated_at_their_length() {
        let text = r#"{"a": [1, 2, 3, [4, 5]], "b": ["x", "y\"z", {"c": [[], [6]]}]}"#;
        let Ok(v) = json(text) else {
            panic!("does not parse");
        };
        fn check(v: &Json<'_>) -> usize {
            match v {
                Json::Array(items) => {
                    assert_eq!(items.capacity(), items.len(), "{v}");
                    1 + items.iter().map(check).sum::<usize>()
                }
                Json::Object(map) => map.values().map(check).sum(),
                _ => 0,
            }
        }
        assert_eq!(check(&v), 6);
    }

    #[test]
    fn reads_yaml_like_serde_json_value() {
        let reference = |text: &str| {
            serde_yaml::from_str::<Reference>(text)
                .map(|v| v.0.to_string())
                .map_err(|e| e.to_string())
        };
        let ours = |text: &str| {
            from_yaml_text(text)
                .map(|v| v.to_json_string())
                .map_err(|e| e.to_string())
        };
        let cases = [
            "a: 1\nb: [x, 'y', \"z\"]\nc: {d: ~, e: true, f: 1.5, g: -3}\n",
            "a: &x [1, 2]\nb: *x\n",
            "- 8080\n- '8080'\n- 0x10\n- 1e3\n- .inf\n",
            "a: 1\na: 2\n",
            "a:\n  b: 1\n  c: 2\n  b: 3\n",
            "1: x\n",
            "true: y\n",
            "? [a]\n: b\n",
            "a: !!str 1\n",
            "--- 1\n--- 2\n",
            "key: |\n  block\n  text\n",
            "a: [1, 2\n",
            "",
        ];
        for text in cases {
            assert_eq!(ours(text), reference(text), "{text}");
        }
    }

    #[test]
    fn strings_without_escapes_borrow_from_the_text() {
        let text = r#"{"plain": ["a/b", "c\"d"], "k\u0065y": "v"}"#;
        let Ok(Json::Object(map)) = json(text) else {
            panic!("not an object");
        };
        let Some(Json::Array(items)) = map.get("plain") else {
            panic!("no list");
        };
        assert!(matches!(&items[0], Json::String(Cow::Borrowed("a/b"))));
        assert!(matches!(&items[1], Json::String(Cow::Owned(s)) if s == "c\"d"));
        assert!(map.keys().any(|k| matches!(k, Cow::Owned(s) if s == "key")));
        assert!(map.keys().any(|k| matches!(k, Cow::Borrowed("plain"))));
    }

    #[test]
    fn converts_from_serde_json_value() {
        let text = r#"{"b": [1, "x", {"d": null, "c": 2.5}], "a": true}"#;
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            panic!("reference does not parse");
        };
        let Ok(b) = json(text) else {
            panic!("does not parse");
        };
        assert_eq!(Json::from(v.clone()), b);
        assert_eq!(Json::from(v.clone()).to_string(), v.to_string());
        assert_eq!(b.kind(), "an object");
    }
}
