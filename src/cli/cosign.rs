//! `driftless cosign`: add one more signature to a bundle, node certificate, revocation list
//! or trust root (k-of-n signing from separate hosts).

use super::{CliError, CliResult};
use anyhow::anyhow;
use driftless_core::admission::{
    SignedCertificate, SignedRevocationList, CERTIFICATE_MAGIC, REVOCATIONS_MAGIC,
};
use driftless_core::bundle::Bundle;
use driftless_core::root::{SignedRoot, ROOT_MAGIC};
use std::path::PathBuf;

/// Add a signature to a bundle, certificate, revocation list or trust root, in place.
///
/// The signed content (and so a bundle's hash) does not change. The kind of file is told by
/// its magic bytes.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The file to cosign (rewritten atomically)
    #[arg(value_name = "FILE")]
    pub bundle: PathBuf,
    /// The private key to add a signature with
    #[arg(long, value_name = "FILE.key")]
    pub key: PathBuf,
}

pub fn run(args: Args) -> CliResult {
    let key = crate::keyfile::read_secret(&args.key).map_err(CliError::bad)?;
    let limit = driftless_core::trust::DEFAULT_MAX_BUNDLE_BYTES;
    let bytes = super::read_bundle_file(&args.bundle, limit)?;
    let place = args.bundle.display().to_string();
    let bad = |e: driftless_core::encoding::DecodeError| CliError::bad(anyhow!("{place}: {e}"));
    let magic = bytes.get(..4);
    let (encoded, count, what) = if magic == Some(CERTIFICATE_MAGIC) {
        let mut c = SignedCertificate::decode(&bytes).map_err(bad)?;
        c.add_signature(&key);
        (c.encode(), c.signatures().len(), "certificate".to_string())
    } else if magic == Some(REVOCATIONS_MAGIC) {
        let mut l = SignedRevocationList::decode(&bytes).map_err(bad)?;
        l.add_signature(&key);
        (l.encode(), l.signatures().len(), "revocation list".into())
    } else if magic == Some(ROOT_MAGIC) {
        let mut r = SignedRoot::decode(&bytes).map_err(bad)?;
        r.add_signature(&key);
        (r.encode(), r.signatures().len(), "trust root".into())
    } else {
        let mut bundle = Bundle::decode(&bytes, limit).map_err(bad)?;
        bundle.add_signature(&key);
        let what = format!("bundle {} unchanged", bundle.hash().short());
        (bundle.encode(), bundle.signatures().len(), what)
    };
    crate::fsutil::write_atomic(&args.bundle, &encoded, 0o644)
        .map_err(|e| CliError::failed(anyhow!("{place}: cannot write: {e}")))?;
    println!("{place}: now {count} signature(s), {what}");
    Ok(0)
}
