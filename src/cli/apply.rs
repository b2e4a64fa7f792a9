//! `driftless apply`: verify a bundle, accept it (raising the high-water mark), converge once.

use super::{CliError, CliResult};
use crate::converge::{Outcome, Report};
use anyhow::anyhow;
use driftless_core::bundle::Bundle;
use driftless_core::trust::Ed25519Check;
use driftless_core::MarkDecision;
use std::path::PathBuf;

/// Verify a bundle, accept it, and converge this node once; then exit.
///
/// Refused (exit 1, nothing changed): untrusted, too few signers, another fleet, expired,
/// or a version at or below the channel's high-water mark with other content. The same
/// bundle again is a re-apply. Exit 1 also when any resource failed.
#[derive(clap::Args, Debug)]
pub struct Args {
    pub bundle: PathBuf,
    /// Trust directory: every *.pub is a trusted release key; trust.toml sets threshold/fleet
    #[arg(long, value_name = "DIR")]
    pub trust: PathBuf,
    /// Map every absolute path of the definition under DIR
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Where high-water marks and accepted bundles are kept
    /// [default: /var/lib/driftless, or ROOT/var/lib/driftless with --root]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// This node's labels, k=v,... (for targets and templates)
    #[arg(long, value_name = "K=V,...")]
    pub labels: Option<String>,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> CliResult {
    let root = super::root_dir(args.root.as_ref())?;
    let labels = super::parse_labels(args.labels.as_deref())?;
    let trust = crate::trustdir::load(&args.trust).map_err(CliError::bad)?;
    let place = args.bundle.display().to_string();
    let bytes = super::read_bundle_file(&args.bundle, trust.root.max_bundle_bytes)?;
    let bundle = Bundle::decode(&bytes, trust.root.max_bundle_bytes)
        .map_err(|e| CliError::bad(anyhow!("{place}: {e}")))?;
    let refused = |r: driftless_core::Refusal| {
        let e = anyhow!("{place}: refused: {r}");
        if r.is_malformed() {
            CliError::bad(e)
        } else {
            CliError::failed(e)
        }
    };
    let verified = trust
        .root
        .verify(bundle, super::now(), &Ed25519Check)
        .map_err(refused)?;

    let state_path = crate::state::default_dir(
        args.state_dir.as_deref(),
        args.root.as_ref().map(|_| root.as_path()),
    );
    let state = crate::state::StateDir::open(&state_path, "driftless apply").map_err(|e| {
        if e.is::<crate::state::Busy>() {
            CliError::bad(e)
        } else {
            CliError::failed(e)
        }
    })?;
    let mut marks = state.marks().map_err(CliError::failed)?;
    let header = verified.header().clone();
    let decision = marks.decide(&header, verified.hash()).map_err(refused)?;
    let def = verified.definition();
    let dropped = super::plan::no_longer_managed(state.path(), def);
    if decision == MarkDecision::New {
        // Accepted = verified and stored: the bundle first, then the mark.
        state
            .store_bundle(&header.channel, &verified.encode())
            .map_err(CliError::failed)?;
        marks.record(&header, verified.hash());
        state.save_marks(&marks).map_err(CliError::failed)?;
    }
    if !def.targets.matches(&labels) {
        if args.json {
            println!(
                "{}",
                serde_json::json!({"channel": header.channel, "version": header.version, "targeted": false})
            );
        } else {
            println!(
                "{} v{}: accepted; not targeted at this node (targets: {}), nothing to apply",
                header.channel,
                header.version,
                super::show::targets(def)
            );
        }
        return Ok(0);
    }
    let facts = crate::facts::Facts::gather(&root, labels);
    let started = std::time::Instant::now();
    let report = crate::converge::run(
        def,
        &facts,
        &crate::converge::Options {
            root: root.clone(),
            dry_run: false,
        },
    );
    let elapsed = started.elapsed();
    let result = serde_json::json!({
        "channel": header.channel,
        "version": header.version,
        "bundle": verified.hash().to_string(),
        "applied_at": super::show::time(super::now()),
        "summary": report.summary,
        "ok": !report.failed(),
    });
    state
        .save_result(&header.channel, &result)
        .map_err(CliError::failed)?;
    if args.json {
        let j = serde_json::json!({
            "channel": header.channel,
            "version": header.version,
            "bundle": verified.hash().to_string(),
            "targeted": true,
            "root": root,
            "resources": report.resources,
            "summary": report.summary,
            "no_longer_managed": dropped,
        });
        println!("{}", serde_json::to_string_pretty(&j).expect("json"));
    } else {
        let again = if decision == MarkDecision::Same {
            " (re-apply)"
        } else {
            ""
        };
        println!(
            "applied {} v{}{again} on root {} in {:.3} s",
            header.channel,
            header.version,
            root.display(),
            elapsed.as_secs_f64()
        );
        print_report(&report, false);
        for d in &dropped {
            println!("  - {d}: no longer managed (left as it is)");
        }
    }
    Ok(if report.failed() { 1 } else { 0 })
}

/// Changed, drifting and failed resources, one line each, then a summary line.
pub fn print_report(report: &Report, plan: bool) {
    for r in &report.resources {
        let (mark, verb) = match r.result {
            Outcome::Unchanged => continue,
            Outcome::Changed => ("~", if plan { "would change" } else { "changed" }),
            Outcome::Drift => ("?", "drift (audit only, not corrected)"),
            Outcome::Failed => ("!", "FAILED"),
            Outcome::Skipped => ("!", "skipped"),
        };
        let detail = if r.changes.is_empty() {
            r.error.clone().unwrap_or_default()
        } else {
            r.changes.join("; ")
        };
        println!("  {mark} {}: {verb}: {detail}", r.resource);
        if let Some(d) = &r.diff {
            for line in d.lines() {
                println!("      {line}");
            }
        }
    }
    let s = &report.summary;
    let verb = if plan { "to change" } else { "changed" };
    let mut line = format!(
        "{} {verb}, {} unchanged, {} failed",
        s.changed, s.unchanged, s.failed
    );
    if s.skipped > 0 {
        line.push_str(&format!(", {} skipped", s.skipped));
    }
    if s.drift > 0 {
        line.push_str(&format!(", {} drifted (audit)", s.drift));
    }
    println!("{line}");
}
