//! `sign` validates a definition before signing: each broken definition below is refused
//! with exit 2, no bundle is written, and stderr names the file, the resource
//! (`resource #N (type:id)`) and the field. `plan DEFINITION.toml` needs no trust and
//! reports the same problems.

mod common;

use common::*;
use std::path::PathBuf;

/// A workspace with a release key, ready to sign definitions.
struct Signer {
    ws: Workspace,
    key: Key,
}

impl Signer {
    fn new() -> Signer {
        let ws = Workspace::new();
        let key = ws.keygen("release");
        Signer { ws, key }
    }

    /// Write `defs/NAME.toml` and sign it: assert exit 2, no bundle, and that stderr names
    /// the file and every one of `needles`. Returns stderr.
    #[track_caller]
    fn refused(&self, name: &str, text: &str, needles: &[&str]) -> String {
        let def = self.ws.write(&format!("defs/{name}.toml"), text);
        let out = format!("{name}.bundle");
        let o = self.ws.try_sign(&def, &[&self.key], 1, &out, &[]);
        let file = format!("{name}.toml");
        let mut want = vec![file.as_str()];
        want.extend_from_slice(needles);
        o.code(2).stderr_has(&want);
        assert!(!self.ws.path(&out).exists(), "{name}: no bundle is written");
        // plan of the definition reports the same, also with exit 2.
        let root = self.root();
        self.ws
            .run(["plan", def.to_str().unwrap(), "--root", &root])
            .code(2)
            .stderr_has(&want);
        o.stderr.clone()
    }

    fn root(&self) -> String {
        path_str(&self.ws.mkdir("root"))
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        self.ws.write(rel, text)
    }
}

/// One file resource, with `extra` lines added to its table.
fn file_with(extra: &str) -> String {
    format!(
        "name = \"v\"\n\n[[resource]]\ntype = \"file\"\npath = \"/etc/a\"\ncontent = \"a\\n\"\n{extra}\n"
    )
}

#[test]
fn an_unknown_field_is_named_with_the_fields_that_exist() {
    let s = Signer::new();
    s.refused(
        "unknown-field",
        &file_with("mdoe = \"0644\""),
        &[
            "resource #1 (file:/etc/a)",
            "field `mdoe`",
            "unknown field",
            "mode",
        ],
    );
    // At the top level too.
    s.refused(
        "unknown-top",
        "name = \"v\"\nvariables = { a = 1 }\n",
        &["field `variables`", "unknown field", "vars"],
    );
}

#[test]
fn a_bad_mode_is_refused_and_mode_audit_points_to_audit_true() {
    let s = Signer::new();
    s.refused(
        "mode-0999",
        &file_with("mode = \"0999\""),
        &["resource #1 (file:/etc/a)", "field `mode`", "0999", "octal"],
    );
    s.refused(
        "mode-number",
        &file_with("mode = 644"),
        &["resource #1 (file:/etc/a)", "field `mode`"],
    );
    s.refused(
        "mode-audit",
        &file_with("mode = \"audit\""),
        &["resource #1 (file:/etc/a)", "field `mode`", "audit = true"],
    );
}

#[test]
fn relative_paths_and_paths_with_dotdot_are_refused() {
    let s = Signer::new();
    s.refused(
        "relative",
        "name = \"v\"\n[[resource]]\ntype = \"file\"\npath = \"etc/a\"\ncontent = \"a\"\n",
        &["resource #1 (file:etc/a)", "field `path`", "relative"],
    );
    s.refused(
        "dotdot",
        "name = \"v\"\n[[resource]]\ntype = \"directory\"\npath = \"/etc/../root/.ssh\"\n",
        &[
            "resource #1 (directory:/etc/../root/.ssh)",
            "field `path`",
            "`..`",
        ],
    );
    s.refused(
        "exec-creates-relative",
        "name = \"v\"\n[[resource]]\ntype = \"exec\"\nname = \"x\"\ncommand = \"true\"\ncreates = \"var/x\"\n",
        &["resource #1 (exec:x)", "field `creates`", "relative"],
    );
}

#[test]
fn two_resources_managing_one_path_are_refused() {
    let s = Signer::new();
    s.refused(
        "one-path-twice",
        r#"
name = "v"
[[resource]]
type = "file"
path = "/etc/a"
content = "a"
[[resource]]
type = "absent"
path = "/etc/a"
"#,
        &[
            "resource #2 (absent:/etc/a)",
            "field `path`",
            "already managed by resource #1 (file:/etc/a)",
        ],
    );
}

#[test]
fn dependency_cycles_are_refused_and_named() {
    let s = Signer::new();
    s.refused(
        "requires-loop",
        r#"
name = "v"
[[resource]]
type = "exec"
name = "a"
command = "true"
requires = ["exec:b"]
[[resource]]
type = "exec"
name = "b"
command = "true"
requires = ["exec:a"]
"#,
        &["dependency cycle", "exec:a", "exec:b", "`requires`"],
    );
    // A directory that requires a file inside it: the file needs its directory first.
    s.refused(
        "dir-requires-its-file",
        r#"
name = "v"
[[resource]]
type = "directory"
path = "/etc/app"
requires = ["file:/etc/app/app.conf"]
[[resource]]
type = "file"
path = "/etc/app/app.conf"
content = "x"
"#,
        &[
            "dependency cycle",
            "directory:/etc/app",
            "file:/etc/app/app.conf",
        ],
    );
}

#[test]
fn references_that_name_nothing_and_notify_of_a_file_are_refused() {
    let s = Signer::new();
    let err = s.refused(
        "dangling",
        &file_with("requires = [\"directory:/etc/nothing\"]\nnotify = [\"service:nginx\"]"),
        &[
            "resource #1 (file:/etc/a)",
            "field `requires`",
            "directory:/etc/nothing",
            "field `notify`",
            "service:nginx",
            "names no resource",
        ],
    );
    assert!(err.contains("2 problems"), "both reported: {err}");
    s.refused(
        "notify-a-file",
        r#"
name = "v"
[[resource]]
type = "file"
path = "/etc/a"
content = "a"
notify = ["file:/etc/b"]
[[resource]]
type = "file"
path = "/etc/b"
content = "b"
"#,
        &[
            "resource #1 (file:/etc/a)",
            "field `notify`",
            "file:/etc/b",
            "service or an exec",
        ],
    );
    s.refused(
        "not-a-reference",
        &file_with("requires = [\"/etc/b\"]"),
        &["resource #1 (file:/etc/a)", "field `requires`", "/etc/b"],
    );
}

#[test]
fn templates_that_do_not_render_or_do_not_exist_are_refused() {
    let s = Signer::new();
    s.write("defs/templates/bad.j2", "port = {{ nosuchvar }}\n");
    s.refused(
        "template-unknown-var",
        "name = \"v\"\n[[resource]]\ntype = \"file\"\npath = \"/etc/a\"\ntemplate = \"templates/bad.j2\"\n",
        &[
            "resource #1 (file:/etc/a)",
            "field `template`",
            "does not render",
            "undefined",
        ],
    );
    s.refused(
        "content-unknown-fact",
        &file_with("").replace("content = \"a\\n\"", "content = \"{{ node.nosuch }}\""),
        &["resource #1 (file:/etc/a)", "field `content`", "undefined"],
    );
    s.refused(
        "template-syntax",
        &file_with("").replace("content = \"a\\n\"", "content = \"{% for x in %}\""),
        &[
            "resource #1 (file:/etc/a)",
            "field `content`",
            "does not render",
        ],
    );
    s.refused(
        "template-missing",
        "name = \"v\"\n[[resource]]\ntype = \"file\"\npath = \"/etc/a\"\ntemplate = \"templates/none.j2\"\n",
        &[
            "resource #1 (file:/etc/a)",
            "field `template`",
            "templates/none.j2",
        ],
    );
    s.refused(
        "template-outside",
        "name = \"v\"\n[[resource]]\ntype = \"file\"\npath = \"/etc/a\"\ntemplate = \"../secrets.j2\"\n",
        &["resource #1 (file:/etc/a)", "field `template`", "`..`"],
    );
}

#[test]
fn a_templates_unknown_variable_is_named() {
    let s = Signer::new();
    s.write("defs/templates/bad.j2", "# ok\nport = {{ nosuchvar }}\n");
    s.refused(
        "template-unknown-var-named",
        "name = \"v\"\n[[resource]]\ntype = \"file\"\npath = \"/etc/a\"\ntemplate = \"templates/bad.j2\"\n",
        &["field `template`", "nosuchvar"],
    );
}

#[test]
fn an_unknown_type_a_missing_name_and_invalid_toml_are_refused() {
    let s = Signer::new();
    s.refused(
        "unknown-type",
        "name = \"v\"\n[[resource]]\ntype = \"fiel\"\npath = \"/etc/a\"\n",
        &[
            "resource #1",
            "field `type`",
            "unknown resource type `fiel`",
            "file, directory",
        ],
    );
    s.refused(
        "exec-without-name",
        "name = \"v\"\n[[resource]]\ntype = \"exec\"\ncommand = \"true\"\n",
        &["resource #1", "field `name`", "required"],
    );
    s.refused(
        "definition-without-name",
        "[[resource]]\ntype = \"file\"\npath = \"/etc/a\"\ncontent = \"a\"\n",
        &["field `name`", "required"],
    );
    s.refused(
        "bad-channel-name",
        "name = \"Web Tier\"\n",
        &["field `name`", "Web Tier"],
    );
    s.refused(
        "invalid-toml",
        "name = \"v\"\n[[resource]\ntype = \"file\"\n",
        &["invalid TOML"],
    );
}

#[test]
fn several_problems_are_all_reported_at_once() {
    let s = Signer::new();
    let err = s.refused(
        "many",
        r#"
name = "v"
[[resource]]
type = "file"
path = "etc/a"
content = "a"
mdoe = "1"
[[resource]]
type = "directory"
path = "/d"
mode = "0999"
[[resource]]
type = "user"
"#,
        &[
            "4 problems",
            "resource #1 (file:etc/a): field `path`",
            "resource #1 (file:etc/a): field `mdoe`",
            "resource #2 (directory:/d): field `mode`",
            "resource #3: field `name`",
        ],
    );
    // one line per problem, each naming the file
    let lines = err.lines().filter(|l| l.contains("many.toml: resource #"));
    assert_eq!(lines.count(), 4, "{err}");
}

#[test]
fn sign_of_a_missing_definition_is_bad_input() {
    let s = Signer::new();
    let missing = s.ws.path("defs/nope.toml");
    s.ws.try_sign(&missing, &[&s.key], 1, "nope.bundle", &[])
        .code(2)
        .stderr_has(&["nope.toml", "cannot read"]);
    // and --version 0 or a missing --version is bad usage
    let def = s.write("defs/ok.toml", &file_with(""));
    s.ws.try_sign(&def, &[&s.key], 0, "zero.bundle", &[])
        .code(2)
        .stderr_has(&["--version"]);
    s.ws.run([
        "sign",
        def.to_str().unwrap(),
        "--key",
        s.key.private.to_str().unwrap(),
    ])
    .code(2)
    .stderr_has(&["--version"]);
    assert!(!s.ws.path("zero.bundle").exists());
}

#[test]
fn plan_of_a_definition_needs_no_trust_and_changes_nothing() {
    let s = Signer::new();
    s.write("defs/templates/t.j2", "port = {{ port }}\n");
    let def = s.write(
        "defs/ok.toml",
        r#"
name = "ok"
[vars]
port = 8080
[[resource]]
type = "file"
path = "/etc/ok.conf"
template = "templates/t.j2"
mode = "0600"
"#,
    );
    let root = s.ws.mkdir("root");
    let before = snapshot(&root);
    s.ws.run([
        "plan",
        def.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ])
    .ok()
    .stdout_has(&[
        "plan for channel ok",
        "not signed",
        "file:/etc/ok.conf: would change",
        "+port = 8080",
        "1 to change",
    ]);
    let j =
        s.ws.run([
            "plan",
            def.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(results(&j)["file:/etc/ok.conf"], "changed");
    assert_same(&before, &snapshot(&root), "the root after plan");
}
