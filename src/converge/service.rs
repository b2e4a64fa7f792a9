//! `service`: a systemd unit running or stopped, enabled or not, restarted when notified.
//!
//! Talks to systemd through `systemctl` (see ARCHITECTURE.md for why not D-Bus): one
//! `systemctl show` reads everything needed (load state, active state, unit-file state,
//! whether the unit file changed on disk), then `enable`/`disable`/`start`/`stop` fix what
//! differs. The rules:
//!
//! - A unit file changed by this apply (any file, symlink or absent resource under a systemd
//!   unit directory), or one systemd reports as changed on disk (`NeedDaemonReload`), is
//!   picked up with one `daemon-reload` before the unit is enabled or started.
//! - A notified restart (a resource that `notify`s the service changed) is deferred to the
//!   end of the apply, after every file of that apply is in place, and happens once however
//!   many resources notified it. A unit this apply started is not restarted again: it
//!   started with the new files already, since what notifies it is ordered before it.
//!   What `requires` the service has already run by then: a restart that fails is a
//!   failure of the service resource, not a reason to skip what came before it.
//!   A unit file changed by an apply with no service resource to start (a timer, a drop-in)
//!   gets the `daemon-reload` at the end of the apply.
//! - After a start or restart the unit is watched briefly: a process that exits at once (a
//!   `Type=simple` unit whose `systemctl start` succeeds) is a failure of the resource, with
//!   systemd's result and the last lines of its journal.
//! - A missing unit, a masked one, one with bad settings, no systemd as PID 1, or `--root`
//!   (a service cannot be confined to a directory) are named failures of this resource; the
//!   engine skips only what requires it, and the rest converges.

use super::{Ctx, Found};
use driftless_core::definition::ServiceEnsure;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Directories systemd loads unit files from (system manager); a file changed under one of
/// them means a `daemon-reload` before any unit is started.
pub(crate) const UNIT_DIRS: [&str; 6] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/usr/local/lib/systemd/system",
    "/etc/systemd/system.control",
];

/// How long a freshly started `simple`/`exec` unit must stay up to count as started.
const SETTLE: Duration = Duration::from_millis(500);
const SETTLE_STEP: Duration = Duration::from_millis(100);

/// Is `path` (a definition's logical path) a unit file or drop-in systemd would load?
pub(crate) fn is_unit_path(path: &str) -> bool {
    UNIT_DIRS.iter().any(|d| {
        path.strip_prefix(d)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
    })
}

/// `nginx` → `nginx.service`; a name with a unit suffix is kept.
pub(crate) fn unit_name(name: &str) -> String {
    const SUFFIXES: [&str; 11] = [
        ".service",
        ".socket",
        ".timer",
        ".target",
        ".path",
        ".mount",
        ".automount",
        ".swap",
        ".slice",
        ".scope",
        ".device",
    ];
    if SUFFIXES.iter().any(|s| name.ends_with(s)) {
        name.to_string()
    } else {
        format!("{name}.service")
    }
}

/// What `systemctl show` says about a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UnitState {
    pub load: String,
    pub active: String,
    pub sub: String,
    pub file_state: String,
    pub need_reload: bool,
    pub result: String,
    pub load_error: String,
    /// `Type=` of a service unit (`simple`, `exec`, `notify`, `forking`, `oneshot`...).
    pub kind: String,
}

pub(crate) const SHOW_PROPS: &str =
    "LoadState,ActiveState,SubState,UnitFileState,NeedDaemonReload,Result,LoadError,Type";

impl UnitState {
    /// Parse `KEY=VALUE` lines of `systemctl show -p ...`.
    pub fn parse(text: &str) -> UnitState {
        let map: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let get = |k: &str| map.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        UnitState {
            load: get("LoadState"),
            active: get("ActiveState"),
            sub: get("SubState"),
            file_state: get("UnitFileState"),
            need_reload: get("NeedDaemonReload") == "yes",
            result: get("Result"),
            load_error: get("LoadError"),
            kind: get("Type"),
        }
    }

    /// Running, or on its way up (not a unit that keeps failing and being restarted).
    pub fn running(&self) -> bool {
        match self.active.as_str() {
            "active" | "reloading" => true,
            "activating" => self.sub != "auto-restart",
            _ => false,
        }
    }

    /// Anything a `stop` would act on.
    pub fn stoppable(&self) -> bool {
        matches!(self.active.as_str(), "active" | "reloading" | "activating")
    }

    /// "inactive (dead)", "active (running)", "failed (failed)"...
    pub fn describe(&self) -> String {
        if self.sub.is_empty() || self.sub == self.active {
            self.active.clone()
        } else {
            format!("{} ({})", self.active, self.sub)
        }
    }

    /// `systemctl start` returns as soon as the process is forked (`simple`, `exec`, `idle`
    /// services), so whether it stays up must be watched; for `notify`, `forking`,
    /// `oneshot` and `dbus`, systemctl waits for the unit to be up and reports a failure.
    pub fn start_is_blind(&self) -> bool {
        matches!(self.kind.as_str(), "simple" | "exec" | "idle")
    }

    /// Why this unit cannot be managed at all, if that is so.
    pub fn unusable(&self, unit: &str) -> Option<String> {
        match self.load.as_str() {
            "loaded" => None,
            "not-found" => Some(format!(
                "unit {unit} not found: no unit file for it in {} (ship one with a file resource that this service requires, or install the package that provides it)",
                UNIT_DIRS[..4].join(", ")
            )),
            "masked" => Some(format!(
                "unit {unit} is masked (systemctl unmask {unit} to allow it)"
            )),
            "bad-setting" | "error" => Some(format!(
                "unit {unit} does not load ({}){}",
                self.load,
                if self.load_error.is_empty() {
                    String::new()
                } else {
                    format!(": {}", self.load_error)
                }
            )),
            "" => Some(format!("systemctl show {unit} printed no load state")),
            other => Some(format!("unit {unit} is in load state `{other}`")),
        }
    }
}

/// One systemctl verb on the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Enable,
    Disable,
    Start,
    Stop,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Step::Enable => "enable",
            Step::Disable => "disable",
            Step::Start => "start",
            Step::Stop => "stop",
        }
    }
}

/// What to do about a unit: the change lines (current → wanted), the steps to run now, and
/// whether a notified restart is due at the end of the apply.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Decision {
    pub changes: Vec<String>,
    pub steps: Vec<Step>,
    pub restart_later: bool,
}

/// Unit-file states in which `systemctl enable` would do something (`is-enabled` says no).
fn enableable(file_state: &str) -> bool {
    matches!(file_state, "disabled" | "linked" | "linked-runtime")
}

/// Unit-file states that `systemctl disable` undoes. `static`, `indirect`, `generated`,
/// `transient` and `alias` units cannot be disabled (nothing to undo), so they are left be.
fn disableable(file_state: &str) -> bool {
    matches!(file_state, "enabled" | "enabled-runtime")
}

pub(crate) fn decide(
    st: &UnitState,
    ensure: Option<ServiceEnsure>,
    enable: Option<bool>,
    refreshed: bool,
) -> Decision {
    let mut d = Decision::default();
    match enable {
        Some(true) if enableable(&st.file_state) => {
            d.changes
                .push(format!("enabled: {} -> enabled", st.file_state));
            d.steps.push(Step::Enable);
        }
        Some(false) if disableable(&st.file_state) => {
            d.changes
                .push(format!("enabled: {} -> disabled", st.file_state));
            d.steps.push(Step::Disable);
        }
        _ => {}
    }
    match ensure {
        Some(ServiceEnsure::Running) if !st.running() => {
            d.changes
                .push(format!("state: {} -> running (start)", st.describe()));
            d.steps.push(Step::Start);
        }
        Some(ServiceEnsure::Stopped) if st.stoppable() => {
            d.changes
                .push(format!("state: {} -> stopped (stop)", st.describe()));
            d.steps.push(Step::Stop);
        }
        // A refresh restarts a running unit (or one left unmanaged but running), once.
        Some(ServiceEnsure::Running) | None if refreshed && st.running() => {
            d.changes.push("restart (notified)".to_string());
            d.restart_later = true;
        }
        _ => {}
    }
    d
}

pub(crate) fn converge(
    ctx: &mut Ctx,
    name: &str,
    ensure: Option<ServiceEnsure>,
    enable: Option<bool>,
    refreshed: bool,
) -> Result<Found, String> {
    let unit = unit_name(name);
    if ctx.opts.confined() {
        return Err(format!(
            "services cannot be confined to --root {}; manage {unit} on a host without --root",
            ctx.opts.root.display()
        ));
    }
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        return Err(format!(
            "systemd is not running on this machine (no /run/systemd/system: PID 1 is not systemd), so {unit} cannot be managed"
        ));
    }
    // A unit file written by this apply (or edited on disk since systemd read it) is loaded
    // before anything is decided, so the state read is the one of the new file.
    if ctx.units_dirty && !ctx.look_only {
        daemon_reload(ctx)?;
    }
    let mut st = show(&unit)?;
    if st.need_reload && !ctx.look_only {
        daemon_reload(ctx)?;
        st = show(&unit)?;
    }
    if let Some(why) = st.unusable(&unit) {
        if ctx.look_only && ctx.units_dirty && st.load == "not-found" {
            // Planning: the unit file is among this apply's changes, so it would exist.
            let mut d = decide(
                &UnitState {
                    load: "loaded".into(),
                    active: "inactive".into(),
                    sub: "dead".into(),
                    file_state: "disabled".into(),
                    ..UnitState::default()
                },
                ensure,
                enable,
                false,
            );
            d.changes.insert(
                0,
                format!("unit {unit}: not loaded yet, its unit file is written by this apply"),
            );
            return Ok(Found {
                changes: d.changes,
                diff: None,
            });
        }
        return Err(why);
    }
    let d = decide(&st, ensure, enable, refreshed);
    if d.changes.is_empty() || ctx.look_only {
        return Ok(Found {
            changes: d.changes,
            diff: None,
        });
    }
    for step in &d.steps {
        systemctl_ok(&[step.verb(), &unit])?;
        if *step == Step::Start {
            settle(&unit, st.start_is_blind())?;
        }
    }
    if d.restart_later {
        ctx.restarts.push(unit);
    }
    Ok(Found {
        changes: d.changes,
        diff: None,
    })
}

/// The deferred, notified restart of `unit`, at the end of an apply (after every file is in
/// place). Called once per unit per apply.
pub(crate) fn restart_now(ctx: &mut Ctx, unit: &str) -> Result<(), String> {
    if ctx.units_dirty {
        daemon_reload(ctx)?;
    }
    systemctl_ok(&["restart", unit])?;
    let st = show(unit)?;
    settle(unit, st.start_is_blind())
}

/// `daemon-reload` when systemd runs this machine and the apply is not confined to a root
/// (under `--root`, unit files are the root's, not this machine's systemd's).
pub(crate) fn reload_if_running(ctx: &mut Ctx) -> Result<(), String> {
    if ctx.opts.confined() || !std::path::Path::new("/run/systemd/system").is_dir() {
        ctx.units_dirty = false;
        return Ok(());
    }
    daemon_reload(ctx)
}

fn daemon_reload(ctx: &mut Ctx) -> Result<(), String> {
    systemctl_ok(&["daemon-reload"])?;
    ctx.units_dirty = false;
    Ok(())
}

fn show(unit: &str) -> Result<UnitState, String> {
    let (ok, out, err) = systemctl(&["show", "-p", SHOW_PROPS, unit])?;
    if !ok {
        return Err(format!("systemctl show {unit} failed: {err}"));
    }
    Ok(UnitState::parse(&out))
}

/// After a start: the unit must be up, and a `simple`/`exec` unit (`blind`: "started" as
/// soon as its process is forked, even if it exits at once) still up a moment later.
fn settle(unit: &str, blind: bool) -> Result<(), String> {
    let deadline = Instant::now() + if blind { SETTLE } else { Duration::ZERO };
    loop {
        let st = show(unit)?;
        let failed =
            st.active == "failed" || (st.active == "activating" && st.sub == "auto-restart");
        if failed || (st.active == "inactive" && st.result != "success") {
            return Err(format!(
                "{unit} failed to start: {} (result: {}){}",
                st.describe(),
                if st.result.is_empty() {
                    "unknown"
                } else {
                    &st.result
                },
                journal_tail(unit)
            ));
        }
        if Instant::now() >= deadline {
            return if st.running() || st.active == "inactive" {
                // inactive with result success: a oneshot that ran and exited.
                Ok(())
            } else {
                Err(format!("{unit} did not come up: {}", st.describe()))
            };
        }
        std::thread::sleep(SETTLE_STEP);
    }
}

/// "; last log lines: ..." from the unit's journal, or nothing when there is none.
fn journal_tail(unit: &str) -> String {
    let out = Command::new("journalctl")
        .args(["-u", unit, "-n", "3", "-o", "cat", "--no-pager", "-q"])
        .env("PATH", PATH)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            format!("; last log lines: {}", lines.join(" | "))
        }
        _ => String::new(),
    }
}

/// Run systemctl: (success, stdout, stderr).
fn systemctl(args: &[&str]) -> Result<(bool, String, String), String> {
    let out = Command::new("systemctl")
        .args(["--no-pager", "--no-ask-password"])
        .args(args)
        .env("PATH", PATH)
        .env("SYSTEMD_PAGER", "")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

fn systemctl_ok(args: &[&str]) -> Result<(), String> {
    let (ok, _, err) = systemctl(args)?;
    if ok {
        Ok(())
    } else {
        Err(format!("systemctl {} failed: {err}", args.join(" ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(active: &str, sub: &str, file: &str) -> UnitState {
        UnitState {
            load: "loaded".into(),
            active: active.into(),
            sub: sub.into(),
            file_state: file.into(),
            result: "success".into(),
            ..UnitState::default()
        }
    }

    #[test]
    fn parses_systemctl_show() {
        let st = UnitState::parse(
            "LoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\nNeedDaemonReload=yes\nResult=success\nLoadError=\nType=simple\n",
        );
        assert_eq!(st.load, "loaded");
        assert!(st.start_is_blind());
        assert!(!UnitState::parse("Type=notify\n").start_is_blind());
        assert!(st.running() && st.need_reload);
        assert_eq!(st.describe(), "active (running)");
        assert_eq!(st.unusable("x.service"), None);
        let missing = UnitState::parse(
            "LoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\nNeedDaemonReload=no\nResult=success\nLoadError=org.freedesktop.systemd1.NoSuchUnit \"Unit nope.service not found.\"\n",
        );
        let why = missing.unusable("nope.service").unwrap();
        assert!(why.contains("unit nope.service not found"), "{why}");
        assert!(UnitState::parse("LoadState=masked\n")
            .unusable("m.service")
            .unwrap()
            .contains("masked"));
    }

    #[test]
    fn unit_names_and_paths() {
        assert_eq!(unit_name("nginx"), "nginx.service");
        assert_eq!(unit_name("backup.timer"), "backup.timer");
        assert_eq!(unit_name("my.app"), "my.app.service");
        assert!(is_unit_path("/etc/systemd/system/hello.service"));
        assert!(is_unit_path(
            "/etc/systemd/system/hello.service.d/limits.conf"
        ));
        assert!(is_unit_path("/lib/systemd/system/x.service"));
        assert!(!is_unit_path("/etc/systemd/system"));
        assert!(!is_unit_path("/etc/systemd/systemx/y.service"));
        assert!(!is_unit_path("/etc/hello/hello.conf"));
    }

    #[test]
    fn starts_and_enables_what_is_stopped_and_disabled() {
        let d = decide(
            &state("inactive", "dead", "disabled"),
            Some(ServiceEnsure::Running),
            Some(true),
            false,
        );
        assert_eq!(d.steps, vec![Step::Enable, Step::Start]);
        assert_eq!(
            d.changes,
            vec![
                "enabled: disabled -> enabled",
                "state: inactive (dead) -> running (start)"
            ]
        );
        assert!(!d.restart_later);
    }

    #[test]
    fn nothing_to_do_when_in_line() {
        let d = decide(
            &state("active", "running", "enabled"),
            Some(ServiceEnsure::Running),
            Some(true),
            false,
        );
        assert_eq!(d, Decision::default());
        // Static units cannot be enabled or disabled: not a difference either way.
        for enable in [true, false] {
            let d = decide(
                &state("active", "running", "static"),
                None,
                Some(enable),
                false,
            );
            assert_eq!(d, Decision::default());
        }
    }

    #[test]
    fn notified_restart_is_deferred_and_skipped_after_a_start() {
        let running = state("active", "running", "enabled");
        let d = decide(&running, Some(ServiceEnsure::Running), None, true);
        assert!(d.restart_later && d.steps.is_empty());
        assert_eq!(d.changes, vec!["restart (notified)"]);
        // Not managed for state, but running: still restarted when notified.
        assert!(decide(&running, None, None, true).restart_later);
        // Started by this apply: no second restart.
        let d = decide(
            &state("inactive", "dead", "enabled"),
            Some(ServiceEnsure::Running),
            None,
            true,
        );
        assert_eq!(d.steps, vec![Step::Start]);
        assert!(!d.restart_later);
        // A stopped service is not started by a refresh.
        let d = decide(
            &state("active", "running", "enabled"),
            Some(ServiceEnsure::Stopped),
            None,
            true,
        );
        assert_eq!(d.steps, vec![Step::Stop]);
        assert!(!d.restart_later);
        assert_eq!(
            decide(&state("inactive", "dead", "enabled"), None, None, true),
            Decision::default()
        );
    }

    #[test]
    fn a_unit_that_keeps_failing_is_not_running() {
        let st = state("activating", "auto-restart", "enabled");
        assert!(!st.running());
        let d = decide(&st, Some(ServiceEnsure::Running), None, false);
        assert_eq!(d.steps, vec![Step::Start]);
        assert!(state("activating", "start", "enabled").running());
        assert!(!state("failed", "failed", "enabled").running());
    }

    #[test]
    fn stops_and_disables() {
        let d = decide(
            &state("active", "running", "enabled"),
            Some(ServiceEnsure::Stopped),
            Some(false),
            false,
        );
        assert_eq!(d.steps, vec![Step::Disable, Step::Stop]);
        assert_eq!(
            d.changes,
            vec![
                "enabled: enabled -> disabled",
                "state: active (running) -> stopped (stop)"
            ]
        );
    }
}

#[cfg(test)]
mod engine_tests {
    use crate::converge::{run, Options, Outcome};

    /// Under `--root` (and on a machine without systemd) a service is a named failure of that
    /// resource alone: what does not require it still converges, what requires it is skipped,
    /// and the report fails (apply exits 1).
    #[test]
    fn a_service_that_cannot_be_managed_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let def = crate::definition::parse(
            r#"
name = "svc"
[[resource]]
type = "file"
path = "/etc/hello/hello.conf"
content = "v1\n"
notify = ["service:hello"]
[[resource]]
type = "service"
name = "hello"
ensure = "running"
enable = true
[[resource]]
type = "file"
path = "/etc/hello/after"
content = "x\n"
requires = ["service:hello"]
[[resource]]
type = "file"
path = "/etc/motd"
content = "independent\n"
"#,
            dir.path(),
        )
        .unwrap();
        let facts = crate::facts::Facts::gather(&root, Default::default());
        let opts = Options {
            root: root.clone(),
            dry_run: false,
        };
        let report = run(&def, &facts, &opts);
        let by = |id: &str| {
            report
                .resources
                .iter()
                .find(|r| r.resource == id)
                .unwrap_or_else(|| panic!("{id} in {report:?}"))
        };
        let svc = by("service:hello");
        assert_eq!(svc.result, Outcome::Failed);
        let err = svc.error.as_deref().unwrap();
        assert!(
            err.contains("hello.service") && err.contains("--root"),
            "{err}"
        );
        assert_eq!(by("file:/etc/hello/hello.conf").result, Outcome::Changed);
        assert_eq!(by("file:/etc/motd").result, Outcome::Changed);
        assert_eq!(by("file:/etc/hello/after").result, Outcome::Skipped);
        assert!(report.failed());
        assert_eq!(
            std::fs::read_to_string(root.join("etc/motd")).unwrap(),
            "independent\n"
        );
        assert!(!root.join("etc/hello/after").exists());
    }
}
