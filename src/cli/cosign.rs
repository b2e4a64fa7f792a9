//! `driftless cosign`: add one more signature to a bundle (k-of-n signing from separate hosts).

use super::{CliError, CliResult};
use anyhow::anyhow;
use driftless_core::bundle::Bundle;
use std::path::PathBuf;

/// Add a signature to a bundle, in place. The signed content (and so the bundle hash) does
/// not change.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The bundle to cosign (rewritten atomically)
    pub bundle: PathBuf,
    /// The private key to add a signature with
    #[arg(long, value_name = "FILE.key")]
    pub key: PathBuf,
}

pub fn run(args: Args) -> CliResult {
    let key = crate::keyfile::read_secret(&args.key).map_err(CliError::bad)?;
    let limit = driftless_core::trust::DEFAULT_MAX_BUNDLE_BYTES;
    let bytes = super::read_bundle_file(&args.bundle, limit)?;
    let mut bundle = Bundle::decode(&bytes, limit)
        .map_err(|e| CliError::bad(anyhow!("{}: {e}", args.bundle.display())))?;
    bundle.add_signature(&key);
    crate::fsutil::write_atomic(&args.bundle, &bundle.encode(), 0o644)
        .map_err(|e| CliError::failed(anyhow!("{}: cannot write: {e}", args.bundle.display())))?;
    println!(
        "{}: now {} signature(s), bundle {} unchanged",
        args.bundle.display(),
        bundle.signatures().len(),
        bundle.hash().short()
    );
    Ok(0)
}
