//! `verify` of the fleet's other signed documents: node certificates, revocation lists and
//! trust roots, printed for people and as JSON.

use super::show::{print_lines, time};
use super::signing::{peer_of, refused};
use super::{CliError, CliResult};
use crate::trustdir::LoadedTrust;
use anyhow::anyhow;
use driftless_core::admission::{
    SignedCertificate, SignedRevocationList, CERTIFICATE_WARNING_SECS,
};
use driftless_core::keys::key_id;
use driftless_core::root::SignedRoot;
use driftless_core::signed::{KeySignature, Rejection};
use driftless_core::trust::{Ed25519Check, Role, TrustRoot};
use driftless_core::{Labels, Timestamp};
use serde_json::{json, Value};

/// `k=v,k=v`, as `--labels` takes them.
pub fn labels(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn names(trust: &LoadedTrust, keys: impl IntoIterator<Item = [u8; 32]>) -> Vec<String> {
    keys.into_iter().map(|k| trust.name_of(&k)).collect()
}

fn all_signers(trust: &LoadedTrust, sigs: &[KeySignature]) -> Vec<String> {
    names(trust, sigs.iter().map(|s| s.key))
}

/// A document's lines and JSON, and the verdict: print both ways and pick the exit code.
struct Report {
    lines: Vec<(String, String)>,
    json: Value,
    /// Every signature's key, named: shown when the document is refused.
    signers: Vec<String>,
}

impl Report {
    fn finish(
        mut self,
        json_out: bool,
        place: &str,
        verdict: Result<(Vec<String>, String), Rejection>,
    ) -> CliResult {
        match verdict {
            Ok((signers, ok)) => {
                if json_out {
                    self.json["signers"] = json!(signers);
                    self.json["verified"] = json!(true);
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&self.json).expect("json")
                    );
                } else {
                    self.lines.push(("signers".into(), signers.join(", ")));
                    print_lines(&self.lines);
                    println!("verified   OK: {ok}");
                }
                Ok(0)
            }
            Err(r) => {
                if json_out {
                    self.json["verified"] = json!(false);
                    self.json["refused"] = json!({"reason": r.reason(), "message": r.to_string()});
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&self.json).expect("json")
                    );
                } else {
                    self.lines.push(("signers".into(), self.signers.join(", ")));
                    print_lines(&self.lines);
                }
                Err(refused(
                    r.is_malformed(),
                    anyhow!("{place}: refused: {r} ({})", r.reason()),
                ))
            }
        }
    }
}

fn decode_error(place: &str, e: impl std::fmt::Display) -> CliError {
    CliError::bad(anyhow!("{place}: {e}"))
}

pub fn certificate(
    trust: &LoadedTrust,
    bytes: &[u8],
    place: &str,
    json_out: bool,
    now: Timestamp,
) -> CliResult {
    let signed = SignedCertificate::decode(bytes).map_err(|e| decode_error(place, e))?;
    let c = signed.certificate();
    let node = peer_of(&c.node_key);
    let signers = all_signers(trust, signed.signatures());
    let mut lines = vec![
        ("kind".into(), "certificate".into()),
        ("fleet".into(), c.fleet.clone()),
        ("node".into(), node.clone()),
        ("node key".into(), key_id(&c.node_key)),
        ("labels".into(), labels(&c.labels)),
        ("issued".into(), time(c.issued)),
        ("expires".into(), time(c.expires)),
    ];
    let mut j = json!({
        "kind": "certificate",
        "fleet": c.fleet,
        "node": node,
        "node_key": hex::encode(c.node_key),
        "labels": c.labels,
        "issued": time(c.issued),
        "expires": time(c.expires),
        "signers": signers,
    });
    let verdict = trust
        .root
        .verify_certificate(&signed, now, &Ed25519Check)
        .map(|v| {
            let near = v.expires_within(now, CERTIFICATE_WARNING_SECS);
            j["near_expiry"] = json!(near);
            if near {
                lines.push((
                    "warning".into(),
                    format!(
                        "expires within {} days: re-admit the node",
                        CERTIFICATE_WARNING_SECS / 86400
                    ),
                ));
            }
            let (_, k) = trust.root.keys_of(Role::Admission);
            (
                names(trust, v.signers().iter().copied()),
                format!(
                    "{} of {k} required signature(s) by admission keys",
                    v.signers().len()
                ),
            )
        });
    Report {
        lines,
        json: j,
        signers,
    }
    .finish(json_out, place, verdict)
}

pub fn revocations(
    trust: &LoadedTrust,
    bytes: &[u8],
    place: &str,
    json_out: bool,
    now: Timestamp,
) -> CliResult {
    let signed = SignedRevocationList::decode(bytes).map_err(|e| decode_error(place, e))?;
    let l = signed.list();
    let revoked: Vec<String> = l.revoked.iter().map(peer_of).collect();
    let signers = all_signers(trust, signed.signatures());
    let mut lines = vec![
        ("kind".into(), "revocation list".into()),
        ("fleet".into(), l.fleet.clone()),
        ("version".into(), l.version.to_string()),
        ("issued".into(), time(l.issued)),
        ("revoked".into(), format!("{} node(s)", revoked.len())),
    ];
    for r in &revoked {
        lines.push((String::new(), r.clone()));
    }
    let j = json!({
        "kind": "revocation list",
        "fleet": l.fleet,
        "version": l.version,
        "issued": time(l.issued),
        "revoked": revoked,
        "signers": signers,
    });
    let verdict = trust
        .root
        .verify_revocations(&signed, now, &Ed25519Check)
        .map(|v| {
            (
                names(trust, v.signers().iter().copied()),
                format!(
                    "{} of {} required signature(s) by admission keys",
                    v.signers().len(),
                    trust.root.admission_threshold
                ),
            )
        });
    Report {
        lines,
        json: j,
        signers,
    }
    .finish(json_out, place, verdict)
}

fn role_text(trust: &LoadedTrust, r: &TrustRoot, role: Role) -> (String, Value) {
    let (keys, k) = r.keys_of(role);
    let named = names(trust, keys.iter().map(|k| k.to_bytes()));
    let text = if keys.is_empty() {
        "none (open fleet)".to_string()
    } else {
        format!("{k} of {}", named.join(", "))
    };
    (text, json!({"threshold": k, "keys": named}))
}

pub fn root(
    trust: &LoadedTrust,
    bytes: &[u8],
    place: &str,
    json_out: bool,
    now: Timestamp,
) -> CliResult {
    let signed = SignedRoot::decode(bytes).map_err(|e| decode_error(place, e))?;
    let d = signed.doc();
    let signers = all_signers(trust, signed.signatures());
    let expires = d.expires.map(time).unwrap_or_else(|| "never".into());
    let mut lines = vec![
        ("kind".into(), "trust root".into()),
        ("fleet".into(), d.fleet.clone()),
        ("version".into(), d.version.to_string()),
        ("issued".into(), time(d.issued)),
        ("expires".into(), expires.clone()),
    ];
    let mut j = json!({
        "kind": "trust root",
        "fleet": d.fleet,
        "version": d.version,
        "issued": time(d.issued),
        "expires": d.expires.map(time),
        "signers": signers,
        "root_hash": hex::encode(signed.hash()),
    });
    // The roles as the document states them (when it is coherent).
    if let Ok(r) = TrustRoot::from_root_doc(d) {
        for role in [Role::Release, Role::Admission, Role::Root] {
            let (text, v) = role_text(trust, &r, role);
            lines.push((role.name().into(), text));
            j[role.name()] = v;
        }
    }
    let current = trust.root.version;
    let verdict = if d.version <= current {
        match trust
            .chain
            .iter()
            .find(|(v, h, _)| *v == d.version && *h == signed.hash())
        {
            Some((_, _, file)) => Ok((
                signers.clone(),
                format!(
                    "already taken on by this trust directory ({})",
                    file.display()
                ),
            )),
            None => Err(Rejection::RootVersion {
                current,
                expected: current + 1,
                found: d.version,
            }),
        }
    } else {
        trust
            .root
            .verify_next_root(&signed, now, &Ed25519Check)
            .map(|_| {
                (
                    signers.clone(),
                    format!(
                        "the next root after version {current} ({}), signed by {} of its root keys and by its own",
                        trust.source(),
                        trust.root.root_threshold
                    ),
                )
            })
    };
    Report {
        lines,
        json: j,
        signers,
    }
    .finish(json_out, place, verdict)
}
