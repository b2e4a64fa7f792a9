//! `driftless verify`: check a bundle (or a certificate, revocation list or trust root)
//! against a trust directory and print its header.

use super::{show_signed, CliError, CliResult};
use anyhow::anyhow;
use driftless_core::admission::{CERTIFICATE_MAGIC, REVOCATIONS_MAGIC};
use driftless_core::bundle::Bundle;
use driftless_core::root::ROOT_MAGIC;
use driftless_core::trust::Ed25519Check;
use std::path::PathBuf;

/// Check a bundle's signatures, threshold, fleet, expiry and size against a trust directory,
/// and print its header. Exit 1 when a well-formed bundle is refused, 2 when it is unreadable.
///
/// Node certificates (`admit`), revocation lists (`revoke`) and signed trust roots (`root`)
/// are recognised by their magic bytes and checked the same way: certificates and lists
/// against the admission keys, a root as the next version of the directory's root.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(value_name = "FILE")]
    pub bundle: PathBuf,
    /// Trust directory: *.pub keys and trust.toml (roles, threshold, fleet), root-N.signed
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
    let now = super::now();
    let magic = bytes.get(..4);
    if magic == Some(CERTIFICATE_MAGIC) {
        return show_signed::certificate(&trust, &bytes, &place, args.json, now);
    }
    if magic == Some(REVOCATIONS_MAGIC) {
        return show_signed::revocations(&trust, &bytes, &place, args.json, now);
    }
    if magic == Some(ROOT_MAGIC) {
        return show_signed::root(&trust, &bytes, &place, args.json, now);
    }
    let bundle = Bundle::decode(&bytes, trust.root.max_bundle_bytes)
        .map_err(|e| CliError::bad(anyhow!("{place}: {e}")))?;
    let signers: Vec<String> = bundle
        .signatures()
        .iter()
        .map(|s| trust.name_of(&s.key))
        .collect();
    match trust.root.verify(bundle.clone(), now, &Ed25519Check) {
        Ok(v) => {
            let trusted: Vec<String> = v.signers().iter().map(|k| trust.name_of(k)).collect();
            if args.json {
                let mut j = super::show::header_json(&bundle, Some(v.definition()), &trusted);
                j["kind"] = serde_json::json!("bundle");
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
                j["kind"] = serde_json::json!("bundle");
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
