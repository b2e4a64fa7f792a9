//! What the signing commands share (`admit`, `revoke`, `root`): reading private keys, naming
//! nodes by key file or peer id, choosing the fleet, writing the output file.

use super::CliError;
use anyhow::anyhow;
use ed25519_dalek::SigningKey;
use std::path::{Path, PathBuf};

/// Read every `--key`, refusing unreadable keys and keys others can read (exit 2).
pub fn read_keys(paths: &[PathBuf]) -> Result<Vec<SigningKey>, CliError> {
    paths
        .iter()
        .map(|p| crate::keyfile::read_secret(p))
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(CliError::bad)
}

/// A node named on the command line: a public key file (`node.pub`, as the agent writes it
/// to its state directory) or a libp2p peer id (`12D3KooW…`, which inlines the ed25519 key).
pub fn node_key(arg: &str) -> Result<[u8; 32], CliError> {
    let path = Path::new(arg);
    if path.exists() {
        return crate::keyfile::read_public(path)
            .map(|k| k.to_bytes())
            .map_err(CliError::bad);
    }
    let peer: libp2p::PeerId = arg.parse().map_err(|_| {
        CliError::bad(anyhow!(
            "node `{arg}`: neither a public key file nor a peer id (12D3KooW…)"
        ))
    })?;
    crate::agent::peer::key_of(&peer).ok_or_else(|| {
        CliError::bad(anyhow!(
            "node `{arg}`: this peer id does not hold an ed25519 key (driftless node ids start with 12D3KooW)"
        ))
    })
}

/// The peer id of a node key, or a note that the key is unusable (for printing documents
/// that have not been verified yet).
pub fn peer_of(key: &[u8; 32]) -> String {
    match libp2p::identity::ed25519::PublicKey::try_from_bytes(key) {
        Ok(pk) => libp2p::identity::PublicKey::from(pk)
            .to_peer_id()
            .to_string(),
        Err(_) => format!("(not an ed25519 key: {})", hex::encode(key)),
    }
}

/// `--fleet`, else the fleet of `--trust`, else `fleet` from a trust.toml beside the first
/// key, else `default` (as `sign` does).
pub fn fleet(
    flag: Option<String>,
    trust: Option<&crate::trustdir::LoadedTrust>,
    first_key: &Path,
) -> Result<String, CliError> {
    if let Some(f) = flag {
        return Ok(f);
    }
    if let Some(t) = trust {
        return Ok(t.root.fleet.clone());
    }
    let dir = first_key.parent().filter(|d| !d.as_os_str().is_empty());
    let tf =
        crate::trustdir::read_trust_file(dir.unwrap_or(Path::new("."))).map_err(CliError::bad)?;
    Ok(tf
        .fleet
        .unwrap_or_else(|| driftless_core::trust::DEFAULT_FLEET.to_string()))
}

/// Write an output file atomically, creating its directory.
pub fn write_out(out: &Path, bytes: &[u8]) -> Result<(), CliError> {
    if let Some(dir) = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::failed(anyhow!("{}: cannot create: {e}", dir.display())))?;
    }
    crate::fsutil::write_atomic(out, bytes, 0o644)
        .map_err(|e| CliError::failed(anyhow!("{}: cannot write: {e}", out.display())))
}

/// Map a refusal to its exit code: 2 when the input is unreadable, 1 when it is refused.
pub fn refused(malformed: bool, error: anyhow::Error) -> CliError {
    if malformed {
        CliError::bad(error)
    } else {
        CliError::failed(error)
    }
}
