//! The state directory: high-water marks, accepted bundles and the last result per channel,
//! every file written atomically; one process at a time, enforced by a lock.

use crate::fsutil::write_atomic;
use anyhow::Context;
use driftless_core::Marks;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/driftless";

/// `--state-dir`, else `ROOT/var/lib/driftless` under `--root`, else `/var/lib/driftless`.
pub fn default_dir(state_dir: Option<&Path>, root: Option<&Path>) -> PathBuf {
    match (state_dir, root) {
        (Some(s), _) => s.to_path_buf(),
        (None, Some(r)) => r.join(DEFAULT_STATE_DIR.trim_start_matches('/')),
        (None, None) => PathBuf::from(DEFAULT_STATE_DIR),
    }
}

/// Another process holds the state directory.
#[derive(Debug, thiserror::Error)]
#[error("state directory {dir} is in use by another driftless process ({holder})")]
pub struct Busy {
    pub dir: String,
    pub holder: String,
}

pub struct StateDir {
    path: PathBuf,
    _lock: Flock<File>,
}

impl StateDir {
    /// Open (creating it, mode 0700) and lock the state directory.
    pub fn open(path: &Path, what: &str) -> anyhow::Result<StateDir> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path.join("bundles"))
            .with_context(|| format!("--state-dir {}: cannot create", path.display()))?;
        let lock_path = path.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| format!("{}: cannot open", lock_path.display()))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut f, _)) => {
                let mut holder = String::new();
                let _ = f.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Busy {
                    dir: path.display().to_string(),
                    holder: if holder.is_empty() {
                        "unknown".into()
                    } else {
                        holder.to_string()
                    },
                }
                .into());
            }
        };
        lock.set_len(0)?;
        lock.rewind()?;
        write!(lock, "pid {} ({what})", std::process::id())?;
        Ok(StateDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn marks(&self) -> anyhow::Result<Marks> {
        let p = self.path.join("marks");
        match std::fs::read(&p) {
            Ok(bytes) => Marks::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Marks::default()),
            Err(e) => Err(e).with_context(|| format!("{}: cannot read", p.display())),
        }
    }

    pub fn save_marks(&self, marks: &Marks) -> anyhow::Result<()> {
        let p = self.path.join("marks");
        write_atomic(&p, &marks.encode(), 0o600)
            .with_context(|| format!("{}: cannot write", p.display()))
    }

    fn bundle_path(&self, channel: &str) -> PathBuf {
        self.path.join("bundles").join(format!("{channel}.bundle"))
    }

    /// Store the accepted bundle of a channel; the one it replaces is kept as `.previous`
    /// (renamed, not copied: a crash between the two steps leaves the previous bundle and no
    /// current one, which the node then fetches again from its peers).
    pub fn store_bundle(&self, channel: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let p = self.bundle_path(channel);
        if let Ok(old) = std::fs::read(&p) {
            if old != bytes {
                let prev = self
                    .path
                    .join("bundles")
                    .join(format!("{channel}.previous.bundle"));
                std::fs::rename(&p, &prev).with_context(|| {
                    format!("{}: cannot keep as {}", p.display(), prev.display())
                })?;
            }
        }
        write_atomic(&p, bytes, 0o600).with_context(|| format!("{}: cannot write", p.display()))
    }

    pub fn load_bundle(&self, channel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.bundle_path(channel)).ok()
    }

    /// Record the last result of converging a channel (JSON, for `status`).
    pub fn save_result(&self, channel: &str, json: &serde_json::Value) -> anyhow::Result<()> {
        let p = self.path.join(format!("last-{channel}.json"));
        let bytes = serde_json::to_vec_pretty(json)?;
        write_atomic(&p, &bytes, 0o600).with_context(|| format!("{}: cannot write", p.display()))
    }
}

/// Read-only access to a state directory that may not exist (for `plan`): no lock taken.
pub fn peek_bundle(dir: &Path, channel: &str) -> Option<Vec<u8>> {
    std::fs::read(dir.join("bundles").join(format!("{channel}.bundle"))).ok()
}
