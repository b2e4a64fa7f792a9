//! Trust roots and bundle verification: the door every bundle passes before anything else.
//!
//! A node accepts a bundle only if it is within the size limit, decodes, names this fleet,
//! carries at least `threshold` valid signatures by trusted release keys, has an intact
//! content hash and has not expired (allowing `clock_skew_secs`). The version check against
//! high-water marks is separate ([`crate::marks`]) because it needs the node's durable state.
//!
//! A trust root gives keys roles, each with its own keys and threshold (k of n):
//!
//! - **release** keys sign bundles (the only role [`TrustRoot::verify`] looks at);
//! - **admission** keys sign node certificates and revocation lists ([`crate::admission`]);
//!   a root with none is an *open fleet*;
//! - **root** keys sign the next version of the trust root itself ([`crate::root`]).
//!
//! A root made with [`TrustRoot::new`] (a trust directory of only `*.pub` files) has version
//! 1, its release keys also act as its root keys, and admission is open.

use crate::bundle::{check_content_hash, Bundle, VerifiedBundle, SIGNING_CONTEXT};
use crate::definition::CompiledDefinition;
use crate::encoding::DecodeError;
use crate::keys::key_id;
use crate::time::Timestamp;
use ed25519_dalek::{Signature, VerifyingKey};

/// Bundles above this size are refused before anything is allocated (64 MiB): a definition
/// with every template embedded is kilobytes to a few megabytes; the cap bounds the memory and
/// bandwidth an attacker can make a node spend ("endless data").
pub const DEFAULT_MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;
/// Expiry and bake times allow this much disagreement between clocks (5 minutes).
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 300;
/// The fleet name when no trust.toml names one.
pub const DEFAULT_FLEET: &str = "default";

/// A fleet's trust root: its name, its version, the keys of each role with their thresholds,
/// and the limits every node applies alike.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustRoot {
    pub fleet: String,
    /// The root's version: 1 for a trust directory without a signed root; each signed root
    /// taken on raises it by exactly one ([`TrustRoot::verify_next_root`]).
    pub version: u64,
    /// Keys that sign bundles.
    pub release_keys: Vec<VerifyingKey>,
    /// How many distinct release keys must sign a bundle (k of n).
    pub threshold: usize,
    /// Keys that sign the next trust root.
    pub root_keys: Vec<VerifyingKey>,
    /// How many distinct root keys must sign the next root.
    pub root_threshold: usize,
    /// Keys that sign node certificates and revocation lists; none: an open fleet.
    pub admission_keys: Vec<VerifyingKey>,
    /// How many distinct admission keys must sign a certificate or a revocation list.
    pub admission_threshold: usize,
    /// When this root stops being taken on as a new root (`None`: never). Only a signed root
    /// carries one; bundles are not refused because of it.
    pub expires: Option<Timestamp>,
    pub max_bundle_bytes: usize,
    pub clock_skew_secs: u64,
}

/// The three roles a key can have in a trust root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Root,
    Release,
    Admission,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Release => "release",
            Role::Admission => "admission",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Checks one signature. The simulator passes a memoising checker, since it verifies the same
/// bytes for thousands of virtual nodes; everyone else uses [`Ed25519Check`].
pub trait SignatureCheck {
    fn check(&self, key: &VerifyingKey, msg_parts: &[&[u8]], sig: &[u8]) -> bool;
}

/// Plain ed25519 verification (strict: rejects malleable and small-order signatures).
pub struct Ed25519Check;

impl SignatureCheck for Ed25519Check {
    fn check(&self, key: &VerifyingKey, msg_parts: &[&[u8]], sig: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(sig) else {
            return false;
        };
        let msg = msg_parts.concat();
        key.verify_strict(&msg, &sig).is_ok()
    }
}

/// Why a bundle was refused. `reason()` is the label used in logs and metrics.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum Refusal {
    #[error("{0}")]
    Malformed(#[from] DecodeError),
    #[error("bundle is for fleet `{found}`, this trust root is fleet `{expected}`")]
    WrongFleet { expected: String, found: String },
    #[error("bundle expired at {expires} (now {now}, {skew} s of clock skew allowed)", expires = .expires.0, now = .now.0)]
    Expired {
        expires: Timestamp,
        now: Timestamp,
        skew: u64,
    },
    #[error(
        "signature by trusted key {key} does not verify: the bundle was altered after signing"
    )]
    BadSignature { key: String },
    #[error("signed by {valid} trusted key(s), {needed} needed{}", untrusted_note(.untrusted))]
    NotEnoughSigners {
        valid: usize,
        needed: usize,
        untrusted: Vec<String>,
    },
    #[error("bundle names channel `{header}` but carries definition `{definition}`")]
    ChannelMismatch { header: String, definition: String },
    #[error("channel `{channel}` version {version} is not above the high-water mark {mark}: refused as a rollback")]
    RolledBack {
        channel: String,
        version: u64,
        mark: u64,
    },
    #[error("channel `{channel}` version {version} was already accepted with other content: a signing mistake or a stolen key")]
    ConflictingContent { channel: String, version: u64 },
}

fn untrusted_note(untrusted: &[String]) -> String {
    if untrusted.is_empty() {
        String::new()
    } else {
        format!(" (signatures by untrusted keys: {})", untrusted.join(", "))
    }
}

impl Refusal {
    /// A stable label for counting refusals by reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Malformed(DecodeError::TooLarge { .. }) => "oversized",
            Refusal::Malformed(_) => "malformed",
            Refusal::WrongFleet { .. } => "wrong_fleet",
            Refusal::Expired { .. } => "expired",
            Refusal::BadSignature { .. } => "bad_signature",
            Refusal::NotEnoughSigners { .. } => "untrusted",
            Refusal::ChannelMismatch { .. } => "malformed",
            Refusal::RolledBack { .. } => "rolled_back",
            Refusal::ConflictingContent { .. } => "conflicting_content",
        }
    }

    /// True when the input could not be read as a bundle at all (exit code 2), false when a
    /// well-formed bundle was refused (exit code 1).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            Refusal::Malformed(_) | Refusal::ChannelMismatch { .. }
        )
    }
}

impl TrustRoot {
    /// A version 1 trust root with default limits, as a trust directory of only `*.pub` files
    /// makes it: the release keys are also the root keys (with the same threshold), and there
    /// are no admission keys (an open fleet). Use [`TrustRoot::with_root_keys`] and
    /// [`TrustRoot::with_admission_keys`] to give those roles keys of their own.
    pub fn new(
        fleet: impl Into<String>,
        release_keys: Vec<VerifyingKey>,
        threshold: usize,
    ) -> Self {
        TrustRoot {
            fleet: fleet.into(),
            version: 1,
            root_keys: release_keys.clone(),
            root_threshold: threshold,
            release_keys,
            threshold,
            admission_keys: Vec::new(),
            admission_threshold: 0,
            expires: None,
            max_bundle_bytes: DEFAULT_MAX_BUNDLE_BYTES,
            clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
        }
    }

    /// The same root with these keys as its root keys.
    pub fn with_root_keys(mut self, keys: Vec<VerifyingKey>, threshold: usize) -> Self {
        self.root_keys = keys;
        self.root_threshold = threshold;
        self
    }

    /// The same root with these admission keys (none makes it an open fleet).
    pub fn with_admission_keys(mut self, keys: Vec<VerifyingKey>, threshold: usize) -> Self {
        self.admission_keys = keys;
        self.admission_threshold = threshold;
        self
    }

    /// The same root with another version.
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// An open fleet: no admission keys, so any node that knows the fleet name may join.
    pub fn is_open(&self) -> bool {
        self.admission_keys.is_empty()
    }

    /// The keys of one role and how many of them must sign.
    pub fn keys_of(&self, role: Role) -> (&[VerifyingKey], usize) {
        match role {
            Role::Root => (&self.root_keys, self.root_threshold),
            Role::Release => (&self.release_keys, self.threshold),
            Role::Admission => (&self.admission_keys, self.admission_threshold),
        }
    }

    /// Every role this key has in this root (none: an unknown key).
    pub fn roles_of(&self, key: &[u8; 32]) -> Vec<Role> {
        [Role::Root, Role::Release, Role::Admission]
            .into_iter()
            .filter(|r| self.keys_of(*r).0.iter().any(|k| k.as_bytes() == key))
            .collect()
    }

    /// Decode and verify untrusted bytes.
    pub fn verify_bytes(&self, bytes: &[u8], now: Timestamp) -> Result<VerifiedBundle, Refusal> {
        let bundle = Bundle::decode(bytes, self.max_bundle_bytes)?;
        self.verify(bundle, now, &Ed25519Check)
    }

    /// Verify a decoded bundle. This is the only way to obtain a [`VerifiedBundle`].
    pub fn verify(
        &self,
        bundle: Bundle,
        now: Timestamp,
        check: &dyn SignatureCheck,
    ) -> Result<VerifiedBundle, Refusal> {
        // Decoded with another limit (the wire's), perhaps: the fleet's is checked here too.
        let len = bundle.encoded_len();
        if len > self.max_bundle_bytes {
            return Err(Refusal::Malformed(DecodeError::TooLarge {
                what: "bundle",
                len,
                limit: self.max_bundle_bytes,
            }));
        }
        let header = bundle.header();
        if header.fleet != self.fleet {
            return Err(Refusal::WrongFleet {
                expected: self.fleet.clone(),
                found: header.fleet.clone(),
            });
        }
        if header.expires.plus(self.clock_skew_secs) < now {
            return Err(Refusal::Expired {
                expires: header.expires,
                now,
                skew: self.clock_skew_secs,
            });
        }
        let mut signers: Vec<[u8; 32]> = Vec::new();
        let mut untrusted = Vec::new();
        for s in bundle.signatures() {
            let Some(key) = self.release_keys.iter().find(|k| k.as_bytes() == &s.key) else {
                untrusted.push(key_id(&s.key));
                continue;
            };
            if signers.contains(&s.key) {
                continue; // the same key twice counts once
            }
            if !check.check(key, &[SIGNING_CONTEXT, bundle.signed_bytes()], &s.sig) {
                return Err(Refusal::BadSignature {
                    key: key_id(&s.key),
                });
            }
            signers.push(s.key);
        }
        let needed = self.threshold.max(1);
        if signers.len() < needed {
            return Err(Refusal::NotEnoughSigners {
                valid: signers.len(),
                needed,
                untrusted,
            });
        }
        check_content_hash(header, bundle.definition_bytes())?;
        let definition = CompiledDefinition::decode(bundle.definition_bytes())?;
        if definition.name != header.channel {
            return Err(Refusal::ChannelMismatch {
                header: header.channel.clone(),
                definition: definition.name,
            });
        }
        Ok(VerifiedBundle {
            bundle,
            definition,
            signers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::Header;
    use ed25519_dalek::SigningKey;

    fn def(name: &str) -> CompiledDefinition {
        CompiledDefinition::empty(name, None)
    }

    fn header(fleet: &str, version: u64, expires: u64) -> Header {
        Header {
            fleet: fleet.into(),
            channel: "web".into(),
            version,
            created: Timestamp(1000),
            expires: Timestamp(expires),
            content_hash: [0; 32],
            rollout: None,
        }
    }

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn root(keys: &[u8], threshold: usize) -> TrustRoot {
        TrustRoot::new(
            "prod",
            keys.iter().map(|n| key(*n).verifying_key()).collect(),
            threshold,
        )
    }

    #[test]
    fn a_bundle_signed_by_a_trusted_key_verifies() {
        let b = Bundle::sign(header("prod", 3, 5000), &def("web"), &[&key(1)]);
        let v = root(&[1], 1)
            .verify_bytes(&b.encode(), Timestamp(2000))
            .unwrap();
        assert_eq!(v.header().version, 3);
        assert_eq!(v.definition().name, "web");
        assert_eq!(v.signers(), &[key(1).verifying_key().to_bytes()]);
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let bytes = Bundle::sign(header("prod", 3, 5000), &def("web"), &[&key(1)]).encode();
        let trust = root(&[1], 1);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                trust.verify_bytes(&bad, Timestamp(2000)).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn untrusted_signer_and_threshold() {
        let b = Bundle::sign(header("prod", 3, 5000), &def("web"), &[&key(9)]);
        let err = root(&[1], 1)
            .verify_bytes(&b.encode(), Timestamp(2000))
            .unwrap_err();
        assert_eq!(err.reason(), "untrusted");
        assert!(err
            .to_string()
            .contains(&key_id(&key(9).verifying_key().to_bytes())));

        let mut b = Bundle::sign(header("prod", 3, 5000), &def("web"), &[&key(1)]);
        let two = root(&[1, 2], 2);
        let err = two.verify_bytes(&b.encode(), Timestamp(2000)).unwrap_err();
        assert!(matches!(
            err,
            Refusal::NotEnoughSigners {
                valid: 1,
                needed: 2,
                ..
            }
        ));
        let hash_before = b.hash();
        b.add_signature(&key(1)); // the same key again still counts once
        assert!(two.verify_bytes(&b.encode(), Timestamp(2000)).is_err());
        b.add_signature(&key(2));
        assert!(two.verify_bytes(&b.encode(), Timestamp(2000)).is_ok());
        assert_eq!(
            b.hash(),
            hash_before,
            "cosigning must not change the bundle hash"
        );
    }

    #[test]
    fn wrong_fleet_and_expiry_with_skew() {
        let b = Bundle::sign(header("staging", 3, 5000), &def("web"), &[&key(1)]);
        let err = root(&[1], 1)
            .verify_bytes(&b.encode(), Timestamp(2000))
            .unwrap_err();
        assert_eq!(err.reason(), "wrong_fleet");

        let b = Bundle::sign(header("prod", 3, 5000), &def("web"), &[&key(1)]);
        let t = root(&[1], 1);
        assert!(t.verify_bytes(&b.encode(), Timestamp(5000 + 300)).is_ok());
        let err = t
            .verify_bytes(&b.encode(), Timestamp(5000 + 301))
            .unwrap_err();
        assert_eq!(err.reason(), "expired");
    }

    #[test]
    fn oversized_is_refused_before_decoding() {
        let b = Bundle::sign(header("prod", 3, 5000), &def("web"), &[&key(1)]);
        let mut t = root(&[1], 1);
        t.max_bundle_bytes = 10;
        let err = t.verify_bytes(&b.encode(), Timestamp(2000)).unwrap_err();
        assert_eq!(err.reason(), "oversized");
    }

    #[test]
    fn oversized_is_refused_when_decoded_under_another_limit() {
        // A bundle that came off the wire (decoded with the wire's limit) is held to the
        // fleet's limit by `verify` itself, to the byte.
        let mut b = Bundle::sign(header("prod", 3, 5000), &def("web"), &[&key(1), &key(2)]);
        let bytes = b.encode();
        assert_eq!(b.encoded_len(), bytes.len());
        let mut t = root(&[1], 1);
        t.max_bundle_bytes = bytes.len() - 1;
        let decoded = Bundle::decode(&bytes, usize::MAX).unwrap();
        let err = t
            .verify(decoded.clone(), Timestamp(2000), &Ed25519Check)
            .unwrap_err();
        assert_eq!(err.reason(), "oversized");
        t.max_bundle_bytes = bytes.len();
        t.verify(decoded, Timestamp(2000), &Ed25519Check).unwrap();
        // A cosignature adds to the length (the hash does not cover signatures).
        b.add_signature(&key(3));
        assert_eq!(b.encoded_len(), b.encode().len());
    }

    #[test]
    fn channel_must_match_definition() {
        let b = Bundle::sign(header("prod", 3, 5000), &def("db"), &[&key(1)]);
        let err = root(&[1], 1)
            .verify_bytes(&b.encode(), Timestamp(2000))
            .unwrap_err();
        assert!(matches!(err, Refusal::ChannelMismatch { .. }));
    }
}
