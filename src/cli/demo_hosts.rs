//! `driftless demo --hosts`: the demo on booted Debian hosts with systemd as PID 1
//! (systemd-nspawn on a bridge), instead of processes on loopback.
//!
//! The story is told by `scripts/demo-hosts.sh` over `tests/hosts/lib.sh` (the same library
//! as the host tests): both are built into the binary with the files they use, written to a
//! temporary directory and run with this binary as the agent, so an installed `driftless`
//! needs no checkout. Needs root; docs/hosts.md says what it does to the machine.

use super::{CliError, CliResult};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// (path in the checkout, content, executable)
const FILES: &[(&str, &str, bool)] = &[
    (
        "scripts/demo-hosts.sh",
        include_str!("../../scripts/demo-hosts.sh"),
        true,
    ),
    (
        "tests/hosts/lib.sh",
        include_str!("../../tests/hosts/lib.sh"),
        false,
    ),
    (
        "tests/hosts/definition/hello.toml",
        include_str!("../../tests/hosts/definition/hello.toml"),
        false,
    ),
    (
        "tests/hosts/definition/hello.service.j2",
        include_str!("../../tests/hosts/definition/hello.service.j2"),
        false,
    ),
    (
        "tests/hosts/package/DEBIAN/control",
        include_str!("../../tests/hosts/package/DEBIAN/control"),
        false,
    ),
    (
        "tests/hosts/package/usr/bin/driftless-hello",
        include_str!("../../tests/hosts/package/usr/bin/driftless-hello"),
        true,
    ),
    (
        "definitions/base.toml",
        include_str!("../../definitions/base.toml"),
        false,
    ),
    (
        "definitions/templates/ntp.conf.j2",
        include_str!("../../definitions/templates/ntp.conf.j2"),
        false,
    ),
    (
        "dist/driftless.service",
        include_str!("../../dist/driftless.service"),
        false,
    ),
    (
        "dist/agent.toml",
        include_str!("../../dist/agent.toml"),
        false,
    ),
];

fn unpack(dir: &Path) -> std::io::Result<()> {
    for (path, content, exec) in FILES {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().expect("relative paths have a parent"))?;
        std::fs::write(&p, content)?;
        let mode = if *exec { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

pub fn run(nodes: u16, keep: bool) -> CliResult {
    if !nix::unistd::geteuid().is_root() {
        return Err(CliError::bad(anyhow::anyhow!(
            "demo --hosts needs root: it boots systemd-nspawn hosts on a bridge and a network namespace of its own (run it with sudo)"
        )));
    }
    if nodes < 3 {
        return Err(CliError::bad(anyhow::anyhow!(
            "demo --hosts: --nodes must be at least 3"
        )));
    }
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failed(anyhow::anyhow!("cannot find the driftless binary: {e}")))?;
    let dir = std::env::temp_dir().join(format!("driftless-demo-hosts-{}", std::process::id()));
    let result = (|| {
        unpack(&dir).map_err(|e| {
            CliError::failed(anyhow::anyhow!(
                "writing the demo's files under {}: {e}",
                dir.display()
            ))
        })?;
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(dir.join("scripts/demo-hosts.sh"))
            .env("DRIFTLESS_BIN", &exe)
            .env("DLH_NODES", nodes.to_string())
            // The binary is bind-mounted into the hosts, not copied (a debug build is large).
            .env("DLH_BIND_BIN", "1");
        if keep {
            cmd.env("DLH_DEMO_KEEP", "1");
        }
        // Started from a context that ignores SIGINT (a background job), the script could
        // not trap it: give it the default disposition, so its Ctrl-C trap always works.
        // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                let _ = nix::sys::signal::signal(
                    nix::sys::signal::Signal::SIGINT,
                    nix::sys::signal::SigHandler::SigDfl,
                );
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| CliError::failed(anyhow::anyhow!("cannot run bash: {e}")))?;
        // Ctrl-C reaches the script as well (same process group): it halts the hosts and
        // removes what it made. This process waits for that instead of dying first.
        // SAFETY: installing SIG_IGN has no handler code to be unsafe.
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGINT,
                nix::sys::signal::SigHandler::SigIgn,
            );
        }
        let status = child
            .wait()
            .map_err(|e| CliError::failed(anyhow::anyhow!("waiting for the demo: {e}")))?;
        match status.code() {
            Some(0) | Some(130) => Ok(0),
            _ => Err(CliError::failed(anyhow::anyhow!(
                "the demo on hosts failed ({status})"
            ))),
        }
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
