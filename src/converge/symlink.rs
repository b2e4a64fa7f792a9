//! `symlink`: a link at `path` pointing to `target` (the target is written as given).

use super::{ensure_parents, kind_of, Ctx, Found};
use crate::fsutil::temp_path;
use std::io::ErrorKind;

pub(crate) fn converge(ctx: &mut Ctx, path: &str, target: &str) -> Result<Found, String> {
    let real = ctx.map.resolve(path).map_err(|e| e.to_string())?;
    let found = match std::fs::symlink_metadata(&real) {
        Ok(md) if md.file_type().is_symlink() => {
            let have = std::fs::read_link(&real)
                .map_err(|e| format!("reading {}: {e}", real.display()))?;
            if have.as_os_str() == target {
                return Ok(Found::none());
            }
            Found::one(format!("retarget {} -> {target}", have.display()))
        }
        Ok(md) if md.is_dir() => {
            return Err(format!(
                "{path} is a directory; not replaced by a symlink (declare it `absent` first)"
            ))
        }
        Ok(md) => Found::one(format!(
            "replace {} with a symlink to {target}",
            kind_of(&md)
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Found::one(format!("create symlink to {target}"))
        }
        Err(e) => return Err(format!("reading {}: {e}", real.display())),
    };
    if ctx.look_only {
        return Ok(found);
    }
    ensure_parents(&real)?;
    // A new link beside the old path, renamed over it: the path is never missing.
    let tmp = temp_path(&real);
    std::os::unix::fs::symlink(target, &tmp)
        .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, &real) {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("renaming into {}: {e}", real.display()));
    }
    ctx.map.forget();
    Ok(found)
}
