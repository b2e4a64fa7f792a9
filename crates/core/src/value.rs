//! A small self-contained value type for definition variables, encodable with postcard.
//!
//! postcard cannot carry `serde_json::Value` or `toml::Value` (they need a self-describing
//! format to decode), so variables are converted into this enum at sign time.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}
