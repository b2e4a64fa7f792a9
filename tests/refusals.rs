//! Bundles and inputs that must be refused: each test checks the exit code, that the message
//! names the reason, and that nothing changed on disk (the root and the state directory,
//! compared path by path: content, mode, owner, inode and mtime).
//!
//! Every fleet here has already applied version 1, so a refusal has real state to spoil.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn def_text(content: &str) -> String {
    format!(
        r#"
name = "svc"

[[resource]]
type = "file"
path = "/etc/svc.conf"
content = "{content}\n"
mode = "0644"
"#
    )
}

/// A fleet that applied `svc` v1 ("one"); returns it with the v1 bundle and a signed v2
/// ("two") that has not been applied.
fn applied_fleet() -> (Fleet, PathBuf, PathBuf) {
    let f = Fleet::new();
    let d1 = f.write("defs/v1/svc.toml", &def_text("one"));
    let d2 = f.write("defs/v2/svc.toml", &def_text("two"));
    let b1 = f.sign(&d1, 1, "svc-1.bundle");
    let b2 = f.sign(&d2, 2, "svc-2.bundle");
    f.apply(&b1, &[]).ok();
    assert_eq!(read(&f.in_root("/etc/svc.conf")), "one\n");
    assert!(f.state.join("marks").is_file());
    (f, b1, b2)
}

/// The `bundle` line that `verify` prints (the hash of the signed content).
fn bundle_hash(verify_stdout: &str) -> String {
    verify_stdout
        .lines()
        .find_map(|l| l.strip_prefix("bundle "))
        .unwrap_or_else(|| panic!("no bundle line in:\n{verify_stdout}"))
        .trim()
        .to_string()
}

/// verify, apply and plan --trust all refuse `bundle` with `code` and `reason`, and nothing
/// changes on disk.
#[track_caller]
fn refused_everywhere(f: &Fleet, bundle: &Path, trust: &Path, code: i32, reason: &[&str]) {
    let before = f.snapshot();
    let name = bundle.file_name().unwrap().to_str().unwrap();
    let mut want: Vec<&str> = vec![name];
    want.extend_from_slice(reason);
    f.verify_with(bundle, trust).code(code).stderr_has(&want);
    f.assert_unchanged(&before, "verify");
    f.apply_with(bundle, trust, &[])
        .code(code)
        .stderr_has(&want);
    f.assert_unchanged(&before, "apply");
    f.plan(bundle, &["--trust", trust.to_str().unwrap()])
        .code(code)
        .stderr_has(&want);
    f.assert_unchanged(&before, "plan --trust");
    assert_eq!(
        read(&f.in_root("/etc/svc.conf")),
        "one\n",
        "still the version applied before"
    );
}

fn flip(src: &Path, dst: &Path, pos: usize, bit: u8) {
    let mut bytes = std::fs::read(src).unwrap();
    bytes[pos] ^= bit;
    std::fs::write(dst, bytes).unwrap();
}

#[test]
fn a_flipped_byte_anywhere_is_refused_and_changes_nothing() {
    let (f, _b1, b2) = applied_fleet();
    let len = std::fs::metadata(&b2).unwrap().len() as usize;
    let flipped = f.path("flipped.bundle");

    // The magic bytes at the start: not a bundle at all.
    flip(&b2, &flipped, 0, 0x01);
    refused_everywhere(&f, &flipped, &f.trust, 2, &["not a bundle"]);
    // In the middle (the signed definition) and the very last byte (the signature).
    for pos in [len / 2, len - 1] {
        flip(&b2, &flipped, pos, 0x01);
        refused_everywhere(&f, &flipped, &f.trust, 1, &["refused", "altered"]);
    }
    // In the header area (after the format prefix), in the signer's key near the end, and a
    // sample of every other position: each is refused, malformed (2) or refused (1).
    let mut positions: Vec<usize> = vec![12, 16, 24, 32, 40, len - 40, len - 70, len - 100];
    positions.extend((0..len).step_by(11));
    let before = f.snapshot();
    for pos in positions {
        for bit in [0x01, 0x80] {
            flip(&b2, &flipped, pos, bit);
            let v = f.verify(&flipped);
            assert!(
                v.code == 1 || v.code == 2,
                "byte {pos} ^ {bit:#x}: verify exit {}\n{}{}",
                v.code,
                v.stdout,
                v.stderr
            );
            assert!(
                v.stderr.contains("flipped.bundle") && !v.stdout.contains("verified   OK"),
                "byte {pos} ^ {bit:#x}: {}{}",
                v.stdout,
                v.stderr
            );
            let a = f.apply(&flipped, &[]);
            assert_eq!(a.code, v.code, "byte {pos}: apply and verify agree");
        }
    }
    f.assert_unchanged(&before, "apply of flipped bundles");
    // The untouched bundle still applies.
    f.apply(&b2, &[]).ok();
    assert_eq!(read(&f.in_root("/etc/svc.conf")), "two\n");
}

#[test]
fn an_untrusted_signer_is_refused_with_exit_1() {
    let (f, _b1, b2) = applied_fleet();
    let stranger = f.ws.keygen("stranger");
    let other_trust = f.ws.trust_dir("other-trust", &[&stranger], None);
    refused_everywhere(&f, &b2, &other_trust, 1, &["refused", "untrusted"]);

    // Signed by the stranger only, checked against the fleet's own trust: refused too.
    let d = f.write("defs/v3/svc.toml", &def_text("three"));
    let b3 = f.ws.sign(&d, &[&stranger], 3, "svc-3-stranger.bundle", &[]);
    refused_everywhere(&f, &b3, &f.trust, 1, &["refused", "untrusted"]);
}

#[test]
fn below_the_threshold_is_refused_until_cosigned_and_cosigning_keeps_the_bundle_hash() {
    let (f, _b1, _b2) = applied_fleet();
    let second = f.ws.keygen("second");
    let t2 =
        f.ws.trust_dir("trust2", &[&f.release, &second], Some("threshold = 2\n"));
    let d = f.write("defs/v3/svc.toml", &def_text("three"));
    let b3 = f.sign(&d, 3, "svc-3.bundle");

    let v = f.verify_with(&b3, &t2);
    v.code(1)
        .stderr_has(&["refused", "1 trusted key(s), 2 needed"]);
    let hash_before = bundle_hash(&v.stdout);
    refused_everywhere(&f, &b3, &t2, 1, &["2 needed"]);

    f.run([
        "cosign",
        b3.to_str().unwrap(),
        "--key",
        second.private.to_str().unwrap(),
    ])
    .ok()
    .stdout_has(&["now 2 signature(s)", "unchanged"]);
    let v = f.verify_with(&b3, &t2);
    v.ok()
        .stdout_has(&["verified   OK: 2 of 2", "release (", "second ("]);
    assert_eq!(bundle_hash(&v.stdout), hash_before, "cosign keeps the hash");
    f.apply_with(&b3, &t2, &[])
        .ok()
        .stdout_has(&["applied svc v3"]);
    assert_eq!(read(&f.in_root("/etc/svc.conf")), "three\n");

    // Both keys at once at sign time works as well.
    let d4 = f.write("defs/v4/svc.toml", &def_text("four"));
    let b4 =
        f.ws.sign(&d4, &[&f.release, &second], 4, "svc-4.bundle", &[]);
    f.verify_with(&b4, &t2).ok();
}

#[test]
fn another_fleets_bundle_is_refused_with_exit_1() {
    let (f, _b1, _b2) = applied_fleet();
    let prod =
        f.ws.trust_dir("trust-prod", &[&f.release], Some("fleet = \"prod\"\n"));
    let d = f.write("defs/v3/svc.toml", &def_text("three"));
    let other = f.ws.sign(
        &d,
        &[&f.release],
        3,
        "svc-3-other.bundle",
        &["--fleet", "other"],
    );
    refused_everywhere(&f, &other, &prod, 1, &["refused", "fleet `other`", "prod"]);
    // Without --fleet and without a trust.toml beside the key: fleet `default`.
    let default = f.sign(&d, 3, "svc-3-default.bundle");
    refused_everywhere(&f, &default, &prod, 1, &["refused", "fleet `default`"]);

    // A trust.toml beside the key names the fleet sign uses by default.
    let ws = &f.ws;
    let k = ws.keygen("prodkeys/release");
    ws.write("keys/prodkeys/trust.toml", "fleet = \"prod\"\n");
    let prod2 = ws.trust_dir("trust-prod2", &[&k], Some("fleet = \"prod\"\n"));
    let b = ws.sign(&d, &[&k], 3, "svc-3-prod.bundle", &[]);
    f.verify_with(&b, &prod2)
        .ok()
        .stdout_has(&["fleet      prod"]);
}

#[test]
fn an_expired_bundle_is_refused_with_exit_1() {
    let (f, _b1, _b2) = applied_fleet();
    let strict = f.ws.trust_dir(
        "trust-strict-clock",
        &[&f.release],
        Some("clock_skew = \"0s\"\n"),
    );
    let d = f.write("defs/v3/svc.toml", &def_text("three"));
    let b3 = f.ws.sign(
        &d,
        &[&f.release],
        3,
        "svc-3-expired.bundle",
        &["--expires", "0s"],
    );
    // Times in a bundle are whole seconds and "expired" means strictly after `expires`
    // (= the second it was signed in), so the one wait this test cannot avoid is until the
    // wall clock enters the next second: at most one second.
    let signed_by = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let next_second = std::time::Duration::from_secs(signed_by.as_secs() + 1);
    std::thread::sleep(next_second - signed_by + std::time::Duration::from_millis(20));

    refused_everywhere(&f, &b3, &strict, 1, &["refused", "expired"]);
    // The default 5 minutes of allowed clock skew still takes it.
    f.verify(&b3).ok();
}

#[test]
fn rollback_and_other_content_under_an_accepted_version_are_refused_the_same_bundle_reapplies() {
    let (f, b1, b2) = applied_fleet();
    f.apply(&b2, &[]).ok().stdout_has(&["applied svc v2"]);
    assert_eq!(read(&f.in_root("/etc/svc.conf")), "two\n");

    // v1 again: a rollback. verify alone (no state) accepts it; apply refuses it.
    let before = f.snapshot();
    f.verify(&b1).ok();
    f.apply(&b1, &[]).code(1).stderr_has(&[
        "svc-1.bundle",
        "refused",
        "rollback",
        "high-water mark 2",
    ]);
    f.assert_unchanged(&before, "apply of a rollback");

    // v2 with other content: a signing mistake or a stolen key.
    let d = f.write("defs/v2b/svc.toml", &def_text("two, but other"));
    let b2b = f.sign(&d, 2, "svc-2-other.bundle");
    f.apply(&b2b, &[])
        .code(1)
        .stderr_has(&["svc-2-other.bundle", "refused", "other content"]);
    f.assert_unchanged(&before, "apply of other content under v2");
    assert_eq!(read(&f.in_root("/etc/svc.conf")), "two\n");

    // The very same bundle again is a re-apply, and so is it with one more signature.
    f.apply(&b2, &[])
        .ok()
        .stdout_has(&["applied svc v2 (re-apply)", "0 changed"]);
    let extra = f.ws.keygen("extra");
    let cosigned = f.path("svc-2-cosigned.bundle");
    std::fs::copy(&b2, &cosigned).unwrap();
    f.run([
        "cosign",
        cosigned.to_str().unwrap(),
        "--key",
        extra.private.to_str().unwrap(),
    ])
    .ok();
    f.apply(&cosigned, &[])
        .ok()
        .stdout_has(&["applied svc v2 (re-apply)"]);
    // A re-apply records its result (last-svc.json) but rewrites nothing in the root, and
    // leaves the marks and the stored bundles as they were.
    let after = f.snapshot();
    assert_same(&before.0, &after.0, "re-applies: the root");
    let kept = |s: &Snapshot| -> Snapshot {
        s.iter()
            .filter(|(k, _)| k.as_str() == "marks" || k.starts_with("bundles"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_same(
        &kept(&before.1),
        &kept(&after.1),
        "re-applies: marks and bundles",
    );

    // A hand edit is still corrected on re-apply after all those refusals.
    std::fs::write(f.in_root("/etc/svc.conf"), "edited\n").unwrap();
    f.apply(&b2, &[]).ok().stdout_has(&["1 changed"]);
    assert_eq!(read(&f.in_root("/etc/svc.conf")), "two\n");
}

#[test]
fn a_private_key_readable_by_group_or_others_is_refused_with_exit_2() {
    let (f, _b1, b2) = applied_fleet();
    let d = f.write("defs/v3/svc.toml", &def_text("three"));
    for mode in [0o640, 0o604, 0o644] {
        set_mode(&f.release.private, mode);
        let mode_text = format!("{mode:04o}");
        f.ws.try_sign(&d, &[&f.release], 3, "svc-3.bundle", &[])
            .code(2)
            .stderr_has(&[
                f.release.private.to_str().unwrap(),
                &mode_text,
                "readable by group or others",
            ]);
        assert!(!f.path("svc-3.bundle").exists(), "no bundle written");

        let before = std::fs::read(&b2).unwrap();
        f.run([
            "cosign",
            b2.to_str().unwrap(),
            "--key",
            f.release.private.to_str().unwrap(),
        ])
        .code(2)
        .stderr_has(&[f.release.private.to_str().unwrap(), &mode_text]);
        assert_eq!(std::fs::read(&b2).unwrap(), before, "bundle left as it was");
    }
    set_mode(&f.release.private, 0o600);
    f.ws.sign(&d, &[&f.release], 3, "svc-3.bundle", &[]);
}

#[test]
fn garbage_empty_and_missing_bundles_are_bad_input_exit_2() {
    let (f, _b1, _b2) = applied_fleet();
    // Deterministic noise that does not start with the magic bytes.
    let noise: Vec<u8> = (0u32..600)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let garbage = f.path("garbage.bundle");
    std::fs::write(&garbage, &noise).unwrap();
    refused_everywhere(&f, &garbage, &f.trust, 2, &["not a bundle"]);
    let before = f.snapshot();
    f.plan(&garbage, &[])
        .code(2)
        .stderr_has(&["garbage.bundle"]);

    let empty = f.path("empty.bundle");
    std::fs::write(&empty, b"").unwrap();
    refused_everywhere(&f, &empty, &f.trust, 2, &["too short"]);

    // A definition is not a bundle either.
    let text = f.path("definition-as.bundle");
    std::fs::write(&text, def_text("x")).unwrap();
    refused_everywhere(&f, &text, &f.trust, 2, &["not a bundle"]);

    let missing = f.path("missing.bundle");
    f.verify(&missing)
        .code(2)
        .stderr_has(&["missing.bundle", "cannot read"]);
    f.apply(&missing, &[])
        .code(2)
        .stderr_has(&["missing.bundle", "cannot read"]);
    f.assert_unchanged(&before, "garbage");
}

#[test]
fn an_oversized_bundle_is_refused_before_it_is_decoded() {
    let (f, _b1, b2) = applied_fleet();
    let small = f.ws.trust_dir(
        "trust-small",
        &[&f.release],
        Some("max_bundle_bytes = 100\n"),
    );
    refused_everywhere(
        &f,
        &b2,
        &small,
        2,
        &["over the bundle size limit of 100 bytes"],
    );
    // Garbage over the limit gets the size message, not a decoding error: the size is
    // checked first.
    let garbage = f.path("big-garbage.bundle");
    std::fs::write(&garbage, vec![0x5a_u8; 1000]).unwrap();
    refused_everywhere(
        &f,
        &garbage,
        &small,
        2,
        &["1000 bytes", "over the bundle size limit"],
    );
    // A (sparse) file of 4 GiB against the default 64 MiB limit is refused at once, unread.
    let huge = f.path("huge.bundle");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let started = std::time::Instant::now();
    f.verify(&huge)
        .code(2)
        .stderr_has(&["huge.bundle", "over the bundle size limit"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "refused without reading it"
    );
}

#[test]
fn a_bad_trust_directory_is_bad_input_exit_2() {
    let (f, _b1, b2) = applied_fleet();
    let before = f.snapshot();
    let three =
        f.ws.trust_dir("trust-three", &[&f.release], Some("threshold = 3\n"));
    f.apply_with(&b2, &three, &[])
        .code(2)
        .stderr_has(&["trust.toml", "threshold"]);
    let typo =
        f.ws.trust_dir("trust-typo", &[&f.release], Some("treshold = 1\n"));
    f.verify_with(&b2, &typo)
        .code(2)
        .stderr_has(&["trust.toml", "treshold"]);
    let empty = f.ws.mkdir("trust-empty");
    f.apply_with(&b2, &empty, &[])
        .code(2)
        .stderr_has(&["trust-empty", "no *.pub"]);
    f.verify_with(&b2, &f.path("no-such-dir"))
        .code(2)
        .stderr_has(&["no-such-dir"]);
    f.assert_unchanged(&before, "bad trust directories");
}

/// A child process that holds an exclusive `flock` on a file until dropped.
struct LockHolder {
    child: Child,
}

impl LockHolder {
    /// `flock -n FILE sh -c 'echo locked; exec cat'`: returns once the lock is held; the
    /// holder exits when its stdin closes (on drop, also when the test panics).
    fn hold(file: &Path) -> LockHolder {
        let mut child = Command::new("flock")
            .arg("-n")
            .arg(file)
            .args(["sh", "-c", "echo locked; exec cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run flock (util-linux)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked", "flock could not take {file:?}");
        LockHolder { child }
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // cat sees EOF, flock releases and exits
        let _ = self.child.wait();
    }
}

#[test]
fn a_state_directory_held_by_another_process_is_refused_with_exit_2() {
    let (f, _b1, b2) = applied_fleet();
    let lock = f.state.join("lock");
    assert!(
        lock.is_file(),
        "apply keeps its lock file in the state directory"
    );
    {
        let _held = LockHolder::hold(&lock);
        let before = f.snapshot();
        f.apply(&b2, &[])
            .code(2)
            .stderr_has(&["state directory", "in use"]);
        f.assert_unchanged(&before, "apply while another process holds the state");
        assert_eq!(read(&f.in_root("/etc/svc.conf")), "one\n");
    }
    f.apply(&b2, &[]).ok().stdout_has(&["applied svc v2"]);
    assert_eq!(read(&f.in_root("/etc/svc.conf")), "two\n");
}
