//! Key files on disk: create a key pair, read keys, refuse private keys others can read.

use anyhow::{bail, Context};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Write `PREFIX.key` (mode 0600) and `PREFIX.pub`. Never overwrites an existing key.
pub fn write_keypair(prefix: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let name = prefix
        .file_name()
        .and_then(|n| n.to_str())
        .context("--out must end in a file name, e.g. keys/release")?
        .to_string();
    let secret_path = prefix.with_file_name(format!("{name}.key"));
    let public_path = prefix.with_file_name(format!("{name}.pub"));
    for p in [&secret_path, &public_path] {
        if p.exists() {
            bail!(
                "{}: already exists; refusing to overwrite a key",
                p.display()
            );
        }
    }
    if let Some(dir) = secret_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret_path)
        .with_context(|| format!("{}: cannot create", secret_path.display()))?;
    f.write_all(
        driftless_core::keys::format_secret(&key, &format!("driftless key `{name}`")).as_bytes(),
    )?;
    f.sync_all()?;
    crate::fsutil::write_atomic(
        &public_path,
        driftless_core::keys::format_public(
            &key.verifying_key(),
            &format!("driftless public key `{name}`"),
        )
        .as_bytes(),
        0o644,
    )
    .with_context(|| format!("{}: cannot write", public_path.display()))?;
    Ok((secret_path, public_path))
}

/// Read a private key, refusing one that group or others can read.
pub fn read_secret(path: &Path) -> anyhow::Result<SigningKey> {
    let md =
        std::fs::metadata(path).with_context(|| format!("{}: cannot read key", path.display()))?;
    let mode = md.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{}: private key is readable by group or others (mode {:04o}); run `chmod 600 {}`",
            path.display(),
            mode,
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read key", path.display()))?;
    driftless_core::keys::parse_secret(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

pub fn read_public(path: &Path) -> anyhow::Result<VerifyingKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read key", path.display()))?;
    driftless_core::keys::parse_public(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
