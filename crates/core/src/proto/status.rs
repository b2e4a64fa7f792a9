//! Node statuses: what a node says about itself, signed with its node key.
//!
//! ```text
//! status body   = "DLST" v1 StatusBody      signature = ed25519(STATUS_CONTEXT || body)
//! signed status = "DLST" v2 (StatusBody, signature, certificate?)   (v1: without certificate)
//! ```
//!
//! In an admitted fleet a status carries its node's certificate (opaque bytes here, checked by
//! the caller's [`super::Door`]): statuses travel beyond the peers that saw the node connect,
//! so each one brings the proof that its node belongs to the fleet and which labels it has.
//!
//! A status is ordered by `issued_ms` (the issuer's wall clock): a newer one replaces an older
//! one of the same node everywhere. A node's own signed status is the evidence a rollout may
//! halt on; counts added up by others are only summaries (see [`super::fleet`]).

use super::config::limits;
use super::PeerId;
use crate::encoding::{self, DecodeError};
use crate::labels::Labels;
use crate::trust::SignatureCheck;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const STATUS_MAGIC: &[u8; 4] = b"DLST";
/// The body a status signature covers stays at format 1; the signed status is at 2.
pub const STATUS_FORMAT: u16 = 1;
pub const SIGNED_STATUS_FORMAT: u16 = 2;
/// A certificate riding with a status is at most this large (it is a few hundred bytes).
pub const MAX_CERT_BYTES: usize = 4096;
/// Domain separation: a status signature can never pass for a bundle signature.
pub const STATUS_CONTEXT: &[u8] = b"driftless status signature v1\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ApplyState {
    Applied,
    Pending,
    Failed,
    Held,
}

impl ApplyState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyState::Applied => "applied",
            ApplyState::Pending => "pending",
            ApplyState::Failed => "failed",
            ApplyState::Held => "held",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStatus {
    pub channel: String,
    /// The version this node runs (0: none yet) and the state of the newest it accepted.
    pub version: u64,
    pub state: ApplyState,
    /// The newest version this node accepted on the channel (what a rollout is rolling).
    pub target: u64,
    /// This node's wave for `target` (0 when the bundle has no rollout policy).
    pub wave: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastApply {
    pub channel: String,
    pub version: u64,
    pub ok: bool,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusBody<P> {
    pub node: P,
    pub issued_ms: u64,
    pub labels: Labels,
    pub channels: Vec<ChannelStatus>,
    pub last_apply: Option<LastApply>,
    pub drift_detected: u64,
    pub drift_corrected: u64,
    pub healthy: bool,
    pub failing_checks: Vec<String>,
}

impl<P: PeerId> StatusBody<P> {
    /// A healthy node with no labels, channels or drift (tests).
    #[cfg(test)]
    pub(crate) fn idle(node: P, issued_ms: u64) -> Self {
        StatusBody {
            node,
            issued_ms,
            labels: Default::default(),
            channels: Vec::new(),
            last_apply: None,
            drift_detected: 0,
            drift_corrected: 0,
            healthy: true,
            failing_checks: Vec::new(),
        }
    }

    /// Failing, drifting or unhealthy: spread in full beyond the own zone (up to a cap).
    pub fn is_notable(&self) -> bool {
        !self.healthy
            || self.drift_detected > self.drift_corrected
            || self.channels.iter().any(|c| c.state == ApplyState::Failed)
    }

    fn encode(&self) -> Vec<u8> {
        encoding::encode(STATUS_MAGIC, STATUS_FORMAT, self)
    }

    pub fn sign(self, key: &SigningKey) -> SignedStatus<P> {
        let bytes = self.encode();
        let mut msg = Vec::with_capacity(STATUS_CONTEXT.len() + bytes.len());
        msg.extend_from_slice(STATUS_CONTEXT);
        msg.extend_from_slice(&bytes);
        let sig = key.sign(&msg).to_bytes().to_vec();
        SignedStatus {
            body: self,
            sig,
            cert: None,
        }
    }
}

/// A status and its issuer's signature. Decoding checks sizes; [`SignedStatus::verify`]
/// checks the signature against the node key the caller looked up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedStatus<P> {
    pub body: StatusBody<P>,
    pub sig: Vec<u8>,
    /// The node's certificate, in an admitted fleet (outside the signature: it is signed by
    /// admission keys itself, and binds the node key the signature is checked with).
    pub cert: Option<Arc<Vec<u8>>>,
}

/// A signed status as format 1 wrote it (no certificate): still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedStatusV1<P> {
    pub body: StatusBody<P>,
    pub sig: Vec<u8>,
}

impl<P> From<SignedStatusV1<P>> for SignedStatus<P> {
    fn from(s: SignedStatusV1<P>) -> Self {
        SignedStatus {
            body: s.body,
            sig: s.sig,
            cert: None,
        }
    }
}

impl<P> From<SignedStatusV1<P>> for Arc<SignedStatus<P>> {
    fn from(s: SignedStatusV1<P>) -> Self {
        Arc::new(s.into())
    }
}

impl<P: PeerId> SignedStatus<P> {
    pub fn verify(&self, key: &VerifyingKey, check: &dyn SignatureCheck) -> bool {
        self.sig.len() == 64
            && self.within_limits()
            && check.check(key, &[STATUS_CONTEXT, &self.body.encode()], &self.sig)
    }

    pub fn within_limits(&self) -> bool {
        let b = &self.body;
        b.labels.len() <= limits::MAX_STATUS_ITEMS
            && b.channels.len() <= limits::MAX_STATUS_ITEMS
            && b.failing_checks.len() <= limits::MAX_STATUS_ITEMS
            && self.cert.as_ref().is_none_or(|c| c.len() <= MAX_CERT_BYTES)
    }

    /// The same status with `cert` attached.
    pub fn with_cert(mut self, cert: Option<Arc<Vec<u8>>>) -> Self {
        self.cert = cert;
        self
    }

    /// The stand-alone form persisted by a node and served on demand.
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(STATUS_MAGIC, SIGNED_STATUS_FORMAT, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > limits::MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge {
                what: "status",
                len: bytes.len(),
                limit: limits::MAX_MESSAGE_BYTES,
            });
        }
        let (v, body) = encoding::open("status", STATUS_MAGIC, SIGNED_STATUS_FORMAT, bytes)?;
        if v == 1 {
            return encoding::body::<SignedStatusV1<P>>("status", body).map(Into::into);
        }
        encoding::body("status", body)
    }
}
