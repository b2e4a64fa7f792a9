//! `service`: a systemd unit running or stopped, enabled or not, restarted when notified.
//!
//! Talks to systemd through `systemctl`: it is on every systemd host, its exit codes for
//! `is-active` / `is-enabled` are a stable interface, and it needs no D-Bus crate in the
//! binary. Without systemd as PID 1, or under a `--root` other than `/` (a service cannot be
//! confined to a directory), the resource fails with that reason; the rest still converges.

use super::{Ctx, Found};
use driftless_core::definition::ServiceEnsure;
use std::process::{Command, Stdio};

pub(crate) fn converge(
    ctx: &mut Ctx,
    name: &str,
    ensure: Option<ServiceEnsure>,
    enable: Option<bool>,
    refreshed: bool,
) -> Result<Found, String> {
    if ctx.opts.confined() {
        return Err(format!(
            "services cannot be confined to --root {}; manage service {name} on a host without --root",
            ctx.opts.root.display()
        ));
    }
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        return Err("systemd is not running on this machine (PID 1 is not systemd)".into());
    }
    let unit = if name.contains('.') {
        name.to_string()
    } else {
        format!("{name}.service")
    };
    let active = systemctl(&["is-active", "--quiet", &unit])?.0;
    let enabled = systemctl(&["is-enabled", "--quiet", &unit])?.0;
    let mut changes = Vec::new();
    let mut steps: Vec<Vec<&str>> = Vec::new();
    let mut reload = false;
    match enable {
        Some(true) if !enabled => {
            changes.push("enable".to_string());
            steps.push(vec!["enable", &unit]);
        }
        Some(false) if enabled => {
            changes.push("disable".to_string());
            steps.push(vec!["disable", &unit]);
        }
        _ => {}
    }
    match ensure {
        Some(ServiceEnsure::Running) if !active => {
            changes.push("start".to_string());
            reload = true;
            steps.push(vec!["start", &unit]);
        }
        Some(ServiceEnsure::Running) if refreshed => {
            changes.push("restart (notified)".to_string());
            reload = true;
            steps.push(vec!["restart", &unit]);
        }
        Some(ServiceEnsure::Stopped) if active => {
            changes.push("stop".to_string());
            steps.push(vec!["stop", &unit]);
        }
        None if refreshed && active => {
            changes.push("restart (notified)".to_string());
            reload = true;
            steps.push(vec!["restart", &unit]);
        }
        _ => {}
    }
    if changes.is_empty() || ctx.look_only {
        return Ok(Found {
            changes,
            diff: None,
        });
    }
    if reload {
        // A unit file written by this apply must be seen before the unit starts.
        systemctl_ok(&["daemon-reload"])?;
    }
    for step in steps {
        systemctl_ok(&step)?;
    }
    Ok(Found {
        changes,
        diff: None,
    })
}

fn systemctl(args: &[&str]) -> Result<(bool, String), String> {
    let out = Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Ok((out.status.success(), text))
}

fn systemctl_ok(args: &[&str]) -> Result<(), String> {
    let (ok, text) = systemctl(args)?;
    if ok {
        Ok(())
    } else {
        Err(format!("systemctl {} failed: {text}", args.join(" ")))
    }
}
