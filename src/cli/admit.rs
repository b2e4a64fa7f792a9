//! `driftless admit`: issue a node certificate, signed by admission keys.

use super::{signing, CliError, CliResult};
use anyhow::anyhow;
use driftless_core::admission::{Certificate, SignedCertificate};
use driftless_core::trust::Ed25519Check;
use std::path::PathBuf;

/// Admit a server to the fleet: a certificate binding its node key (its peer id) to the
/// fleet, its labels and an expiry, signed by k admission keys.
///
/// The agent writes its key to `node.pub` in its state directory at first start; give that
/// file (or the peer id that `driftless status` shows) and put the certificate back as
/// `node.cert` in the state directory. In an admitted fleet the certificate's labels are the
/// node's labels.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The node: its node.pub file, or its peer id (12D3KooW…)
    #[arg(value_name = "NODE.pub|PEER_ID")]
    pub node: String,
    /// Admission private key(s) to sign with (k of n)
    #[arg(long, required = true, num_args = 1.., value_name = "FILE.key")]
    pub key: Vec<PathBuf>,
    /// The node's labels, k=v,... (an empty string for none)
    #[arg(long, value_name = "K=V,...")]
    pub labels: String,
    /// How long the certificate is valid; re-admit the node before it runs out
    #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
    pub expires: std::time::Duration,
    /// Fleet name; default: the fleet of --trust, else `fleet` from a trust.toml beside the
    /// key, else `default`
    #[arg(long)]
    pub fleet: Option<String>,
    /// Check the certificate against this trust directory before writing it (are the keys
    /// admission keys, enough of them, the right fleet?)
    #[arg(long, value_name = "DIR")]
    pub trust: Option<PathBuf>,
    /// Where to write the certificate
    #[arg(long, value_name = "NODE.cert")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> CliResult {
    let node_key = signing::node_key(&args.node)?;
    let labels = super::parse_labels(Some(&args.labels))?;
    let keys = signing::read_keys(&args.key)?;
    let trust = match &args.trust {
        Some(t) => Some(crate::trustdir::load(t).map_err(CliError::bad)?),
        None => None,
    };
    let fleet = signing::fleet(args.fleet, trust.as_ref(), &args.key[0])?;
    if args.expires.as_secs() == 0 {
        return Err(CliError::bad(anyhow!("--expires: must be longer than 0 s")));
    }
    let now = super::now();
    let cert = Certificate {
        fleet,
        node_key,
        labels,
        issued: now,
        expires: now.plus(args.expires.as_secs()),
    };
    let refs: Vec<&ed25519_dalek::SigningKey> = keys.iter().collect();
    let signed = SignedCertificate::sign(cert, &refs);
    if let Some(t) = &trust {
        t.root
            .verify_certificate(&signed, now, &Ed25519Check)
            .map_err(|r| {
                signing::refused(
                    r.is_malformed(),
                    anyhow!(
                        "--trust {}: the certificate would be refused, not written: {r} ({})",
                        args.trust.as_ref().expect("given").display(),
                        r.reason()
                    ),
                )
            })?;
    }
    let bytes = signed.encode();
    signing::write_out(&args.out, &bytes)?;
    let c = signed.certificate();
    println!(
        "admitted node {} to fleet `{}` with labels {} until {} -> {} ({} bytes, {} signature(s))",
        signing::peer_of(&c.node_key),
        c.fleet,
        if c.labels.is_empty() {
            "(none)".to_string()
        } else {
            super::show_signed::labels(&c.labels)
        },
        super::show::time(c.expires),
        args.out.display(),
        bytes.len(),
        keys.len()
    );
    Ok(0)
}
