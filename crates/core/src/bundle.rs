//! The bundle: a signed header plus a compiled definition, as one file and one wire object.
//!
//! Layout (each part a versioned postcard envelope, see [`crate::encoding`]):
//!
//! ```text
//! bundle   = "DLBF" v1 { signed: bytes, signatures: [ { key: [u8;32], sig: bytes(64) } ] }
//! signed   = "DLBS" v1 { header: Header, definition: bytes }      <- the exact bytes signed
//! definition = "DLDF" v1 CompiledDefinition
//! ```
//!
//! Signatures cover `SIGNING_CONTEXT || signed`, so a signature over any other driftless
//! structure can never pass as a bundle signature. `cosign` appends a signature and leaves
//! `signed` untouched, so the bundle hash (SHA-256 of `signed`) does not change.

use crate::definition::{CompiledDefinition, RolloutPolicy};
use crate::encoding::{self, DecodeError};
use crate::time::Timestamp;
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

pub const BUNDLE_MAGIC: &[u8; 4] = b"DLBF";
pub const BUNDLE_FORMAT: u16 = 1;
pub const SIGNED_MAGIC: &[u8; 4] = b"DLBS";
pub const SIGNED_FORMAT: u16 = 1;
/// Domain separation for bundle signatures.
pub const SIGNING_CONTEXT: &[u8] = b"driftless bundle signature v1\0";
/// More signatures than this is not a k-of-n signing but an attack on the verifier's time.
pub const MAX_SIGNATURES: usize = 32;

/// SHA-256 of a bundle's signed bytes: its identity on the wire and in high-water marks.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BundleHash(pub [u8; 32]);

impl BundleHash {
    pub fn of(bytes: &[u8]) -> BundleHash {
        BundleHash(Sha256::digest(bytes).into())
    }
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for BundleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BundleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleHash({})", self.short())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub fleet: String,
    pub channel: String,
    pub version: u64,
    pub created: Timestamp,
    pub expires: Timestamp,
    /// SHA-256 of the encoded definition carried in the bundle.
    pub content_hash: [u8; 32],
    pub rollout: Option<RolloutPolicy>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignedBody {
    header: Header,
    definition: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleSignature {
    pub key: [u8; 32],
    pub sig: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct BundleFile {
    signed: Vec<u8>,
    signatures: Vec<BundleSignature>,
}

/// A decoded but not yet verified bundle. Only [`crate::trust::TrustRoot::verify`] turns it
/// into a [`VerifiedBundle`], the only form that may be stored, applied or forwarded.
#[derive(Debug, Clone)]
pub struct Bundle {
    signed: Vec<u8>,
    signatures: Vec<BundleSignature>,
    header: Header,
    definition: Vec<u8>,
    hash: BundleHash,
}

impl Bundle {
    /// Sign a definition into a bundle with one or more keys.
    pub fn sign(
        header_without_hash: Header,
        definition: &CompiledDefinition,
        keys: &[&SigningKey],
    ) -> Bundle {
        let definition = definition.encode();
        let mut header = header_without_hash;
        header.content_hash = Sha256::digest(&definition).into();
        let body = SignedBody {
            header: header.clone(),
            definition: definition.clone(),
        };
        let signed = encoding::encode(SIGNED_MAGIC, SIGNED_FORMAT, &body);
        let hash = BundleHash::of(&signed);
        let mut bundle = Bundle {
            signed,
            signatures: Vec::new(),
            header,
            definition,
            hash,
        };
        for key in keys {
            bundle.add_signature(key);
        }
        bundle
    }

    /// Add one more signature (k-of-n signing from separate hosts). A key that already signed
    /// is replaced, not added twice.
    pub fn add_signature(&mut self, key: &SigningKey) {
        let public = key.verifying_key().to_bytes();
        let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + self.signed.len());
        msg.extend_from_slice(SIGNING_CONTEXT);
        msg.extend_from_slice(&self.signed);
        let sig = key.sign(&msg).to_bytes().to_vec();
        self.signatures.retain(|s| s.key != public);
        self.signatures.push(BundleSignature { key: public, sig });
    }

    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(
            BUNDLE_MAGIC,
            BUNDLE_FORMAT,
            &BundleFile {
                signed: self.signed.clone(),
                signatures: self.signatures.clone(),
            },
        )
    }

    /// The length of [`Bundle::encode`]'s output, computed without encoding: what the size
    /// limit is checked against when a bundle arrives already decoded (from the wire, with
    /// the wire's own larger limit).
    pub fn encoded_len(&self) -> usize {
        fn varint(n: usize) -> usize {
            let bits = usize::BITS - (n | 1).leading_zeros();
            bits.div_ceil(7) as usize
        }
        let sigs: usize = self
            .signatures
            .iter()
            .map(|s| s.key.len() + varint(s.sig.len()) + s.sig.len())
            .sum();
        BUNDLE_MAGIC.len()
            + 2
            + varint(self.signed.len())
            + self.signed.len()
            + varint(self.signatures.len())
            + sigs
    }

    /// Decode untrusted bytes. The size limit is checked before anything is allocated.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Bundle, DecodeError> {
        if bytes.len() > max_bytes {
            return Err(DecodeError::TooLarge {
                what: "bundle",
                len: bytes.len(),
                limit: max_bytes,
            });
        }
        let (_v, body) = encoding::open("bundle", BUNDLE_MAGIC, BUNDLE_FORMAT, bytes)?;
        let file: BundleFile = encoding::body("bundle", body)?;
        if file.signatures.len() > MAX_SIGNATURES {
            return Err(DecodeError::Malformed {
                what: "bundle",
                reason: format!(
                    "{} signatures, at most {MAX_SIGNATURES} allowed",
                    file.signatures.len()
                ),
            });
        }
        let (_v, sbody) = encoding::open(
            "signed bundle body",
            SIGNED_MAGIC,
            SIGNED_FORMAT,
            &file.signed,
        )?;
        let body: SignedBody = encoding::body("signed bundle body", sbody)?;
        let hash = BundleHash::of(&file.signed);
        Ok(Bundle {
            signed: file.signed,
            signatures: file.signatures,
            header: body.header,
            definition: body.definition,
            hash,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }
    pub fn hash(&self) -> BundleHash {
        self.hash
    }
    pub fn signatures(&self) -> &[BundleSignature] {
        &self.signatures
    }
    pub(crate) fn signed_bytes(&self) -> &[u8] {
        &self.signed
    }
    pub(crate) fn definition_bytes(&self) -> &[u8] {
        &self.definition
    }

    /// Decode the definition without verifying anything: for `plan` of an unverified bundle,
    /// which says so plainly. Checks the content hash.
    pub fn definition_unverified(&self) -> Result<CompiledDefinition, DecodeError> {
        check_content_hash(&self.header, &self.definition)?;
        CompiledDefinition::decode(&self.definition)
    }
}

pub(crate) fn check_content_hash(header: &Header, definition: &[u8]) -> Result<(), DecodeError> {
    let actual: [u8; 32] = Sha256::digest(definition).into();
    if actual != header.content_hash {
        return Err(DecodeError::Malformed {
            what: "bundle",
            reason: "content hash does not match the definition it carries".into(),
        });
    }
    Ok(())
}

/// A bundle whose signatures, fleet, expiry and size passed a trust root's checks.
/// Constructed only by [`crate::trust::TrustRoot::verify`].
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    pub(crate) bundle: Bundle,
    pub(crate) definition: CompiledDefinition,
    /// Which trusted keys signed it.
    pub(crate) signers: Vec<[u8; 32]>,
}

impl VerifiedBundle {
    pub fn header(&self) -> &Header {
        &self.bundle.header
    }
    pub fn hash(&self) -> BundleHash {
        self.bundle.hash
    }
    pub fn definition(&self) -> &CompiledDefinition {
        &self.definition
    }
    pub fn signers(&self) -> &[[u8; 32]] {
        &self.signers
    }
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }
    pub fn encode(&self) -> Vec<u8> {
        self.bundle.encode()
    }
}
