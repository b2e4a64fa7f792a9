//! Who may speak for the fleet, from the command line: `admit`, `revoke` and `root` write
//! signed files that `verify` checks against a trust directory with key roles, run as real
//! processes. Each refusal checks the exit code (1 refused, 2 unreadable or bad usage) and
//! that the message names the reason.

mod common;

use common::*;
use driftless_core::admission::{Certificate, SignedCertificate};
use std::path::{Path, PathBuf};

/// A release host of fleet `prod` with one key per role, and `trust/` naming them.
struct Roles {
    ws: Workspace,
    release: Key,
    admission: Key,
    root: Key,
    trust: PathBuf,
}

const ROLES_TOML: &str = r#"
fleet = "prod"
version = 1
[release]
keys = ["release.pub"]
[admission]
keys = ["admission.pub"]
threshold = 1
[root]
keys = ["root.pub"]
"#;

impl Roles {
    fn new() -> Roles {
        let ws = Workspace::new();
        let release = ws.keygen("release");
        let admission = ws.keygen("admission");
        let root = ws.keygen("root");
        let trust = ws.trust_dir("trust", &[&release, &admission, &root], Some(ROLES_TOML));
        // keys/ is the release host's own trust root: `admit` and `revoke` take the fleet
        // from the trust.toml beside the key.
        ws.write("keys/trust.toml", ROLES_TOML);
        Roles {
            ws,
            release,
            admission,
            root,
            trust,
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        self.ws.run(args)
    }

    fn verify(&self, file: &Path, json: bool) -> Out {
        let mut args = vec!["verify", s(file), "--trust", s(&self.trust)];
        if json {
            args.push("--json");
        }
        self.run(&args)
    }

    /// A node key pair, as an agent's state directory would hold it.
    fn node(&self, name: &str) -> Key {
        self.ws.keygen(&format!("nodes/{name}"))
    }

    fn admit(&self, node: &str, key: &Key, out: &str, extra: &[&str]) -> Out {
        let out = self.ws.path(out);
        let mut args = vec![
            "admit",
            node,
            "--key",
            s(&key.private),
            "--labels",
            "role=web,dc=a",
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn sign_web(&self, key: &Key, out: &str) -> PathBuf {
        let def = self.ws.write(
            "defs/web.toml",
            "name = \"web\"\n[[resource]]\ntype = \"file\"\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n",
        );
        self.ws.sign(&def, &[key], 1, out, &["--fleet", "prod"])
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_node_admitted_by_its_key_file_or_its_peer_id_verifies() {
    let r = Roles::new();
    let node = r.node("web1");
    r.admit(
        s(&node.public),
        &r.admission,
        "web1.cert",
        &["--trust", s(&r.trust)],
    )
    .ok()
    .stdout_has(&["admitted node 12D3KooW", "fleet `prod`", "dc=a,role=web"]);
    let cert = r.ws.path("web1.cert");
    r.verify(&cert, false).ok().stdout_has(&[
        "kind       certificate",
        "labels     dc=a,role=web",
        "admission (",
        "verified   OK: 1 of 1 required signature(s) by admission keys",
    ]);
    let j = r.verify(&cert, true).ok().json();
    assert_eq!(j["kind"], "certificate");
    assert_eq!(j["fleet"], "prod");
    assert_eq!(j["verified"], true);
    assert_eq!(j["near_expiry"], false);
    assert_eq!(j["labels"]["role"], "web");
    let peer = j["node"].as_str().unwrap().to_string();
    assert!(peer.starts_with("12D3KooW"), "{j:#}");

    // The same node by its peer id: the same node key.
    r.admit(&peer, &r.admission, "by-id.cert", &["--fleet", "prod"])
        .ok();
    let k = r.verify(&r.ws.path("by-id.cert"), true).ok().json();
    assert_eq!(k["node_key"], j["node_key"]);

    // A peer id made by libp2p itself, as `status` shows it.
    let id = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id()
        .to_string();
    r.admit(&id, &r.admission, "other.cert", &["--trust", s(&r.trust)])
        .ok();
    let o = r.verify(&r.ws.path("other.cert"), true).ok().json();
    assert_eq!(o["node"], id.as_str());

    // A certificate that expires within the warning window (30 days) is reported as such.
    r.admit(
        &id,
        &r.admission,
        "short.cert",
        &["--trust", s(&r.trust), "--expires", "10d"],
    )
    .ok();
    let short = r.verify(&r.ws.path("short.cert"), true).ok().json();
    assert_eq!(short["near_expiry"], true, "{short:#}");
}

#[test]
fn a_certificate_signed_by_a_release_key_is_refused() {
    let r = Roles::new();
    let node = r.node("web1");
    // With --trust, admit refuses to write it.
    r.admit(
        s(&node.public),
        &r.release,
        "no.cert",
        &["--trust", s(&r.trust)],
    )
    .code(1)
    .stderr_has(&["would be refused", "wrong_role", "release key"]);
    assert!(!r.ws.path("no.cert").exists());
    // Without, it is written, and every node refuses it.
    r.admit(
        s(&node.public),
        &r.release,
        "rel.cert",
        &["--fleet", "prod"],
    )
    .ok();
    r.verify(&r.ws.path("rel.cert"), false)
        .code(1)
        .stderr_has(&["rel.cert: refused", "wrong_role"])
        .stdout_has(&["signers    release ("]);
    let j = r.verify(&r.ws.path("rel.cert"), true).code(1).json();
    assert_eq!(j["verified"], false);
    assert_eq!(j["refused"]["reason"], "wrong_role");
    // An open fleet (a directory of release keys) trusts no certificate at all.
    let open =
        r.ws.trust_dir("open", &[&r.release], Some("fleet = \"prod\"\n"));
    r.run(&["verify", s(&r.ws.path("rel.cert")), "--trust", s(&open)])
        .code(1)
        .stderr_has(&["no_keys", "open fleet"]);
}

#[test]
fn an_expired_certificate_is_refused() {
    let r = Roles::new();
    let node = r.node("web1");
    let admission = driftless_core::keys::parse_secret(&read(&r.admission.private)).unwrap();
    let node_key = driftless_core::keys::parse_public(&read(&node.public)).unwrap();
    let t = now();
    let cert = Certificate {
        fleet: "prod".into(),
        node_key: node_key.to_bytes(),
        labels: Default::default(),
        issued: driftless_core::Timestamp(t - 2 * 86400),
        expires: driftless_core::Timestamp(t - 86400),
    };
    let path = r.ws.path("old.cert");
    std::fs::write(&path, SignedCertificate::sign(cert, &[&admission]).encode()).unwrap();
    r.verify(&path, false).code(1).stderr_has(&[
        "old.cert: refused",
        "certificate expired",
        "(expired)",
    ]);
    // One that expires within 30 days verifies, with a warning.
    r.admit(
        s(&node.public),
        &r.admission,
        "soon.cert",
        &["--expires", "10d"],
    )
    .ok();
    r.verify(&r.ws.path("soon.cert"), false)
        .ok()
        .stdout_has(&["warning    expires within 30 days"]);
}

#[test]
fn a_tampered_certificate_is_refused() {
    let r = Roles::new();
    let node = r.node("web1");
    r.admit(s(&node.public), &r.admission, "web1.cert", &[])
        .ok();
    let bytes = std::fs::read(r.ws.path("web1.cert")).unwrap();
    // Turn role=web into role=veb.
    let at = bytes
        .windows(3)
        .position(|w| w == b"web")
        .expect("the label value is in the file");
    let mut bad = bytes.clone();
    bad[at] = b'v';
    let path = r.ws.path("tampered.cert");
    std::fs::write(&path, &bad).unwrap();
    r.verify(&path, false)
        .code(1)
        .stderr_has(&["tampered.cert: refused", "bad_signature"]);
    // Cut short: unreadable, exit 2.
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    r.verify(&path, false)
        .code(2)
        .stderr_has(&["tampered.cert", "malformed certificate"]);
}

#[test]
fn a_revocation_list_names_its_nodes_and_is_verified() {
    let r = Roles::new();
    let a = r.node("a");
    let peer = r
        .admit(s(&r.node("b").public), &r.admission, "b.cert", &[])
        .ok()
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("12D3KooW"))
        .unwrap()
        .to_string();
    let out = r.ws.path("revoked.bundle");
    r.run(&[
        "revoke",
        s(&a.public),
        &peer,
        "--key",
        s(&r.admission.private),
        "--version",
        "3",
        "--trust",
        s(&r.trust),
        "--out",
        s(&out),
    ])
    .ok()
    .stdout_has(&["revocation list v3", "2 node(s) revoked", &peer]);
    r.verify(&out, false).ok().stdout_has(&[
        "kind       revocation list",
        "version    3",
        &peer,
        "verified   OK",
    ]);
    let j = r.verify(&out, true).ok().json();
    assert_eq!(j["kind"], "revocation list");
    assert_eq!(j["revoked"].as_array().unwrap().len(), 2);
    // Signed by a release key: refused (and not written when --trust is given).
    r.run(&[
        "revoke",
        &peer,
        "--key",
        s(&r.release.private),
        "--version",
        "4",
        "--fleet",
        "prod",
    ])
    .ok();
    r.verify(&r.ws.path("revoked-4.bundle"), false)
        .code(1)
        .stderr_has(&["wrong_role"]);
    // A revocation list is not a bundle: apply refuses to read it as one.
    let f = Fleet::new();
    f.apply_with(&out, &r.trust, &[])
        .code(2)
        .stderr_has(&["not a bundle"]);
}

#[test]
fn a_rotated_root_takes_on_the_new_release_key_and_drops_the_old_one() {
    let r = Roles::new();
    let release2 = r.ws.keygen("release2");
    let root2 = r.ws.keygen("root2");
    let new = r.ws.trust_dir(
        "trust2",
        &[&release2, &r.admission, &root2],
        Some(
            "fleet = \"prod\"\nversion = 2\n[release]\nkeys = [\"release2.pub\"]\n\
             [admission]\nkeys = [\"admission.pub\"]\n[root]\nkeys = [\"root2.pub\"]\n",
        ),
    );
    let old_bundle = r.sign_web(&r.release, "old.bundle");
    let new_bundle = r.sign_web(&release2, "new.bundle");
    r.verify(&old_bundle, false).ok();
    r.verify(&new_bundle, false).code(1);

    // Signed by the old root key only: the new root's own key is missing.
    let signed = r.ws.path("root-2.signed");
    r.run(&[
        "root",
        s(&new),
        "--key",
        s(&r.root.private),
        "--trust",
        s(&r.trust),
        "--out",
        s(&signed),
    ])
    .code(1)
    .stderr_has(&["not written", "its own root keys", "untrusted"]);
    assert!(!signed.exists());
    // A release key cannot sign a root.
    r.run(&[
        "root",
        s(&new),
        "--key",
        s(&r.release.private),
        "--key",
        s(&root2.private),
        "--trust",
        s(&r.trust),
    ])
    .code(1)
    .stderr_has(&["current root's keys", "wrong_role"]);

    // Old root key now, the new one later with cosign (k-of-n from separate hosts).
    r.run(&[
        "root",
        s(&new),
        "--key",
        s(&r.root.private),
        "--out",
        s(&signed),
    ])
    .ok()
    .stdout_has(&["signed trust root v2 of fleet `prod`"]);
    r.verify(&signed, false)
        .code(1)
        .stderr_has(&["its own root keys"]);
    r.run(&["cosign", s(&signed), "--key", s(&root2.private)])
        .ok()
        .stdout_has(&["now 2 signature(s), trust root"]);
    r.verify(&signed, false).ok().stdout_has(&[
        "kind       trust root",
        "version    2",
        "the next root after version 1",
    ]);

    // In the trust directory, the new root wins over trust.toml.
    std::fs::copy(&signed, r.trust.join("root-2.signed")).unwrap();
    r.verify(&new_bundle, false).ok();
    r.verify(&old_bundle, false)
        .code(1)
        .stderr_has(&["old.bundle: refused", "signed by 0 trusted key(s)"]);
    r.verify(&signed, false)
        .ok()
        .stdout_has(&["already taken on by this trust directory"]);
    // The rotated-out root key cannot make version 3.
    let v3 = r.ws.trust_dir(
        "trust3",
        &[&r.release, &r.admission, &r.root],
        Some(ROLES_TOML.replace("version = 1", "version = 3").as_str()),
    );
    r.run(&[
        "root",
        s(&v3),
        "--key",
        s(&r.root.private),
        "--trust",
        s(&r.trust),
    ])
    .code(1)
    .stderr_has(&["current root's keys", "untrusted"]);
    // Nor can a root skip a version.
    let v4 = r.ws.trust_dir(
        "trust4",
        &[&root2, &release2],
        Some("fleet = \"prod\"\nversion = 4\n[release]\nkeys = [\"release2.pub\"]\n[root]\nkeys = [\"root2.pub\"]\n"),
    );
    r.run(&[
        "root",
        s(&v4),
        "--key",
        s(&root2.private),
        "--trust",
        s(&r.trust),
    ])
    .code(1)
    .stderr_has(&["root_version", "3 expected"]);
}

#[test]
fn a_signed_root_that_does_not_verify_breaks_the_trust_directory() {
    let r = Roles::new();
    let release2 = r.ws.keygen("release2");
    let new = r.ws.trust_dir(
        "trust2",
        &[&release2, &r.root],
        Some("fleet = \"prod\"\nversion = 2\n[release]\nkeys = [\"release2.pub\"]\n[root]\nkeys = [\"root.pub\"]\n"),
    );
    let signed = r.trust.join("root-2.signed");
    r.run(&[
        "root",
        s(&new),
        "--key",
        s(&r.release.private),
        "--out",
        s(&signed),
    ])
    .ok();
    let bundle = r.sign_web(&r.release, "web.bundle");
    r.verify(&bundle, false).code(2).stderr_has(&[
        "root-2.signed",
        "refused as the next trust root",
        "wrong_role",
    ]);
}

#[test]
fn bad_flags_and_inputs_exit_2_naming_what_is_wrong() {
    let r = Roles::new();
    let node = r.node("web1");
    let np = s(&node.public);
    let key = s(&r.admission.private);
    let public_as_secret = s(&r.ws.path("keys/public-as-secret.key")).to_string();
    std::fs::copy(&node.public, &public_as_secret).unwrap();
    set_mode(Path::new(&public_as_secret), 0o600);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["admit", np, "--labels", "a=b", "--out", "x.cert"],
            "--key",
        ),
        (
            vec!["admit", np, "--key", key, "--out", "x.cert"],
            "--labels",
        ),
        (vec!["admit", np, "--key", key, "--labels", "a=b"], "--out"),
        (
            vec![
                "admit", np, "--key", key, "--labels", "role", "--out", "x.cert",
            ],
            "--labels",
        ),
        (
            vec![
                "admit",
                np,
                "--key",
                key,
                "--labels",
                "a=b",
                "--expires",
                "soon",
                "--out",
                "x.cert",
            ],
            "--expires",
        ),
        (
            vec![
                "admit",
                "no-such-node",
                "--key",
                key,
                "--labels",
                "a=b",
                "--out",
                "x.cert",
            ],
            "neither a public key file nor a peer id",
        ),
        (
            vec![
                "admit",
                np,
                "--key",
                &public_as_secret,
                "--labels",
                "a=b",
                "--out",
                "x.cert",
            ],
            "ed25519-secret",
        ),
        (
            vec!["revoke", np, "--key", key, "--version", "0"],
            "--version",
        ),
        (vec!["revoke", np, "--key", key], "--version"),
        (vec!["root", "--key", key], "NEW_TRUST_DIR"),
        (vec!["root", "nowhere", "--key", key], "nowhere"),
    ];
    for (args, want) in cases {
        r.run(&args).code(2).stderr_has(&[want]);
    }
    assert!(!r.ws.path("x.cert").exists());
    // A trust.toml with roles but no [release] names its field.
    let broken = r.ws.trust_dir(
        "broken",
        &[&r.admission],
        Some("[admission]\nkeys = [\"admission.pub\"]\n"),
    );
    r.admit(np, &r.admission, "y.cert", &[]).ok();
    r.run(&["verify", s(&r.ws.path("y.cert")), "--trust", s(&broken)])
        .code(2)
        .stderr_has(&["trust.toml", "field `release`"]);
}
