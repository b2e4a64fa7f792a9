//! The agent's durable state in the state directory: its node key, and what the protocol
//! core asks to persist (marks, accepted bundles, its own signed status, peers).

use super::peer::AgentPeer;
use crate::fsutil::write_atomic;
use crate::state::StateDir;
use anyhow::Context;
use driftless_core::bundle::Bundle;
use driftless_core::proto::{Persisted, SignedStatus};
use ed25519_dalek::SigningKey;
use std::sync::Arc;

const PEERS_MAGIC: &[u8; 4] = b"DLPR";

/// The node key: created at first start (`node.key`, 0600), with `node.pub` beside it for the
/// operator who admits the node.
pub fn node_key(state: &StateDir) -> anyhow::Result<SigningKey> {
    let path = state.path().join("node.key");
    let key = if path.exists() {
        crate::keyfile::read_secret(&path)?
    } else {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        write_atomic(
            &path,
            driftless_core::keys::format_secret(&key, "driftless node key").as_bytes(),
            0o600,
        )
        .with_context(|| format!("{}: cannot write", path.display()))?;
        key
    };
    let public = state.path().join("node.pub");
    let peer = super::peer::peer_id_of(&key.verifying_key().to_bytes());
    let text = driftless_core::keys::format_public(
        &key.verifying_key(),
        &format!("driftless node {peer}"),
    );
    if std::fs::read_to_string(&public).ok().as_deref() != Some(text.as_str()) {
        write_atomic(&public, text.as_bytes(), 0o644)
            .with_context(|| format!("{}: cannot write", public.display()))?;
    }
    Ok(key)
}

/// What the core persisted before, for `Node::restore`. Files that do not decode are skipped
/// (and reported): the core verifies stored bundles again anyway.
pub fn load(state: &StateDir) -> anyhow::Result<(Persisted<AgentPeer>, Vec<String>)> {
    let mut warnings = Vec::new();
    let marks = state.marks()?;
    let mut bundles = Vec::new();
    // The bundle each channel ran before its newest one: what a halted rollout returns to.
    let mut previous = Vec::new();
    let dir = state.path().join("bundles");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let p = e.path();
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if !name.ends_with(".bundle") {
                continue;
            }
            let list = if name.ends_with(".previous.bundle") {
                &mut previous
            } else {
                &mut bundles
            };
            match std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| Bundle::decode(&b, usize::MAX).map_err(|e| e.to_string()))
            {
                Ok(b) => list.push(Arc::new(b)),
                Err(e) => warnings.push(format!("{}: {e}", p.display())),
            }
        }
    }
    let status = match std::fs::read(state.path().join("status")) {
        Ok(b) => match SignedStatus::<AgentPeer>::decode(&b) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                warnings.push(format!("status: {e}"));
                None
            }
        },
        Err(_) => None,
    };
    let peers = std::fs::read(state.path().join("peers"))
        .ok()
        .and_then(|b| {
            let (_v, body) = driftless_core::encoding::open("peers", PEERS_MAGIC, 1, &b).ok()?;
            driftless_core::encoding::body::<Vec<AgentPeer>>("peers", body).ok()
        })
        .unwrap_or_default();
    Ok((
        Persisted {
            marks,
            bundles,
            status,
            peers,
            previous,
        },
        warnings,
    ))
}

/// The own status is replaced atomically but not fsynced: it is re-signed at every change and
/// every few minutes, and an fsync here would sit on the gossip path.
pub fn save_status(state: &StateDir, s: &SignedStatus<AgentPeer>) -> anyhow::Result<()> {
    let p = state.path().join("status");
    crate::fsutil::replace_atomic(&p, &s.encode(), 0o600)
        .with_context(|| format!("{}: cannot write", p.display()))
}

pub fn save_peers(state: &StateDir, peers: &[AgentPeer]) -> anyhow::Result<()> {
    let p = state.path().join("peers");
    let bytes = driftless_core::encoding::encode(PEERS_MAGIC, 1, &peers);
    write_atomic(&p, &bytes, 0o600).with_context(|| format!("{}: cannot write", p.display()))
}
