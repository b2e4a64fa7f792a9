//! `driftless root`: sign the next version of the trust root (root rotation).

use super::{signing, CliError, CliResult};
use anyhow::anyhow;
use driftless_core::root::SignedRoot;
use driftless_core::trust::Ed25519Check;
use std::path::PathBuf;

/// Sign a new trust root from a trust directory that describes it (its trust.toml, with
/// `version` one above the fleet's current root, and its key files).
///
/// Nodes take it on only when k of the current root's root keys AND k of the new root's
/// root keys sign it, so give keys of both (or add signatures with `cosign`). Put the
/// result in every node's trust directory, or spread it; keys the new root drops sign
/// nothing from then on: that is how a stolen key is rotated out.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Trust directory describing the new root (trust.toml with roles and version)
    #[arg(value_name = "NEW_TRUST_DIR")]
    pub new_trust: PathBuf,
    /// Root private key(s) of the current and of the new root
    #[arg(long, required = true, num_args = 1.., value_name = "FILE.key")]
    pub key: Vec<PathBuf>,
    /// After this long, nodes no longer take this root on as a new one; default: never
    #[arg(long, value_parser = humantime::parse_duration)]
    pub expires: Option<std::time::Duration>,
    /// The current trust directory: check that its nodes would take the new root on
    /// before writing it
    #[arg(long, value_name = "DIR")]
    pub trust: Option<PathBuf>,
    /// Where to write the signed root; default: root-VERSION.signed
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> CliResult {
    let new = crate::trustdir::load_base(&args.new_trust).map_err(CliError::bad)?;
    let keys = signing::read_keys(&args.key)?;
    let now = super::now();
    let expires = args.expires.map(|d| now.plus(d.as_secs()));
    let doc = new.root.to_root_doc(now, expires);
    let refs: Vec<&ed25519_dalek::SigningKey> = keys.iter().collect();
    let signed = SignedRoot::sign(doc, &refs);
    if let Some(dir) = &args.trust {
        let current = crate::trustdir::load(dir).map_err(CliError::bad)?;
        current
            .root
            .verify_next_root(&signed, now, &Ed25519Check)
            .map_err(|r| {
                signing::refused(
                    r.is_malformed(),
                    anyhow!(
                        "--trust {}: nodes at version {} would refuse this root, not written: {r} ({})",
                        dir.display(),
                        current.root.version,
                        r.reason()
                    ),
                )
            })?;
    }
    let version = signed.doc().version;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("root-{version}.signed")));
    let bytes = signed.encode();
    signing::write_out(&out, &bytes)?;
    let r = &new.root;
    println!(
        "signed trust root v{version} of fleet `{}` (release {} of {}, admission {}, root {} of {}) -> {} ({} bytes, {} signature(s))",
        r.fleet,
        r.threshold,
        r.release_keys.len(),
        if r.is_open() {
            "open".to_string()
        } else {
            format!("{} of {}", r.admission_threshold, r.admission_keys.len())
        },
        r.root_threshold,
        r.root_keys.len(),
        out.display(),
        bytes.len(),
        keys.len()
    );
    Ok(0)
}
