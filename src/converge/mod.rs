//! Convergence: bring a node in line with a compiled definition, or show what that would take.
//!
//! One file per resource type, each with the same small interface: read the current state,
//! list the differences, and (when applying) fix them. The engine orders resources
//! ([`converge_order`]), skips what depends on a failure, passes refreshes along `notify`, and
//! batches file writes for speed without giving up atomicity: every changed file is written
//! to a temporary beside it, then one `syncfs`, then the renames, then one fsync per
//! directory (the batch is flushed before any command, package, user or service runs, so
//! those always see the files in place).

mod absent;
mod directory;
mod exec;
mod file;
mod package;
mod service;
mod symlink;
mod users;

use crate::facts::Facts;
use crate::fsutil::{fsync_dir, RootMap};
use crate::template::Renderer;
use driftless_core::definition::{converge_order, CompiledDefinition, ResourceKind, ResourceRef};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Options {
    /// Every absolute path of the definition is mapped under this directory (`/` by default).
    pub root: PathBuf,
    /// Only look: report what would change.
    pub dry_run: bool,
}

impl Options {
    pub fn confined(&self) -> bool {
        self.root != Path::new("/")
    }
}

/// What happened to one resource. Serialized in `plan --json` / `apply --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Nothing to do.
    Unchanged,
    /// Changed (apply) or would change (plan).
    Changed,
    /// Could not be read or fixed.
    Failed,
    /// Not attempted because something it depends on failed.
    Skipped,
    /// An `audit` resource that differs: reported, never corrected.
    Drift,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResourceResult {
    pub resource: String,
    pub result: Outcome,
    /// One line per difference found (and fixed, when applying).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub changed: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub skipped: usize,
    pub drift: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub resources: Vec<ResourceResult>,
    pub summary: Summary,
}

impl Report {
    pub fn failed(&self) -> bool {
        self.summary.failed > 0 || self.summary.skipped > 0
    }
}

/// Batches of up to this many files are made durable with one fsync each, larger ones with
/// a single syncfs (see [`Ctx::flush`]).
const FSYNC_EACH_UP_TO: usize = 32;

/// What a resource type found: the differences, and a diff for people when planning.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub changes: Vec<String>,
    pub diff: Option<String>,
}

impl Found {
    pub fn none() -> Found {
        Found::default()
    }
    pub fn one(change: impl Into<String>) -> Found {
        Found {
            changes: vec![change.into()],
            diff: None,
        }
    }
}

/// Everything a resource type may use while converging.
pub(crate) struct Ctx {
    pub map: RootMap,
    pub renderer: Renderer,
    pub opts: Options,
    /// `true` when this resource must only be looked at (plan, or audit).
    pub look_only: bool,
    /// Temporary files waiting for the batched rename: (temporary, target).
    pub staged: Vec<(PathBuf, PathBuf)>,
    pub accounts: Option<users::Accounts>,
    /// A unit file changed in this apply (or would, when planning) and systemd has not been
    /// told yet (`daemon-reload`).
    pub units_dirty: bool,
    /// Units due for a notified restart at the end of this apply, once each.
    pub restarts: Vec<String>,
}

impl Ctx {
    pub fn accounts(&mut self) -> Result<&users::Accounts, String> {
        if self.accounts.is_none() {
            self.accounts = Some(users::Accounts::read(&self.opts.root)?);
        }
        Ok(self.accounts.as_ref().expect("just filled"))
    }

    /// Make staged files durable and put them in place.
    pub fn flush(&mut self) -> Result<(), String> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let staged = std::mem::take(&mut self.staged);
        // Every temporary's data must be durable before a rename exposes it. A few files are
        // fsynced one by one; a large batch takes one syncfs, which costs about the same as
        // unsynced writes for thousands of files but flushes the whole file system, so on a
        // busy machine it is slower than a handful of fsyncs.
        let sync = if staged.len() <= FSYNC_EACH_UP_TO {
            staged.iter().try_for_each(|(tmp, _)| {
                std::fs::File::open(tmp)
                    .and_then(|f| f.sync_data())
                    .map_err(|e| format!("fsync {}: {e}", tmp.display()))
            })
        } else {
            std::fs::File::open(&self.opts.root)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f))
                        .map_err(|e| e.to_string())
                })
                .map_err(|e| format!("syncfs on {}: {e}", self.opts.root.display()))
        };
        if let Err(e) = sync {
            for (tmp, _) in &staged {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(e);
        }
        let mut dirs = BTreeSet::new();
        let mut first_err = None;
        for (tmp, target) in &staged {
            if let Err(e) = std::fs::rename(tmp, target) {
                let _ = std::fs::remove_file(tmp);
                first_err.get_or_insert(format!("renaming into {}: {e}", target.display()));
            } else if let Some(d) = target.parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        for d in dirs {
            if let Err(e) = fsync_dir(&d) {
                first_err.get_or_insert(format!("fsync {}: {e}", d.display()));
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Converge `def` (or only plan it, with `opts.dry_run`).
pub fn run(def: &CompiledDefinition, facts: &Facts, opts: &Options) -> Report {
    let mut ctx = Ctx {
        map: RootMap::new(&opts.root),
        renderer: Renderer::new(&def.vars, facts),
        opts: opts.clone(),
        look_only: opts.dry_run,
        staged: Vec::new(),
        accounts: None,
        units_dirty: false,
        restarts: Vec::new(),
    };
    let order =
        converge_order(&def.resources).unwrap_or_else(|_| (0..def.resources.len()).collect());
    let managed_dirs: HashMap<&str, ResourceRef> = def
        .resources
        .iter()
        .filter_map(|r| match &r.kind {
            ResourceKind::Directory { path, .. } => Some((path.as_str(), r.reference())),
            _ => None,
        })
        .collect();
    let mut results: Vec<Option<ResourceResult>> = vec![None; def.resources.len()];
    let mut broken: HashSet<ResourceRef> = HashSet::new();
    let mut refresh: HashSet<ResourceRef> = HashSet::new();
    // Index into `results` of staged file resources, so a failed flush is reported on them.
    let mut staged_owners: Vec<usize> = Vec::new();
    // Index into `results` of each service whose notified restart waits for the end.
    let mut restart_owners: Vec<usize> = Vec::new();
    // Index into `results` of the last resource that changed a systemd unit file.
    let mut unit_owner: Option<usize> = None;

    for i in order {
        let r = &def.resources[i];
        let me = r.reference();
        let mut deps: Vec<ResourceRef> = r.requires.clone();
        if r.kind.rtype().is_path() {
            let mut p = Path::new(r.kind.id());
            while let Some(parent) = p.parent() {
                if let Some(d) = parent.to_str().and_then(|s| managed_dirs.get(s)) {
                    deps.push(d.clone());
                    break;
                }
                p = parent;
            }
        }
        if let Some(bad) = deps.iter().find(|d| broken.contains(d)) {
            broken.insert(me.clone());
            results[i] = Some(ResourceResult {
                resource: me.to_string(),
                result: Outcome::Skipped,
                changes: vec![],
                diff: None,
                error: Some(format!("skipped: it requires {bad}, which failed")),
            });
            continue;
        }
        if !r.kind.rtype().is_path() && !opts.dry_run {
            if let Err(e) = ctx.flush() {
                fail_staged(&mut results, &mut staged_owners, &mut broken, &e);
            }
            staged_owners.clear();
        }
        ctx.look_only = opts.dry_run || r.audit;
        let refreshed = refresh.contains(&me);
        let staged_before = ctx.staged.len();
        let found = match &r.kind {
            ResourceKind::File {
                path, content, own, ..
            } => file::converge(&mut ctx, path, content, own),
            ResourceKind::Directory { path, own } => directory::converge(&mut ctx, path, own),
            ResourceKind::Symlink { path, target } => symlink::converge(&mut ctx, path, target),
            ResourceKind::Absent { path } => absent::converge(&mut ctx, path),
            ResourceKind::Exec { .. } => exec::converge(&mut ctx, &r.kind, refreshed),
            ResourceKind::Package { name, ensure } => package::converge(&mut ctx, name, ensure),
            ResourceKind::Service {
                name,
                ensure,
                enable,
            } => service::converge(&mut ctx, name, *ensure, *enable, refreshed),
            ResourceKind::User { .. } | ResourceKind::Group { .. } => {
                users::converge(&mut ctx, &r.kind)
            }
        };
        if ctx.staged.len() > staged_before {
            staged_owners.push(i);
        }
        if ctx.restarts.len() > restart_owners.len() {
            restart_owners.push(i);
        }
        if !r.audit
            && r.kind.rtype().is_path()
            && service::is_unit_path(r.kind.id())
            && found.as_ref().is_ok_and(|f| !f.changes.is_empty())
        {
            ctx.units_dirty = true;
            unit_owner = Some(i);
        }
        let result = match found {
            Err(error) => {
                broken.insert(me.clone());
                ResourceResult {
                    resource: me.to_string(),
                    result: Outcome::Failed,
                    changes: vec![],
                    diff: None,
                    error: Some(error),
                }
            }
            Ok(found) if found.changes.is_empty() => ResourceResult {
                resource: me.to_string(),
                result: Outcome::Unchanged,
                changes: vec![],
                diff: None,
                error: None,
            },
            Ok(found) => {
                if !r.audit {
                    refresh.extend(r.notify.iter().cloned());
                }
                ResourceResult {
                    resource: me.to_string(),
                    result: if r.audit {
                        Outcome::Drift
                    } else {
                        Outcome::Changed
                    },
                    changes: found.changes,
                    diff: found.diff,
                    error: None,
                }
            }
        };
        results[i] = Some(result);
    }
    if !opts.dry_run {
        if let Err(e) = ctx.flush() {
            fail_staged(&mut results, &mut staged_owners, &mut broken, &e);
        }
        // Notified restarts: after every file of this apply is in place, once per unit.
        let units = std::mem::take(&mut ctx.restarts);
        for (unit, i) in units.iter().zip(restart_owners) {
            if let Err(e) = service::restart_now(&mut ctx, unit) {
                if let Some(r) = results[i].as_mut() {
                    r.result = Outcome::Failed;
                    r.changes.clear();
                    r.error = Some(e);
                }
            }
        }
        // A unit file changed with no service of this definition to pick it up (a timer, a
        // drop-in for a unit managed elsewhere): systemd is told all the same.
        if let (true, Some(i)) = (ctx.units_dirty, unit_owner) {
            if let Err(e) = service::reload_if_running(&mut ctx) {
                if let Some(r) = results[i].as_mut() {
                    r.result = Outcome::Failed;
                    r.error = Some(format!("written, but {e}"));
                }
            }
        }
    }
    let resources: Vec<ResourceResult> = results.into_iter().flatten().collect();
    let mut summary = Summary::default();
    for r in &resources {
        match r.result {
            Outcome::Changed => summary.changed += 1,
            Outcome::Unchanged => summary.unchanged += 1,
            Outcome::Failed => summary.failed += 1,
            Outcome::Skipped => summary.skipped += 1,
            Outcome::Drift => summary.drift += 1,
        }
    }
    Report { resources, summary }
}

fn fail_staged(
    results: &mut [Option<ResourceResult>],
    owners: &mut Vec<usize>,
    broken: &mut HashSet<ResourceRef>,
    error: &str,
) {
    for &i in owners.iter() {
        if let Some(r) = results[i].as_mut() {
            r.result = Outcome::Failed;
            r.error = Some(format!("writing the file failed: {error}"));
            if let Some(reference) = ResourceRef::parse(&r.resource) {
                broken.insert(reference);
            }
        }
    }
    owners.clear();
}

/// A short description of what is at a path.
pub(crate) fn kind_of(md: &std::fs::Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_symlink() {
        "a symlink"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a file"
    } else {
        "a special file"
    }
}

/// Create missing parent directories (0755, owned by whoever runs us, i.e. root).
pub(crate) fn ensure_parents(real: &Path) -> Result<(), String> {
    if let Some(parent) = real.parent() {
        if !parent.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(|e| format!("creating parent directory {}: {e}", parent.display()))?;
        }
    }
    Ok(())
}

/// The differences found, and the uid and gid wanted (`None`: left as they are).
pub(crate) type OwnershipDiff = (Vec<String>, Option<u32>, Option<u32>);

/// Differences of mode and ownership between a file's metadata and what is wanted.
pub(crate) fn ownership_changes(
    ctx: &mut Ctx,
    md: &std::fs::Metadata,
    own: &driftless_core::definition::Ownership,
) -> Result<OwnershipDiff, String> {
    use std::os::unix::fs::MetadataExt;
    let mut changes = Vec::new();
    if let Some(mode) = own.mode {
        let have = md.mode() & 0o7777;
        if have != mode {
            changes.push(format!("mode {have:04o} -> {mode:04o}"));
        }
    }
    let uid = match &own.owner {
        Some(o) => Some(ctx.accounts()?.uid(o)?),
        None => None,
    };
    let gid = match &own.group {
        Some(g) => Some(ctx.accounts()?.gid(g)?),
        None => None,
    };
    if let Some(u) = uid {
        if md.uid() != u {
            changes.push(format!("owner {} -> {}", md.uid(), u));
        }
    }
    if let Some(g) = gid {
        if md.gid() != g {
            changes.push(format!("group {} -> {}", md.gid(), g));
        }
    }
    Ok((changes, uid, gid))
}

/// Set mode and ownership on an existing path (not following a final symlink for chown).
pub(crate) fn set_ownership(
    path: &Path,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::lchown(path, uid, gid)
            .map_err(|e| format!("chown {}: {e}", path.display()))?;
    }
    if let Some(m) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    }
    Ok(())
}
