//! `package`: a Debian package installed (any or a given version) or absent.
//!
//! The current state comes from dpkg's database (`dpkg-query`). On the real system, apt-get
//! installs and removes; when a matching `.deb` is already in apt's cache,
//! `/var/cache/apt/archives/NAME_*.deb` (NAME_VERSION_* for a version), apt-get installs that
//! file by its path, so a host with no package mirror can still be given a package (apt
//! resolves its dependencies as usual, from the mirror if there is one). Under `--root`, dpkg
//! acts on the root's own database (`dpkg --root ROOT`); apt-get cannot install into an empty
//! tree, so the `.deb` is taken from the root's apt cache, `ROOT/var/cache/apt/archives/`.

use super::{Ctx, Found};
use driftless_core::definition::PackageEnsure;
use std::process::{Command, Stdio};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(crate) fn converge(ctx: &mut Ctx, name: &str, ensure: &PackageEnsure) -> Result<Found, String> {
    let installed = installed_version(ctx, name)?;
    let found = match (ensure, &installed) {
        (PackageEnsure::Installed, Some(_)) | (PackageEnsure::Absent, None) => {
            return Ok(Found::none())
        }
        (PackageEnsure::Version(v), Some(have)) if have == v => return Ok(Found::none()),
        (PackageEnsure::Installed, None) => Found::one("install"),
        (PackageEnsure::Version(v), None) => Found::one(format!("install version {v}")),
        (PackageEnsure::Version(v), Some(have)) => {
            Found::one(format!("change version {have} -> {v}"))
        }
        (PackageEnsure::Absent, Some(have)) => Found::one(format!("remove (version {have})")),
    };
    if ctx.look_only {
        return Ok(found);
    }
    let root = ctx.opts.root.clone();
    let mut cmd = if ctx.opts.confined() {
        let mut c = Command::new("dpkg");
        c.arg(format!("--root={}", root.display()));
        match ensure {
            PackageEnsure::Absent => {
                c.args(["--remove", name]);
            }
            PackageEnsure::Installed | PackageEnsure::Version(_) => {
                let deb = find_deb(&root, name, ensure)?;
                c.arg("--install").arg(deb);
            }
        }
        c
    } else {
        let mut c = Command::new("apt-get");
        c.args(["-y", "-q", "-o", "Dpkg::Options::=--force-confold"]);
        // A matching .deb in apt's cache is installed by its path (no mirror needed).
        let local = match ensure {
            PackageEnsure::Absent => None,
            _ => find_deb(&root, name, ensure).ok(),
        };
        match (ensure, local) {
            (PackageEnsure::Absent, _) => c.args(["remove", name]),
            (_, Some(deb)) => c.args(["install", "--allow-downgrades"]).arg(deb),
            (PackageEnsure::Installed, None) => c.args(["install", name]),
            (PackageEnsure::Version(v), None) => {
                c.args(["install", "--allow-downgrades", &format!("{name}={v}")])
            }
        };
        c.env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    let out = cmd
        .env("PATH", PATH)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            text.trim().lines().last().unwrap_or("")
        ));
    }
    // Check the result rather than trust the exit code.
    let now = installed_version(ctx, name)?;
    let ok = match ensure {
        PackageEnsure::Installed => now.is_some(),
        PackageEnsure::Absent => now.is_none(),
        PackageEnsure::Version(v) => now.as_deref() == Some(v.as_str()),
    };
    if !ok {
        return Err(format!(
            "package {name} is still {}",
            now.unwrap_or_else(|| "not installed".into())
        ));
    }
    Ok(found)
}

/// The installed version, from dpkg's database (the root's own under `--root`).
fn installed_version(ctx: &Ctx, name: &str) -> Result<Option<String>, String> {
    let mut cmd = Command::new("dpkg-query");
    if ctx.opts.confined() {
        let admin = ctx.opts.root.join("var/lib/dpkg");
        if !admin.join("status").exists() {
            return Err(format!(
                "no dpkg database under the root ({} has no `status` file)",
                admin.display()
            ));
        }
        cmd.arg(format!("--admindir={}", admin.display()));
    }
    let out = cmd
        .args(["-W", "-f", "${db:Status-Status} ${Version}", name])
        .env("PATH", PATH)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run dpkg-query: {e}"))?;
    if !out.status.success() {
        return Ok(None); // not known to dpkg at all
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some("installed"), Some(v)) => Ok(Some(v.to_string())),
        _ => Ok(None),
    }
}

fn find_deb(
    root: &std::path::Path,
    name: &str,
    ensure: &PackageEnsure,
) -> Result<std::path::PathBuf, String> {
    let dir = root.join("var/cache/apt/archives");
    let prefix = match ensure {
        PackageEnsure::Version(v) => format!("{name}_{}_", v.replace(':', "%3a")),
        _ => format!("{name}_"),
    };
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| {
            format!(
                "no package file for {name}: cannot read {}: {e}",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| format!("no package file {prefix}*.deb in {}", dir.display()))
}
