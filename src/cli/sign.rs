//! `driftless sign`: validate a definition and sign it into a bundle.

use super::{CliError, CliResult};
use anyhow::anyhow;
use driftless_core::bundle::{Bundle, Header};
use std::path::PathBuf;

/// Validate a definition and sign it into a bundle.
///
/// Everything that can be checked before signing is: unknown fields, bad modes, relative or
/// `..` paths, two resources managing one path, dependency cycles, references that name
/// nothing, templates that do not render (strict: an unknown variable is an error).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The definition (TOML)
    pub definition: PathBuf,
    /// Private key(s) to sign with (k-of-n signing: give several, or cosign later)
    #[arg(long, required = true, num_args = 1.., value_name = "FILE.key")]
    pub key: Vec<PathBuf>,
    /// The version: must be higher than any version of this channel nodes have accepted
    #[arg(long)]
    pub version: u64,
    /// How long the bundle stays valid (nodes keep enforcing an expired bundle they already
    /// applied, but accept it anew nowhere)
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub expires: std::time::Duration,
    /// Fleet name; default: `fleet` from a trust.toml beside the key, else `default`
    #[arg(long)]
    pub fleet: Option<String>,
    /// Where to write the bundle; default: CHANNEL-VERSION.bundle in the current directory
    #[arg(long, value_name = "FILE.bundle")]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> CliResult {
    let definition = crate::definition::load(&args.definition).map_err(CliError::bad)?;
    let keys = args
        .key
        .iter()
        .map(|p| crate::keyfile::read_secret(p))
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(CliError::bad)?;
    let fleet = match args.fleet {
        Some(f) => f,
        None => {
            let dir = args.key[0].parent().filter(|d| !d.as_os_str().is_empty());
            let tf = crate::trustdir::read_trust_file(dir.unwrap_or(std::path::Path::new(".")))
                .map_err(CliError::bad)?;
            tf.fleet
                .unwrap_or_else(|| driftless_core::trust::DEFAULT_FLEET.to_string())
        }
    };
    if args.version == 0 {
        return Err(CliError::bad(anyhow!("--version: must be at least 1")));
    }
    let now = super::now();
    let header = Header {
        fleet,
        channel: definition.name.clone(),
        version: args.version,
        created: now,
        expires: now.plus(args.expires.as_secs()),
        content_hash: [0; 32],
        rollout: definition.rollout.clone(),
    };
    let refs: Vec<&ed25519_dalek::SigningKey> = keys.iter().collect();
    let bundle = Bundle::sign(header, &definition, &refs);
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}-{}.bundle", definition.name, args.version)));
    let bytes = bundle.encode();
    if let Some(dir) = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::failed(anyhow!("{}: cannot create: {e}", dir.display())))?;
    }
    crate::fsutil::write_atomic(&out, &bytes, 0o644)
        .map_err(|e| CliError::failed(anyhow!("{}: cannot write: {e}", out.display())))?;
    println!(
        "signed {} v{} for fleet `{}` -> {} ({} bytes, {} resource(s), {} signature(s), bundle {})",
        definition.name,
        args.version,
        bundle.header().fleet,
        out.display(),
        bytes.len(),
        definition.resources.len(),
        keys.len(),
        bundle.hash().short()
    );
    Ok(0)
}
