//! Helpers for the integration tests: they run the real `driftless` binary over temporary
//! directories and look at what it leaves on disk.
//!
//! A [`Workspace`] is one temporary directory holding keys, definitions, bundles, trust
//! directories and roots. A [`Fleet`] is a workspace set up like a release host plus one
//! node: a release key, a trust directory holding its public key, a root and a state
//! directory (outside the root, so that a snapshot of the root shows only what the
//! definition manages).

#![allow(dead_code)] // each test binary uses its own subset of these helpers

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_driftless");

/// What a run of the binary did.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Assert the exit code, showing the whole output when it is not the expected one.
    #[track_caller]
    pub fn code(&self, want: i32) -> &Out {
        assert_eq!(
            self.code, want,
            "exit code {} (wanted {want})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Out {
        self.code(0)
    }

    /// Assert that stdout contains every one of `needles`.
    #[track_caller]
    pub fn stdout_has(&self, needles: &[&str]) -> &Out {
        for n in needles {
            assert!(
                self.stdout.contains(n),
                "stdout lacks {n:?}\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout,
                self.stderr
            );
        }
        self
    }

    /// Assert that stderr contains every one of `needles`.
    #[track_caller]
    pub fn stderr_has(&self, needles: &[&str]) -> &Out {
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr lacks {n:?}\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout,
                self.stderr
            );
        }
        self
    }

    /// Parse stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e})\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Run the binary with `args` in `cwd`.
pub fn run_in<I, S>(cwd: &Path, args: I) -> Out
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .output()
        .expect("run the driftless binary");
    Out {
        // A signal (a panic that aborts, say) has no code: report it as something no test
        // expects.
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A key pair made by `driftless keygen`.
#[derive(Debug, Clone)]
pub struct Key {
    pub private: PathBuf,
    pub public: PathBuf,
}

/// One temporary directory for a test.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::Builder::new()
                .prefix("driftless-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    /// A path inside the workspace.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Run the binary with the workspace as working directory.
    pub fn run<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_in(self.dir.path(), args)
    }

    /// `driftless keygen --out keys/NAME`, asserting success.
    pub fn keygen(&self, name: &str) -> Key {
        let prefix = self.path(&format!("keys/{name}"));
        self.run([
            OsStr::new("keygen"),
            OsStr::new("--out"),
            prefix.as_os_str(),
        ])
        .ok();
        Key {
            private: self.path(&format!("keys/{name}.key")),
            public: self.path(&format!("keys/{name}.pub")),
        }
    }

    /// Write a file (creating its parents) and return its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        write_file(&p, text);
        p
    }

    /// A directory inside the workspace (created).
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }

    /// A trust directory `rel` holding the given public keys and, if given, `trust.toml`.
    pub fn trust_dir(&self, rel: &str, keys: &[&Key], trust_toml: Option<&str>) -> PathBuf {
        let dir = self.mkdir(rel);
        for k in keys {
            std::fs::copy(&k.public, dir.join(k.public.file_name().expect("name")))
                .expect("copy public key");
        }
        if let Some(t) = trust_toml {
            write_file(&dir.join("trust.toml"), t);
        }
        dir
    }

    /// Run `driftless sign DEF --key K... --version V --out OUT EXTRA...`, without judging it.
    pub fn try_sign(
        &self,
        definition: &Path,
        keys: &[&Key],
        version: u64,
        out: &str,
        extra: &[&str],
    ) -> Out {
        let mut args: Vec<String> = vec!["sign".into(), path_str(definition)];
        for k in keys {
            args.push("--key".into());
            args.push(path_str(&k.private));
        }
        args.extend([
            "--version".into(),
            version.to_string(),
            "--out".into(),
            path_str(&self.path(out)),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        self.run(&args)
    }

    /// Sign, asserting success; returns the bundle's path.
    pub fn sign(
        &self,
        definition: &Path,
        keys: &[&Key],
        version: u64,
        out: &str,
        extra: &[&str],
    ) -> PathBuf {
        self.try_sign(definition, keys, version, out, extra)
            .ok()
            .stdout_has(&["signed "]);
        self.path(out)
    }
}

/// A release host and one node, in one workspace.
pub struct Fleet {
    pub ws: Workspace,
    pub release: Key,
    pub trust: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
}

impl Default for Fleet {
    fn default() -> Self {
        Self::new()
    }
}

impl Fleet {
    /// A release key, `trust/` with its public key (no trust.toml), an empty `root/`, and
    /// `state/` (not yet created: apply creates it).
    pub fn new() -> Fleet {
        let ws = Workspace::new();
        let release = ws.keygen("release");
        let trust = ws.trust_dir("trust", &[&release], None);
        let root = ws.mkdir("root");
        let state = ws.path("state");
        Fleet {
            ws,
            release,
            trust,
            root,
            state,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.ws.path(rel)
    }

    /// A path inside the node's root, given as the definition names it (`/etc/motd`).
    pub fn in_root(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Write a file inside the root (as if it were already on the server).
    pub fn seed(&self, abs: &str, text: &str) -> PathBuf {
        let p = self.in_root(abs);
        write_file(&p, text);
        p
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        self.ws.write(rel, text)
    }

    /// Sign with the release key, asserting success.
    pub fn sign(&self, definition: &Path, version: u64, out: &str) -> PathBuf {
        self.ws
            .sign(definition, &[&self.release], version, out, &[])
    }

    pub fn run<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.ws.run(args)
    }

    /// `apply BUNDLE --trust trust/ --root root/ --state-dir state/ EXTRA...`
    pub fn apply(&self, bundle: &Path, extra: &[&str]) -> Out {
        self.apply_with(bundle, &self.trust, extra)
    }

    /// `apply` against another trust directory.
    pub fn apply_with(&self, bundle: &Path, trust: &Path, extra: &[&str]) -> Out {
        let mut args = vec![
            "apply".to_string(),
            path_str(bundle),
            "--trust".into(),
            path_str(trust),
            "--root".into(),
            path_str(&self.root),
            "--state-dir".into(),
            path_str(&self.state),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.run(&args)
    }

    /// `plan INPUT --root root/ --state-dir state/ EXTRA...` (a bundle or a definition).
    pub fn plan(&self, input: &Path, extra: &[&str]) -> Out {
        let mut args = vec![
            "plan".to_string(),
            path_str(input),
            "--root".into(),
            path_str(&self.root),
            "--state-dir".into(),
            path_str(&self.state),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.run(&args)
    }

    /// `verify BUNDLE --trust trust/`
    pub fn verify(&self, bundle: &Path) -> Out {
        self.verify_with(bundle, &self.trust)
    }

    pub fn verify_with(&self, bundle: &Path, trust: &Path) -> Out {
        self.run([
            "verify".to_string(),
            path_str(bundle),
            "--trust".into(),
            path_str(trust),
        ])
    }

    /// Snapshots of the root and of the state directory (the lock file's content aside: it
    /// names the last process that held the lock).
    pub fn snapshot(&self) -> (Snapshot, Snapshot) {
        (snapshot(&self.root), snapshot_state(&self.state))
    }

    /// Assert that neither the root nor the state directory changed since `before`.
    #[track_caller]
    pub fn assert_unchanged(&self, before: &(Snapshot, Snapshot), what: &str) {
        let after = self.snapshot();
        assert_same(&before.0, &after.0, &format!("{what}: the root"));
        assert_same(&before.1, &after.1, &format!("{what}: the state directory"));
    }
}

pub fn path_str(p: &Path) -> String {
    p.to_str().expect("test paths are UTF-8").to_string()
}

pub fn write_file(p: &Path, text: &str) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("mkdir parents");
    }
    std::fs::write(p, text).expect("write file");
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Permission bits of a path (not following a final symlink).
pub fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

pub fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// This machine's host name, as the binary sees it (`node.hostname`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read the host name")
        .trim()
        .to_string()
}

/// What a snapshot records of one path: enough to see any write, rename, chmod or chown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `f` file, `d` directory, `l` symlink, `o` other
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub ino: u64,
    pub mtime: (i64, i64),
    pub size: u64,
    /// A file's content or a symlink's target (lossy UTF-8: enough for a comparison).
    pub content: String,
}

/// Every path under a directory (relative, `""` for the directory itself) → its [`Node`].
/// A directory that does not exist gives an empty snapshot.
pub type Snapshot = BTreeMap<String, Node>;

pub fn snapshot(dir: &Path) -> Snapshot {
    snapshot_ignoring(dir, &[])
}

/// A state directory's snapshot: the `lock` file is there or not, its content and times
/// aside (taking the lock records the holder's pid in it).
pub fn snapshot_state(dir: &Path) -> Snapshot {
    snapshot_ignoring(dir, &["lock"])
}

/// A snapshot where the paths named in `only_presence` (relative) record only their kind.
pub fn snapshot_ignoring(dir: &Path, only_presence: &[&str]) -> Snapshot {
    let mut out = BTreeMap::new();
    if std::fs::symlink_metadata(dir).is_ok() {
        walk(dir, dir, only_presence, &mut out);
    }
    out
}

fn walk(base: &Path, p: &Path, only_presence: &[&str], out: &mut Snapshot) {
    let md = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let rel = p
        .strip_prefix(base)
        .expect("under base")
        .to_string_lossy()
        .into_owned();
    let ft = md.file_type();
    let kind = if ft.is_symlink() {
        'l'
    } else if ft.is_dir() {
        'd'
    } else if ft.is_file() {
        'f'
    } else {
        'o'
    };
    let content = match kind {
        'f' => String::from_utf8_lossy(&std::fs::read(p).expect("read")).into_owned(),
        'l' => std::fs::read_link(p)
            .expect("readlink")
            .to_string_lossy()
            .into_owned(),
        _ => String::new(),
    };
    let node = if only_presence.contains(&rel.as_str()) {
        Node {
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            ino: 0,
            mtime: (0, 0),
            size: 0,
            content: String::new(),
        }
    } else {
        Node {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            ino: md.ino(),
            mtime: (md.mtime(), md.mtime_nsec()),
            size: md.len(),
            content,
        }
    };
    out.insert(rel, node);
    if kind == 'd' {
        let mut children: Vec<PathBuf> = std::fs::read_dir(p)
            .expect("read_dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        children.sort();
        for c in children {
            walk(base, &c, only_presence, out);
        }
    }
}

/// Assert two snapshots are equal, listing the paths that differ.
#[track_caller]
pub fn assert_same(before: &Snapshot, after: &Snapshot, what: &str) {
    if before == after {
        return;
    }
    let mut diffs = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => diffs.push(format!("  removed {k:?}: {v:?}")),
            Some(w) if w != v => diffs.push(format!("  changed {k:?}:\n    {v:?}\n -> {w:?}")),
            _ => {}
        }
    }
    for (k, w) in after {
        if !before.contains_key(k) {
            diffs.push(format!("  added {k:?}: {w:?}"));
        }
    }
    panic!("{what} changed:\n{}", diffs.join("\n"));
}

/// The `result` of each resource in `plan --json` / `apply --json` output.
pub fn results(j: &serde_json::Value) -> BTreeMap<String, String> {
    j["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no `resources` array in {j:#}"))
        .iter()
        .map(|r| {
            (
                r["resource"].as_str().expect("resource").to_string(),
                r["result"].as_str().expect("result").to_string(),
            )
        })
        .collect()
}

/// The directory of the project's example definitions.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("definitions")
}
