//! `driftless plan`: show what `apply` would change, as a diff, changing nothing.

use super::{CliError, CliResult};
use anyhow::anyhow;
use driftless_core::bundle::Bundle;
use driftless_core::definition::CompiledDefinition;
use driftless_core::trust::Ed25519Check;
use std::path::PathBuf;

/// Show what `apply` would change (content diffs for files). Changes nothing.
///
/// Takes a bundle or a definition (.toml). A definition needs no trust; a bundle is verified
/// when --trust is given, and otherwise the output says plainly that it was not.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A bundle, or a definition file ending in .toml
    pub input: PathBuf,
    /// Verify the bundle against this trust directory
    #[arg(long, value_name = "DIR")]
    pub trust: Option<PathBuf>,
    /// Map every absolute path of the definition under DIR
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// This node's labels, k=v,... (for targets and templates)
    #[arg(long, value_name = "K=V,...")]
    pub labels: Option<String>,
    /// State directory, to list resources a newer version no longer manages
    /// [default: /var/lib/driftless, or ROOT/var/lib/driftless with --root]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> CliResult {
    let root = super::root_dir(args.root.as_ref())?;
    let labels = super::parse_labels(args.labels.as_deref())?;
    let is_definition = args.input.extension().is_some_and(|e| e == "toml");
    let (def, source, version, verified) = if is_definition {
        let def = crate::definition::load(&args.input).map_err(CliError::bad)?;
        (def, "definition (not signed)".to_string(), None, None)
    } else {
        let place = args.input.display().to_string();
        match &args.trust {
            Some(t) => {
                let trust = crate::trustdir::load(t).map_err(CliError::bad)?;
                let bytes = super::read_bundle_file(&args.input, trust.root.max_bundle_bytes)?;
                let bundle = Bundle::decode(&bytes, trust.root.max_bundle_bytes)
                    .map_err(|e| CliError::bad(anyhow!("{place}: {e}")))?;
                let v = trust
                    .root
                    .verify(bundle, super::now(), &Ed25519Check)
                    .map_err(|r| {
                        let e = anyhow!("{place}: refused: {r}");
                        if r.is_malformed() {
                            CliError::bad(e)
                        } else {
                            CliError::failed(e)
                        }
                    })?;
                let signers: Vec<String> = v.signers().iter().map(|k| trust.name_of(k)).collect();
                let version = v.header().version;
                (
                    v.definition().clone(),
                    format!("bundle, signature verified ({})", signers.join(", ")),
                    Some(version),
                    Some(true),
                )
            }
            None => {
                let limit = driftless_core::trust::DEFAULT_MAX_BUNDLE_BYTES;
                let bytes = super::read_bundle_file(&args.input, limit)?;
                let bundle = Bundle::decode(&bytes, limit)
                    .map_err(|e| CliError::bad(anyhow!("{place}: {e}")))?;
                let def = bundle
                    .definition_unverified()
                    .map_err(|e| CliError::bad(anyhow!("{place}: {e}")))?;
                (
                    def,
                    "bundle, signature NOT checked (no --trust given)".to_string(),
                    Some(bundle.header().version),
                    Some(false),
                )
            }
        }
    };
    let state_dir = crate::state::default_dir(
        args.state_dir.as_deref(),
        args.root.as_ref().map(|_| root.as_path()),
    );
    let dropped = no_longer_managed(&state_dir, &def);
    let targeted = def.targets.matches(&labels);
    let facts = crate::facts::Facts::gather(&root, labels);
    let report = if targeted {
        Some(crate::converge::run(
            &def,
            &facts,
            &crate::converge::Options {
                root: root.clone(),
                dry_run: true,
            },
        ))
    } else {
        None
    };
    if args.json {
        let j = serde_json::json!({
            "channel": def.name,
            "version": version,
            "verified": verified,
            "targeted": targeted,
            "root": root,
            "resources": report.as_ref().map(|r| &r.resources),
            "summary": report.as_ref().map(|r| &r.summary),
            "no_longer_managed": dropped,
        });
        println!("{}", serde_json::to_string_pretty(&j).expect("json"));
    } else {
        let v = version.map(|v| format!(" v{v}")).unwrap_or_default();
        println!(
            "plan for channel {}{v} from {} ({source}), root {}",
            def.name,
            args.input.display(),
            root.display()
        );
        match &report {
            None => println!(
                "not targeted at this node (targets: {}); nothing would change",
                super::show::targets(&def)
            ),
            Some(r) => super::apply::print_report(r, true),
        }
        for d in &dropped {
            println!(
                "  - {d}: no longer managed (left as it is; declare it `absent` to remove it)"
            );
        }
    }
    Ok(if report.as_ref().is_some_and(|r| r.summary.failed > 0) {
        1
    } else {
        0
    })
}

/// Resources the channel's currently accepted bundle manages that `def` does not.
pub fn no_longer_managed(state_dir: &std::path::Path, def: &CompiledDefinition) -> Vec<String> {
    let Some(bytes) = crate::state::peek_bundle(state_dir, &def.name) else {
        return Vec::new();
    };
    let Ok(old) = Bundle::decode(&bytes, usize::MAX).and_then(|b| b.definition_unverified()) else {
        return Vec::new();
    };
    let now: std::collections::HashSet<_> = def.resources.iter().map(|r| r.reference()).collect();
    old.resources
        .iter()
        .map(|r| r.reference())
        .filter(|r| !now.contains(r))
        .map(|r| r.to_string())
        .collect()
}
