//! How the agent names a peer to the protocol core: its node key plus the address it listens
//! on, so that peers learned through other peers can be dialled.
//!
//! Equality, order and hashing use the key alone: the address is a hint for dialling (a wrong
//! one only fails to connect, since Noise authenticates the key), never part of the identity.

use driftless_core::proto::PeerId as CorePeerId;
use libp2p::{identity, Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

/// Addresses longer than this are dropped: a multiaddr for TCP over IPv4/6 is ~30 bytes.
pub const MAX_ADDR_LEN: usize = 128;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentPeer {
    /// The node's ed25519 public key; its libp2p peer id is derived from it.
    pub key: [u8; 32],
    /// Where it listens (a multiaddr without /p2p), if known.
    pub addr: Option<String>,
}

impl PartialEq for AgentPeer {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for AgentPeer {}
impl PartialOrd for AgentPeer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for AgentPeer {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}
impl Hash for AgentPeer {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state)
    }
}

impl CorePeerId for AgentPeer {
    fn stable_hash(&self) -> u64 {
        self.key.stable_hash()
    }
}

impl AgentPeer {
    pub fn peer_id(&self) -> PeerId {
        peer_id_of(&self.key)
    }

    /// The dial address, when it parses and is not oversized.
    pub fn multiaddr(&self) -> Option<Multiaddr> {
        self.addr
            .as_deref()
            .filter(|a| a.len() <= MAX_ADDR_LEN)
            .and_then(|a| a.parse().ok())
    }
}

pub fn peer_id_of(key: &[u8; 32]) -> PeerId {
    let pk = identity::ed25519::PublicKey::try_from_bytes(key)
        .expect("32-byte ed25519 keys are checked where they enter");
    identity::PublicKey::from(pk).to_peer_id()
}

/// The ed25519 key inside a peer id (libp2p inlines ed25519 keys in the id).
pub fn key_of(peer: &PeerId) -> Option<[u8; 32]> {
    let mh = multihash_digest(peer)?;
    let pk = identity::PublicKey::try_decode_protobuf(&mh).ok()?;
    pk.try_into_ed25519().ok().map(|k| k.to_bytes())
}

fn multihash_digest(peer: &PeerId) -> Option<Vec<u8>> {
    let bytes = peer.to_bytes();
    // identity multihash: code 0x00, varint length, then the protobuf-encoded public key
    if bytes.first() != Some(&0x00) {
        return None;
    }
    let len = *bytes.get(1)? as usize;
    let digest = bytes.get(2..)?;
    (digest.len() == len).then(|| digest.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_and_keys_convert_both_ways() {
        let kp = identity::Keypair::generate_ed25519();
        let key: [u8; 32] = kp.public().try_into_ed25519().unwrap().to_bytes();
        assert_eq!(peer_id_of(&key), kp.public().to_peer_id());
        assert_eq!(key_of(&kp.public().to_peer_id()), Some(key));
    }

    #[test]
    fn the_address_is_not_part_of_the_identity() {
        let a = AgentPeer {
            key: [1; 32],
            addr: Some("/ip4/127.0.0.1/tcp/1".into()),
        };
        let b = AgentPeer {
            key: [1; 32],
            addr: None,
        };
        assert_eq!(a, b);
    }
}
