//! A small self-contained value type for definition variables, encodable with postcard.
//!
//! postcard cannot carry `serde_json::Value` or `toml::Value` (they need a self-describing
//! format to decode), so variables are converted into this enum at sign time.
//!
//! Decoding is written by hand rather than derived, for one reason: a value nests, and a
//! derived decoder recurses once per level with no bound, so a crafted definition a few
//! hundred kilobytes long overflowed the stack of whoever decoded it (and, with each list
//! claiming the rest of the input as its length, reserved memory quadratic in the input).
//! The encoding is the derived one, unchanged.

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, VariantAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Lists and maps nested deeper than this are refused, when a definition is compiled and when
/// it is decoded. Variables are configuration data (a few levels); the bound keeps decoding
/// recursion, and so the stack, small.
pub const MAX_VALUE_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// Levels of nesting: 1 for a scalar or an empty list or map.
    pub fn depth(&self) -> usize {
        1 + match self {
            Value::List(l) => l.iter().map(Value::depth).max().unwrap_or(0),
            Value::Map(m) => m.values().map(Value::depth).max().unwrap_or(0),
            _ => 0,
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Level(1).deserialize(d)
    }
}

/// The variant names, in declaration order (their index is what postcard writes).
const VARIANTS: &[&str] = &["String", "Integer", "Float", "Bool", "List", "Map"];

#[derive(Deserialize)]
#[serde(variant_identifier)]
enum Kind {
    String,
    Integer,
    Float,
    Bool,
    List,
    Map,
}

/// Decodes one value at nesting level `.0` (1 at the top).
#[derive(Clone, Copy)]
struct Level(usize);

impl<'de> DeserializeSeed<'de> for Level {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0 > MAX_VALUE_DEPTH {
            return Err(de::Error::custom(format!(
                "variable nested deeper than {MAX_VALUE_DEPTH} levels"
            )));
        }
        d.deserialize_enum("Value", VARIANTS, self)
    }
}

impl<'de> Visitor<'de> for Level {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a definition variable")
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (kind, v) = data.variant::<Kind>()?;
        match kind {
            Kind::String => v.newtype_variant().map(Value::String),
            Kind::Integer => v.newtype_variant().map(Value::Integer),
            Kind::Float => v.newtype_variant().map(Value::Float),
            Kind::Bool => v.newtype_variant().map(Value::Bool),
            Kind::List => v.newtype_variant_seed(List(self.0 + 1)).map(Value::List),
            Kind::Map => v.newtype_variant_seed(Map(self.0 + 1)).map(Value::Map),
        }
    }
}

/// The items of a list at level `.0`. Nothing is reserved ahead on the count the input
/// claims: the list grows with the items actually read.
struct List(usize);

impl<'de> DeserializeSeed<'de> for List {
    type Value = Vec<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Value>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for List {
    type Value = Vec<Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of variables")
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Level(self.0))? {
            out.push(v);
        }
        Ok(out)
    }
}

/// The entries of a map at level `.0`; a repeated key keeps its last value.
struct Map(usize);

impl<'de> DeserializeSeed<'de> for Map {
    type Value = BTreeMap<String, Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Map {
    type Value = BTreeMap<String, Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of variables")
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(Level(self.0))?;
            out.insert(k, v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::CompiledDefinition;
    use crate::encoding::DecodeError;

    fn nested(depth: usize) -> Value {
        let mut v = Value::Integer(7);
        for i in 1..depth {
            v = if i % 2 == 0 {
                Value::List(vec![v, Value::Bool(true)])
            } else {
                Value::Map([("k".to_string(), v)].into_iter().collect())
            };
        }
        v
    }

    fn definition_with(var: Value) -> CompiledDefinition {
        CompiledDefinition {
            name: "web".into(),
            targets: Default::default(),
            vars: [("x".to_string(), var)].into_iter().collect(),
            resources: vec![],
            checks: vec![],
            rollout: None,
        }
    }

    #[test]
    fn values_of_every_kind_decode_as_they_were_encoded() {
        let mut m = BTreeMap::new();
        m.insert("s".to_string(), Value::String("a".into()));
        m.insert("f".to_string(), Value::Float(0.5));
        m.insert("l".to_string(), Value::List(vec![]));
        let v = Value::List(vec![
            Value::Map(m),
            Value::Integer(-3),
            nested(MAX_VALUE_DEPTH - 1),
        ]);
        assert_eq!(v.depth(), MAX_VALUE_DEPTH);
        let def = definition_with(v);
        assert_eq!(CompiledDefinition::decode(&def.encode()).unwrap(), def);
    }

    #[test]
    fn a_value_nested_too_deep_is_refused() {
        let def = definition_with(nested(MAX_VALUE_DEPTH + 1));
        // postcard drops the text of custom errors: the signer says why (see the binary's
        // definition checks); a decoder can only say "malformed".
        assert!(matches!(
            CompiledDefinition::decode(&def.encode()),
            Err(DecodeError::Malformed { .. })
        ));
    }

    /// Found while writing the definition fuzz target: 200,000 nested one-item lists (400 kB)
    /// overflowed the stack, and 1,300 lists each claiming the rest of the input as its
    /// length (4 kB) made the derived decoder reserve 78 MB. The first would abort this test;
    /// the second is metered by `fuzz/fuzz_targets/definition.rs`.
    #[test]
    fn crafted_nesting_is_refused() {
        let head = b"DLDF\x01\x00\x01a\x00\x01\x01x";
        let mut deep = head.to_vec();
        deep.extend(std::iter::repeat_n([4u8, 1], 200_000).flatten());
        assert!(matches!(
            CompiledDefinition::decode(&deep),
            Err(DecodeError::Malformed { .. })
        ));
        let mut body = Vec::new();
        for _ in 0..1300 {
            let mut level = vec![4u8];
            let mut n = body.len();
            while n >= 0x80 {
                level.push((n as u8) | 0x80);
                n >>= 7;
            }
            level.push(n as u8);
            level.extend(body);
            body = level;
        }
        let mut claiming = head.to_vec();
        claiming.extend(body);
        assert!(CompiledDefinition::decode(&claiming).is_err());
    }
}
