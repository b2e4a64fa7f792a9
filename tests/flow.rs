//! The whole flow, run with the real binary over temporary directories: keygen → sign →
//! verify → plan → apply → re-apply (nothing rewritten) → hand edit → plan shows it → apply
//! corrects it; JSON output; audit resources; targets; accounts; dropped resources.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A definition that uses every file-like resource type, a template with vars and node
/// facts, an audit resource and a refresh-only exec notified by the config file.
const APP: &str = r#"
name = "app"

[vars]
port = 8080
greeting = "hello"
upstreams = ["10.0.0.1:9000", "10.0.0.2:9000"]

[[resource]]
type = "directory"
path = "/etc/app"
mode = "0750"

[[resource]]
type = "file"
path = "/etc/app/app.conf"
template = "templates/app.conf.j2"
mode = "0640"
notify = ["exec:reload-app"]

[[resource]]
type = "file"
path = "/etc/motd"
content = "{{ greeting }} from {{ node.hostname }} ({{ node.os }} {{ node.os_version }}), role {{ node.labels.role }} in dc {{ node.labels.dc }}\n"
mode = "0644"

[[resource]]
type = "file"
path = "/srv/deep/nested/file.txt"
content = "no template here\n"

[[resource]]
type = "symlink"
path = "/etc/app/current"
target = "/etc/app/app.conf"

[[resource]]
type = "absent"
path = "/etc/cron.d/legacy"

[[resource]]
type = "file"
path = "/etc/ssh/hardening.conf"
content = "PermitRootLogin no\n"
mode = "0600"
audit = true

[[resource]]
type = "exec"
name = "reload-app"
command = "mkdir -p \"$DRIFTLESS_ROOT/var/log\" && echo reloaded >> \"$DRIFTLESS_ROOT/var/log/app-reloads\""
refreshonly = true
"#;

const APP_TEMPLATE: &str = "# app for {{ node.hostname }}
port = {{ port }}
{% for u in upstreams -%}
upstream = {{ u }}
{% endfor -%}
";

const LABELS: [&str; 2] = ["--labels", "role=web,dc=a"];

fn app_conf() -> String {
    format!(
        "# app for {}\nport = 8080\nupstream = 10.0.0.1:9000\nupstream = 10.0.0.2:9000\n",
        hostname()
    )
}

fn motd() -> String {
    format!("hello from {} (testos 42), role web in dc a\n", hostname())
}

/// A fleet with the app definition written, and a root that already has an os-release (for
/// the `node.os` facts), a file the definition wants absent and a drifted audit file.
fn app_fleet() -> (Fleet, PathBuf) {
    let f = Fleet::new();
    f.write("defs/templates/app.conf.j2", APP_TEMPLATE);
    let def = f.write("defs/app.toml", APP);
    f.seed("/etc/os-release", "ID=testos\nVERSION_ID=42\n");
    f.seed(
        "/etc/cron.d/legacy",
        "0 3 * * * root /usr/local/bin/old-backup\n",
    );
    f.seed("/etc/ssh/hardening.conf", "PermitRootLogin yes\n");
    (f, def)
}

fn reloads(f: &Fleet) -> usize {
    match std::fs::read_to_string(f.in_root("/var/log/app-reloads")) {
        Ok(t) => t.lines().filter(|l| *l == "reloaded").count(),
        Err(_) => 0,
    }
}

/// The summary line of `apply` says nothing changed and nothing failed.
#[track_caller]
fn assert_nothing_changed(stdout: &str) {
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("0 changed, ") && l.contains(" 0 failed")),
        "expected `0 changed, ..., 0 failed`:\n{stdout}"
    );
}

fn ino(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).expect("stat").ino()
}

#[test]
fn keygen_writes_a_private_key_0600_and_a_public_key_and_never_overwrites() {
    let ws = Workspace::new();
    let k = ws.keygen("release");
    assert_eq!(mode_of(&k.private), 0o600, "private key mode");
    assert!(k.public.is_file());
    let public = read(&k.public);
    let private = read(&k.private);
    assert!(
        public.contains("ed25519-public:"),
        "public key file: {public}"
    );
    assert!(
        !public.contains(private.lines().last().unwrap_or("")),
        "the public file must not hold the private key"
    );
    // Two key pairs differ.
    let k2 = ws.keygen("second");
    assert_ne!(read(&k2.public), public);

    // Again with the same prefix: refused, and the existing key is left alone.
    let before = snapshot(&ws.path("keys"));
    ws.run(["keygen", "--out", ws.path("keys/release").to_str().unwrap()])
        .code(2)
        .stderr_has(&["release.key", "already exists"]);
    assert_same(&before, &snapshot(&ws.path("keys")), "keys/");
}

#[test]
fn sign_verify_plan_apply_reapply_hand_edit_and_correct() {
    let (f, def) = app_fleet();
    let host = hostname();

    // sign
    let bundle = f.sign(&def, 1, "app-1.bundle");
    assert!(bundle.is_file());

    // verify: the header, the signer, the content hash
    let v = f.verify(&bundle);
    v.ok().stdout_has(&[
        "channel    app",
        "version    1",
        "signers    release (",
        "content    sha256:",
        "verified   OK",
    ]);
    let content_line = v
        .stdout
        .lines()
        .find(|l| l.starts_with("content "))
        .unwrap();
    let hash = content_line.rsplit("sha256:").next().unwrap();
    assert_eq!(hash.len(), 64, "content hash: {content_line}");
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));

    // plan: shows content diffs, changes nothing on disk (with the state directory given,
    // and with the default one, which lies under the root)
    let before = f.snapshot();
    let p = f.plan(
        &bundle,
        &["--trust", f.trust.to_str().unwrap(), LABELS[0], LABELS[1]],
    );
    p.ok().stdout_has(&[
        "signature verified",
        "directory:/etc/app: would change",
        "file:/etc/app/app.conf: would change",
        "+port = 8080",
        "+upstream = 10.0.0.2:9000",
        &format!("+hello from {host} (testos 42), role web in dc a"),
        "symlink:/etc/app/current: would change",
        "absent:/etc/cron.d/legacy: would change",
        "exec:reload-app: would change",
        "(notified)",
        "-PermitRootLogin yes",
        "+PermitRootLogin no",
    ]);
    f.assert_unchanged(&before, "plan");
    f.run([
        "plan",
        bundle.to_str().unwrap(),
        "--root",
        f.root.to_str().unwrap(),
        "--labels",
        "role=web,dc=a",
    ])
    .ok();
    f.assert_unchanged(&before, "plan with the default state directory");

    // apply
    let a = f.apply(&bundle, &LABELS);
    a.ok().stdout_has(&[
        "applied app v1",
        "7 changed, 0 unchanged, 0 failed, 1 drifted (audit)",
    ]);
    assert_eq!(mode_of(&f.in_root("/etc/app")), 0o750);
    assert!(f.in_root("/etc/app").is_dir());
    assert_eq!(read(&f.in_root("/etc/app/app.conf")), app_conf());
    assert_eq!(mode_of(&f.in_root("/etc/app/app.conf")), 0o640);
    assert_eq!(read(&f.in_root("/etc/motd")), motd());
    assert_eq!(mode_of(&f.in_root("/etc/motd")), 0o644);
    assert_eq!(
        read(&f.in_root("/srv/deep/nested/file.txt")),
        "no template here\n"
    );
    // missing parents are created 0755
    assert_eq!(mode_of(&f.in_root("/srv/deep")), 0o755);
    assert_eq!(mode_of(&f.in_root("/srv/deep/nested")), 0o755);
    assert_eq!(
        std::fs::read_link(f.in_root("/etc/app/current")).unwrap(),
        Path::new("/etc/app/app.conf")
    );
    assert!(
        std::fs::symlink_metadata(f.in_root("/etc/cron.d/legacy")).is_err(),
        "the absent path was removed"
    );
    assert_eq!(
        read(&f.in_root("/etc/ssh/hardening.conf")),
        "PermitRootLogin yes\n",
        "an audit resource is never corrected"
    );
    assert_eq!(reloads(&f), 1, "the refresh-only exec ran once, notified");
    assert!(f.state.join("marks").is_file());
    assert!(f.state.join("bundles/app.bundle").is_file());

    // re-apply: nothing rewritten (same inode, same mtime, everywhere), the exec not run
    let before = f.snapshot();
    f.apply(&bundle, &LABELS).ok().stdout_has(&[
        "applied app v1 (re-apply)",
        "0 changed, 7 unchanged, 0 failed, 1 drifted (audit)",
    ]);
    assert_same(&before.0, &snapshot(&f.root), "the root on re-apply");
    assert_eq!(reloads(&f), 1, "the refresh-only exec did not run again");

    // hand edit, in place (same inode); a hard link shows whether apply writes in place
    let conf = f.in_root("/etc/app/app.conf");
    std::fs::write(&conf, "port = 9999\n").unwrap();
    let edited_ino = ino(&conf);
    let link = f.path("hardlink-to-app.conf");
    std::fs::hard_link(&conf, &link).unwrap();
    let before = f.snapshot();
    f.plan(
        &bundle,
        &["--trust", f.trust.to_str().unwrap(), LABELS[0], LABELS[1]],
    )
    .ok()
    .stdout_has(&[
        "file:/etc/app/app.conf: would change",
        "-port = 9999",
        "+port = 8080",
        "exec:reload-app: would change",
        "(notified)",
        "2 to change, 5 unchanged, 0 failed, 1 drifted (audit)",
    ]);
    f.assert_unchanged(&before, "plan after a hand edit");

    f.apply(&bundle, &LABELS).ok().stdout_has(&[
        "file:/etc/app/app.conf: changed",
        "exec:reload-app: changed",
        "2 changed, 5 unchanged, 0 failed, 1 drifted (audit)",
    ]);
    assert_eq!(read(&conf), app_conf(), "the hand edit is undone");
    assert_eq!(mode_of(&conf), 0o640);
    assert_ne!(
        ino(&conf),
        edited_ino,
        "written beside and renamed into place"
    );
    assert_eq!(
        read(&link),
        "port = 9999\n",
        "the old inode was not truncated and rewritten in place"
    );
    assert_eq!(
        reloads(&f),
        2,
        "the config changed again: the exec ran again"
    );
}

#[test]
fn mode_and_symlink_drift_is_corrected_and_notifies_only_on_change() {
    let (f, def) = app_fleet();
    let bundle = f.sign(&def, 1, "app-1.bundle");
    f.apply(&bundle, &LABELS).ok();
    assert_eq!(reloads(&f), 1);

    set_mode(&f.in_root("/etc/motd"), 0o666);
    set_mode(&f.in_root("/etc/app"), 0o777);
    let current = f.in_root("/etc/app/current");
    std::fs::remove_file(&current).unwrap();
    std::os::unix::fs::symlink("/somewhere/else", &current).unwrap();
    // the absent path comes back
    f.seed("/etc/cron.d/legacy", "back again\n");

    f.apply(&bundle, &LABELS).ok().stdout_has(&[
        "file:/etc/motd: changed: mode 0666 -> 0644",
        "directory:/etc/app: changed: mode 0777 -> 0750",
        "symlink:/etc/app/current: changed",
        "absent:/etc/cron.d/legacy: changed",
        "4 changed, 3 unchanged, 0 failed, 1 drifted (audit)",
    ]);
    assert_eq!(mode_of(&f.in_root("/etc/motd")), 0o644);
    assert_eq!(read(&f.in_root("/etc/motd")), motd());
    assert_eq!(mode_of(&f.in_root("/etc/app")), 0o750);
    assert_eq!(
        std::fs::read_link(&current).unwrap(),
        Path::new("/etc/app/app.conf")
    );
    assert!(std::fs::symlink_metadata(f.in_root("/etc/cron.d/legacy")).is_err());
    assert_eq!(
        reloads(&f),
        1,
        "app.conf did not change: the exec was not notified"
    );
}

#[test]
fn plan_and_apply_json_give_a_result_per_resource_and_audit_drift_is_not_corrected() {
    let (f, def) = app_fleet();
    let bundle = f.sign(&def, 1, "app-1.bundle");
    let allowed = ["changed", "unchanged", "failed", "skipped", "drift"];

    let before = f.snapshot();
    let p = f.plan(
        &bundle,
        &[
            "--trust",
            f.trust.to_str().unwrap(),
            "--json",
            LABELS[0],
            LABELS[1],
        ],
    );
    p.ok();
    f.assert_unchanged(&before, "plan --json");
    let j = p.json();
    assert_eq!(j["channel"], "app");
    assert_eq!(j["version"], 1);
    assert_eq!(j["verified"], true);
    assert_eq!(j["targeted"], true);
    let r = results(&j);
    assert_eq!(r.len(), 8, "{r:?}");
    assert!(r.values().all(|v| allowed.contains(&v.as_str())), "{r:?}");
    assert_eq!(r["file:/etc/app/app.conf"], "changed");
    assert_eq!(r["exec:reload-app"], "changed");
    assert_eq!(r["absent:/etc/cron.d/legacy"], "changed");
    assert_eq!(r["file:/etc/ssh/hardening.conf"], "drift");
    let conf = j["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["resource"] == "file:/etc/app/app.conf")
        .unwrap();
    assert!(
        conf["diff"].as_str().unwrap_or("").contains("+port = 8080"),
        "plan --json carries the diff: {conf:#}"
    );

    let a = f.apply(&bundle, &["--json", LABELS[0], LABELS[1]]);
    a.ok();
    let j = a.json();
    let r = results(&j);
    assert!(r.values().all(|v| allowed.contains(&v.as_str())), "{r:?}");
    assert_eq!(r["directory:/etc/app"], "changed");
    assert_eq!(r["file:/etc/motd"], "changed");
    assert_eq!(r["file:/etc/ssh/hardening.conf"], "drift");
    assert_eq!(j["summary"]["changed"], 7);
    assert_eq!(j["summary"]["drift"], 1);
    assert_eq!(j["summary"]["failed"], 0);
    assert_eq!(
        read(&f.in_root("/etc/ssh/hardening.conf")),
        "PermitRootLogin yes\n",
        "audit drift is reported, not corrected"
    );

    let j = f.apply(&bundle, &["--json", LABELS[0], LABELS[1]]).json();
    let r = results(&j);
    for (res, result) in &r {
        let want = if res == "file:/etc/ssh/hardening.conf" {
            "drift"
        } else {
            "unchanged"
        };
        assert_eq!(result, want, "{res} on re-apply");
    }
    assert_eq!(j["summary"]["unchanged"], 7);
    assert_eq!(
        read(&f.in_root("/etc/ssh/hardening.conf")),
        "PermitRootLogin yes\n"
    );
}

#[test]
fn a_failing_resource_is_reported_failed_its_dependents_skipped_and_apply_exits_1() {
    let f = Fleet::new();
    let def = f.write(
        "defs/fail.toml",
        r#"
name = "fail"

[[resource]]
type = "exec"
name = "broken"
command = "echo it went wrong >&2; exit 3"

[[resource]]
type = "file"
path = "/etc/after-broken"
content = "never\n"
requires = ["exec:broken"]

[[resource]]
type = "file"
path = "/etc/independent"
content = "fine\n"
"#,
    );
    let bundle = f.sign(&def, 1, "fail-1.bundle");
    let a = f.apply(&bundle, &["--json"]);
    a.code(1);
    let j = a.json();
    let r = results(&j);
    assert_eq!(r["exec:broken"], "failed");
    assert_eq!(r["file:/etc/after-broken"], "skipped");
    assert_eq!(r["file:/etc/independent"], "changed");
    let broken = j["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["resource"] == "exec:broken")
        .unwrap();
    let err = broken["error"].as_str().unwrap_or("");
    assert!(
        err.contains("exit status 3") && err.contains("it went wrong"),
        "{broken:#}"
    );
    assert!(!f.in_root("/etc/after-broken").exists());
    assert_eq!(read(&f.in_root("/etc/independent")), "fine\n");

    // The text output names the failure too.
    f.apply(&bundle, &[])
        .code(1)
        .stdout_has(&["exec:broken: FAILED", "1 failed"]);
}

#[test]
fn example_web_is_accepted_but_not_applied_on_a_node_that_is_not_targeted() {
    let f = Fleet::new();
    let bundle = f.sign(&examples().join("web.toml"), 1, "web-1.bundle");
    let before = snapshot(&f.root);

    f.plan(&bundle, &["--labels", "role=db"])
        .ok()
        .stdout_has(&["not targeted"]);
    f.apply(&bundle, &["--labels", "role=db"])
        .ok()
        .stdout_has(&["web v1: accepted; not targeted", "role=web"]);
    assert_same(
        &before,
        &snapshot(&f.root),
        "the root of a node not targeted",
    );
    assert!(
        f.state.join("bundles/web.bundle").is_file(),
        "accepted: stored, and the mark raised"
    );
    let j = f.apply(&bundle, &["--labels", "role=db", "--json"]).json();
    assert_eq!(j["targeted"], false);
    assert_same(
        &before,
        &snapshot(&f.root),
        "the root of a node not targeted",
    );
}

#[test]
fn example_web_creates_its_group_and_user_in_the_roots_own_files() {
    let f = Fleet::new();
    f.seed("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    f.seed("/etc/group", "root:x:0:\n");
    let bundle = f.sign(&examples().join("web.toml"), 1, "web-1.bundle");

    f.apply(&bundle, &["--labels", "role=web,dc=a"])
        .ok()
        .stdout_has(&["group:webapp: changed", "user:webapp: changed"]);
    let passwd = read(&f.in_root("/etc/passwd"));
    let group = read(&f.in_root("/etc/group"));
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    let user = passwd
        .lines()
        .find(|l| l.starts_with("webapp:"))
        .unwrap_or_else(|| panic!("no webapp user in ROOT/etc/passwd:\n{passwd}"));
    let fields: Vec<&str> = user.split(':').collect();
    assert_eq!(fields[2], "2001", "uid: {user}");
    assert_eq!(fields[5], "/srv/webapp", "home: {user}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "shell: {user}");
    let grp = group
        .lines()
        .find(|l| l.starts_with("webapp:"))
        .unwrap_or_else(|| panic!("no webapp group in ROOT/etc/group:\n{group}"));
    assert!(grp.starts_with("webapp:x:2001:"), "{grp}");
    assert!(grp.ends_with("webapp"), "the user is a member: {grp}");

    // Files owned by the new group, with the root's own gid for it.
    let dir = std::fs::metadata(f.in_root("/etc/webapp")).unwrap();
    assert_eq!(dir.gid(), 2001);
    assert_eq!(mode_of(&f.in_root("/etc/webapp")), 0o750);
    let conf = f.in_root("/etc/webapp/webapp.conf");
    assert_eq!(std::fs::metadata(&conf).unwrap().gid(), 2001);
    assert_eq!(mode_of(&conf), 0o640);
    let text = read(&conf);
    assert!(text.contains("listen = 0.0.0.0:8080"), "{text}");
    assert!(text.contains("upstream = 10.0.0.12:9000"), "{text}");
    assert!(text.contains(&hostname()), "{text}");
    assert_eq!(
        read(&f.in_root("/etc/motd.d/web")),
        format!("web node {} in dc a, port 8080\n", hostname())
    );
    let reload_log = f.in_root("/var/log/webapp-reloads");
    assert_eq!(read(&reload_log).lines().count(), 1, "reloaded once");

    let before = snapshot(&f.root);
    let again = f.apply(&bundle, &["--labels", "role=web,dc=a"]);
    again.ok().stdout_has(&["(re-apply)"]);
    assert_nothing_changed(&again.stdout);
    assert_same(&before, &snapshot(&f.root), "the root on re-apply");
    assert_eq!(read(&reload_log).lines().count(), 1, "not reloaded again");
}

#[test]
fn example_base_converges_under_a_root_and_then_has_nothing_to_do() {
    let f = Fleet::new();
    f.seed("/etc/cron.d/legacy-backup", "old\n");
    let bundle = f.sign(&examples().join("base.toml"), 1, "base-1.bundle");
    let a = f.apply(&bundle, &[]);
    a.ok().stdout_has(&["0 failed"]);
    assert!(read(&f.in_root("/etc/motd")).contains(&hostname()));
    assert!(read(&f.in_root("/etc/driftless.d/ntp.conf")).contains("iburst"));
    assert!(std::fs::symlink_metadata(f.in_root("/etc/cron.d/legacy-backup")).is_err());
    let before = snapshot(&f.root);
    let again = f.apply(&bundle, &[]);
    again.ok().stdout_has(&["(re-apply)"]);
    assert_nothing_changed(&again.stdout);
    assert_same(&before, &snapshot(&f.root), "the root on re-apply");
}

#[test]
fn a_resource_dropped_by_a_newer_version_is_left_in_place_and_listed() {
    let f = Fleet::new();
    let v1 = f.write(
        "defs/v1/drop.toml",
        r#"
name = "drop"
[[resource]]
type = "file"
path = "/etc/keep"
content = "keep v1\n"
[[resource]]
type = "file"
path = "/etc/dropme"
content = "dropped later\n"
"#,
    );
    let v2 = f.write(
        "defs/v2/drop.toml",
        r#"
name = "drop"
[[resource]]
type = "file"
path = "/etc/keep"
content = "keep v2\n"
"#,
    );
    let b1 = f.sign(&v1, 1, "drop-1.bundle");
    let b2 = f.sign(&v2, 2, "drop-2.bundle");
    f.apply(&b1, &[]).ok();
    let dropme = f.in_root("/etc/dropme");
    let dropped_ino = ino(&dropme);

    let before = f.snapshot();
    let trust = f.trust.to_str().unwrap().to_string();
    f.plan(&b2, &["--trust", &trust])
        .ok()
        .stdout_has(&["file:/etc/dropme: no longer managed", "+keep v2"]);
    let j = f.plan(&b2, &["--trust", &trust, "--json"]).json();
    assert_eq!(
        j["no_longer_managed"],
        serde_json::json!(["file:/etc/dropme"])
    );
    f.assert_unchanged(&before, "plan");

    let a = f.apply(&b2, &[]);
    a.ok().stdout_has(&[
        "file:/etc/dropme: no longer managed",
        "file:/etc/keep: changed",
    ]);
    assert_eq!(read(&dropme), "dropped later\n", "left as it is");
    assert_eq!(ino(&dropme), dropped_ino, "not even rewritten");
    assert_eq!(read(&f.in_root("/etc/keep")), "keep v2\n");
}

#[test]
fn plan_of_a_bundle_without_trust_says_the_signature_was_not_checked() {
    let (f, def) = app_fleet();
    let bundle = f.sign(&def, 1, "app-1.bundle");
    let before = f.snapshot();
    f.plan(&bundle, &LABELS).ok().stdout_has(&[
        "signature NOT checked",
        "file:/etc/app/app.conf: would change",
    ]);
    let j = f.plan(&bundle, &["--json", LABELS[0], LABELS[1]]).json();
    assert_eq!(j["verified"], false);
    f.assert_unchanged(&before, "plan without trust");
}

#[test]
fn symlinks_in_the_root_never_lead_a_write_outside_it() {
    let f = Fleet::new();
    // Outside the root: a directory that symlinks in the root point at, absolutely and
    // relatively (climbing above the root with `..`).
    let outside = f.ws.mkdir("outside");
    std::fs::write(outside.join("gone"), "must stay\n").unwrap();
    std::os::unix::fs::symlink(&outside, f.in_root("/etc")).unwrap();
    std::os::unix::fs::symlink("../../outside", f.in_root("/var")).unwrap();
    f.ws.mkdir("root/srv");
    std::os::unix::fs::symlink("../../outside/link-target", f.in_root("/srv/z")).unwrap();
    let def = f.write(
        "defs/escape.toml",
        r#"
name = "escape"
[[resource]]
type = "file"
path = "/etc/x"
content = "through an absolute symlink\n"
[[resource]]
type = "file"
path = "/var/y"
content = "through a relative symlink\n"
[[resource]]
type = "file"
path = "/srv/z"
content = "replacing a symlink that points out\n"
[[resource]]
type = "absent"
path = "/var/gone"
"#,
    );
    let bundle = f.sign(&def, 1, "escape-1.bundle");
    let before = snapshot(&outside);
    let a = f.apply(&bundle, &[]);
    assert!(a.code == 0 || a.code == 1, "{a:?}");
    assert_same(
        &before,
        &snapshot(&outside),
        "the directory outside the root",
    );
    // The symlink that pointed out was replaced by the file itself.
    let z = f.in_root("/srv/z");
    if a.code == 0 {
        assert!(!std::fs::symlink_metadata(&z)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(read(&z), "replacing a symlink that points out\n");
    }
}

/// `[rollout]` is validated by `sign`, carried in the signed header and shown by `verify`.
#[test]
fn a_rollout_policy_is_validated_signed_and_shown() {
    let f = Fleet::new();
    let def = f.write(
        "app.toml",
        "name = \"app\"\n[[resource]]\ntype = \"file\"\npath = \"/etc/app.conf\"\ncontent = \"x\\n\"\n\
         [rollout]\nwaves = [0.1, 0.5, 1.0]\nbake = \"5m\"\nmax_unhealthy = 0.05\non_failure = \"rollback\"\n",
    );
    let bundle = f.sign(&def, 1, "app-1.bundle");
    let out = f.run([
        "verify".to_string(),
        path_str(&bundle),
        "--trust".into(),
        path_str(&f.trust),
        "--json".into(),
    ]);
    let r = &out.ok().json()["rollout"];
    assert_eq!(r["waves"], serde_json::json!([0.1, 0.5, 1.0]), "{r:#}");
    assert_eq!(r["bake_secs"], 300, "{r:#}");
    assert_eq!(r["max_unhealthy"], 0.05, "{r:#}");
    assert_eq!(r["on_failure"], "rollback", "{r:#}");
    f.verify(&bundle)
        .ok()
        .stdout_has(&["waves 10% 50% 100%", "on failure rollback"]);
    let bad = f.write(
        "bad.toml",
        "name = \"app\"\n[rollout]\nwaves = [0.5, 0.2]\n",
    );
    f.ws.try_sign(&bad, &[&f.release], 1, "bad.bundle", &[])
        .code(2)
        .stderr_has(&["bad.toml", "[rollout]", "waves"]);
}

/// `exec` guards: `creates` (a path under the root), `unless` and `onlyif` (commands run
/// with the root as working directory) decide whether the command runs, on every apply.
#[test]
fn exec_runs_only_as_its_guards_allow() {
    let f = Fleet::new();
    f.seed("/etc/present", "x\n");
    let def = f.write(
        "defs/guards.toml",
        r#"name = "guards"
[[resource]]
type = "exec"
name = "created-already"
command = "echo ran >> log-created"
creates = "/etc/present"
[[resource]]
type = "exec"
name = "creates-missing"
command = "echo ran >> log-missing"
creates = "/etc/absent"
[[resource]]
type = "exec"
name = "unless-true"
command = "echo ran >> log-unless-true"
unless = "true"
[[resource]]
type = "exec"
name = "unless-false"
command = "echo ran >> log-unless-false"
unless = "false"
[[resource]]
type = "exec"
name = "onlyif-true"
command = "echo ran >> log-onlyif-true"
onlyif = "true"
[[resource]]
type = "exec"
name = "onlyif-false"
command = "echo ran >> log-onlyif-false"
onlyif = "false"
"#,
    );
    let bundle = f.sign(&def, 1, "guards-1.bundle");
    f.apply(&bundle, &[]).code(0);
    let runs = |name: &str| {
        std::fs::read_to_string(f.in_root(&format!("/{name}")))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    assert_eq!(runs("log-created"), 0, "creates: the path exists");
    assert_eq!(runs("log-missing"), 1, "creates: the path is missing");
    assert_eq!(runs("log-unless-true"), 0, "unless: the guard succeeded");
    assert_eq!(runs("log-unless-false"), 1, "unless: the guard failed");
    assert_eq!(runs("log-onlyif-true"), 1, "onlyif: the guard succeeded");
    assert_eq!(runs("log-onlyif-false"), 0, "onlyif: the guard failed");
    // Guards are judged again on every apply: the unguarded-by-path ones run again.
    f.apply(&bundle, &[]).code(0);
    assert_eq!(runs("log-missing"), 2);
    assert_eq!(runs("log-unless-false"), 2);
    assert_eq!(runs("log-onlyif-true"), 2);
    assert_eq!(
        runs("log-created") + runs("log-unless-true") + runs("log-onlyif-false"),
        0
    );
}

/// `package` on the real system: `plan` reads dpkg's database (`dpkg-query`) and changes
/// nothing. Compared with what `dpkg-query` itself says about coreutils.
#[test]
fn plan_of_packages_reads_the_real_dpkg_state() {
    let ws = Workspace::new();
    let def = ws.write(
        "pkgs.toml",
        r#"name = "pkgs"
[[resource]]
type = "package"
name = "dpkg"
[[resource]]
type = "package"
name = "coreutils"
ensure = "absent"
[[resource]]
type = "package"
name = "driftless-no-such-package"
ensure = "absent"
[[resource]]
type = "package"
name = "driftless-no-such-package-2"
"#,
    );
    let version = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "coreutils"])
        .output()
        .expect("dpkg-query");
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    assert!(!version.is_empty(), "coreutils is installed here");
    ws.run(["plan", def.to_str().unwrap()]).ok().stdout_has(&[
        &format!("package:coreutils: would change: remove (version {version})"),
        "package:driftless-no-such-package-2: would change: install",
        "2 to change, 2 unchanged, 0 failed",
    ]);
    let still = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "coreutils"])
        .output()
        .expect("dpkg-query");
    assert_eq!(String::from_utf8_lossy(&still.stdout), version);
}

/// `service` with no systemd as PID 1 (this test machine; the booted hosts of
/// `tests/hosts/run.sh` cover the rest): a named failure of that resource, exit 1. Where
/// systemd does run, the made-up unit is a named "not found" instead.
#[test]
fn a_service_without_systemd_is_a_named_failure() {
    let ws = Workspace::new();
    let def = ws.write(
        "svc.toml",
        "name = \"svc\"\n[[resource]]\ntype = \"service\"\nname = \"driftless-test-nothing\"\nensure = \"running\"\n",
    );
    let out = ws.run(["plan", def.to_str().unwrap()]);
    let out = out.code(1);
    if std::path::Path::new("/run/systemd/system").exists() {
        out.stdout_has(&["service:driftless-test-nothing", "not found"]);
    } else {
        out.stdout_has(&[
            "service:driftless-test-nothing: FAILED: systemd is not running on this machine",
            "0 to change, 0 unchanged, 1 failed",
        ]);
    }
}

/// `package` with `ensure = "absent"` on the real system removes the package with apt-get:
/// a throw-away package built here with dpkg-deb and installed with dpkg, then removed by
/// `apply` (and already absent on the next apply).
#[test]
fn apply_removes_a_package_with_apt_get() {
    let ws = Workspace::new();
    let pkg = ws.path("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/share/doc/driftless-test-remove")).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: driftless-test-remove\nVersion: 1.0\nArchitecture: all\nMaintainer: driftless tests <tests@localhost>\nDescription: removed by a driftless test\n",
    )
    .unwrap();
    std::fs::write(
        pkg.join("usr/share/doc/driftless-test-remove/README"),
        "x\n",
    )
    .unwrap();
    let deb = ws.path("remove.deb");
    let sh = |cmd: &mut std::process::Command| {
        let out = cmd.output().expect("run");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(std::process::Command::new("dpkg-deb")
        .arg("-b")
        .arg(&pkg)
        .arg(&deb));
    sh(std::process::Command::new("dpkg").arg("-i").arg(&deb));
    let status = || {
        std::process::Command::new("dpkg-query")
            .args(["-W", "-f", "${Status}", "driftless-test-remove"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    };
    assert_eq!(status(), "install ok installed");
    let release = ws.keygen("release");
    let trust = ws.trust_dir("trust", &[&release], None);
    let def = ws.write(
        "rm.toml",
        "name = \"rm\"\n[[resource]]\ntype = \"package\"\nname = \"driftless-test-remove\"\nensure = \"absent\"\n",
    );
    let bundle = ws.path("rm.bundle");
    ws.run([
        "sign",
        def.to_str().unwrap(),
        "--key",
        release.private.to_str().unwrap(),
        "--version",
        "1",
        "--out",
        bundle.to_str().unwrap(),
    ])
    .ok();
    let state = ws.path("state");
    let apply = || {
        ws.run([
            "apply",
            bundle.to_str().unwrap(),
            "--trust",
            trust.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ])
    };
    apply()
        .ok()
        .stdout_has(&["package:driftless-test-remove: changed: remove (version 1.0)"]);
    assert!(
        !status().contains("installed"),
        "still installed: {}",
        status()
    );
    apply()
        .ok()
        .stdout_has(&["0 changed, 1 unchanged, 0 failed"]);
}
