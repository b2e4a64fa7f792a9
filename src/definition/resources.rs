//! Parsing one `[[resource]]` table into a typed resource, field by field.

use super::fields::Fields;
use driftless_core::definition::{
    Ownership, PackageEnsure, Presence, Resource, ResourceKind, ResourceRef, ResourceType,
    ServiceEnsure,
};
use std::path::{Component, Path};

const COMMON: &[&str] = &["type", "requires", "notify", "audit"];

fn allowed(rtype: ResourceType) -> Vec<&'static str> {
    let own: &[&str] = match rtype {
        ResourceType::File => &["path", "content", "template", "mode", "owner", "group"],
        ResourceType::Directory => &["path", "mode", "owner", "group"],
        ResourceType::Symlink => &["path", "target"],
        ResourceType::Absent => &["path"],
        ResourceType::Package => &["name", "ensure"],
        ResourceType::Service => &["name", "ensure", "enable"],
        ResourceType::User => &["name", "ensure", "uid", "groups", "home", "shell"],
        ResourceType::Group => &["name", "ensure", "gid"],
        ResourceType::Exec => &[
            "name",
            "command",
            "creates",
            "unless",
            "onlyif",
            "refreshonly",
            "timeout",
        ],
    };
    COMMON.iter().chain(own).copied().collect()
}

/// Parse resource number `n` (1-based). Problems go to `errors`.
pub fn parse(n: usize, t: &toml::Table, base: &Path, errors: &mut Vec<String>) -> Option<Resource> {
    let before = errors.len();
    let mut f = Fields::new(t, format!("resource #{n}"), errors);
    let type_name = f.required_string("type")?;
    let Some(rtype) = ResourceType::parse(&type_name) else {
        let names: Vec<&str> = ResourceType::ALL.iter().map(|t| t.as_str()).collect();
        f.error(
            "type",
            format!(
                "unknown resource type `{type_name}`, expected one of: {}",
                names.join(", ")
            ),
        );
        return None;
    };
    let id_field = if rtype.is_path() { "path" } else { "name" };
    let id = f.required_string(id_field);
    if let Some(id) = &id {
        f.place = format!("resource #{n} ({}:{id})", rtype.as_str());
    }
    if let Some(p) = &id {
        if rtype.is_path() {
            check_path(&mut f, "path", p);
        } else if p.contains(char::is_whitespace) || p.contains('/') && rtype != ResourceType::Exec
        {
            f.error("name", format!("`{p}` may not contain spaces or `/`"));
        }
    }
    let requires = refs(&mut f, "requires");
    let notify = refs(&mut f, "notify");
    let audit = f.bool("audit").unwrap_or(false);

    let kind = match rtype {
        ResourceType::File => {
            let own = ownership(&mut f);
            let content = f.string("content");
            let template = f.string("template");
            let (content, template) = match (content, template) {
                (Some(c), None) => (Some(c), None),
                (None, Some(name)) => (read_template(&mut f, base, &name), Some(name)),
                (Some(_), Some(_)) => {
                    f.error("content", "give either `content` or `template`, not both");
                    (None, None)
                }
                (None, None) => {
                    f.error("content", "a file needs `content` (inline) or `template` (a file beside the definition)");
                    (None, None)
                }
            };
            content.map(|content| ResourceKind::File {
                path: id.clone().unwrap_or_default(),
                content,
                template,
                own,
            })
        }
        ResourceType::Directory => Some(ResourceKind::Directory {
            path: id.clone().unwrap_or_default(),
            own: ownership(&mut f),
        }),
        ResourceType::Symlink => f
            .required_string("target")
            .map(|target| ResourceKind::Symlink {
                path: id.clone().unwrap_or_default(),
                target,
            }),
        ResourceType::Absent => Some(ResourceKind::Absent {
            path: id.clone().unwrap_or_default(),
        }),
        ResourceType::Package => {
            let ensure = match f.string("ensure").as_deref() {
                None | Some("installed") | Some("present") => PackageEnsure::Installed,
                Some("absent") | Some("removed") => PackageEnsure::Absent,
                Some(v) if v.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
                    PackageEnsure::Version(v.to_string())
                }
                Some(other) => {
                    f.error("ensure", format!("`{other}`: expected \"installed\", \"absent\" or a version such as \"1.2-3\""));
                    PackageEnsure::Installed
                }
            };
            Some(ResourceKind::Package {
                name: id.clone().unwrap_or_default(),
                ensure,
            })
        }
        ResourceType::Service => {
            let ensure = match f.string("ensure").as_deref() {
                None => None,
                Some("running") => Some(ServiceEnsure::Running),
                Some("stopped") => Some(ServiceEnsure::Stopped),
                Some(other) => {
                    f.error(
                        "ensure",
                        format!("`{other}`: expected \"running\" or \"stopped\""),
                    );
                    None
                }
            };
            let enable = f.bool("enable");
            Some(ResourceKind::Service {
                name: id.clone().unwrap_or_default(),
                ensure,
                enable,
            })
        }
        ResourceType::User => {
            let ensure = presence(&mut f);
            let uid = f.u32("uid");
            let groups = f.string_list("groups");
            let home = f.string("home");
            if let Some(h) = &home {
                check_path(&mut f, "home", h);
            }
            let shell = f.string("shell");
            if let Some(s) = &shell {
                check_path(&mut f, "shell", s);
            }
            Some(ResourceKind::User {
                name: id.clone().unwrap_or_default(),
                ensure,
                uid,
                groups,
                home,
                shell,
            })
        }
        ResourceType::Group => {
            let ensure = presence(&mut f);
            let gid = f.u32("gid");
            Some(ResourceKind::Group {
                name: id.clone().unwrap_or_default(),
                ensure,
                gid,
            })
        }
        ResourceType::Exec => {
            let command = f.required_string("command");
            let creates = f.string("creates");
            if let Some(c) = &creates {
                check_path(&mut f, "creates", c);
            }
            let unless = f.string("unless");
            let onlyif = f.string("onlyif");
            let refreshonly = f.bool("refreshonly").unwrap_or(false);
            let timeout_secs = f.duration_secs("timeout");
            command.map(|command| ResourceKind::Exec {
                name: id.clone().unwrap_or_default(),
                command,
                creates,
                unless,
                onlyif,
                refreshonly,
                timeout_secs,
            })
        }
    };
    f.finish(&allowed(rtype));
    if errors.len() > before {
        return None;
    }
    Some(Resource {
        kind: kind?,
        requires,
        notify,
        audit,
    })
}

fn refs<'a>(f: &mut Fields<'a>, key: &'a str) -> Vec<ResourceRef> {
    let mut out = Vec::new();
    for text in f.string_list(key) {
        match ResourceRef::parse(&text) {
            Some(r) => out.push(r),
            None => f.error(
                key,
                format!("`{text}` is not a reference like \"file:/etc/motd\" or \"service:nginx\""),
            ),
        }
    }
    out
}

fn presence(f: &mut Fields) -> Presence {
    match f.string("ensure").as_deref() {
        None | Some("present") => Presence::Present,
        Some("absent") => Presence::Absent,
        Some(other) => {
            f.error(
                "ensure",
                format!("`{other}`: expected \"present\" or \"absent\""),
            );
            Presence::Present
        }
    }
}

fn ownership(f: &mut Fields) -> Ownership {
    let mode = match f.table.get("mode") {
        None => None,
        Some(toml::Value::String(s)) if s == "audit" => {
            f.string_list_mark("mode");
            f.error("mode", "`mode` is the permission bits; to report drift without correcting it, write `audit = true`");
            None
        }
        Some(toml::Value::String(s)) => {
            f.string_list_mark("mode");
            let parsed = (s.len() >= 3 && s.len() <= 4)
                .then(|| u32::from_str_radix(s, 8).ok())
                .flatten()
                .filter(|m| *m <= 0o7777);
            if parsed.is_none() {
                let s = s.clone();
                f.error(
                    "mode",
                    format!("`{s}` is not a mode: expected octal permission bits such as \"0644\""),
                );
            }
            parsed
        }
        Some(other) => {
            let shown = other.to_string();
            f.string_list_mark("mode");
            f.error(
                "mode",
                format!("expected a string of octal digits such as \"0644\", found {shown}"),
            );
            None
        }
    };
    let owner = f.string("owner");
    let group = f.string("group");
    for (field, v) in [("owner", &owner), ("group", &group)] {
        if let Some(v) = v {
            if v.is_empty() || v.contains(|c: char| c == ':' || c.is_whitespace()) {
                f.error(field, format!("`{v}` is not a user or group name"));
            }
        }
    }
    Ownership { mode, owner, group }
}

/// Absolute, no `..`, not the root itself.
fn check_path(f: &mut Fields, field: &str, p: &str) {
    let path = Path::new(p);
    if !path.is_absolute() {
        f.error(
            field,
            format!("`{p}` is a relative path; paths must be absolute"),
        );
    } else if path.components().any(|c| c == Component::ParentDir) {
        f.error(
            field,
            format!("`{p}` contains `..`; paths must be plain absolute paths"),
        );
    } else if path.parent().is_none() {
        f.error(field, "`/` itself cannot be managed");
    } else if p.contains('\0') {
        f.error(field, "path contains a NUL byte");
    }
}

/// Read a template file that lies beside the definition (no absolute paths, no `..`).
fn read_template(f: &mut Fields, base: &Path, name: &str) -> Option<String> {
    let rel = Path::new(name);
    if rel.is_absolute() || rel.components().any(|c| c == Component::ParentDir) {
        f.error(
            "template",
            format!("`{name}` must be a relative path beside the definition, without `..`"),
        );
        return None;
    }
    match std::fs::read_to_string(base.join(rel)) {
        Ok(text) => Some(text),
        Err(e) => {
            let shown = base.join(rel).display().to_string();
            f.error("template", format!("cannot read `{shown}`: {e}"));
            None
        }
    }
}
