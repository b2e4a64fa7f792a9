//! The compiled definition: what a bundle carries and what convergence consumes.
//!
//! A `CompiledDefinition` is produced by the signer from a definition TOML file after full
//! validation (see the binary's `definition` module); it has every template embedded. Its
//! resources are in declared order; ordering constraints are in `requires` and `notify`.

use crate::labels::Targets;
use crate::value::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Format version of the encoded definition inside a bundle.
pub const DEFINITION_FORMAT: u16 = 1;
pub const DEFINITION_MAGIC: &[u8; 4] = b"DLDF";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledDefinition {
    /// The channel: one definition name, one line of versions.
    pub name: String,
    pub targets: Targets,
    pub vars: BTreeMap<String, Value>,
    pub resources: Vec<Resource>,
    pub checks: Vec<HealthCheck>,
    pub rollout: Option<RolloutPolicy>,
}

impl CompiledDefinition {
    /// A definition with nothing in it, for tests that need a bundle and not its content.
    #[cfg(test)]
    pub(crate) fn empty(name: &str, rollout: Option<RolloutPolicy>) -> CompiledDefinition {
        CompiledDefinition {
            name: name.into(),
            targets: Targets::default(),
            vars: Default::default(),
            resources: vec![],
            checks: vec![],
            rollout,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        crate::encoding::encode(DEFINITION_MAGIC, DEFINITION_FORMAT, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, crate::encoding::DecodeError> {
        let (_version, body) =
            crate::encoding::open("definition", DEFINITION_MAGIC, DEFINITION_FORMAT, bytes)?;
        crate::encoding::body("definition", body)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub kind: ResourceKind,
    /// Resources that must be converged before this one.
    pub requires: Vec<ResourceRef>,
    /// Resources refreshed (service restarted, refreshonly exec run) when this one changes.
    pub notify: Vec<ResourceRef>,
    /// Report drift, never correct it.
    pub audit: bool,
}

impl Resource {
    pub fn reference(&self) -> ResourceRef {
        self.kind.reference()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    File,
    Directory,
    Symlink,
    Absent,
    Package,
    Service,
    User,
    Group,
    Exec,
}

impl ResourceType {
    pub const ALL: [ResourceType; 9] = [
        ResourceType::File,
        ResourceType::Directory,
        ResourceType::Symlink,
        ResourceType::Absent,
        ResourceType::Package,
        ResourceType::Service,
        ResourceType::User,
        ResourceType::Group,
        ResourceType::Exec,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::File => "file",
            ResourceType::Directory => "directory",
            ResourceType::Symlink => "symlink",
            ResourceType::Absent => "absent",
            ResourceType::Package => "package",
            ResourceType::Service => "service",
            ResourceType::User => "user",
            ResourceType::Group => "group",
            ResourceType::Exec => "exec",
        }
    }

    pub fn parse(text: &str) -> Option<ResourceType> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Types whose identity is a path (the others are identified by `name`).
    pub fn is_path(self) -> bool {
        matches!(
            self,
            ResourceType::File
                | ResourceType::Directory
                | ResourceType::Symlink
                | ResourceType::Absent
        )
    }
}

/// `TYPE:ID`, e.g. `file:/etc/motd` or `service:nginx`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceRef {
    pub rtype: ResourceType,
    pub id: String,
}

impl ResourceRef {
    pub fn parse(text: &str) -> Option<ResourceRef> {
        let (t, id) = text.split_once(':')?;
        let rtype = ResourceType::parse(t)?;
        if id.is_empty() {
            return None;
        }
        Some(ResourceRef {
            rtype,
            id: id.to_string(),
        })
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.rtype.as_str(), self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    /// Permission bits (e.g. 0o644); `None` leaves them as they are (new files: 0644/0755).
    pub mode: Option<u32>,
    /// User name or numeric uid; `None` leaves it as it is.
    pub owner: Option<String>,
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceKind {
    File {
        path: String,
        /// Template text (inline `content`, or the embedded `template` file), rendered per node.
        content: String,
        /// Where the text came from when it was a template file beside the definition.
        template: Option<String>,
        own: Ownership,
    },
    Directory {
        path: String,
        own: Ownership,
    },
    Symlink {
        path: String,
        target: String,
    },
    Absent {
        path: String,
    },
    Package {
        name: String,
        ensure: PackageEnsure,
    },
    Service {
        name: String,
        ensure: Option<ServiceEnsure>,
        enable: Option<bool>,
    },
    User {
        name: String,
        ensure: Presence,
        uid: Option<u32>,
        groups: Vec<String>,
        home: Option<String>,
        shell: Option<String>,
    },
    Group {
        name: String,
        ensure: Presence,
        gid: Option<u32>,
    },
    Exec {
        name: String,
        command: String,
        creates: Option<String>,
        unless: Option<String>,
        onlyif: Option<String>,
        refreshonly: bool,
        timeout_secs: Option<u64>,
    },
}

impl ResourceKind {
    pub fn rtype(&self) -> ResourceType {
        match self {
            ResourceKind::File { .. } => ResourceType::File,
            ResourceKind::Directory { .. } => ResourceType::Directory,
            ResourceKind::Symlink { .. } => ResourceType::Symlink,
            ResourceKind::Absent { .. } => ResourceType::Absent,
            ResourceKind::Package { .. } => ResourceType::Package,
            ResourceKind::Service { .. } => ResourceType::Service,
            ResourceKind::User { .. } => ResourceType::User,
            ResourceKind::Group { .. } => ResourceType::Group,
            ResourceKind::Exec { .. } => ResourceType::Exec,
        }
    }

    /// The identity: the path for path types, the name otherwise.
    pub fn id(&self) -> &str {
        match self {
            ResourceKind::File { path, .. }
            | ResourceKind::Directory { path, .. }
            | ResourceKind::Symlink { path, .. }
            | ResourceKind::Absent { path } => path,
            ResourceKind::Package { name, .. }
            | ResourceKind::Service { name, .. }
            | ResourceKind::User { name, .. }
            | ResourceKind::Group { name, .. }
            | ResourceKind::Exec { name, .. } => name,
        }
    }

    pub fn reference(&self) -> ResourceRef {
        ResourceRef {
            rtype: self.rtype(),
            id: self.id().to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackageEnsure {
    Installed,
    Absent,
    Version(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceEnsure {
    Running,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Presence {
    Present,
    Absent,
}

/// A health check declared by a definition; run by the agent on its interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub name: String,
    pub probe: Probe,
    pub interval_secs: u64,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Probe {
    /// A shell command; healthy when it exits 0.
    Command(String),
    /// `host:port`; healthy when a TCP connection opens.
    Tcp(String),
    /// `http://host:port/path`; healthy on a 2xx answer.
    Http(String),
    /// A path (under `--root`); healthy when it exists.
    FileExists(String),
}

/// A staged rollout: waves as fractions of the targeted nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutPolicy {
    /// Cumulative fractions, strictly increasing, the last one 1.0 (e.g. 0.01, 0.1, 0.5, 1.0).
    pub waves: Vec<f64>,
    /// How long a wave must stay healthy before the next one starts.
    pub bake_secs: u64,
    /// Unhealthy share of a wave that halts the rollout.
    pub max_unhealthy: f64,
    pub on_failure: OnFailure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnFailure {
    Halt,
    Rollback,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_print_back() {
        let r = ResourceRef::parse("file:/etc/motd").unwrap();
        assert_eq!(r.rtype, ResourceType::File);
        assert_eq!(r.to_string(), "file:/etc/motd");
        assert_eq!(
            ResourceRef::parse("service:nginx").unwrap().id,
            "nginx".to_string()
        );
        assert!(ResourceRef::parse("widget:x").is_none());
        assert!(ResourceRef::parse("file:").is_none());
        assert!(ResourceRef::parse("nginx").is_none());
    }
}

/// The order to converge resources in: every `requires` before its dependant, every notifier
/// before what it notifies, and every `directory` before the paths beneath it; otherwise the
/// declared order. Returns the cycle (as references) when there is one.
pub fn converge_order(resources: &[Resource]) -> Result<Vec<usize>, Vec<ResourceRef>> {
    use std::collections::{BTreeSet, HashMap};
    let index: HashMap<ResourceRef, usize> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| (r.reference(), i))
        .collect();
    let dirs: HashMap<&str, usize> = resources
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match &r.kind {
            ResourceKind::Directory { path, .. } => Some((path.as_str(), i)),
            _ => None,
        })
        .collect();
    // edges[a] = resources that must come after a
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); resources.len()];
    let mut indegree = vec![0usize; resources.len()];
    let mut add = |from: usize, to: usize, after: &mut Vec<Vec<usize>>| {
        if from != to && !after[from].contains(&to) {
            after[from].push(to);
            indegree[to] += 1;
        }
    };
    for (i, r) in resources.iter().enumerate() {
        for req in &r.requires {
            if let Some(&j) = index.get(req) {
                add(j, i, &mut after);
            }
        }
        for n in &r.notify {
            if let Some(&j) = index.get(n) {
                add(i, j, &mut after);
            }
        }
        if r.kind.rtype().is_path() && !dirs.is_empty() {
            let mut p = std::path::Path::new(r.kind.id());
            while let Some(parent) = p.parent() {
                if let Some(&d) = parent.to_str().and_then(|s| dirs.get(s)) {
                    add(d, i, &mut after);
                    break; // the nearest managed directory orders the rest
                }
                p = parent;
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..resources.len()).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(resources.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &j in &after[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(j);
            }
        }
    }
    if order.len() == resources.len() {
        return Ok(order);
    }
    // Find one cycle among the nodes left, to name it.
    let left: Vec<usize> = (0..resources.len()).filter(|&i| indegree[i] > 0).collect();
    let mut path = vec![left[0]];
    let mut seen = vec![false; resources.len()];
    seen[left[0]] = true;
    loop {
        let cur = *path.last().expect("path is never empty");
        let Some(&next) = after[cur].iter().find(|&&j| indegree[j] > 0) else {
            break;
        };
        if seen[next] {
            let start = path.iter().position(|&p| p == next).unwrap_or(0);
            let mut cycle: Vec<ResourceRef> = path[start..]
                .iter()
                .map(|&k| resources[k].reference())
                .collect();
            cycle.push(resources[next].reference());
            return Err(cycle);
        }
        seen[next] = true;
        path.push(next);
    }
    Err(left.iter().map(|&k| resources[k].reference()).collect())
}

#[cfg(test)]
mod order_tests {
    use super::*;

    fn file(path: &str, requires: &[&str]) -> Resource {
        Resource {
            kind: ResourceKind::File {
                path: path.into(),
                content: String::new(),
                template: None,
                own: Ownership {
                    mode: None,
                    owner: None,
                    group: None,
                },
            },
            requires: requires
                .iter()
                .map(|r| ResourceRef::parse(r).unwrap())
                .collect(),
            notify: vec![],
            audit: false,
        }
    }

    fn dir(path: &str) -> Resource {
        Resource {
            kind: ResourceKind::Directory {
                path: path.into(),
                own: Ownership {
                    mode: None,
                    owner: None,
                    group: None,
                },
            },
            requires: vec![],
            notify: vec![],
            audit: false,
        }
    }

    #[test]
    fn declared_order_unless_constrained() {
        let rs = vec![file("/a", &[]), file("/b", &["file:/c"]), file("/c", &[])];
        assert_eq!(converge_order(&rs).unwrap(), vec![0, 2, 1]);
    }

    #[test]
    fn directories_come_before_their_contents() {
        let rs = vec![file("/etc/app/x.conf", &[]), dir("/etc/app")];
        assert_eq!(converge_order(&rs).unwrap(), vec![1, 0]);
    }

    #[test]
    fn cycles_are_named() {
        let rs = vec![
            file("/a", &["file:/b"]),
            file("/b", &["file:/a"]),
            file("/c", &[]),
        ];
        let cycle = converge_order(&rs).unwrap_err();
        let names: Vec<String> = cycle.iter().map(|r| r.to_string()).collect();
        assert!(names.contains(&"file:/a".to_string()) && names.contains(&"file:/b".to_string()));
        assert!(!names.contains(&"file:/c".to_string()));
    }
}
