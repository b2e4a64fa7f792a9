//! Who belongs to the fleet: node certificates and revocation lists, signed by admission keys.
//!
//! A [`Certificate`] binds a node key (the node's libp2p identity) to the fleet, its labels
//! and an expiry. A [`RevocationList`] names node keys the fleet no longer admits; each
//! version replaces the one before, so it names every node still revoked. Both are signed by
//! k of the trust root's admission keys, and only [`TrustRoot::verify_certificate`] and
//! [`TrustRoot::verify_revocations`] make the verified forms.
//!
//! ```text
//! certificate      = "DLCF" 1 { signed: bytes, signatures: [ { key, sig } ] }
//! signed           = "DLCS" 1 { fleet, node_key: [u8;32], labels: {k: v}, issued, expires }
//! revocation list  = "DLRV" 1 { signed: bytes, signatures: [ { key, sig } ] }
//! signed           = "DLRL" 1 { fleet, version: u64, issued, revoked: [[u8;32]] (sorted) }
//! ```

use crate::bundle::BundleHash;
use crate::encoding::DecodeError;
use crate::keys::key_id;
use crate::labels::Labels;
use crate::marks::{Mark, MarkDecision};
use crate::signed::{check_times, Envelope, KeySignature, Kind, Rejection};
use crate::time::Timestamp;
use crate::trust::{Role, SignatureCheck, TrustRoot};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub const CERTIFICATE_MAGIC: &[u8; 4] = b"DLCF";
pub const CERTIFICATE_FORMAT: u16 = 1;
pub const CERTIFICATE_BODY_MAGIC: &[u8; 4] = b"DLCS";
pub const CERTIFICATE_BODY_FORMAT: u16 = 1;
/// Domain separation for certificate signatures.
pub const CERTIFICATE_CONTEXT: &[u8] = b"driftless certificate signature v1\0";
/// A certificate is a key, a fleet name, a few labels and at most 32 signatures: well under
/// 4 KiB. 16 KiB leaves room for many labels and bounds what a peer that has not yet been
/// admitted can make a node read.
pub const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;
/// "Near expiry" for reports: a certificate expiring within 30 days leaves the operator a
/// month to re-admit the node.
pub const CERTIFICATE_WARNING_SECS: u64 = 30 * 24 * 3600;

pub const REVOCATIONS_MAGIC: &[u8; 4] = b"DLRV";
pub const REVOCATIONS_FORMAT: u16 = 1;
pub const REVOCATIONS_BODY_MAGIC: &[u8; 4] = b"DLRL";
pub const REVOCATIONS_BODY_FORMAT: u16 = 1;
/// Domain separation for revocation list signatures.
pub const REVOCATIONS_CONTEXT: &[u8] = b"driftless revocation list signature v1\0";
/// 33 bytes per revoked node: 4 MiB holds over 120,000 of them, more than any fleet revokes,
/// and bounds what a list spread like a bundle can cost.
pub const MAX_REVOCATIONS_BYTES: usize = 4 * 1024 * 1024;

pub(crate) const CERTIFICATE: Kind = Kind {
    what: "certificate",
    file_magic: CERTIFICATE_MAGIC,
    file_format: CERTIFICATE_FORMAT,
    body_magic: CERTIFICATE_BODY_MAGIC,
    body_format: CERTIFICATE_BODY_FORMAT,
    context: CERTIFICATE_CONTEXT,
    max_bytes: MAX_CERTIFICATE_BYTES,
};

pub(crate) const REVOCATIONS: Kind = Kind {
    what: "revocation list",
    file_magic: REVOCATIONS_MAGIC,
    file_format: REVOCATIONS_FORMAT,
    body_magic: REVOCATIONS_BODY_MAGIC,
    body_format: REVOCATIONS_BODY_FORMAT,
    context: REVOCATIONS_CONTEXT,
    max_bytes: MAX_REVOCATIONS_BYTES,
};

/// What a node certificate says: this node key belongs to this fleet, with these labels,
/// until `expires`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub fleet: String,
    /// The node's ed25519 public key, from which its libp2p peer id is derived.
    pub node_key: [u8; 32],
    /// The node's labels: in an admitted fleet these, not what the node claims, are its labels.
    pub labels: Labels,
    pub issued: Timestamp,
    pub expires: Timestamp,
}

/// A certificate with its signatures, decoded but not verified.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCertificate(Envelope<Certificate>);

impl SignedCertificate {
    /// Sign a certificate with one or more admission keys.
    pub fn sign(cert: Certificate, keys: &[&SigningKey]) -> Self {
        SignedCertificate(Envelope::sign(&CERTIFICATE, cert, keys))
    }

    /// Add one more signature (k-of-n signing from separate hosts).
    pub fn add_signature(&mut self, key: &SigningKey) {
        self.0.add_signature(&CERTIFICATE, key)
    }

    pub fn encode(&self) -> Vec<u8> {
        self.0.encode(&CERTIFICATE)
    }

    /// Decode untrusted bytes; more than [`MAX_CERTIFICATE_BYTES`] is refused unread.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Envelope::decode(&CERTIFICATE, bytes).map(SignedCertificate)
    }

    pub fn certificate(&self) -> &Certificate {
        &self.0.body
    }

    pub fn signatures(&self) -> &[KeySignature] {
        &self.0.signatures
    }

    /// SHA-256 of the signed bytes.
    pub fn hash(&self) -> [u8; 32] {
        self.0.hash()
    }
}

/// A certificate that passed [`TrustRoot::verify_certificate`]: right fleet, enough
/// admission signatures, not expired, a usable node key. (Revocation is checked apart, with
/// [`VerifiedRevocationList::check`].)
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCertificate {
    signed: SignedCertificate,
    node_key: VerifyingKey,
    signers: Vec<[u8; 32]>,
}

impl VerifiedCertificate {
    pub fn certificate(&self) -> &Certificate {
        self.signed.certificate()
    }
    pub fn node_key(&self) -> &VerifyingKey {
        &self.node_key
    }
    pub fn labels(&self) -> &Labels {
        &self.signed.certificate().labels
    }
    pub fn expires(&self) -> Timestamp {
        self.signed.certificate().expires
    }
    /// The admission keys whose signatures counted.
    pub fn signers(&self) -> &[[u8; 32]] {
        &self.signers
    }
    pub fn signed(&self) -> &SignedCertificate {
        &self.signed
    }
    pub fn encode(&self) -> Vec<u8> {
        self.signed.encode()
    }
    /// True when the certificate expires within `window_secs` of `now` (or has expired):
    /// time to re-admit the node. [`CERTIFICATE_WARNING_SECS`] is the usual window.
    pub fn expires_within(&self, now: Timestamp, window_secs: u64) -> bool {
        self.expires() <= now.plus(window_secs)
    }
}

/// Which node keys the fleet no longer admits, as of `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    pub fleet: String,
    /// Each list replaces every lower version; nodes keep a high-water mark of it.
    pub version: u64,
    pub issued: Timestamp,
    pub revoked: BTreeSet<[u8; 32]>,
}

impl RevocationList {
    pub fn contains(&self, node_key: &[u8; 32]) -> bool {
        self.revoked.contains(node_key)
    }
}

/// A revocation list with its signatures, decoded but not verified.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedRevocationList(Envelope<RevocationList>);

impl SignedRevocationList {
    pub fn sign(list: RevocationList, keys: &[&SigningKey]) -> Self {
        SignedRevocationList(Envelope::sign(&REVOCATIONS, list, keys))
    }
    pub fn add_signature(&mut self, key: &SigningKey) {
        self.0.add_signature(&REVOCATIONS, key)
    }
    pub fn encode(&self) -> Vec<u8> {
        self.0.encode(&REVOCATIONS)
    }
    /// Decode untrusted bytes; more than [`MAX_REVOCATIONS_BYTES`] is refused unread.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Envelope::decode(&REVOCATIONS, bytes).map(SignedRevocationList)
    }
    pub fn list(&self) -> &RevocationList {
        &self.0.body
    }
    pub fn signatures(&self) -> &[KeySignature] {
        &self.0.signatures
    }
    /// SHA-256 of the signed bytes (a [`BundleHash`], so it fits a [`Mark`]).
    pub fn hash(&self) -> BundleHash {
        BundleHash(self.0.hash())
    }
}

/// A revocation list that passed [`TrustRoot::verify_revocations`].
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedRevocationList {
    signed: SignedRevocationList,
    signers: Vec<[u8; 32]>,
}

impl VerifiedRevocationList {
    pub fn list(&self) -> &RevocationList {
        self.signed.list()
    }
    pub fn version(&self) -> u64 {
        self.signed.list().version
    }
    pub fn contains(&self, node_key: &[u8; 32]) -> bool {
        self.signed.list().contains(node_key)
    }
    pub fn signers(&self) -> &[[u8; 32]] {
        &self.signers
    }
    pub fn signed(&self) -> &SignedRevocationList {
        &self.signed
    }
    pub fn encode(&self) -> Vec<u8> {
        self.signed.encode()
    }
    pub fn hash(&self) -> BundleHash {
        self.signed.hash()
    }

    /// Refuse a certificate whose node this list revokes.
    pub fn check(&self, cert: &VerifiedCertificate) -> Result<(), Rejection> {
        let key = cert.node_key().as_bytes();
        if self.contains(key) {
            return Err(Rejection::Revoked {
                node: key_id(key),
                version: self.version(),
            });
        }
        Ok(())
    }

    /// The revocation list's high-water mark, kept by the caller apart from the channels'
    /// ([`crate::marks::Marks`]), with the same rule: a higher version is new, the very same
    /// list again is a repeat, anything else at or below the mark is refused.
    pub fn decide(&self, mark: Option<Mark>) -> Result<MarkDecision, Rejection> {
        let (version, hash) = (self.version(), self.hash());
        match mark {
            None => Ok(MarkDecision::New),
            Some(m) if version > m.version => Ok(MarkDecision::New),
            Some(m) if version == m.version && hash == m.hash => Ok(MarkDecision::Same),
            Some(m) if version == m.version => Err(Rejection::ConflictingContent {
                what: REVOCATIONS.what,
                version,
            }),
            Some(m) => Err(Rejection::RolledBack {
                what: REVOCATIONS.what,
                version,
                mark: m.version,
            }),
        }
    }

    /// The mark to keep once this list is accepted.
    pub fn mark(&self) -> Mark {
        Mark {
            version: self.version(),
            hash: self.hash(),
        }
    }
}

fn check_fleet(what: &'static str, trust: &TrustRoot, found: &str) -> Result<(), Rejection> {
    if found != trust.fleet {
        return Err(Rejection::WrongFleet {
            what,
            expected: trust.fleet.clone(),
            found: found.to_string(),
        });
    }
    Ok(())
}

impl TrustRoot {
    /// Verify a node certificate: this fleet, at least `admission_threshold` distinct
    /// admission keys, issued no later than now and not expired (both with the clock skew),
    /// and a node key that is a usable ed25519 key. The only way to a [`VerifiedCertificate`].
    pub fn verify_certificate(
        &self,
        cert: &SignedCertificate,
        now: Timestamp,
        check: &dyn SignatureCheck,
    ) -> Result<VerifiedCertificate, Rejection> {
        let c = cert.certificate();
        check_fleet(CERTIFICATE.what, self, &c.fleet)?;
        check_times(
            CERTIFICATE.what,
            c.issued,
            Some(c.expires),
            now,
            self.clock_skew_secs,
        )?;
        let signers = cert.0.signers(&CERTIFICATE, self, Role::Admission, check)?;
        let node_key = VerifyingKey::from_bytes(&c.node_key).map_err(|_| Rejection::BadNodeKey)?;
        if node_key.is_weak() {
            return Err(Rejection::BadNodeKey);
        }
        Ok(VerifiedCertificate {
            signed: cert.clone(),
            node_key,
            signers,
        })
    }

    /// Verify a revocation list: this fleet, at least `admission_threshold` distinct
    /// admission keys, not issued in the future. Its version against the caller's
    /// high-water mark is [`VerifiedRevocationList::decide`].
    pub fn verify_revocations(
        &self,
        list: &SignedRevocationList,
        now: Timestamp,
        check: &dyn SignatureCheck,
    ) -> Result<VerifiedRevocationList, Rejection> {
        let l = list.list();
        check_fleet(REVOCATIONS.what, self, &l.fleet)?;
        check_times(REVOCATIONS.what, l.issued, None, now, self.clock_skew_secs)?;
        let signers = list.0.signers(&REVOCATIONS, self, Role::Admission, check)?;
        Ok(VerifiedRevocationList {
            signed: list.clone(),
            signers,
        })
    }
}

#[cfg(test)]
mod tests;
