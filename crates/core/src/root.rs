//! Versioned trust roots: a new root is taken on only when k keys of the current root and k
//! keys of the new root sign it (TUF's root chain), one version at a time.
//!
//! ```text
//! root   = "DLRT" 1 { signed: bytes, signatures: [ { key, sig } ] }
//! signed = "DLRD" 1 RootDoc
//! ```
//!
//! Signing by the current root's keys means a stolen release or admission key cannot make a
//! root; signing by the new root's keys means nobody can hand a fleet root keys that do not
//! exist or are not held. Once a node takes on a new root, keys that only the old root had
//! sign nothing any more: that is how a stolen key is rotated out.

use crate::encoding::DecodeError;
use crate::signed::{check_times, Envelope, KeySignature, Kind, Rejection};
use crate::time::Timestamp;
use crate::trust::{Role, SignatureCheck, TrustRoot};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

pub const ROOT_MAGIC: &[u8; 4] = b"DLRT";
pub const ROOT_FORMAT: u16 = 1;
pub const ROOT_BODY_MAGIC: &[u8; 4] = b"DLRD";
pub const ROOT_BODY_FORMAT: u16 = 1;
/// Domain separation for root signatures.
pub const ROOT_CONTEXT: &[u8] = b"driftless trust root signature v1\0";
/// Three roles of at most [`MAX_ROLE_KEYS`] keys and the signatures of two roots: ~10 KiB.
pub const MAX_ROOT_BYTES: usize = 64 * 1024;
/// More keys in one role than signatures a document may carry would make a threshold above
/// [`crate::bundle::MAX_SIGNATURES`] unreachable.
pub const MAX_ROLE_KEYS: usize = crate::bundle::MAX_SIGNATURES;

pub(crate) const ROOT: Kind = Kind {
    what: "trust root",
    file_magic: ROOT_MAGIC,
    file_format: ROOT_FORMAT,
    body_magic: ROOT_BODY_MAGIC,
    body_format: ROOT_BODY_FORMAT,
    context: ROOT_CONTEXT,
    max_bytes: MAX_ROOT_BYTES,
};

/// The same kind, named for the two signer checks of a rotation.
const BY_CURRENT: Kind = Kind {
    what: "trust root (by the current root's keys)",
    ..ROOT
};
const BY_NEXT: Kind = Kind {
    what: "trust root (by its own root keys)",
    ..ROOT
};

/// The keys of one role and how many of them must sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySet {
    pub keys: Vec<[u8; 32]>,
    pub threshold: u32,
}

/// A trust root as it is signed and spread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootDoc {
    pub fleet: String,
    pub version: u64,
    pub issued: Timestamp,
    /// After this, the root is no longer taken on as a new root (`None`: never).
    pub expires: Option<Timestamp>,
    pub root: KeySet,
    pub release: KeySet,
    /// No keys: an open fleet.
    pub admission: KeySet,
    pub max_bundle_bytes: u64,
    pub clock_skew_secs: u64,
}

/// A root document with its signatures, decoded but not verified.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedRoot(Envelope<RootDoc>);

impl SignedRoot {
    /// Sign a root document; a rotation needs keys of both the current and the new root.
    pub fn sign(doc: RootDoc, keys: &[&SigningKey]) -> Self {
        SignedRoot(Envelope::sign(&ROOT, doc, keys))
    }
    pub fn add_signature(&mut self, key: &SigningKey) {
        self.0.add_signature(&ROOT, key)
    }
    pub fn encode(&self) -> Vec<u8> {
        self.0.encode(&ROOT)
    }
    /// Decode untrusted bytes; more than [`MAX_ROOT_BYTES`] is refused unread.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Envelope::decode(&ROOT, bytes).map(SignedRoot)
    }
    pub fn doc(&self) -> &RootDoc {
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

fn role_keys(
    field: &str,
    set: &KeySet,
    may_be_empty: bool,
) -> Result<(Vec<VerifyingKey>, usize), Rejection> {
    let invalid = |reason: String| Rejection::InvalidRoot {
        field: field.to_string(),
        reason,
    };
    if set.keys.len() > MAX_ROLE_KEYS {
        return Err(invalid(format!(
            "{} keys, at most {MAX_ROLE_KEYS} allowed",
            set.keys.len()
        )));
    }
    let mut keys = Vec::with_capacity(set.keys.len());
    for raw in &set.keys {
        let key = VerifyingKey::from_bytes(raw)
            .ok()
            .filter(|k| !k.is_weak())
            .ok_or_else(|| invalid("holds a value that is not a usable ed25519 key".into()))?;
        if keys.contains(&key) {
            return Err(invalid("names one key twice".into()));
        }
        keys.push(key);
    }
    let threshold = set.threshold as usize;
    if keys.is_empty() && may_be_empty {
        if threshold != 0 {
            return Err(invalid(format!("threshold {threshold} with no keys")));
        }
        return Ok((keys, 0));
    }
    if threshold == 0 || threshold > keys.len() {
        return Err(invalid(format!(
            "threshold {threshold} is not between 1 and the {} key(s)",
            keys.len()
        )));
    }
    Ok((keys, threshold))
}

fn key_set(keys: &[VerifyingKey], threshold: usize) -> KeySet {
    KeySet {
        keys: keys.iter().map(|k| k.to_bytes()).collect(),
        threshold: threshold as u32,
    }
}

impl TrustRoot {
    /// The trust root a root document describes, after checking that it is coherent: every
    /// role's keys are usable and distinct, every threshold is between 1 and its number of
    /// keys (admission may have no keys and threshold 0: an open fleet).
    pub fn from_root_doc(doc: &RootDoc) -> Result<TrustRoot, Rejection> {
        let (root_keys, root_threshold) = role_keys("root", &doc.root, false)?;
        let (release_keys, threshold) = role_keys("release", &doc.release, false)?;
        let (admission_keys, admission_threshold) = role_keys("admission", &doc.admission, true)?;
        if doc.version == 0 {
            return Err(Rejection::InvalidRoot {
                field: "version".into(),
                reason: "must be at least 1".into(),
            });
        }
        let max_bundle_bytes =
            usize::try_from(doc.max_bundle_bytes).map_err(|_| Rejection::InvalidRoot {
                field: "max_bundle_bytes".into(),
                reason: format!("{} does not fit this machine", doc.max_bundle_bytes),
            })?;
        Ok(TrustRoot {
            fleet: doc.fleet.clone(),
            version: doc.version,
            release_keys,
            threshold,
            root_keys,
            root_threshold,
            admission_keys,
            admission_threshold,
            expires: doc.expires,
            max_bundle_bytes,
            clock_skew_secs: doc.clock_skew_secs,
        })
    }

    /// This root as a document to sign, issued at `issued` and expiring at `expires`.
    pub fn to_root_doc(&self, issued: Timestamp, expires: Option<Timestamp>) -> RootDoc {
        RootDoc {
            fleet: self.fleet.clone(),
            version: self.version,
            issued,
            expires,
            root: key_set(&self.root_keys, self.root_threshold),
            release: key_set(&self.release_keys, self.threshold),
            admission: key_set(&self.admission_keys, self.admission_threshold),
            max_bundle_bytes: self.max_bundle_bytes as u64,
            clock_skew_secs: self.clock_skew_secs,
        }
    }

    /// Take on the next root: same fleet, version exactly one above this one, not expired,
    /// coherent, and signed by `root_threshold` of this root's root keys and by the new
    /// root's own root threshold of its root keys. Returns the new trust root.
    pub fn verify_next_root(
        &self,
        root: &SignedRoot,
        now: Timestamp,
        check: &dyn SignatureCheck,
    ) -> Result<TrustRoot, Rejection> {
        self.next_root(root, now, check, true)
    }

    /// [`TrustRoot::verify_next_root`] for a root that a newer root of the same chain
    /// follows: its expiry is not checked, since it may have expired after its successor was
    /// signed (TUF checks only the last root's expiry). Everything else is.
    pub fn verify_intermediate_root(
        &self,
        root: &SignedRoot,
        now: Timestamp,
        check: &dyn SignatureCheck,
    ) -> Result<TrustRoot, Rejection> {
        self.next_root(root, now, check, false)
    }

    fn next_root(
        &self,
        root: &SignedRoot,
        now: Timestamp,
        check: &dyn SignatureCheck,
        check_expiry: bool,
    ) -> Result<TrustRoot, Rejection> {
        let doc = root.doc();
        if doc.fleet != self.fleet {
            return Err(Rejection::WrongFleet {
                what: ROOT.what,
                expected: self.fleet.clone(),
                found: doc.fleet.clone(),
            });
        }
        let expected = self.version.saturating_add(1);
        if doc.version != expected {
            return Err(Rejection::RootVersion {
                current: self.version,
                expected,
                found: doc.version,
            });
        }
        let expires = if check_expiry { doc.expires } else { None };
        check_times(ROOT.what, doc.issued, expires, now, self.clock_skew_secs)?;
        let next = TrustRoot::from_root_doc(doc)?;
        root.0.signers(&BY_CURRENT, self, Role::Root, check)?;
        root.0.signers(&BY_NEXT, &next, Role::Root, check)?;
        Ok(next)
    }

    /// Walk a chain of signed roots from this one, one version at a time, and return the
    /// last. Roots at or below this root's version are skipped (already taken on); the rest
    /// must follow each other without a gap. Only the last root's expiry is checked: an
    /// intermediate root may have expired since, as long as its successor was signed.
    pub fn verify_root_chain(
        &self,
        roots: &[SignedRoot],
        now: Timestamp,
        check: &dyn SignatureCheck,
    ) -> Result<TrustRoot, Rejection> {
        let mut pending: Vec<&SignedRoot> = roots
            .iter()
            .filter(|r| r.doc().version > self.version)
            .collect();
        pending.sort_by_key(|r| r.doc().version);
        let mut current = self.clone();
        let last = pending.len();
        for (i, root) in pending.into_iter().enumerate() {
            current = current.next_root(root, now, check, i + 1 == last)?;
        }
        Ok(current)
    }
}

#[cfg(test)]
mod tests;
