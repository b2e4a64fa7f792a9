//! `file`: content (rendered per node), mode, owner, group. Written to a temporary beside the
//! target and renamed into place, never truncated in place; unchanged files are not touched.

use super::{ensure_parents, kind_of, ownership_changes, set_ownership, Ctx, Found};
use crate::fsutil::temp_path;
use driftless_core::definition::Ownership;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};

/// Diffs larger than this are summarised rather than printed.
const MAX_DIFF_BYTES: usize = 64 * 1024;

pub(crate) fn converge(
    ctx: &mut Ctx,
    path: &str,
    template: &str,
    own: &Ownership,
) -> Result<Found, String> {
    let real = ctx.map.resolve(path).map_err(|e| e.to_string())?;
    let want = ctx
        .renderer
        .render(template)
        .map_err(|e| format!("template: {e}"))?;
    let (old, md) = match std::fs::symlink_metadata(&real) {
        Ok(md) if md.file_type().is_file() => {
            // Compare sizes first: a different size needs no read.
            let old = if md.len() == want.len() as u64 {
                let mut buf = Vec::with_capacity(want.len());
                std::fs::File::open(&real)
                    .and_then(|mut f| f.read_to_end(&mut buf))
                    .map_err(|e| format!("reading {}: {e}", real.display()))?;
                Some(buf)
            } else {
                None
            };
            (Some(old), Some(md))
        }
        Ok(md) if md.file_type().is_dir() => {
            return Err(format!(
                "{path} is a directory; not replaced by a file (declare it `absent` first)"
            ))
        }
        Ok(md) => {
            // A symlink or special file is replaced, never written through.
            let what = kind_of(&md);
            return write(
                ctx,
                &real,
                path,
                &want,
                own,
                None,
                vec![format!("replace {what} with a file")],
                None,
            );
        }
        Err(e) if e.kind() == ErrorKind::NotFound => (None, None),
        Err(e) => return Err(format!("reading {}: {e}", real.display())),
    };
    match (old, md) {
        (None, _) | (_, None) => {
            let mode = own.mode.unwrap_or(0o644);
            let change = format!("create ({} bytes, mode {mode:04o})", want.len());
            let diff = ctx.look_only.then(|| diff(path, "", &want));
            write(ctx, &real, path, &want, own, None, vec![change], diff)
        }
        (Some(old), Some(md)) => {
            let same = old.as_deref() == Some(want.as_bytes());
            let (mut changes, uid, gid) = ownership_changes(ctx, &md, own)?;
            if same {
                if changes.is_empty() || ctx.look_only {
                    return Ok(Found {
                        changes,
                        diff: None,
                    });
                }
                set_ownership(&real, own.mode, uid, gid)?;
                return Ok(Found {
                    changes,
                    diff: None,
                });
            }
            changes.insert(0, "content".to_string());
            let diff = if ctx.look_only {
                let before = match old {
                    Some(b) => b,
                    None => std::fs::read(&real)
                        .map_err(|e| format!("reading {}: {e}", real.display()))?,
                };
                Some(match std::str::from_utf8(&before) {
                    Ok(text) => diff(path, text, &want),
                    Err(_) => "binary content differs\n".to_string(),
                })
            } else {
                None
            };
            write(ctx, &real, path, &want, own, Some(&md), changes, diff)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn write(
    ctx: &mut Ctx,
    real: &std::path::Path,
    path: &str,
    want: &str,
    own: &Ownership,
    existing: Option<&std::fs::Metadata>,
    changes: Vec<String>,
    diff: Option<String>,
) -> Result<Found, String> {
    if ctx.look_only {
        return Ok(Found { changes, diff });
    }
    ensure_parents(real)?;
    let mode = own
        .mode
        .or_else(|| existing.map(|md| md.mode() & 0o7777))
        .unwrap_or(0o644);
    let uid = match &own.owner {
        Some(o) => Some(ctx.accounts()?.uid(o)?),
        None => existing.map(|m| m.uid()),
    };
    let gid = match &own.group {
        Some(g) => Some(ctx.accounts()?.gid(g)?),
        None => existing.map(|m| m.gid()),
    };
    let tmp = temp_path(real);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        f.write_all(want.as_bytes())
            .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::fchown(&f, uid, gid).map_err(|e| format!("chown {path}: {e}"))?;
        }
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {path}: {e}"))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    ctx.staged.push((tmp, real.to_path_buf()));
    Ok(Found { changes, diff })
}

fn diff(path: &str, old: &str, new: &str) -> String {
    if old.len() + new.len() > MAX_DIFF_BYTES {
        return format!(
            "content differs ({} bytes -> {} bytes; too large to show)\n",
            old.len(),
            new.len()
        );
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (current)"), &format!("{path} (wanted)"))
        .to_string()
}
