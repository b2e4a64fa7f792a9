//! `driftless revoke`: sign a revocation list that drops nodes fleet-wide.

use super::{signing, CliError, CliResult};
use anyhow::anyhow;
use driftless_core::admission::{RevocationList, SignedRevocationList};
use driftless_core::trust::Ed25519Check;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Revoke nodes: a revocation list signed by k admission keys, spread like a bundle.
///
/// A list is complete: version N replaces every earlier version, so name every node that
/// stays revoked (no node at all lifts every revocation). Nodes keep a high-water mark of
/// the version, so an older list cannot be replayed.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The nodes to revoke: node.pub files or peer ids (12D3KooW…)
    #[arg(value_name = "NODE.pub|PEER_ID")]
    pub nodes: Vec<String>,
    /// Admission private key(s) to sign with (k of n)
    #[arg(long, required = true, num_args = 1.., value_name = "FILE.key")]
    pub key: Vec<PathBuf>,
    /// The list's version: higher than any revocation list the fleet has seen
    #[arg(long)]
    pub version: u64,
    /// Fleet name; default: the fleet of --trust, else `fleet` from a trust.toml beside the
    /// key, else `default`
    #[arg(long)]
    pub fleet: Option<String>,
    /// Check the list against this trust directory before writing it
    #[arg(long, value_name = "DIR")]
    pub trust: Option<PathBuf>,
    /// Where to write the list; default: revoked-VERSION.bundle (its magic bytes tell it
    /// from a bundle)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> CliResult {
    if args.version == 0 {
        return Err(CliError::bad(anyhow!("--version: must be at least 1")));
    }
    let mut revoked = BTreeSet::new();
    for n in &args.nodes {
        revoked.insert(signing::node_key(n)?);
    }
    let keys = signing::read_keys(&args.key)?;
    let trust = match &args.trust {
        Some(t) => Some(crate::trustdir::load(t).map_err(CliError::bad)?),
        None => None,
    };
    let fleet = signing::fleet(args.fleet, trust.as_ref(), &args.key[0])?;
    let now = super::now();
    let list = RevocationList {
        fleet,
        version: args.version,
        issued: now,
        revoked,
    };
    let refs: Vec<&ed25519_dalek::SigningKey> = keys.iter().collect();
    let signed = SignedRevocationList::sign(list, &refs);
    if let Some(t) = &trust {
        t.root
            .verify_revocations(&signed, now, &Ed25519Check)
            .map_err(|r| {
                signing::refused(
                    r.is_malformed(),
                    anyhow!(
                        "--trust {}: the revocation list would be refused, not written: {r} ({})",
                        args.trust.as_ref().expect("given").display(),
                        r.reason()
                    ),
                )
            })?;
    }
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("revoked-{}.bundle", args.version)));
    let bytes = signed.encode();
    signing::write_out(&out, &bytes)?;
    let l = signed.list();
    println!(
        "revocation list v{} for fleet `{}`: {} node(s) revoked -> {} ({} bytes, {} signature(s))",
        l.version,
        l.fleet,
        l.revoked.len(),
        out.display(),
        bytes.len(),
        keys.len()
    );
    for k in &l.revoked {
        println!("  revoked {}", signing::peer_of(k));
    }
    Ok(0)
}
