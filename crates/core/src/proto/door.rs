//! The door: how a node verifies what peers send, supplied by the driver.
//!
//! The agent uses [`PlainDoor`] (a trust root and plain ed25519). The simulator supplies a
//! door that remembers the verdict on identical bytes, since thousands of virtual nodes check
//! the very same bundle; the checks themselves are the same code.

use super::fleet::ZoneRow;
use super::status::SignedStatus;
use super::PeerId;
use crate::bundle::{Bundle, VerifiedBundle};
use crate::time::Timestamp;
use crate::trust::{Ed25519Check, Refusal, SignatureCheck, TrustRoot};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

pub trait Door<P> {
    /// The trust root bundles are checked against.
    fn trust(&self) -> &TrustRoot;
    /// The trust root's checks of a decoded bundle (not the high-water mark: that is the
    /// node's own state).
    fn verify_bundle(
        &self,
        bundle: &Arc<Bundle>,
        now: Timestamp,
    ) -> Result<Arc<VerifiedBundle>, Refusal> {
        self.trust()
            .verify((**bundle).clone(), now, self.signatures())
            .map(Arc::new)
    }
    /// Checks signatures of statuses.
    fn signatures(&self) -> &dyn SignatureCheck;
    /// The key that signs statuses of `peer` (its node key), if the peer is admitted.
    fn node_key(&self, peer: &P) -> Option<VerifyingKey>;
    /// Check a status's signature with its node's key. A simulator, where thousands of nodes
    /// receive the very same `Arc`, may remember the verdict per shared value.
    fn verify_status(&self, status: &Arc<SignedStatus<P>>, key: &VerifyingKey) -> bool
    where
        P: PeerId,
    {
        status.verify(key, self.signatures())
    }
    /// Look up a status's node key and check its signature: the refusal reason if either
    /// fails (`unknown_node`, `bad_status_signature`).
    fn check_status(&self, status: &Arc<SignedStatus<P>>) -> Result<(), &'static str>
    where
        P: PeerId,
    {
        let key = self.node_key(&status.body.node).ok_or("unknown_node")?;
        if self.verify_status(status, &key) {
            Ok(())
        } else {
            Err("bad_status_signature")
        }
    }
    /// Check a zone row's signature with its issuer's node key (the caller looked the key
    /// up with [`Door::node_key`] and checked that the issuer belongs to the row's zone). A
    /// simulator may remember the verdict per shared value, as for statuses.
    fn verify_row(&self, row: &Arc<ZoneRow<P>>, key: &VerifyingKey) -> bool
    where
        P: PeerId,
    {
        row.verify(key, self.signatures())
    }
}

/// A trust root, a signature checker, and a function from peer id to node key.
pub struct PlainDoor<F, C = Ed25519Check> {
    pub trust: TrustRoot,
    pub node_key: F,
    pub check: C,
}

impl<F> PlainDoor<F> {
    pub fn new(trust: TrustRoot, node_key: F) -> Self {
        PlainDoor {
            trust,
            node_key,
            check: Ed25519Check,
        }
    }
}

impl<P, F: Fn(&P) -> Option<VerifyingKey>, C: SignatureCheck> Door<P> for PlainDoor<F, C> {
    fn trust(&self) -> &TrustRoot {
        &self.trust
    }
    fn signatures(&self) -> &dyn SignatureCheck {
        &self.check
    }
    fn node_key(&self, peer: &P) -> Option<VerifyingKey> {
        (self.node_key)(peer)
    }
}

/// Remembers the verdict on identical (key, message, signature) bytes, so that a simulator
/// running thousands of nodes checks each distinct signature once. It grows with the number
/// of distinct signatures seen: for simulators and tests, not for an agent.
pub struct MemoCheck<C = Ed25519Check> {
    pub inner: C,
    seen: RefCell<HashMap<[u8; 32], bool>>,
}

impl<C> MemoCheck<C> {
    pub fn new(inner: C) -> Self {
        MemoCheck {
            inner,
            seen: RefCell::new(HashMap::new()),
        }
    }
    /// Distinct signatures checked so far.
    pub fn len(&self) -> usize {
        self.seen.borrow().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a memo of signature verdicts keys on: a hash of the key, the signature and the
/// signed bytes (a verdict is a function of exactly these).
pub fn memo_id(key: &VerifyingKey, msg_parts: &[&[u8]], sig: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update((sig.len() as u64).to_le_bytes());
    h.update(sig);
    for p in msg_parts {
        h.update(p);
    }
    h.finalize().into()
}

impl<C: SignatureCheck> SignatureCheck for MemoCheck<C> {
    fn check(&self, key: &VerifyingKey, msg_parts: &[&[u8]], sig: &[u8]) -> bool {
        let id = memo_id(key, msg_parts, sig);
        if let Some(v) = self.seen.borrow().get(&id) {
            return *v;
        }
        let v = self.inner.check(key, msg_parts, sig);
        self.seen.borrow_mut().insert(id, v);
        v
    }
}
