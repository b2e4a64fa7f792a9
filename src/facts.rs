//! Node facts offered to templates: hostname, labels, operating system, architecture.

use driftless_core::Labels;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub hostname: String,
    pub labels: Labels,
    /// `ID` from os-release (e.g. `debian`).
    pub os: String,
    /// `VERSION_ID` from os-release (e.g. `12`).
    pub os_version: String,
    pub arch: String,
}

impl Facts {
    /// Read the facts of this machine; os-release is read inside `root` when it has one.
    pub fn gather(root: &Path, labels: Labels) -> Facts {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        let release = std::fs::read_to_string(root.join("etc/os-release"))
            .or_else(|_| std::fs::read_to_string("/etc/os-release"))
            .unwrap_or_default();
        let field = |key: &str| {
            release
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_else(|| "unknown".into())
        };
        Facts {
            hostname,
            labels,
            os: field("ID"),
            os_version: field("VERSION_ID"),
            arch: std::env::consts::ARCH.into(),
        }
    }
}
