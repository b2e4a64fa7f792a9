//! Durable, atomic file writes and path mapping under `--root`: the one place that does both.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Prefix of temporary files; a crash can leave one behind, never a half-written target.
pub const TMP_PREFIX: &str = ".driftless-tmp-";

/// Write `bytes` to `path` atomically and durably: temporary file in the same directory,
/// fsync, rename over the target, fsync the directory. A crash at any moment leaves either the
/// old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    replace(path, bytes, mode, true)
}

/// Replace `path` atomically (temporary file, rename) without waiting for the disk: a crash of
/// the process leaves the old or the new file, a power loss may leave the old one. For state
/// that is re-created anyway (the node's own status), where an fsync on the gossip path would
/// only add latency.
pub fn replace_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    replace(path, bytes, mode, false)
}

fn replace(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        // The mode asked for, whatever the umask.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            fsync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A unique temporary name beside `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let mut tmp = OsString::from(format!("{TMP_PREFIX}{}-{n}-", std::process::id()));
    tmp.push(name);
    path.with_file_name(tmp)
}

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Maps the absolute paths of a definition into a root directory, resolving symlinks as if
/// the root were `/`, so no path ever leads outside it. Caches resolved directories, because
/// thousands of files usually share a few.
pub struct RootMap {
    root: PathBuf,
    dirs: HashMap<PathBuf, PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("`{0}` is not an absolute path")]
    NotAbsolute(String),
    #[error("`{0}` contains `..`")]
    DotDot(String),
    #[error("too many levels of symbolic links under `{0}`")]
    Loop(String),
    #[error("reading `{path}`: {err}")]
    Io { path: String, err: io::Error },
}

impl RootMap {
    pub fn new(root: &Path) -> RootMap {
        RootMap {
            root: root.to_path_buf(),
            dirs: HashMap::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `logical` (an absolute path of the definition) lives on disk. Every directory on
    /// the way is resolved inside the root; the last component is not followed (a resource
    /// that finds a symlink there replaces it rather than writing through it).
    pub fn resolve(&mut self, logical: &str) -> Result<PathBuf, PathError> {
        let p = Path::new(logical);
        if !p.is_absolute() {
            return Err(PathError::NotAbsolute(logical.into()));
        }
        let parent = p.parent().unwrap_or(Path::new("/"));
        let Some(name) = p.file_name() else {
            return Ok(self.root.clone());
        };
        let dir = self.resolve_dir(parent)?;
        Ok(dir.join(name))
    }

    /// Resolve a logical directory (following symlinks inside the root) to a real path.
    fn resolve_dir(&mut self, logical: &Path) -> Result<PathBuf, PathError> {
        if let Some(hit) = self.dirs.get(logical) {
            return Ok(hit.clone());
        }
        let mut hops = 0;
        let mut todo: Vec<OsString> = Vec::new();
        push_components(&mut todo, logical, logical)?;
        // `done` is the logical path resolved so far (relative to the root).
        let mut done = PathBuf::from("/");
        while let Some(part) = todo.pop() {
            if part == ".." {
                done.pop();
                continue;
            }
            let candidate = done.join(&part);
            let real = self.real(&candidate);
            match fs::symlink_metadata(&real) {
                Ok(md) if md.file_type().is_symlink() => {
                    hops += 1;
                    if hops > 40 {
                        return Err(PathError::Loop(logical.display().to_string()));
                    }
                    let target = fs::read_link(&real).map_err(|err| PathError::Io {
                        path: real.display().to_string(),
                        err,
                    })?;
                    if target.is_absolute() {
                        done = PathBuf::from("/");
                    }
                    push_components(&mut todo, &target, logical)?;
                }
                _ => done = candidate,
            }
        }
        let real = self.real(&done);
        self.dirs.insert(logical.to_path_buf(), real.clone());
        Ok(real)
    }

    fn real(&self, logical: &Path) -> PathBuf {
        let rel = logical.strip_prefix("/").unwrap_or(logical);
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// Forget cached directories (after directories were created or replaced).
    pub fn forget(&mut self) {
        self.dirs.clear();
    }
}

/// Push the components of `path` onto a stack so that the first component is popped first.
fn push_components(stack: &mut Vec<OsString>, path: &Path, whole: &Path) -> Result<(), PathError> {
    let mut parts: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_os_string()),
            Component::ParentDir => parts.push(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if parts.len() > 4096 {
        return Err(PathError::Loop(whole.display().to_string()));
    }
    stack.extend(parts.into_iter().rev());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        symlink("/usr/lib", root.join("lib")).unwrap();
        symlink("../../../../../etc", root.join("usr/escape")).unwrap();
        let mut map = RootMap::new(root);
        assert_eq!(
            map.resolve("/lib/x.conf").unwrap(),
            root.join("usr/lib/x.conf")
        );
        // `..` past the root stays at the root, like `/..` does.
        assert_eq!(
            map.resolve("/usr/escape/passwd").unwrap(),
            root.join("etc/passwd")
        );
        assert!(matches!(
            map.resolve("rel/x"),
            Err(PathError::NotAbsolute(_))
        ));
    }

    #[test]
    fn a_symlink_loop_is_an_error_not_a_hang() {
        let tmp = tempfile::tempdir().unwrap();
        symlink("/b", tmp.path().join("a")).unwrap();
        symlink("/a", tmp.path().join("b")).unwrap();
        let mut map = RootMap::new(tmp.path());
        assert!(matches!(map.resolve("/a/x"), Err(PathError::Loop(_))));
    }

    #[test]
    fn atomic_write_replaces_whole_files() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("state");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no temporaries left"
        );
    }
}
