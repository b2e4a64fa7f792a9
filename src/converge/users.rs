//! `user` and `group`: accounts in the root's `etc/passwd` and `etc/group`, changed with
//! `useradd`/`usermod`/`userdel`/`groupadd`/`groupdel` (with `--prefix ROOT` under `--root`).
//! Also resolves owner and group names for files.

use super::{Ctx, Found};
use driftless_core::definition::{Presence, ResourceKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// Users and groups as the root sees them.
pub(crate) struct Accounts {
    users: HashMap<String, Account>,
    groups: HashMap<String, (u32, Vec<String>)>,
}

impl Accounts {
    /// Read `ROOT/etc/passwd` and `ROOT/etc/group`; a root without them resolves names
    /// through the machine's own files.
    pub fn read(root: &Path) -> Result<Accounts, String> {
        let pick = |name: &str| -> PathBuf {
            let inside = root.join("etc").join(name);
            if inside.exists() {
                inside
            } else {
                Path::new("/etc").join(name)
            }
        };
        let mut users = HashMap::new();
        let passwd = read_or_empty(&pick("passwd"))?;
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 7 {
                if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                    users.insert(
                        f[0].to_string(),
                        Account {
                            uid,
                            gid,
                            home: f[5].to_string(),
                            shell: f[6].to_string(),
                        },
                    );
                }
            }
        }
        let mut groups = HashMap::new();
        for line in read_or_empty(&pick("group"))?.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 4 {
                if let Ok(gid) = f[2].parse() {
                    let members = f[3]
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect();
                    groups.insert(f[0].to_string(), (gid, members));
                }
            }
        }
        Ok(Accounts { users, groups })
    }

    pub fn uid(&self, name: &str) -> Result<u32, String> {
        if let Ok(n) = name.parse() {
            return Ok(n);
        }
        self.users
            .get(name)
            .map(|a| a.uid)
            .ok_or_else(|| format!("no user named `{name}`"))
    }

    pub fn gid(&self, name: &str) -> Result<u32, String> {
        if let Ok(n) = name.parse() {
            return Ok(n);
        }
        self.groups
            .get(name)
            .map(|g| g.0)
            .ok_or_else(|| format!("no group named `{name}`"))
    }

    fn groups_of(&self, user: &str) -> Vec<String> {
        let mut g: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, (_, members))| members.iter().any(|m| m == user))
            .map(|(name, _)| name.clone())
            .collect();
        g.sort();
        g
    }
}

fn read_or_empty(p: &Path) -> Result<String, String> {
    match std::fs::read_to_string(p) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(format!("reading {}: {e}", p.display())),
    }
}

pub(crate) fn converge(ctx: &mut Ctx, kind: &ResourceKind) -> Result<Found, String> {
    let (found, cmd) = match kind {
        ResourceKind::User {
            name,
            ensure,
            uid,
            groups,
            home,
            shell,
        } => user(
            ctx,
            name,
            *ensure,
            *uid,
            groups,
            home.as_deref(),
            shell.as_deref(),
        )?,
        ResourceKind::Group { name, ensure, gid } => group(ctx, name, *ensure, *gid)?,
        _ => unreachable!("users::converge called with another resource type"),
    };
    if found.changes.is_empty() || ctx.look_only {
        return Ok(found);
    }
    let mut cmd = cmd.expect("a change comes with its command");
    if ctx.opts.confined() {
        for f in ["passwd", "group"] {
            if !ctx.opts.root.join("etc").join(f).exists() {
                return Err(format!(
                    "the root has no etc/{f}; seed it before managing accounts under --root"
                ));
            }
        }
    }
    let out = cmd
        .env("PATH", PATH)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    ctx.accounts = None; // re-read after any change
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(found)
}

fn tool(ctx: &Ctx, program: &str) -> Command {
    let mut c = Command::new(program);
    if ctx.opts.confined() {
        c.arg("--prefix").arg(&ctx.opts.root);
    }
    c
}

#[allow(clippy::too_many_arguments)]
fn user(
    ctx: &mut Ctx,
    name: &str,
    ensure: Presence,
    uid: Option<u32>,
    groups: &[String],
    home: Option<&str>,
    shell: Option<&str>,
) -> Result<(Found, Option<Command>), String> {
    let accounts = ctx.accounts()?;
    let existing = accounts.users.get(name).cloned();
    let have_groups = accounts.groups_of(name);
    match (ensure, existing) {
        (Presence::Absent, None) => Ok((Found::none(), None)),
        (Presence::Absent, Some(_)) => {
            let mut c = tool(ctx, "userdel");
            c.arg(name);
            Ok((Found::one("remove user"), Some(c)))
        }
        (Presence::Present, None) => {
            let mut c = tool(ctx, "useradd");
            if let Some(u) = uid {
                c.arg("--uid").arg(u.to_string());
            }
            if let Some(h) = home {
                c.arg("--home-dir").arg(h);
            }
            if let Some(s) = shell {
                c.arg("--shell").arg(s);
            }
            if !groups.is_empty() {
                c.arg("--groups").arg(groups.join(","));
            }
            c.arg(name);
            Ok((Found::one("create user"), Some(c)))
        }
        (Presence::Present, Some(acct)) => {
            let mut changes = Vec::new();
            let mut c = tool(ctx, "usermod");
            if let Some(u) = uid.filter(|u| *u != acct.uid) {
                changes.push(format!("uid {} -> {u}", acct.uid));
                c.arg("--uid").arg(u.to_string());
            }
            if let Some(h) = home.filter(|h| *h != acct.home) {
                changes.push(format!("home {} -> {h}", acct.home));
                c.arg("--home").arg(h);
            }
            if let Some(s) = shell.filter(|s| *s != acct.shell) {
                changes.push(format!("shell {} -> {s}", acct.shell));
                c.arg("--shell").arg(s);
            }
            let mut want: Vec<String> = groups.to_vec();
            want.sort();
            if !groups.is_empty() && want != have_groups {
                changes.push(format!(
                    "groups [{}] -> [{}]",
                    have_groups.join(","),
                    want.join(",")
                ));
                c.arg("--groups").arg(want.join(","));
            }
            c.arg(name);
            let _ = acct.gid;
            Ok((
                Found {
                    changes,
                    diff: None,
                },
                Some(c),
            ))
        }
    }
}

fn group(
    ctx: &mut Ctx,
    name: &str,
    ensure: Presence,
    gid: Option<u32>,
) -> Result<(Found, Option<Command>), String> {
    let existing = ctx.accounts()?.groups.get(name).map(|g| g.0);
    match (ensure, existing) {
        (Presence::Absent, None) => Ok((Found::none(), None)),
        (Presence::Absent, Some(_)) => {
            let mut c = tool(ctx, "groupdel");
            c.arg(name);
            Ok((Found::one("remove group"), Some(c)))
        }
        (Presence::Present, None) => {
            let mut c = tool(ctx, "groupadd");
            if let Some(g) = gid {
                c.arg("--gid").arg(g.to_string());
            }
            c.arg(name);
            Ok((Found::one("create group"), Some(c)))
        }
        (Presence::Present, Some(have)) => match gid.filter(|g| *g != have) {
            None => Ok((Found::none(), None)),
            Some(g) => {
                let mut c = tool(ctx, "groupmod");
                c.arg("--gid").arg(g.to_string()).arg(name);
                Ok((Found::one(format!("gid {have} -> {g}")), Some(c)))
            }
        },
    }
}
