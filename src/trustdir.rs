//! A trust directory: every `*.pub` in it is a trusted release key; an optional `trust.toml`
//! sets the fleet name, the threshold and the limits.

use anyhow::{bail, Context};
use driftless_core::keys::key_id;
use driftless_core::trust::{
    TrustRoot, DEFAULT_CLOCK_SKEW_SECS, DEFAULT_FLEET, DEFAULT_MAX_BUNDLE_BYTES,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// `trust.toml`. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustFile {
    /// The fleet's name; bundles name it and nodes refuse other fleets' bundles.
    pub fleet: Option<String>,
    /// How many trusted release keys must sign a bundle (k of n). Default 1.
    pub threshold: Option<usize>,
    /// The largest bundle any node accepts (default 64 MiB), the same fleet-wide.
    pub max_bundle_bytes: Option<usize>,
    /// Clock skew allowed on expiry and bake times, e.g. "5m" (the default).
    pub clock_skew: Option<String>,
}

/// A trust root with the names of its key files, for messages.
pub struct LoadedTrust {
    pub root: TrustRoot,
    /// key id → file name
    pub names: BTreeMap<String, String>,
}

impl LoadedTrust {
    pub fn name_of(&self, key: &[u8; 32]) -> String {
        let id = key_id(key);
        match self.names.get(&id) {
            Some(n) => format!("{n} ({id})"),
            None => id,
        }
    }
}

pub fn read_trust_file(dir: &Path) -> anyhow::Result<TrustFile> {
    let path = dir.join("trust.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message().trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TrustFile::default()),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
}

pub fn load(dir: &Path) -> anyhow::Result<LoadedTrust> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("--trust {}: cannot read the trust directory", dir.display()))?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("--trust {}: holds no *.pub key files", dir.display());
    }
    let mut keys = Vec::new();
    let mut names = BTreeMap::new();
    for f in &files {
        let key = crate::keyfile::read_public(f)?;
        names.insert(
            key_id(key.as_bytes()),
            f.file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let tf = read_trust_file(dir)?;
    let place = dir.join("trust.toml").display().to_string();
    let threshold = tf.threshold.unwrap_or(1);
    if threshold == 0 || threshold > keys.len() {
        bail!(
            "{place}: field `threshold`: {threshold} is not between 1 and the {} trusted key(s)",
            keys.len()
        );
    }
    let clock_skew_secs = match &tf.clock_skew {
        None => DEFAULT_CLOCK_SKEW_SECS,
        Some(s) => humantime::parse_duration(s)
            .map_err(|e| anyhow::anyhow!("{place}: field `clock_skew`: `{s}`: {e}"))?
            .as_secs(),
    };
    Ok(LoadedTrust {
        root: TrustRoot {
            max_bundle_bytes: tf.max_bundle_bytes.unwrap_or(DEFAULT_MAX_BUNDLE_BYTES),
            clock_skew_secs,
            ..TrustRoot::new(
                tf.fleet.unwrap_or_else(|| DEFAULT_FLEET.to_string()),
                keys,
                threshold,
            )
        },
        names,
    })
}
