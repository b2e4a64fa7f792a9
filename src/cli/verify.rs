//! `driftless verify`: check a bundle against a trust directory and print its header.

use super::{CliError, CliResult};
use anyhow::anyhow;
use driftless_core::bundle::Bundle;
use driftless_core::trust::Ed25519Check;
use std::path::PathBuf;

/// Check a bundle's signatures, threshold, fleet, expiry and size against a trust directory,
/// and print its header. Exit 1 when a well-formed bundle is refused, 2 when it is unreadable.
#[derive(clap::Args, Debug)]
pub struct Args {
    pub bundle: PathBuf,
    /// Trust directory: every *.pub is a trusted release key; trust.toml sets threshold/fleet
    #[arg(long, value_name = "DIR")]
    pub trust: PathBuf,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> CliResult {
    let trust = crate::trustdir::load(&args.trust).map_err(CliError::bad)?;
    let bytes = super::read_bundle_file(&args.bundle, trust.root.max_bundle_bytes)?;
    let place = args.bundle.display().to_string();
    let bundle = Bundle::decode(&bytes, trust.root.max_bundle_bytes)
        .map_err(|e| CliError::bad(anyhow!("{place}: {e}")))?;
    let signers: Vec<String> = bundle
        .signatures()
        .iter()
        .map(|s| trust.name_of(&s.key))
        .collect();
    match trust
        .root
        .verify(bundle.clone(), super::now(), &Ed25519Check)
    {
        Ok(v) => {
            let trusted: Vec<String> = v.signers().iter().map(|k| trust.name_of(k)).collect();
            if args.json {
                let mut j = super::show::header_json(&bundle, Some(v.definition()), &trusted);
                j["verified"] = serde_json::json!(true);
                println!("{}", serde_json::to_string_pretty(&j).expect("json"));
            } else {
                super::show::print_lines(&super::show::header_lines(
                    &bundle,
                    Some(v.definition()),
                    &trusted,
                ));
                println!(
                    "verified   OK: {} of {} required signature(s) by trusted keys",
                    v.signers().len(),
                    trust.root.threshold
                );
            }
            Ok(0)
        }
        Err(refusal) => {
            if args.json {
                let mut j = super::show::header_json(&bundle, None, &signers);
                j["verified"] = serde_json::json!(false);
                j["refused"] =
                    serde_json::json!({"reason": refusal.reason(), "message": refusal.to_string()});
                println!("{}", serde_json::to_string_pretty(&j).expect("json"));
            } else {
                super::show::print_lines(&super::show::header_lines(&bundle, None, &signers));
            }
            let err = anyhow!("{place}: refused: {refusal}");
            Err(if refusal.is_malformed() {
                CliError::bad(err)
            } else {
                CliError::failed(err)
            })
        }
    }
}
