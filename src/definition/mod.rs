//! Definitions: parse a definition TOML file, validate everything that can be validated before
//! signing, and compile it (templates embedded) into a [`CompiledDefinition`].
//!
//! Parse, don't validate: [`load`] either returns a definition that passed every check, or
//! every problem found, each naming the file, the resource and the field.

mod fields;
mod resources;

use crate::template::Renderer;
use driftless_core::definition::{
    converge_order, CompiledDefinition, HealthCheck, OnFailure, Probe, ResourceKind, RolloutPolicy,
};
use driftless_core::value::{Value, MAX_VALUE_DEPTH};
use driftless_core::Targets;
use fields::Fields;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Every problem found in one definition file.
#[derive(Debug)]
pub struct DefinitionError {
    pub file: PathBuf,
    pub problems: Vec<String>,
}

impl std::fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.file.display();
        if self.problems.len() == 1 {
            return write!(f, "{file}: {}", self.problems[0]);
        }
        write!(f, "{file}: {} problems", self.problems.len())?;
        for p in &self.problems {
            write!(f, "\n  {file}: {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DefinitionError {}

const TOP_FIELDS: &[&str] = &["name", "targets", "vars", "resource", "check", "rollout"];
/// Health checks run every 30 s unless the definition says otherwise.
const DEFAULT_CHECK_INTERVAL_SECS: u64 = 30;
const DEFAULT_CHECK_TIMEOUT_SECS: u64 = 10;

/// Read, validate and compile a definition file.
pub fn load(path: &Path) -> Result<CompiledDefinition, DefinitionError> {
    let fail = |problems: Vec<String>| DefinitionError {
        file: path.to_path_buf(),
        problems,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| fail(vec![format!("cannot read: {e}")]))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(fail)
}

/// Parse and validate definition text; `base` is where template files are looked up.
pub fn parse(text: &str, base: &Path) -> Result<CompiledDefinition, Vec<String>> {
    let table: toml::Table = toml::from_str(text).map_err(|e| vec![toml_error(&e)])?;
    let mut errors = Vec::new();
    let mut f = Fields::new(&table, "definition".into(), &mut errors);
    let name = f.required_string("name");
    if let Some(n) = &name {
        if !valid_channel(n) {
            f.error(
                "name",
                format!("`{n}` is not a channel name: use lowercase letters, digits, `-` and `_`, starting with a letter or digit"),
            );
        }
    }
    let targets = f.table("targets").map(|t| parse_targets(t, f.errors));
    let vars = f
        .table("vars")
        .map(|t| {
            t.iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<BTreeMap<_, _>>()
        })
        .unwrap_or_default();
    for (k, v) in &vars {
        if v.depth() > MAX_VALUE_DEPTH {
            f.error(
                "vars",
                format!(
                    "`{k}` nests {} levels deep; agents decode at most {MAX_VALUE_DEPTH}",
                    v.depth()
                ),
            );
        }
    }
    let rollout = f.table("rollout").map(|t| parse_rollout(t, f.errors));
    f.string_list_mark("resource");
    f.string_list_mark("check");
    f.finish(TOP_FIELDS);
    let resource_tables = array_of_tables(&table, "resource", &mut errors);
    let check_tables = array_of_tables(&table, "check", &mut errors);

    let mut resources = Vec::new();
    for (i, t) in resource_tables.iter().enumerate() {
        if let Some(r) = resources::parse(i + 1, t, base, &mut errors) {
            resources.push(r);
        }
    }
    let checks: Vec<HealthCheck> = check_tables
        .iter()
        .enumerate()
        .filter_map(|(i, t)| parse_check(i + 1, t, &mut errors))
        .collect();
    let mut names = BTreeMap::new();
    for c in &checks {
        if names.insert(c.name.clone(), ()).is_some() {
            errors.push(format!("check `{}`: two checks have this name", c.name));
        }
    }

    if errors.is_empty() {
        cross_check(&resources, &mut errors);
    }
    if errors.is_empty() {
        let renderer = Renderer::placeholder(&vars);
        for (i, r) in resources.iter().enumerate() {
            if let ResourceKind::File {
                content, template, ..
            } = &r.kind
            {
                if let Err(e) =
                    renderer.render_named(template.as_deref().unwrap_or("content"), content)
                {
                    let field = if template.is_some() {
                        "template"
                    } else {
                        "content"
                    };
                    errors.push(format!(
                        "resource #{} ({}): field `{field}`: template does not render: {e}",
                        i + 1,
                        r.reference()
                    ));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(CompiledDefinition {
        name: name.expect("checked above"),
        targets: targets.flatten().unwrap_or_default(),
        vars,
        resources,
        checks,
        rollout: rollout.flatten(),
    })
}

fn toml_error(e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => format!("invalid TOML at byte {}: {msg}", span.start),
        None => format!("invalid TOML: {msg}"),
    }
}

pub fn valid_channel(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn array_of_tables<'a>(
    table: &'a toml::Table,
    key: &str,
    errors: &mut Vec<String>,
) -> Vec<&'a toml::Table> {
    let mut out = Vec::new();
    match table.get(key) {
        None => {}
        Some(toml::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    toml::Value::Table(t) => out.push(t),
                    _ => errors.push(format!(
                        "definition: field `{key}`: item {}: expected a table ([[{key}]])",
                        i + 1
                    )),
                }
            }
        }
        Some(_) => errors.push(format!(
            "definition: field `{key}`: expected an array of tables, written [[{key}]]"
        )),
    }
    out
}

fn parse_targets(t: &toml::Table, errors: &mut Vec<String>) -> Option<Targets> {
    let mut f = Fields::new(t, "[targets]".into(), errors);
    let mut labels = BTreeMap::new();
    if let Some(lt) = f.table("labels") {
        for (k, v) in lt {
            match v {
                toml::Value::String(s) => {
                    labels.insert(k.clone(), vec![s.clone()]);
                }
                toml::Value::Array(items) => {
                    let vals: Vec<String> = items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_string))
                        .collect();
                    if vals.len() != items.len() || vals.is_empty() {
                        f.error(
                            "labels",
                            format!(
                                "label `{k}`: expected a string or a non-empty list of strings"
                            ),
                        );
                    }
                    labels.insert(k.clone(), vals);
                }
                _ => f.error(
                    "labels",
                    format!("label `{k}`: expected a string or a list of strings"),
                ),
            }
        }
    }
    f.finish(&["labels"]);
    Some(Targets { labels })
}

fn parse_rollout(t: &toml::Table, errors: &mut Vec<String>) -> Option<RolloutPolicy> {
    let mut f = Fields::new(t, "[rollout]".into(), errors);
    let waves: Vec<f64> = match f.table.get("waves") {
        Some(toml::Value::Array(items)) => {
            f.string_list_mark("waves");
            items
                .iter()
                .filter_map(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
                .collect()
        }
        _ => {
            f.string_list_mark("waves");
            f.error(
                "waves",
                "is required: a list of cumulative fractions like [0.01, 0.1, 0.5, 1.0]",
            );
            Vec::new()
        }
    };
    let ok = !waves.is_empty()
        && waves.windows(2).all(|w| w[0] < w[1])
        && waves.iter().all(|w| *w > 0.0 && *w <= 1.0)
        && waves.last() == Some(&1.0);
    if !waves.is_empty() && !ok {
        f.error(
            "waves",
            "must be strictly increasing fractions in (0, 1], ending with 1.0",
        );
    }
    let bake = f.duration_secs("bake").unwrap_or(300);
    let max_unhealthy = f.float("max_unhealthy").unwrap_or(0.05);
    if !(0.0..=1.0).contains(&max_unhealthy) {
        f.error("max_unhealthy", "must be a fraction between 0 and 1");
    }
    let on_failure = match f.string("on_failure").as_deref() {
        None | Some("halt") => OnFailure::Halt,
        Some("rollback") => OnFailure::Rollback,
        Some(other) => {
            f.error(
                "on_failure",
                format!("`{other}`: expected \"halt\" or \"rollback\""),
            );
            OnFailure::Halt
        }
    };
    f.finish(&["waves", "bake", "max_unhealthy", "on_failure"]);
    ok.then_some(RolloutPolicy {
        waves,
        bake_secs: bake,
        max_unhealthy,
        on_failure,
    })
}

fn parse_check(n: usize, t: &toml::Table, errors: &mut Vec<String>) -> Option<HealthCheck> {
    let mut f = Fields::new(t, format!("check #{n}"), errors);
    let name = f.required_string("name");
    if let Some(name) = &name {
        f.place = format!("check #{n} ({name})");
    }
    let mut probes = Vec::new();
    if let Some(c) = f.string("command") {
        probes.push(Probe::Command(c));
    }
    if let Some(c) = f.string("tcp") {
        probes.push(Probe::Tcp(c));
    }
    if let Some(c) = f.string("http") {
        if !c.starts_with("http://") {
            f.error("http", "expected a URL starting with http://");
        }
        probes.push(Probe::Http(c));
    }
    if let Some(c) = f.string("file") {
        probes.push(Probe::FileExists(c));
    }
    if probes.len() != 1 {
        f.error(
            "command",
            "a check needs exactly one of `command`, `tcp`, `http`, `file`",
        );
    }
    let interval_secs = f
        .duration_secs("interval")
        .unwrap_or(DEFAULT_CHECK_INTERVAL_SECS);
    let timeout_secs = f
        .duration_secs("timeout")
        .unwrap_or(DEFAULT_CHECK_TIMEOUT_SECS);
    f.finish(&[
        "name", "command", "tcp", "http", "file", "interval", "timeout",
    ]);
    Some(HealthCheck {
        name: name?,
        probe: probes.pop()?,
        interval_secs,
        timeout_secs,
    })
}

/// Checks across resources: one resource per path or name, references that name something,
/// notify only services and execs, no cycles.
fn cross_check(resources: &[driftless_core::Resource], errors: &mut Vec<String>) {
    let label = |i: usize| format!("resource #{} ({})", i + 1, resources[i].reference());
    let mut by_path: HashMap<&str, usize> = HashMap::new();
    let mut by_ref: HashMap<String, usize> = HashMap::new();
    for (i, r) in resources.iter().enumerate() {
        let reference = r.reference().to_string();
        if r.kind.rtype().is_path() {
            if let Some(&j) = by_path.get(r.kind.id()) {
                errors.push(format!(
                    "{}: field `path`: {} is already managed by {}",
                    label(i),
                    r.kind.id(),
                    label(j)
                ));
                continue;
            }
            by_path.insert(r.kind.id(), i);
        } else if let Some(&j) = by_ref.get(&reference) {
            errors.push(format!(
                "{}: field `name`: already declared by {}",
                label(i),
                label(j)
            ));
            continue;
        }
        by_ref.insert(reference, i);
    }
    for (i, r) in resources.iter().enumerate() {
        for (field, refs) in [("requires", &r.requires), ("notify", &r.notify)] {
            for target in refs {
                if !by_ref.contains_key(&target.to_string()) {
                    errors.push(format!(
                        "{}: field `{field}`: `{target}` names no resource of this definition",
                        label(i)
                    ));
                } else if field == "notify"
                    && !matches!(
                        target.rtype,
                        driftless_core::definition::ResourceType::Service
                            | driftless_core::definition::ResourceType::Exec
                    )
                {
                    errors.push(format!(
                        "{}: field `notify`: `{target}` cannot be refreshed; notify names a service or an exec",
                        label(i)
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        if let Err(cycle) = converge_order(resources) {
            let names: Vec<String> = cycle.iter().map(|r| r.to_string()).collect();
            errors.push(format!(
                "dependency cycle: {} (through `requires`, `notify` and parent directories)",
                names.join(" -> ")
            ));
        }
    }
}

fn to_value(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::Integer(*i),
        toml::Value::Float(f) => Value::Float(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::List(a.iter().map(to_value).collect()),
        toml::Value::Table(t) => {
            Value::Map(t.iter().map(|(k, v)| (k.clone(), to_value(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftless_core::definition::{PackageEnsure, ResourceType};

    fn problems(text: &str) -> Vec<String> {
        parse(text, Path::new(".")).expect_err("should be refused")
    }

    fn one_problem(text: &str) -> String {
        let p = problems(text);
        assert_eq!(p.len(), 1, "expected one problem, got {p:#?}");
        p.into_iter().next().unwrap()
    }

    #[test]
    fn the_smallest_definition_of_the_spec_parses() {
        let d = parse(
            r#"
name = "web"
[targets]
labels = { role = "web", dc = ["a", "b"] }
[vars]
greeting = "hello"
[[resource]]
type = "file"
path = "/etc/motd"
content = "{{ greeting }} from {{ node.hostname }}\n"
mode = "0644"
"#,
            Path::new("."),
        )
        .unwrap();
        assert_eq!(d.name, "web");
        assert_eq!(
            d.targets.labels["dc"],
            vec!["a".to_string(), "b".to_string()]
        );
        let ResourceKind::File { own, .. } = &d.resources[0].kind else {
            panic!("not a file")
        };
        assert_eq!(own.mode, Some(0o644));
    }

    #[test]
    fn every_type_parses_with_its_fields() {
        let d = parse(
            r#"
name = "all"
[[resource]]
type = "directory"
path = "/etc/app"
[[resource]]
type = "symlink"
path = "/etc/app/current"
target = "/opt/app/v2"
[[resource]]
type = "absent"
path = "/etc/old"
[[resource]]
type = "package"
name = "nginx"
ensure = "1.22.1-9"
[[resource]]
type = "service"
name = "nginx"
ensure = "running"
enable = true
[[resource]]
type = "group"
name = "app"
gid = 900
[[resource]]
type = "user"
name = "app"
uid = 900
groups = ["app"]
home = "/srv/app"
shell = "/bin/sh"
[[resource]]
type = "exec"
name = "migrate"
command = "true"
creates = "/srv/app/.migrated"
timeout = "2m"
requires = ["user:app", "package:nginx"]
notify = ["service:nginx"]
[[check]]
name = "port"
tcp = "127.0.0.1:80"
interval = "10s"
[rollout]
waves = [0.01, 0.1, 0.5, 1.0]
bake = "5m"
max_unhealthy = 0.05
on_failure = "rollback"
"#,
            Path::new("."),
        )
        .unwrap();
        let types: Vec<ResourceType> = d.resources.iter().map(|r| r.kind.rtype()).collect();
        assert_eq!(types.len(), 8);
        assert!(matches!(
            &d.resources[3].kind,
            ResourceKind::Package { ensure: PackageEnsure::Version(v), .. } if v == "1.22.1-9"
        ));
        assert!(matches!(
            &d.resources[7].kind,
            ResourceKind::Exec {
                timeout_secs: Some(120),
                ..
            }
        ));
        assert_eq!(d.checks[0].interval_secs, 10);
        assert_eq!(d.rollout.as_ref().unwrap().bake_secs, 300);
    }

    #[test]
    fn variables_nested_deeper_than_agents_decode_are_refused() {
        let keys = |n: usize| {
            (0..n)
                .map(|i| format!("k{i}"))
                .collect::<Vec<_>>()
                .join(".")
        };
        let ok = format!(
            "name = \"x\"\n[vars.{}]\nleaf = 1\n",
            keys(MAX_VALUE_DEPTH - 1)
        );
        assert!(parse(&ok, Path::new(".")).is_ok());
        let p = one_problem(&format!(
            "name = \"x\"\n[vars.{}]\nleaf = 1\n",
            keys(MAX_VALUE_DEPTH)
        ));
        assert!(
            p.contains("field `vars`") && p.contains("levels deep"),
            "{p}"
        );
    }

    #[test]
    fn unknown_fields_name_the_resource_and_the_field() {
        let p = one_problem(
            "name = \"x\"\n[[resource]]\ntype = \"file\"\npath = \"/a\"\ncontent = \"\"\nmdoe = \"0644\"\n",
        );
        assert!(
            p.contains("resource #1 (file:/a)")
                && p.contains("`mdoe`")
                && p.contains("unknown field"),
            "{p}"
        );
    }

    #[test]
    fn bad_modes_and_the_audit_spelling() {
        let p = one_problem("name = \"x\"\n[[resource]]\ntype = \"file\"\npath = \"/a\"\ncontent = \"\"\nmode = \"0999\"\n");
        assert!(p.contains("`mode`") && p.contains("0999"), "{p}");
        let p = one_problem("name = \"x\"\n[[resource]]\ntype = \"file\"\npath = \"/a\"\ncontent = \"\"\nmode = \"audit\"\n");
        assert!(p.contains("audit = true"), "{p}");
        let p = one_problem("name = \"x\"\n[[resource]]\ntype = \"file\"\npath = \"/a\"\ncontent = \"\"\nmode = 644\n");
        assert!(p.contains("octal"), "{p}");
    }

    #[test]
    fn relative_and_dotdot_paths_are_refused() {
        let p = one_problem("name = \"x\"\n[[resource]]\ntype = \"absent\"\npath = \"etc/a\"\n");
        assert!(p.contains("relative"), "{p}");
        let p =
            one_problem("name = \"x\"\n[[resource]]\ntype = \"absent\"\npath = \"/etc/../a\"\n");
        assert!(p.contains(".."), "{p}");
    }

    #[test]
    fn one_path_one_resource() {
        let p = one_problem(
            "name = \"x\"\n[[resource]]\ntype = \"file\"\npath = \"/a\"\ncontent = \"\"\n[[resource]]\ntype = \"absent\"\npath = \"/a\"\n",
        );
        assert!(
            p.contains("resource #2 (absent:/a)") && p.contains("resource #1 (file:/a)"),
            "{p}"
        );
    }

    #[test]
    fn references_must_name_something_and_notify_only_refreshable_things() {
        let p = one_problem(
            "name = \"x\"\n[[resource]]\ntype = \"file\"\npath = \"/a\"\ncontent = \"\"\nrequires = [\"file:/b\"]\n",
        );
        assert!(
            p.contains("`requires`") && p.contains("file:/b") && p.contains("names no resource"),
            "{p}"
        );
        let p = one_problem(
            "name = \"x\"\n[[resource]]\ntype = \"file\"\npath = \"/a\"\ncontent = \"\"\nnotify = [\"file:/b\"]\n[[resource]]\ntype = \"file\"\npath = \"/b\"\ncontent = \"\"\n",
        );
        assert!(p.contains("notify names a service or an exec"), "{p}");
    }

    #[test]
    fn cycles_are_refused_including_through_parent_directories() {
        let p = one_problem(
            "name = \"x\"\n[[resource]]\ntype = \"exec\"\nname = \"a\"\ncommand = \"true\"\nrequires = [\"exec:b\"]\n[[resource]]\ntype = \"exec\"\nname = \"b\"\ncommand = \"true\"\nrequires = [\"exec:a\"]\n",
        );
        assert!(
            p.contains("cycle") && p.contains("exec:a") && p.contains("exec:b"),
            "{p}"
        );
        let p = one_problem(
            "name = \"x\"\n[[resource]]\ntype = \"directory\"\npath = \"/d\"\nrequires = [\"file:/d/f\"]\n[[resource]]\ntype = \"file\"\npath = \"/d/f\"\ncontent = \"\"\n",
        );
        assert!(p.contains("cycle"), "{p}");
    }

    #[test]
    fn templates_are_rendered_strictly_at_sign_time() {
        let p = one_problem("name = \"x\"\n[[resource]]\ntype = \"file\"\npath = \"/a\"\ncontent = \"{{ nope }}\"\n");
        assert!(
            p.contains("resource #1 (file:/a)")
                && p.contains("`content`")
                && p.contains("undefined"),
            "{p}"
        );
        let p = one_problem("name = \"x\"\n[[resource]]\ntype = \"file\"\npath = \"/a\"\ntemplate = \"missing.j2\"\n");
        assert!(p.contains("`template`") && p.contains("missing.j2"), "{p}");
    }

    #[test]
    fn many_problems_are_reported_together() {
        let p = problems(
            "name = \"Bad Name\"\nextra = 1\n[[resource]]\ntype = \"widget\"\n[[resource]]\ntype = \"file\"\npath = \"rel\"\ncontent = \"\"\n",
        );
        assert!(p.len() >= 4, "{p:#?}");
        assert!(p.iter().any(|m| m.contains("`extra`")));
        assert!(p.iter().any(|m| m.contains("widget")));
        assert!(p.iter().any(|m| m.contains("channel name")));
    }

    #[test]
    fn invalid_toml_says_where() {
        let p = one_problem("name = \"x\"\n[[resource]\n");
        assert!(p.contains("invalid TOML at byte"), "{p}");
    }

    #[test]
    fn rollout_waves_must_increase_to_one() {
        let p = one_problem("name = \"x\"\n[rollout]\nwaves = [0.5, 0.1]\n");
        assert!(p.contains("[rollout]") && p.contains("waves"), "{p}");
    }

    #[test]
    fn example_definitions_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("definitions");
        for name in ["base.toml", "web.toml"] {
            let d = load(&dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
            assert!(!d.resources.is_empty());
        }
    }
}
