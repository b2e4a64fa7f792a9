//! Template rendering (minijinja, strict: an unknown variable is an error) with the
//! definition's variables at the top level and the node's facts under `node`.

use crate::facts::Facts;
use driftless_core::value::Value;
use minijinja::{Environment, UndefinedBehavior};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Renderer {
    env: Environment<'static>,
    ctx: minijinja::Value,
}

impl Renderer {
    /// A renderer for real node facts.
    pub fn new(vars: &BTreeMap<String, Value>, facts: &Facts) -> Renderer {
        Self::with_node(vars, minijinja::Value::from_serialize(facts))
    }

    /// A renderer with placeholder facts, for checking templates at sign time: every fact
    /// exists, and `node.labels.ANY` is defined for any label name.
    pub fn placeholder(vars: &BTreeMap<String, Value>) -> Renderer {
        let mut node = BTreeMap::new();
        for key in ["hostname", "os", "os_version", "arch"] {
            node.insert(key.to_string(), minijinja::Value::from(format!("<{key}>")));
        }
        node.insert(
            "labels".to_string(),
            minijinja::Value::from_object(AnyLabels),
        );
        Self::with_node(vars, minijinja::Value::from(node))
    }

    fn with_node(vars: &BTreeMap<String, Value>, node: minijinja::Value) -> Renderer {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        let mut ctx: BTreeMap<String, minijinja::Value> =
            vars.iter().map(|(k, v)| (k.clone(), to_mj(v))).collect();
        ctx.insert("node".into(), node);
        Renderer {
            env,
            ctx: minijinja::Value::from(ctx),
        }
    }

    /// Render `text`. Text without template syntax is returned as is, without parsing.
    pub fn render(&self, text: &str) -> Result<String, String> {
        self.render_named("content", text)
    }

    /// Render `text`, naming it `name` (a template file, or `content`) in errors.
    pub fn render_named(&self, name: &str, text: &str) -> Result<String, String> {
        if !(text.contains("{{") || text.contains("{%") || text.contains("{#")) {
            return Ok(text.to_string());
        }
        self.env
            .render_named_str(name, text, &self.ctx)
            .map_err(|e| describe(&e, text))
    }
}

/// The error, where it happened, and the line itself (which names the undefined variable).
fn describe(e: &minijinja::Error, text: &str) -> String {
    let mut msg = e.kind().to_string();
    if let Some(d) = e.detail() {
        msg.push_str(&format!(": {d}"));
    }
    if let (Some(name), Some(line)) = (e.name(), e.line()) {
        msg.push_str(&format!(" at {name}:{line}"));
        if let Some(src) = text.lines().nth(line.saturating_sub(1)) {
            msg.push_str(&format!(": `{}`", src.trim()));
        }
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

fn to_mj(v: &Value) -> minijinja::Value {
    match v {
        Value::String(s) => minijinja::Value::from(s.clone()),
        Value::Integer(i) => minijinja::Value::from(*i),
        Value::Float(f) => minijinja::Value::from(*f),
        Value::Bool(b) => minijinja::Value::from(*b),
        Value::List(l) => minijinja::Value::from(l.iter().map(to_mj).collect::<Vec<_>>()),
        Value::Map(m) => minijinja::Value::from(
            m.iter()
                .map(|(k, v)| (k.clone(), to_mj(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// Labels at sign time: any label name is defined, with the placeholder value "0".
#[derive(Debug)]
struct AnyLabels;

impl minijinja::value::Object for AnyLabels {
    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        // "0": it converts with `int` and `float` and compares as a string, so a template
        // that computes with a label checks at sign time.
        key.as_str().map(|_| minijinja::Value::from("0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            hostname: "web-1".into(),
            labels: driftless_core::labels::parse_labels("role=web").unwrap(),
            os: "debian".into(),
            os_version: "12".into(),
            arch: "x86_64".into(),
        }
    }

    #[test]
    fn renders_vars_and_facts() {
        let vars = BTreeMap::from([("greeting".to_string(), Value::String("hello".into()))]);
        let r = Renderer::new(&vars, &facts());
        assert_eq!(
            r.render("{{ greeting }} from {{ node.hostname }} ({{ node.labels.role }})\n")
                .unwrap(),
            "hello from web-1 (web)\n"
        );
    }

    #[test]
    fn unknown_variables_are_errors() {
        let r = Renderer::new(&BTreeMap::new(), &facts());
        let err = r.render("{{ nope }}").unwrap_err();
        assert!(err.contains("undefined"), "{err}");
        assert!(r.render("{{ node.labels.dc }}").is_err());
    }

    #[test]
    fn placeholders_accept_any_label_but_not_unknown_vars() {
        let r = Renderer::placeholder(&BTreeMap::new());
        assert!(r
            .render("{{ node.labels.whatever }} {{ node.hostname }}")
            .is_ok());
        assert!(r.render("{{ greeting }}").is_err());
        assert!(r.render("{% if %}").is_err());
    }
}
