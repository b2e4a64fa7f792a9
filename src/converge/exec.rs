//! `exec`: a command, guarded by `creates` / `unless` / `onlyif`, or run only when notified
//! (`refreshonly`). It cannot be confined to `--root`: it runs with the root as its working
//! directory and `DRIFTLESS_ROOT` set, and should respect it.

use super::{Ctx, Found};
use driftless_core::definition::ResourceKind;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;
use wait_timeout::ChildExt;

/// Commands without a `timeout` are stopped after 5 minutes: a hung command must not hold
/// convergence (and later the agent's apply worker) forever.
const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// Guards (`unless`, `onlyif`) are checks and should be quick.
const GUARD_TIMEOUT_SECS: u64 = 60;
/// How much of a failed command's output is kept in the error.
const OUTPUT_TAIL_BYTES: usize = 2000;

pub(crate) fn converge(
    ctx: &mut Ctx,
    kind: &ResourceKind,
    refreshed: bool,
) -> Result<Found, String> {
    let ResourceKind::Exec {
        command,
        creates,
        unless,
        onlyif,
        refreshonly,
        timeout_secs,
        ..
    } = kind
    else {
        unreachable!("exec::converge called with another resource type")
    };
    if *refreshonly && !refreshed {
        return Ok(Found::none());
    }
    if let Some(c) = creates {
        let real = ctx.map.resolve(c).map_err(|e| e.to_string())?;
        if std::fs::symlink_metadata(real).is_ok() {
            return Ok(Found::none());
        }
    }
    if let Some(u) = unless {
        if run(ctx, u, GUARD_TIMEOUT_SECS)?.0 {
            return Ok(Found::none());
        }
    }
    if let Some(o) = onlyif {
        if !run(ctx, o, GUARD_TIMEOUT_SECS)?.0 {
            return Ok(Found::none());
        }
    }
    let why = if refreshed { " (notified)" } else { "" };
    let found = Found::one(format!("run `{command}`{why}"));
    if ctx.look_only {
        return Ok(found);
    }
    let (ok, output) = run(ctx, command, timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS))?;
    if !ok {
        return Err(format!("`{command}` failed: {output}"));
    }
    Ok(found)
}

/// Run `sh -c cmd` in the root; returns (success, description of how it ended + output tail).
fn run(ctx: &Ctx, cmd: &str, timeout: u64) -> Result<(bool, String), String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(&ctx.opts.root)
        .env("DRIFTLESS_ROOT", &ctx.opts.root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{cmd}`: {e}"))?;
    // Read output on threads so a chatty command cannot fill a pipe and stall.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let status = match child
        .wait_timeout(Duration::from_secs(timeout))
        .map_err(|e| format!("waiting for `{cmd}`: {e}"))?
    {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return Ok((false, format!("timed out after {timeout} s")));
        }
    };
    let mut output = t_out.join().unwrap_or_default();
    output.extend(t_err.join().unwrap_or_default());
    let text = String::from_utf8_lossy(&output);
    let text = text.trim();
    let tail = if text.len() > OUTPUT_TAIL_BYTES {
        let mut cut = text.len() - OUTPUT_TAIL_BYTES;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        format!("…{}", &text[cut..])
    } else {
        text.to_string()
    };
    let how = match status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_string(),
    };
    Ok((
        status.success(),
        if tail.is_empty() {
            how
        } else {
            format!("{how}: {tail}")
        },
    ))
}
