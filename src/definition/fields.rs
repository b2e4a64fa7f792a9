//! Reading one TOML table field by field, collecting every problem with its place, and
//! refusing fields nobody asked for.

use std::collections::BTreeSet;
use toml::{Table, Value};

pub struct Fields<'a> {
    pub table: &'a Table,
    used: BTreeSet<&'a str>,
    /// Where this table is, e.g. `resource #3 (file:/etc/motd)`.
    pub place: String,
    pub errors: &'a mut Vec<String>,
}

impl<'a> Fields<'a> {
    pub fn new(table: &'a Table, place: String, errors: &'a mut Vec<String>) -> Self {
        Fields {
            table,
            used: BTreeSet::new(),
            place,
            errors,
        }
    }

    pub fn error(&mut self, field: &str, msg: impl std::fmt::Display) {
        self.errors
            .push(format!("{}: field `{field}`: {msg}", self.place));
    }

    fn get(&mut self, key: &'a str) -> Option<&'a Value> {
        self.used.insert(key);
        self.table.get(key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    pub fn string(&mut self, key: &'a str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                let t = other.type_str();
                self.error(key, format!("expected a string, found {t}"));
                None
            }
        }
    }

    pub fn required_string(&mut self, key: &'a str) -> Option<String> {
        if !self.has(key) {
            self.used.insert(key);
            self.error(key, "is required");
            return None;
        }
        let s = self.string(key)?;
        if s.is_empty() {
            self.error(key, "must not be empty");
            return None;
        }
        Some(s)
    }

    pub fn bool(&mut self, key: &'a str) -> Option<bool> {
        match self.get(key)? {
            Value::Boolean(b) => Some(*b),
            other => {
                let t = other.type_str();
                self.error(key, format!("expected true or false, found {t}"));
                None
            }
        }
    }

    pub fn u32(&mut self, key: &'a str) -> Option<u32> {
        match self.get(key)? {
            Value::Integer(i) if *i >= 0 && *i <= u32::MAX as i64 => Some(*i as u32),
            other => {
                let shown = other.to_string();
                self.error(
                    key,
                    format!("expected a non-negative integer, found {shown}"),
                );
                None
            }
        }
    }

    pub fn float(&mut self, key: &'a str) -> Option<f64> {
        match self.get(key)? {
            Value::Float(f) => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            other => {
                let shown = other.to_string();
                self.error(key, format!("expected a number, found {shown}"));
                None
            }
        }
    }

    pub fn string_list(&mut self, key: &'a str) -> Vec<String> {
        match self.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            let t = other.type_str();
                            self.error(key, format!("item {i}: expected a string, found {t}"));
                        }
                    }
                }
                out
            }
            Some(other) => {
                let t = other.type_str();
                self.error(key, format!("expected a list of strings, found {t}"));
                Vec::new()
            }
        }
    }

    /// A duration as a string (`30s`, `5m`, `2h`) or a number of seconds.
    pub fn duration_secs(&mut self, key: &'a str) -> Option<u64> {
        match self.get(key)? {
            Value::Integer(i) if *i >= 0 => Some(*i as u64),
            Value::String(s) => match humantime::parse_duration(s) {
                Ok(d) => Some(d.as_secs().max(u64::from(d.subsec_nanos() > 0))),
                Err(e) => {
                    let s = s.clone();
                    self.error(
                        key,
                        format!("`{s}` is not a duration like \"30s\" or \"5m\": {e}"),
                    );
                    None
                }
            },
            other => {
                let shown = other.to_string();
                self.error(
                    key,
                    format!("expected a duration like \"30s\", found {shown}"),
                );
                None
            }
        }
    }

    pub fn table(&mut self, key: &'a str) -> Option<&'a Table> {
        match self.get(key)? {
            Value::Table(t) => Some(t),
            other => {
                let t = other.type_str();
                self.error(key, format!("expected a table, found {t}"));
                None
            }
        }
    }

    /// Report every field that was never read; `allowed` lists the ones that exist.
    pub fn finish(self, allowed: &[&str]) {
        let unknown: Vec<&String> = self
            .table
            .keys()
            .filter(|k| !self.used.contains(k.as_str()))
            .collect();
        for key in unknown {
            self.errors.push(format!(
                "{}: field `{key}`: unknown field, expected one of: {}",
                self.place,
                allowed.join(", ")
            ));
        }
    }
}

impl<'a> Fields<'a> {
    /// Mark a field as read when the caller inspects `table` directly.
    pub fn string_list_mark(&mut self, key: &'a str) {
        self.used.insert(key);
    }
}
