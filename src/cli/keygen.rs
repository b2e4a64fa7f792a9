//! `driftless keygen`: create an ed25519 key pair for signing.

use super::{CliError, CliResult};
use std::path::PathBuf;

/// Create a key pair: PREFIX.key (private, mode 0600) and PREFIX.pub (public).
///
/// Put the .pub file in every node's trust directory; keep the .key on the release host,
/// never in git.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Path prefix of the key files, e.g. keys/release → keys/release.key, keys/release.pub
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
}

pub fn run(args: Args) -> CliResult {
    let (secret, public) = crate::keyfile::write_keypair(&args.out).map_err(CliError::bad)?;
    println!(
        "wrote {} (private, mode 0600) and {}",
        secret.display(),
        public.display()
    );
    Ok(0)
}
