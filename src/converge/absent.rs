//! `absent`: nothing at `path` (a file or link is removed; a directory with all it holds).

use super::{kind_of, Ctx, Found};
use std::io::ErrorKind;

pub(crate) fn converge(ctx: &mut Ctx, path: &str) -> Result<Found, String> {
    let real = ctx.map.resolve(path).map_err(|e| e.to_string())?;
    let md = match std::fs::symlink_metadata(&real) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Found::none()),
        Err(e) => return Err(format!("reading {}: {e}", real.display())),
        Ok(md) => md,
    };
    let found = Found::one(format!("remove {}", kind_of(&md)));
    if ctx.look_only {
        return Ok(found);
    }
    let removed = if md.is_dir() {
        std::fs::remove_dir_all(&real)
    } else {
        std::fs::remove_file(&real)
    };
    removed.map_err(|e| format!("removing {}: {e}", real.display()))?;
    ctx.map.forget();
    Ok(found)
}
