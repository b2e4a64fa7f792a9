//! A trust directory: a fleet's trust root as files (`--trust DIR` on a node, `keys/` on a
//! release host).
//!
//! **Without roles** (a directory of `*.pub` files, with or without a `trust.toml` that has
//! no role sections): every `*.pub` is a release key and `threshold` of them (default 1) must
//! sign a bundle; the same keys and threshold sign the next trust root (they are the root
//! keys too); there are no admission keys, so the fleet is **open**; the fleet is `fleet`
//! (default `default`) and the root's version is 1.
//!
//! **With roles**, `trust.toml` names the key files of each role, relative to the directory
//! (other `*.pub` files are then ignored):
//!
//! ```toml
//! fleet = "prod"
//! version = 1                 # the root's version (default 1)
//! [release]                   # required once any role is given: signs bundles
//! keys = ["release.pub"]
//! threshold = 1               # default 1
//! [admission]                 # signs node certificates and revocation lists; absent: open fleet
//! keys = ["admission.pub"]
//! threshold = 1
//! [root]                      # signs the next trust root; absent: the release keys do
//! keys = ["root.pub"]
//! threshold = 1
//! ```
//!
//! `max_bundle_bytes` and `clock_skew` apply in both layouts.
//!
//! **Signed roots.** Files named `root*.signed` (by convention `root-N.signed`, N its
//! version) are newer trust roots signed by `driftless root`. They are walked in version
//! order from the root above, one version at a time, each signed by the keys of the root
//! before it and by its own root keys; the last one wins over `trust.toml`. Roots at or below
//! the version of `trust.toml` are skipped. A signed root that does not verify is an error,
//! not something to ignore: the directory is then broken.

use anyhow::{anyhow, bail, Context};
use driftless_core::keys::key_id;
use driftless_core::root::SignedRoot;
use driftless_core::trust::{
    Ed25519Check, TrustRoot, DEFAULT_CLOCK_SKEW_SECS, DEFAULT_FLEET, DEFAULT_MAX_BUNDLE_BYTES,
};
use driftless_core::Timestamp;
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `trust.toml`. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustFile {
    /// The fleet's name; bundles name it and nodes refuse other fleets' bundles.
    pub fleet: Option<String>,
    /// The trust root's version (default 1).
    pub version: Option<u64>,
    /// Without role sections: how many release keys must sign a bundle (k of n). Default 1.
    pub threshold: Option<usize>,
    /// The largest bundle any node accepts (default 64 MiB), the same fleet-wide.
    pub max_bundle_bytes: Option<usize>,
    /// Clock skew allowed on expiry and bake times, e.g. "5m" (the default).
    pub clock_skew: Option<String>,
    pub release: Option<RoleFile>,
    pub admission: Option<RoleFile>,
    pub root: Option<RoleFile>,
}

/// One role's section of `trust.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleFile {
    /// Public key files, relative to the trust directory.
    pub keys: Vec<String>,
    /// How many of them must sign (default 1; 0 for an `[admission]` without keys).
    pub threshold: Option<usize>,
}

impl TrustFile {
    fn has_roles(&self) -> bool {
        self.release.is_some() || self.admission.is_some() || self.root.is_some()
    }
}

/// A trust root with the names of its key files and where it came from, for messages.
pub struct LoadedTrust {
    pub root: TrustRoot,
    /// key id → file name (every `*.pub` of the directory and every key file trust.toml names)
    pub names: BTreeMap<String, String>,
    /// The signed roots taken on over `trust.toml`, in version order: (version, hash, file).
    pub chain: Vec<(u64, [u8; 32], PathBuf)>,
}

impl LoadedTrust {
    pub fn name_of(&self, key: &[u8; 32]) -> String {
        let id = key_id(key);
        match self.names.get(&id) {
            Some(n) => format!("{n} ({id})"),
            None => id,
        }
    }

    /// Where the root in force comes from: `trust.toml` or the last signed root.
    pub fn source(&self) -> String {
        match self.chain.last() {
            Some((_, _, file)) => file.display().to_string(),
            None => "trust.toml".into(),
        }
    }
}

pub fn read_trust_file(dir: &Path) -> anyhow::Result<TrustFile> {
    let path = dir.join("trust.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            toml::from_str(&text).map_err(|e| anyhow!("{}: {}", path.display(), e.message().trim()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TrustFile::default()),
        Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
    }
}

/// Load a trust directory: `trust.toml` and its keys, then the signed roots in it.
pub fn load(dir: &Path) -> anyhow::Result<LoadedTrust> {
    load_at(dir, crate::cli::now())
}

/// [`load`], with the time the last signed root's expiry is checked against.
pub fn load_at(dir: &Path, now: Timestamp) -> anyhow::Result<LoadedTrust> {
    let mut loaded = load_base(dir)?;
    let roots = signed_roots(dir)?;
    let mut current = loaded.root.clone();
    let pending: Vec<&(PathBuf, SignedRoot)> = roots
        .iter()
        .filter(|(_, r)| r.doc().version > current.version)
        .collect();
    for (i, (path, signed)) in pending.iter().enumerate() {
        let last = i + 1 == pending.len();
        let result = if last {
            current.verify_next_root(signed, now, &Ed25519Check)
        } else {
            current.verify_intermediate_root(signed, now, &Ed25519Check)
        };
        current = result.map_err(|e| {
            anyhow!(
                "{}: refused as the next trust root after version {}: {e} ({})",
                path.display(),
                current.version,
                e.reason()
            )
        })?;
        loaded
            .chain
            .push((signed.doc().version, signed.hash(), path.clone()));
    }
    loaded.root = current;
    Ok(loaded)
}

/// Every `root*.signed` file of the directory, decoded, in version order. Two files of one
/// version with different content are an error.
pub fn signed_roots(dir: &Path) -> anyhow::Result<Vec<(PathBuf, SignedRoot)>> {
    let mut out: Vec<(PathBuf, SignedRoot)> = Vec::new();
    for path in dir_files(dir)? {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !(name.starts_with("root") && name.ends_with(".signed")) {
            continue;
        }
        let bytes = read_capped(&path, driftless_core::root::MAX_ROOT_BYTES)?;
        let signed = SignedRoot::decode(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        out.push((path, signed));
    }
    out.sort_by_key(|(_, r)| r.doc().version);
    for pair in out.windows(2) {
        let ((a, ra), (b, rb)) = (&pair[0], &pair[1]);
        if ra.doc().version == rb.doc().version && ra.hash() != rb.hash() {
            bail!(
                "{} and {}: two different trust roots of version {}",
                a.display(),
                b.display(),
                ra.doc().version
            );
        }
    }
    out.dedup_by_key(|(_, r)| r.hash());
    Ok(out)
}

/// The trust root `trust.toml` and the key files describe, without any signed root.
pub fn load_base(dir: &Path) -> anyhow::Result<LoadedTrust> {
    let files = dir_files(dir)?;
    let mut names = BTreeMap::new();
    let mut pubs = Vec::new();
    for f in files
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
    {
        let key = crate::keyfile::read_public(f)?;
        names.insert(key_id(key.as_bytes()), stem(f));
        if !pubs.contains(&key) {
            pubs.push(key);
        }
    }
    let tf = read_trust_file(dir)?;
    let place = dir.join("trust.toml").display().to_string();
    let fleet = tf
        .fleet
        .clone()
        .unwrap_or_else(|| DEFAULT_FLEET.to_string());
    let version = tf.version.unwrap_or(1);
    if version == 0 {
        bail!("{place}: field `version`: must be at least 1");
    }
    let mut root = if tf.has_roles() {
        if tf.threshold.is_some() {
            bail!("{place}: field `threshold`: with role sections, give each role its own threshold (e.g. [release] threshold = 2)");
        }
        let Some(release) = &tf.release else {
            bail!("{place}: field `release`: missing; with role sections, [release] names the keys that sign bundles");
        };
        let (release_keys, threshold) = role(dir, &place, "release", release, &mut names)?;
        let mut root = TrustRoot::new(fleet, release_keys, threshold);
        if let Some(r) = &tf.root {
            let (keys, t) = role(dir, &place, "root", r, &mut names)?;
            root = root.with_root_keys(keys, t);
        }
        if let Some(a) = &tf.admission {
            let (keys, t) = role(dir, &place, "admission", a, &mut names)?;
            root = root.with_admission_keys(keys, t);
        }
        root
    } else {
        if pubs.is_empty() {
            bail!("--trust {}: holds no *.pub key files", dir.display());
        }
        let threshold = tf.threshold.unwrap_or(1);
        check_threshold(&place, "threshold", threshold, pubs.len())?;
        TrustRoot::new(fleet, pubs, threshold)
    };
    root.version = version;
    root.max_bundle_bytes = tf.max_bundle_bytes.unwrap_or(DEFAULT_MAX_BUNDLE_BYTES);
    root.clock_skew_secs = match &tf.clock_skew {
        None => DEFAULT_CLOCK_SKEW_SECS,
        Some(s) => humantime::parse_duration(s)
            .map_err(|e| anyhow!("{place}: field `clock_skew`: `{s}`: {e}"))?
            .as_secs(),
    };
    Ok(LoadedTrust {
        root,
        names,
        chain: Vec::new(),
    })
}

fn role(
    dir: &Path,
    place: &str,
    name: &str,
    section: &RoleFile,
    names: &mut BTreeMap<String, String>,
) -> anyhow::Result<(Vec<VerifyingKey>, usize)> {
    let mut keys = Vec::new();
    for file in &section.keys {
        let path = dir.join(file);
        let key = crate::keyfile::read_public(&path)
            .map_err(|e| anyhow!("{place}: field `{name}.keys`: {e:#}"))?;
        if keys.contains(&key) {
            bail!("{place}: field `{name}.keys`: `{file}` names a key already listed");
        }
        names.insert(key_id(key.as_bytes()), stem(&path));
        keys.push(key);
    }
    let max = driftless_core::root::MAX_ROLE_KEYS;
    if keys.len() > max {
        bail!(
            "{place}: field `{name}.keys`: {} keys, at most {max} allowed",
            keys.len()
        );
    }
    if name == "admission" && keys.is_empty() {
        if let Some(t) = section.threshold.filter(|t| *t != 0) {
            bail!(
                "{place}: field `admission.threshold`: {t} with no keys (no keys: an open fleet)"
            );
        }
        return Ok((keys, 0));
    }
    let threshold = section.threshold.unwrap_or(1);
    check_threshold(place, &format!("{name}.threshold"), threshold, keys.len())?;
    Ok((keys, threshold))
}

fn check_threshold(place: &str, field: &str, threshold: usize, n: usize) -> anyhow::Result<()> {
    if threshold == 0 || threshold > n {
        bail!("{place}: field `{field}`: {threshold} is not between 1 and the {n} trusted key(s)");
    }
    Ok(())
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

fn dir_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("--trust {}: cannot read the trust directory", dir.display()))?;
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    Ok(files)
}

/// Read a file, refusing one over `limit` bytes before reading it.
pub fn read_capped(path: &Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    let md = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if md.len() > limit as u64 {
        bail!(
            "{}: {} bytes, over the limit of {limit} bytes",
            path.display(),
            md.len()
        );
    }
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftless_core::root::SignedRoot;
    use ed25519_dalek::SigningKey;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn write_pub(dir: &Path, name: &str, n: u8) {
        std::fs::write(
            dir.join(name),
            driftless_core::keys::format_public(&key(n).verifying_key(), name),
        )
        .unwrap();
    }

    #[test]
    fn a_directory_of_pub_files_is_an_open_fleet_whose_release_keys_are_root_keys() {
        let d = tempfile::tempdir().unwrap();
        write_pub(d.path(), "a.pub", 1);
        write_pub(d.path(), "b.pub", 2);
        let t = load(d.path()).unwrap();
        assert_eq!(t.root.fleet, "default");
        assert_eq!(t.root.version, 1);
        assert_eq!(t.root.threshold, 1);
        assert_eq!(t.root.release_keys.len(), 2);
        assert_eq!(t.root.root_keys, t.root.release_keys);
        assert!(t.root.is_open());
        assert_eq!(t.source(), "trust.toml");
    }

    #[test]
    fn roles_name_their_key_files() {
        let d = tempfile::tempdir().unwrap();
        for (name, n) in [
            ("rel.pub", 1),
            ("adm.pub", 2),
            ("root.pub", 3),
            ("x.pub", 4),
        ] {
            write_pub(d.path(), name, n);
        }
        std::fs::write(
            d.path().join("trust.toml"),
            "fleet = \"prod\"\nversion = 4\n[release]\nkeys = [\"rel.pub\"]\n\
             [admission]\nkeys = [\"adm.pub\"]\nthreshold = 1\n[root]\nkeys = [\"root.pub\"]\n",
        )
        .unwrap();
        let t = load(d.path()).unwrap();
        assert_eq!((t.root.fleet.as_str(), t.root.version), ("prod", 4));
        assert_eq!(t.root.release_keys, vec![key(1).verifying_key()]);
        assert_eq!(t.root.admission_keys, vec![key(2).verifying_key()]);
        assert_eq!(t.root.root_keys, vec![key(3).verifying_key()]);
        assert!(!t.root.is_open());
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let d = tempfile::tempdir().unwrap();
        write_pub(d.path(), "rel.pub", 1);
        let cases = [
            ("[admission]\nkeys = [\"rel.pub\"]\n", "field `release`"),
            (
                "threshold = 1\n[release]\nkeys = [\"rel.pub\"]\n",
                "field `threshold`",
            ),
            ("[release]\nkeys = [\"nope.pub\"]\n", "field `release.keys`"),
            (
                "[release]\nkeys = [\"rel.pub\"]\nthreshold = 2\n",
                "field `release.threshold`",
            ),
            (
                "[release]\nkeys = [\"rel.pub\", \"rel.pub\"]\n",
                "already listed",
            ),
            (
                "[release]\nkeys = [\"rel.pub\"]\n[admission]\nkeys = []\nthreshold = 1\n",
                "field `admission.threshold`",
            ),
            (
                "[release]\nkeys = [\"rel.pub\"]\n[root]\nkeys = []\n",
                "field `root.threshold`",
            ),
            ("version = 0\n", "field `version`"),
            ("[release]\nkeys = [\"rel.pub\"]\nextra = 1\n", "extra"),
        ];
        for (toml, want) in cases {
            std::fs::write(d.path().join("trust.toml"), toml).unwrap();
            let err = format!("{:#}", load(d.path()).err().unwrap());
            assert!(err.contains("trust.toml"), "{toml}: {err}");
            assert!(err.contains(want), "{toml}: {err}");
        }
    }

    #[test]
    fn the_newest_signed_root_wins_and_a_gap_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        write_pub(d.path(), "rel.pub", 1);
        let v1 = load(d.path()).unwrap().root;
        let mut v2 = v1.clone().with_version(2);
        v2.release_keys = vec![key(2).verifying_key()];
        let mut v3 = v2.clone().with_version(3);
        v3.release_keys = vec![key(3).verifying_key()];
        let r2 = SignedRoot::sign(v2.to_root_doc(Timestamp(0), None), &[&key(1)]);
        let r3 = SignedRoot::sign(v3.to_root_doc(Timestamp(0), None), &[&key(1)]);
        std::fs::write(d.path().join("root-3.signed"), r3.encode()).unwrap();
        let err = format!("{:#}", load(d.path()).err().unwrap());
        assert!(err.contains("root-3.signed"), "{err}");
        assert!(err.contains("root_version"), "{err}");
        std::fs::write(d.path().join("root-2.signed"), r2.encode()).unwrap();
        let t = load(d.path()).unwrap();
        assert_eq!(t.root.version, 3);
        assert_eq!(t.root.release_keys, vec![key(3).verifying_key()]);
        assert_eq!(t.chain.len(), 2);
        assert!(t.source().ends_with("root-3.signed"));
    }
}
