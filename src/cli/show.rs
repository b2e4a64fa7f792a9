//! Printing a bundle header for people and as JSON (shared by `verify` and `plan`).

use driftless_core::bundle::Bundle;
use driftless_core::definition::{CompiledDefinition, OnFailure};
use driftless_core::Timestamp;
use serde_json::json;

pub fn time(t: Timestamp) -> String {
    let st = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.0);
    humantime::format_rfc3339_seconds(st).to_string()
}

pub fn targets(def: &CompiledDefinition) -> String {
    if def.targets.is_everyone() {
        return "every node".into();
    }
    def.targets
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.join("|")))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn rollout(def: &CompiledDefinition) -> Option<String> {
    def.rollout.as_ref().map(|r| {
        let waves: Vec<String> = r.waves.iter().map(|w| format!("{}%", w * 100.0)).collect();
        format!(
            "waves {}, bake {} s, halt above {}% unhealthy, on failure {}",
            waves.join(" "),
            r.bake_secs,
            r.max_unhealthy * 100.0,
            match r.on_failure {
                OnFailure::Halt => "halt",
                OnFailure::Rollback => "rollback",
            }
        )
    })
}

/// Lines `key  value` describing a bundle.
pub fn header_lines(
    bundle: &Bundle,
    def: Option<&CompiledDefinition>,
    signers: &[String],
) -> Vec<(String, String)> {
    let h = bundle.header();
    let mut lines = vec![
        ("fleet".into(), h.fleet.clone()),
        ("channel".into(), h.channel.clone()),
        ("version".into(), h.version.to_string()),
        ("created".into(), time(h.created)),
        ("expires".into(), time(h.expires)),
        ("signers".into(), signers.join(", ")),
        (
            "content".into(),
            format!("sha256:{}", hex::encode(h.content_hash)),
        ),
        ("bundle".into(), bundle.hash().to_string()),
    ];
    if let Some(d) = def {
        lines.push(("targets".into(), targets(d)));
        lines.push(("resources".into(), d.resources.len().to_string()));
        if !d.checks.is_empty() {
            lines.push((
                "checks".into(),
                d.checks
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        if let Some(r) = rollout(d) {
            lines.push(("rollout".into(), r));
        }
    }
    lines
}

pub fn header_json(
    bundle: &Bundle,
    def: Option<&CompiledDefinition>,
    signers: &[String],
) -> serde_json::Value {
    let h = bundle.header();
    let mut v = json!({
        "fleet": h.fleet,
        "channel": h.channel,
        "version": h.version,
        "created": time(h.created),
        "expires": time(h.expires),
        "signers": signers,
        "content_hash": hex::encode(h.content_hash),
        "bundle_hash": bundle.hash().to_string(),
    });
    if let Some(d) = def {
        v["resources"] = json!(d.resources.len());
        v["targets"] = json!(d.targets.labels);
        v["checks"] = json!(d.checks.iter().map(|c| c.name.clone()).collect::<Vec<_>>());
        if let Some(r) = &d.rollout {
            v["rollout"] = json!({
                "waves": r.waves,
                "bake_secs": r.bake_secs,
                "max_unhealthy": r.max_unhealthy,
                "on_failure": match r.on_failure { OnFailure::Halt => "halt", OnFailure::Rollback => "rollback" },
            });
        }
    }
    v
}

pub fn print_lines(lines: &[(String, String)]) {
    for (k, v) in lines {
        println!("{k:<10} {v}");
    }
}
