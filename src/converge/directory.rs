//! `directory`: exists as a directory, with mode, owner and group.

use super::{kind_of, ownership_changes, set_ownership, Ctx, Found};
use driftless_core::definition::Ownership;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;

pub(crate) fn converge(ctx: &mut Ctx, path: &str, own: &Ownership) -> Result<Found, String> {
    let real = ctx.map.resolve(path).map_err(|e| e.to_string())?;
    match std::fs::symlink_metadata(&real) {
        Ok(md) if md.is_dir() => {
            let (changes, uid, gid) = ownership_changes(ctx, &md, own)?;
            if !changes.is_empty() && !ctx.look_only {
                set_ownership(&real, own.mode, uid, gid)?;
            }
            Ok(Found {
                changes,
                diff: None,
            })
        }
        Ok(md) => Err(format!(
            "{path} is {}, not a directory; not replaced (declare it `absent` first)",
            kind_of(&md)
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let mode = own.mode.unwrap_or(0o755);
            let found = Found::one(format!("create directory (mode {mode:04o})"));
            if ctx.look_only {
                return Ok(found);
            }
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&real)
                .map_err(|e| format!("creating {}: {e}", real.display()))?;
            let uid = match &own.owner {
                Some(o) => Some(ctx.accounts()?.uid(o)?),
                None => None,
            };
            let gid = match &own.group {
                Some(g) => Some(ctx.accounts()?.gid(g)?),
                None => None,
            };
            set_ownership(&real, Some(mode), uid, gid)?;
            Ok(found)
        }
        Err(e) => Err(format!("reading {}: {e}", real.display())),
    }
}
