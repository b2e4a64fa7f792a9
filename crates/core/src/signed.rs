//! Signed fleet documents other than bundles (certificates, revocation lists, trust roots):
//! one envelope layout, one way to count signers, one refusal type.
//!
//! Each kind has its own pair of magics, its own size cap and its own signing context:
//!
//! ```text
//! file   = FILE_MAGIC 1 { signed: bytes, signatures: [ { key: [u8;32], sig: bytes(64) } ] }
//! signed = BODY_MAGIC 1 <the kind's body>                 <- the exact bytes signed
//! ```
//!
//! A signature covers `context || signed`, and the contexts differ per kind (and from the
//! bundle's), so a signature made for one kind never passes as another's.

use crate::bundle::MAX_SIGNATURES;
use crate::encoding::{self, DecodeError};
use crate::keys::key_id;
use crate::time::Timestamp;
use crate::trust::{Role, SignatureCheck, TrustRoot};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One signature: the signer's public key and its ed25519 signature (the same shape as a
/// bundle's).
pub use crate::bundle::BundleSignature as KeySignature;

/// What distinguishes one kind of signed document from another.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    /// For messages: "certificate", "revocation list", "trust root".
    pub what: &'static str,
    pub file_magic: &'static [u8; 4],
    pub file_format: u16,
    pub body_magic: &'static [u8; 4],
    pub body_format: u16,
    pub context: &'static [u8],
    /// Inputs above this are refused before anything is decoded.
    pub max_bytes: usize,
}

#[derive(Serialize, Deserialize)]
struct File {
    signed: Vec<u8>,
    signatures: Vec<KeySignature>,
}

/// A decoded document: the exact signed bytes, the signatures, and the body they cover.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope<T> {
    pub body: T,
    pub signed: Vec<u8>,
    pub signatures: Vec<KeySignature>,
}

impl<T: Serialize + serde::de::DeserializeOwned> Envelope<T> {
    pub fn sign(kind: &Kind, body: T, keys: &[&SigningKey]) -> Self {
        let signed = encoding::encode(kind.body_magic, kind.body_format, &body);
        let mut env = Envelope {
            body,
            signed,
            signatures: Vec::new(),
        };
        for k in keys {
            env.add_signature(kind, k);
        }
        env
    }

    /// Add a signature; a key that already signed is replaced, not counted twice.
    pub fn add_signature(&mut self, kind: &Kind, key: &SigningKey) {
        let public = key.verifying_key().to_bytes();
        let sig = key.sign(&[kind.context, &self.signed].concat());
        self.signatures.retain(|s| s.key != public);
        self.signatures.push(KeySignature {
            key: public,
            sig: sig.to_bytes().to_vec(),
        });
    }

    pub fn encode(&self, kind: &Kind) -> Vec<u8> {
        encoding::encode(
            kind.file_magic,
            kind.file_format,
            &File {
                signed: self.signed.clone(),
                signatures: self.signatures.clone(),
            },
        )
    }

    /// Decode untrusted bytes: the size cap first, then both envelopes and the body.
    pub fn decode(kind: &Kind, bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > kind.max_bytes {
            return Err(DecodeError::TooLarge {
                what: kind.what,
                len: bytes.len(),
                limit: kind.max_bytes,
            });
        }
        let (_v, body) = encoding::open(kind.what, kind.file_magic, kind.file_format, bytes)?;
        let file: File = encoding::body(kind.what, body)?;
        if file.signatures.len() > MAX_SIGNATURES {
            return Err(DecodeError::Malformed {
                what: kind.what,
                reason: format!(
                    "{} signatures, at most {MAX_SIGNATURES} allowed",
                    file.signatures.len()
                ),
            });
        }
        let (_v, inner) =
            encoding::open(kind.what, kind.body_magic, kind.body_format, &file.signed)?;
        let body: T = encoding::body(kind.what, inner)?;
        Ok(Envelope {
            body,
            signed: file.signed,
            signatures: file.signatures,
        })
    }

    /// SHA-256 of the signed bytes: the document's identity (cosigning does not change it).
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(&self.signed).into()
    }

    /// The distinct keys of `role` in `trust` whose signatures verify; at least the role's
    /// threshold of them, or the refusal that says why not.
    pub fn signers(
        &self,
        kind: &Kind,
        trust: &TrustRoot,
        role: Role,
        check: &dyn SignatureCheck,
    ) -> Result<Vec<[u8; 32]>, Rejection> {
        let (keys, threshold) = trust.keys_of(role);
        if keys.is_empty() {
            return Err(Rejection::NoKeys {
                what: kind.what,
                role,
            });
        }
        let mut signers: Vec<[u8; 32]> = Vec::new();
        let mut untrusted = Vec::new();
        for s in &self.signatures {
            let Some(key) = keys.iter().find(|k| k.as_bytes() == &s.key) else {
                let roles = trust.roles_of(&s.key);
                untrusted.push(if roles.is_empty() {
                    key_id(&s.key)
                } else {
                    let names: Vec<&str> = roles.iter().map(|r| r.name()).collect();
                    format!("{} ({} key)", key_id(&s.key), names.join("+"))
                });
                continue;
            };
            if signers.contains(&s.key) {
                continue;
            }
            if !check.check(key, &[kind.context, &self.signed], &s.sig) {
                return Err(Rejection::BadSignature {
                    what: kind.what,
                    key: key_id(&s.key),
                });
            }
            signers.push(s.key);
        }
        let needed = threshold.max(1);
        if signers.len() < needed {
            let wrong_role = self
                .signatures
                .iter()
                .any(|s| !trust.roles_of(&s.key).is_empty() && !signers.contains(&s.key));
            return Err(Rejection::NotEnoughSigners {
                what: kind.what,
                role,
                valid: signers.len(),
                needed,
                untrusted,
                wrong_role,
            });
        }
        Ok(signers)
    }
}

/// Why a certificate, revocation list or trust root was refused. `reason()` is the stable
/// label for logs and metrics; `is_malformed()` tells unreadable input (exit 2) from a
/// well-formed document that is refused (exit 1).
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum Rejection {
    #[error("{0}")]
    Malformed(#[from] DecodeError),
    #[error("{what} is for fleet `{found}`, this trust root is fleet `{expected}`")]
    WrongFleet {
        what: &'static str,
        expected: String,
        found: String,
    },
    #[error("{what} expired at {} (now {}, {skew} s of clock skew allowed)", .expires.0, .now.0)]
    Expired {
        what: &'static str,
        expires: Timestamp,
        now: Timestamp,
        skew: u64,
    },
    #[error("{what} is issued at {}, in the future (now {}, {skew} s of clock skew allowed)", .issued.0, .now.0)]
    NotYetValid {
        what: &'static str,
        issued: Timestamp,
        now: Timestamp,
        skew: u64,
    },
    #[error(
        "signature by trusted key {key} does not verify: the {what} was altered after signing"
    )]
    BadSignature { what: &'static str, key: String },
    #[error("{what} is signed by {valid} {role} key(s), {needed} needed{}", untrusted_note(.untrusted))]
    NotEnoughSigners {
        what: &'static str,
        role: Role,
        valid: usize,
        needed: usize,
        /// Signers that do not count, with the role they do have, if any.
        untrusted: Vec<String>,
        /// Some signer is a key of this root, but of another role (a release key signing a
        /// certificate, say).
        wrong_role: bool,
    },
    #[error("this trust root has no {role} keys, so no {what} can be trusted{}", open_note(*.role))]
    NoKeys { what: &'static str, role: Role },
    #[error("the certificate's node key is not a usable ed25519 public key")]
    BadNodeKey,
    #[error("trust root version {found} cannot follow version {current}: roots are taken on one version at a time ({expected} expected)")]
    RootVersion {
        current: u64,
        expected: u64,
        found: u64,
    },
    #[error("trust root: field `{field}`: {reason}")]
    InvalidRoot { field: String, reason: String },
    #[error("node {node} is revoked (revocation list version {version})")]
    Revoked { node: String, version: u64 },
    #[error(
        "{what} version {version} is not above the high-water mark {mark}: refused as a rollback"
    )]
    RolledBack {
        what: &'static str,
        version: u64,
        mark: u64,
    },
    #[error("{what} version {version} was already accepted with other content: a signing mistake or a stolen key")]
    ConflictingContent { what: &'static str, version: u64 },
}

fn untrusted_note(untrusted: &[String]) -> String {
    if untrusted.is_empty() {
        String::new()
    } else {
        format!(" (signatures that do not count: {})", untrusted.join(", "))
    }
}

fn open_note(role: Role) -> &'static str {
    if role == Role::Admission {
        " (an open fleet: any node that knows the fleet name may join)"
    } else {
        ""
    }
}

impl Rejection {
    /// A stable label for counting refusals by reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Malformed(DecodeError::TooLarge { .. }) => "oversized",
            Rejection::Malformed(_) => "malformed",
            Rejection::WrongFleet { .. } => "wrong_fleet",
            Rejection::Expired { .. } => "expired",
            Rejection::NotYetValid { .. } => "not_yet_valid",
            Rejection::BadSignature { .. } => "bad_signature",
            Rejection::NotEnoughSigners {
                wrong_role: true, ..
            } => "wrong_role",
            Rejection::NotEnoughSigners { .. } => "untrusted",
            Rejection::NoKeys { .. } => "no_keys",
            Rejection::BadNodeKey => "bad_node_key",
            Rejection::RootVersion { .. } => "root_version",
            Rejection::InvalidRoot { .. } => "invalid_root",
            Rejection::Revoked { .. } => "revoked",
            Rejection::RolledBack { .. } => "rolled_back",
            Rejection::ConflictingContent { .. } => "conflicting_content",
        }
    }

    /// True when the input could not be read at all (exit code 2), false when a well-formed
    /// document was refused (exit code 1).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            Rejection::Malformed(_) | Rejection::InvalidRoot { .. }
        )
    }
}

/// Refuse a document whose `issued` lies in the future or whose `expires` has passed, each
/// with the root's clock skew allowed.
pub(crate) fn check_times(
    what: &'static str,
    issued: Timestamp,
    expires: Option<Timestamp>,
    now: Timestamp,
    skew: u64,
) -> Result<(), Rejection> {
    if issued > now.plus(skew) {
        return Err(Rejection::NotYetValid {
            what,
            issued,
            now,
            skew,
        });
    }
    if let Some(expires) = expires {
        if expires.plus(skew) < now {
            return Err(Rejection::Expired {
                what,
                expires,
                now,
                skew,
            });
        }
    }
    Ok(())
}
